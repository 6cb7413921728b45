"""A run's sizes before it compiles: micro-batch, segments, blocks of equal batch size.

Host-side arithmetic only; ``lrjax.engine.run.build_run`` calls it while it
validates a grid, and the compiled program reads the result.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from lrjax import grid as grid_lib
from lrjax.engine.settings import TrainSettings
from lrjax.errors import ConfigError


# Ticks (micro-batches) are counted in int32 inside the program.
MAX_TICKS = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Plan:
  """Resolved sizes of a run."""

  micro_batch: int
  ticks_per_segment: int
  num_segments: int
  k_lcm: int
  growth_ticks: tuple[int, ...] = ()  # ticks where batch sizes grow (batch_growth_at)
  # ``budget="updates"``: every member's optimizer updates (0 with an example budget).
  update_budget: int = 0

  @property
  def total_ticks(self) -> int:
    return self.ticks_per_segment * self.num_segments

  @property
  def examples_per_member(self) -> int:
    return self.total_ticks * self.micro_batch

  @property
  def examples_per_segment(self) -> int:
    """Examples each member trains on between two evaluations.

    Example:
      >>> Plan(micro_batch=32, ticks_per_segment=10, num_segments=6, k_lcm=1).examples_per_segment
      320
    """
    return self.ticks_per_segment * self.micro_batch


def plan(table: pd.DataFrame, num_train: int, settings: TrainSettings) -> Plan:
  """Resolves micro-batch, segment length and number of segments.

  A segment is a whole number of every member's batches (a multiple of the lcm
  of the accumulation factors k), so evaluations see completed updates only.
  ``budget="examples"``: the budget ``epochs * num_train`` examples per member,
  rounded to whole segments (at least one). ``budget="updates"``: every member takes
  `update_budget` updates; the run lasts whole segments until the member that needs
  the most micro-batches is done, and a member that is done stops updating.
  """
  b = settings.micro_batch or grid_lib.default_micro_batch(table)
  grid_lib.validate(table, b, num_train)
  growth = batch_growth(table, settings)
  phases = len(settings.batch_growth_at)
  final = table["batch_size"].to_numpy() * growth ** phases
  if phases and (final > num_train).any():
    raise ConfigError(f"batch_growth: batch sizes grow to {sorted(set(final.tolist()))}, "
                      f"past the training split ({num_train} examples); use a smaller "
                      f"batch_growth, fewer batch_growth_at points or smaller batch sizes.")
  ks = sorted({int(bs) // b * int(g) ** p for bs, g in zip(table["batch_size"], growth)
               for p in range(phases + 1)})
  k_lcm = math.lcm(*ks)
  # An interval longer than the run means one evaluation, at the end: the run stays
  # its budget long (a segment of eval_every's length would train far past it).
  budget = settings.epochs * num_train
  if budget / b > MAX_TICKS:
    raise ConfigError(f"epochs: a budget of {settings.epochs} epochs ({budget:.3g} examples per "
                      f"member) is past the {MAX_TICKS} micro-batches of {b} a run can count; "
                      f"use fewer epochs.")
  eval_every = min(settings.eval_every or num_train, budget)
  ticks = max(k_lcm, int(round(eval_every / b / k_lcm)) * k_lcm)
  if settings.budget == "updates":
    return _updates_plan(table, num_train, settings, b, ticks, k_lcm)
  budget_ticks = settings.epochs * num_train / b
  segments = max(1, int(round(budget_ticks / ticks)))
  # Growth points on whole batches of every phase, so no batch straddles one.
  total = _checked_total(ticks * segments, b)
  growth_ticks = tuple(int(round(f * total / k_lcm)) * k_lcm
                       for f in settings.batch_growth_at)
  if len(set(growth_ticks) | {0, total}) != phases + 2:
    raise ConfigError(f"batch_growth_at: {settings.batch_growth_at} fall on the same or no "
                      f"whole batch of {k_lcm * b} examples in a run of {total * b}; train "
                      f"longer or spread the points.")
  return Plan(b, ticks, segments, k_lcm, growth_ticks)


def _checked_total(total: int, b: int) -> int:
  if total > MAX_TICKS:  # rounding up to whole segments can still pass the counter's range
    raise ConfigError(f"epochs: {total} micro-batches of {b} examples are past the {MAX_TICKS} "
                      f"a run can count; use fewer epochs.")
  return total


def update_budget(table: pd.DataFrame, num_train: int, settings: TrainSettings) -> int:
  """``budget="updates"``: the updates every member takes, those of the smallest
  batch size in ``epochs * num_train`` examples (at least 1).

  Example:
    >>> t = grid_lib.make_grid({"lr": (0.1,), "batch_size": (32, 64)})
    >>> update_budget(t, 1000, TrainSettings(epochs=2, budget="updates"))
    62
  """
  return max(1, int(round(settings.epochs * num_train / int(table["batch_size"].min()))))


def member_growth_updates(growth: np.ndarray, update_budget_: int, fractions, phases: int
                          ) -> np.ndarray:
  """``budget="updates"``: (members, phases) the update count at which each member's
  batch grows: ``fraction × update_budget``, rounded to a multiple of
  ``growth ** phases`` so that every phase starts on a whole batch of its own size.

  Example:
    >>> member_growth_updates(np.array([1, 2]), 100, (0.5, 0.75), 2).tolist()
    [[50, 75], [48, 76]]
  """
  unit = growth.astype(np.int64)[:, None] ** phases
  f = np.asarray(fractions, float)[None, :]
  return np.maximum(1, np.round(f * update_budget_ / unit).astype(np.int64)) * unit


def member_ticks(k: np.ndarray, growth: np.ndarray, points: np.ndarray,
                 update_budget_: int) -> tuple[np.ndarray, np.ndarray]:
  """Micro-batches each member needs for ``update_budget_`` updates with its batch
  growing at update counts ``points`` (members, phases): ``(ticks at each growth
  point (members, phases), total ticks (members,))``.

  Example:
    >>> at, total = member_ticks(np.array([1, 2]), np.array([2, 2]),
    ...                          np.array([[4], [4]]), 8)
    >>> at.tolist(), total.tolist()
    ([[4], [8]], [12, 24])
  """
  k = k.astype(np.int64)
  edges = np.concatenate([np.zeros((len(k), 1), np.int64), points,
                          np.full((len(k), 1), update_budget_, np.int64)], axis=1)
  per_phase = np.diff(edges, axis=1) * k[:, None] * growth.astype(np.int64)[:, None] ** \
      np.arange(edges.shape[1] - 1)[None, :]
  ticks = np.cumsum(per_phase, axis=1)
  return ticks[:, :-1], ticks[:, -1]


def _updates_plan(table, num_train, settings, b, ticks, k_lcm) -> Plan:
  """`plan` with ``budget="updates"``."""
  u = update_budget(table, num_train, settings)
  phases = len(settings.batch_growth_at)
  growth = batch_growth(table, settings)
  k = table["batch_size"].to_numpy() // b
  points = member_growth_updates(growth, u, settings.batch_growth_at, phases)
  if phases and not ((np.diff(points, axis=1) > 0).all() and (points[:, -1] < u).all()):
    raise ConfigError(f"batch_growth_at: {settings.batch_growth_at} fall on the same or no "
                      f"whole batch in a budget of {u} updates; train longer or spread the "
                      f"points.")
  _, needed = member_ticks(k, growth, points, u)
  segments = max(1, math.ceil(int(needed.max()) / ticks))
  _checked_total(ticks * segments, b)
  return Plan(b, ticks, segments, k_lcm, (), update_budget=u)


def batch_growth(table: pd.DataFrame, settings: TrainSettings) -> np.ndarray:
  """Each member's batch-size growth factor (1 for all without ``batch_growth_at``).

  Example:
    >>> t = grid_lib.make_grid({"lr": (0.1,), "batch_size": (32,), "batch_growth": (1, 2)})
    >>> batch_growth(t, TrainSettings(batch_growth_at=(0.5,))).tolist()
    [1, 2]
  """
  has_axis = "batch_growth" in table.columns
  if not settings.batch_growth_at:
    if has_axis:
      raise ConfigError("grid.batch_growth: needs batch_growth_at, the fractions of the "
                        "budget where batch sizes grow, e.g. --config.batch_growth_at="
                        "\"(0.5,0.75)\".")
    return np.ones(len(table), np.int64)
  if not has_axis:
    return np.full(len(table), settings.batch_growth, np.int64)
  values = table["batch_growth"].to_numpy()
  if not (np.equal(np.mod(values, 1), 0) & (values >= 1)).all():
    raise ConfigError(f"grid.batch_growth: integer factors >= 1 (1 = constant batch size); "
                      f"got {sorted(set(values.tolist()))}.")
  return values.astype(np.int64)


def total_updates(k: np.ndarray, growth: np.ndarray, the_plan: Plan) -> np.ndarray:
  """Each member's number of optimizer updates over the run, phase by phase (with
  ``budget="updates"``, the plan's `update_budget` for every member).

  Example:
    >>> p = Plan(32, 8, 2, 4, growth_ticks=(8,))
    >>> total_updates(np.array([1, 2]), np.array([2, 2]), p).tolist()
    [12, 6]
  """
  if the_plan.update_budget:
    return np.full(len(k), the_plan.update_budget, np.int64)
  edges = (0, *the_plan.growth_ticks, the_plan.total_ticks)
  return sum((edges[p + 1] - edges[p]) // (k * growth ** p) for p in range(len(edges) - 1))


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


def padded_split(images: np.ndarray, labels: np.ndarray, batch: int):
  """Pads a split to a multiple of ``batch``; weights mark the real examples."""
  n = len(labels)
  batch = min(batch, n)
  pad = (-n) % batch
  weights = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
  return images, labels.astype(np.int32), weights
