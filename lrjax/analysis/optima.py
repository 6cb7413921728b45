"""The best learning rate per cell, and how it scales with batch size, with intervals.

See `lrjax.analysis.stats` for the conventions (cells, which members count, the seed
bootstrap). References: Goyal et al. 2017 (linear scaling rule); Malladi et al. 2022
(square-root rule for adaptive optimizers).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax.analysis import cube as cube_lib
from lrjax.analysis import stats
from lrjax.analysis.stats import (check_metric, check_n_boot, prepare_members,
                                  require_columns, usable_mask)
from lrjax.errors import ConfigError


class BestLrFit(NamedTuple):
  """`best_lr` with its bootstrap replicates, for estimates built on the same draws.

  Attributes:
    table: the `best_lr` table, one row per cell.
    log_reps: (n_boot, cells) refined log best LR per replicate (columns follow
      ``table``'s rows).
    metric_reps: (n_boot, cells) mean metric at each replicate's grid best.
    n_boot: the number of replicates.
  """
  table: pd.DataFrame
  log_reps: np.ndarray
  metric_reps: np.ndarray
  n_boot: int


def best_lr_fit(members: pd.DataFrame, metric: str = "final_val_loss", n_boot: int = 1000,
                rng_seed: int = 0) -> BestLrFit:
  """`best_lr` and its joint bootstrap replicates, computed once.

  `scaling_fit` and `lrjax.analysis.stability.aug_effect_fit` accept the result, so
  estimates of several cells (a slope, a ratio between aug levels) share one best-LR
  computation and the same seed draws.

  Args:
    members, metric, n_boot, rng_seed: as for `best_lr`.

  Returns:
    A `BestLrFit`.

  Raises:
    ConfigError: a column is missing, the metric is unknown, or a setting repeats.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> fit = best_lr_fit(synthetic_members(batch_sizes=(64, 256)), n_boot=20)
    >>> len(fit.table), fit.log_reps.shape, fit.metric_reps.shape
    (2, (20, 2), (20, 2))
  """
  members = prepare_members(members)
  check_metric(members, metric)
  check_n_boot(n_boot)
  sign = 1.0 if stats.metric_mode(metric) == "min" else -1.0
  cube = cube_lib.make_cube(members, stats.cell_columns(members),
                            sign * members[metric].to_numpy(float), usable_mask(members))
  point_means, point_usable = cube_lib.replicate_means(cube, cube_lib.data_counts(cube))
  point = cube_lib.best_over_lr(point_means, point_usable, cube.log_lrs)
  reps = cube_lib.best_per_replicate(cube, stats.seed_counts(cube.n_seeds, n_boot, rng_seed))
  n_seeds = cube.in_cell.sum(-1)
  has_interval = (n_seeds >= 2) & (n_boot > 0) & point.has[0]
  lo, hi = stats.interval(reps.log_lr, n_seeds, has_interval)
  grid_best = cube_lib.grid_value(cube.lrs, point.idx[0])
  refined = point.log_lr[0] != point.grid_log_lr[0]
  table = cube.cells.assign(
      best_lr=np.where(refined, np.exp(point.log_lr[0]), grid_best),
      best_lr_lo=np.exp(lo),
      best_lr_hi=np.exp(hi),
      grid_best_lr=grid_best,
      edge=point.edge[0],
      best_metric=sign * point.value[0],
      n_seeds=n_seeds,
      n_usable_lrs=point_usable[0].sum(-1),
      has_interval=has_interval,
  )
  return BestLrFit(table, reps.log_lr, sign * reps.value, n_boot)


def best_lr(members: pd.DataFrame, metric: str = "final_val_loss", n_boot: int = 1000,
            rng_seed: int = 0) -> pd.DataFrame:
  """Best learning rate per cell, refined between grid points, with a seed bootstrap.

  Per cell (batch_size, aug, extra axes): among LRs where every seed counts (see
  `lrjax.analysis.stats`), take the one with the best mean metric over seeds; then
  fit a parabola in log(lr) through it and its usable neighbours and take the vertex
  (clamped to the neighbours' interval). When the best grid LR is the smallest or
  largest usable LR, ``edge`` is True, there is no refinement, and the true optimum
  may lie outside the grid. The interval re-does all of this per bootstrap replicate
  of the seeds.

  Args:
    members: the members table.
    metric: the column to optimise (``loss`` in the name: minimised).
    n_boot: bootstrap replicates (0: no interval).
    rng_seed: seed of the bootstrap draws.

  Returns:
    One row per cell: the cell columns, ``best_lr`` (refined), ``best_lr_lo``,
    ``best_lr_hi`` (95% interval; NaN without one), ``grid_best_lr``, ``edge``,
    ``best_metric`` (mean over seeds at the grid best), ``n_seeds``,
    ``n_usable_lrs``, ``has_interval`` (False with one seed). A cell with no usable
    LR has NaN estimates.

  Raises:
    ConfigError: a column is missing, the metric is unknown, or a setting repeats.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(64, 256), seeds=(0, 1, 2), noise=0.0)
    >>> r = best_lr(t, n_boot=50)
    >>> [round(x, 3) for x in r["best_lr"]]  # planted: 0.01 * (B / 64) ** 0.5
    [0.01, 0.02]
    >>> r["edge"].tolist(), r["has_interval"].tolist()
    ([False, False], [True, True])
  """
  return best_lr_fit(members, metric, n_boot, rng_seed).table


def best_lr_replicates(members: pd.DataFrame, metric: str = "final_val_loss",
                       n_boot: int = 1000, rng_seed: int = 0) -> np.ndarray:
  """Bootstrap replicates of `best_lr`: an (n_boot, n_cells) array of best LRs.

  Columns follow the rows of ``best_lr(members, metric, n_boot, rng_seed)``; row r of
  every cell comes from the same draw of seeds, so functions of several cells (a
  slope across batch sizes, a ratio between aug levels) can be bootstrapped jointly.
  NaN where a replicate leaves a cell without a usable LR.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(64, 256), seeds=(0, 1, 2))
    >>> best_lr_replicates(t, n_boot=20).shape
    (20, 2)
  """
  return np.exp(best_lr_fit(members, metric, n_boot, rng_seed).log_reps)


# ----------------------------------------------------------------- scaling exponent


def _lines(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Least-squares intercept and slope of each row of y (R, n) on x (n,), NaN-aware."""
  m = np.isfinite(y)
  cnt = m.sum(-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    xbar = np.where(m, x, 0.0).sum(-1) / cnt
    ybar = np.where(m, y, 0.0).sum(-1) / cnt
    dx = np.where(m, x - xbar[..., None], 0.0)
    dy = np.where(m, y - ybar[..., None], 0.0)
    sxx = (dx**2).sum(-1)
    slope = (dx * dy).sum(-1) / sxx
  ok = (cnt >= 2) & (sxx > 0)
  return np.where(ok, ybar - slope * xbar, np.nan), np.where(ok, slope, np.nan)


def _scaling_verdict(lo: float, hi: float, n: int, n_total: int,
                     has_interval: bool) -> tuple[str, str]:
  if n < 3:
    return "not settled", (
        f"only {n} of {n_total} batch sizes have an interior optimum (need ≥ 3); "
        "widen the LR grid or add batch sizes")
  if not has_interval:
    return "not settled", "one seed: no interval; run ≥ 3 seeds"
  if not (np.isfinite(lo) and np.isfinite(hi)):
    return "not settled", "the bootstrap gave no usable interval"
  tol = 1e-9  # a noise-free fit gives a zero-width interval a rounding error off 1 or 0.5
  lin, sqrt = lo - tol <= 1.0 <= hi + tol, lo - tol <= 0.5 <= hi + tol
  if lin and sqrt:
    return "not settled", (
        "the interval contains both 0.5 and 1; more seeds or a wider batch-size range "
        "would separate them")
  if lin:
    return "linear", "the interval contains 1 and excludes 0.5"
  if sqrt:
    return "sqrt", "the interval contains 0.5 and excludes 1"
  return "neither", "the interval excludes both 0.5 and 1"


def _by_columns(table: pd.DataFrame, by, default: list[str]) -> list[str]:
  if by is None:
    return default
  by = [by] if isinstance(by, str) else list(by)
  require_columns(table, by, "by")
  return by


def _group_line(group: pd.DataFrame, log_reps: np.ndarray,
                n_points: int) -> tuple[dict, dict | None]:
  """The exponent of one group's cells (sorted by batch size), and its line and band.

  Returns the exponent's columns, and the band's columns (None below 2 interior
  optima).
  """
  interior = (~group["edge"].to_numpy(bool)) & np.isfinite(group["best_lr"].to_numpy())
  cols = group.index.to_numpy()[interior]
  x = np.log(group["batch_size"].to_numpy(float)[interior])
  n = int(interior.sum())
  y = np.log(group["best_lr"].to_numpy()[interior])
  a, alpha = (v[0] for v in _lines(x, y[None])) if n >= 2 else (np.nan, np.nan)
  has_interval = bool(group["has_interval"].all()) and n >= 3
  lo, hi = np.nan, np.nan
  n_seeds = int(group["n_seeds"].min())
  if has_interval:
    rep_a, rep_alpha = _lines(x, log_reps[:, cols])
    lo, hi = (v[0] for v in stats.interval(rep_alpha[:, None], n_seeds))
  verdict, reason = _scaling_verdict(lo, hi, n, len(group), has_interval)
  row = {"alpha": alpha, "alpha_lo": lo, "alpha_hi": hi, "intercept": a,
         "n_batch_sizes": n, "n_seeds": n_seeds, "verdict": verdict, "reason": reason}
  if n < 2:
    return row, None
  xs = np.linspace(x.min(), x.max(), n_points)
  band_lo = band_hi = np.full(n_points, np.nan)
  if has_interval:
    curves = rep_a[:, None] + rep_alpha[:, None] * xs[None]    # (R, n_points)
    band_lo, band_hi = stats.interval(curves, n_seeds)
  return row, {"batch_size": np.exp(xs), "lr": np.exp(a + alpha * xs),
               "lr_lo": np.exp(band_lo), "lr_hi": np.exp(band_hi)}


class ScalingFit(NamedTuple):
  """`scaling_exponent` and `scaling_band`, from one fit.

  Attributes:
    table: the `scaling_exponent` table.
    band: the `scaling_band` table.
  """
  table: pd.DataFrame
  band: pd.DataFrame


def scaling_fit(members: pd.DataFrame, by: str | Sequence[str] | None = None,
                metric: str = "final_val_loss", n_boot: int = 1000, rng_seed: int = 0,
                n_points: int = 40, fit: BestLrFit | None = None) -> ScalingFit:
  """The scaling exponent and its band together, optionally from a `best_lr_fit`.

  Args:
    members, by, metric, n_boot, rng_seed: as for `scaling_exponent`.
    n_points: points per line of the band (`scaling_band`).
    fit: a `best_lr_fit` of the same members, metric, n_boot and rng_seed to reuse
      (then ``members``, ``metric``, ``n_boot`` and ``rng_seed`` are not read again).

  Returns:
    A `ScalingFit`.

  Raises:
    ConfigError: bad columns, or ``by`` leaves several cells per batch size.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(32, 64, 128), exponent=1.0)
    >>> s = scaling_fit(t, fit=best_lr_fit(t, n_boot=100), n_points=3)
    >>> s.table["verdict"].tolist(), len(s.band)
    (['linear'], 3)
  """
  fit = fit if fit is not None else best_lr_fit(members, metric, n_boot, rng_seed)
  table = fit.table
  extra = [c for c in table.columns[:list(table.columns).index("best_lr")]
           if c not in ("batch_size", "aug")]
  by = _by_columns(table, by, ["aug", *extra])
  rows, bands = [], []
  for key, group in table.groupby(by, dropna=False, sort=True):
    key = key if isinstance(key, tuple) else (key,)
    if group["batch_size"].duplicated().any():
      raise ConfigError(
          f"by: {by} leaves several cells per batch size (axes {extra}); include every "
          "extra grid axis in `by`.")
    row, line = _group_line(group.sort_values("batch_size"), fit.log_reps, n_points)
    label = dict(zip(by, key))
    rows.append({**label, **row})
    if line is not None:
      bands.append(pd.DataFrame({**label, **line}))
  band_cols = [*by, "batch_size", "lr", "lr_lo", "lr_hi"]
  band = pd.concat(bands, ignore_index=True) if bands else pd.DataFrame(columns=band_cols)
  return ScalingFit(pd.DataFrame(rows), band[band_cols])


def scaling_exponent(members: pd.DataFrame, by: str | Sequence[str] | None = None,
                     metric: str = "final_val_loss", n_boot: int = 1000,
                     rng_seed: int = 0) -> pd.DataFrame:
  """Exponent alpha of best LR ∝ batch_size**alpha, per group, with a verdict.

  Fits ``log(best_lr) = a + alpha * log(batch_size)`` by least squares over the batch
  sizes whose optimum is interior (not ``edge``: an edge optimum is only a bound).
  The interval re-fits on each joint bootstrap replicate of `best_lr`, over the same
  batch sizes. Verdict: ``"linear"`` when the 95% interval contains 1 but not 0.5,
  ``"sqrt"`` when it contains 0.5 but not 1, ``"neither"`` when it contains neither,
  and ``"not settled"`` when it contains both, when fewer than 3 batch sizes have an
  interior optimum, or when there is no interval (one seed). ``alpha`` is reported
  from 2 interior batch sizes up, its interval from 3.

  Args:
    members: the members table.
    by: grouping columns; default ``aug`` plus the extra grid axes.
    metric: passed to `best_lr`.
    n_boot: bootstrap replicates.
    rng_seed: seed of the bootstrap draws.

  Returns:
    One row per group: the group columns, ``alpha``, ``alpha_lo``, ``alpha_hi``,
    ``intercept`` (``a``: log best LR at batch size 1), ``n_batch_sizes``
    (interior), ``n_seeds`` (smallest over the group), ``verdict``, ``reason``.

  Raises:
    ConfigError: bad columns, or ``by`` leaves several cells per batch size.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(32, 64, 128, 256, 512), exponent=1.0)
    >>> scaling_exponent(t, n_boot=200)[["alpha", "verdict"]].round(1).values.tolist()
    [[1.0, 'linear']]
  """
  return scaling_fit(members, by, metric, n_boot, rng_seed).table


def scaling_band(members: pd.DataFrame, by: str | Sequence[str] | None = None,
                 metric: str = "final_val_loss", n_boot: int = 1000, rng_seed: int = 0,
                 n_points: int = 40) -> pd.DataFrame:
  """The fitted best-LR line of `scaling_exponent` and its 95% bootstrap band.

  Per group, ``n_points`` batch sizes log-spaced over the interior batch sizes; the
  band at each is the small-sample-widened percentile interval of the replicate
  lines (the same joint replicates as the exponent's interval).

  Args:
    members, by, metric, n_boot, rng_seed: as for `scaling_exponent`.
    n_points: points per line.

  Returns:
    Rows of the group columns, ``batch_size``, ``lr`` (the fitted line), ``lr_lo``
    and ``lr_hi`` (NaN where the exponent has no interval). Groups with fewer than
    2 interior batch sizes have no rows.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(32, 64, 128), exponent=1.0)
    >>> b = scaling_band(t, n_boot=100, n_points=3)
    >>> b["batch_size"].round().tolist(), bool((b["lr_lo"] <= b["lr"]).all())
    ([32.0, 64.0, 128.0], True)
  """
  return scaling_fit(members, by, metric, n_boot, rng_seed, n_points).band
