"""Grids of hyperparameters: axes -> a member table (one row per member).

The engine vmaps in two levels (docs/DESIGN.md, "Two vmap levels"): an outer axis over
*input groups* -- members sharing ``seed`` and every augmentation setting see the
same inputs -- and an inner axis over the optimizer hyperparameters. ``Layout``
records that split.

Each axis has a kind (:data:`AXES`, :func:`axis_kind`) that says where the engine
routes it: the core axes (``lr``, ``batch_size``, ``aug``, ``seed``), name axes
(``schedule``, ``optimizer``), engine settings the engine reads per member
(``batch_growth``, ``lr_scaling``, ``label_smoothing``), augmentation-op magnitudes
(``aug_<op>``), and every other axis, an argument of the optimizer or the schedule.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from lrjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class AxisKind:
  """One kind of grid axis and how the engine routes its values.

  Attributes:
    kind: ``"core"``, ``"name"``, ``"engine"``, ``"aug_op"`` or ``"hparam"``.
    input: whether it changes a member's inputs (data order, initial weights,
      augmentation): such axes define the input groups of the outer vmap.
    numeric: whether its values are numbers (``False``: names).
    reader: where its values go, for readers of this table.
  """

  kind: str
  input: bool
  numeric: bool
  reader: str


_CORE = AxisKind("core", False, True, "engine.run.build_run: the member's lr and k")
_CORE_INPUT = AxisKind("core", True, True, "engine.run.build_run: the input group")
_NAME = AxisKind("name", False, False, "engine.run.split_hparams: a schedule family or "
                 "the run's optimizer")
_ENGINE = AxisKind("engine", False, True, "engine.run.build_run and engine.plan, which "
                   "read the setting per member")

# Every named axis, by kind. ``aug`` is the augmentation strength; ``seed`` sets the
# initial weights, the data order and the augmentation randomness.
AXES: Mapping[str, AxisKind] = {
    "lr": _CORE, "batch_size": _CORE, "aug": _CORE_INPUT, "seed": _CORE_INPUT,
    "schedule": _NAME, "optimizer": _NAME,
    "batch_growth": _ENGINE, "lr_scaling": _ENGINE, "label_smoothing": _ENGINE,
}
# ``aug_<op>``: one augmentation op's magnitude (an ``augment.OPS`` name), replacing
# the policy's law for that op.
AUG_OP_PREFIX = "aug_"
AUG_OP = AxisKind("aug_op", True, True, "engine.run: augment.magnitudes override, per "
                  "input group")
# Any other axis: an argument of the optimizer or of the schedule.
HPARAM = AxisKind("hparam", False, True, "engine.run.split_hparams: an optimizer or "
                  "schedule argument")


def axis_kind(name: str) -> AxisKind:
  """How the engine routes the grid axis ``name`` (see :data:`AXES`).

  Example:
    >>> [axis_kind(n).kind for n in ("seed", "optimizer", "aug_flip_prob", "momentum")]
    ['core', 'name', 'aug_op', 'hparam']
  """
  if name in AXES:
    return AXES[name]
  if name.startswith(AUG_OP_PREFIX):
    return AUG_OP
  return HPARAM


def axes_of_kind(kind: str) -> tuple[str, ...]:
  """The named axes of one kind, in table order.

  Example:
    >>> axes_of_kind("engine")
    ('batch_growth', 'lr_scaling', 'label_smoothing')
  """
  return tuple(n for n, k in AXES.items() if k.kind == kind)


CORE_AXES = axes_of_kind("core")  # every member has these
NAME_AXES = axes_of_kind("name")  # values are names, not numbers


def log_space(start: float, stop: float, num: int) -> tuple[float, ...]:
  """``num`` log-spaced values from ``start`` to ``stop`` inclusive, as a tuple.

  Example:
    >>> log_space(1e-3, 1e-1, 3)
    (0.001, 0.01, 0.1)
  """
  if not (start > 0 and stop > 0 and num >= 1):
    raise ConfigError(f"log_space: need start > 0, stop > 0, num >= 1; got "
                      f"({start}, {stop}, {num}).")
  return tuple(float(f"{v:.6g}") for v in np.geomspace(start, stop, num))


def log2_space(start: int, stop: int) -> tuple[int, ...]:
  """Powers of two from ``start`` to ``stop`` inclusive (batch-size axes).

  Example:
    >>> log2_space(16, 128)
    (16, 32, 64, 128)
  """
  out, v = [], int(start)
  while v <= stop:
    out.append(v)
    v *= 2
  return tuple(out)


def is_input_axis(name: str) -> bool:
  """Whether an axis changes members' inputs (``seed``, ``aug`` and ``aug_*``).

  Example:
    >>> [is_input_axis(n) for n in ("seed", "aug_noise_std", "lr")]
    [True, True, False]
  """
  return axis_kind(name).input


def aug_op_columns(columns: Iterable[str]) -> dict[str, str]:
  """The ``aug_<op>`` columns among ``columns``: column -> op name.

  Example:
    >>> aug_op_columns(["lr", "aug", "aug_max_shift"])
    {'aug_max_shift': 'max_shift'}
  """
  return {c: c[len(AUG_OP_PREFIX):] for c in columns if axis_kind(c).kind == "aug_op"}


def _check_axis(name: str, values: Any) -> None:
  """Refuses an axis that is not a non-empty sequence (of numbers, for numeric axes)."""
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
    raise ConfigError(f"grid.{name}: must be a sequence (a tuple on the command line: "
                      f"--config.grid.{name}=\"(v1,v2)\"); got {values!r}.")
  if len(values) == 0:
    raise ConfigError(f"grid.{name}: empty axis. Give at least one value, "
                      f"or remove the axis to use its default.")
  if axis_kind(name).numeric:
    odd = []  # each distinct bad value once
    for v in values:
      if (isinstance(v, bool) or not isinstance(v, numbers.Real)) and v not in odd:
        odd.append(v)
    if odd:
      raise ConfigError(f"grid.{name}: values must be numbers; got {odd!r}. Write e.g. "
                        f"--config.grid.{name}=\"(0.01,0.1)\" (inf/nan are not allowed).")
  _check_distinct(name, values)


# Axes whose values the engine reads as whole numbers (compared exactly); the other
# numeric axes reach the program as float32 (compared after rounding to float32).
INTEGER_AXES = ("batch_size", "seed")


def _same_key(name: str, value: Any) -> Any:
  """What two values of axis ``name`` must share to be one value for the engine.

  Example:
    >>> _same_key("lr", 0.1) == _same_key("lr", 0.1000000001), _same_key("seed", 0)
    (True, 0)
  """
  if (name in INTEGER_AXES or not axis_kind(name).numeric or isinstance(value, bool)
      or not isinstance(value, numbers.Real)):
    key = value
  else:
    v = float(value)
    # Non-finite and float32-overflowing values are `validate`'s to refuse.
    key = float(np.float32(v)) if math.isfinite(v) and abs(v) <= FLOAT32_MAX else v
  try:
    hash(key)
  except TypeError:
    return repr(key)
  return key


def _plain(value: Any) -> Any:
  """A numpy scalar as the Python number it holds (for messages)."""
  return value.item() if isinstance(value, np.generic) else value


def _as_override(values: Sequence[Any]) -> str:
  """Values as a command-line tuple: ``(0.01,0.1)``, ``(0,)``."""
  items = [repr(_plain(v)) for v in values]
  return "(" + ",".join(items) + ("," if len(items) == 1 else "") + ")"


def _and(items: Sequence[str]) -> str:
  return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _times(n: int) -> str:
  return "twice" if n == 2 else f"{n} times"


def _check_distinct(name: str, values: Sequence[Any]) -> None:
  """Refuses an axis that gives one value (exactly, or after float32 rounding) twice.

  Two members with the same settings would train the same model twice and make
  their (lr, batch_size, ...) cell ambiguous in every table.
  """
  groups: dict[Any, list[Any]] = {}
  for i, v in enumerate(values):
    key = _same_key(name, v)
    if isinstance(key, float) and not math.isfinite(key):
      key = ("non-finite", i)  # `validate` refuses inf and nan, saying so
    groups.setdefault(key, []).append(_plain(v))
  repeated = [g for g in groups.values() if len(g) > 1]
  if not repeated:
    return
  why = []
  for g in repeated:
    distinct = list(dict.fromkeys(repr(v) for v in g))
    if len(distinct) == 1:
      why.append(f"the value {distinct[0]} appears {_times(len(g))}")
    else:
      why.append(f"the values {_and([repr(v) for v in g])} are equal in float32 (the "
                 f"engine computes in float32)")
  once = [g[0] for g in groups.values()]
  raise ConfigError(f"grid.{name}: {'; '.join(why)}; each axis value once, e.g. "
                    f"--config.grid.{name}=\"{_as_override(once)}\".")


def _product_rows(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
  """The rows of the axes' cartesian product, input axes varying slowest."""
  axes = dict(axes)
  for name, values in axes.items():
    _check_axis(name, values)
  axes.setdefault("seed", (0,))
  axes.setdefault("aug", (0.0,))
  # Input axes first (slowest), then the rest in the given order.
  names = sorted((n for n in axes if is_input_axis(n)), key=lambda n: (n != "seed", n))
  names += [n for n in axes if not is_input_axis(n)]
  return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def _member_rows(members: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """The rows of an explicit member list, with ``seed`` and ``aug`` defaulted."""
  rows = [dict(m) for m in members]
  if not rows:
    raise ConfigError("grid: the member list is empty.")
  for row in rows:
    row.setdefault("seed", 0)
    row.setdefault("aug", 0.0)
  return rows


def _check_distinct_members(rows: Sequence[Mapping[str, Any]]) -> None:
  """Refuses an explicit member list that gives one member (its settings exactly, or
  after float32 rounding) twice."""
  first: dict[tuple, int] = {}
  for i, row in enumerate(rows):
    key = tuple(sorted((str(k), _same_key(str(k), v)) for k, v in row.items()))
    if key not in first:
      first[key] = i
      continue
    j = first[key]
    other = rows[j]
    differ = [k for k in row if repr(_plain(row[k])) != repr(_plain(other[k]))]
    how = ("" if not differ else " in float32, which the engine computes in (" + "; ".join(
        f"{k}: {_plain(other[k])!r} and {_plain(row[k])!r}" for k in differ) + ")")
    shown = {k: _plain(v) for k, v in other.items()}
    raise ConfigError(f"grid: members {j} and {i} of the member list are the same{how}: "
                      f"{shown}; give each member once (drop one, or change a value).")


def make_grid(axes: Mapping[str, Sequence[Any]] | None = None,
              members: Iterable[Mapping[str, Any]] | None = None) -> pd.DataFrame:
  """Builds the member table from axes (cartesian product) or an explicit list.

  Input axes (``seed``, ``aug``, ``aug_*``) vary slowest, so members sharing
  inputs are contiguous. Every member has ``lr``, ``batch_size``, ``aug`` and
  ``seed`` (``aug`` defaults to 0 and ``seed`` to 0 when absent).

  Args:
    axes: ``{name: sequence of values}``; their cartesian product is the grid.
    members: alternatively, one mapping per member.

  Returns:
    A DataFrame with a ``member`` column (0..N-1) and one column per axis.

  Raises:
    ConfigError: a bad axis or member list, naming the axis and the fix; among them
      a value given twice on one axis, or one member given twice (values equal after
      float32 rounding count as one: the engine computes in float32).

  Example:
    >>> make_grid({"lr": (0.1, 1.0), "batch_size": (32,)})[["member", "lr"]].values.tolist()
    [[0.0, 0.1], [1.0, 1.0]]
  """
  if (axes is None) == (members is None):
    raise ConfigError("grid: give exactly one of `axes` (a product) or `members` (a list).")
  rows = _product_rows(axes) if axes is not None else _member_rows(members)
  table = pd.DataFrame(rows)
  missing = [a for a in ("lr", "batch_size") if a not in table.columns]
  if missing:
    raise ConfigError(f"grid: missing axis {missing}. Give e.g. "
                      f"--config.grid.lr=\"(0.01,0.1)\" --config.grid.batch_size=\"(32,)\".")
  if members is not None and table.isna().any().any():
    raise ConfigError("grid: explicit members must all give the same hyperparameters.")
  if members is not None:
    _check_distinct_members(rows)
  table.insert(0, "member", np.arange(len(table)))
  # Integer axes: refuse (rather than truncate or overflow) what is not a whole number.
  _check_integers(table, "batch_size", 1, 2**31 - 1, "a whole number of examples >= 1")
  _check_integers(table, "seed", 0, MAX_SEED, f"a whole number in [0, {MAX_SEED}]")
  table["batch_size"] = table["batch_size"].astype(np.int64)
  table["seed"] = table["seed"].astype(np.int64)
  return table


MAX_SEED = 2**31 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_integers(table: pd.DataFrame, name: str, low: int, high: int | None,
                    what: str) -> None:
  bad = []
  for v in table[name].tolist():
    ok = (not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)
          and float(v).is_integer() and v >= low and (high is None or v <= high))
    if not ok and v not in bad:
      bad.append(v)
  if bad:
    raise ConfigError(f"grid.{name}: each value must be {what}; got {bad!r}.")


def validate(table: pd.DataFrame, micro_batch: int, num_train: int) -> None:
  """Checks values: LRs finite and positive, batch sizes multiples of the micro-batch, ...

  Raises:
    ConfigError: naming the field and the fix.
  """
  lr = table["lr"].to_numpy(dtype=float)
  bad = lr[~(np.isfinite(lr) & (lr > 0))]
  if bad.size:
    raise ConfigError(f"grid.lr: learning rates must be finite and > 0; got "
                      f"{np.unique(bad).tolist()}. "
                      f"Use e.g. --config.grid.lr=\"(0.01,0.1,1.0)\".")
  bs = table["batch_size"].to_numpy()
  if (bs <= 0).any():
    raise ConfigError(f"grid.batch_size: must be positive; got {sorted(set(bs.tolist()))}.")
  if micro_batch <= 0:
    raise ConfigError(f"micro_batch: must be positive (0 means the gcd of grid.batch_size); "
                      f"got {micro_batch}.")
  off = sorted({int(b) for b in bs if b % micro_batch})
  if off:
    raise ConfigError(f"grid.batch_size: {off} not a multiple of micro_batch={micro_batch}. "
                      f"Set --config.micro_batch=0 (the gcd) or to a common divisor.")
  big = sorted({int(b) for b in bs if b > num_train})
  if big:
    raise ConfigError(f"grid.batch_size: {big} exceed the training split ({num_train} "
                      f"examples). Use batch sizes <= {num_train}.")
  aug = table["aug"].to_numpy(dtype=float)
  if not (np.isfinite(aug).all() and (aug >= 0).all()):
    raise ConfigError(f"grid.aug: augmentation strengths must be finite and >= 0; "
                      f"got {sorted(set(aug.tolist()))}.")
  for col in table.columns:
    if col == "member" or not axis_kind(col).numeric:
      continue
    vals = table[col]
    if vals.dtype.kind not in "iufb":
      raise ConfigError(f"grid.{col}: values must be numbers; got {vals.iloc[0]!r}.")
    if not np.isfinite(vals.to_numpy(dtype=float)).all():
      raise ConfigError(f"grid.{col}: values must be finite.")
    # The program computes in float32: a value past its range would become inf.
    big = sorted({float(v) for v in vals.to_numpy(dtype=float) if abs(v) > FLOAT32_MAX})
    if big:
      raise ConfigError(f"grid.{col}: {big} overflow float32 (|value| <= {FLOAT32_MAX:.3g}).")


def default_micro_batch(table: pd.DataFrame) -> int:
  """The gcd of the grid's batch sizes (the default micro-batch)."""
  return int(math.gcd(*table["batch_size"].astype(int).tolist()))


@dataclasses.dataclass(frozen=True)
class Layout:
  """How members map onto the engine's (group, inner) axes.

  Attributes:
    group_columns: the input axes that define groups.
    groups: a DataFrame, one row per input group (its input-axis values).
    member_slots: int array (N, 2): each member's (group, inner) position.
    inner_size: members per group (groups are padded to this size).
    pad_mask: bool array (G, I): True where a slot holds a real member.
  """

  group_columns: tuple[str, ...]
  groups: pd.DataFrame
  member_slots: np.ndarray
  inner_size: int
  pad_mask: np.ndarray

  @property
  def num_groups(self) -> int:
    return len(self.groups)


def layout(table: pd.DataFrame) -> Layout:
  """Splits members into input groups (outer vmap) and inner members.

  Groups smaller than the largest are padded by repeating their first member;
  padded slots are computed and discarded.

  Example:
    >>> t = make_grid({"lr": (0.1, 1.0), "batch_size": (32,), "seed": (0, 1)})
    >>> lay = layout(t)
    >>> (lay.num_groups, lay.inner_size)
    (2, 2)
  """
  cols = tuple(c for c in table.columns if c != "member" and is_input_axis(c))
  keys = [tuple(r) for r in table[list(cols)].itertuples(index=False)]
  group_ids = {key: g for g, key in enumerate(dict.fromkeys(keys))}  # first-appearance order
  slots = np.zeros((len(table), 2), dtype=np.int64)
  counts = [0] * len(group_ids)
  # Within a group, inner slots are sorted by batch size (stable), so members with
  # equal accumulation factors are contiguous (the engine's Blocks).
  for m in np.argsort(table["batch_size"].to_numpy(), kind="stable"):
    g = group_ids[keys[m]]
    slots[m] = (g, counts[g])
    counts[g] += 1
  inner = max(counts)
  mask = np.zeros((len(counts), inner), dtype=bool)
  mask[slots[:, 0], slots[:, 1]] = True
  groups = pd.DataFrame(list(group_ids.keys()), columns=list(cols))
  return Layout(cols, groups, slots, inner, mask)


def hparam_columns(table: pd.DataFrame) -> list[str]:
  """The columns routed to the optimizer's or the schedule's arguments.

  Example:
    >>> hparam_columns(make_grid({"lr": (0.1,), "batch_size": (8,), "momentum": (0.9,)}))
    ['momentum']
  """
  return [c for c in table.columns if c != "member" and axis_kind(c).kind == "hparam"]


def to_slots(values: np.ndarray, lay: Layout) -> np.ndarray:
  """Scatters per-member values (N, ...) into the (G, I, ...) slot array.

  Padded slots copy the group's first member.
  """
  out = np.empty((lay.num_groups, lay.inner_size) + values.shape[1:], dtype=values.dtype)
  first = {}
  for m, (g, i) in enumerate(lay.member_slots):
    out[g, i] = values[m]
    first.setdefault(g, m)
  for g, i in zip(*np.nonzero(~lay.pad_mask)):
    out[g, i] = values[first[g]]
  return out


def from_slots(array: np.ndarray, lay: Layout) -> np.ndarray:
  """Gathers (G, I, ...) slot values back into per-member order (N, ...)."""
  return array[lay.member_slots[:, 0], lay.member_slots[:, 1]]
