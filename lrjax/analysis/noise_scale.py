"""The gradient noise scale B_simple = tr(Σ) / |G|^2: estimators and run summaries.

McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", Appendix A: the
noise scale predicts the critical batch size; it can be estimated during training
from squared gradient norms at two batch sizes. The engine may write a per-evaluation
``noise_scale`` column in the history; `noise_scale_curve` and `noise_scale_summary`
read it.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax.analysis.stats import prepare_members, require_columns, trained_mask
from lrjax.errors import ConfigError


class NoiseScale(NamedTuple):
  """Two-batch estimates (elementwise over the inputs)."""
  g2: np.ndarray       # unbiased estimate of |G|^2
  trace: np.ndarray    # unbiased estimate of tr(Sigma), per-example covariance
  b_simple: np.ndarray  # trace / g2


def noise_scale_estimate(small_sq_norm, big_sq_norm, b_small: float, b_big: float
                         ) -> NoiseScale:
  """Gradient noise scale from squared gradient norms at two batch sizes.

  McCandlish et al. 2018, Appendix A: with ``E|G_B|^2 = |G|^2 + tr(Σ)/B``,
  ``|G|^2 ≈ (b_big |G_big|^2 − b_small |G_small|^2) / (b_big − b_small)`` and
  ``tr(Σ) ≈ (|G_small|^2 − |G_big|^2) / (1/b_small − 1/b_big)``, both unbiased;
  ``B_simple = tr(Σ) / |G|^2``. One pair of norms gives a very noisy (even negative)
  ratio: average ``g2`` and ``trace`` over many steps first, then divide (see
  `noise_scale_from_running`).

  Args:
    small_sq_norm: |G_small|^2, squared norm(s) of gradient(s) over b_small examples.
    big_sq_norm: |G_big|^2 over b_big examples.
    b_small: the small batch size.
    b_big: the big batch size (> b_small).

  Returns:
    A `NoiseScale` of arrays shaped like the inputs.

  Raises:
    ConfigError: the batch sizes are not ``0 < b_small < b_big``.

  Example:
    >>> n = noise_scale_estimate(1.0 + 50 / 8, 1.0 + 50 / 64, 8, 64)  # |G|^2=1, trΣ=50
    >>> [round(float(v), 6) for v in n]
    [1.0, 50.0, 50.0]
  """
  if not 0 < b_small < b_big:
    raise ConfigError(
        f"b_small, b_big: need 0 < b_small < b_big; got {b_small!r}, {b_big!r}.")
  small = np.asarray(small_sq_norm, float)
  big = np.asarray(big_sq_norm, float)
  g2 = (b_big * big - b_small * small) / (b_big - b_small)
  trace = (small - big) / (1.0 / b_small - 1.0 / b_big)
  with np.errstate(invalid="ignore", divide="ignore"):
    return NoiseScale(g2, trace, trace / g2)


def noise_scale_from_running(sum_trace, sum_g2) -> np.ndarray:
  """B_simple as a ratio of running sums (or means) of the two-batch estimates.

  Averaging numerator and denominator separately before dividing, as McCandlish et
  al. do, avoids the bias and heavy tails of averaging per-step ratios.

  Example:
    >>> float(noise_scale_from_running(np.sum([40.0, 60.0]), np.sum([0.5, 1.5])))
    50.0
  """
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.asarray(sum_trace, float) / np.asarray(sum_g2, float)


def exact_noise_scale(per_example_grads) -> float:
  """B_simple = tr(Σ) / |G|^2 from an (n, d) array of per-example gradients.

  G is the mean gradient and Σ the per-example covariance, treating the n rows as
  the whole data distribution (ddof=0): the exact value the two-batch estimator
  targets when batches are drawn with replacement from those rows.

  Example:
    >>> float(exact_noise_scale(np.array([[0.0, 1.0], [2.0, 1.0]])))  # trΣ=1, |G|^2=2
    0.5
  """
  g = np.asarray(per_example_grads, float)
  if g.ndim != 2 or g.shape[0] < 2:
    raise ConfigError(
        f"per_example_grads: need an (n, d) array with n ≥ 2; got shape {g.shape}.")
  mean = g.mean(0)
  trace = ((g - mean) ** 2).sum(1).mean()
  return float(trace / (mean @ mean))


# ------------------------------------------------------------------- run summaries


def _values(history: pd.DataFrame, members: pd.DataFrame, by: list[str]) -> pd.DataFrame:
  require_columns(history, ("member", "examples_seen", "noise_scale"), "history")
  members = prepare_members(members)
  require_columns(members, ("member", *by), "members")
  ok = members.loc[trained_mask(members), ["member", *by]]
  h = history[["member", "examples_seen", "noise_scale"]].merge(ok, on="member")
  return h[np.isfinite(h["noise_scale"].to_numpy(float))]


def noise_scale_curve(history: pd.DataFrame, members: pd.DataFrame,
                      by: Sequence[str] = ("aug",)) -> pd.DataFrame:
  """The noise scale over training: per group and evaluation, quartiles over members.

  Only trained members (`lrjax.analysis.stats`) with a finite ``noise_scale`` count.

  Args:
    history: the history table with a ``noise_scale`` column.
    members: the members table.
    by: the member columns to group by.

  Returns:
    One row per (group, ``examples_seen``): ``median``, ``q25``, ``q75`` over
    members, and ``n_members``.

  Raises:
    ConfigError: a column is missing.

  Example:
    >>> m = pd.DataFrame({"member": [0, 1], "lr": 0.1, "batch_size": 32, "seed": [0, 1],
    ...                   "diverged": False})
    >>> h = pd.DataFrame({"member": [0, 0, 1, 1], "examples_seen": [10, 20, 10, 20],
    ...                   "noise_scale": [10.0, 30.0, 20.0, 50.0]})
    >>> noise_scale_curve(h, m)[["examples_seen", "median"]].values.tolist()
    [[10.0, 15.0], [20.0, 40.0]]
  """
  by = list(by)
  h = _values(history, members, by)
  g = h.groupby([*by, "examples_seen"], sort=True)["noise_scale"]
  return pd.DataFrame({"median": g.median(), "q25": g.quantile(0.25),
                       "q75": g.quantile(0.75), "n_members": g.size()}).reset_index()


def noise_scale_summary(history: pd.DataFrame, members: pd.DataFrame,
                        by: Sequence[str] = ("aug",)) -> pd.DataFrame:
  """One number per group: the median over training of the per-evaluation medians.

  B_simple changes as training proceeds (it typically grows as the loss falls), so
  the summary keeps its spread over training: the 25th and 75th percentiles over
  evaluations of the per-evaluation median, and its first and last values.

  Args:
    history: the history table with a ``noise_scale`` column.
    members: the members table.
    by: the member columns to group by.

  Returns:
    One row per group: ``noise_scale`` (median over evaluations), ``spread_lo``,
    ``spread_hi`` (25th/75th percentiles over evaluations), ``first``, ``last``,
    ``n_evals``, ``n_members``. No rows when no value is finite.

  Example:
    >>> m = pd.DataFrame({"member": [0], "lr": 0.1, "batch_size": 32, "diverged": False})
    >>> h = pd.DataFrame({"member": 0, "examples_seen": [10, 20, 30],
    ...                   "noise_scale": [10.0, 20.0, 40.0]})
    >>> noise_scale_summary(h, m)[["noise_scale", "first", "last"]].values.tolist()
    [[20.0, 10.0, 40.0]]
  """
  by = list(by)
  curve = noise_scale_curve(history, members, by)
  h = _values(history, members, by)
  rows = []
  for key, g in curve.groupby(by, sort=True):
    key = key if isinstance(key, tuple) else (key,)
    v = g.sort_values("examples_seen")["median"].to_numpy(float)
    n_members = h.loc[(h[by] == pd.Series(dict(zip(by, key)))).all(axis=1), "member"].nunique()
    rows.append({**dict(zip(by, key)), "noise_scale": float(np.median(v)),
                 "spread_lo": float(np.quantile(v, 0.25)),
                 "spread_hi": float(np.quantile(v, 0.75)), "first": float(v[0]),
                 "last": float(v[-1]), "n_evals": len(v), "n_members": int(n_members)})
  return pd.DataFrame(rows, columns=[*by, "noise_scale", "spread_lo", "spread_hi", "first",
                                     "last", "n_evals", "n_members"])
