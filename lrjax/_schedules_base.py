"""Decay schedules: array-valued, traceable re-implementations of Optax/PyTorch/Keras.

Private module; the public names are re-exported by :mod:`lrjax.schedules`.

Conventions shared by every factory here:

* Every numeric argument may be a Python number or a JAX/NumPy array (a leading
  member axis broadcasts), or a tracer inside ``jit``/``vmap``/``grad``.
* ``count`` may be an int or float, scalar or array; negative counts act as 0.
  The result is float32.
* Concrete arguments are validated (``ValueError``); traced ones are not. Under
  tracing, step-count arguments that must be positive are clamped to ``1e-12``
  so that no value becomes NaN or inf.
* The math is arranged for float32: near the end of a cosine or linear decay the
  remaining fraction is computed directly (``(T - t) / T``) and the cosine uses
  half-angle forms, so values that decay to tiny numbers keep their relative
  precision (parity with float64 references to rtol 1e-6).
"""
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

_TINY = 1e-12
# Relative slack for locating a restart boundary: float32 boundary arithmetic is
# off by a few ulps, and a count on a boundary must start the new cycle.
_BOUNDARY_RTOL = 5e-7


def _f32(x):
  return jnp.asarray(x, jnp.float32)


def _count(count):
  return jnp.maximum(_f32(count), 0.0)


def _is_concrete(x):
  return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def check_value(fn, name, value, ok, requirement):
  """Raises a ValueError if ``value`` is concrete and ``ok(value)`` is False anywhere.

  Tracers are skipped: validation is only possible on concrete values.
  """
  if value is None or not _is_concrete(value):
    return
  arr = np.asarray(value, dtype=np.float64)
  with np.errstate(invalid="ignore"):
    good = np.all(ok(arr))
  if not good:
    raise ValueError(f"{fn}: `{name}` must be {requirement}; got {value!r}.")


def check_choice(fn, name, value, choices):
  """Raises a ValueError unless the static option ``value`` is one of ``choices``."""
  if value not in choices:
    raise ValueError(f"{fn}: unknown {name} {value!r}; expected one of {tuple(choices)}.")


def positive_steps(fn, name, value):
  """Validates a concrete step count (> 0) and clamps a traced one to >= 1e-12."""
  check_value(fn, name, value, lambda a: a > 0, "positive")
  return jnp.maximum(_f32(value), _TINY)


def nonnegative_steps(fn, name, value):
  """Validates a concrete step count (>= 0) and clamps a traced one to >= 0."""
  check_value(fn, name, value, lambda a: a >= 0, "non-negative")
  return jnp.maximum(_f32(value), 0.0)


def floor_div(t, d):
  """``floor(t / d)`` as float, exact for integer-valued ``t`` and ``d``.

  Float32 ``t / d`` can round across an integer; the remainder check repairs it.
  """
  k = jnp.floor(t / d)
  k = jnp.where(t - k * d < 0, k - 1.0, k)
  return jnp.where(t - (k + 1.0) * d >= 0, k + 1.0, k)


def safe_pow(x, p):
  """``x ** p`` for ``x >= 0`` whose gradient stays finite at ``x = 0`` when ``p < 1``.

  Every family is evaluated in a schedule-family grid, so an inf*0 = NaN gradient in
  one member's unused family would poison the shared hyperparameters' gradients.
  """
  positive = x > 0
  return jnp.where(positive, jnp.where(positive, x, 1.0) ** p, jnp.where(p == 0, 1.0, 0.0))


def int_pow(base, k, bits=24):
  """``base ** k`` for integer-valued ``0 <= k < 2**bits`` by binary exponentiation.

  Exact where the product fits float32 (1.5 ** 10 is), unlike ``exp(k log base)``;
  restart boundaries of geometric cycles depend on it.
  """
  k = jnp.clip(k, 0.0, 2.0 ** bits - 1).astype(jnp.int32)
  out = jnp.ones_like(base * k)
  power = base
  for bit in range(bits):
    out = jnp.where((k >> bit) & 1, out * power, out)
    power = jnp.minimum(power * power, 1e30)  # never inf: keeps gradients finite
  return out


def half_cosine_pair(done, total):
  """``(c, 1 - c)`` with ``c = (1 + cos(pi * done / total)) / 2``, both float32-accurate.

  ``done`` is clipped to ``[0, total]``. The direct form cancels (``1 + cos(x)``
  for x near pi, ``1 - c`` for c near 1), losing the relative precision of values
  that decay to ~0; the half-angle forms ``cos^2(pi q / 2)`` and ``sin^2(pi q / 2)``
  -- evaluated through ``r = (total - done) / total`` past the midpoint -- keep it.
  """
  total = jnp.maximum(total, _TINY)
  q = jnp.clip(done / total, 0.0, 1.0)
  r = jnp.clip((total - done) / total, 0.0, 1.0)
  half_pi = np.float32(np.pi / 2)
  first = q <= 0.5
  angle = half_pi * jnp.where(first, q, r)
  cos2, sin2 = jnp.cos(angle) ** 2, jnp.sin(angle) ** 2
  return jnp.where(first, cos2, sin2), jnp.where(first, sin2, cos2)


def half_cosine(done, total):
  """``(1 + cos(pi * done / total)) / 2``, float32-stable (see ``half_cosine_pair``)."""
  return half_cosine_pair(done, total)[0]


def as_list(values):
  """A static-length list of (possibly traced) scalars; an array splits on its last axis."""
  if values is None:
    return []
  if isinstance(values, (jax.Array, np.ndarray)):
    return [values[..., i] for i in range(values.shape[-1])]
  return list(values)


def constant(value):
  """A schedule that always returns ``value`` (Optax ``constant_schedule``).

  Args:
    value: the constant (scalar or per-member array).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> print(float(schedules.constant(0.1)(1000)))
  0.10000000149011612

  References:
    Optax ``optax.constant_schedule``.
  """
  value = _f32(value)
  return lambda count: jnp.zeros_like(_f32(count)) + value


def step(init_value, step_size, gamma=0.1):
  """Multiplies by ``gamma`` every ``step_size`` steps (torch ``StepLR``).

  ``value(t) = init_value * gamma ** floor(t / step_size)``.

  Args:
    init_value: value at count 0.
    step_size: steps between decays (> 0).
    gamma: multiplicative factor per decay.

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.step(1.0, step_size=10, gamma=0.5)
  >>> [float(s(t)) for t in (0, 9, 10, 25)]
  [1.0, 1.0, 0.5, 0.25]

  References:
    PyTorch ``torch.optim.lr_scheduler.StepLR``.
  """
  init_value, gamma = _f32(init_value), _f32(gamma)
  step_size = positive_steps("step", "step_size", step_size)

  def schedule(count):
    return init_value * gamma ** floor_div(_count(count), step_size)
  return schedule


def multistep(init_value, milestones, gamma=0.1):
  """Multiplies by ``gamma`` at each milestone (torch ``MultiStepLR``).

  ``value(t) = init_value * gamma ** #{i : milestones[i] <= t}``; a repeated
  milestone decays twice, as in torch.

  Args:
    init_value: value at count 0.
    milestones: a sequence of step counts (each may be traced), or an array whose
      last axis lists them. Only their number is static; they need not be sorted.
    gamma: multiplicative factor per milestone.

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.multistep(1.0, milestones=(30, 80), gamma=0.1)
  >>> [round(float(s(t)), 6) for t in (29, 30, 80)]
  [1.0, 0.1, 0.01]

  References:
    PyTorch ``torch.optim.lr_scheduler.MultiStepLR``; Goyal et al. 2017.
  """
  init_value, gamma = _f32(init_value), _f32(gamma)
  milestones = [nonnegative_steps("multistep", "milestones", m) for m in as_list(milestones)]

  def schedule(count):
    t = _count(count)
    passed = sum((t >= m).astype(jnp.float32) for m in milestones) if milestones else 0.0
    return init_value * gamma ** passed
  return schedule


def _pairs(boundaries_and_scales):
  if boundaries_and_scales is None:
    return []
  if isinstance(boundaries_and_scales, Mapping):
    return list(boundaries_and_scales.items())
  return [tuple(p) for p in boundaries_and_scales]


def piecewise_constant(init_value, boundaries_and_scales=None):
  """Scales the value by ``scale`` from each ``boundary`` on (Optax semantics).

  ``value(t) = init_value * prod(scale_i for boundary_i <= t)``. Keras
  ``PiecewiseConstantDecay(boundaries, values)`` switches one step later (when
  ``step > boundary``): it equals ``piecewise_constant(values[0],
  {b + 1: values[i + 1] / values[i]})`` on integer steps.

  Args:
    init_value: value before the first boundary.
    boundaries_and_scales: ``{boundary: scale}`` with Python keys, or a sequence
      of ``(boundary, scale)`` pairs whose entries may be traced. Scales must be
      non-negative.

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.piecewise_constant(1.0, {100: 0.1, 200: 0.5})
  >>> [round(float(s(t)), 6) for t in (99, 100, 200)]
  [1.0, 0.1, 0.05]

  References:
    Optax ``piecewise_constant_schedule``; Keras ``PiecewiseConstantDecay``.
  """
  init_value = _f32(init_value)
  pairs = []
  for b, s in _pairs(boundaries_and_scales):
    check_value("piecewise_constant", "scale", s, lambda a: a >= 0, "non-negative")
    pairs.append((nonnegative_steps("piecewise_constant", "boundary", b), _f32(s)))

  def schedule(count):
    t = _count(count)
    value = init_value + jnp.zeros_like(t)
    for b, s in pairs:  # the product commutes, so traced boundaries need no sorting
      value = value * jnp.where(t >= b, s, 1.0)
    return value
  return schedule


def exponential(init_value, decay_rate, transition_steps=1, staircase=False,
                transition_begin=0, end_value=None):
  """Exponential decay (Optax ``exponential_decay``, Keras ``ExponentialDecay``).

  ``value(t) = init_value * decay_rate ** (max(t - transition_begin, 0) /
  transition_steps)``, the exponent floored if ``staircase``; then clipped from
  below by ``end_value`` when ``decay_rate < 1`` (from above otherwise). torch
  ``ExponentialLR(gamma)`` is ``exponential(lr, gamma)``.

  Args:
    init_value: value at count 0.
    decay_rate: factor per ``transition_steps`` (> 0).
    transition_steps: steps per factor of ``decay_rate`` (> 0).
    staircase: floor the exponent (static).
    transition_begin: steps held at ``init_value`` first (>= 0).
    end_value: optional bound (``None`` is static: no bound).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.exponential(1.0, decay_rate=0.5, transition_steps=10)
  >>> [round(float(s(t)), 6) for t in (0, 10, 15)]
  [1.0, 0.5, 0.353553]

  References:
    Optax ``exponential_decay``; Keras ``ExponentialDecay``; torch ``ExponentialLR``.
  """
  fn = "exponential"
  init_value = _f32(init_value)
  check_value(fn, "decay_rate", decay_rate, lambda a: a > 0, "positive")
  decay_rate = _f32(decay_rate)
  transition_steps = positive_steps(fn, "transition_steps", transition_steps)
  transition_begin = nonnegative_steps(fn, "transition_begin", transition_begin)
  end = None if end_value is None else _f32(end_value)

  def schedule(count):
    elapsed = jnp.maximum(_count(count) - transition_begin, 0.0)
    p = floor_div(elapsed, transition_steps) if staircase else elapsed / transition_steps
    value = init_value * decay_rate ** p
    if end is not None:
      value = jnp.where(decay_rate < 1.0, jnp.maximum(value, end), jnp.minimum(value, end))
    return value
  return schedule


def inverse_time(init_value, decay_rate, decay_steps, staircase=False):
  """Inverse-time decay (Keras ``InverseTimeDecay``).

  ``value(t) = init_value / (1 + decay_rate * t / decay_steps)``, the ratio
  ``t / decay_steps`` floored if ``staircase``.

  Args:
    init_value: value at count 0.
    decay_rate: rate (>= 0).
    decay_steps: steps per unit of the ratio (> 0).
    staircase: floor the ratio (static).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.inverse_time(1.0, decay_rate=1.0, decay_steps=10)
  >>> [round(float(s(t)), 6) for t in (0, 10, 30)]
  [1.0, 0.5, 0.25]

  References:
    Keras ``keras.optimizers.schedules.InverseTimeDecay``.
  """
  init_value = _f32(init_value)
  check_value("inverse_time", "decay_rate", decay_rate, lambda a: a >= 0, "non-negative")
  decay_rate = _f32(decay_rate)
  decay_steps = positive_steps("inverse_time", "decay_steps", decay_steps)

  def schedule(count):
    t = _count(count)
    p = floor_div(t, decay_steps) if staircase else t / decay_steps
    return init_value / (1.0 + decay_rate * p)
  return schedule


def polynomial(init_value, end_value, power, decay_steps, cycle=False):
  """Polynomial decay (Keras ``PolynomialDecay``; torch ``PolynomialLR``).

  ``value(t) = (init_value - end_value) * (1 - t / D) ** power + end_value`` with
  ``D = decay_steps`` and ``t`` clipped to ``D``; with ``cycle`` the decay
  restarts: ``D = decay_steps * max(ceil(t / decay_steps), 1)``, as Keras does.
  torch ``PolynomialLR(total_iters, power)`` is ``polynomial(lr, 0.0, power,
  total_iters)``.

  Args:
    init_value: value at count 0.
    end_value: value at ``decay_steps``.
    power: exponent of the decay.
    decay_steps: length of the decay (> 0).
    cycle: restart the decay with a longer horizon past the end (static).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.polynomial(1.0, 0.0, power=2.0, decay_steps=10)
  >>> [round(float(s(t)), 6) for t in (0, 5, 10, 20)]
  [1.0, 0.25, 0.0, 0.0]

  References:
    Keras ``PolynomialDecay``; PyTorch ``PolynomialLR``.
  """
  init_value, end_value, power = _f32(init_value), _f32(end_value), _f32(power)
  decay_steps = positive_steps("polynomial", "decay_steps", decay_steps)

  def schedule(count):
    t = _count(count)
    if cycle:
      k = floor_div(t, decay_steps)
      k = jnp.where(t - k * decay_steps > 0, k + 1.0, k)  # ceil
      horizon = decay_steps * jnp.maximum(k, 1.0)
    else:
      horizon = decay_steps
      t = jnp.minimum(t, decay_steps)
    remaining = (horizon - t) / horizon  # not 1 - t/D: keeps precision near the end
    return (init_value - end_value) * safe_pow(remaining, power) + end_value
  return schedule


def linear(init_value, end_value, transition_steps):
  """Linear interpolation, then held (Optax ``linear_schedule``; torch ``LinearLR``).

  ``value(t) = init_value + (end_value - init_value) * min(t, T) / T``. torch
  ``LinearLR(start_factor, end_factor, total_iters)`` on base LR ``lr`` is
  ``linear(lr * start_factor, lr * end_factor, total_iters)``.

  Args:
    init_value: value at count 0.
    end_value: value from ``transition_steps`` on.
    transition_steps: length of the ramp (> 0).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.linear(0.0, 1.0, transition_steps=4)
  >>> [float(s(t)) for t in (0, 1, 4, 9)]
  [0.0, 0.25, 1.0, 1.0]

  References:
    Optax ``linear_schedule``; PyTorch ``LinearLR``.
  """
  init_value, end_value = _f32(init_value), _f32(end_value)
  transition_steps = positive_steps("linear", "transition_steps", transition_steps)

  def schedule(count):
    t = jnp.minimum(_count(count), transition_steps)
    done = t / transition_steps
    remaining = (transition_steps - t) / transition_steps
    # Both weights are computed directly (not 1 - the other), so a value close to a
    # tiny init or end value keeps its relative precision.
    return init_value * remaining + end_value * done
  return schedule


def cosine(init_value, decay_steps, alpha=0.0, exponent=1.0):
  """Cosine decay (Optax ``cosine_decay_schedule``; torch ``CosineAnnealingLR``).

  ``value(t) = init_value * ((1 - alpha) * c(t) ** exponent + alpha)`` with
  ``c(t) = (1 + cos(pi * min(t, T) / T)) / 2``, held at ``alpha * init_value``
  after ``T = decay_steps``. torch ``CosineAnnealingLR(T_max, eta_min)`` is
  ``cosine(lr, T_max, alpha=eta_min / lr)`` for ``t <= T_max`` (torch keeps
  following the cosine back up afterwards; Optax and lrjax hold).

  Args:
    init_value: value at count 0.
    decay_steps: length of the decay (> 0).
    alpha: final value as a fraction of ``init_value``.
    exponent: power applied to the cosine factor.

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.cosine(1.0, decay_steps=100, alpha=0.1)
  >>> [round(float(s(t)), 6) for t in (0, 50, 100, 200)]
  [1.0, 0.55, 0.1, 0.1]

  References:
    Loshchilov & Hutter 2017, SGDR: Stochastic Gradient Descent with Warm Restarts.
  """
  init_value, alpha, exponent = _f32(init_value), _f32(alpha), _f32(exponent)
  decay_steps = positive_steps("cosine", "decay_steps", decay_steps)

  def schedule(count):
    c = half_cosine(jnp.minimum(_count(count), decay_steps), decay_steps)
    return init_value * ((1.0 - alpha) * safe_pow(c, exponent) + alpha)
  return schedule


def cosine_restarts(init_value, first_decay_steps, t_mul=1.0, m_mul=1.0, alpha=0.0):
  """Cosine decay with warm restarts (Keras ``CosineDecayRestarts``; torch SGDR).

  Cycle ``i`` lasts ``first_decay_steps * t_mul ** i`` steps and peaks at
  ``init_value * m_mul ** i``; within it ``value = init_value * ((1 - alpha) *
  m_mul ** i * c + alpha)`` with ``c`` the half-cosine of the cycle fraction.
  torch ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)`` is
  ``cosine_restarts(lr, T_0, T_mult, 1.0, eta_min / lr)``.

  Args:
    init_value: value at count 0.
    first_decay_steps: length of the first cycle (> 0).
    t_mul: growth factor of the cycle length (> 0).
    m_mul: factor on the peak per restart.
    alpha: floor as a fraction of ``init_value`` (not scaled by ``m_mul``, as Keras).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.cosine_restarts(1.0, first_decay_steps=10, t_mul=2.0, m_mul=0.5)
  >>> [round(float(s(t)), 6) for t in (0, 5, 10, 20, 30)]
  [1.0, 0.5, 0.5, 0.25, 0.25]

  References:
    Loshchilov & Hutter 2017, SGDR: Stochastic Gradient Descent with Warm Restarts.
  """
  fn = "cosine_restarts"
  init_value, m_mul, alpha = _f32(init_value), _f32(m_mul), _f32(alpha)
  check_value(fn, "t_mul", t_mul, lambda a: a > 0, "positive")
  t_mul = jnp.maximum(_f32(t_mul), _TINY)
  period = positive_steps(fn, "first_decay_steps", first_decay_steps)

  def schedule(count):
    t = _count(count)
    t_hi = t * (1.0 + _BOUNDARY_RTOL)  # a count on a boundary starts the new cycle
    # Constant cycle length.
    i_const = floor_div(t_hi, period)
    # Geometric cycle lengths: cycle i starts at period * (t_mul**i - 1) / (t_mul - 1).
    # The double-where keeps the unselected branch (and its gradient) finite.
    geometric = t_mul != 1.0
    tm = jnp.where(geometric, t_mul, 2.0)
    start = lambda i: period * (int_pow(tm, i) - 1.0) / (tm - 1.0)
    i0 = jnp.floor(jnp.log1p(t / period * (tm - 1.0)) / jnp.log(tm))
    i0 = jnp.maximum(i0, 0.0)
    i_geo = jnp.where(t_hi < start(i0), i0 - 1.0, jnp.where(t_hi >= start(i0 + 1.0), i0 + 1.0, i0))
    i_geo = jnp.maximum(i_geo, 0.0)
    i = jnp.where(geometric, i_geo, i_const)
    begin = jnp.where(geometric, start(i), i * period)
    end = jnp.where(geometric, start(i + 1.0), (i + 1.0) * period)
    # The cycle's remaining steps come from its end, not from length - done, which
    # would add the rounding of both boundaries to a value decaying to ~0.
    done, remaining = jnp.maximum(t - begin, 0.0), jnp.maximum(end - t, 0.0)
    c = half_cosine_pair(done, done + remaining)[0]
    return init_value * ((1.0 - alpha) * int_pow(m_mul, i) * c + alpha)
  return schedule

