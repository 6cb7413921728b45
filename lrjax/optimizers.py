"""Optimizers and learning-rate schedules by name, with array-valued hyperparameters.

The engine builds each member's optimizer *inside* ``jax.vmap`` from that
member's hyperparameters, which are traced scalars there; so every numeric
hyperparameter (learning rate, momentum, b1, b2, eps, weight decay) can be a
grid axis. The optimizers themselves are Optax's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax.numpy as jnp
import optax

from lrjax.errors import ConfigError

# name -> (factory(learning_rate, **hparams), default hparams). The defaults are
# Optax's, except momentum 0.9 for the momentum methods.
OPTIMIZERS: dict[str, tuple[Callable[..., optax.GradientTransformation], dict[str, Any]]] = {
    "sgd": (lambda learning_rate: optax.sgd(learning_rate), {}),
    "momentum": (lambda learning_rate, momentum: optax.sgd(learning_rate, momentum=momentum),
                 {"momentum": 0.9}),
    "nesterov": (lambda learning_rate, momentum: optax.sgd(
        learning_rate, momentum=momentum, nesterov=True), {"momentum": 0.9}),
    "adam": (optax.adam, {"b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    "adamw": (optax.adamw, {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4}),
    "nadam": (optax.nadam, {"b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    "rmsprop": (optax.rmsprop, {"decay": 0.9, "eps": 1e-8, "momentum": 0.0}),
}


def optimizer_hparams(name: str) -> dict[str, Any]:
  """The numeric hyperparameters of an optimizer (besides the LR) and their defaults.

  Example:
    >>> optimizer_hparams("adam")
    {'b1': 0.9, 'b2': 0.999, 'eps': 1e-08}
  """
  check_optimizer(name)
  return dict(OPTIMIZERS[name][1])


def check_optimizer(name: str) -> None:
  if name not in OPTIMIZERS:
    raise ConfigError(f"optimizer: unknown optimizer '{name}'. Use one of "
                      f"{sorted(OPTIMIZERS)}.")


def make_optimizer(name: str, learning_rate, **hparams) -> optax.GradientTransformation:
  """Builds an Optax optimizer by name; hyperparameters may be traced scalars.

  Args:
    name: one of ``OPTIMIZERS``.
    learning_rate: a scalar or an Optax schedule ``count -> lr``.
    **hparams: overrides of ``optimizer_hparams(name)``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> @jax.vmap
    ... def one_step(lr, momentum):
    ...   opt = make_optimizer("momentum", lr, momentum=momentum)
    ...   params = jnp.ones(3)
    ...   updates, _ = opt.update(params, opt.init(params), params)
    ...   return updates
    >>> one_step(jnp.array([0.1, 1.0]), jnp.array([0.9, 0.0])).shape
    (2, 3)
  """
  check_optimizer(name)
  factory, defaults = OPTIMIZERS[name]
  unknown = sorted(set(hparams) - set(defaults))
  if unknown:
    raise ConfigError(f"optimizer_kwargs/grid: {unknown} are not hyperparameters of "
                      f"'{name}'; it takes {sorted(defaults) or 'only the learning rate'}.")
  hparams = {**defaults, **hparams}
  if any(callable(v) for v in hparams.values()):  # e.g. a cycled momentum: count -> value
    return optax.inject_hyperparams(factory)(learning_rate, **hparams)
  return factory(learning_rate, **hparams)


def momentum_name(optimizer: str) -> str | None:
  """The hyperparameter torch's ``cycle_momentum`` cycles: momentum, or Adam's b1.

  Example:
    >>> momentum_name("adam"), momentum_name("nesterov"), momentum_name("sgd")
    ('b1', 'momentum', None)
  """
  names = optimizer_hparams(optimizer)
  return "b1" if "b1" in names else ("momentum" if "momentum" in names else None)


# Schedule arguments that default to the member's whole training length (in updates).
_LENGTH_ARGS = ("decay_steps", "total_steps", "transition_steps")
# The argument that receives the member's (peak) learning rate, by schedule.
_PEAK_ARGS = ("value", "init_value", "max_value")
# Keyword handled here, not by the schedule: a gradual warmup wrapped around it.
_WRAPPER_ARGS = ("warmup_steps", "warmup_start_value")
# Keywords of onecycle/cyclic that cycle the optimizer's momentum (torch cycle_momentum).
_MOMENTUM_ARGS = ("cycle_momentum", "base_momentum", "max_momentum")
CYCLIC_FAMILIES = ("onecycle", "cyclic")
SCHEDULE_ALIASES = {"warmup_cosine": "cosine"}


def _schedule_factory(name: str):
  if name == PLATEAU:
    name = "constant"
  import inspect  # noqa: PLC0415

  from lrjax import schedules  # noqa: PLC0415 - avoid an import cycle at package init

  base = SCHEDULE_ALIASES.get(name, name)
  registry = getattr(schedules, "SCHEDULES", {})
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


def check_schedule_kwargs(name: str, kwargs: Mapping[str, Any], grid_axes=()) -> None:
  """Raises ``ConfigError`` unless ``kwargs`` are arguments of schedule ``name``."""
  _, params, peak = _schedule_factory(name)
  extra = set(_WRAPPER_ARGS) | (set(_MOMENTUM_ARGS) if name in CYCLIC_FAMILIES else set())
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


def make_schedule(name: str, peak_lr, total_updates, **kwargs) -> optax.Schedule:
  """Builds a member's schedule from its peak LR and training length (both may be traced).

  The grid's ``lr`` goes into the schedule's peak argument (``value``,
  ``init_value`` or ``max_value``); ``decay_steps``/``total_steps``/
  ``transition_steps`` default to the member's number of updates. A
  ``warmup_steps`` keyword wraps the schedule in ``lrjax.schedules.warmup``
  (the decay then spans the remaining updates).

  Example:
    >>> sched = make_schedule("cosine", 0.1, 100, warmup_steps=10)
    >>> [round(float(sched(c)), 4) for c in (0, 10, 100)]
    [0.0, 0.1, 0.0]
  """
  from lrjax import schedules  # noqa: PLC0415

  factory, full, (warmup_steps, warmup_start), _ = _resolve(name, peak_lr, total_updates,
                                                             kwargs)
  schedule = factory(**full)
  if warmup_steps is not None:
    schedule = schedules.warmup(schedule, warmup_steps, start_value=warmup_start)
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
  from lrjax import schedules  # noqa: PLC0415

  _, full, _, momentum = _resolve(name, peak_lr, total_updates, kwargs)
  if not momentum.get("cycle_momentum"):
    return None
  return schedules.momentum_schedule(name, full, momentum.get("base_momentum"),
                                     momentum.get("max_momentum"))

PLATEAU = "plateau"  # a constant LR, reduced on validation plateaus (torch ReduceLROnPlateau)
_PLATEAU_ARGS = ("factor", "patience", "threshold", "threshold_mode", "cooldown",
                 "min_scale", "mode", "eps")


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
  """How every member's learning rate evolves: one family, or a family per member.

  Attributes:
    families: schedule names; more than one when ``schedule`` is a grid axis.
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
    index = hp["schedule_index"]

    def selected(count):  # evaluate every family, pick with where (no switch under vmap)
      out = built[0](count)
      for i, sched in enumerate(built[1:], start=1):
        out = jnp.where(index == i, sched(count), out)
      return out

    return selected

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
    index = hp["schedule_index"]

    def selected(count):
      out = jnp.asarray(constant, jnp.float32)
      for i, m in enumerate(cycled):
        if m is not None:
          out = jnp.where(index == i, m(count), out)
      return out

    return selected

  def plateau_factor(self, hp: Mapping[str, Any]):
    """The member's reduction factor; 1.0 (never reduce) for non-plateau families."""
    factor = jnp.float32(self.plateau.get("factor", 0.1))
    if len(self.families) == 1:
      return factor
    return jnp.where(hp["schedule_index"] == self.families.index(PLATEAU), factor, 1.0)


def schedule_spec(schedule: str, schedule_kwargs: Mapping[str, Any],
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
      check_schedule_kwargs(name, {**kw, **dict.fromkeys(grid_args, 1.0)}, grid_axes=grid_args)
      checked.append(kw)
  return ScheduleSpec(tuple(families), tuple(checked), tuple(grid_args), plateau)
