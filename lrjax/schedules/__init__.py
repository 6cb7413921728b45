"""Array-valued, Optax-compatible learning-rate schedules.

``lrjax.schedules.<name>(...)`` returns an Optax schedule, a callable ``count ->
value`` (float32). Every numeric argument -- step counts included -- may be a
Python number, an array with a leading member axis, or a tracer, so one call
describes a whole grid and a schedule can be built per member inside
``jax.vmap``. All math is ``jnp`` (no Python branching on values): schedules work
under ``jit``, ``vmap`` and ``grad`` and inside ``optax.inject_hyperparams``.
Only structure is static: the number of milestones/boundaries/schedules, mode
strings and booleans (``staircase``, ``cycle``, ``three_phase``, ``anneal``).

Bad concrete arguments (negative steps, ``pct_start`` outside (0, 1), unknown
mode) raise ``lrjax.errors.ConfigError``, a ``ValueError``. Traced arguments cannot
be checked: step counts that must be positive are clamped to ``1e-12`` and
everything else is used as given.

Modules: ``catalog`` (step, exponential, polynomial, cosine, ... families),
``cyclical`` (1cycle, CLR and their momentum cycles), ``combinators`` (warmup, join,
product) and ``family`` (the registry :data:`SCHEDULES`, :func:`schedule_family`,
and the member-level selection the engine uses).
"""

from lrjax.schedules.catalog import (
    constant, cosine, cosine_restarts, exponential, inverse_time, linear, multistep,
    piecewise_constant, polynomial, step)
from lrjax.schedules.combinators import join, product, warmup
from lrjax.schedules.cyclical import (
    cyclic, cyclic_momentum, momentum_schedule, onecycle, onecycle_momentum)
from lrjax.schedules.family import (
    PLATEAU, SCHEDULES, ScheduleSpec, make_momentum_schedule, make_schedule,
    schedule_family, schedule_spec, select)

__all__ = [
    "PLATEAU", "SCHEDULES", "ScheduleSpec", "constant", "cosine", "cosine_restarts",
    "cyclic", "cyclic_momentum", "exponential", "inverse_time", "join", "linear",
    "make_momentum_schedule", "make_schedule", "momentum_schedule", "multistep", "onecycle",
    "onecycle_momentum", "piecewise_constant", "polynomial", "product", "schedule_family",
    "schedule_spec", "select", "step", "warmup",
]
