"""The benchmark harness (benchmarks/bench.py) on tiny settings: every case runs,
results agree."""
import pathlib
import sys

import numpy as np
import pytest

# The harness lives in the checkout's benchmarks/ folder, not in the package.
BENCHMARKS = str(pathlib.Path(__file__).parents[1] / "benchmarks")
if BENCHMARKS not in sys.path:
  sys.path.insert(0, BENCHMARKS)

import baselines  # noqa: E402
import bench  # noqa: E402


@pytest.fixture(scope="module")
def tiny_report():
  # Two members, one epoch, a 32-wide MLP, machine limits given: the whole harness,
  # dominated by compilation.
  limits = {"peak_flops": 1e10, "peak_bytes_per_s": 1e9, "matmul_n": 0, "copy_bytes": 0}
  return bench.run_bench(["mlp"], [2], [32], epochs=1, model_kwargs={"hidden": (32,)},
                         limits=limits, log=lambda s: None)


def test_run_bench_has_every_case_tiny_grid(tiny_report):
  cases = {r["case"] for r in tiny_report["rows"]}
  expected = set(bench.CASES) if baselines.torch_available() else set(bench.CASES) - {
      "torch_func"}
  assert cases == expected
  for r in tiny_report["rows"]:
    assert r["train_s"] > 0 and np.isfinite(r["examples_per_s"])
    assert r["steps"] == tiny_report["summary"][0]["examples_per_member"] // 32


def test_run_bench_results_allclose_to_plain_loop(tiny_report):
  rows = {r["case"]: r for r in tiny_report["rows"]}
  assert rows["python_loop"]["allclose"] is None  # the reference itself
  for case in ("lrjax", "scans", "vmap_scan"):
    assert rows[case]["allclose"], (case, rows[case]["max_abs_diff"])
  summary = tiny_report["summary"][0]
  assert summary["lrjax_allclose"] and summary["best_baseline"] in bench.BASELINES
  assert summary["members_checked"] == [0, 1]


def test_format_table_lists_every_row(tiny_report):
  text = bench.format_table(tiny_report)
  assert text.count("| mlp | 2 | 32 |") == len(tiny_report["rows"])
  assert "best baseline" in text


def test_main_rejects_unknown_case_with_message(capsys):
  assert bench.main(["--quick", "--cases", "nope", "--json", ""]) == 2
  assert "unknown" in capsys.readouterr().err


def test_run_bench_keeps_fastest_round_when_repeated():
  limits = {"peak_flops": 1e10, "peak_bytes_per_s": 1e9, "matmul_n": 0, "copy_bytes": 0}
  report = bench.run_bench(["mlp"], [2], [32], epochs=1, cases=["lrjax", "scans"],
                           model_kwargs={"hidden": (32,)}, limits=limits,
                           log=lambda s: None, repeats=2)
  rows = {r["case"]: r for r in report["rows"]}
  for row in rows.values():
    assert len(row["train_s_rounds"]) == 2
    assert row["train_s"] == min(row["train_s_rounds"])
  summary = report["summary"][0]
  expected = [s / l for s, l in zip(rows["scans"]["train_s_rounds"],
                                    rows["lrjax"]["train_s_rounds"])]
  np.testing.assert_allclose(summary["speedup_vs_best_rounds"], expected)
  assert report["repeats"] == 2 and "2 interleaved rounds" in report["timing"]


def test_main_rejects_zero_repeats_with_message(capsys):
  assert bench.main(["--quick", "--repeats", "0", "--json", ""]) == 2
  assert "repeats" in capsys.readouterr().err


def test_run_bench_rates_against_best_of_start_and_end_limits(monkeypatch):
  # A slow spell during the first measurement must not leave efficiencies above 100%.
  measured = iter([
      {"peak_flops": 1e9, "peak_bytes_per_s": 4e9, "matmul_n": 1, "copy_bytes": 1},
      {"peak_flops": 3e9, "peak_bytes_per_s": 2e9, "matmul_n": 1, "copy_bytes": 1}])
  monkeypatch.setattr(baselines, "machine_limits", lambda: next(measured))
  report = bench.run_bench(["mlp"], [2], [32], epochs=1, cases=["lrjax", "scans"],
                           model_kwargs={"hidden": (32,)}, log=lambda s: None)
  assert report["machine_limits"]["peak_flops"] == 3e9
  assert report["machine_limits"]["peak_bytes_per_s"] == 4e9
  s = report["summary"][0]
  for r in report["rows"]:
    flops = s["flops_per_member_step"] * r["steps"] * r["members"]
    nbytes = s["bytes_per_member_step"] * r["steps"] * r["members"]
    np.testing.assert_allclose(r["flop_efficiency"], flops / 3e9 / r["train_s"])
    np.testing.assert_allclose(r["roofline"], max(flops / 3e9, nbytes / 4e9) / r["train_s"])
