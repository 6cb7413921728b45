"""Schedule combinators: a warmup ramp, a join of schedules, a product of schedules."""

import jax.numpy as jnp

from lrjax.errors import ConfigError
from lrjax.schedules._util import _count, check_choice, check_value, f32, nonnegative_steps


WARMUP_KINDS = ("linear", "exponential")


def warmup(schedule, warmup_steps, start_value=0.0, kind="linear", shift=True):
  """Ramps from ``start_value`` into ``schedule`` over ``warmup_steps`` steps.

  With ``shift=True`` (Optax's ``warmup_*`` convention) the ramp ends at
  ``schedule(0)`` and ``schedule`` then runs on ``count - warmup_steps``; with
  ``shift=False`` the ramp ends at ``schedule(warmup_steps)`` and ``schedule``
  keeps the absolute count (Goyal et al.'s milestones in absolute epochs).
  ``kind="linear"`` interpolates linearly; ``"exponential"`` geometrically
  (``start_value`` must then be > 0). ``warmup_steps = 0`` means no warmup.
  ``optax.warmup_cosine_decay_schedule(i, p, w, d, e)`` equals
  ``warmup(cosine(p, d - w, e / p), w, i)``.

  Args:
    schedule: any schedule (callable ``count -> value``).
    warmup_steps: length of the ramp (>= 0).
    start_value: value at count 0.
    kind: ``"linear"`` or ``"exponential"`` (static).
    shift: run ``schedule`` on the count since the end of warmup (static).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.warmup(schedules.constant(1.0), warmup_steps=4)
  >>> [float(s(t)) for t in (0, 1, 4, 9)]
  [0.0, 0.25, 1.0, 1.0]

  References:
    Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour.
  """
  fn = "warmup"
  check_choice(fn, "kind", kind, WARMUP_KINDS)
  w = nonnegative_steps(fn, "warmup_steps", warmup_steps)
  if kind == "exponential":
    check_value(fn, "start_value", start_value, lambda a: a > 0,
                "positive for kind='exponential'")
  start = f32(start_value)

  def warmed(count):
    t = _count(count)
    target = f32(schedule(jnp.zeros_like(t) if shift else w + jnp.zeros_like(t)))
    frac = jnp.clip(t / jnp.maximum(w, 1e-12), 0.0, 1.0)
    if kind == "linear":
      ramp = start + (target - start) * frac
    else:
      safe = jnp.where(start > 0, start, 1.0)
      ramp = safe * (target / safe) ** frac
    after = f32(schedule(t - w if shift else t))
    return jnp.where(t < w, ramp, after)
  return warmed


def join(schedules, boundaries):
  """Runs ``schedules[i]`` from ``boundaries[i - 1]`` on, on the count since then.

  Optax ``join_schedules`` semantics; torch ``SequentialLR(schedulers,
  milestones)`` with the same boundaries (each torch scheduler restarts at its
  milestone, as here).

  Args:
    schedules: a sequence of schedules (static length n).
    boundaries: n - 1 step counts (each may be traced), in increasing order.

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.join([schedules.linear(0.0, 1.0, 5), schedules.cosine(1.0, 10)], [5])
  >>> [round(float(s(t)), 6) for t in (0, 5, 10, 15)]
  [0.0, 1.0, 0.5, 0.0]

  References:
    Optax ``join_schedules``; PyTorch ``SequentialLR``.
  """
  schedules = list(schedules)
  boundaries = [nonnegative_steps("join", "boundaries", b) for b in boundaries]
  if len(boundaries) != len(schedules) - 1:
    raise ConfigError(f"join: need len(schedules) - 1 = {len(schedules) - 1} boundaries; "
                     f"got {len(boundaries)}.")

  def joined(count):
    t = f32(count)
    out = f32(schedules[0](t))
    for boundary, schedule in zip(boundaries, schedules[1:]):
      out = jnp.where(t < boundary, out, f32(schedule(t - boundary)))
    return out
  return joined


def product(*schedules):
  """The product of several schedules (torch ``ChainedScheduler``, multiplicative).

  torch chains schedulers by letting each multiply the current LR; the result is
  the base LR times each scheduler's factor, i.e. the product of schedules of
  which one carries the base value and the others are unit-valued factors.

  Args:
    *schedules: schedules to multiply (at least one).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.product(schedules.exponential(1.0, 0.5),
  ...                       schedules.piecewise_constant(1.0, {2: 0.1}))
  >>> [round(float(s(t)), 6) for t in (0, 1, 2)]
  [1.0, 0.5, 0.025]

  References:
    PyTorch ``ChainedScheduler``.
  """
  if not schedules:
    raise ConfigError("product: needs at least one schedule.")

  def multiplied(count):
    out = f32(schedules[0](count))
    for schedule in schedules[1:]:
      out = out * f32(schedule(count))
    return out
  return multiplied
