"""Where training stops being stable, and how augmentation moves the best and stable LRs.

The stability limit of one seed in one cell is only known up to the grid: it lies
between the largest LR at which that seed was stable and the next LR the seed ran
above it. The max stable LR of a cell is the geometric mean over seeds of these
limits, with an interval from `lrjax.analysis.inference.censored_mean` that counts
both the seeds' spread and the grid's resolution. The augmentation effect on it is
paired by seed. The best-LR and metric effects use the seed bootstrap of
`lrjax.analysis.stats` (see there for cells and which members count).
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

from lrjax.analysis import cube as cube_lib
from lrjax.analysis import inference, stats
from lrjax.analysis.optima import BestLrFit, best_lr_fit
from lrjax.analysis.stats import fmt, prepare_members
from lrjax.errors import ConfigError
from lrjax.outcomes import STATUSES

# Statuses of a member that did not train stably; every other status (trained, slow:
# learned but far from converged) is stable.
UNSTABLE_STATUSES = ("failed", "diverged")
# Log-LR slack when comparing an estimate with grid LRs it may equal.
_LOG_TOL = 1e-9


def stable_mask(members: pd.DataFrame) -> np.ndarray:
  """Whether each member trained stably: neither failed nor diverged (`stats.status_labels`).

  Example:
    >>> stable_mask(pd.DataFrame({"status": ["trained", "slow", "failed", "diverged"]})).tolist()
    [True, True, False, False]
  """
  return ~np.isin(stats.status_labels(members), UNSTABLE_STATUSES)


class _Brackets(NamedTuple):
  """Each seed's stability limit per cell, as a bracket in log LR."""
  cube: cube_lib.Cube   # stable members as ``ok``; its cells, LRs and seeds
  top: np.ndarray       # (C, S) grid index of the seed's largest stable LR; -1 if none
  nxt: np.ndarray       # (C, S) grid index of the seed's next LR above it; L if none
  seeds: np.ndarray     # (S,) the seed labels

  @property
  def lower(self) -> np.ndarray:
    """(C, S) log of the seed's largest stable LR; -inf if none."""
    return np.where(self.top >= 0, self.cube.log_lrs[np.maximum(self.top, 0)], -np.inf)

  @property
  def upper(self) -> np.ndarray:
    """(C, S) log of the seed's next LR above it; +inf if none."""
    n_l = len(self.cube.lrs)
    return np.where(self.nxt < n_l, self.cube.log_lrs[np.minimum(self.nxt, n_l - 1)], np.inf)


def _brackets(members: pd.DataFrame, cell_cols: list[str]) -> _Brackets:
  """The per-seed brackets of every cell (seeds a cell never ran: ``in_cell`` False)."""
  zeros = np.zeros(len(members))
  cube = cube_lib.make_cube(members, cell_cols, zeros, stable_mask(members))
  ran = cube_lib.make_cube(members, cell_cols, zeros, np.ones(len(members), bool)).ok
  n_l = len(cube.lrs)
  ar = np.arange(n_l)[None, :, None]
  top = np.where(cube.ok, ar, -1).max(1)                                   # (C, S)
  nxt = np.where(ran & (ar > top[:, None, :]), ar, n_l).min(1)             # (C, S)
  return _Brackets(cube, top, nxt, np.unique(members["seed"].to_numpy()))


def stability_brackets(members: pd.DataFrame) -> pd.DataFrame:
  """Each seed's stability limit per cell: the two LRs it lies between.

  ``stable_lr`` is the largest LR at which the seed was stable (neither failed nor
  diverged, `stable_mask`); ``unstable_lr`` the next LR the seed ran above it, where
  it was not. A seed stable at the top of the grid has ``unstable_lr`` inf; a seed
  stable nowhere has ``stable_lr`` 0 and ``unstable_lr`` its smallest LR. Instability
  below ``stable_lr`` does not lower the bracket.

  Args:
    members: the members table.

  Returns:
    One row per (cell, seed): the cell columns, ``seed``, ``stable_lr``, ``unstable_lr``.

  Example:
    >>> t = pd.DataFrame({"lr": [0.1, 0.2, 0.4] * 2, "batch_size": 32,
    ...                   "seed": [0, 0, 0, 1, 1, 1],
    ...                   "status": ["trained", "trained", "diverged",
    ...                              "trained", "failed", "diverged"]})
    >>> stability_brackets(t)[["seed", "stable_lr", "unstable_lr"]].values.tolist()
    [[0.0, 0.2, 0.4], [1.0, 0.1, 0.2]]
  """
  members = prepare_members(members)
  cell_cols = stats.cell_columns(members)
  b = _brackets(members, cell_cols)
  c, s = np.nonzero(b.cube.in_cell)
  n_l = len(b.cube.lrs)
  return b.cube.cells.iloc[c].reset_index(drop=True).assign(
      seed=b.seeds[s], stable_lr=np.nan_to_num(cube_lib.grid_value(b.cube.lrs, b.top[c, s])),
      unstable_lr=np.where(b.nxt[c, s] < n_l, b.cube.lrs[np.minimum(b.nxt[c, s], n_l - 1)],
                           np.inf))


# ------------------------------------------------------------------ max stable LR


class _StableFit(NamedTuple):
  table: pd.DataFrame   # `max_stable_lr`
  brackets: _Brackets   # the per-seed brackets behind it


def _status_counts(labels: np.ndarray) -> str:
  """``"trained 2/3, diverged 1/3"``: status counts in `STATUSES` order, others after."""
  s = pd.Series(labels).value_counts()
  order = [k for k in STATUSES if k in s.index] + sorted(set(s.index) - set(STATUSES))
  return ", ".join(f"{k} {s[k]}/{s.sum()}" for k in order)


def _to_lr(log_lr: float, lrs: np.ndarray) -> float:
  """``exp(log_lr)``, exactly the grid LR when it is one (0 / inf for an open side)."""
  at = np.flatnonzero(np.abs(np.log(lrs) - log_lr) <= _LOG_TOL)
  return float(lrs[at[0]]) if len(at) else float(np.exp(log_lr))


def _cell_note(r: inference.CensoredMean, smallest: float, largest: float) -> str:
  """What qualifies a cell's estimate: one seed, seeds censored above or below the grid."""
  notes = ["one seed: no interval"] if r.n == 1 else []
  if r.above:
    notes.append(f"limit above the grid's largest LR {fmt(largest)} for {r.above} of "
                 f"{r.n} seeds: a lower bound only")
  if r.below:
    notes.append(f"no stable LR (limit below the grid's smallest LR {fmt(smallest)}) for "
                 f"{r.below} of {r.n} seeds: an upper bound only")
  return "; ".join(notes)


def _cell_row(r: inference.CensoredMean, lrs: np.ndarray, grid: np.ndarray,
              labels: np.ndarray, lr_idx: np.ndarray) -> dict:
  """One cell's row of `max_stable_lr` from its `censored_mean` over seeds.

  Args:
    r: the cell's `inference.censored_mean` of the per-seed log brackets.
    lrs: the table's sorted LRs.
    grid: indices into ``lrs`` of the cell's own LRs, ascending.
    labels, lr_idx: status and LR index of the cell's members.
  """
  none_stable = r.below == r.n
  log_grid = np.log(lrs[grid])
  if none_stable:
    lo_i, hi_i = -1, grid[0]
  else:
    lo_i = grid[log_grid <= r.estimate + _LOG_TOL].max()
    above = grid[log_grid > r.estimate + _LOG_TOL]
    hi_i = above.min() if len(above) else -1
  return {
      "max_stable_lr": np.nan if none_stable else _to_lr(r.estimate, lrs),
      "max_stable_lr_lo": _to_lr(r.lo, lrs), "max_stable_lr_hi": _to_lr(r.hi, lrs),
      "bracket_lo": cube_lib.grid_value(lrs, np.asarray(lo_i)).item(),
      "bracket_hi": cube_lib.grid_value(lrs, np.asarray(hi_i)).item(),
      "n_seeds": r.n, "n_censored_above": r.above, "n_censored_below": r.below,
      "next_lr": cube_lib.grid_value(lrs, np.asarray(hi_i)).item(),
      "next_status": _status_counts(labels[lr_idx == hi_i]) if hi_i >= 0 else "",
      "note": _cell_note(r, lrs[grid[0]], lrs[grid[-1]]),
  }


def _max_stable_fit(members: pd.DataFrame) -> _StableFit:
  members = prepare_members(members)
  cell_cols = stats.cell_columns(members)
  b = _brackets(members, cell_cols)
  lower, upper, in_cell = b.lower, b.upper, b.cube.in_cell
  cell = members.groupby(cell_cols, dropna=False, sort=True).ngroup().to_numpy()
  lr_idx = np.searchsorted(b.cube.lrs, members["lr"].to_numpy(float))
  labels = stats.status_labels(members)
  rows = []
  for c in range(len(b.cube.cells)):
    r = inference.censored_mean(lower[c, in_cell[c]], upper[c, in_cell[c]])
    rows.append(_cell_row(r, b.cube.lrs, np.flatnonzero(b.cube.present[c]),
                          labels[cell == c], lr_idx[cell == c]))
  table = pd.concat([b.cube.cells.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
  return _StableFit(table, b)


def max_stable_lr(members: pd.DataFrame) -> pd.DataFrame:
  """The stability limit of each cell: the geometric mean over seeds of each seed's limit.

  Seed by seed, the limit lies between the largest LR at which the seed was stable
  (neither failed nor diverged, `stable_mask`) and the next LR it ran above that
  (`stability_brackets`). `lrjax.analysis.inference.censored_mean` combines these log
  brackets into the estimate (mean of the midpoints) and a 95% interval that counts
  the seeds' spread and the grid's resolution, so it is two-sided even when every
  seed falls in one bracket. A seed stable at the top of the grid is censored above
  (the interval is then open above: a lower bound only); a seed stable nowhere is
  censored below (open below). With one seed the interval is that seed's bracket.

  Args:
    members: the members table.

  Returns:
    One row per cell: the cell columns; ``max_stable_lr`` (NaN when no seed is stable
    at any LR), ``max_stable_lr_lo`` / ``_hi`` (0 / inf on an open side);
    ``bracket_lo`` / ``bracket_hi``, the grid LRs on either side of the estimate
    (NaN past the grid); ``n_seeds``, ``n_censored_above``, ``n_censored_below``;
    ``next_lr`` (= ``bracket_hi``) and ``next_status``, the status counts there
    (e.g. ``"diverged 3/3"``); ``note`` (one seed, censoring; empty otherwise).

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(64,), lrs=(0.01, 0.02, 0.04), seeds=(0, 1, 2),
    ...                       diverge_factor=3.0)
    >>> r = max_stable_lr(t).round(4)
    >>> r[["max_stable_lr", "bracket_lo", "bracket_hi", "next_status"]].values.tolist()
    [[0.0283, 0.02, 0.04, 'diverged 3/3']]
    >>> r[["max_stable_lr_lo", "max_stable_lr_hi"]].values.tolist()  # two-sided
    [[0.0172, 0.0465]]
  """
  return _max_stable_fit(members).table


# ------------------------------------------------------------------ aug effect


def _direction(lo: float, hi: float, blocked: str) -> tuple[str, str]:
  """The verdict on an interval for a difference, and why; an open side is a bound."""
  if blocked:
    return "not settled", blocked
  if np.isnan(lo) or np.isnan(hi):
    return "not settled", "no interval (one seed)"
  if lo > 0:
    return "higher", "the interval is above 0"
  if hi < 0:
    return "lower", "the interval is below 0"
  return "not settled", "the interval contains 0"


class _Difference(NamedTuple):
  """One paired difference (aug level minus reference) over the pairs of cells."""
  point: np.ndarray     # (P,) point estimate per pair
  reps: np.ndarray      # (R, P) joint bootstrap replicates
  blocked: np.ndarray   # (P,) why a pair has no verdict ("" when it has one)
  verdict_col: str      # the column its verdict goes in


def _reference_pairs(t: pd.DataFrame, cell_cols: list[str],
                     reference_aug: float) -> pd.DataFrame:
  """Each cell off the reference aug level, with the row of its reference cell.

  Returns the cell columns with ``index`` (the cell's row in ``t``) and ``index_ref``
  (the row of the cell at ``reference_aug`` with the same batch size and extra axes).
  """
  group_cols = [c for c in cell_cols if c != "aug"]
  ref = t[np.isclose(t["aug"].astype(float), reference_aug)]
  if ref.empty:
    raise ConfigError(
        f"reference_aug: {reference_aug!r} is not an aug level of members; levels are "
        f"{sorted(t['aug'].unique().tolist())}.")
  return (t[~np.isclose(t["aug"].astype(float), reference_aug)].reset_index()
          .merge(ref.reset_index()[["index", *group_cols]], on=group_cols,
                 suffixes=("", "_ref")))


def _differences(lr: BestLrFit, i: np.ndarray, j: np.ndarray) -> dict[str, _Difference]:
  """The bootstrapped paired differences of cells ``i`` against reference cells ``j``."""
  t = lr.table
  log_best = np.log(t["best_lr"].to_numpy())
  edge = t["edge"].to_numpy(bool)
  metric_pt = t["best_metric"].to_numpy()

  def blocked(bad, why):
    return np.where(bad[i] | bad[j], why, "")

  return {
      "d_log_best_lr": _Difference(
          log_best[i] - log_best[j], lr.log_reps[:, i] - lr.log_reps[:, j],
          blocked(edge | ~np.isfinite(log_best), "best LR at the grid edge"), "verdict"),
      "d_best_metric": _Difference(
          metric_pt[i] - metric_pt[j], lr.metric_reps[:, i] - lr.metric_reps[:, j],
          blocked(~np.isfinite(metric_pt), "no usable LR"), "metric_verdict"),
  }


def _effect_columns(name: str, d: _Difference, n_seeds: np.ndarray,
                    has_interval: np.ndarray) -> dict:
  """Columns name, name_lo, name_hi and the verdict column of one difference, per pair."""
  lo, hi = stats.interval(d.reps, n_seeds,
                          np.asarray(has_interval) & (np.asarray(d.blocked) == ""))
  verdicts = [_direction(l, h, b)[0] for l, h, b in zip(lo, hi, d.blocked)]
  return {name: d.point, f"{name}_lo": lo, f"{name}_hi": hi, d.verdict_col: verdicts}


def _pooled_columns(name: str, d: _Difference, k: np.ndarray, n_seeds: np.ndarray,
                    has_interval: np.ndarray) -> dict:
  """One difference averaged over the pairs ``k`` where it is defined, with interval."""
  keep = k[d.blocked[k] == ""]
  n = len(keep)
  with np.errstate(invalid="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicate rows
    pt = float(np.mean(d.point[keep])) if n else np.nan
    rep = np.nanmean(d.reps[:, keep], axis=1) if n else np.full(d.reps.shape[0], np.nan)
  ok = bool(n) and bool(has_interval[keep].all())
  lo, hi = (v[0] for v in stats.interval(rep[:, None], n_seeds[keep].min() if n else 0, ok))
  count = "n_batch_sizes" if name == "d_log_best_lr" else f"n_{name[2:]}"
  return {count: n, name: pt, f"{name}_lo": lo, f"{name}_hi": hi,
          d.verdict_col: _direction(lo, hi, "" if n else "no batch size qualifies")[0]}


# ------------------------------------------------- aug effect on the max stable LR


class _StableDifference(NamedTuple):
  """Per pair of cells and seed: where ``log limit(aug) - log limit(reference)`` lies.

  With the seed's brackets ``[L_a, U_a]`` and ``[L_r, U_r]``, the difference lies in
  ``[L_a - U_r, U_a - L_r]``; open where either bracket is.
  """
  lower: np.ndarray    # (P, S)
  upper: np.ndarray    # (P, S)
  shared: np.ndarray   # (P, S) the seed ran in both cells


def _stable_difference(b: _Brackets, i: np.ndarray, j: np.ndarray) -> _StableDifference:
  lower, upper = b.lower, b.upper
  return _StableDifference(lower[i] - upper[j], upper[i] - lower[j],
                           b.cube.in_cell[i] & b.cube.in_cell[j])


def _censored_effect(lower: np.ndarray, upper: np.ndarray
                     ) -> tuple[inference.CensoredMean | None, str]:
  """`inference.censored_mean` of per-seed difference brackets, and why it has no verdict.

  A seed whose difference is open on both sides (both levels stable up to the top of
  the grid, or neither stable anywhere) leaves the mean unbounded: no estimate.
  """
  if not len(lower):
    return None, "no seed ran at both levels"
  unbounded = int((np.isneginf(lower) & np.isposinf(upper)).sum())
  if unbounded:
    return None, (f"for {unbounded} of {len(lower)} seeds both levels are stable up to the "
                  "top of the grid, or neither is stable at any LR")
  r = inference.censored_mean(lower, upper)
  return r, "one seed: no interval" if r.n < 2 else ""


def _stable_effect_values(r: inference.CensoredMean | None, why: str) -> dict:
  """The difference columns (without count) of one `_censored_effect`."""
  if r is None:
    return {"d_log_max_stable_lr": np.nan, "d_log_max_stable_lr_lo": np.nan,
            "d_log_max_stable_lr_hi": np.nan, "max_stable_verdict": "not settled",
            "max_stable_reason": why}
  verdict, reason = _direction(r.lo, r.hi, why)
  if not why and (r.above or r.below):
    reason += (f" (one-sided: {r.above + r.below} of {r.n} seeds have a limit beyond the "
               "grid)")
  return {"d_log_max_stable_lr": r.estimate, "d_log_max_stable_lr_lo": r.lo,
          "d_log_max_stable_lr_hi": r.hi, "max_stable_verdict": verdict,
          "max_stable_reason": reason}


def _stable_effect_columns(d: _StableDifference) -> pd.DataFrame:
  """Per pair: ``d_log_max_stable_lr`` with ``_lo``/``_hi``, verdict and reason."""
  return pd.DataFrame([
      _stable_effect_values(*_censored_effect(d.lower[p, d.shared[p]],
                                              d.upper[p, d.shared[p]]))
      for p in range(len(d.shared))])


def _pooled_stable_columns(d: _StableDifference, k: np.ndarray) -> dict:
  """The stable-LR difference averaged over the pairs ``k`` (batch sizes), per seed.

  Pairs whose difference is unbounded for some seed are left out; the per-seed
  brackets of the rest are averaged over them, on the seeds they all share.
  """
  usable = [p for p in k if d.shared[p].any()
            and not (np.isneginf(d.lower[p]) & np.isposinf(d.upper[p]))[d.shared[p]].any()]
  if not usable:
    return {"n_log_max_stable_lr": 0, **_stable_effect_values(None, "no batch size qualifies")}
  seeds = d.shared[usable].all(0)
  r, why = _censored_effect(d.lower[usable][:, seeds].mean(0),
                            d.upper[usable][:, seeds].mean(0))
  return {"n_log_max_stable_lr": len(usable), **_stable_effect_values(r, why)}


class AugEffectFit(NamedTuple):
  """`aug_effect` and `aug_effect_pooled`, from one fit.

  Attributes:
    per_batch: the `aug_effect` table.
    pooled: the `aug_effect_pooled` table.
  """
  per_batch: pd.DataFrame
  pooled: pd.DataFrame


def aug_effect_fit(members: pd.DataFrame, metric: str = "final_val_loss",
                   reference_aug: float = 0.0, n_boot: int = 1000, rng_seed: int = 0,
                   fit: BestLrFit | None = None) -> AugEffectFit:
  """The augmentation effect per batch size and pooled, optionally from a `best_lr_fit`.

  Args:
    members, metric, reference_aug, n_boot, rng_seed: as for `aug_effect`.
    fit: a `lrjax.analysis.optima.best_lr_fit` of the same members, metric, n_boot
      and rng_seed to reuse (the max stable LR is still computed from ``members``).

  Returns:
    An `AugEffectFit`.

  Raises:
    ConfigError: ``reference_aug`` is not an aug level of the table.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(64, 256), augs=(0.0, 1.0), aug_lr_factor=2.0)
    >>> f = aug_effect_fit(t, n_boot=100, fit=best_lr_fit(t, n_boot=100))
    >>> len(f.per_batch), f.pooled["verdict"].tolist()
    (2, ['higher'])
  """
  lr = fit if fit is not None else best_lr_fit(members, metric, n_boot, rng_seed)
  st = _max_stable_fit(members)
  t = lr.table
  cell_cols = list(t.columns[:list(t.columns).index("best_lr")])
  pairs = _reference_pairs(t, cell_cols, reference_aug)
  i, j = pairs["index"].to_numpy(), pairs["index_ref"].to_numpy()
  boot = _differences(lr, i, j)
  stable = _stable_difference(st.brackets, i, j)
  has_int = t["has_interval"].to_numpy(bool)
  pair_has_int = has_int[i] & has_int[j]
  n_seeds = t["n_seeds"].to_numpy()
  pair_seeds = np.minimum(n_seeds[i], n_seeds[j])
  per_batch = pairs[cell_cols].assign(
      reference_aug=reference_aug,
      **_effect_columns("d_log_best_lr", boot["d_log_best_lr"], pair_seeds, pair_has_int),
      **_stable_effect_columns(stable).to_dict("list"),
      **_effect_columns("d_best_metric", boot["d_best_metric"], pair_seeds, pair_has_int),
      reason=[b or "" for b in boot["d_log_best_lr"].blocked])

  # Pooled: the mean over batch sizes, each quantity over the batch sizes where it is
  # defined: of the per-replicate differences (bootstrap), of the per-seed brackets
  # (max stable LR).
  pool_cols = [c for c in cell_cols if c != "batch_size"]
  rows = []
  for key, g in pairs.groupby(pool_cols, dropna=False, sort=True):
    key = key if isinstance(key, tuple) else (key,)
    k = g.index.to_numpy()
    rows.append({**dict(zip(pool_cols, key)), "reference_aug": reference_aug,
                 **_pooled_columns("d_log_best_lr", boot["d_log_best_lr"], k, pair_seeds,
                                   pair_has_int),
                 **_pooled_stable_columns(stable, k),
                 **_pooled_columns("d_best_metric", boot["d_best_metric"], k, pair_seeds,
                                   pair_has_int)})
  return AugEffectFit(per_batch, pd.DataFrame(rows))


def aug_effect(members: pd.DataFrame, metric: str = "final_val_loss",
               reference_aug: float = 0.0, n_boot: int = 1000,
               rng_seed: int = 0) -> pd.DataFrame:
  """How each aug level moves the best LR, the max stable LR and the best metric.

  Per (batch_size, extra axes) and aug level other than ``reference_aug``, against
  the reference cell at the same batch size and extra axes:

  * ``d_log_best_lr``: log(best_lr / best_lr at the reference); ``verdict``. Its
    ``_lo``/``_hi`` come from joint seed-bootstrap replicates.
  * ``d_log_max_stable_lr``: the mean over seeds of log(limit / limit at the
    reference), paired by seed: each seed's difference lies in ``[L_a - U_r, U_a -
    L_r]`` for its brackets ``[L, U]`` at the two levels (`max_stable_lr`), combined
    by `lrjax.analysis.inference.censored_mean`; ``max_stable_verdict`` and
    ``max_stable_reason``. A seed stable up to the top of the grid at one level makes
    the interval one-sided; at both levels (or stable nowhere at both), no estimate.
  * ``d_best_metric``: difference of `best_lr`'s ``best_metric``; ``metric_verdict``
    (``"higher"`` means a numerically higher metric, which is worse for a loss);
    bootstrap interval.

  A verdict is ``"higher"`` / ``"lower"`` when the 95% interval excludes 0 on that
  side, else ``"not settled"``; it is also ``"not settled"`` with one seed and when
  the best LR is at the grid edge (a bound), which ``reason`` states.

  Args:
    members: the members table.
    metric: passed to `lrjax.analysis.optima.best_lr`.
    reference_aug: the aug level to compare against.
    n_boot: bootstrap replicates.
    rng_seed: seed of the bootstrap draws.

  Returns:
    One row per (batch_size, extra axes, aug): cell columns, ``reference_aug``, the
    columns above and ``reason``.

  Raises:
    ConfigError: ``reference_aug`` is not an aug level of the table.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(64, 256), augs=(0.0, 1.0), aug_lr_factor=2.0,
    ...                       noise=0.0, diverge_factor=4.0)
    >>> r = aug_effect(t, n_boot=200)
    >>> np.exp(r["d_log_best_lr"]).round(1).tolist(), r["verdict"].tolist()
    ([2.0, 2.0], ['higher', 'higher'])
    >>> np.exp(r["d_log_max_stable_lr"]).round(1).tolist(), r["max_stable_verdict"].tolist()
    ([2.0, 2.0], ['higher', 'higher'])
  """
  return aug_effect_fit(members, metric, reference_aug, n_boot, rng_seed).per_batch


def aug_effect_pooled(members: pd.DataFrame, metric: str = "final_val_loss",
                      reference_aug: float = 0.0, n_boot: int = 1000,
                      rng_seed: int = 0) -> pd.DataFrame:
  """`aug_effect` averaged over batch sizes, per aug level (and extra axes).

  Each quantity is the mean over the batch sizes where it is defined (``n_*``
  columns count them; ``n_batch_sizes`` for the best LR). The best-LR and metric
  intervals are percentile intervals of the per-replicate means, so they account for
  the joint variation across batch sizes; the max-stable-LR interval averages each
  seed's difference brackets over the batch sizes, then combines the seeds
  (`lrjax.analysis.inference.censored_mean`).

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(64, 256), augs=(0.0, 1.0), aug_lr_factor=2.0)
    >>> r = aug_effect_pooled(t, n_boot=200)
    >>> r[["aug", "n_batch_sizes", "verdict"]].values.tolist()
    [[1.0, 2, 'higher']]
  """
  return aug_effect_fit(members, metric, reference_aug, n_boot, rng_seed).pooled
