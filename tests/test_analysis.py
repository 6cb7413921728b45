"""Tests for lrjax.analysis: tables, divergence boundary and the scaling fit."""
import json

import numpy as np
import pandas as pd
import pytest

from lrjax import analysis
from lrjax.errors import ConfigError
from lrjax.analysis.synthetic import save_run, synthetic_run

LRS = tuple(0.01 * 2.0 ** k for k in range(-2, 7))


def test_best_lr_table_linear_grid_recovers_optimum():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64, 128, 256), augs=(0.0, 1.0))
  table = analysis.best_lr_table(run.members)
  assert len(table) == 8
  expected = 0.01 * table["batch_size"] / 32
  np.testing.assert_allclose(table["best_lr"], expected, rtol=1e-12)
  assert (table["lr_lo"] <= table["best_lr"]).all()
  assert (table["lr_hi"] >= table["best_lr"]).all()
  assert (table["edge"] == "").all()


def test_fit_slope_one_linear_scaling():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64, 128, 256), augs=(0.0, 0.5))
  fit = analysis.fit_lr_batch_scaling(analysis.best_lr_table(run.members))
  np.testing.assert_allclose(fit["slope"], 1.0, atol=1e-6)
  assert (fit["n_points"] == 4).all()
  assert (fit["slope_se"] < 1e-6).all()
  assert fit["consistent_linear"].all() and not fit["consistent_sqrt"].any()
  assert (fit["closer_to"] == "linear").all()


def test_fit_slope_half_sqrt_scaling():
  # Batch sizes 4x apart so sqrt scaling lands exactly on the power-of-2 LR grid.
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 128, 512, 2048), augs=(0.0,),
                      exponent=0.5)
  table = analysis.best_lr_table(run.members)
  np.testing.assert_allclose(table["best_lr"], [0.01, 0.02, 0.04, 0.08], rtol=1e-12)
  fit = analysis.fit_lr_batch_scaling(table)
  np.testing.assert_allclose(fit["slope"], 0.5, atol=1e-6)
  assert fit["closer_to"].tolist() == ["sqrt"]


def test_fit_standard_error_noisy_points():
  table = pd.DataFrame({"batch_size": [32, 64, 128, 256], "aug": 0.0,
                        "best_lr": [0.01, 0.025, 0.04, 0.09]})
  fit = analysis.fit_lr_batch_scaling(table).iloc[0]
  x, y = np.log([32, 64, 128, 256]), np.log([0.01, 0.025, 0.04, 0.09])
  slope, _ = np.polyfit(x, y, 1)
  resid = y - np.polyval(np.polyfit(x, y, 1), x)
  se = np.sqrt(np.sum(resid ** 2) / 2 / np.sum((x - x.mean()) ** 2))
  np.testing.assert_allclose([fit["slope"], fit["slope_se"]], [slope, se], rtol=1e-9)
  np.testing.assert_allclose(fit["z_linear"], (slope - 1) / se, rtol=1e-9)


def test_fit_nan_single_batch_size():
  table = pd.DataFrame({"batch_size": [32], "aug": 0.0, "best_lr": [0.01]})
  fit = analysis.fit_lr_batch_scaling(table).iloc[0]
  assert fit["n_points"] == 1 and np.isnan(fit["slope"]) and fit["closer_to"] == ""


def test_best_lr_table_loss_metric_minimised():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0,), seeds=(0,))
  table = analysis.best_lr_table(run.members, metric="final_val_loss")
  np.testing.assert_allclose(table["best_lr"], [0.01, 0.02])


def test_best_lr_table_partially_diverged_lr_excluded():
  # LR 1.0 is best on the seed that survived, but diverged on the other seed.
  m = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "batch_size": 32, "aug": 0.0,
                    "seed": [0, 1, 0, 1], "diverged": [False, False, False, True],
                    "final_val_acc": [0.8, 0.82, 0.95, np.nan]})
  row = analysis.best_lr_table(m).iloc[0]
  assert row["best_lr"] == 0.1
  np.testing.assert_allclose(row["value"], 0.81)
  assert row["edge"] == "low"


def test_best_lr_table_tolerance_range():
  m = pd.DataFrame({"lr": [0.01, 0.03, 0.1, 0.3, 1.0], "batch_size": 32, "aug": 0.0,
                    "seed": 0, "diverged": False,
                    "final_val_acc": [0.5, 0.895, 0.9, 0.893, 0.6]})
  row = analysis.best_lr_table(m, rel_tol=0.01).iloc[0]
  assert (row["best_lr"], row["lr_lo"], row["lr_hi"], row["n_within"]) == (0.1, 0.03, 0.3, 3)
  row = analysis.best_lr_table(m, rel_tol=0.001).iloc[0]
  assert (row["lr_lo"], row["lr_hi"], row["n_within"]) == (0.1, 0.1, 1)


def test_best_lr_table_extra_axis_maximised():
  run = synthetic_run(lrs=LRS, batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                      extra_axes={"momentum": (0.0, 0.9)})
  m = run.members.copy()
  m.loc[m["momentum"] == 0.9, "final_val_acc"] += 0.01  # momentum 0.9 a bit better
  assert analysis.grid_axes(m) == ["lr", "batch_size", "aug", "seed", "momentum"]
  row = analysis.best_lr_table(m).iloc[0]
  assert row["best_lr"] == 0.01 and row["momentum"] == 0.9


def test_best_lr_table_all_diverged_nan():
  run = synthetic_run(lrs=(1.0, 2.0), batch_sizes=(32, 64), augs=(0.0,), seeds=(0,),
                      diverge_above=0.5)
  assert run.members["diverged"].all()
  table = analysis.best_lr_table(run.members)
  assert table["best_lr"].isna().all() and (table["n_within"] == 0).all()
  fit = analysis.fit_lr_batch_scaling(table)
  assert (fit["n_points"] == 0).all() and fit["slope"].isna().all()


def test_divergence_boundary_values():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64, 128, 256), augs=(0.0,),
                      seeds=(0, 1), diverge_above=8.0)
  b = analysis.divergence_boundary(run.members)
  # Diverges above 8x the optimum 0.01 * B/32: first diverging LR is 16x the optimum.
  np.testing.assert_allclose(b["min_diverged_lr"], [0.16, 0.32, 0.64, np.nan])
  np.testing.assert_allclose(b["max_stable_lr"], [0.08, 0.16, 0.32, 0.64])
  assert b["n_diverged"].tolist() == [6, 4, 2, 0]


def test_divergence_boundary_single_seed_counts():
  m = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "batch_size": 32, "aug": 0.0,
                    "diverged": [False, True, False, False]})
  row = analysis.divergence_boundary(m).iloc[0]
  assert row["min_diverged_lr"] == 0.1 and np.isnan(row["max_stable_lr"])


def test_summarize_json_serialisable():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0, 1.0), aug_shift=1.0)
  s = analysis.summarize(run)
  json.dumps(s, allow_nan=False)
  assert s["n_members"] == len(run.members)
  assert s["n_diverged"] == int(run.members["diverged"].sum())
  assert s["best_member"]["lr"] in (0.01, 0.02, 0.04)
  assert set(s["axes"]) == {"lr", "batch_size", "aug", "seed"}
  ratios = {(r["batch_size"], r["aug"]): r["ratio_to_base"] for r in s["aug_effect"]}
  assert ratios[(32, 1.0)] == pytest.approx(2.0)


def test_summarize_all_diverged_warns():
  run = synthetic_run(lrs=(1.0,), batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                      diverge_above=0.5)
  s = analysis.summarize(run)
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


def test_unknown_metric_raises():
  run = synthetic_run(lrs=(0.01,), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  with pytest.raises(ConfigError, match="final_val_acc"):
    analysis.best_lr_table(run.members, metric="val_f1")


def test_best_lr_table_engine_columns_without_aug_seed():
  # As lrjax.trainer writes it for a grid of lr x batch_size only, with `updates`.
  m = pd.DataFrame({"member": range(4), "batch_size": [32, 32, 64, 64],
                    "lr": [0.1, 1.0, 0.1, 1.0], "diverged": [False, True, False, False],
                    "diverged_at": [np.nan, 64.0, np.nan, np.nan],
                    "updates": [40, 2, 20, 20],
                    "final_val_acc": np.float32([0.9, np.nan, 0.8, 0.85])})
  assert analysis.grid_axes(analysis.with_default_axes(m)) == [
      "lr", "batch_size", "aug", "seed"]
  table = analysis.best_lr_table(m)
  assert table["best_lr"].tolist() == [0.1, 1.0] and (table["aug"] == 0.0).all()
  b = analysis.divergence_boundary(m)
  assert b["min_diverged_lr"].tolist()[0] == 1.0
  s = analysis.summarize(analysis.RunTables({"grid": {"lr": [0.1, 1.0]}}, m, pd.DataFrame(), ""))
  assert s["best_member"]["lr"] == 0.1 and s["n_diverged"] == 1
