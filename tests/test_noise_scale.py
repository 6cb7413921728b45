"""Tests for lrjax.analysis.noise_scale: the two-batch estimator and run summaries."""
import math

import numpy as np
import pandas as pd
import pytest

from lrjax.analysis import noise_scale as ns_lib
from lrjax.analysis.synthetic import synthetic_run
from lrjax.errors import ConfigError


def test_noise_scale_two_batch_estimate_matches_exact():
  rng = np.random.default_rng(0)
  n, d, b_small, k, draws = 2000, 20, 4, 8, 4000
  grads = rng.normal(size=(n, d)) + 0.3                 # |G|^2 ≈ 1.8, tr Σ ≈ 20
  exact = ns_lib.exact_noise_scale(grads)
  idx = rng.integers(0, n, size=(draws, k, b_small))    # with replacement
  micro = grads[idx].mean(2)                            # (draws, k, d)
  small = (micro[:, 0] ** 2).sum(-1)
  big = (micro.mean(1) ** 2).sum(-1)
  ns = ns_lib.noise_scale_estimate(small, big, b_small, b_small * k)
  ratio = float(ns_lib.noise_scale_from_running(ns.trace.sum(), ns.g2.sum()))
  # Delta-method standard error of a ratio of means.
  se = np.std(ns.trace - ratio * ns.g2) / math.sqrt(draws) / ns.g2.mean()
  assert se < 0.15 * exact
  assert abs(ratio - exact) < 4 * se


def test_exact_noise_scale_matches_definition():
  g = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0], [2.0, -3.0]])  # G = (2, 0)
  trace = np.var(g[:, 0]) + np.var(g[:, 1])
  assert ns_lib.exact_noise_scale(g) == pytest.approx(trace / 4.0)


def test_noise_scale_estimate_rejects_bad_batch_sizes():
  with pytest.raises(ConfigError, match="b_small"):
    ns_lib.noise_scale_estimate(1.0, 1.0, 64, 8)


def test_noise_scale_summary_median_over_training_per_aug():
  m = pd.DataFrame({"member": [0, 1, 2], "lr": 0.1, "batch_size": 32, "seed": [0, 1, 0],
                    "aug": [0.0, 0.0, 1.0], "diverged": [False, False, False]})
  h = pd.DataFrame({"member": np.repeat([0, 1, 2], 3), "examples_seen": [1, 2, 3] * 3,
                    "noise_scale": [10, 20, 30, 30, 40, 50, 100, np.nan, 300.0]})
  s = ns_lib.noise_scale_summary(h, m)
  # aug 0: per-evaluation medians 20, 30, 40 -> median 30; aug 1: 100, 300 (NaN skipped).
  assert s["aug"].tolist() == [0.0, 1.0]
  assert s["noise_scale"].tolist() == [30.0, 200.0]
  assert s[["first", "last", "n_evals", "n_members"]].values.tolist() == [
      [20.0, 40.0, 3, 2], [100.0, 300.0, 2, 1]]


def test_noise_scale_curve_counts_only_trained_members():
  m = pd.DataFrame({"member": [0, 1], "lr": 0.1, "batch_size": 32, "seed": [0, 1],
                    "diverged": False, "status": ["trained", "failed"]})
  h = pd.DataFrame({"member": [0, 1], "examples_seen": 10, "noise_scale": [5.0, 500.0]})
  c = ns_lib.noise_scale_curve(h, m)
  assert c["median"].tolist() == [5.0] and c["n_members"].tolist() == [1]


def test_noise_scale_curve_from_synthetic_run_grows_over_training():
  run = synthetic_run(batch_sizes=(32,), augs=(0.0, 1.0), noise_scale=50.0, n_evals=6)
  c = ns_lib.noise_scale_curve(run.history, run.members)
  first, last = (c.groupby("aug")["median"].agg(k) for k in ("first", "last"))
  assert (last > 2 * first).all() and last[1.0] > last[0.0]
