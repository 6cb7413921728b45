"""The critical batch size B_crit from steps to a target per batch size.

McCandlish et al. 2018, "An Empirical Model of Large-Batch Training": the steps S a
batch size B needs to reach a target follow ``S = S_min (1 + B_crit / B)``. Below
B_crit doubling the batch nearly halves the steps; above it, it barely helps. See
`lrjax.analysis.stats` for the conventions (cells, the seed bootstrap), and
`lrjax.analysis.steps` for the steps to a target (their crossings interpolated
between evaluations), whose names this module re-exports.

The LR grid limits the steps a grid measures too: the best LR moves with the batch.
`best_steps_fit` fits a parabola in log LR to the seed-mean log steps at the best grid
LR and its two neighbours and takes its minimum (as `lrjax.analysis.optima` refines
the best LR), in the estimate and in every bootstrap replicate alike.

B_crit is reported per target (`default_targets`: the hardest target every batch size
reaches, and easier ones), and only where the batch sizes tried can identify it
(`IDENTIFIABLE_FACTOR`).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax.analysis import cube as cube_lib
from lrjax.analysis import stats
from lrjax.analysis.stats import check_n_boot, prepare_members, require_columns
from lrjax.analysis.steps import (FIRST_EVAL, N_EASIER, STEPS_OUTPUT_COLUMNS, TARGET_RANK,
                                  default_target, default_targets, steps_to_target)

__all__ = ["FIRST_EVAL", "N_EASIER", "STEPS_OUTPUT_COLUMNS", "TARGET_RANK", "BestStepsFit",
           "IDENTIFIABLE_FACTOR", "best_steps_fit", "best_steps_per_batch",
           "critical_batch_from_fit", "default_target", "default_targets",
           "fit_critical_batch", "identifiable_range", "parabola_min", "steps_to_target"]

# B_crit is identifiable within [B_min / 4, 4 B_max] of the batch sizes fitted. Outside
# it the curvature of S(1/B) that separates S_min from S_min B_crit is lost in the
# noise: at B_crit = 4 B_max the steps over the whole range are within 25% of ∝ 1/B.
IDENTIFIABLE_FACTOR = 4.0


# ------------------------------------------------------------- best steps per cell


# Replicates per chunk keep the (chunk, cells, LRs) arrays near this many elements.
_CHUNK_ELEMENTS = 2_000_000


class _Best(NamedTuple):
  """Per (replicate, cell): the fewest seed-mean log steps over LRs, refined."""
  value: np.ndarray     # (R, C) refined minimum of the mean log steps; NaN if no LR
  log_lr: np.ndarray    # (R, C) where it is (the grid LR where not refined)
  idx: np.ndarray       # (R, C) grid index of the best usable LR; -1 if none
  refined: np.ndarray   # (R, C) the parabola refined it


def _neighbours(present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(C, L) index of the nearest LR in each cell's grid below / above; -1 / L if none."""
  n_l = present.shape[-1]
  ar = np.arange(n_l)
  below = np.maximum.accumulate(np.where(present, ar, -1), axis=-1)
  below = np.concatenate([np.full(below.shape[:-1] + (1,), -1), below[..., :-1]], -1)
  above = np.minimum.accumulate(np.where(present, ar, n_l)[..., ::-1], axis=-1)[..., ::-1]
  above = np.concatenate([above[..., 1:], np.full(above.shape[:-1] + (1,), n_l)], -1)
  return below, above


def parabola_min(x: tuple, y: tuple) -> tuple[np.ndarray, np.ndarray]:
  """Minimum ``(x, y)`` of the parabola through three points, x0 < x1 < x2, y1 lowest.

  The vertex is clamped to [x0, x2]; where the parabola is not convex (three points
  on a line) the middle point stands. Arrays broadcast.

  Example:
    >>> xm, ym = parabola_min((0.0, 1.0, 2.0), (1.0, 0.0, 3.0))
    >>> float(xm), float(ym)
    (0.75, -0.125)
  """
  (x0, x1, x2), (y0, y1, y2) = x, y
  with np.errstate(invalid="ignore", divide="ignore"):
    d01 = (y1 - y0) / (x1 - x0)
    a = ((y2 - y1) / (x2 - x1) - d01) / (x2 - x0)
    v = np.clip((x0 + x1) / 2 - d01 / (2 * a), x0, x2)
    yv = y0 + d01 * (v - x0) + a * (v - x0) * (v - x1)
  ok = (a > 0) & np.isfinite(yv)
  return np.where(ok, v, x1), np.where(ok, np.minimum(yv, y1), y1)


def _best_over_lr(means: np.ndarray, usable: np.ndarray, cube: cube_lib.Cube) -> _Best:
  """The usable LR with the fewest mean log steps, refined where both neighbours of
  it in the cell's grid are usable."""
  has = usable.any(-1)
  idx = np.where(usable, means, np.inf).argmin(-1)
  take = lambda a, i: np.take_along_axis(a, i[..., None], -1)[..., 0]
  below, above = (np.broadcast_to(n, means.shape) for n in _neighbours(cube.present))
  n_l = means.shape[-1]
  i0, i2 = take(below, idx), take(above, idx)
  j0, j2 = np.clip(i0, 0, n_l - 1), np.clip(i2, 0, n_l - 1)
  both = has & (i0 >= 0) & (i2 < n_l) & take(usable, j0) & take(usable, j2)
  x, y = cube.log_lrs, means
  xm, ym = parabola_min((x[j0], x[idx], x[j2]), (take(y, j0), take(y, idx), take(y, j2)))
  value = np.where(both, ym, np.where(has, take(y, idx), np.nan))
  log_lr = np.where(both, xm, np.where(has, x[idx], np.nan))
  return _Best(value, log_lr, np.where(has, idx, -1), both)


def _best_per_replicate(cube: cube_lib.Cube, counts: np.ndarray) -> _Best:
  """`_best_over_lr` of `cube_lib.replicate_means`, in chunks of replicates."""
  n_c, n_l = cube.present.shape
  step = max(1, _CHUNK_ELEMENTS // max(n_c * n_l, 1))
  parts = [_best_over_lr(*cube_lib.replicate_means(cube, counts[i:i + step]), cube)
           for i in range(0, max(counts.shape[0], 1), step)]
  return _Best(*(np.concatenate(f) for f in zip(*parts)))


class BestStepsFit(NamedTuple):
  """`best_steps_per_batch` with its bootstrap replicates.

  Attributes:
    table: the `best_steps_per_batch` table, one row per cell (and target).
    reps: (n_boot, cells) best steps per replicate, refined across LRs (columns
      follow ``table``'s rows).
  """
  table: pd.DataFrame
  reps: np.ndarray


def _step_cells(steps: pd.DataFrame) -> list[str]:
  """The cell columns of a steps table, with `TARGET_RANK` when it has one."""
  cols = stats.cell_columns(steps, exclude=STEPS_OUTPUT_COLUMNS)
  return [*cols, TARGET_RANK] if TARGET_RANK in steps.columns else cols


def _first_eval_at(steps: pd.DataFrame, cols: list[str], cube: cube_lib.Cube,
                   idx: np.ndarray) -> np.ndarray:
  """(C,) whether a member at each cell's grid best LR was past the target at once."""
  if FIRST_EVAL not in steps.columns:
    return np.zeros(len(idx), bool)
  flag = steps[FIRST_EVAL].fillna(False).to_numpy(bool)
  flags = cube_lib.make_cube(steps, cols, flag.astype(float), np.ones(len(steps), bool))
  at = flags.value[np.arange(len(idx)), np.maximum(idx, 0)].max(-1) > 0
  return at & (idx >= 0)


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
    >>> fit.table["best_steps"].round(6).tolist(), fit.reps.shape
    ([300.0, 200.0, 150.0], (10, 3))
  """
  steps = prepare_members(steps)
  require_columns(steps, ("steps",), "steps")
  check_n_boot(n_boot)
  cols = _step_cells(steps)
  with np.errstate(divide="ignore", invalid="ignore"):
    value = np.log(steps["steps"].to_numpy(float))
  cube = cube_lib.make_cube(steps, cols, value, np.isfinite(value))
  point = _best_per_replicate(cube, cube_lib.data_counts(cube))
  reps = _best_per_replicate(cube, stats.seed_counts(cube.n_seeds, n_boot, rng_seed))
  n_seeds = cube.in_cell.sum(-1)
  has_interval = (n_seeds >= 2) & (n_boot > 0) & (point.idx[0] >= 0)
  # Steps are positive with roughly multiplicative seed noise: widen on the log scale,
  # so a small-sample interval never reaches below zero.
  lo, hi = np.exp(stats.interval(reps.value, n_seeds, has_interval))
  best = np.exp(point.value[0])
  grid_best = cube_lib.grid_value(cube.lrs, point.idx[0])
  table = cube.cells.assign(
      best_steps=best, best_steps_lo=lo, best_steps_hi=hi,
      best_examples=best * cube.cells["batch_size"].to_numpy(float),
      best_lr=np.where(point.refined[0], np.exp(point.log_lr[0]), grid_best),
      grid_best_lr=grid_best, lr_refined=point.refined[0],
      **{FIRST_EVAL: _first_eval_at(steps, cols, cube, point.idx[0])},
      n_seeds=n_seeds, has_interval=has_interval)
  if "target" in steps.columns:
    table["target"] = steps.groupby(cols, dropna=False, sort=True)["target"].first().to_numpy()
  return BestStepsFit(table, np.exp(reps.value))


def best_steps_per_batch(steps: pd.DataFrame, n_boot: int = 1000,
                         rng_seed: int = 0) -> pd.DataFrame:
  """Fewest steps to the target per cell, over LRs where every seed reaches it.

  Per (batch_size, aug, extra axes, target): the mean over seeds of log ``steps``
  at each LR where all seeds reached the target; the fewest over LRs, refined by a
  parabola in log LR through the best grid LR and its two neighbours in the cell's
  grid (its minimum, clamped between the neighbours). At the edge of the grid, or
  when a neighbour is missing or lost a seed, there is no bracket and the grid value
  stands (``lr_refined`` False; an overestimate by up to the grid's resolution). The
  interval is the seed bootstrap of all of this, widened on the log scale (steps are
  positive). (The minimum over noisy means is biased low, about equally at every
  batch size.)

  Args:
    steps: the output of `steps_to_target`.
    n_boot: bootstrap replicates.
    rng_seed: seed of the bootstrap draws.

  Returns:
    One row per cell (and `TARGET_RANK`): cell columns, ``best_steps`` (geometric
    mean over seeds, refined), ``best_steps_lo``, ``best_steps_hi``,
    ``best_examples`` (best_steps × batch_size), ``best_lr`` (refined),
    ``grid_best_lr``, ``lr_refined``, `FIRST_EVAL` (a seed at the grid best LR was
    past the target at its first evaluation: the steps are an upper bound),
    ``n_seeds``, ``has_interval`` and, when ``steps`` has one, ``target``. NaN where
    no LR reaches.

  Example:
    >>> s = pd.DataFrame({"lr": [0.1, 0.1, 0.2, 0.2], "batch_size": 32,
    ...                   "seed": [0, 1, 0, 1], "steps": [100.0, 121.0, 80.0, np.nan]})
    >>> best_steps_per_batch(s, n_boot=0)[["best_steps", "best_lr"]].round(6).values.tolist()
    [[110.0, 0.1]]
  """
  return best_steps_fit(steps, n_boot, rng_seed).table


# --------------------------------------------------------------- critical batch


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


def identifiable_range(batch_sizes: Sequence[float]) -> tuple[float, float]:
  """The B_crit values batch sizes can identify: [B_min, B_max] widened by
  `IDENTIFIABLE_FACTOR` on each side.

  Example:
    >>> identifiable_range([32, 64, 128, 256, 512])
    (8.0, 2048.0)
  """
  b = np.asarray(batch_sizes, float)
  return float(b.min() / IDENTIFIABLE_FACTOR), float(b.max() * IDENTIFIABLE_FACTOR)


def _b_crit_interval(x: np.ndarray, reps: np.ndarray, w: np.ndarray, n_seeds: int,
                     limits: tuple[float, float]) -> tuple[float, float]:
  """95% interval of B_crit from the replicate fits of steps ``reps`` (R, n) on ``x``.

  The batch sizes cannot tell values beyond ``limits`` (`identifiable_range`) apart:
  a lower bound below them becomes 0 and an upper bound above them ∞ (open), and a
  bound on the far side of them is pulled back to the limit it passed.
  """
  b_crit = _b_crit(*_wls_line(x, reps, w))
  # B_crit is in [0, ∞]: widen on the log scale (0 -> -inf, ∞ -> inf).
  with np.errstate(divide="ignore", invalid="ignore"):
    lo, hi = (float(np.exp(v[0])) for v in stats.interval(np.log(b_crit)[:, None], n_seeds))
  lo = 0.0 if lo < limits[0] else min(lo, limits[1])
  hi = np.inf if hi > limits[1] else max(hi, limits[0])
  return lo, hi


def _verdict(b_crit: float, b: np.ndarray, has_interval: bool) -> tuple[str, str]:
  """The verdict on a fitted B_crit from batch sizes ``b``, and its reason."""
  lo_lim, hi_lim = identifiable_range(b)
  tried = f"{int(b.min())}–{int(b.max())}"
  if not lo_lim <= b_crit <= hi_lim:
    why = (f"steps still fall nearly ∝ 1/B up to the largest batch size, so B_crit "
           f"lies above {stats.fmt(hi_lim)} ({IDENTIFIABLE_FACTOR:g}× the largest)"
           if b_crit > hi_lim else
           f"steps barely fall as the batch grows, so B_crit lies below "
           f"{stats.fmt(lo_lim)} (the smallest / {IDENTIFIABLE_FACTOR:g})"
           if b_crit < lo_lim else "the fit failed")
    return "not identifiable", f"not identifiable from batch sizes {tried}: {why}"
  outside = not b.min() <= b_crit <= b.max()
  where = (f"extrapolated: outside the batch sizes tried ({tried}), within what they "
           f"identify ({stats.fmt(lo_lim)}–{stats.fmt(hi_lim)})" if outside
           else f"fit over {len(b)} batch sizes ({tried})")
  if not has_interval:
    return "not settled", f"one seed: no interval; {where}"
  return ("extrapolated" if outside else "identified"), where


def _cell_notes(g: pd.DataFrame, lo: float, hi: float) -> list[str]:
  """Caveats of a fit: unbounded interval sides, unrefined or bounded cells."""
  notes = []
  if hi == np.inf:
    notes.append("upper bound open: in some resamples B_crit lies beyond what the batch "
                 "sizes identify")
  if lo == 0.0:
    notes.append("lower bound open: in some resamples B_crit lies below what the batch "
                 "sizes identify")
  bs = lambda mask: ", ".join(str(int(v)) for v in g["batch_size"].to_numpy()[mask])
  if "lr_refined" in g.columns and not g["lr_refined"].all():
    notes.append(f"at batch size {bs(~g['lr_refined'].to_numpy(bool))} the best LR is at "
                 "the grid's edge or lacks a usable neighbour, so its steps are not "
                 "refined across LRs")
  if FIRST_EVAL in g.columns and g[FIRST_EVAL].any():
    notes.append(f"at batch size {bs(g[FIRST_EVAL].to_numpy(bool))} a seed was past the "
                 "target at its first evaluation, so its steps are an upper bound")
  return notes


def _critical_batch_row(g: pd.DataFrame, label: dict, reps: np.ndarray) -> dict:
  """The B_crit fit of one group's cells ``g`` (sorted by batch size) as a row."""
  reached = np.isfinite(g["best_steps"].to_numpy())
  n = int(reached.sum())
  row = {**label, "b_crit": np.nan, "b_crit_lo": np.nan, "b_crit_hi": np.nan,
         "s_min": np.nan, "e_min": np.nan, "verdict": "not settled", "n_batch_sizes": n,
         "n_seeds": int(g["n_seeds"].min())}
  if "target" in g.columns:
    row["target"] = float(g["target"].iloc[0])
  if n < 3:
    return {**row, "reason": f"only {n} of {len(g)} batch sizes reach the target at some "
                             "LR on every seed (need ≥ 3)"}
  b = g["batch_size"].to_numpy(float)[reached]
  s = g["best_steps"].to_numpy()[reached]
  x, w = 1.0 / b, 1.0 / s**2
  a, slope = (float(v[0]) for v in _wls_line(x, s[None], w))
  bc = float(_b_crit(np.array(a), np.array(slope)))
  has_interval = bool(g["has_interval"].to_numpy()[reached].all())
  lo = hi = np.nan
  if has_interval:
    lo, hi = _b_crit_interval(x, reps[:, g.index.to_numpy()[reached]], w,
                              int(g["n_seeds"].to_numpy()[reached].min()),
                              identifiable_range(b))
  verdict, reason = _verdict(bc, b, has_interval)
  if verdict != "not identifiable":
    row.update(b_crit=bc, s_min=a, e_min=slope)
  notes = _cell_notes(g[reached], lo, hi)
  return {**row, "b_crit_lo": lo, "b_crit_hi": hi, "verdict": verdict,
          "reason": "; ".join([reason, *notes])}


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
  ``E_min = S_min B_crit``. Per (aug, extra axes, target) it fits ``S`` on ``1/B`` by
  least squares weighted by ``1 / S**2`` (seed noise in steps is roughly
  proportional to steps, so this fits relative error and keeps the small batch
  sizes, with many steps, from dominating), over the batch sizes where
  `best_steps_per_batch` found an LR that reaches the target; ``B_crit = slope /
  intercept``. The interval re-fits each joint seed-bootstrap replicate of the
  refined best steps; a replicate with ``S_min ≤ 0`` (steps still falling ∝ 1/B over
  the whole range) counts as ``B_crit = ∞``; the small-sample widening acts on log
  B_crit.

  Only what the batch sizes can identify is reported (`identifiable_range`):

  * ``"identified"``: B_crit within the batch sizes tried;
  * ``"extrapolated"``: outside them, within ``[B_min / 4, 4 B_max]``;
  * ``"not identifiable"``: beyond that (including ``S_min ≤ 0`` or a slope ≤ 0);
    ``b_crit``, ``s_min`` and ``e_min`` are NaN, the interval is kept;
  * ``"not settled"``: fewer than 3 batch sizes reach the target (all NaN), or one
    seed (no interval).

  An interval bound beyond ``[B_min / 4, 4 B_max]`` is reported as 0 or ∞.

  Args:
    steps: the output of `steps_to_target`.
    n_boot: bootstrap replicates.
    rng_seed: seed of the bootstrap draws.

  Returns:
    One row per group: group columns (with `TARGET_RANK` when ``steps`` has it),
    ``b_crit``, ``b_crit_lo``, ``b_crit_hi``, ``s_min``, ``e_min``, ``verdict``,
    ``n_batch_sizes``, ``n_seeds``, ``target`` (when ``steps`` has one), ``reason``.

  Example:
    >>> b = np.array([16, 32, 64, 128, 256])
    >>> s = pd.DataFrame({"lr": 0.1, "batch_size": b, "seed": 0,
    ...                   "steps": 1000 * (1 + 100 / b)})
    >>> r = fit_critical_batch(s, n_boot=0)
    >>> r[["b_crit", "s_min", "n_batch_sizes"]].round(6).values.tolist()
    [[100.0, 1000.0, 5.0]]
    >>> r["verdict"].tolist()    # one seed: no interval
    ['not settled']
  """
  return critical_batch_from_fit(best_steps_fit(steps, n_boot, rng_seed))
