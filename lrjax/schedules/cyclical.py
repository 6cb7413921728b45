"""Cyclical schedules (1cycle, CLR) and their inverse momentum cycles.

Private module; the public names are re-exported by :mod:`lrjax.schedules`.
Conventions (traced arguments, float32, validation) as in ``_schedules_base``.
"""
import jax.numpy as jnp

from lrjax.schedules._util import (
    _TINY, _count, f32, check_choice, check_value, floor_div, half_cosine_pair,
    positive_steps)

ANNEALS = ("cos", "linear")
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def _safe_len(x):
  return jnp.where(jnp.abs(x) < _TINY, 1.0, x)


def _anneal(start, end, done, length, anneal):
  """torch's ``_annealing_cos``/``_annealing_linear`` from ``start`` to ``end``.

  Written as ``start * w + end * (1 - w)`` with both weights computed directly,
  so a phase starting or ending at a tiny value keeps float32 relative precision.
  """
  length = _safe_len(length)
  if anneal == "cos":
    w_start, w_end = half_cosine_pair(done, length)
  else:
    w_start, w_end = (length - done) / length, done / length
  return start * w_start + end * w_end


def _onecycle_phases(fn, total_steps, pct_start, three_phase):
  check_value(fn, "pct_start", pct_start, lambda a: (a > 0) & (a < 1), "in (0, 1)")
  total = positive_steps(fn, "total_steps", total_steps)
  pct_start = f32(pct_start)
  end1 = pct_start * total - 1.0
  if three_phase:
    return total, [(0.0, end1), (end1, 2.0 * pct_start * total - 2.0), (None, total - 1.0)]
  return total, [(0.0, end1), (end1, total - 1.0)]


def _onecycle_eval(count, total, phases, values, anneal):
  """Evaluates torch OneCycleLR's phase table at ``count`` (held after the last step)."""
  # torch errors past total_steps (and extrapolates at exactly total_steps); hold instead.
  t = jnp.minimum(_count(count), total - 1.0)
  out = None
  for i in reversed(range(len(phases))):
    begin, end = phases[i]
    begin = phases[i - 1][1] if begin is None else begin
    value = _anneal(values[i][0], values[i][1], t - begin, end - begin, anneal)
    # torch takes the first phase with t <= end_step, else the last one.
    out = value if out is None else jnp.where(t <= end, value, out)
  return out


def onecycle(max_value, total_steps, pct_start=0.3, div_factor=25.0,
             final_div_factor=1e4, anneal="cos", three_phase=False):
  """The 1cycle policy (torch ``OneCycleLR``).

  Rises from ``max_value / div_factor`` to ``max_value`` over the first
  ``pct_start`` of ``total_steps``, then anneals to ``max_value / div_factor /
  final_div_factor`` (with ``three_phase``: back down to the start value, then to
  the minimum). Phase ends and annealing formulas are torch's. torch raises past
  ``total_steps``; lrjax holds the final value from count ``total_steps - 1`` on.

  Args:
    max_value: peak value.
    total_steps: length of the cycle (> 0).
    pct_start: fraction of steps spent rising, in (0, 1).
    div_factor: ``initial = max_value / div_factor``.
    final_div_factor: ``minimum = initial / final_div_factor``.
    anneal: ``"cos"`` or ``"linear"`` (static).
    three_phase: use torch's three-phase variant (static).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.onecycle(1.0, total_steps=100, pct_start=0.3)
  >>> [round(float(s(t)), 6) for t in (0, 29, 99)]
  [0.04, 1.0, 4e-06]

  References:
    Smith & Topin 2019, Super-Convergence: Very Fast Training of Neural Networks
    Using Large Learning Rates.
  """
  fn = "onecycle"
  check_choice(fn, "anneal", anneal, ANNEALS)
  check_value(fn, "div_factor", div_factor, lambda a: a > 0, "positive")
  check_value(fn, "final_div_factor", final_div_factor, lambda a: a > 0, "positive")
  total, phases = _onecycle_phases(fn, total_steps, pct_start, three_phase)
  peak = f32(max_value)
  initial = peak / f32(div_factor)
  minimum = initial / f32(final_div_factor)
  if three_phase:
    values = [(initial, peak), (peak, initial), (initial, minimum)]
  else:
    values = [(initial, peak), (peak, minimum)]
  return lambda count: _onecycle_eval(count, total, phases, values, anneal)


def onecycle_momentum(total_steps, pct_start=0.3, base_momentum=0.85, max_momentum=0.95,
                      anneal="cos", three_phase=False):
  """Momentum cycled inversely to :func:`onecycle` (torch ``cycle_momentum``).

  Starts at ``max_momentum``, falls to ``base_momentum`` while the LR rises, then
  returns to ``max_momentum`` (three-phase: and stays there). Feed it as the
  momentum (or Adam ``b1``) of ``optax.inject_hyperparams``.

  Args:
    total_steps: as in :func:`onecycle`.
    pct_start: as in :func:`onecycle`.
    base_momentum: momentum at the LR peak.
    max_momentum: momentum at the start and end.
    anneal: ``"cos"`` or ``"linear"`` (static).
    three_phase: as in :func:`onecycle` (static).

  Returns:
    A schedule ``count -> momentum`` (float32).

  >>> from lrjax import schedules
  >>> m = schedules.onecycle_momentum(total_steps=100)
  >>> [round(float(m(t)), 6) for t in (0, 29, 99)]
  [0.95, 0.85, 0.95]

  References:
    Smith 2018, A disciplined approach to neural network hyper-parameters: Part 1.
  """
  fn = "onecycle_momentum"
  check_choice(fn, "anneal", anneal, ANNEALS)
  total, phases = _onecycle_phases(fn, total_steps, pct_start, three_phase)
  lo, hi = f32(base_momentum), f32(max_momentum)
  values = [(hi, lo), (lo, hi), (hi, hi)] if three_phase else [(hi, lo), (lo, hi)]
  return lambda count: _onecycle_eval(count, total, phases, values, anneal)


def _cyclic_shape(fn, step_size_up, step_size_down, mode, gamma):
  """Returns ``count -> (rise fraction in [0, 1], amplitude scale)`` of torch CyclicLR."""
  check_choice(fn, "mode", mode, CYCLIC_MODES)
  up = positive_steps(fn, "step_size_up", step_size_up)
  down = up if step_size_down is None else positive_steps(fn, "step_size_down", step_size_down)
  check_value(fn, "gamma", gamma, lambda a: a > 0, "positive")
  gamma = f32(gamma)
  period = up + down

  def shape(count):
    t = _count(count)
    cycle = floor_div(t, period)  # torch's `cycle` minus one
    pos = t - cycle * period  # exact position in the cycle (torch: x * period)
    frac = jnp.where(pos <= up, pos / up, (period - pos) / down)
    if mode == "triangular":
      scale = 1.0
    elif mode == "triangular2":
      scale = jnp.ldexp(jnp.float32(1.0), -cycle.astype(jnp.int32))  # exact 1 / 2**cycle
    else:  # exp_range: gamma ** iterations; log1p keeps gammas near 1 exact
      scale = jnp.exp(t * jnp.log1p(gamma - 1.0))
    return frac, scale
  return shape


def cyclic(base_value, max_value, step_size_up=2000, step_size_down=None,
           mode="triangular", gamma=1.0):
  """Cyclical learning rate (torch ``CyclicLR``).

  Rises linearly from ``base_value`` to ``max_value`` over ``step_size_up`` steps
  and falls back over ``step_size_down`` (default: the same). ``mode``:
  ``"triangular"`` (constant amplitude), ``"triangular2"`` (amplitude halves each
  cycle), ``"exp_range"`` (amplitude times ``gamma ** count``).

  Args:
    base_value: lower bound.
    max_value: upper bound (reached only if the amplitude scale is 1).
    step_size_up: steps rising (> 0).
    step_size_down: steps falling (> 0), or ``None`` for ``step_size_up`` (static).
    mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"`` (static).
    gamma: decay base of ``"exp_range"`` (> 0).

  Returns:
    A schedule ``count -> value`` (float32).

  >>> from lrjax import schedules
  >>> s = schedules.cyclic(0.1, 1.0, step_size_up=10, mode="triangular2")
  >>> [round(float(s(t)), 6) for t in (0, 5, 10, 20, 30)]
  [0.1, 0.55, 1.0, 0.1, 0.55]

  References:
    Smith 2017, Cyclical Learning Rates for Training Neural Networks.
  """
  shape = _cyclic_shape("cyclic", step_size_up, step_size_down, mode, gamma)
  base, top = f32(base_value), f32(max_value)

  def schedule(count):
    frac, scale = shape(count)
    return base + (top - base) * frac * scale
  return schedule


def cyclic_momentum(step_size_up=2000, step_size_down=None, base_momentum=0.8,
                    max_momentum=0.9, mode="triangular", gamma=1.0):
  """Momentum cycled inversely to :func:`cyclic` (torch ``CyclicLR`` momentum).

  ``momentum = max_momentum - (max_momentum - base_momentum) * f * scale`` where
  ``f * scale`` is the same rise fraction and amplitude scale as the LR's.

  Args:
    step_size_up: as in :func:`cyclic`.
    step_size_down: as in :func:`cyclic` (static ``None`` or a value).
    base_momentum: momentum at the LR peak.
    max_momentum: momentum at the LR base.
    mode: as in :func:`cyclic` (static).
    gamma: as in :func:`cyclic`.

  Returns:
    A schedule ``count -> momentum`` (float32).

  >>> from lrjax import schedules
  >>> m = schedules.cyclic_momentum(step_size_up=10)
  >>> [round(float(m(t)), 6) for t in (0, 5, 10)]
  [0.9, 0.85, 0.8]

  References:
    Smith 2017, Cyclical Learning Rates for Training Neural Networks.
  """
  shape = _cyclic_shape("cyclic_momentum", step_size_up, step_size_down, mode, gamma)
  lo, hi = f32(base_momentum), f32(max_momentum)

  def schedule(count):
    frac, scale = shape(count)
    return hi - (hi - lo) * frac * scale
  return schedule


_MOMENTUM = {
    "onecycle": (onecycle_momentum, ("total_steps", "pct_start", "anneal", "three_phase"),
                 (0.85, 0.95)),
    "cyclic": (cyclic_momentum, ("step_size_up", "step_size_down", "mode", "gamma"),
               (0.8, 0.9)),
}


def momentum_schedule(name, lr_kwargs, base_momentum=None, max_momentum=None):
  """The momentum cycle matching an LR schedule built with ``lr_kwargs``.

  Takes the same keyword arguments as the LR factory (LR-only ones such as
  ``max_value`` are ignored), so a grid member's schedule config yields both.
  Defaults are torch's: 0.85/0.95 for ``"onecycle"``, 0.8/0.9 for ``"cyclic"``.

  Args:
    name: ``"onecycle"`` or ``"cyclic"``.
    lr_kwargs: keyword arguments of ``schedules.<name>``.
    base_momentum: momentum at the LR peak (``None``: torch default).
    max_momentum: momentum at the LR minimum (``None``: torch default).

  Returns:
    A schedule ``count -> momentum`` (float32).

  >>> from lrjax import schedules
  >>> m = schedules.momentum_schedule("onecycle", dict(max_value=0.1, total_steps=100))
  >>> round(float(m(29)), 6)
  0.85

  References:
    Smith 2018, A disciplined approach to neural network hyper-parameters: Part 1.
  """
  check_choice("momentum_schedule", "name", name, tuple(_MOMENTUM))
  factory, keys, (lo, hi) = _MOMENTUM[name]
  kwargs = {k: v for k, v in lr_kwargs.items() if k in keys}
  return factory(base_momentum=lo if base_momentum is None else base_momentum,
                 max_momentum=hi if max_momentum is None else max_momentum, **kwargs)

