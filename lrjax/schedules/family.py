"""Member-level schedule selection: a family's name (or a function) -> each member's schedule.

The registry of schedule factories (:data:`SCHEDULES`), and how the engine turns a
config's ``schedule``/``schedule_kwargs`` and a member's traced hyperparameters
(peak ``lr``, ``total_updates``, grid arguments, family index) into that member's
learning-rate and momentum schedules. Besides the registry's names, a schedule may
be any function ``(step, peak_lr, total_updates, **hparams) -> learning rate``
written with ``jnp`` (Keras's ``LearningRateScheduler``, torch's ``LambdaLR``), or
``"package.module:function"`` naming one. One selection rule serves both the public
:func:`schedule_family` and the engine's :class:`ScheduleSpec`: every family is
evaluated and the member's is picked with ``jnp.where`` (``lax.switch`` under
``vmap`` would run every branch anyway).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import optax

from lrjax import callables
from lrjax.errors import ConfigError
from lrjax.schedules._util import _count, check_choice, check_value, f32
from lrjax.schedules.catalog import (
    constant, cosine, cosine_restarts, exponential, inverse_time, linear, multistep,
    piecewise_constant, polynomial, step)
from lrjax.schedules.combinators import join, product, warmup
from lrjax.schedules.cyclical import cyclic, momentum_schedule, onecycle


def select(index, schedules: Sequence[Callable], default=None) -> Callable:
  """A schedule that is ``schedules[index]`` (``index`` may be traced per member).

  Every entry is evaluated and the member's value picked with ``jnp.where``; a
  ``None`` entry keeps ``default`` (a value), and an index outside the range keeps
  ``schedules[0]`` (or ``default`` when given).

  Example:
    >>> s = select(1, [lambda c: c * 0.0, lambda c: c + 1.0])
    >>> float(s(2))
    3.0
  """
  index = jnp.asarray(index)

  def selected(count):
    if default is None:
      out = f32(schedules[0](count))
      rest = enumerate(schedules[1:], start=1)
    else:
      out = jnp.asarray(default, jnp.float32)
      rest = enumerate(schedules)
    for i, schedule in rest:
      if schedule is not None:
        out = jnp.where(index == i, f32(schedule(count)), out)
    return out

  return selected


SCHEDULES = {
    "constant": constant,
    "step": step,
    "multistep": multistep,
    "piecewise_constant": piecewise_constant,
    "exponential": exponential,
    "inverse_time": inverse_time,
    "polynomial": polynomial,
    "linear": linear,
    "cosine": cosine,
    "cosine_restarts": cosine_restarts,
    "onecycle": onecycle,
    "cyclic": cyclic,
    "warmup": warmup,
    "join": join,
    "product": product,
}


def schedule_family(names: Sequence[str], index, factories_kwargs: Sequence[dict]):
  """One schedule choosing among schedule families by a (traced) integer ``index``.

  Every family is evaluated and the member's one is selected with ``jnp.where``
  (no ``lax.switch``, which under ``vmap`` would run every branch anyway), so one
  compiled program can hold members with different families: build it inside
  ``jax.vmap`` with each member's ``index`` and keyword values. An ``index``
  outside ``range(len(names))`` selects ``names[0]``.

  Args:
    names: family names, keys of :data:`SCHEDULES` (static).
    index: which family, an int or traced integer scalar (or member array).
    factories_kwargs: one dict of keyword arguments per name (values may be traced).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> import jax, jax.numpy as jnp
  >>> from lrjax import schedules
  >>> def member_lr(index, lr):
  ...   s = schedules.schedule_family(
  ...       ["cosine", "exponential"], index,
  ...       [dict(init_value=lr, decay_steps=100), dict(init_value=lr, decay_rate=0.9)])
  ...   return s(50)
  >>> lrs = jax.vmap(member_lr)(jnp.array([0, 1]), jnp.array([1.0, 1.0]))
  >>> [round(float(v), 6) for v in lrs]
  [0.5, 0.005154]

  References:
    Smith 2017 and Loshchilov & Hutter 2017 compare such families on one task.
  """
  names = list(names)
  if len(names) != len(factories_kwargs) or not names:
    raise ConfigError("schedule_family: need one kwargs dict per name (and at least one).")
  for name in names:
    check_choice("schedule_family", "schedule", name, tuple(SCHEDULES))
  check_value("schedule_family", "index", index,
              lambda a: (a >= 0) & (a < len(names)), f"in [0, {len(names)})")
  return select(index, [SCHEDULES[n](**kw) for n, kw in zip(names, factories_kwargs)])


# Schedule arguments that default to the member's whole training length (in updates).
_LENGTH_ARGS = ("decay_steps", "total_steps", "transition_steps")
# The argument that receives the member's (peak) learning rate, by schedule.
_PEAK_ARGS = ("value", "init_value", "max_value")
# Keyword handled here, not by the schedule: a gradual warmup wrapped around it, its
# length in updates or as a fraction of the member's updates (equal across batch sizes
# in epochs, as Goyal et al.'s 5-epoch warmup).
_WRAPPER_ARGS = ("warmup_steps", "warmup_fraction", "warmup_start_value")
# Keywords in fractions of the member's updates, converted here: name -> the argument.
_FRACTION_ARGS = {"milestone_fractions": ("multistep", "milestones")}
# Keywords of onecycle/cyclic that cycle the optimizer's momentum (torch cycle_momentum).
_MOMENTUM_ARGS = ("cycle_momentum", "base_momentum", "max_momentum")
CYCLIC_FAMILIES = ("onecycle", "cyclic")
SCHEDULE_ALIASES = {"warmup_cosine": "cosine"}


_CUSTOM = "a function (step, peak_lr, total_updates, **hparams) -> learning rate"


def _custom_schedule(schedule):
  """``(function, defaults, required, any_keyword)`` of a custom schedule, or None for a
  registry name; raises ConfigError for a bad one."""
  if isinstance(schedule, str) and not callables.is_import_path(schedule):
    return None
  fn = (callables.import_callable("schedule", schedule, _CUSTOM) if isinstance(schedule, str)
        else schedule)
  if not callable(fn):
    raise ConfigError(f"schedule: must be a schedule name, \"package.module:function\", or "
                      f"{_CUSTOM}; got {fn!r}.")
  params = callables.parameters("schedule", fn, schedule,
                                "(step, peak_lr, total_updates, **hparams)")
  kinds = [p.kind for p in params]
  positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
  if not (inspect.Parameter.VAR_POSITIONAL in kinds[:4]
          or (len(kinds) >= 3 and all(k in positional for k in kinds[:3]))):
    raise ConfigError(f"schedule: {callables.label(schedule)} must take (step, peak_lr, "
                      f"total_updates) as its first three positional arguments: {_CUSTOM}.")
  return (fn, *callables.keyword_hparams(params[3:]))


def check_schedule(schedule) -> None:
  """Raises ``ConfigError`` unless ``schedule`` is a registry name (or ``"plateau"``),
  an importable ``"package.module:function"``, or a callable taking ``(step,
  peak_lr, total_updates)``.

  Example:
    >>> check_schedule("cosine")
    >>> check_schedule(lambda step, peak_lr, total_updates, decay=0.5: peak_lr * decay)
    >>> check_schedule(3)
    Traceback (most recent call last):
    ...
    lrjax.errors.ConfigError: schedule: must be a schedule name, "package.module:function", \
or a function (step, peak_lr, total_updates, **hparams) -> learning rate; got 3.
  """
  if _custom_schedule(schedule) is None:
    _schedule_factory(schedule)


def _schedule_factory(name: str):
  if name == PLATEAU:
    name = "constant"
  base = SCHEDULE_ALIASES.get(name, name)
  registry = SCHEDULES
  if base not in registry or base in ("warmup", "join", "product"):
    usable = sorted(set(registry) - {"warmup", "join", "product"} | set(SCHEDULE_ALIASES)
                    | {PLATEAU})
    raise ConfigError(f"schedule: unknown schedule '{name}'. Use one of {usable}.")
  factory = registry[base]
  params = list(inspect.signature(factory).parameters)
  peak = next((p for p in params if p in _PEAK_ARGS), None)
  if peak is None:
    raise ConfigError(f"schedule: '{name}' has no peak-value argument; lrjax cannot put "
                      f"the grid's lr into it.")
  return factory, params, peak


def schedule_arguments(name) -> list[str]:
  """The arguments schedule ``name`` takes from ``schedule_kwargs`` or grid axes (its
  factory's, less the peak value, plus lrjax's warmup and momentum options).

  Example:
    >>> schedule_arguments("cosine")
    ['alpha', 'decay_steps', 'exponent', 'warmup_steps', 'warmup_fraction', 'warmup_start_value']
  """
  custom = _custom_schedule(name)
  if custom is not None:
    _, defaults, required, _ = custom
    return sorted(defaults) + list(required) + list(_WRAPPER_ARGS)
  _, params, peak = _schedule_factory(name)
  extra = set(_MOMENTUM_ARGS) if name in CYCLIC_FAMILIES else set()
  extra |= {k for k, (family, _) in _FRACTION_ARGS.items() if family == name}
  return sorted((set(params) - {peak}) | extra) + list(_WRAPPER_ARGS)


def check_schedule_kwargs(name, kwargs: Mapping[str, Any], grid_axes=(),
                          complete: bool = False) -> None:
  """Raises ``ConfigError`` unless ``kwargs`` are arguments of schedule ``name``.

  ``name`` may be a custom schedule (a function or ``"package.module:function"``);
  with ``complete``, its arguments without default must be among ``kwargs``.
  """
  custom = _custom_schedule(name)
  if custom is not None:
    _, defaults, required, any_keyword = custom
    takes = sorted(defaults) + list(required)
    unknown = [] if any_keyword else sorted(set(kwargs) - set(takes) - set(_WRAPPER_ARGS))
    if unknown:
      where = "grid" if set(unknown) & set(grid_axes) else "schedule_kwargs"
      raise ConfigError(
          f"{where}: {unknown} are not arguments of schedule '{callables.label(name)}' nor "
          f"of the optimizer; the schedule takes {takes + list(_WRAPPER_ARGS)}.")
    missing = [n for n in required if n not in kwargs]
    if complete and missing:
      raise ConfigError(
          f"schedule_kwargs: {missing} of schedule '{callables.label(name)}' have no default; "
          f"give them in schedule_kwargs (e.g. schedule_kwargs={{'{missing[0]}': 0.5}}) or "
          f"as grid axes (e.g. grid.{missing[0]}=(0.5, 0.9)).")
    return
  _, params, peak = _schedule_factory(name)
  extra = set(_WRAPPER_ARGS) | (set(_MOMENTUM_ARGS) if name in CYCLIC_FAMILIES else set())
  extra |= {k for k, (family, _) in _FRACTION_ARGS.items() if family == name}
  unknown = sorted(set(kwargs) - (set(params) - {peak}) - extra)
  if unknown:
    where = "grid" if set(unknown) & set(grid_axes) else "schedule_kwargs"
    raise ConfigError(
        f"{where}: {unknown} are not arguments of schedule '{name}' nor of the optimizer; "
        f"the schedule takes {sorted(set(params) - {peak}) + list(_WRAPPER_ARGS)} "
        f"(its peak value is the grid's lr).")


def _resolve(name: str, peak_lr, total_updates, kwargs):
  """Full factory kwargs of a member's schedule, plus its warmup and momentum options."""
  factory, params, peak = _schedule_factory(name)
  check_schedule_kwargs(name, kwargs)
  kwargs = dict(kwargs)
  if "warmup_fraction" in kwargs:
    if "warmup_steps" in kwargs:
      raise ConfigError("schedule_kwargs: give warmup_steps or warmup_fraction, not both.")
    kwargs["warmup_steps"] = kwargs.pop("warmup_fraction") * total_updates
  for key, (_, arg) in _FRACTION_ARGS.items():
    if key in kwargs:
      kwargs[arg] = tuple(f * total_updates for f in kwargs.pop(key))
  warmup = (kwargs.pop("warmup_steps", None), kwargs.pop("warmup_start_value", 0.0))
  momentum = {k: kwargs.pop(k) for k in _MOMENTUM_ARGS if k in kwargs}
  if warmup[0] is not None and momentum.get("cycle_momentum"):
    raise ConfigError(f"schedule_kwargs: '{name}' cannot combine warmup_steps with "
                      f"cycle_momentum; {name} has its own warm-up phase.")
  length = total_updates if warmup[0] is None else total_updates - warmup[0]
  for arg in _LENGTH_ARGS:
    if arg in params and arg not in kwargs:
      kwargs[arg] = length
  return factory, {peak: peak_lr, **kwargs}, warmup, momentum


def _make_custom(schedule, peak_lr, total_updates, kwargs) -> optax.Schedule:
  """A custom schedule as an Optax schedule, wrapped in its warmup if asked for."""
  fn = _custom_schedule(schedule)[0]
  check_schedule_kwargs(schedule, kwargs, complete=True)
  kwargs = dict(kwargs)
  if "warmup_fraction" in kwargs:
    if "warmup_steps" in kwargs:
      raise ConfigError("schedule_kwargs: give warmup_steps or warmup_fraction, not both.")
    kwargs["warmup_steps"] = kwargs.pop("warmup_fraction") * total_updates
  warmup_steps = kwargs.pop("warmup_steps", None)
  warmup_start = kwargs.pop("warmup_start_value", 0.0)
  peak = f32(peak_lr)
  length = f32(total_updates if warmup_steps is None else total_updates - warmup_steps)
  built = lambda count: f32(fn(_count(count), peak, length, **kwargs))
  if warmup_steps is None:
    return built
  return warmup(built, warmup_steps, start_value=warmup_start)


def make_schedule(name, peak_lr, total_updates, **kwargs) -> optax.Schedule:
  """Builds a member's schedule from its peak LR and training length (both may be traced).

  The grid's ``lr`` goes into the schedule's peak argument (``value``,
  ``init_value`` or ``max_value``); ``decay_steps``/``total_steps``/
  ``transition_steps`` default to the member's number of updates. A
  ``warmup_steps`` keyword wraps the schedule in ``lrjax.schedules.warmup``
  (the decay then spans the remaining updates).

  ``name`` may also be a custom schedule: a function ``(step, peak_lr,
  total_updates, **hparams) -> learning rate`` (or ``"package.module:function"``
  naming one), called with float32 ``step`` and ``total_updates``; ``kwargs`` are
  its ``hparams`` plus the warmup keywords. After a warmup it runs on the updates
  since the warmup's end, with ``total_updates`` the updates left.

  Example:
    >>> sched = make_schedule("cosine", 0.1, 100, warmup_steps=10)
    >>> [round(float(sched(c)), 4) for c in (0, 10, 100)]
    [0.0, 0.1, 0.0]
    >>> halving = lambda step, peak_lr, total_updates, every=10: peak_lr * 0.5 ** (step // every)
    >>> sched = make_schedule(halving, 0.8, 100, every=20)
    >>> [round(float(sched(c)), 4) for c in (0, 20, 45)]
    [0.8, 0.4, 0.2]
  """
  if _custom_schedule(name) is not None:
    return _make_custom(name, peak_lr, total_updates, kwargs)
  factory, full, (warmup_steps, warmup_start), _ = _resolve(name, peak_lr, total_updates,
                                                             kwargs)
  schedule = factory(**full)
  if warmup_steps is not None:
    schedule = warmup(schedule, warmup_steps, start_value=warmup_start)
  return schedule


def make_momentum_schedule(name: str, peak_lr, total_updates, **kwargs):
  """The member's cycled momentum (torch ``cycle_momentum``), or None when not asked for.

  ``onecycle``/``cyclic`` accept ``cycle_momentum=True`` (opt-in here; torch's
  default is on) with ``base_momentum``/``max_momentum`` (torch's defaults:
  0.85/0.95 and 0.8/0.9); momentum is high where the LR is low.

  Example:
    >>> m = make_momentum_schedule("onecycle", 0.1, 100, cycle_momentum=True)
    >>> [round(float(m(c)), 3) for c in (0, 29, 99)]
    [0.95, 0.85, 0.95]
  """
  if _custom_schedule(name) is not None:
    check_schedule_kwargs(name, kwargs)
    return None
  _, full, _, momentum = _resolve(name, peak_lr, total_updates, kwargs)
  if not momentum.get("cycle_momentum"):
    return None
  return momentum_schedule(name, full, momentum.get("base_momentum"),
                                     momentum.get("max_momentum"))

PLATEAU = "plateau"  # a constant LR, reduced on validation plateaus (torch ReduceLROnPlateau)
_PLATEAU_ARGS = ("factor", "patience", "threshold", "threshold_mode", "cooldown",
                 "min_scale", "mode", "eps")


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
  """How every member's learning rate evolves: one family, or a family per member.

  Attributes:
    families: schedule names (or custom schedules: functions, "package.module:function");
      more than one when ``schedule`` is a grid axis.
    kwargs: per family, its arguments (the peak is the member's ``lr``).
    grid_args: grid columns that are schedule arguments (one family only).
    plateau: ``plateau_step`` arguments when the ``"plateau"`` family is present:
      its LR is multiplied by a scale the engine reduces on validation-loss plateaus.
  """

  families: tuple[str, ...]
  kwargs: tuple[Mapping[str, Any], ...]
  grid_args: tuple[str, ...] = ()
  plateau: Mapping[str, Any] | None = None

  def schedule(self, hp: Mapping[str, Any]) -> optax.Schedule:
    """A member's schedule from its (traced) hyperparameters ``hp``."""
    built = []
    for name, kw in zip(self.families, self.kwargs):
      name = "constant" if name == PLATEAU else name
      kw = {**kw, **{c: hp[c] for c in self.grid_args}}
      built.append(make_schedule(name, hp["lr"], hp["total_updates"], **kw))
    if len(built) == 1:
      return built[0]
    return select(hp["schedule_index"], built)

  def momentum(self, hp: Mapping[str, Any], constant):
    """The member's cycled momentum schedule, or None if no family cycles it.

    Families that do not cycle keep ``constant`` (the optimizer's momentum/b1).
    """
    cycled = []
    for name, kw in zip(self.families, self.kwargs):
      m = None if name == PLATEAU else make_momentum_schedule(
          name, hp["lr"], hp["total_updates"], **kw)
      cycled.append(m)
    if all(m is None for m in cycled):
      return None
    if len(cycled) == 1:
      return cycled[0]
    return select(hp["schedule_index"], cycled, default=constant)

  def plateau_factor(self, hp: Mapping[str, Any]):
    """The member's reduction factor; 1.0 (never reduce) for non-plateau families."""
    factor = jnp.float32(self.plateau.get("factor", 0.1))
    if len(self.families) == 1:
      return factor
    return jnp.where(hp["schedule_index"] == self.families.index(PLATEAU), factor, 1.0)


def schedule_spec(schedule, schedule_kwargs: Mapping[str, Any],
                  grid_args: tuple[str, ...] = (),
                  families: tuple[str, ...] = ()) -> ScheduleSpec:
  """Validates schedule settings into a ``ScheduleSpec``; raises ``ConfigError``.

  With a ``schedule`` grid axis (``families`` given), ``schedule_kwargs`` maps each
  family name to its arguments, e.g. ``{"cosine": {"alpha": 0.01}, "plateau":
  {"patience": 2}}``.

  Example:
    >>> spec = schedule_spec("cosine", {"alpha": 0.1})
    >>> spec.families
    ('cosine',)
  """
  schedule_kwargs = dict(schedule_kwargs)
  if families and grid_args:
    raise ConfigError(f"grid: {list(grid_args)} cannot be axes together with grid.schedule; "
                      f"give per-family arguments in schedule_kwargs instead.")
  if families:
    unknown = sorted(set(schedule_kwargs) - set(families))
    if unknown:
      raise ConfigError(f"schedule_kwargs: with grid.schedule, give one dict per family "
                        f"({list(families)}); {unknown} are not in grid.schedule.")
    per_family = [dict(schedule_kwargs.get(f, {})) for f in families]
  else:
    families, per_family = (schedule,), [schedule_kwargs]
  plateau = None
  checked = []
  for name, kw in zip(families, per_family):
    if name == PLATEAU:
      bad = sorted(set(kw) - set(_PLATEAU_ARGS))
      if bad:
        raise ConfigError(f"schedule_kwargs: {bad} are not arguments of the plateau rule; "
                          f"it takes {list(_PLATEAU_ARGS)} (torch ReduceLROnPlateau's, "
                          f"patience counted in evaluations).")
      plateau = kw
      checked.append({})
    else:
      check_schedule_kwargs(name, {**kw, **dict.fromkeys(grid_args, 1.0)}, grid_axes=grid_args,
                            complete=True)
      checked.append(kw)
  return ScheduleSpec(tuple(families), tuple(checked), tuple(grid_args), plateau)
