"""Steps to a target: when each member first reaches a target level of a metric.

The input of the critical batch size (`lrjax.analysis.critical_batch`): the steps and
examples each member needed to reach a validation loss. An evaluation interval is
fixed in examples, so it holds fewer steps at a larger batch; counting the first
evaluation past the target would bias the steps by an amount that depends on the
batch size, which the seed bootstrap cannot see. `steps_to_target` therefore
interpolates the crossing between the two evaluations around it (the metric linear
between them; steps and examples on the log scale). Targets (`default_targets`): the
hardest level every batch size reaches, and easier ones.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from lrjax.analysis import stats
from lrjax.analysis.stats import not_diverged_mask, prepare_members, require_columns
from lrjax.errors import ConfigError
from lrjax.grid import CORE_AXES

# Columns `steps_to_target` adds besides `stats.STEPS_COLUMNS`: which target (0 the
# hardest, larger ranks easier) and whether the member was already past it at its
# first evaluation (its steps are then that evaluation's, an upper bound).
TARGET_RANK = "target_rank"
FIRST_EVAL = "first_eval_past"
STEPS_OUTPUT_COLUMNS = (*stats.STEPS_COLUMNS, TARGET_RANK, FIRST_EVAL)
# How many easier targets `default_targets` adds to the default one.
N_EASIER = 2


# ------------------------------------------------------------------------ targets


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


def default_targets(history: pd.DataFrame, members: pd.DataFrame,
                    metric: str = "val_loss", n_easier: int = N_EASIER) -> list[float]:
  """`default_target` and up to ``n_easier`` easier targets, hardest first.

  Rule: the easier targets divide the way from the default target ``T`` to ``F``,
  the best value any non-diverged member had at its *first* evaluation, into
  ``n_easier + 1`` equal steps: equal ratios when both are positive (losses), else
  equal differences; ``F`` itself is left out. So no member is already past an
  easier target at its first evaluation (its steps to it are interpolated, never a
  bound), and every setting that reaches ``T`` reaches them. When ``F`` is no easier
  than ``T`` (some member was past the hardest target at its first evaluation),
  there are no easier targets.

  Args:
    history: the history table.
    members: the members table.
    metric: the history column.
    n_easier: how many easier targets at most.

  Returns:
    The targets, the default first; empty when no member has history.

  Example:
    >>> m = pd.DataFrame({"member": [0, 1], "lr": [0.1, 0.1], "batch_size": [32, 64],
    ...                   "seed": [0, 0], "diverged": [False, False]})
    >>> h = pd.DataFrame({"member": [0, 0, 1, 1], "examples_seen": [32, 64, 64, 128],
    ...                   "updates": [1, 2, 1, 2], "val_loss": [8.0, 1.0, 8.0, 1.0]})
    >>> [round(t, 6) for t in default_targets(h, m)]
    [1.0, 2.0, 4.0]
  """
  target = default_target(history, members, metric)
  if not np.isfinite(target):
    return []
  members = prepare_members(members)
  keep = members.loc[not_diverged_mask(members), "member"]
  h = history[history["member"].isin(keep)].sort_values("examples_seen", kind="stable")
  first = h.groupby("member")[metric].first()
  minimise = stats.metric_mode(metric) == "min"
  f = float(first.min() if minimise else first.max())
  if not np.isfinite(f) or (f <= target if minimise else f >= target):
    return [target]
  k = np.arange(1, n_easier + 1) / (n_easier + 1)
  easier = target * (f / target) ** k if target > 0 and f > 0 else target + (f - target) * k
  return [target, *map(float, easier)]


def _target_levels(history: pd.DataFrame, members: pd.DataFrame,
                   target: float | Sequence[float] | None, metric: str,
                   by: Sequence[str] | None, n_easier: int) -> np.ndarray:
  """(members, K) targets of each member, hardest first; NaN where its group has fewer."""
  if target is not None:
    levels = np.sort(np.atleast_1d(np.asarray(target, float)))
    levels = levels if stats.metric_mode(metric) == "min" else levels[::-1]
    return np.tile(levels, (len(members), 1))
  if by:
    require_columns(members, by, "members")
  groups = ([g for _, g in members.groupby(list(by), dropna=False, sort=True)]
            if by else [members])
  found = [(g.index.to_numpy(),
            default_targets(history[history["member"].isin(g["member"])], g, metric,
                            n_easier)) for g in groups]
  levels = np.full((len(members), max(1, *(len(t) for _, t in found))), np.nan)
  for rows, t in found:
    levels[np.ix_(rows, np.arange(len(t)))] = t
  if not np.isfinite(levels).any():
    raise ConfigError(
        f"target: no finite target for {metric!r} (no member has history); pass target=.")
  return levels


# ---------------------------------------------------------------- steps to target


def _log_interp(a: np.ndarray, b: np.ndarray, frac: np.ndarray) -> np.ndarray:
  """``frac`` of the way from ``a`` to ``b`` on the log scale (linear where a ≤ 0)."""
  with np.errstate(invalid="ignore", divide="ignore"):
    log = np.exp(np.log(a) + frac * (np.log(b) - np.log(a)))
  return np.where(a > 0, log, a + frac * (b - a))


def _crossings(h: pd.DataFrame, level: np.ndarray, metric: str,
               batch: np.ndarray) -> pd.DataFrame:
  """Where each member of ``h`` first reaches its level, refined between evaluations.

  Args:
    h: history rows sorted by member, then examples.
    level: (rows,) the target of each row's member.
    metric: the history column.
    batch: (rows,) each row's batch size (steps are examples / batch without an
      ``updates`` column).

  Returns:
    Indexed by the members that reach their level: ``steps``, ``examples`` and
    `FIRST_EVAL` (no earlier finite evaluation to interpolate from: the count is the
    first evaluation's).
  """
  y = h[metric].to_numpy(float)
  member = h["member"].to_numpy()
  examples = h["examples_seen"].to_numpy(float)
  steps = h["updates"].to_numpy(float) if "updates" in h.columns else examples / batch
  with np.errstate(invalid="ignore"):
    reached = y <= level if stats.metric_mode(metric) == "min" else y >= level
  pos = np.flatnonzero(reached)
  pos = pos[np.r_[True, member[pos][1:] != member[pos][:-1]]] if len(pos) else pos
  prev = np.maximum(pos - 1, 0)
  has_prev = (pos > 0) & (member[prev] == member[pos]) & np.isfinite(y[prev])
  with np.errstate(invalid="ignore", divide="ignore"):
    # Where the metric, linear between the two evaluations, equals the level.
    frac = np.clip((y[prev] - level[pos]) / (y[prev] - y[pos]), 0.0, 1.0)
  frac = np.where(np.isfinite(frac), frac, 1.0)
  return pd.DataFrame({
      "steps": np.where(has_prev, _log_interp(steps[prev], steps[pos], frac), steps[pos]),
      "examples": np.where(has_prev, _log_interp(examples[prev], examples[pos], frac),
                           examples[pos]),
      FIRST_EVAL: ~has_prev}, index=member[pos])


def steps_to_target(history: pd.DataFrame, members: pd.DataFrame,
                    target: float | Sequence[float] | None = None,
                    metric: str = "val_loss", by: Sequence[str] | None = None,
                    n_easier: int = 0) -> pd.DataFrame:
  """Updates and examples each member needed to first reach each target.

  A member reaches a target between its last evaluation short of it and its first
  evaluation at or past it (``metric <= target``; ``>=`` for metrics that are
  maximised). The metric is taken as linear between the two, and steps and
  examples are interpolated on the log scale to where it equals the target. A
  member already past the target at its first evaluation keeps that evaluation's
  count and is flagged (`FIRST_EVAL`). Diverged members, and members that never
  reach the target, get NaN.

  Args:
    history: the history table (``member``, ``examples_seen``, ``metric``;
      ``updates``, or else steps are ``examples_seen / batch_size``).
    members: the members table.
    target: the level to reach, or several; default `default_targets`.
    metric: the history column.
    by: with ``target`` None, default targets per group of these member columns
      (e.g. ``["aug"]``: each aug level gets the hardest target all its batch sizes
      reach, since stronger augmentation usually ends at a higher loss); None: one
      set of default targets for the whole table.
    n_easier: with ``target`` None, how many easier targets to add to the default
      one (`default_targets`).

  Returns:
    One row per member and target, by target (hardest first): ``member``, the grid
    axes, ``steps``, ``examples``, ``target`` (the level used for the member's
    group), `TARGET_RANK` (0 the hardest) and `FIRST_EVAL`.

  Raises:
    ConfigError: a column is missing, or no target can be set.

  Example:
    >>> m = pd.DataFrame({"member": [0, 1], "lr": [0.1, 0.1], "batch_size": [32, 64],
    ...                   "seed": [0, 0], "diverged": [False, False]})
    >>> h = pd.DataFrame({"member": [0, 0, 1, 1], "examples_seen": [32, 64, 64, 128],
    ...                   "updates": [1, 2, 1, 2], "val_loss": [2.0, 1.0, 2.0, 1.5]})
    >>> s = steps_to_target(h, m)     # member 0 crosses 1.5 halfway from step 1 to 2
    >>> s[["member", "steps", "target"]].round(3).values.tolist()
    [[0.0, 1.414, 1.5], [1.0, 2.0, 1.5]]
  """
  members = prepare_members(members)
  require_columns(members, ("member",), "members")
  require_columns(history, ("member", "examples_seen", metric), "history")
  levels = _target_levels(history, members, target, metric, by, n_easier)
  h = history[history["member"].isin(members["member"])].sort_values(
      ["member", "examples_seen"], kind="stable")
  row = pd.Index(members["member"]).get_indexer(h["member"])
  batch = members["batch_size"].to_numpy(float)[row]
  axes = ["member", *CORE_AXES, *stats.extra_axes(members)]
  base = members[axes + [c for c in ("diverged", "status") if c in members.columns]]
  counted = not_diverged_mask(members)
  parts = []
  for k in range(levels.shape[1]):
    hit = _crossings(h, levels[row, k], metric, batch).reindex(members["member"].to_numpy())
    part = base.assign(
        steps=np.where(counted, hit["steps"].to_numpy(float), np.nan),
        examples=np.where(counted, hit["examples"].to_numpy(float), np.nan),
        target=levels[:, k], **{TARGET_RANK: k},
        **{FIRST_EVAL: counted & hit[FIRST_EVAL].fillna(False).to_numpy(bool)})
    parts.append(part if k == 0 else part[np.isfinite(levels[:, k])])
  return pd.concat(parts, ignore_index=True)
