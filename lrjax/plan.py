"""What a grid run is before it compiles: settings, sizes, blocks, hyperparameter roles.

Everything here is host-side and validates user input (raising ``ConfigError``)
before any JAX compilation; ``lrjax.engine`` builds the compiled program from it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from lrjax import grid as grid_lib
from lrjax import optimizers
from lrjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Everything static about a grid run (resolved from the user's config)."""

  optimizer: str = "momentum"
  schedule: str = "constant"
  schedule_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  optimizer_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  epochs: float = 10.0
  eval_every: int = 0  # examples between evaluations; 0 = one epoch
  micro_batch: int = 0  # 0 = gcd of the grid's batch sizes
  augment_policy: Any = None  # an lrjax.augment.Policy, or None for no augmentation
  multiplicity: int = 1  # augmented copies of each example per micro-batch
  divergence_factor: float = 100.0
  max_members_per_chunk: int = 0  # 0 = the whole grid in one chunk
  vmap_width: int = 0  # members trained side by side inside the program; 0 = per backend
  eval_batch: int = 1000


@dataclasses.dataclass
class GridResult:
  """What a grid run returns.

  Attributes:
    members: the member table plus result columns (see DESIGN.md).
    history: one row per member and evaluation.
    params: final parameters, leaves with a leading member axis (N, ...).
    info: timings and sizes: ticks, examples per member, compile and train seconds.
  """

  members: pd.DataFrame
  history: pd.DataFrame
  params: Any
  info: dict


@dataclasses.dataclass(frozen=True)
class Plan:
  """Resolved sizes of a run."""

  micro_batch: int
  ticks_per_segment: int
  num_segments: int
  k_lcm: int

  @property
  def total_ticks(self) -> int:
    return self.ticks_per_segment * self.num_segments

  @property
  def examples_per_member(self) -> int:
    return self.total_ticks * self.micro_batch


def plan(table: pd.DataFrame, num_train: int, settings: TrainSettings) -> Plan:
  """Resolves micro-batch, segment length and number of segments.

  A segment is a whole number of every member's batches (a multiple of the lcm
  of the accumulation factors k), so evaluations see completed updates only. The
  budget ``epochs * num_train`` is rounded to whole segments (at least one).
  """
  b = settings.micro_batch or grid_lib.default_micro_batch(table)
  grid_lib.validate(table, b, num_train)
  if not (settings.epochs > 0 and math.isfinite(settings.epochs)):
    raise ConfigError(f"epochs: must be finite and > 0; got {settings.epochs}.")
  if settings.multiplicity < 1:
    raise ConfigError(f"multiplicity: must be an integer >= 1; got {settings.multiplicity}.")
  if settings.eval_every < 0:
    raise ConfigError(f"eval_every: examples between evaluations, >= 0 (0 = one epoch); "
                      f"got {settings.eval_every}.")
  ks = sorted({int(bs) // b for bs in table["batch_size"]})
  k_lcm = math.lcm(*ks)
  # An interval longer than the run means one evaluation, at the end: the run stays
  # its budget long (a segment of eval_every's length would train far past it).
  eval_every = min(settings.eval_every or num_train, settings.epochs * num_train)
  ticks = max(k_lcm, int(round(eval_every / b / k_lcm)) * k_lcm)
  budget_ticks = settings.epochs * num_train / b
  return Plan(b, ticks, max(1, int(round(budget_ticks / ticks))), k_lcm)


def _split_hparams(table: pd.DataFrame, settings: TrainSettings):
  """Sorts the inner grid columns into optimizer and schedule hyperparameters.

  Returns:
    ``(opt_cols, sched_cols, spec)`` with ``spec`` an ``optimizers.ScheduleSpec``.
  """
  opt_names = optimizers.optimizer_hparams(settings.optimizer)
  opt_cols, sched_cols = [], []
  for col in grid_lib.inner_columns(table):
    if col in ("lr", "batch_size", "schedule"):
      continue
    (opt_cols if col in opt_names else sched_cols).append(col)
  families = tuple(dict.fromkeys(table["schedule"])) if "schedule" in table else ()
  spec = optimizers.schedule_spec(settings.schedule, settings.schedule_kwargs,
                                  tuple(sched_cols), families)
  cycles = [f for f, kw in zip(spec.families, spec.kwargs) if kw.get("cycle_momentum")]
  if cycles and optimizers.momentum_name(settings.optimizer) is None:
    raise ConfigError(f"schedule_kwargs: cycle_momentum ({cycles}) needs an optimizer with "
                      f"momentum or b1; '{settings.optimizer}' has none. Use e.g. "
                      f"optimizer='momentum' or 'adam'.")
  unknown_opt = sorted(set(settings.optimizer_kwargs) - set(opt_names))
  if unknown_opt:
    raise ConfigError(f"optimizer_kwargs: {unknown_opt} are not hyperparameters of "
                      f"'{settings.optimizer}'; it takes {sorted(opt_names) or 'only lr'}.")
  return opt_cols, sched_cols, spec


@dataclasses.dataclass(frozen=True)
class Block:
  """A contiguous range of inner members that share an accumulation factor ``k``.

  ``k`` is static when every member in the block has the same batch size, so the
  optimizer update is a real branch taken every ``k`` ticks (and ``k == 1`` needs
  no accumulator at all); ``k=None`` marks the generic path for ragged grids,
  where each member's ``k`` is data and updates are masked.
  """

  start: int
  stop: int
  k: int | None


def blocks_for(k_slots: np.ndarray, pad_mask: np.ndarray) -> tuple[Block, ...]:
  """Splits the inner axis into runs of equal ``k`` when every group has the same runs.

  Example:
    >>> blocks_for(np.array([[1, 1, 4], [1, 1, 4]]), np.ones((2, 3), bool))
    (Block(start=0, stop=2, k=1), Block(start=2, stop=3, k=4))
  """
  if not pad_mask.all() or not (k_slots == k_slots[:1]).all():
    return (Block(0, k_slots.shape[1], None),)
  row, out, start = k_slots[0], [], 0
  for i in range(1, len(row) + 1):
    if i == len(row) or row[i] != row[start]:
      out.append(Block(start, i, int(row[start])))
      start = i
  return tuple(out)


def _padded_split(images: np.ndarray, labels: np.ndarray, batch: int):
  """Pads a split to a multiple of ``batch``; weights mark the real examples."""
  n = len(labels)
  batch = min(batch, n)
  pad = (-n) % batch
  weights = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
  return images, labels.astype(np.int32), weights
