"""Tests for lrjax.analysis.inference: p-values from intervals, rescaled intervals and
the seeds that would settle a decision."""
import math

import numpy as np
import pytest

from lrjax.analysis import inference


@pytest.mark.parametrize("df", [None, 2, 9])
def test_p_from_interval_is_below_005_exactly_when_the_interval_excludes_the_null(df):
  rng = np.random.default_rng(0)
  for _ in range(200):
    est = rng.normal()
    lo, hi = est - rng.exponential(), est + rng.exponential()
    null = rng.normal(scale=2)
    p = inference.p_from_interval(est, lo, hi, null, df)
    assert (p < 0.05) == (null < lo or null > hi)


def test_interval_p_values_agree_with_the_paired_t_test_and_tost():
  rng = np.random.default_rng(1)
  arm, ref = rng.normal(0.01, 0.01, 6), rng.normal(0.0, 0.01, 6)
  d = inference.paired_difference(arm, ref)
  eq = inference.equivalence(d, 0.03)
  assert inference.p_from_interval(d.mean, d.lo, d.hi, 0.0, d.n - 1) == pytest.approx(
      d.p_value)
  assert inference.tost_from_interval(d.mean, d.lo, d.hi, 0.03, d.n - 1) == pytest.approx(
      eq.p_equivalence)
  lo99, hi99 = inference.rescale_interval(d.mean, d.lo, d.hi, 0.99, d.n - 1)
  d99 = inference.paired_difference(arm, ref, level=0.99)
  assert (lo99, hi99) == pytest.approx((d99.lo, d99.hi))


def test_seeds_needed_shrinks_like_t_over_root_n():
  n = inference.seeds_needed(half=0.2, n=3, target=0.1)
  sd = 0.2 * math.sqrt(3) / inference.t_quantile(0.95, 2)
  assert inference.t_quantile(0.95, n - 1) * sd / math.sqrt(n) <= 0.1
  assert inference.t_quantile(0.95, n - 2) * sd / math.sqrt(n - 1) > 0.1
  assert inference.seeds_needed(half=0.2, n=1, target=0.1) is None
