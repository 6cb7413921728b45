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
import jax.numpy as jnp

from lrjax.schedules._util import (
    _BOUNDARY_RTOL, _TINY, _count, _pairs, as_list, check_value, f32, floor_div,
    half_cosine, half_cosine_pair, int_pow, nonnegative_steps, positive_steps, safe_pow)

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
  value = f32(value)
  return lambda count: jnp.zeros_like(f32(count)) + value


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
  init_value, gamma = f32(init_value), f32(gamma)
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
  init_value, gamma = f32(init_value), f32(gamma)
  milestones = [nonnegative_steps("multistep", "milestones", m) for m in as_list(milestones)]

  def schedule(count):
    t = _count(count)
    passed = sum((t >= m).astype(jnp.float32) for m in milestones) if milestones else 0.0
    return init_value * gamma ** passed
  return schedule


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
  init_value = f32(init_value)
  pairs = []
  for b, s in _pairs(boundaries_and_scales):
    check_value("piecewise_constant", "scale", s, lambda a: a >= 0, "non-negative")
    pairs.append((nonnegative_steps("piecewise_constant", "boundary", b), f32(s)))

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
  init_value = f32(init_value)
  check_value(fn, "decay_rate", decay_rate, lambda a: a > 0, "positive")
  decay_rate = f32(decay_rate)
  transition_steps = positive_steps(fn, "transition_steps", transition_steps)
  transition_begin = nonnegative_steps(fn, "transition_begin", transition_begin)
  end = None if end_value is None else f32(end_value)

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
  init_value = f32(init_value)
  check_value("inverse_time", "decay_rate", decay_rate, lambda a: a >= 0, "non-negative")
  decay_rate = f32(decay_rate)
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
  init_value, end_value, power = f32(init_value), f32(end_value), f32(power)
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
  init_value, end_value = f32(init_value), f32(end_value)
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
  init_value, alpha, exponent = f32(init_value), f32(alpha), f32(exponent)
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
  init_value, m_mul, alpha = f32(init_value), f32(m_mul), f32(alpha)
  check_value(fn, "t_mul", t_mul, lambda a: a > 0, "positive")
  t_mul = jnp.maximum(f32(t_mul), _TINY)
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
    # (t_mul < 1: cycles shrink to a finite total; past it the index saturates.)
    i0 = jnp.floor(jnp.log1p(jnp.maximum(t / period * (tm - 1.0), -0.9999999)) / jnp.log(tm))
    i0 = jnp.maximum(i0, 0.0)
    # One exact power; its neighbours by one multiplication (the log estimate of the
    # cycle index can be off by one at boundaries, so check and repair it).
    p0 = int_pow(tm, i0)
    start = lambda power: period * (power - 1.0) / (tm - 1.0)
    before, after = t_hi < start(p0), t_hi >= start(p0 * tm)
    i_geo = jnp.where(before, i0 - 1.0, jnp.where(after, i0 + 1.0, i0))
    p_geo = jnp.where(before, p0 / tm, jnp.where(after, p0 * tm, p0))
    below = i_geo < 0  # only for tracer-clamped, degenerate arguments
    i_geo, p_geo = jnp.where(below, 0.0, i_geo), jnp.where(below, 1.0, p_geo)
    i = jnp.where(geometric, i_geo, i_const)
    begin = jnp.where(geometric, start(p_geo), i * period)
    end = jnp.where(geometric, start(p_geo * tm), (i + 1.0) * period)
    # The cycle's remaining steps come from its end, not from length - done, which
    # would add the rounding of both boundaries to a value decaying to ~0.
    done, remaining = jnp.maximum(t - begin, 0.0), jnp.maximum(end - t, 0.0)
    c = half_cosine_pair(done, done + remaining)[0]
    return init_value * ((1.0 - alpha) * int_pow(m_mul, i) * c + alpha)
  return schedule

