"""Steps to a target loss per batch size, and the critical batch size B_crit.

McCandlish et al. 2018, "An Empirical Model of Large-Batch Training": the steps S a
batch size B needs to reach a target follow ``S = S_min (1 + B_crit / B)``. Below
B_crit doubling the batch nearly halves the steps; above it, it barely helps. See
`lrjax.analysis.stats` for the conventions (cells, the seed bootstrap).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax.analysis import cube as cube_lib
from lrjax.analysis import stats
from lrjax.analysis.stats import (check_n_boot, not_diverged_mask, prepare_members,
                                  require_columns)
from lrjax.errors import ConfigError
from lrjax.grid import CORE_AXES


def _history_best(history: pd.DataFrame, members: pd.DataFrame, metric: str) -> pd.Series:
  """Each non-diverged member's best value of ``metric`` along its history."""
  agg = "min" if stats.metric_mode(metric) == "min" else "max"
  best = history.groupby("member")[metric].agg(agg)
  keep = members.loc[not_diverged_mask(members), "member"]
  return best.reindex(keep.to_numpy())


def default_target(history: pd.DataFrame, members: pd.DataFrame,
                   metric: str = "val_loss") -> float:
  """The hardest target every batch size reaches on every seed at some LR.

  Rule: for each member, its best ``metric`` over its history (diverged members
  excluded); for each cell and LR, the worst of those over seeds (a setting reaches
  a target only if all its seeds do); for each batch size, the best such setting
  over LRs, aug levels and extra axes; the target is the worst of these over batch
  sizes. So every batch size has at least one setting where all seeds reach it,
  and the steps-vs-batch-size curve has a point at every batch size. A batch size
  that trains badly makes the target easy; pass an explicit target to
  `steps_to_target` to study a harder one (the critical batch size grows as the
  target gets harder, McCandlish et al. 2018).

  Example:
    >>> m = pd.DataFrame({"member": [0, 1], "lr": [0.1, 0.1], "batch_size": [32, 64],
    ...                   "seed": [0, 0], "diverged": [False, False]})
    >>> h = pd.DataFrame({"member": [0, 0, 1, 1], "examples_seen": [32, 64, 64, 128],
    ...                   "updates": [1, 2, 1, 2], "val_loss": [2.0, 1.0, 2.0, 1.5]})
    >>> default_target(h, m)
    1.5
  """
  members = prepare_members(members)
  require_columns(members, ("member",), "members")
  require_columns(history, ("member", metric), "history")
  best = _history_best(history, members, metric)
  m = members.set_index("member").loc[best.index].assign(_best=best.to_numpy())
  setting = [*stats.cell_columns(members.drop(columns=["member"])), "lr"]
  worst, best_of, worst_of = ("max", "min", "max") if stats.metric_mode(metric) == "min" \
      else ("min", "max", "min")
  # A setting with a seed lacking history (NaN) does not reach anything.
  per_setting = m.groupby(setting, dropna=False)["_best"].agg(
      lambda v: v.agg(worst) if v.notna().all() else np.nan)
  per_batch = per_setting.groupby(level="batch_size").agg(best_of)
  if per_batch.isna().all():
    return float("nan")
  return float(per_batch.agg(worst_of))


def _target_levels(history: pd.DataFrame, members: pd.DataFrame, target: float | None,
                   metric: str, by: Sequence[str] | None) -> np.ndarray:
  """Each member's target: ``target``, else `default_target` of its ``by`` group."""
  if target is not None:
    levels = np.full(len(members), float(target))
  elif by:
    require_columns(members, by, "members")
    levels = np.full(len(members), np.nan)
    for _, g in members.groupby(list(by), dropna=False, sort=True):
      sub = history[history["member"].isin(g["member"])]
      levels[g.index.to_numpy()] = default_target(sub, g, metric)
  else:
    levels = np.full(len(members), default_target(history, members, metric))
  if not np.isfinite(levels).any():
    raise ConfigError(
        f"target: no finite target for {metric!r} (no member has history); pass target=.")
  return levels


def steps_to_target(history: pd.DataFrame, members: pd.DataFrame,
                    target: float | None = None, metric: str = "val_loss",
                    by: Sequence[str] | None = None) -> pd.DataFrame:
  """Updates and examples each member needed to first reach a target.

  A member reaches the target at its first evaluation with ``metric <= target``
  (``>=`` for metrics that are maximised). Diverged members, and members that never
  reach it, get NaN. Resolution is the evaluation interval: the count is that of the
  first evaluation at or past the target.

  Args:
    history: the history table (``member``, ``examples_seen``, ``metric``;
      ``updates``, or else steps are ``examples_seen / batch_size``).
    members: the members table.
    target: the level to reach; default `default_target`.
    metric: the history column.
    by: with ``target`` None, a default target per group of these member columns
      (e.g. ``["aug"]``: each aug level gets the hardest target all its batch sizes
      reach, since stronger augmentation usually ends at a higher loss); None: one
      default target for the whole table.

  Returns:
    One row per member: ``member``, the grid axes, ``steps``, ``examples`` and
    ``target`` (the level used for the member's group).

  Raises:
    ConfigError: a column is missing, or no target can be set.

  Example:
    >>> m = pd.DataFrame({"member": [0, 1], "lr": [0.1, 0.1], "batch_size": [32, 64],
    ...                   "seed": [0, 0], "diverged": [False, False]})
    >>> h = pd.DataFrame({"member": [0, 0, 1, 1], "examples_seen": [32, 64, 64, 128],
    ...                   "updates": [1, 2, 1, 2], "val_loss": [2.0, 1.0, 2.0, 1.5]})
    >>> steps_to_target(h, m)[["member", "steps", "examples", "target"]].values.tolist()
    [[0.0, 2.0, 64.0, 1.5], [1.0, 2.0, 128.0, 1.5]]
  """
  members = prepare_members(members)
  require_columns(members, ("member",), "members")
  require_columns(history, ("member", "examples_seen", metric), "history")
  levels = _target_levels(history, members, target, metric, by)
  h = history.sort_values(["member", "examples_seen"])
  level = pd.Series(levels, index=members["member"].to_numpy())
  level_h = level.reindex(h["member"].to_numpy()).to_numpy()
  with np.errstate(invalid="ignore"):
    reached = (h[metric].to_numpy(float) <= level_h if stats.metric_mode(metric) == "min"
               else h[metric].to_numpy(float) >= level_h)
  first = h[reached].groupby("member").first()
  axes = ["member", *CORE_AXES, *stats.extra_axes(members)]
  extra = [c for c in ("diverged", "status") if c in members.columns]
  out = members[axes + extra].copy()
  hit = first.reindex(out["member"].to_numpy())
  examples = hit["examples_seen"].to_numpy(float)
  if "updates" in hit.columns:
    steps = hit["updates"].to_numpy(float)
  else:
    steps = examples / out["batch_size"].to_numpy(float)
  not_diverged = not_diverged_mask(members)
  out["steps"] = np.where(not_diverged, steps, np.nan)
  out["examples"] = np.where(not_diverged, examples, np.nan)
  out["target"] = levels
  return out


class BestStepsFit(NamedTuple):
  """`best_steps_per_batch` with its bootstrap replicates.

  Attributes:
    table: the `best_steps_per_batch` table, one row per cell.
    reps: (n_boot, cells) best mean steps per replicate (columns follow ``table``'s
      rows).
  """
  table: pd.DataFrame
  reps: np.ndarray


def best_steps_fit(steps: pd.DataFrame, n_boot: int = 1000,
                   rng_seed: int = 0) -> BestStepsFit:
  """`best_steps_per_batch` and its joint bootstrap replicates, computed once.

  `critical_batch_from_fit` fits B_crit to the result, so the critical batch size
  and the best steps share one computation and the same seed draws.

  Args:
    steps, n_boot, rng_seed: as for `best_steps_per_batch`.

  Returns:
    A `BestStepsFit`.

  Example:
    >>> s = pd.DataFrame({"lr": 0.1, "batch_size": [16, 32, 64], "seed": 0,
    ...                   "steps": [300.0, 200.0, 150.0]})
    >>> fit = best_steps_fit(s, n_boot=10)
    >>> fit.table["best_steps"].tolist(), fit.reps.shape
    ([300.0, 200.0, 150.0], (10, 3))
  """
  steps = prepare_members(steps)
  require_columns(steps, ("steps",), "steps")
  check_n_boot(n_boot)
  cols = stats.cell_columns(steps, exclude=stats.STEPS_COLUMNS)
  value = steps["steps"].to_numpy(float)
  cube = cube_lib.make_cube(steps, cols, value, np.isfinite(value))
  point = cube_lib.best_per_replicate(cube, cube_lib.data_counts(cube), refine=False)
  reps = cube_lib.best_per_replicate(cube, stats.seed_counts(cube.n_seeds, n_boot, rng_seed),
                                     refine=False)
  n_seeds = cube.in_cell.sum(-1)
  has_interval = (n_seeds >= 2) & (n_boot > 0) & point.has[0]
  # Steps are positive with roughly multiplicative seed noise: widen on the log scale,
  # so a small-sample interval never reaches below zero.
  with np.errstate(divide="ignore", invalid="ignore"):
    lo, hi = np.exp(stats.interval(np.log(reps.value), n_seeds, has_interval))
  table = cube.cells.assign(
      best_steps=point.value[0], best_steps_lo=lo, best_steps_hi=hi,
      best_examples=point.value[0] * cube.cells["batch_size"].to_numpy(float),
      best_lr=cube_lib.grid_value(cube.lrs, point.idx[0]), n_seeds=n_seeds,
      has_interval=has_interval)
  if "target" in steps.columns:
    table["target"] = steps.groupby(cols, dropna=False, sort=True)["target"].first().to_numpy()
  return BestStepsFit(table, reps.value)


def best_steps_per_batch(steps: pd.DataFrame, n_boot: int = 1000,
                         rng_seed: int = 0) -> pd.DataFrame:
  """Fewest steps to the target per cell, over LRs where every seed reaches it.

  Per (batch_size, aug, extra axes): the minimum over LRs of the mean over seeds of
  ``steps``, counting only LRs where all seeds reached the target; interval from the
  seed bootstrap, widened on the log scale (steps are positive). (Min over noisy
  means is biased low, equally at every batch size.)

  Args:
    steps: the output of `steps_to_target`.
    n_boot: bootstrap replicates.
    rng_seed: seed of the bootstrap draws.

  Returns:
    One row per cell: cell columns, ``best_steps``, ``best_steps_lo``,
    ``best_steps_hi``, ``best_examples`` (best_steps × batch_size), ``best_lr`` (the
    grid LR achieving it), ``n_seeds``, ``has_interval`` and, when ``steps`` has
    one, ``target``. NaN where no LR reaches.

  Example:
    >>> s = pd.DataFrame({"lr": [0.1, 0.1, 0.2, 0.2], "batch_size": 32,
    ...                   "seed": [0, 1, 0, 1], "steps": [100.0, 120.0, 80.0, np.nan]})
    >>> best_steps_per_batch(s, n_boot=0)[["best_steps", "best_lr"]].values.tolist()
    [[110.0, 0.1]]
  """
  return best_steps_fit(steps, n_boot, rng_seed).table


def _wls_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Weighted least-squares intercept and slope of each row of y (R, n) on x (n,)."""
  m = np.isfinite(y)
  ww = np.where(m, w, 0.0)
  with np.errstate(invalid="ignore", divide="ignore"):
    sw = ww.sum(-1)
    xbar = (ww * x).sum(-1) / sw
    ybar = (ww * np.where(m, y, 0.0)).sum(-1) / sw
    dx = x - xbar[..., None]
    slope = (ww * dx * np.where(m, y - ybar[..., None], 0.0)).sum(-1) / (ww * dx**2).sum(-1)
  ok = m.sum(-1) >= 2
  return np.where(ok, ybar - slope * xbar, np.nan), np.where(ok, slope, np.nan)


def _b_crit(intercept: np.ndarray, slope: np.ndarray) -> np.ndarray:
  """slope / intercept, with the fit's limits: S_min ≤ 0 → ∞; slope ≤ 0 → 0."""
  with np.errstate(invalid="ignore", divide="ignore"):
    b = np.maximum(slope, 0.0) / intercept
  b = np.where(intercept > 0, b, np.where(slope > 0, np.inf, np.nan))
  return np.where(np.isfinite(intercept) & np.isfinite(slope), b, np.nan)


def _b_crit_interval(x: np.ndarray, reps: np.ndarray, w: np.ndarray,
                     n_seeds: int) -> tuple[float, float]:
  """95% interval of B_crit from the replicate fits of steps ``reps`` (R, n) on ``x``."""
  b_crit = _b_crit(*_wls_line(x, reps, w))
  # B_crit is in [0, ∞]: widen on the log scale (0 -> -inf, ∞ -> inf), so the
  # interval stays within [0, ∞].
  with np.errstate(divide="ignore", invalid="ignore"):
    lo, hi = (float(np.exp(v[0])) for v in stats.interval(np.log(b_crit)[:, None], n_seeds))
  return lo, hi


def _critical_batch_row(g: pd.DataFrame, label: dict, reps: np.ndarray) -> dict:
  """The B_crit fit of one group's cells ``g`` (sorted by batch size) as a row."""
  reached = np.isfinite(g["best_steps"].to_numpy())
  n = int(reached.sum())
  row = {**label, "b_crit": np.nan, "b_crit_lo": np.nan, "b_crit_hi": np.nan,
         "s_min": np.nan, "e_min": np.nan, "n_batch_sizes": n,
         "n_seeds": int(g["n_seeds"].min())}
  if "target" in g.columns:
    row["target"] = float(g["target"].iloc[0])
  b = g["batch_size"].to_numpy(float)[reached]
  if n < 3:
    return {**row, "reason": f"not settled: only {n} of {len(g)} batch sizes reach "
                             "the target at some LR on every seed (need ≥ 3)"}
  s = g["best_steps"].to_numpy()[reached]
  x, w = 1.0 / b, 1.0 / s**2
  a, slope = (v[0] for v in _wls_line(x, s[None], w))
  if not a > 0:
    return {**row, "reason": "not settled: fitted S_min ≤ 0 — steps still fall ∝ 1/B up "
                             "to the largest batch size, so B_crit lies above the range "
                             "tried"}
  if not slope > 0:
    return {**row, "reason": "not settled: steps do not fall as the batch grows, so "
                             "B_crit lies below the range tried"}
  bc = slope / a
  row.update(b_crit=bc, s_min=a, e_min=slope)
  notes = [f"fit over {n} batch sizes ({int(b.min())}–{int(b.max())})"]
  if g["has_interval"].to_numpy()[reached].all():
    lo, hi = _b_crit_interval(x, reps[:, g.index.to_numpy()[reached]], w,
                              g["n_seeds"].to_numpy()[reached].min())
    row.update(b_crit_lo=lo, b_crit_hi=hi)
    if hi == np.inf:
      notes.append("upper bound unbounded: in some resamples steps keep falling ∝ 1/B")
  else:
    notes.append("one seed: no interval")
  if not b.min() <= bc <= b.max():
    notes.append("B_crit is outside the batch sizes tried (an extrapolation)")
  return {**row, "reason": "; ".join(notes)}


def critical_batch_from_fit(fit: BestStepsFit) -> pd.DataFrame:
  """`fit_critical_batch` of a `best_steps_fit`: B_crit per group from its replicates.

  Args:
    fit: a `best_steps_fit` of the ``steps_to_target`` table.

  Returns:
    The `fit_critical_batch` table.

  Example:
    >>> b = np.array([16, 32, 64, 128, 256])
    >>> s = pd.DataFrame({"lr": 0.1, "batch_size": b, "seed": 0,
    ...                   "steps": 1000 * (1 + 100 / b)})
    >>> critical_batch_from_fit(best_steps_fit(s, n_boot=0))["b_crit"].round(6).tolist()
    [100.0]
  """
  t = fit.table
  group_cols = [c for c in t.columns[:list(t.columns).index("best_steps")] if c != "batch_size"]
  rows = []
  for key, g in t.groupby(group_cols, dropna=False, sort=True):
    key = key if isinstance(key, tuple) else (key,)
    rows.append(_critical_batch_row(g.sort_values("batch_size"), dict(zip(group_cols, key)),
                                    fit.reps))
  return pd.DataFrame(rows)


def fit_critical_batch(steps: pd.DataFrame, n_boot: int = 1000,
                       rng_seed: int = 0) -> pd.DataFrame:
  """Critical batch size from steps-to-target vs batch size (McCandlish et al. 2018).

  The model ``S = S_min (1 + B_crit / B)`` is linear in 1/B: ``S = S_min +
  (S_min B_crit) / B``; equivalently ``E = S B = E_min (1 + B / B_crit)`` with
  ``E_min = S_min B_crit``. Per (aug, extra axes) it fits ``S`` on ``1/B`` by least
  squares weighted by ``1 / S**2`` (seed noise in steps is roughly proportional to
  steps, so this fits relative error and keeps the small batch sizes, with many
  steps, from dominating), over the batch sizes where `best_steps_per_batch` found
  an LR that reaches the target; ``B_crit = slope / intercept``. The interval
  re-fits each joint seed-bootstrap replicate; a replicate with ``S_min ≤ 0`` (steps
  still falling ∝ 1/B over the whole range) counts as ``B_crit = ∞``, so the upper
  bound can be infinite; the small-sample widening acts on log B_crit, so the
  interval stays within [0, ∞].

  Args:
    steps: the output of `steps_to_target`.
    n_boot: bootstrap replicates.
    rng_seed: seed of the bootstrap draws.

  Returns:
    One row per group: group columns, ``b_crit``, ``b_crit_lo``, ``b_crit_hi``,
    ``s_min``, ``e_min``, ``n_batch_sizes``, ``n_seeds``, ``target`` (when ``steps``
    has one), ``reason``; ``reason``
    starts with ``"not settled"`` (and the estimates are NaN) when fewer than 3
    batch sizes reach the target or the fitted ``S_min`` or slope is ≤ 0.

  Example:
    >>> b = np.array([16, 32, 64, 128, 256])
    >>> s = pd.DataFrame({"lr": 0.1, "batch_size": b, "seed": 0,
    ...                   "steps": 1000 * (1 + 100 / b)})
    >>> r = fit_critical_batch(s, n_boot=0)
    >>> r[["b_crit", "s_min", "n_batch_sizes"]].round(6).values.tolist()
    [[100.0, 1000.0, 5.0]]
  """
  return critical_batch_from_fit(best_steps_fit(steps, n_boot, rng_seed))
