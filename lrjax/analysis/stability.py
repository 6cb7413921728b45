"""Where training stops being stable, and how augmentation moves the best and stable LRs.

See `lrjax.analysis.stats` for the conventions (cells, which members count, the seed
bootstrap).
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

from lrjax.analysis import cube as cube_lib
from lrjax.analysis import stats
from lrjax.analysis.optima import BestLrFit, best_lr_fit
from lrjax.analysis.stats import check_n_boot, prepare_members, trained_mask
from lrjax.errors import ConfigError
from lrjax.outcomes import STATUSES


class _StableFit(NamedTuple):
  table: pd.DataFrame
  log_reps: np.ndarray   # (R, C) log max stable LR per replicate


def _max_stable_fit(members: pd.DataFrame, n_boot: int, rng_seed: int) -> _StableFit:
  members = prepare_members(members)
  check_n_boot(n_boot)
  cell_cols = stats.cell_columns(members)
  cube = cube_lib.make_cube(members, cell_cols, np.zeros(len(members)), trained_mask(members))
  n_l = len(cube.log_lrs)
  ar = np.arange(n_l)

  def top_stable(counts):
    idx = cube_lib.top_usable_per_replicate(cube, counts)
    return idx, np.log(cube_lib.grid_value(cube.lrs, idx))

  idx, log_max = top_stable(cube_lib.data_counts(cube))
  idx, log_max = idx[0], log_max[0]
  _, log_reps = top_stable(stats.seed_counts(cube.n_seeds, n_boot, rng_seed))
  # The next LR up in the cell's own grid (the smallest one when nothing is stable).
  above = cube.present & (ar[None] > idx[:, None])
  next_idx = np.where(above, ar, n_l).min(-1)
  has_next = next_idx < n_l
  next_lr = cube_lib.grid_value(cube.lrs, np.where(has_next, next_idx, -1))

  cell = members.groupby(cell_cols, dropna=False, sort=True).ngroup().to_numpy()
  lr_idx = np.searchsorted(cube.lrs, members["lr"].to_numpy(float))
  labels = stats.status_labels(members)
  next_status = []
  for c in range(len(cube.cells)):
    if not has_next[c]:
      next_status.append("")
      continue
    s = pd.Series(labels[(cell == c) & (lr_idx == next_idx[c])]).value_counts()
    order = [k for k in STATUSES if k in s.index] + sorted(set(s.index) - set(STATUSES))
    next_status.append(", ".join(f"{k} {s[k]}/{s.sum()}" for k in order))
  table = cube.cells.assign(max_stable_lr=cube_lib.grid_value(cube.lrs, idx),
                            next_lr=next_lr, next_status=next_status,
                            n_seeds=cube.in_cell.sum(-1))
  return _StableFit(table, log_reps)


def max_stable_lr(members: pd.DataFrame) -> pd.DataFrame:
  """Largest grid LR at which every seed of the cell trained.

  "Trained" is status ``"trained"`` (the ``status`` column, else not diverged). This is
  the largest such LR, *not* the largest LR below which everything trained: a seed
  that failed at a small LR does not lower it. Read it with ``next_lr`` and
  ``next_status``: the true stability limit lies between ``max_stable_lr`` and
  ``next_lr``; when ``next_lr`` is NaN the grid never reached it.

  Args:
    members: the members table.

  Returns:
    One row per cell: the cell columns, ``max_stable_lr`` (NaN if no LR is stable),
    ``next_lr`` (the next grid LR up; the smallest LR when none is stable; NaN if
    none), ``next_status`` (status counts there, e.g. ``"diverged 3/3"``; empty if
    none), ``n_seeds``.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(64,), lrs=(0.01, 0.02, 0.04), seeds=(0, 1),
    ...                       diverge_factor=3.0)
    >>> max_stable_lr(t)[["max_stable_lr", "next_lr", "next_status"]].values.tolist()
    [[0.02, 0.04, 'diverged 2/2']]
  """
  return _max_stable_fit(members, 0, 0).table


# ------------------------------------------------------------------ aug effect


def _direction(lo: float, hi: float, blocked: str) -> tuple[str, str]:
  if blocked:
    return "not settled", blocked
  if not (np.isfinite(lo) and np.isfinite(hi)):
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


def _differences(lr: BestLrFit, st: _StableFit, i: np.ndarray,
                 j: np.ndarray) -> dict[str, _Difference]:
  """The paired differences of cells ``i`` against reference cells ``j``."""
  t = lr.table
  log_best = np.log(t["best_lr"].to_numpy())
  log_stable = np.log(st.table["max_stable_lr"].to_numpy())
  at_top = st.table["next_lr"].isna().to_numpy()
  edge = t["edge"].to_numpy(bool)
  metric_pt = t["best_metric"].to_numpy()

  def blocked(bad, why):
    return np.where(bad[i] | bad[j], why, "")

  return {
      "d_log_best_lr": _Difference(
          log_best[i] - log_best[j], lr.log_reps[:, i] - lr.log_reps[:, j],
          blocked(edge | ~np.isfinite(log_best), "best LR at the grid edge"), "verdict"),
      "d_log_max_stable_lr": _Difference(
          log_stable[i] - log_stable[j], st.log_reps[:, i] - st.log_reps[:, j],
          blocked(at_top | ~np.isfinite(log_stable),
                  "no stable LR, or stable up to the top of the grid"),
          "max_stable_verdict"),
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
  st = _max_stable_fit(members, n_boot, rng_seed)
  t = lr.table
  cell_cols = list(t.columns[:list(t.columns).index("best_lr")])
  pairs = _reference_pairs(t, cell_cols, reference_aug)
  i, j = pairs["index"].to_numpy(), pairs["index_ref"].to_numpy()
  differences = _differences(lr, st, i, j)
  has_int = t["has_interval"].to_numpy(bool)
  pair_has_int = has_int[i] & has_int[j]
  n_seeds = t["n_seeds"].to_numpy()
  pair_seeds = np.minimum(n_seeds[i], n_seeds[j])
  per_batch = pairs[cell_cols].assign(reference_aug=reference_aug)
  for name, d in differences.items():
    per_batch = per_batch.assign(**_effect_columns(name, d, pair_seeds, pair_has_int))
  per_batch = per_batch.assign(reason=[b or "" for b in differences["d_log_best_lr"].blocked])

  # Pooled: mean over batch sizes of the per-replicate differences, each quantity over
  # the batch sizes where it is defined.
  pool_cols = [c for c in cell_cols if c != "batch_size"]
  rows = []
  for key, g in pairs.groupby(pool_cols, dropna=False, sort=True):
    key = key if isinstance(key, tuple) else (key,)
    row = {**dict(zip(pool_cols, key)), "reference_aug": reference_aug}
    for name, d in differences.items():
      row.update(_pooled_columns(name, d, g.index.to_numpy(), pair_seeds, pair_has_int))
    rows.append(row)
  return AugEffectFit(per_batch, pd.DataFrame(rows))


def aug_effect(members: pd.DataFrame, metric: str = "final_val_loss",
               reference_aug: float = 0.0, n_boot: int = 1000,
               rng_seed: int = 0) -> pd.DataFrame:
  """How each aug level moves the best LR, the max stable LR and the best metric.

  Per (batch_size, extra axes) and aug level other than ``reference_aug``, against
  the reference cell at the same batch size and extra axes:

  * ``d_log_best_lr``: log(best_lr / best_lr at the reference); ``verdict``.
  * ``d_log_max_stable_lr``: log ratio of `max_stable_lr`; ``max_stable_verdict``.
    Its bootstrap recomputes the max stable LR from the drawn seeds only.
  * ``d_best_metric``: difference of `best_lr`'s ``best_metric``; ``metric_verdict``
    (``"higher"`` means a numerically higher metric, which is worse for a loss).

  Each has ``_lo``/``_hi`` from joint bootstrap replicates. A verdict is
  ``"higher"`` / ``"lower"`` when the 95% interval excludes 0 on that side, else
  ``"not settled"``; it is also ``"not settled"`` when the point estimate is only a
  bound (best LR at the grid edge, stable up to the top of the grid), which
  ``reason`` states for the best LR.

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
    ...                       noise=0.0)
    >>> r = aug_effect(t, n_boot=200)
    >>> np.exp(r["d_log_best_lr"]).round(1).tolist(), r["verdict"].tolist()
    ([2.0, 2.0], ['higher', 'higher'])
  """
  return aug_effect_fit(members, metric, reference_aug, n_boot, rng_seed).per_batch


def aug_effect_pooled(members: pd.DataFrame, metric: str = "final_val_loss",
                      reference_aug: float = 0.0, n_boot: int = 1000,
                      rng_seed: int = 0) -> pd.DataFrame:
  """`aug_effect` averaged over batch sizes, per aug level (and extra axes).

  Each quantity is the mean over the batch sizes where it is defined (``n_*``
  columns count them; ``n_batch_sizes`` for the best LR); its interval is the
  percentile interval of the per-replicate means, so it accounts for the joint
  variation across batch sizes.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(64, 256), augs=(0.0, 1.0), aug_lr_factor=2.0)
    >>> r = aug_effect_pooled(t, n_boot=200)
    >>> r[["aug", "n_batch_sizes", "verdict"]].values.tolist()
    [[1.0, 2, 'higher']]
  """
  return aug_effect_fit(members, metric, reference_aug, n_boot, rng_seed).pooled
