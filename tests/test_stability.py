"""Tests for lrjax.analysis.stability: max stable LR and the augmentation effect."""
import math

import numpy as np
import pandas as pd
import pytest

from lrjax.analysis import stability
from lrjax.analysis.synthetic import synthetic_members, synthetic_run
from lrjax.errors import ConfigError

N_BOOT = 300


# ------------------------------------------------------------------ max stable LR


def test_max_stable_lr_reports_next_lr_and_mixed_status():
  lrs = (0.01, 0.02, 0.04, 0.08)
  t = synthetic_members(batch_sizes=(64,), lrs=lrs, seeds=(0, 1, 2), lr_ref=0.02,
                        diverge_factor=3.0)  # 0.08 diverges on every seed
  t.loc[(t["lr"] == 0.04) & (t["seed"] == 1), "diverged"] = True
  r = stability.max_stable_lr(t).iloc[0]
  assert r["max_stable_lr"] == 0.02 and r["next_lr"] == 0.04
  assert r["next_status"] == "trained 2/3, diverged 1/3"


def test_max_stable_lr_next_lr_nan_when_grid_never_diverges():
  t = synthetic_members(batch_sizes=(64,), lrs=(0.01, 0.02), seeds=(0, 1))
  r = stability.max_stable_lr(t).iloc[0]
  assert r["max_stable_lr"] == 0.02 and np.isnan(r["next_lr"]) and r["next_status"] == ""


def test_max_stable_lr_nan_when_nothing_is_stable():
  t = synthetic_members(batch_sizes=(64,), lrs=(0.01, 0.02), seeds=(0, 1), diverge_factor=0.5)
  r = stability.max_stable_lr(t).iloc[0]
  assert np.isnan(r["max_stable_lr"]) and r["next_lr"] == 0.01
  assert r["next_status"] == "diverged 2/2"


def test_max_stable_lr_failed_member_is_not_stable():
  t = synthetic_members(batch_sizes=(64,), lrs=(0.01, 0.02, 0.04), seeds=(0, 1))
  status = np.where((t["lr"] == 0.04) & (t["seed"] == 0), "failed", "trained")
  r = stability.max_stable_lr(t.assign(status=status)).iloc[0]
  assert r["max_stable_lr"] == 0.02 and r["next_status"] == "trained 1/2, failed 1/2"


def test_max_stable_lr_per_batch_size_below_planted_divergence():
  run = synthetic_run(lrs=tuple(0.01 * 2.0 ** k for k in range(-2, 7)),
                      batch_sizes=(32, 64, 128, 256), augs=(0.0,), seeds=(0, 1),
                      diverge_above=8.0)
  b = stability.max_stable_lr(run.members)
  # Diverges above 8x the optimum 0.01 * B/32: first diverging LR is 16x the optimum.
  np.testing.assert_allclose(b["next_lr"], [0.16, 0.32, 0.64, np.nan])
  np.testing.assert_allclose(b["max_stable_lr"], [0.08, 0.16, 0.32, 0.64])
  assert b["next_status"].tolist() == ["diverged 2/2"] * 3 + [""]


def test_max_stable_lr_ignores_instability_below_a_stable_lr():
  # A seed diverged at the smallest LR, yet every seed trained at the larger one: the
  # largest LR where every seed trained is the larger one, as documented.
  m = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "batch_size": 32, "aug": 0.0,
                    "seed": [0, 1, 0, 1], "diverged": [False, True, False, False]})
  row = stability.max_stable_lr(m).iloc[0]
  assert row["max_stable_lr"] == 1.0 and np.isnan(row["next_lr"])


# ------------------------------------------------------------------ aug effect


def _aug_table(factor):
  return synthetic_members(batch_sizes=(32, 64, 128, 256), augs=(0.0, 1.0),
                           aug_lr_factor=factor, seeds=(0, 1, 2), diverge_factor=4.0)


def test_aug_effect_higher_when_optimum_doubles():
  r = stability.aug_effect(_aug_table(2.0), n_boot=N_BOOT)
  assert (r["verdict"] == "higher").all()
  assert ((r["d_log_best_lr_lo"] <= math.log(2)) & (math.log(2) <= r["d_log_best_lr_hi"])).all()
  # Divergence is planted at 4 x the optimum, so the max stable LR doubles too.
  np.testing.assert_allclose(r["d_log_max_stable_lr"], math.log(2))
  assert (r["max_stable_verdict"] == "higher").all()


def test_aug_effect_pooled_higher_when_optimum_doubles():
  r = stability.aug_effect_pooled(_aug_table(2.0), n_boot=N_BOOT).iloc[0]
  assert r["aug"] == 1.0 and r["n_batch_sizes"] == 4
  assert r["d_log_best_lr_lo"] <= math.log(2) <= r["d_log_best_lr_hi"]
  assert r["verdict"] == "higher" and r["max_stable_verdict"] == "higher"


def test_aug_effect_pooled_not_settled_without_effect():
  r = stability.aug_effect_pooled(_aug_table(1.0), n_boot=N_BOOT).iloc[0]
  assert r["d_log_best_lr_lo"] <= 0 <= r["d_log_best_lr_hi"]
  assert r["verdict"] == "not settled"
  # Same divergence point at both aug levels: the max stable LR does not move.
  assert r["d_log_max_stable_lr"] == 0 and r["max_stable_verdict"] == "not settled"


def test_aug_effect_lower_when_optimum_halves():
  r = stability.aug_effect_pooled(_aug_table(0.5), n_boot=N_BOOT).iloc[0]
  assert r["verdict"] == "lower"


def test_aug_effect_not_settled_at_grid_edge():
  t = synthetic_members(batch_sizes=(64,), augs=(0.0, 1.0), aug_lr_factor=2.0,
                        lrs=2.0 ** np.arange(-9, -6.2, 0.25), seeds=(0, 1, 2))
  r = stability.aug_effect(t, n_boot=50).iloc[0]  # aug 1's optimum (0.02) is above the grid
  assert r["verdict"] == "not settled" and "edge" in r["reason"]


def test_aug_effect_rejects_missing_reference():
  with pytest.raises(ConfigError, match="reference_aug"):
    stability.aug_effect(_aug_table(2.0), reference_aug=0.3, n_boot=10)
