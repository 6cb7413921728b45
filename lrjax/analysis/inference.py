"""Small-sample inference over seeds: grid-censored means, paired differences, equivalence
and Holm's step-down.

The estimates of ``lrjax.analysis`` are means over seeds of per-seed quantities. Two
things make the textbook t interval need care here:

* **Grid censoring.** A per-seed stability limit is only known to lie between two grid
  LRs (the largest that trained and the next one up). ``censored_mean`` combines such
  brackets into an interval for the mean over seeds that accounts for both the seeds'
  spread and the grid's resolution.
* **Shared seeds.** Arms of an experiment (schedules, optimizers, ...) train on the same
  seeds: same initial weights, data order and augmentation draws. Their comparison is
  paired (``paired_difference``), and a claim of no difference is an equivalence test
  with a stated margin (``equivalence``, two one-sided tests), never overlapping
  intervals.

``holm`` controls the family-wise error of an experiment's primary questions. scipy
gives the Student-t distribution; the rest is a few lines of numpy, written here because
no library combines interval-censored brackets this way.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import stats as scipy_stats

from lrjax.errors import ConfigError

LEVEL = 0.95
# `seeds_needed` looks no further than this many seeds.
MAX_SEEDS = 1000


def t_quantile(level: float, df: int) -> float:
  """The two-sided Student-t quantile: ``t`` with ``P(|T_df| <= t) = level``.

  Example:
    >>> round(t_quantile(0.95, 2), 3), round(t_quantile(0.90, 4), 3)
    (4.303, 2.132)
  """
  return float(scipy_stats.t.ppf(0.5 + level / 2, df))


def mean_interval(values: Sequence[float], level: float = LEVEL
                  ) -> tuple[float, float, float, int]:
  """The mean of the finite values and its Student-t interval: ``(mean, lo, hi, n)``.

  Example:
    >>> m, lo, hi, n = mean_interval([1.0, 2.0, 3.0])
    >>> m, round(lo, 3), round(hi, 3), n
    (2.0, -0.484, 4.484, 3)
  """
  v = np.asarray(values, float)
  v = v[np.isfinite(v)]
  n = len(v)
  if n == 0:
    return math.nan, math.nan, math.nan, 0
  mean = float(v.mean())
  if n < 2:
    return mean, math.nan, math.nan, 1
  half = t_quantile(level, n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
  return mean, mean - half, mean + half, n


class CensoredMean(NamedTuple):
  """The mean over seeds of per-seed values known only to lie in brackets.

  Attributes:
    estimate: mean of the brackets' midpoints (a finite bound stands in for an open
      side); NaN without seeds.
    lo, hi: the interval (``-inf`` / ``inf`` when seeds are censored on that side).
    n: seeds.
    below, above: seeds whose bracket is open below (the value lies under the grid) or
      above (it lies over the grid).
  """

  estimate: float
  lo: float
  hi: float
  n: int
  below: int
  above: int


def censored_mean(lower: Sequence[float], upper: Sequence[float],
                  level: float = LEVEL) -> CensoredMean:
  """An interval for the mean of per-seed values that are known only up to a bracket.

  Seed ``s`` has a value in ``[lower[s], upper[s]]`` (``-inf``/``inf`` for an open
  side), e.g. the log of its stability limit between two grid LRs. With midpoints
  ``m_s``, half-widths ``h_s`` and ``n`` seeds, the half-width of the interval is the
  larger of

  * ``mean(h) + t * sd(m) / sqrt(n)``: the t interval of the midpoints, widened by
    the most that rounding to the grid can move their mean; and
  * ``t * sqrt(sd(m)^2 + mean(2h)^2 / 12) / sqrt(n)``: the t interval with the
    rounding counted as uniform noise of the bracket's width, which matters when every
    seed falls in one bracket (then ``sd(m)`` is 0 but the seeds' true spread is not).

  ``t`` is the Student-t quantile with ``n - 1`` degrees of freedom. Both terms keep
  the interval two-sided around the estimate. A side that some seed leaves open is
  unbounded: the interval then says only what the grid showed on the other side
  (the open seeds counted at their finite bound). The coverage simulation in
  ``benchmarks/coverage.py`` checks it on planted per-seed limits.

  Args:
    lower, upper: per-seed bracket bounds (``lower <= upper``).
    level: the interval's coverage.

  Returns:
    A ``CensoredMean``; with one seed the interval is that seed's bracket.

  Raises:
    ConfigError: brackets of different lengths, reversed, or an open-both-sides one.

  Example:
    >>> r = censored_mean([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    >>> round(r.estimate, 3), round(r.lo, 3), round(r.hi, 3)
    (0.5, -0.217, 1.217)
    >>> censored_mean([0.0, 1.0], [1.0, np.inf]).hi
    inf
  """
  lower, upper = np.asarray(lower, float), np.asarray(upper, float)
  if lower.shape != upper.shape or lower.ndim != 1:
    raise ConfigError("censored_mean: lower and upper need one bound per seed each.")
  if np.any(lower > upper) or np.any(np.isinf(lower) & np.isinf(upper)):
    raise ConfigError("censored_mean: each bracket needs lower <= upper and one finite side.")
  n = len(lower)
  below, above = int(np.isneginf(lower).sum()), int(np.isposinf(upper).sum())
  if n == 0:
    return CensoredMean(math.nan, math.nan, math.nan, 0, 0, 0)
  lo_f = np.where(np.isneginf(lower), upper, lower)
  hi_f = np.where(np.isposinf(upper), lower, upper)
  mid, half = (lo_f + hi_f) / 2, (hi_f - lo_f) / 2
  estimate = float(mid.mean())
  if n == 1:
    return CensoredMean(estimate, float(lower[0]), float(upper[0]), 1, below, above)
  t = t_quantile(level, n - 1)
  sd = float(mid.std(ddof=1))
  spread = max(float(half.mean()) + t * sd / math.sqrt(n),
               t * math.sqrt(sd ** 2 + float((2 * half).mean()) ** 2 / 12) / math.sqrt(n))
  lo = -math.inf if below else estimate - spread
  hi = math.inf if above else estimate + spread
  return CensoredMean(estimate, lo, hi, n, below, above)


class PairedDifference(NamedTuple):
  """Mean of per-seed differences with its t interval (NaN bounds below 2 seeds)."""

  mean: float
  lo: float
  hi: float
  n: int
  p_value: float  # two-sided, H0: no difference


def paired_difference(arm: Sequence[float], reference: Sequence[float],
                      level: float = LEVEL) -> PairedDifference:
  """``arm - reference`` over shared seeds: the mean difference and its t interval.

  The two sequences are aligned by seed; pairs where either side is NaN (a diverged
  member's metric) are left out.

  Example:
    >>> d = paired_difference([1.0, 2.0, 3.0], [0.5, 1.4, 2.6])
    >>> round(d.mean, 3), d.n, d.lo > 0
    (0.5, 3, True)
  """
  arm, reference = np.asarray(arm, float), np.asarray(reference, float)
  if arm.shape != reference.shape:
    raise ConfigError("paired_difference: the arms need one value per shared seed each.")
  d = (arm - reference)[np.isfinite(arm) & np.isfinite(reference)]
  n = len(d)
  if n == 0:
    return PairedDifference(math.nan, math.nan, math.nan, 0, math.nan)
  mean = float(d.mean())
  if n < 2:
    return PairedDifference(mean, math.nan, math.nan, n, math.nan)
  se = float(d.std(ddof=1)) / math.sqrt(n)
  half = t_quantile(level, n - 1) * se
  if se == 0:
    p = 1.0 if mean == 0 else 0.0
  else:
    p = float(2 * scipy_stats.t.sf(abs(mean) / se, n - 1))
  return PairedDifference(mean, mean - half, mean + half, n, p)


class Equivalence(NamedTuple):
  """The verdict on a paired difference against a margin.

  Attributes:
    verdict: ``"equivalent"`` (within ``±margin``, by two one-sided tests),
      ``"different"`` (the interval excludes 0 and equivalence is not shown) or
      ``"not settled"``.
    difference: the ``PairedDifference``.
    margin: the equivalence margin ``δ``.
    p_equivalence: the TOST p-value (max of the two one-sided tests).
    p_difference: the two-sided p-value of "no difference".
  """

  verdict: str
  difference: PairedDifference
  margin: float
  p_equivalence: float
  p_difference: float


def equivalence(difference: PairedDifference, margin: float,
                alpha: float = 1 - LEVEL) -> Equivalence:
  """Two one-sided tests (Schuirmann 1987) of ``|difference| < margin`` at level ``alpha``.

  Equivalence is shown when both ``mean - margin < 0`` and ``mean + margin > 0`` are
  rejected at ``alpha``, i.e. when the ``1 - 2 alpha`` interval lies inside
  ``(-margin, margin)``. "Different" needs the ``1 - alpha`` interval to exclude 0.
  A difference that is significant but smaller than the margin counts as equivalent:
  the margin says what size of effect matters.

  Example:
    >>> d = paired_difference([1.0, 1.01, 0.99, 1.0], [1.0, 1.0, 1.0, 1.0])
    >>> equivalence(d, margin=0.05).verdict, equivalence(d, margin=0.001).verdict
    ('equivalent', 'not settled')
  """
  if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
    raise ConfigError(f"equivalence_margin: must be a finite number > 0; got {margin!r}.")
  n = difference.n
  if n < 2:
    return Equivalence("not settled", difference, margin, math.nan, math.nan)
  half = (difference.hi - difference.lo) / 2
  se = half / t_quantile(LEVEL, n - 1)
  mean = difference.mean
  if se == 0:
    p_eq = 0.0 if abs(mean) < margin else 1.0
  else:
    p_eq = float(max(scipy_stats.t.sf((mean + margin) / se, n - 1),
                     scipy_stats.t.sf((margin - mean) / se, n - 1)))
  if p_eq < alpha:
    verdict = "equivalent"
  elif difference.p_value < alpha:
    verdict = "different"
  else:
    verdict = "not settled"
  return Equivalence(verdict, difference, margin, p_eq, difference.p_value)


def holm(p_values: Sequence[float], alpha: float = 1 - LEVEL) -> tuple[np.ndarray, np.ndarray]:
  """Holm's step-down procedure: which hypotheses to reject at family-wise ``alpha``.

  NaN p-values (tests that could not be made) are never rejected and do not count
  towards the family size.

  Returns:
    ``(rejected, adjusted)``: booleans and Holm-adjusted p-values (NaN stays NaN).

  Example:
    >>> rejected, adjusted = holm([0.01, 0.04, 0.03])
    >>> rejected.tolist(), [round(float(p), 2) for p in adjusted]
    ([True, False, False], [0.03, 0.06, 0.06])
  """
  p = np.asarray(p_values, float)
  adjusted = np.full(p.shape, np.nan)
  ok = np.flatnonzero(np.isfinite(p))
  m = len(ok)
  if m:
    order = ok[np.argsort(p[ok], kind="stable")]
    steps = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted[order] = np.minimum(steps, 1.0)
  return np.nan_to_num(adjusted, nan=1.0) <= alpha, adjusted


def simultaneous_level(family_size: int, level: float = LEVEL) -> float:
  """The per-interval coverage that makes ``family_size`` intervals hold together at
  ``level`` (Bonferroni; the intervals that go with Holm's first step).

  Example:
    >>> simultaneous_level(1), simultaneous_level(5)
    (0.95, 0.99)
  """
  return 1 - (1 - level) / max(1, family_size)


# ------------------------------------------------------------------ p from intervals


def quantile(level: float, df: float | None = None) -> float:
  """The two-sided ``level`` quantile: Student's t with ``df`` degrees of freedom, or
  the normal one when ``df`` is None or below 1.

  Example:
    >>> round(quantile(0.95), 3), round(quantile(0.95, 2), 3)
    (1.96, 4.303)
  """
  if df is None or not np.isfinite(df) or df < 1:
    return float(scipy_stats.norm.ppf(0.5 + level / 2))
  return t_quantile(level, int(df))


def _sf(z: float, df) -> float:
  if df is None or not np.isfinite(df) or df < 1:
    return float(scipy_stats.norm.sf(z))
  return float(scipy_stats.t.sf(z, int(df)))


def seed_df(n_seeds) -> float:
  """Degrees of freedom of a mean over ``n_seeds`` seeds (NaN below 2 seeds).

  Example:
    >>> seed_df(3), seed_df(1)
    (2.0, nan)
  """
  return float(n_seeds) - 1 if np.isfinite(n_seeds) and n_seeds >= 2 else math.nan


def one_sided_p(estimate: float, bound: float, null: float, df, below: bool) -> float:
  """p of ``H0: θ ≤ null`` (``below``; ``bound`` the interval's lower end) or of
  ``H0: θ ≥ null`` (``bound`` its upper end), the standard error read from the
  distance between the estimate and ``bound``: ``|estimate − bound| / quantile``.

  Example:
    >>> round(one_sided_p(1.0, 0.0, 0.0, None, below=True), 4)  # se = 1 / 1.96
    0.025
  """
  if np.isnan(estimate) or np.isnan(bound) or np.isnan(null):
    return math.nan
  z_num = (estimate - null) if below else (null - estimate)
  se = abs(estimate - bound) / quantile(LEVEL, df)
  tol = 1e-9 * max(1.0, abs(estimate))  # a noise-free fit lands a rounding error off
  if se <= tol:
    return 0.0 if z_num > tol else 1.0
  return _sf(z_num / se, df)


def p_from_interval(estimate: float, lo: float, hi: float, null: float,
                    df: float | None = None) -> float:
  """Two-sided p-value of ``θ = null`` consistent with a 95% interval ``[lo, hi]``.

  The half-width on the null's side is ``quantile(0.95, df) · se``; ``p = 2 P(T >
  |estimate − null| / se)``, so ``p < 0.05`` exactly when the interval excludes
  ``null``. NaN when the estimate or that bound is NaN.

  Example:
    >>> round(p_from_interval(1.0, 0.8, 1.2, null=0.5), 6) < 0.05
    True
    >>> round(p_from_interval(1.0, 0.5, 1.5, null=0.5), 3)  # null on the bound
    0.05
  """
  below = null <= estimate
  one = one_sided_p(estimate, lo if below else hi, null, df, below)
  return math.nan if np.isnan(one) else min(1.0, 2 * one)


def tost_from_interval(estimate: float, lo: float, hi: float, margin: float,
                       df: float | None = None) -> float:
  """p of equivalence within ``±margin`` (two one-sided tests) from a 95% interval.

  Example:
    >>> tost_from_interval(0.0, -0.01, 0.01, margin=0.05) < 0.05
    True
    >>> tost_from_interval(0.0, -0.1, 0.1, margin=0.05) > 0.05
    True
  """
  p_lower = one_sided_p(estimate, lo, -margin, df, below=True)   # H0: θ ≤ -margin
  p_upper = one_sided_p(estimate, hi, margin, df, below=False)   # H0: θ ≥ margin
  if np.isnan(p_lower) or np.isnan(p_upper):
    return math.nan
  return max(p_lower, p_upper)


def rescale_interval(estimate: float, lo: float, hi: float, level: float,
                     df: float | None = None) -> tuple[float, float]:
  """A 95% interval stretched about its estimate to coverage ``level``.

  Example:
    >>> lo, hi = rescale_interval(0.0, -1.96, 1.96, level=0.99)
    >>> round(hi, 3)
    2.576
  """
  k = quantile(level, df) / quantile(LEVEL, df)
  return estimate - k * (estimate - lo), estimate + k * (hi - estimate)


def seeds_needed(half: float, n: int, target: float, level: float = LEVEL
                 ) -> int | None:
  """Seeds for a t interval of half-width ``half`` over ``n`` seeds to shrink to ``target``.

  Assumes the seeds' spread stays as it is; None when that needs over `MAX_SEEDS`, or
  when ``target`` is not positive.

  Example:
    >>> seeds_needed(half=0.3, n=3, target=0.1)
    9
  """
  if not (np.isfinite(half) and np.isfinite(target)) or target <= 0 or n < 2:
    return None
  if half <= target:
    return n
  sd_ = half * math.sqrt(n) / quantile(level, n - 1)
  for k in range(n + 1, MAX_SEEDS + 1):
    if quantile(level, k - 1) * sd_ / math.sqrt(k) <= target:
      return k
  return None
