"""Shared helpers of the schedule modules: validation, float32-careful math.

Private to ``lrjax.schedules``, except its public names ``f32``, ``check_value``
and ``check_choice``, which ``lrjax.transforms`` shares. Validation runs only on
concrete values (tracers are skipped); the math keeps float32 relative precision
and finite gradients everywhere, since a schedule-family grid evaluates (and
differentiates) every family.
"""
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lrjax.errors import ConfigError

_TINY = 1e-12
# Relative slack for locating a restart boundary: float32 boundary arithmetic is
# off by a few ulps, and a count on a boundary must start the new cycle.
_BOUNDARY_RTOL = 5e-7


def f32(x):
  """``x`` as a float32 array: the one precision schedules and transforms compute in."""
  return jnp.asarray(x, jnp.float32)


def _count(count):
  return jnp.maximum(f32(count), 0.0)


def _is_concrete(x):
  return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def check_value(fn, name, value, ok, requirement):
  """Raises a ConfigError (a ValueError) if concrete ``value`` fails ``ok`` anywhere.

  Tracers are skipped: validation is only possible on concrete values.
  """
  if value is None or not _is_concrete(value):
    return
  arr = np.asarray(value, dtype=np.float64)
  with np.errstate(invalid="ignore"):
    good = np.all(ok(arr))
  if not good:
    raise ConfigError(f"{fn}: `{name}` must be {requirement}; got {value!r}.")


def check_choice(fn, name, value, choices):
  """Raises a ConfigError (a ValueError) unless static ``value`` is in ``choices``."""
  if value not in choices:
    raise ConfigError(f"{fn}: unknown {name} {value!r}; expected one of {tuple(choices)}.")


def positive_steps(fn, name, value):
  """Validates a concrete step count (> 0) and clamps a traced one to >= 1e-12."""
  check_value(fn, name, value, lambda a: a > 0, "positive")
  return jnp.maximum(f32(value), _TINY)


def nonnegative_steps(fn, name, value):
  """Validates a concrete step count (>= 0) and clamps a traced one to >= 0."""
  check_value(fn, name, value, lambda a: a >= 0, "non-negative")
  return jnp.maximum(f32(value), 0.0)


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


def int_pow(base, k, bits=16):
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


def _pairs(boundaries_and_scales):
  if boundaries_and_scales is None:
    return []
  if isinstance(boundaries_and_scales, Mapping):
    return list(boundaries_and_scales.items())
  return [tuple(p) for p in boundaries_and_scales]
