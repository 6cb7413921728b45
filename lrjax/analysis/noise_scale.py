"""The gradient noise scale B_simple = tr(Σ) / |G|^2: estimators and run summaries.

McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", Appendix A: the
noise scale predicts the critical batch size; it can be estimated during training
from squared gradient norms at two batch sizes. The engine may write a per-evaluation
``noise_scale`` column in the history; `noise_scale_curve` and `noise_scale_summary`
read it: the spread over training (`noise_scale_summary`), and B_simple per
augmentation strength at matched training progress with a 95% interval over seeds
(`noise_scale_per_seed`, `noise_scale_at_target`, `noise_scale_aug_effect`).

The engine's estimate is in units of distinct examples: with ``multiplicity`` M, a
micro-batch holds b examples, each in M augmented copies, and its gradient is the
mean over the b·M rows. The copies of one example are correlated, so the micro-batch
gradient's covariance is Σ_M / b, where Σ_M is the covariance of one example's
gradient averaged over its M copies; the two-batch estimator therefore counts b (and
k·b) examples, not b·M independent draws, and estimates tr(Σ_M). Counting b·M
would inflate tr(Σ) and B_simple M-fold.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax import outcomes
from lrjax.analysis import critical_batch, inference, stats
from lrjax.analysis.stats import prepare_members, require_columns, usable_mask
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
  ok = members.loc[usable_mask(members), ["member", *by]]
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


# ------------------------------------------------------- at matched progress


def _loosest_target(history: pd.DataFrame, members: pd.DataFrame, metric: str,
                    by: list[str]) -> float:
  """The easiest of the groups' `critical_batch.default_target`: every group reaches it."""
  groups = members.groupby(by, dropna=False, sort=True) if by else [((), members)]
  targets = np.array([critical_batch.default_target(
      history[history["member"].isin(g["member"])], g, metric) for _, g in groups], float)
  targets = targets[np.isfinite(targets)]
  if not len(targets):
    return np.nan
  return float(targets.max() if stats.metric_mode(metric) == "min" else targets.min())


def noise_scale_per_seed(history: pd.DataFrame, members: pd.DataFrame,
                         target: float | None = None, metric: str = "val_loss",
                         by: Sequence[str] = ("aug",)) -> pd.DataFrame:
  """B_simple per group and seed at matched training progress: where the loss first
  reaches ``target``.

  Each member that learned (`lrjax.analysis.stats.usable_mask`) at its cell's best LR
  (`lrjax.outcomes.cell_best_lr`) gives its ``noise_scale`` at its first evaluation
  with ``metric`` at or past ``target``; per (group, seed), the geometric mean over
  those members (the group's batch sizes and other axes). So every group is compared
  at the same loss, at its own best LR, not pooled over LRs and training stages.

  Args:
    history: the history table (``member``, ``examples_seen``, ``noise_scale``,
      ``metric``).
    members: the members table.
    target: the level; default the easiest of the groups' default targets
      (`lrjax.analysis.critical_batch.default_target`), which every group reaches.
    metric: the history column that marks progress.
    by: the member columns to group by.

  Returns:
    One row per (group, seed): the group columns, ``seed``, ``log_noise_scale``,
    ``n_members`` and ``target``.

  Example:
    >>> m = pd.DataFrame({"member": [0, 1], "lr": 0.1, "batch_size": 64, "seed": [0, 1],
    ...                   "diverged": False, "final_val_loss": 0.5})
    >>> h = pd.DataFrame({"member": [0, 0, 1, 1], "examples_seen": [64, 128] * 2,
    ...                   "val_loss": [2.0, 0.5, 2.0, 0.4], "noise_scale": [9., 20., 9., 40.]})
    >>> t = noise_scale_per_seed(h, m, target=1.0)
    >>> np.exp(t["log_noise_scale"]).round(6).tolist(), t["target"].tolist()
    ([20.0, 40.0], [1.0, 1.0])
  """
  by = list(by)
  members = prepare_members(members)
  require_columns(history, ("member", "examples_seen", "noise_scale", metric), "history")
  require_columns(members, ("member", "lr", "final_val_loss", *by), "members")
  at_best = members["lr"].to_numpy(float) == outcomes.cell_best_lr(members).to_numpy(float)
  keep = members[usable_mask(members) & at_best]
  if target is None:
    target = _loosest_target(history, members, metric, by)
  h = history[history["member"].isin(keep["member"])].sort_values(
      ["member", "examples_seen"], kind="stable")
  with np.errstate(invalid="ignore"):
    y = h[metric].to_numpy(float)
    reached = y <= target if stats.metric_mode(metric) == "min" else y >= target
  first = h[reached].groupby("member", sort=True).head(1)
  value = first[["member", "noise_scale"]].merge(keep[["member", "seed", *by]], on="member")
  value = value[np.isfinite(value["noise_scale"]) & (value["noise_scale"] > 0)]
  out = (value.assign(log_noise_scale=np.log(value["noise_scale"].to_numpy(float)))
         .groupby([*by, "seed"], sort=True)
         .agg(log_noise_scale=("log_noise_scale", "mean"), n_members=("member", "size"))
         .reset_index())
  return out.assign(target=float(target))


def noise_scale_at_target(per_seed: pd.DataFrame, by: Sequence[str] = ("aug",)
                          ) -> pd.DataFrame:
  """B_simple per group at matched progress, with a 95% interval over seeds.

  The geometric mean over seeds of `noise_scale_per_seed`, with the Student-t
  interval of the mean log value (seeds are the replicates), exponentiated.

  Example:
    >>> t = pd.DataFrame({"aug": 0.0, "seed": [0, 1, 2], "n_members": 2, "target": 1.0,
    ...                   "log_noise_scale": np.log([40.0, 50.0, 62.5])})
    >>> r = noise_scale_at_target(t).iloc[0]
    >>> round(float(r["noise_scale"]), 3), int(r["n_seeds"]), bool(r["lo"] < 50 < r["hi"])
    (50.0, 3, True)
  """
  by = list(by)
  rows = []
  for key, g in per_seed.groupby(by, sort=True):
    key = key if isinstance(key, tuple) else (key,)
    mean, lo, hi, n = inference.mean_interval(g["log_noise_scale"].to_numpy(float))
    rows.append({**dict(zip(by, key)), "noise_scale": np.exp(mean), "lo": np.exp(lo),
                 "hi": np.exp(hi), "n_seeds": n, "n_members": int(g["n_members"].sum()),
                 "target": float(g["target"].iloc[0])})
  return pd.DataFrame(rows, columns=[*by, "noise_scale", "lo", "hi", "n_seeds",
                                     "n_members", "target"])


def noise_scale_aug_effect(per_seed: pd.DataFrame, reference_aug: float | None = None
                           ) -> pd.DataFrame:
  """How each augmentation strength changes B_simple at matched progress, paired by seed.

  Per seed, the ratio of its B_simple at that strength to the reference strength's
  (`noise_scale_per_seed`, grouped by ``aug``); the geometric mean ratio over seeds
  with its paired t interval (`lrjax.analysis.inference.paired_difference` on log
  values). ``verdict``: "higher" or "lower" when the interval excludes 1, else "not
  settled".

  Example:
    >>> t = pd.DataFrame({"aug": [0.0] * 3 + [1.0] * 3, "seed": [0, 1, 2] * 2,
    ...                   "log_noise_scale": np.log([40., 50., 60., 80., 100., 120.])})
    >>> r = noise_scale_aug_effect(t).iloc[0]
    >>> float(r["aug"]), round(float(r["ratio"]), 2), r["verdict"]
    (1.0, 2.0, 'higher')
  """
  wide = per_seed.pivot_table(index="seed", columns="aug", values="log_noise_scale")
  if wide.shape[1] < 2:
    return pd.DataFrame(columns=["aug", "reference_aug", "ratio", "lo", "hi", "n_seeds",
                                 "p_value", "verdict"])
  ref = float(wide.columns.min() if reference_aug is None else reference_aug)
  rows = []
  for aug in wide.columns:
    if aug == ref or ref not in wide.columns:
      continue
    d = inference.paired_difference(wide[aug].to_numpy(), wide[ref].to_numpy())
    verdict = ("not settled" if not (np.isfinite(d.lo) and (d.lo > 0 or d.hi < 0))
               else "higher" if d.lo > 0 else "lower")
    rows.append({"aug": float(aug), "reference_aug": ref, "ratio": np.exp(d.mean),
                 "lo": np.exp(d.lo), "hi": np.exp(d.hi), "n_seeds": d.n,
                 "p_value": d.p_value, "verdict": verdict})
  return pd.DataFrame(rows)
