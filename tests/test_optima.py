"""Tests for lrjax.analysis.optima: best LR and the LR-batch scaling exponent.

Each planted table is generated from a fixed seed, so every assertion is
deterministic; the plants are sized so the answer is clear at that noise level.
"""
import numpy as np
import pandas as pd
import pytest

from lrjax.analysis import optima
from lrjax.analysis.synthetic import synthetic_members, synthetic_run
from lrjax.errors import ConfigError

BATCHES = (16, 32, 64, 128, 256, 512)
N_BOOT = 300
# Octave and quarter-octave LR grids around synthetic_run's optimum 0.01 at batch 32.
OCTAVES = tuple(0.01 * 2.0 ** k for k in range(-2, 7))
QUARTER_OCTAVES = tuple(0.01 * 2.0 ** (k / 4) for k in range(-12, 25))


# ------------------------------------------------------------------ best LR


def test_best_lr_uses_status_column_when_present():
  t = synthetic_members(batch_sizes=(64,), seeds=(0, 1, 2), noise=0.0)
  grid_best = optima.best_lr(t, n_boot=0)["grid_best_lr"][0]
  # Mark one seed at the best LR as failed: that LR can no longer be chosen.
  failed = (t["lr"] == grid_best) & (t["seed"] == 1)
  r = optima.best_lr(t.assign(status=np.where(failed, "failed", "trained")), n_boot=0)
  assert r["grid_best_lr"][0] != grid_best


def test_best_lr_refines_off_grid_optimum_when_noise_free():
  lrs = 2.0 ** np.arange(-10, -4, 0.5)  # optimum 0.01 * 2 ** 0.5 ** ... is off-grid
  t = synthetic_members(batch_sizes=(32, 128), lrs=lrs, seeds=(0, 1), noise=0.0)
  r = optima.best_lr(t, n_boot=0)
  np.testing.assert_allclose(r["best_lr"], [0.01, 0.02], rtol=1e-9)
  assert not r["edge"].any()
  assert r["grid_best_lr"].isin(lrs).all()


def test_best_lr_interval_contains_planted_optimum_with_four_seeds():
  t = synthetic_members(batch_sizes=(32, 128), seeds=(0, 1, 2, 3))
  r = optima.best_lr(t, n_boot=N_BOOT)
  assert r["has_interval"].all()
  assert ((r["best_lr_lo"] <= [0.01, 0.02]) & ([0.01, 0.02] <= r["best_lr_hi"])).all()


def test_best_lr_excludes_lr_where_one_seed_diverged():
  t = synthetic_members(batch_sizes=(64,), seeds=(0, 1, 2), noise=0.0)
  grid_best = optima.best_lr(t, n_boot=0)["grid_best_lr"][0]
  bad = (t["lr"] == grid_best) & (t["seed"] == 2)
  t.loc[bad, "diverged"] = True
  t.loc[bad, "final_val_loss"] = np.nan
  r = optima.best_lr(t, n_boot=0)
  assert r["grid_best_lr"][0] != grid_best
  # LR 1.0 is best on the seed that survived, but diverged on the other seed.
  m = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "batch_size": 32, "aug": 0.0,
                    "seed": [0, 1, 0, 1], "diverged": [False, False, False, True],
                    "final_val_acc": [0.8, 0.82, 0.95, np.nan]})
  row = optima.best_lr(m, metric="final_val_acc", n_boot=200).iloc[0]
  assert row["best_lr"] == 0.1
  np.testing.assert_allclose(row["best_metric"], 0.81)
  assert row["edge"]


def test_best_lr_minimises_loss_metrics():
  run = synthetic_run(lrs=OCTAVES, batch_sizes=(32, 64), augs=(0.0,), seeds=(0,))
  table = optima.best_lr(run.members, metric="final_val_loss", n_boot=0)
  np.testing.assert_allclose(table["best_lr"], [0.01, 0.02])


def test_best_lr_maximises_accuracy_metrics():
  t = synthetic_members(batch_sizes=(64,), seeds=(0, 1), noise=0.0)
  r = optima.best_lr(t, metric="final_val_acc", n_boot=0)
  mean_over_seeds = t.groupby("lr")["final_val_acc"].mean()
  assert r["best_metric"][0] == pytest.approx(mean_over_seeds.max())
  assert r["grid_best_lr"][0] == mean_over_seeds.idxmax()


def test_best_lr_recovers_planted_optimum_when_grid_holds_it():
  run = synthetic_run(lrs=OCTAVES, batch_sizes=(32, 64, 128, 256), augs=(0.0, 1.0))
  table = optima.best_lr(run.members, metric="final_val_acc", n_boot=200)
  assert len(table) == 8
  expected = 0.01 * table["batch_size"] / 32
  np.testing.assert_allclose(table["best_lr"], expected, rtol=1e-9)
  assert (table["best_lr_lo"] <= table["best_lr"] * (1 + 1e-9)).all()
  assert (table["best_lr_hi"] >= table["best_lr"] * (1 - 1e-9)).all()
  assert not table["edge"].any()


def test_best_lr_refined_within_grid_neighbours_of_flat_optimum():
  m = pd.DataFrame({"lr": [0.01, 0.03, 0.1, 0.3, 1.0], "batch_size": 32, "aug": 0.0,
                    "seed": 0, "diverged": False,
                    "final_val_acc": [0.5, 0.895, 0.9, 0.893, 0.6]})
  row = optima.best_lr(m, metric="final_val_acc", n_boot=200).iloc[0]
  assert row["grid_best_lr"] == 0.1 and 0.03 < row["best_lr"] < 0.3
  assert not row["has_interval"] and np.isnan(row["best_lr_lo"])  # one seed


def test_best_lr_flags_edge_when_optimum_beyond_grid():
  lrs = 2.0 ** np.arange(-14, -9, 0.25)  # all below every planted optimum (≥ 0.01)
  t = synthetic_members(batch_sizes=BATCHES, lrs=lrs, seeds=(0, 1, 2))
  r = optima.best_lr(t, n_boot=50)
  assert r["edge"].all()
  np.testing.assert_array_equal(r["best_lr"], lrs.max())  # no refinement at an edge


def test_best_lr_flags_edge_when_larger_lrs_diverge():
  t = synthetic_members(batch_sizes=(64,), seeds=(0, 1), diverge_factor=0.9)
  r = optima.best_lr(t, n_boot=0)
  assert r["edge"][0] and r["grid_best_lr"][0] < 0.01 * 2 ** 0.5


def test_best_lr_no_interval_with_one_seed():
  r = optima.best_lr(synthetic_members(batch_sizes=(32, 64), seeds=(0,)), n_boot=100)
  assert not r["has_interval"].any()
  assert r["best_lr_lo"].isna().all() and r["best_lr_hi"].isna().all()
  assert r["best_lr"].notna().all()


def test_best_lr_replicates_are_joint_and_reproducible():
  t = synthetic_members(batch_sizes=(32, 64, 128), seeds=(0, 1, 2))
  a = optima.best_lr_replicates(t, n_boot=40, rng_seed=3)
  b = optima.best_lr_replicates(t, n_boot=40, rng_seed=3)
  assert a.shape == (40, 3)
  np.testing.assert_array_equal(a, b)
  # The interval of best_lr is built from these same replicates.
  r = optima.best_lr(t, n_boot=40, rng_seed=3)
  assert (r["best_lr_lo"] <= np.median(a, 0)).all() and (np.median(a, 0) <= r["best_lr_hi"]).all()


def test_best_lr_splits_cells_by_extra_axes():
  a = synthetic_members(batch_sizes=(32, 64), seeds=(0, 1)).assign(optimizer="sgd")
  b = synthetic_members(batch_sizes=(32, 64), seeds=(0, 1), lr_ref=0.04).assign(optimizer="adam")
  r = optima.best_lr(pd.concat([a, b.assign(member=b["member"] + len(a))]), n_boot=0)
  assert list(r.columns[:3]) == ["batch_size", "aug", "optimizer"]
  by_opt = r.groupby("optimizer")["best_lr"].mean()
  assert by_opt["adam"] / by_opt["sgd"] == pytest.approx(4, rel=0.1)
  # An axis that moves the metric but not the optimum: same best LR, its own metric.
  run = synthetic_run(lrs=OCTAVES, batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                      extra_axes={"momentum": (0.0, 0.9)})
  m = run.members.copy()
  m.loc[m["momentum"] == 0.9, "final_val_acc"] += 0.01  # momentum 0.9 a bit better
  table = optima.best_lr(m, metric="final_val_acc", n_boot=0)
  assert table["momentum"].tolist() == [0.0, 0.9]
  np.testing.assert_allclose(table["best_lr"], 0.01)
  assert np.diff(table["best_metric"])[0] == pytest.approx(0.01)


def test_best_lr_nan_when_every_member_diverged():
  run = synthetic_run(lrs=(1.0, 2.0), batch_sizes=(32, 64), augs=(0.0,), seeds=(0,),
                      diverge_above=0.5)
  assert run.members["diverged"].all()
  table = optima.best_lr(run.members, n_boot=0)
  assert table["best_lr"].isna().all() and (table["n_usable_lrs"] == 0).all()
  fit = optima.scaling_exponent(run.members, n_boot=0)
  assert (fit["n_batch_sizes"] == 0).all() and fit["alpha"].isna().all()
  assert (fit["verdict"] == "not settled").all()


# ------------------------------------------------------------------ scaling exponent


def _sqrt_members():
  return synthetic_members(batch_sizes=BATCHES, exponent=0.5, seeds=(0, 1, 2))


def _sqrt_run_members():
  # Accuracy-based plant with member noise and divergence, on a quarter-octave grid.
  return synthetic_run(lrs=QUARTER_OCTAVES, batch_sizes=(32, 64, 128, 256, 512),
                       augs=(0.0,), seeds=(0, 1, 2), exponent=0.5, noise=0.003,
                       diverge_above=16.0).members


@pytest.mark.parametrize("table, n_boot", [(_sqrt_members, N_BOOT), (_sqrt_run_members, 1000)],
                         ids=["synthetic_members", "synthetic_run"])
def test_scaling_exponent_sqrt_when_planted_at_sqrt(table, n_boot):
  t = table()
  r = optima.scaling_exponent(t, n_boot=n_boot).iloc[0]
  assert r["alpha_lo"] <= 0.5 <= r["alpha_hi"] and r["alpha_hi"] < 1.0
  assert r["verdict"] == "sqrt" and r["n_batch_sizes"] == t["batch_size"].nunique()


def test_scaling_exponent_exact_when_planted_sqrt_without_noise():
  # Batch sizes 4x apart so sqrt scaling lands exactly on the power-of-2 LR grid.
  run = synthetic_run(lrs=OCTAVES, batch_sizes=(32, 128, 512, 2048), augs=(0.0,),
                      exponent=0.5)
  table = optima.best_lr(run.members, metric="final_val_acc", n_boot=0)
  np.testing.assert_allclose(table["best_lr"], [0.01, 0.02, 0.04, 0.08], rtol=1e-9)
  fit = optima.scaling_exponent(run.members, metric="final_val_acc", n_boot=200)
  np.testing.assert_allclose(fit["alpha"], 0.5, atol=1e-6)
  assert fit["verdict"].tolist() == ["sqrt"]


def test_scaling_exponent_exact_when_planted_linear_without_noise():
  run = synthetic_run(lrs=OCTAVES, batch_sizes=(32, 64, 128, 256), augs=(0.0, 0.5))
  fit = optima.scaling_exponent(run.members, metric="final_val_acc", n_boot=200)
  np.testing.assert_allclose(fit["alpha"], 1.0, atol=1e-6)
  assert (fit["n_batch_sizes"] == 4).all()
  assert ((fit["alpha_hi"] - fit["alpha_lo"]) < 1e-6).all()   # noise-free: no spread
  assert (fit["verdict"] == "linear").all()


def test_scaling_exponent_linear_when_planted_at_linear():
  t = synthetic_members(batch_sizes=BATCHES, exponent=1.0, seeds=(0, 1, 2))
  r = optima.scaling_exponent(t, n_boot=N_BOOT).iloc[0]
  assert r["alpha_lo"] <= 1.0 <= r["alpha_hi"]
  assert r["verdict"] == "linear"


def test_scaling_exponent_is_least_squares_slope_of_interior_optima():
  rng = np.random.default_rng(0)
  lrs = tuple(0.01 * 2.0 ** (k / 4) for k in range(-8, 25))
  run = synthetic_run(lrs=lrs, batch_sizes=(32, 64, 128, 256), augs=(0.0,),
                      seeds=(0, 1, 2), noise=0.01, rng_seed=int(rng.integers(100)))
  best = optima.best_lr(run.members, n_boot=0)
  interior = best[~best["edge"]]
  slope = np.polyfit(np.log(interior["batch_size"]), np.log(interior["best_lr"]), 1)[0]
  fit = optima.scaling_exponent(run.members, n_boot=200).iloc[0]
  assert fit["alpha"] == pytest.approx(slope, rel=1e-9)
  assert fit["alpha_lo"] < fit["alpha"] < fit["alpha_hi"]


def test_scaling_exponent_neither_when_planted_at_zero():
  t = synthetic_members(batch_sizes=BATCHES, exponent=0.0, seeds=(0, 1, 2))
  assert optima.scaling_exponent(t, n_boot=N_BOOT)["verdict"][0] == "neither"


def test_scaling_exponent_not_settled_when_noise_swamps_the_slope():
  t = synthetic_members(batch_sizes=(64, 128, 256), exponent=0.75, seeds=(0, 1, 2),
                        noise=0.5, lrs=2.0 ** np.arange(-9, -2, 1.0))
  r = optima.scaling_exponent(t, n_boot=N_BOOT).iloc[0]
  assert r["n_batch_sizes"] == 3
  assert r["alpha_lo"] <= 0.5 and r["alpha_hi"] >= 1.0
  assert r["verdict"] == "not settled" and "both" in r["reason"]


def test_scaling_exponent_not_settled_with_two_batch_sizes():
  t = synthetic_members(batch_sizes=(64, 256), seeds=(0, 1, 2))
  r = optima.scaling_exponent(t, n_boot=N_BOOT).iloc[0]
  assert r["verdict"] == "not settled" and "only 2" in r["reason"]
  assert np.isnan(r["alpha_lo"])


def test_scaling_exponent_nan_with_one_batch_size():
  run = synthetic_run(lrs=OCTAVES, batch_sizes=(32,), augs=(0.0,), seeds=(0, 1))
  fit = optima.scaling_exponent(run.members, n_boot=200).iloc[0]
  assert fit["n_batch_sizes"] == 1 and np.isnan(fit["alpha"])
  assert fit["verdict"] == "not settled"


def test_scaling_exponent_not_settled_when_optima_at_grid_edge():
  lrs = 2.0 ** np.arange(-14, -9, 0.25)
  t = synthetic_members(batch_sizes=BATCHES, lrs=lrs, seeds=(0, 1, 2))
  r = optima.scaling_exponent(t, n_boot=50).iloc[0]
  assert r["verdict"] == "not settled" and r["n_batch_sizes"] == 0
  assert np.isnan(r["alpha"])


def test_scaling_exponent_not_settled_with_one_seed():
  t = synthetic_members(batch_sizes=BATCHES, seeds=(0,))
  r = optima.scaling_exponent(t, n_boot=N_BOOT).iloc[0]
  assert r["verdict"] == "not settled" and "one seed" in r["reason"]
  assert r["alpha"] == pytest.approx(0.5, abs=0.05)  # the point estimate is still there


def test_scaling_exponent_groups_by_aug():
  t = synthetic_members(batch_sizes=BATCHES, augs=(0.0, 0.5), seeds=(0, 1, 2))
  r = optima.scaling_exponent(t, n_boot=50)
  assert r["aug"].tolist() == [0.0, 0.5]


def test_scaling_exponent_rejects_by_that_merges_cells():
  a = synthetic_members(batch_sizes=(32, 64, 128), seeds=(0, 1)).assign(optimizer="sgd")
  b = a.assign(optimizer="adam", member=a["member"] + len(a))
  with pytest.raises(ConfigError, match="by"):
    optima.scaling_exponent(pd.concat([a, b]), by="aug", n_boot=10)


def test_scaling_exponent_groups_by_extra_axis():
  a = synthetic_members(batch_sizes=(32, 64, 128, 256), seeds=(0, 1, 2)).assign(optimizer="sgd")
  b = synthetic_members(batch_sizes=(32, 64, 128, 256), seeds=(0, 1, 2), exponent=1.0
                        ).assign(optimizer="adam")
  r = optima.scaling_exponent(pd.concat([a, b.assign(member=b["member"] + len(a))]),
                              n_boot=N_BOOT)
  assert dict(zip(r["optimizer"], r["verdict"])) == {"adam": "linear", "sgd": "sqrt"}


def test_scaling_band_contains_fitted_line_and_matches_exponent():
  t = synthetic_members(batch_sizes=BATCHES, exponent=0.5, seeds=(0, 1, 2))
  fit = optima.scaling_exponent(t, n_boot=N_BOOT).iloc[0]
  band = optima.scaling_band(t, n_boot=N_BOOT, n_points=5)
  assert len(band) == 5 and band["batch_size"].iloc[[0, -1]].round().tolist() == [16, 512]
  assert ((band["lr_lo"] <= band["lr"]) & (band["lr"] <= band["lr_hi"])).all()
  slope = np.polyfit(np.log(band["batch_size"]), np.log(band["lr"]), 1)[0]
  assert slope == pytest.approx(fit["alpha"])
  assert np.exp(fit["intercept"]) * 16 ** fit["alpha"] == pytest.approx(band["lr"].iloc[0])


def test_scaling_band_empty_when_fewer_than_two_interior_optima():
  lrs = 2.0 ** np.arange(-14, -9, 0.25)
  t = synthetic_members(batch_sizes=BATCHES, lrs=lrs, seeds=(0, 1))
  assert optima.scaling_band(t, n_boot=20).empty


# ------------------------------------------------------------------ input checks


def test_best_lr_raises_config_error_for_unknown_metric():
  # The message names the metric columns the table has.
  with pytest.raises(ConfigError, match="metric.*final_val_acc"):
    optima.best_lr(synthetic_members(batch_sizes=(32,)), metric="final_val_lss")


def test_best_lr_raises_config_error_for_duplicate_settings():
  t = synthetic_members(batch_sizes=(32,), seeds=(0,))
  with pytest.raises(ConfigError, match="members"):
    optima.best_lr(pd.concat([t, t]))


def test_best_lr_raises_config_error_for_missing_columns():
  with pytest.raises(ConfigError, match="batch_size"):
    optima.best_lr(pd.DataFrame({"lr": [0.1], "final_val_loss": [1.0]}))


def test_best_lr_raises_config_error_for_negative_n_boot():
  with pytest.raises(ConfigError, match="n_boot"):
    optima.best_lr(synthetic_members(batch_sizes=(32,)), n_boot=-1)
