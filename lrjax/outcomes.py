"""What became of each member: ``trained``, ``slow``, ``failed`` or ``diverged``.

Pure pandas/numpy on the members table, so the engine (which writes the ``status``
column), the progress display, TensorBoard, ``lrjax find`` and the analysis (which
reads the column, or derives it again for older tables) share one rule.

The rule (`member_status`) judges each member against its *cell*: the members that
share ``batch_size``, ``aug`` and every extra grid axis and differ only in ``lr`` and
``seed`` (`cell_columns`).

1. The cell's optimum (`cell_best_lr`) is the grid LR with the lowest mean over seeds
   of ``final_val_loss`` among the cell's non-diverged members. LRs above it are the
   cell's *high-LR side*; the optimum and the LRs below it, its *low-LR side*. A cell
   with one LR, or with no finite validation loss, has no high side.
2. ``diverged``: the ``diverged`` flag is set.
3. ``failed``: it learned (next to) nothing:

   * on either side: ``final_val_acc`` is at or below chance (not above chance plus
     2 standard errors of an accuracy measured on ``num_val`` examples, `chance_band`),
     or ``final_train_loss`` is not below ``loss_ratio`` (1) times
     ``first_train_loss``;
   * on the high-LR side also: ``final_val_acc`` is below ``failed_acc_factor`` (2)
     times chance (capped halfway from chance to 1, so the bar stays below 100% with
     two classes). Above the optimum, ending that close to chance means the member
     oscillated or broke down, not that it is still learning.
4. ``slow``: it learned but is far from converged; low-LR side, below the optimum
   only: its training-loss reduction ``first_train_loss - final_train_loss`` is less
   than ``slow_fraction`` (0.5) of the reduction reached at the cell's optimum (by the
   member of the same seed there, else the mean over the seeds there). A ratio of two
   reductions of the same loss on the same data does not depend on the dataset, the
   number of classes or the loss's scale.
5. ``trained``: everything else.

A criterion whose inputs are NaN is not applied: a partial table without
``first_train_loss`` is judged by accuracy alone, and none of its members is slow.
Everything is vectorised over the table (grids reach 16,384 members).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from lrjax.errors import ConfigError
from lrjax.grid import CORE_AXES

STATUSES = ("trained", "slow", "failed", "diverged")
# Statuses of members that learned and stayed finite: stable, and usable by the fits.
LEARNED = ("trained", "slow")
# Defaults of the thresholds (the engine's TrainSettings use the same values).
LOSS_RATIO = 1.0
FAILED_ACC_FACTOR = 2.0
SLOW_FRACTION = 0.5
# The outcome settings (fields of the engine's ``TrainSettings``, and keys of a run's
# ``config.json``) and the `member_status` threshold argument each sets.
STATUS_SETTINGS = {"failed_loss_ratio": "loss_ratio",
                   "failed_acc_factor": "failed_acc_factor",
                   "slow_fraction": "slow_fraction"}
# Columns member_status reads.
STATUS_INPUTS = ("lr", "diverged", "first_train_loss", "final_train_loss",
                 "final_val_loss", "final_val_acc")

# Per-member result and bookkeeping columns: never grid axes.
RESULT_PREFIXES = ("final_", "best_", "test_", "first_", "train_", "val_", "n_", "wall")
RESULT_SUFFIXES = ("_loss", "_acc", "_at", "_time", "_s")
BOOKKEEPING_COLUMNS = frozenset(
    ("member", "diverged", "diverged_at", "updates", "status", "examples_seen",
     "lr_now", "noise_scale"))


# ------------------------------------------------------------------------- cells


def is_result_column(name: str) -> bool:
  """Whether a members column is a result or bookkeeping column, never a grid axis.

  Results start with ``final_``, ``best_``, ``test_``, ``first_``, ``train_``,
  ``val_``, ``n_`` or ``wall``, or end with ``_loss``, ``_acc``, ``_at``, ``_time``
  or ``_s``; bookkeeping is ``member``, ``diverged``, ``diverged_at``, ``updates``,
  ``status``, ``examples_seen``, ``lr_now``, ``noise_scale``.

  Example:
    >>> [is_result_column(c) for c in ("momentum", "first_train_loss", "status")]
    [False, True, True]
  """
  name = str(name)
  return (name in BOOKKEEPING_COLUMNS or name.startswith(RESULT_PREFIXES)
          or name.endswith(RESULT_SUFFIXES))


def extra_axes(members: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
  """Grid axes beyond lr, batch_size, aug and seed that vary in the table.

  A column is an axis unless it is a core axis, a result or bookkeeping column
  (`is_result_column`) or in ``exclude``; columns with a single value are not axes.

  Args:
    members: the members table.
    exclude: more column names that are not axes.

  Returns:
    Column names, in table order.

  Example:
    >>> t = pd.DataFrame({"member": [0, 1], "lr": [0.1, 0.1], "batch_size": [32, 32],
    ...                   "optimizer": ["sgd", "adam"], "schedule": ["cos", "cos"],
    ...                   "final_val_loss": [1.0, 2.0], "diverged": [False, False]})
    >>> extra_axes(t)
    ['optimizer']
  """
  return [c for c in members.columns
          if str(c) not in CORE_AXES and str(c) not in exclude
          and not is_result_column(c) and members[c].nunique(dropna=False) > 1]


def cell_columns(members: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
  """The columns that define a cell: batch_size, aug and the extra grid axes.

  Example:
    >>> cell_columns(pd.DataFrame({"lr": [0.1], "batch_size": [32], "aug": [0.0]}))
    ['batch_size', 'aug']
  """
  return ["batch_size", "aug", *extra_axes(members, exclude)]


def _cell_ids(members: pd.DataFrame, cells: Sequence[str] | None) -> np.ndarray:
  """(N,) integer id of each member's cell; absent cell columns have one value."""
  cols = [c for c in (cell_columns(members) if cells is None else cells)
          if c in members.columns]
  if not cols:
    return np.zeros(len(members), np.int64)
  return members.groupby(cols, dropna=False, sort=False).ngroup().to_numpy(np.int64)


def _best_lr(cell: np.ndarray, lr: np.ndarray, val_loss: np.ndarray) -> np.ndarray:
  """(N,) the optimum of each member's cell; ``val_loss`` NaN where it does not count."""
  means = (pd.DataFrame({"cell": cell, "lr": lr, "v": val_loss})
           .groupby(["cell", "lr"], sort=False)["v"].mean().dropna().reset_index())
  best = (means.sort_values(["cell", "v", "lr"], kind="stable")
          .drop_duplicates("cell").set_index("cell")["lr"])
  return best.reindex(cell).to_numpy(float)


def cell_best_lr(members: pd.DataFrame, cells: Sequence[str] | None = None) -> pd.Series:
  """Each member's cell optimum: the grid LR with the lowest mean ``final_val_loss``.

  The mean is over the cell's non-diverged members at that LR with a finite loss;
  ties go to the smaller LR. NaN for a cell without a finite validation loss.

  Args:
    members: the members table (``lr``, ``final_val_loss``, optionally ``diverged``
      and the cell columns).
    cells: the cell columns; default `cell_columns` (absent ones have one value).

  Returns:
    A float Series named ``best_lr`` with the members' index.

  Example:
    >>> t = pd.DataFrame({"lr": [0.01, 0.1, 1.0, 0.01, 0.1], "batch_size": [32] * 3 + [64] * 2,
    ...                   "final_val_loss": [0.5, 0.2, 0.9, 0.3, 0.4],
    ...                   "diverged": False})
    >>> cell_best_lr(t).tolist()
    [0.1, 0.1, 0.1, 0.01, 0.01]
  """
  _require(members, ("lr", "final_val_loss"))
  cell = _cell_ids(members, cells)
  lr = members["lr"].to_numpy(float)
  best = _best_lr(cell, lr, _counting_val_loss(members))
  return pd.Series(best, index=members.index, name="best_lr")


def _diverged(members: pd.DataFrame) -> np.ndarray:
  if "diverged" not in members.columns:
    return np.zeros(len(members), bool)
  return members["diverged"].fillna(False).astype(bool).to_numpy()


def _counting_val_loss(members: pd.DataFrame) -> np.ndarray:
  """``final_val_loss``, NaN for diverged members and non-finite values."""
  v = members["final_val_loss"].to_numpy(float)
  return np.where(np.isfinite(v) & ~_diverged(members), v, np.nan)


# ------------------------------------------------------------------------- status


def chance_band(num_classes: int, num_val: int) -> tuple[float, float]:
  """Chance accuracy and the half-width of "at chance": 2 standard errors of an
  accuracy measured on ``num_val`` examples at chance.

  Example:
    >>> [round(v, 4) for v in chance_band(10, 250)]
    [0.1, 0.0379]
  """
  chance = 1.0 / num_classes
  return chance, 2 * math.sqrt(chance * (1 - chance) / num_val)


def failed_acc_threshold(num_classes: int, failed_acc_factor: float = FAILED_ACC_FACTOR
                         ) -> float:
  """Above a cell's optimum, a member ending below this validation accuracy failed:
  ``failed_acc_factor`` × chance, capped halfway from chance to 1.

  Example:
    >>> [failed_acc_threshold(k) for k in (10, 100, 2)]
    [0.2, 0.02, 0.75]
  """
  chance = 1.0 / num_classes
  return min(failed_acc_factor * chance, (1.0 + chance) / 2)


def _check_arguments(num_classes, num_val, loss_ratio, failed_acc_factor,
                     slow_fraction) -> None:
  if not (isinstance(num_classes, (int, np.integer)) and num_classes >= 2):
    raise ConfigError(f"num_classes: must be an integer ≥ 2; got {num_classes!r}.")
  if not (isinstance(num_val, (int, np.integer)) and num_val >= 1):
    raise ConfigError(
        f"num_val: must be a positive integer (validation set size); got {num_val!r}.")
  if not 0 < loss_ratio <= 1:
    raise ConfigError(f"loss_ratio: must be in (0, 1]; got {loss_ratio!r}. Use e.g. 1.0.")
  if not (math.isfinite(failed_acc_factor) and failed_acc_factor >= 1):
    raise ConfigError(
        f"failed_acc_factor: must be a finite number ≥ 1 (a multiple of chance accuracy); "
        f"got {failed_acc_factor!r}. Use e.g. 2.0.")
  if not 0 <= slow_fraction < 1:
    raise ConfigError(
        f"slow_fraction: must be in [0, 1) (0: no member is slow); got {slow_fraction!r}. "
        f"Use e.g. 0.5.")


def _require(members: pd.DataFrame, columns: Sequence[str]) -> None:
  missing = [c for c in columns if c not in members.columns]
  if missing:
    raise ConfigError(f"members: missing columns {missing}; give a members table written by "
                      f"lrjax 0.1 or later.")


def _reference_reduction(cell: np.ndarray, seed: np.ndarray, at_best: np.ndarray,
                         reduction: np.ndarray) -> np.ndarray:
  """(N,) the training-loss reduction at each member's cell optimum: the same seed's
  there, else the mean over the seeds there (NaN where none is known)."""
  ok = at_best & np.isfinite(reduction)
  ref = pd.DataFrame({"cell": cell[ok], "seed": seed[ok], "r": reduction[ok]})
  by_seed = ref.groupby(["cell", "seed"])["r"].mean()
  by_cell = ref.groupby("cell")["r"].mean()
  same_seed = by_seed.reindex(pd.MultiIndex.from_arrays([cell, seed])).to_numpy(float)
  return np.where(np.isnan(same_seed), by_cell.reindex(cell).to_numpy(float), same_seed)


def member_status(members: pd.DataFrame, *, num_classes: int, num_val: int,
                  loss_ratio: float = LOSS_RATIO,
                  failed_acc_factor: float = FAILED_ACC_FACTOR,
                  slow_fraction: float = SLOW_FRACTION,
                  cells: Sequence[str] | None = None) -> pd.Series:
  """Labels each member ``"trained"``, ``"slow"``, ``"failed"`` or ``"diverged"``.

  The rule is the module's (`lrjax.outcomes`): against the optimum of the member's
  cell, failed = at or below chance, training loss not below ``loss_ratio`` × its
  first, or (above the optimum) accuracy below ``failed_acc_factor`` × chance; slow =
  below the optimum with less than ``slow_fraction`` of the optimum's training-loss
  reduction.

  Args:
    members: the members table: ``lr``, ``diverged``, ``first_train_loss``,
      ``final_train_loss``, ``final_val_loss``, ``final_val_acc``, the cell columns
      (absent ``batch_size``/``aug``: one value) and ``seed`` if there are seeds.
    num_classes: number of classes (sets chance accuracy).
    num_val: number of validation examples behind ``final_val_acc``.
    loss_ratio: a member whose final training loss is at least this fraction of its
      first failed (1: not below its first).
    failed_acc_factor: above its cell's optimum, a member ending below this multiple
      of chance accuracy failed (`failed_acc_threshold`).
    slow_fraction: below its cell's optimum, a member with less than this fraction of
      the optimum's training-loss reduction is slow (0: none is).
    cells: the cell columns; default `cell_columns`.

  Returns:
    A string Series named ``status`` with the members' index.

  Raises:
    ConfigError: a column is missing or an argument is out of range.

  Example:
    >>> t = pd.DataFrame({"lr": [0.001, 0.01, 0.1, 1.0, 3.0], "seed": 0,
    ...                   "diverged": [False, False, False, False, True],
    ...                   "first_train_loss": 2.3,
    ...                   "final_train_loss": [2.0, 0.9, 0.3, 2.1, np.nan],
    ...                   "final_val_loss": [2.0, 0.9, 0.4, 2.2, np.nan],
    ...                   "final_val_acc": [0.6, 0.8, 0.9, 0.15, np.nan]})
    >>> member_status(t, num_classes=10, num_val=1000).tolist()
    ['slow', 'trained', 'trained', 'failed', 'diverged']
  """
  _check_arguments(num_classes, num_val, loss_ratio, failed_acc_factor, slow_fraction)
  _require(members, STATUS_INPUTS)
  cell = _cell_ids(members, cells)
  lr = members["lr"].to_numpy(float)
  diverged = _diverged(members)
  first = members["first_train_loss"].to_numpy(float)
  final = members["final_train_loss"].to_numpy(float)
  acc = members["final_val_acc"].to_numpy(float)
  seed = (members["seed"].to_numpy() if "seed" in members.columns
          else np.zeros(len(members), np.int64))
  best = _best_lr(cell, lr, _counting_val_loss(members))
  chance, band = chance_band(num_classes, num_val)
  with np.errstate(invalid="ignore"):
    high = lr > best  # False where the cell has no optimum
    reduction = first - final
    ref = _reference_reduction(cell, seed, (lr == best) & ~diverged, reduction)
    failed = ((acc <= chance + band) | (final >= loss_ratio * first)
              | (high & (acc < failed_acc_threshold(num_classes, failed_acc_factor))))
    slow = (lr < best) & (ref > 0) & (reduction < slow_fraction * ref)
  status = np.select([diverged, failed, slow], ["diverged", "failed", "slow"], "trained")
  return pd.Series(status, index=members.index, name="status")


def status_arguments(settings) -> dict:
  """`member_status`'s threshold arguments from an engine's ``TrainSettings``.

  Each field of `STATUS_SETTINGS` sets the argument it names.

  Example:
    >>> from lrjax.engine import TrainSettings
    >>> status_arguments(TrainSettings(slow_fraction=0.3))
    {'loss_ratio': 1.0, 'failed_acc_factor': 2.0, 'slow_fraction': 0.3}
  """
  return {arg: getattr(settings, field) for field, arg in STATUS_SETTINGS.items()}


def status_counts(status) -> dict[str, int]:
  """How many members have each status of `STATUSES`, in that order.

  Example:
    >>> status_counts(["trained", "slow", "trained"])
    {'trained': 2, 'slow': 1, 'failed': 0, 'diverged': 0}
  """
  status = np.asarray(status).astype(str)
  return {s: int((status == s).sum()) for s in STATUSES}
