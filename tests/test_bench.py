"""The benchmark harness (benchmarks/bench.py) on tiny settings: every case runs,
results agree."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

import lrjax
from lrjax import data, models

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


LIMITS = {"peak_flops": 1e10, "peak_bytes_per_s": 1e9, "matmul_n": 0, "copy_bytes": 0}


@pytest.mark.slow  # a ResNet compiled twice: about a minute
def test_run_bench_matches_plain_loop_resnet_bfloat16():
  # The ResNet's BatchNorm state threaded through every baseline, in bfloat16 with
  # float32 master weights: lrjax's members equal the plain loop's.
  report = bench.run_bench(["resnet20"], [2], [32], epochs=0.05,
                           cases=["lrjax", "python_loop"], dtypes=["bfloat16"],
                           model_kwargs={"resnet20": {"width": 0.25}}, limits=LIMITS,
                           log=lambda s: None)
  rows = [r for r in report["rows"] if r["case"] == "lrjax"]
  assert [r["members"] for r in rows] == [2]
  for r in rows:
    assert r["dtype"] == "bfloat16" and r["model"] == "resnet20"
    assert r["allclose"], r["max_abs_diff"]
    assert r["steps"] >= 1 and np.isfinite(r["examples_per_s"])
  assert report["summary"][0]["members_checked"] == [0, 1]
  assert report["model_kwargs_by_model"] == {"resnet20": {"width": 0.25}}
  assert report["complete"] and report["dtypes"] == ["bfloat16"]
  assert "| resnet20 | 2 | 32 | lrjax | bfloat16 |" in bench.format_table(report)


@pytest.mark.slow  # a ResNet through every baseline
def test_baselines_carry_batch_stats_resnet():
  # One baseline step updates the running statistics, in their float32 dtype (an
  # 8-layer ResNet: the same blocks as ResNet-20, less to compile).
  table = lrjax.make_grid({"lr": [0.01], "batch_size": (8,), "seed": (0,)})
  work = bench._work(models.get_model("resnet", 10, depth=8, width=0.25), data.load("digits"),
                     table, 8, 16, "bfloat16")
  state = work.init_state["batch_stats"]["stem_bn"]
  opt = optax.sgd(0.01, momentum=baselines.MOMENTUM)
  step = jax.jit(lambda p, s, x, y: baselines.model_step(work.model, work.dtype, p,
                                                         opt.init(p), s, x, y, opt))
  _, _, new = step(work.init_params, work.init_state, work.xs[0], work.ys[0])
  moved = new["batch_stats"]["stem_bn"]["mean"]
  assert moved.dtype == state["mean"].dtype and np.any(moved != state["mean"])


def test_run_bench_compares_with_scans_when_no_plain_loop():
  report = bench.run_bench(["mlp"], [2], [32], epochs=1, cases=["lrjax", "scans"],
                           model_kwargs={"hidden": (32,)}, limits=LIMITS, log=lambda s: None)
  rows = {r["case"]: r for r in report["rows"]}
  assert report["summary"][0]["reference"] == "scans"
  assert rows["lrjax"]["allclose"] and rows["scans"]["allclose"] is None


def test_model_kwargs_for_merges_defaults_per_model():
  assert bench.model_kwargs_for("resnet20", None) == {"width": 0.5}
  assert bench.model_kwargs_for("resnet20", {"resnet20": {"width": 1}}) == {"width": 1}
  assert bench.model_kwargs_for("mlp", {"resnet20": {"width": 1}}) == {}
  assert bench.model_kwargs_for("mlp", {"hidden": (32,)}) == {"hidden": (32,)}


def test_run_bench_skips_every_case_when_budget_spent():
  report = bench.run_bench(["mlp"], [1, 2], [32], epochs=1, cases=["lrjax", "scans"],
                           model_kwargs={"hidden": (32,)}, limits=LIMITS,
                           log=lambda s: None, budget_s=0.0)
  assert report["rows"] == [] and report["complete"]
  assert {(s["members"], s["case"]) for s in report["skipped"]} == {
      (1, "lrjax"), (1, "scans"), (2, "lrjax"), (2, "scans")}
  assert all("budget" in s["reason"] for s in report["skipped"])
  assert "- skipped mlp N=2 B=32 scans" in bench.format_table(report)


def test_budget_skips_case_when_estimate_exceeds_time_left():
  budget = bench.Budget(60.0)
  key = bench.cell_key("resnet20", "float32", 64, 128)
  assert budget.reason(key, "scans") is None  # never measured: runs
  budget.record(key, "scans", wall_s=12.0, train_s=10.0)
  assert budget.reason(bench.cell_key("resnet20", "float32", 256, 128), "scans") is None
  big = bench.cell_key("resnet20", "float32", 1024, 128)
  assert budget.estimate(big, "scans") == pytest.approx(2.0 + 10.0 * 16)
  assert "estimated 162 s (from N=64)" in budget.reason(big, "scans")
  assert budget.reason(big, "lrjax") is None  # each case its own history
  assert bench.Budget(None).reason(big, "scans") is None


def test_main_rejects_unknown_dtype_with_message(capsys):
  assert bench.main(["--quick", "--dtypes", "float16", "--json", ""]) == 2
  assert "dtypes" in capsys.readouterr().err


@pytest.mark.slow
def test_device_check_dry_run_has_every_model_and_dtype(tmp_path):
  # The whole accelerator check, rehearsed on CPU (no install, tests collected, tiny
  # grids): its JSON holds rows for every model x dtype, and a table is printed.
  root = pathlib.Path(__file__).parents[1]
  env = {**os.environ, "DEVICE_CHECK_DRY": "1", "OUT": str(tmp_path),
         "DEVICE_CHECK_PYTHON": sys.executable}
  proc = subprocess.run(["bash", str(root / "benchmarks" / "device_check.sh")], cwd=root,
                        env=env, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads((tmp_path / "device_check.json").read_text())
  assert report["dry_run"] and report["engine_tests_rc"] == 0 and report["bench_rc"] == 0
  bench_report = report["bench"]
  assert bench_report["complete"] and bench_report["dtypes"] == ["float32", "bfloat16"]
  cells = {(r["model"], r["dtype"], r["case"]) for r in bench_report["rows"]}
  assert cells == {(m, d, c) for m in ("mlp", "cnn", "resnet20")
                   for d in ("float32", "bfloat16") for c in ("lrjax", "scans", "vmap_scan")}
  assert all(r["allclose"] for r in bench_report["rows"] if r["case"] == "lrjax")
  assert "| resnet20 | bfloat16 | 2 | 32 | lrjax |" in proc.stdout
