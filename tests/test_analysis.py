"""Tests for lrjax.analysis: loading runs, best LRs, scaling, stability and summary.json."""
import json

import numpy as np
import pandas as pd
import pytest

from lrjax import analysis
from lrjax.errors import ConfigError
from lrjax.analysis.synthetic import save_run, synthetic_run

LRS = tuple(0.01 * 2.0 ** k for k in range(-2, 7))
N_BOOT = 200


def test_best_lr_linear_grid_recovers_optimum():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64, 128, 256), augs=(0.0, 1.0))
  table = analysis.best_lr(run.members, metric="final_val_acc", n_boot=N_BOOT)
  assert len(table) == 8
  expected = 0.01 * table["batch_size"] / 32
  np.testing.assert_allclose(table["best_lr"], expected, rtol=1e-9)
  assert (table["best_lr_lo"] <= table["best_lr"] * (1 + 1e-9)).all()
  assert (table["best_lr_hi"] >= table["best_lr"] * (1 - 1e-9)).all()
  assert not table["edge"].any()


def test_scaling_exponent_linear_verdict_when_planted_linear():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64, 128, 256), augs=(0.0, 0.5))
  fit = analysis.scaling_exponent(run.members, metric="final_val_acc", n_boot=N_BOOT)
  np.testing.assert_allclose(fit["alpha"], 1.0, atol=1e-6)
  assert (fit["n_batch_sizes"] == 4).all()
  assert ((fit["alpha_hi"] - fit["alpha_lo"]) < 1e-6).all()   # noise-free: no spread
  assert (fit["verdict"] == "linear").all()


def test_scaling_exponent_sqrt_verdict_when_planted_sqrt():
  # Batch sizes 4x apart so sqrt scaling lands exactly on the power-of-2 LR grid.
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 128, 512, 2048), augs=(0.0,),
                      exponent=0.5)
  table = analysis.best_lr(run.members, metric="final_val_acc", n_boot=0)
  np.testing.assert_allclose(table["best_lr"], [0.01, 0.02, 0.04, 0.08], rtol=1e-9)
  fit = analysis.scaling_exponent(run.members, metric="final_val_acc", n_boot=N_BOOT)
  np.testing.assert_allclose(fit["alpha"], 0.5, atol=1e-6)
  assert fit["verdict"].tolist() == ["sqrt"]


def test_scaling_exponent_sqrt_verdict_when_planted_sqrt_with_noise():
  # Real-ish: quarter-octave LR grid, member noise, 3 seeds.
  lrs = tuple(0.01 * 2.0 ** (k / 4) for k in range(-12, 25))
  run = synthetic_run(lrs=lrs, batch_sizes=(32, 64, 128, 256, 512), augs=(0.0,),
                      seeds=(0, 1, 2), exponent=0.5, noise=0.003, diverge_above=16.0)
  r = analysis.scaling_exponent(run.members, n_boot=1000).iloc[0]
  assert r["alpha_lo"] <= 0.5 <= r["alpha_hi"] and r["alpha_hi"] < 1.0
  assert r["verdict"] == "sqrt" and r["n_batch_sizes"] == 5


def test_scaling_exponent_is_least_squares_slope_of_interior_optima():
  rng = np.random.default_rng(0)
  lrs = tuple(0.01 * 2.0 ** (k / 4) for k in range(-8, 25))
  run = synthetic_run(lrs=lrs, batch_sizes=(32, 64, 128, 256), augs=(0.0,),
                      seeds=(0, 1, 2), noise=0.01, rng_seed=int(rng.integers(100)))
  best = analysis.best_lr(run.members, n_boot=0)
  interior = best[~best["edge"]]
  slope = np.polyfit(np.log(interior["batch_size"]), np.log(interior["best_lr"]), 1)[0]
  fit = analysis.scaling_exponent(run.members, n_boot=N_BOOT).iloc[0]
  assert fit["alpha"] == pytest.approx(slope, rel=1e-9)
  assert fit["alpha_lo"] < fit["alpha"] < fit["alpha_hi"]


def test_scaling_exponent_nan_single_batch_size():
  run = synthetic_run(lrs=LRS, batch_sizes=(32,), augs=(0.0,), seeds=(0, 1))
  fit = analysis.scaling_exponent(run.members, n_boot=N_BOOT).iloc[0]
  assert fit["n_batch_sizes"] == 1 and np.isnan(fit["alpha"])
  assert fit["verdict"] == "not settled"


def test_best_lr_loss_metric_minimised():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0,), seeds=(0,))
  table = analysis.best_lr(run.members, metric="final_val_loss", n_boot=0)
  np.testing.assert_allclose(table["best_lr"], [0.01, 0.02])


def test_best_lr_partially_diverged_lr_excluded():
  # LR 1.0 is best on the seed that survived, but diverged on the other seed.
  m = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "batch_size": 32, "aug": 0.0,
                    "seed": [0, 1, 0, 1], "diverged": [False, False, False, True],
                    "final_val_acc": [0.8, 0.82, 0.95, np.nan]})
  row = analysis.best_lr(m, metric="final_val_acc", n_boot=N_BOOT).iloc[0]
  assert row["best_lr"] == 0.1
  np.testing.assert_allclose(row["best_metric"], 0.81)
  assert row["edge"]


def test_best_lr_refined_between_grid_neighbours_of_flat_optimum():
  m = pd.DataFrame({"lr": [0.01, 0.03, 0.1, 0.3, 1.0], "batch_size": 32, "aug": 0.0,
                    "seed": 0, "diverged": False,
                    "final_val_acc": [0.5, 0.895, 0.9, 0.893, 0.6]})
  row = analysis.best_lr(m, metric="final_val_acc", n_boot=N_BOOT).iloc[0]
  assert row["grid_best_lr"] == 0.1 and 0.03 < row["best_lr"] < 0.3
  assert not row["has_interval"] and np.isnan(row["best_lr_lo"])  # one seed


def test_best_lr_splits_cells_by_extra_axis():
  run = synthetic_run(lrs=LRS, batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                      extra_axes={"momentum": (0.0, 0.9)})
  m = run.members.copy()
  m.loc[m["momentum"] == 0.9, "final_val_acc"] += 0.01  # momentum 0.9 a bit better
  assert analysis.grid_axes(m) == ["lr", "batch_size", "aug", "seed", "momentum"]
  table = analysis.best_lr(m, metric="final_val_acc", n_boot=0)
  assert table["momentum"].tolist() == [0.0, 0.9]
  np.testing.assert_allclose(table["best_lr"], 0.01)
  assert np.diff(table["best_metric"])[0] == pytest.approx(0.01)


def test_best_lr_all_diverged_nan():
  run = synthetic_run(lrs=(1.0, 2.0), batch_sizes=(32, 64), augs=(0.0,), seeds=(0,),
                      diverge_above=0.5)
  assert run.members["diverged"].all()
  table = analysis.best_lr(run.members, n_boot=0)
  assert table["best_lr"].isna().all() and (table["n_usable_lrs"] == 0).all()
  fit = analysis.scaling_exponent(run.members, n_boot=0)
  assert (fit["n_batch_sizes"] == 0).all() and fit["alpha"].isna().all()
  assert (fit["verdict"] == "not settled").all()


def test_max_stable_lr_values():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64, 128, 256), augs=(0.0,),
                      seeds=(0, 1), diverge_above=8.0)
  b = analysis.max_stable_lr(run.members)
  # Diverges above 8x the optimum 0.01 * B/32: first diverging LR is 16x the optimum.
  np.testing.assert_allclose(b["next_lr"], [0.16, 0.32, 0.64, np.nan])
  np.testing.assert_allclose(b["max_stable_lr"], [0.08, 0.16, 0.32, 0.64])
  assert b["next_status"].tolist() == ["diverged 2/2"] * 3 + [""]


def test_max_stable_lr_ignores_instability_below_a_stable_lr():
  # The old divergence_boundary called nothing stable here (the smallest LR lost a seed);
  # max_stable_lr is the largest LR where every seed trained, documented as such.
  m = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "batch_size": 32, "aug": 0.0,
                    "seed": [0, 1, 0, 1], "diverged": [False, True, False, False]})
  row = analysis.max_stable_lr(m).iloc[0]
  assert row["max_stable_lr"] == 1.0 and np.isnan(row["next_lr"])


def test_summarize_json_serialisable():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0, 1.0), aug_shift=1.0)
  s = analysis.summarize(run, n_boot=N_BOOT)
  json.dumps(s, allow_nan=False)
  assert s["n_members"] == len(run.members)
  assert s["n_diverged"] == int(run.members["diverged"].sum())
  assert s["best_member"]["lr"] in (0.01, 0.02, 0.04)
  assert set(s["axes"]) == {"lr", "batch_size", "aug", "seed"}
  ratios = {(r["batch_size"], r["aug"]): np.exp(r["d_log_best_lr"]) for r in s["aug_effect"]}
  assert ratios[(32, 1.0)] == pytest.approx(2.0)


def test_summarize_reports_estimates_with_intervals_and_findings():
  run = synthetic_run(lrs=tuple(0.01 * 2.0 ** (k / 2) for k in range(-6, 13)),
                      batch_sizes=(32, 64, 128, 256), augs=(0.0, 1.0), seeds=(0, 1, 2),
                      noise=0.003, noise_scale=40.0, n_evals=20, status_columns=True)
  s = analysis.summarize(run, n_boot=N_BOOT)
  json.dumps(s, allow_nan=False)
  assert s["metric"] == "final_val_loss" and s["status_source"] == "status column"
  assert sum(s["status_counts"].values()) == s["n_members"]
  assert all({"best_lr_lo", "best_lr_hi", "edge"} <= set(r) for r in s["best_lr"])
  assert [r["aug"] for r in s["scaling"]] == [0.0, 1.0]
  assert all(r["verdict"] == "linear" and r["alpha_lo"] <= 1 <= r["alpha_hi"]
             for r in s["scaling"])
  assert len(s["max_stable_lr"]) == 8 and len(s["aug_effect_pooled"]) == 1
  assert len(s["steps_to_target"]["critical_batch"]) == 2
  assert [r["aug"] for r in s["noise_scale"]] == [0.0, 1.0]
  assert any(f.startswith("Best LR vs batch size at aug 0: exponent") for f in s["findings"])


def test_summarize_not_settled_with_two_batch_sizes():
  # The old fit called this "linear" from two points; two batch sizes cannot settle it.
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0, 1.0), seeds=(0, 1, 2),
                      noise=0.003)
  s = analysis.summarize(run, n_boot=N_BOOT)
  assert [r["verdict"] for r in s["scaling"]] == ["not settled", "not settled"]
  assert all("only 2 of 2 batch sizes" in r["reason"] for r in s["scaling"])


def test_summarize_derives_status_from_train_losses_when_column_absent():
  run = synthetic_run(lrs=(0.001, 0.01, 0.02), batch_sizes=(32,), augs=(0.0,),
                      seeds=(0,), fail_below=0.5, train_loss_columns=True)
  assert "status" not in run.members
  s = analysis.summarize(run, n_boot=0)
  assert s["status_counts"] == {"trained": 2, "failed": 1, "diverged": 0}
  assert s["status_source"].startswith("derived: training loss fell < 10% or accuracy")
  assert s["max_stable_lr"][0]["max_stable_lr"] == 0.02
  assert s["best_lr"][0]["grid_best_lr"] == 0.01 and s["best_lr"][0]["edge"]


def test_summarize_all_diverged_warns():
  run = synthetic_run(lrs=(1.0,), batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                      diverge_above=0.5)
  s = analysis.summarize(run, n_boot=N_BOOT)
  json.dumps(s, allow_nan=False)
  assert s["best_member"] is None and s["n_diverged"] == 1
  assert any("diverged" in w for w in s["warnings"])


def test_load_run_roundtrip(tmp_path):
  run = synthetic_run(lrs=(0.01, 0.02), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  loaded = analysis.load_run(save_run(run, str(tmp_path)))
  assert loaded.config["grid"]["lr"] == [0.01, 0.02]
  pd.testing.assert_frame_equal(loaded.members, run.members, check_dtype=False)
  assert len(loaded.history) == len(run.history)


def test_load_run_missing_files_raises(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    analysis.load_run(str(tmp_path / "nope"))
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(ConfigError, match="members.parquet, history.parquet"):
    analysis.load_run(str(tmp_path))


def test_load_run_missing_column_raises(tmp_path):
  run = synthetic_run(lrs=(0.01,), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  save_run(run._replace(members=run.members.drop(columns=["diverged"])), str(tmp_path))
  with pytest.raises(ConfigError, match="diverged"):
    analysis.load_run(str(tmp_path))


def test_dataset_sizes_read_from_run_info(tmp_path):
  run = synthetic_run(lrs=(0.01,), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  config = {k: v for k, v in run.config.items() if k not in ("num_classes", "num_val")}
  save_run(run._replace(config=config), str(tmp_path))
  (tmp_path / "run_info.json").write_text(json.dumps({"num_classes": 10, "num_val": 250}))
  assert analysis.dataset_sizes(analysis.load_run(str(tmp_path))) == (10, 250)


def test_unknown_metric_raises():
  run = synthetic_run(lrs=(0.01,), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  with pytest.raises(ConfigError, match="final_val_acc"):
    analysis.best_lr(run.members, metric="val_f1")


def test_best_lr_engine_columns_without_aug_seed():
  # As lrjax.trainer writes it for a grid of lr x batch_size only, with `updates`.
  m = pd.DataFrame({"member": range(4), "batch_size": [32, 32, 64, 64],
                    "lr": [0.1, 1.0, 0.1, 1.0], "diverged": [False, True, False, False],
                    "diverged_at": [np.nan, 64.0, np.nan, np.nan],
                    "updates": [40, 2, 20, 20],
                    "final_val_acc": np.float32([0.9, np.nan, 0.8, 0.85])})
  assert analysis.grid_axes(analysis.with_default_axes(m)) == [
      "lr", "batch_size", "aug", "seed"]
  table = analysis.best_lr(m, metric="final_val_acc", n_boot=0)
  assert table["best_lr"].tolist() == [0.1, 1.0] and (table["aug"] == 0.0).all()
  b = analysis.max_stable_lr(m)
  assert b["next_lr"].tolist()[0] == 1.0
  s = analysis.summarize(analysis.RunTables({"grid": {"lr": [0.1, 1.0]}}, m, pd.DataFrame(), ""),
                         metric="final_val_acc", n_boot=0)
  assert s["best_member"]["lr"] == 0.1 and s["n_diverged"] == 1


def test_grid_axes_skips_status_and_train_loss_columns():
  run = synthetic_run(lrs=(0.01,), batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                      status_columns=True)
  assert analysis.grid_axes(run.members) == ["lr", "batch_size", "aug", "seed"]


def test_jsonable_and_metric_mode():
  assert analysis.jsonable({"a": np.float32(0.5), "b": [np.nan, np.int64(3)]}) == {
      "a": 0.5, "b": [None, 3]}
  assert analysis.metric_mode("final_val_loss") == "min"
  assert analysis.metric_mode("test_acc") == "max"
