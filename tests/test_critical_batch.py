"""Tests for lrjax.analysis.critical_batch: steps to target and the critical batch size."""
import numpy as np
import pandas as pd
import pytest

from lrjax.analysis import critical_batch as cb
from steps_helpers import history_for, synthetic_steps

N_BOOT = 300


def test_steps_to_target_first_evaluation_at_or_past_target():
  m = pd.DataFrame({"member": [0, 1, 2], "lr": 0.1, "batch_size": [8, 8, 16],
                    "seed": [0, 1, 0], "diverged": [False, False, True]})
  s = cb.steps_to_target(history_for(m, [35, 500, 20]), m, target=1.0)
  assert s["steps"].tolist()[0] == 40          # first evaluation past step 35
  assert s["examples"].tolist()[0] == 40 * 8
  assert np.isnan(s["steps"][1])               # never reached within the horizon
  assert np.isnan(s["steps"][2])               # diverged members never count
  assert (s["target"] == 1.0).all()


def test_default_target_reached_by_every_batch_size():
  m = pd.DataFrame({"member": range(6), "lr": [0.1, 0.1, 0.2, 0.2, 0.1, 0.1],
                    "batch_size": [8, 8, 8, 8, 16, 16], "seed": [0, 1, 0, 1, 0, 1],
                    "diverged": False})
  # Best losses at horizon 200: need / 200.
  h = history_for(m, [100, 120, 60, 80, 150, 170])
  target = cb.default_target(h, m)
  # B=8: best LR's worst seed reaches 80/200; B=16: 170/200. The target is the harder
  # of what every batch size can reach: 170/200.
  assert target == pytest.approx(170 / 200)
  s = cb.steps_to_target(h, m)
  best = cb.best_steps_per_batch(s, n_boot=0)
  assert best["best_steps"].notna().all()


def test_best_steps_per_batch_skips_lr_where_a_seed_never_reaches():
  s = pd.DataFrame({"lr": [0.1, 0.1, 0.2, 0.2], "batch_size": 32, "seed": [0, 1, 0, 1],
                    "steps": [100.0, 120.0, 50.0, np.nan]})
  r = cb.best_steps_per_batch(s, n_boot=0).iloc[0]
  assert r["best_steps"] == 110.0 and r["best_lr"] == 0.1 and r["best_examples"] == 3520.0


def test_fit_critical_batch_recovers_planted_b_crit():
  r = cb.fit_critical_batch(synthetic_steps(b_crit=200.0), n_boot=N_BOOT).iloc[0]
  assert r["b_crit_lo"] <= 200.0 <= r["b_crit_hi"]
  assert r["b_crit_hi"] / r["b_crit_lo"] < 1.5       # and the interval is informative
  assert r["s_min"] == pytest.approx(1000.0, rel=0.1)
  assert r["e_min"] == pytest.approx(r["s_min"] * r["b_crit"])
  assert r["n_batch_sizes"] == 7


def test_fit_critical_batch_per_aug():
  t = synthetic_steps(augs=(0.0, 1.0), seeds=(0, 1, 2))
  r = cb.fit_critical_batch(t, n_boot=100)
  assert r["aug"].tolist() == [0.0, 1.0] and r["b_crit"].notna().all()


def test_fit_critical_batch_end_to_end_from_history():
  planted = synthetic_steps(batch_sizes=(16, 32, 64, 128, 256, 512), seeds=(0, 1, 2),
                            sigma=0.02, rng_seed=1)
  m = planted.assign(member=np.arange(len(planted)), diverged=False)
  h = history_for(m, planted["steps"].to_numpy(), every=10, horizon=25000)
  r = cb.fit_critical_batch(cb.steps_to_target(h, m, target=1.0), n_boot=100).iloc[0]
  assert r["b_crit_lo"] <= 200.0 <= r["b_crit_hi"]


def test_fit_critical_batch_not_settled_with_two_batch_sizes():
  r = cb.fit_critical_batch(synthetic_steps(batch_sizes=(32, 64)), n_boot=50).iloc[0]
  assert np.isnan(r["b_crit"]) and r["reason"].startswith("not settled")


def test_fit_critical_batch_not_settled_when_intercept_negative():
  b = np.array([16, 32, 64, 128, 256])
  s = pd.DataFrame({"lr": 0.1, "batch_size": b, "seed": 0, "steps": 1e5 / b - 50})
  r = cb.fit_critical_batch(s, n_boot=0).iloc[0]
  assert np.isnan(r["b_crit"]) and "S_min ≤ 0" in r["reason"]


def test_fit_critical_batch_flags_extrapolation():
  b = np.array([16, 32, 64, 128, 256])
  s = pd.DataFrame({"lr": 0.1, "batch_size": b, "seed": 0, "steps": 10 * (1 + 5000 / b)})
  r = cb.fit_critical_batch(s, n_boot=0).iloc[0]
  assert r["b_crit"] == pytest.approx(5000) and "extrapolation" in r["reason"]
