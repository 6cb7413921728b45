"""Members as a (cell, lr, seed) cube, and the best LR of each cell per bootstrap replicate.

The estimators lay a members table out once as dense arrays; a bootstrap replicate is
then a weighting of the seed axis (`lrjax.analysis.stats.seed_counts`), so every
replicate of every cell is computed at once with array operations.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from lrjax.errors import ConfigError


class Cube(NamedTuple):
  """Members laid out as (cell, lr, seed) arrays; all cells share the lr/seed axes."""
  cells: pd.DataFrame   # one row per cell: the cell columns
  lrs: np.ndarray       # (L,) sorted learning rates of the whole table
  log_lrs: np.ndarray   # (L,) their logs
  value: np.ndarray     # (C, L, S) value to minimise; 0 where not ok
  ok: np.ndarray        # (C, L, S) the member exists and counts
  present: np.ndarray   # (C, L) the cell's grid has this LR
  in_cell: np.ndarray   # (C, S) the cell has members with this seed

  @property
  def n_seeds(self) -> int:
    return self.in_cell.shape[1]


def make_cube(members: pd.DataFrame, cell_cols: list[str], value: np.ndarray,
              ok: np.ndarray) -> Cube:
  """Lays members out as a `Cube`.

  Args:
    members: the members table (``lr``, ``seed`` and the cell columns).
    cell_cols: the columns that define a cell.
    value: (N,) per-member value to minimise.
    ok: (N,) whether the member counts; non-finite values never count.

  Returns:
    A `Cube`.

  Raises:
    ConfigError: two members share a cell, LR and seed.

  Example:
    >>> m = pd.DataFrame({"lr": [0.1, 0.2, 0.1], "batch_size": [32, 32, 64],
    ...                   "seed": [0, 0, 0]})
    >>> c = make_cube(m, ["batch_size"], np.array([1.0, 2.0, 3.0]), np.ones(3, bool))
    >>> c.value.shape, c.present.tolist()
    ((2, 2, 1), [[True, True], [True, False]])
  """
  grouped = members.groupby(cell_cols, dropna=False, sort=True)
  cell = grouped.ngroup().to_numpy()
  cells = grouped.size().reset_index()[cell_cols]
  lrs, lr_idx = np.unique(members["lr"].to_numpy(float), return_inverse=True)
  _, seed_idx = np.unique(members["seed"].to_numpy(), return_inverse=True)
  n_c, n_l, n_s = len(cells), len(lrs), int(seed_idx.max()) + 1 if len(members) else 0
  flat = (cell * n_l + lr_idx) * n_s + seed_idx
  if len(np.unique(flat)) != len(flat):
    raise ConfigError(
        f"members: two rows share the same {cell_cols + ['lr', 'seed']}; a grid has one "
        "member per setting. Pass one run's table, or add the distinguishing axis column.")
  value = np.asarray(value, float)
  ok = np.asarray(ok, bool) & np.isfinite(value)
  v = np.zeros((n_c, n_l, n_s))
  o = np.zeros((n_c, n_l, n_s), bool)
  present = np.zeros((n_c, n_l), bool)
  in_cell = np.zeros((n_c, n_s), bool)
  v[cell, lr_idx, seed_idx] = np.where(ok, value, 0.0)
  o[cell, lr_idx, seed_idx] = ok
  present[cell, lr_idx] = True
  in_cell[cell, seed_idx] = True
  return Cube(cells, lrs, np.log(lrs), v, o, present, in_cell)


def grid_value(lrs: np.ndarray, idx: np.ndarray) -> np.ndarray:
  """The exact grid LR at each index; NaN where the index is -1.

  Example:
    >>> grid_value(np.array([0.1, 0.2]), np.array([1, -1])).tolist()
    [0.2, nan]
  """
  return np.where(idx >= 0, lrs[np.maximum(idx, 0)], np.nan)


def replicate_means(cube: Cube, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Means over the drawn seeds, and which (cell, lr) are usable, per replicate.

  Args:
    cube: the layout.
    counts: (R, S) multiplicity of each seed per replicate (`data_counts`: the data).

  Returns:
    means (R, C, L) and usable (R, C, L): the LR is in the cell's grid and every
    drawn seed of the cell counts at it. Seeds a cell never ran are ignored there.

  Example:
    >>> m = pd.DataFrame({"lr": [0.1, 0.1], "batch_size": 32, "seed": [0, 1]})
    >>> c = make_cube(m, ["batch_size"], np.array([1.0, 3.0]), np.ones(2, bool))
    >>> means, usable = replicate_means(c, np.array([[1.0, 1.0], [2.0, 0.0]]))
    >>> means[:, 0, 0].tolist(), usable[:, 0, 0].tolist()
    ([2.0, 1.0], [True, True])
  """
  w = counts[:, None, :] * cube.in_cell[None]                     # (R, C, S)
  denom = w.sum(-1)                                               # (R, C)
  total = np.einsum("rcs,cls->rcl", w, cube.value)
  bad = np.einsum("rcs,cls->rcl", w, (~cube.ok & cube.in_cell[:, None, :]).astype(float))
  usable = cube.present[None] & (bad == 0) & (denom[..., None] > 0)
  with np.errstate(invalid="ignore", divide="ignore"):
    means = total / denom[..., None]
  return means, usable


def data_counts(cube: Cube) -> np.ndarray:
  """The (1, S) seed weights of the data itself (every seed once).

  Example:
    >>> m = pd.DataFrame({"lr": [0.1, 0.1], "batch_size": 32, "seed": [0, 1]})
    >>> data_counts(make_cube(m, ["batch_size"], np.zeros(2), np.ones(2, bool))).tolist()
    [[1.0, 1.0]]
  """
  return np.ones((1, cube.n_seeds))


class Best(NamedTuple):
  """Per (replicate, cell): the best usable LR (`best_over_lr`)."""
  idx: np.ndarray        # (R, C) grid index of the best usable LR; -1 if none
  has: np.ndarray        # (R, C) some LR is usable
  log_lr: np.ndarray     # (R, C) refined log LR (NaN where not has)
  grid_log_lr: np.ndarray
  edge: np.ndarray       # (R, C) best is the smallest or largest usable LR
  value: np.ndarray      # (R, C) mean at the grid best (minimised sign)


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
  return np.take_along_axis(a, idx[..., None], -1)[..., 0]


def _parabola_vertex(x0, y0, x1, y1, x2, y2):
  """Vertex of the parabola through three points; x1 where it is not convex.

  Clamped to [x0, x2] so a noisy flat triple cannot throw the optimum off the
  bracket the grid supports.
  """
  with np.errstate(invalid="ignore", divide="ignore"):
    d = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / d
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / d
    vertex = np.clip(-b / (2 * a), x0, x2)
  return np.where(np.isfinite(vertex) & (a > 0), vertex, x1)


def best_over_lr(means: np.ndarray, usable: np.ndarray, log_lrs: np.ndarray,
                 refine: bool = True) -> Best:
  """Per (replicate, cell): the usable LR with the lowest mean, refined in log LR.

  Refinement fits a parabola in log(lr) through the best usable LR and its nearest
  usable neighbours on each side; at an edge (best is the smallest or largest usable
  LR) there is no bracket, so the grid value stands.

  Args:
    means: (R, C, L) values to minimise.
    usable: (R, C, L) which of them may be chosen.
    log_lrs: (L,) the grid's log learning rates.
    refine: whether to refine between grid points.

  Returns:
    A `Best`.

  Example:
    >>> log_lrs = np.log([0.01, 0.02, 0.04])
    >>> b = best_over_lr(np.array([[[2.0, 1.0, 2.0]]]), np.ones((1, 1, 3), bool), log_lrs)
    >>> round(float(np.exp(b.log_lr[0, 0])), 6), bool(b.edge[0, 0])
    (0.02, False)
  """
  n_l = means.shape[-1]
  ar = np.arange(n_l)
  has = usable.any(-1)
  idx = np.where(usable, means, np.inf).argmin(-1)
  first = np.where(usable, ar, n_l).min(-1)
  last = np.where(usable, ar, -1).max(-1)
  edge = has & ((idx == first) | (idx == last))
  value = np.where(has, _take(means, idx), np.nan)
  grid_x = np.where(has, log_lrs[idx], np.nan)
  grid_idx = np.where(has, idx, -1)
  x = grid_x
  if refine and n_l >= 3:
    # Nearest usable index strictly below / above each position.
    below = np.maximum.accumulate(np.where(usable, ar, -1), axis=-1)
    below = np.concatenate([np.full(below.shape[:-1] + (1,), -1), below[..., :-1]], -1)
    above = np.minimum.accumulate(np.where(usable, ar, n_l)[..., ::-1], axis=-1)[..., ::-1]
    above = np.concatenate([above[..., 1:], np.full(above.shape[:-1] + (1,), n_l)], -1)
    i0 = np.clip(_take(below, idx), 0, n_l - 1)
    i2 = np.clip(_take(above, idx), 0, n_l - 1)
    refined = _parabola_vertex(log_lrs[i0], _take(means, i0), grid_x, value,
                               log_lrs[i2], _take(means, i2))
    x = np.where(has & ~edge, refined, grid_x)
  return Best(grid_idx, has, x, grid_x, edge, value)


# Replicates per chunk are sized so the (chunk, C, L) float arrays stay near this many
# elements (~16 MB each), however large the grid.
_CHUNK_ELEMENTS = 2_000_000


def best_per_replicate(cube: Cube, counts: np.ndarray, refine: bool = True) -> Best:
  """`best_over_lr` of `replicate_means`, computed in chunks of replicates.

  Same result as ``best_over_lr(*replicate_means(cube, counts), cube.log_lrs,
  refine)``, with memory bounded for large grids and many replicates.

  Example:
    >>> m = pd.DataFrame({"lr": [0.1, 0.2, 0.1, 0.2], "batch_size": 32,
    ...                   "seed": [0, 0, 1, 1]})
    >>> c = make_cube(m, ["batch_size"], np.array([1.0, 2.0, 3.0, 0.5]), np.ones(4, bool))
    >>> best_per_replicate(c, np.array([[2.0, 0.0], [0.0, 2.0]])).idx[:, 0].tolist()
    [0, 1]
  """
  n_c, n_l = cube.present.shape
  step = max(1, _CHUNK_ELEMENTS // max(n_c * n_l, 1))
  parts = [best_over_lr(*replicate_means(cube, counts[i:i + step]), cube.log_lrs, refine)
           for i in range(0, counts.shape[0], step)]
  if not parts:
    return best_over_lr(*replicate_means(cube, counts), cube.log_lrs, refine)
  return Best(*(np.concatenate(f) for f in zip(*parts)))


def top_usable_per_replicate(cube: Cube, counts: np.ndarray) -> np.ndarray:
  """(R, C) index of the largest usable LR of each cell per replicate; -1 if none.

  Example:
    >>> m = pd.DataFrame({"lr": [0.1, 0.2], "batch_size": 32, "seed": [0, 0]})
    >>> c = make_cube(m, ["batch_size"], np.array([1.0, np.nan]), np.ones(2, bool))
    >>> top_usable_per_replicate(c, data_counts(c)).tolist()
    [[0]]
  """
  n_c, n_l = cube.present.shape
  ar = np.arange(n_l)
  step = max(1, _CHUNK_ELEMENTS // max(n_c * n_l, 1))
  parts = [np.where(replicate_means(cube, counts[i:i + step])[1], ar, -1).max(-1)
           for i in range(0, counts.shape[0], step)]
  return np.concatenate(parts) if parts else np.zeros((0, n_c), int)

