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


# ------------------------------------------------------------ multiplicity


def test_engine_estimator_counts_distinct_examples_with_multiplicity():
  """Planted per-example gradients g_i = G + e_i, each in M augmented copies
  g_i + u_ij: a micro-batch gradient is the mean over b·M rows, whose covariance is
  (Σ_e + Σ_u / M) / b. The engine's two-batch sums with b distinct examples recover
  tr(Σ_e + Σ_u / M) / |G|^2; counting b·M rows would give M times that."""
  import jax
  import jax.numpy as jnp
  from lrjax.engine import noise
  d, b, m, k, steps = 20, 4, 4, 4, 4000
  g = jnp.full(d, 0.5)
  sd_e, sd_u = 1.0, 2.0
  truth = d * (sd_e ** 2 + sd_u ** 2 / m) / float(g @ g)

  def batch(sums, key):
    """One batch of k micro-batches through `noise.accumulate`, as a block's ticks."""
    def tick(carry, t):
      sums, acc = carry
      ke, ku = jax.random.split(jax.random.fold_in(key, t))
      e = sd_e * jax.random.normal(ke, (b, 1, d)) + sd_u * jax.random.normal(ku, (b, m, d))
      micro = (g[None, None, :] + e).reshape(b * m, d).mean(0)
      acc = acc + micro
      sums = noise.accumulate(sums, {"w": micro}, {"w": acc}, k, t == k - 1, float(b))
      return (sums, acc), None
    (sums, _), _ = jax.lax.scan(tick, (sums, jnp.zeros(d)), jnp.arange(k))
    return {**sums, "small_sq": jnp.float32(0.0)}, None

  zero = jnp.float32(0.0)
  sums, _ = jax.jit(lambda s, keys: jax.lax.scan(batch, s, keys))(
      {"small_sq": zero, "noise_trace": zero, "noise_g2": zero},
      jax.random.split(jax.random.key(0), steps))
  estimate = float(sums["noise_trace"]) / float(sums["noise_g2"])
  assert estimate == pytest.approx(truth, rel=0.1)
  assert abs(estimate - truth) < abs(estimate * m - truth) / 10


# ------------------------------------------------------- at equal progress


def _progress_tables(b_simple_by_aug, seeds=(0, 1, 2), sigma=0.05, rng_seed=0):
  """Members at two LRs per (batch, aug, seed); val_loss falls 2 -> 0.5 over 10
  evaluations, reaching 1.0 at the 5th; the noise scale is the planted value of its
  aug at that evaluation (times seed noise), 10x larger elsewhere."""
  rng = np.random.default_rng(rng_seed)
  rows, hist = [], []
  for aug, b_simple in b_simple_by_aug.items():
    seed_factor = {s: math.exp(sigma * rng.normal()) for s in seeds}
    for batch in (64, 128):
      for lr, final in ((0.1, 0.5), (0.01, 0.9)):
        for s in seeds:
          member = len(rows)
          rows.append(dict(member=member, lr=lr, batch_size=batch, aug=aug, seed=s,
                           diverged=False, final_val_loss=final))
          loss = np.linspace(2.0, final, 10) if lr == 0.1 else np.linspace(2.0, 1.5, 10)
          ns = np.full(10, 10 * b_simple)
          ns[np.argmax(loss <= 1.0)] = b_simple * seed_factor[s]
          hist += [dict(member=member, examples_seen=(i + 1) * 1000, val_loss=loss[i],
                        noise_scale=ns[i]) for i in range(10)]
  return pd.DataFrame(rows), pd.DataFrame(hist)


def test_noise_scale_at_target_reads_best_lr_members_at_the_crossing():
  members, history = _progress_tables({0.0: 100.0, 1.0: 300.0})
  per_seed = ns_lib.noise_scale_per_seed(history, members, target=1.0)
  t = ns_lib.noise_scale_at_target(per_seed)
  assert t["aug"].tolist() == [0.0, 1.0] and (t["n_seeds"] == 3).all()
  assert (t["n_members"] == 6).all()                 # 2 batch sizes x 3 seeds, best LR only
  for planted, (_, r) in zip((100.0, 300.0), t.iterrows()):
    assert r["lo"] <= planted <= r["hi"] and r["noise_scale"] == pytest.approx(planted, rel=0.1)


def test_noise_scale_aug_effect_paired_by_seed():
  members, history = _progress_tables({0.0: 100.0, 1.0: 300.0})
  r = ns_lib.noise_scale_aug_effect(ns_lib.noise_scale_per_seed(history, members, 1.0)).iloc[0]
  # Each aug draws its own seed factors, so the per-seed ratios scatter about 3.
  assert r["lo"] <= 3.0 <= r["hi"] and r["verdict"] == "higher" and r["n_seeds"] == 3
  members, history = _progress_tables({0.0: 100.0, 1.0: 100.0})
  same = ns_lib.noise_scale_per_seed(history, members, 1.0)
  assert ns_lib.noise_scale_aug_effect(same).iloc[0]["verdict"] == "not settled"


def test_noise_scale_per_seed_default_target_every_group_reaches():
  members, history = _progress_tables({0.0: 100.0, 1.0: 300.0})
  per_seed = ns_lib.noise_scale_per_seed(history, members)
  assert per_seed["target"].nunique() == 1 and set(per_seed["aug"]) == {0.0, 1.0}
