"""Optax transforms and pure helpers whose hyperparameters may be per-member arrays.

* :func:`reduce_on_plateau` / :func:`plateau_step`: torch ``ReduceLROnPlateau`` as
  an ``optax.GradientTransformationExtraArgs`` with per-member, vmappable state.
* :func:`scale_lr_by_batch_size` / :func:`scale_by_batch_size`: the linear (Goyal
  et al.), square-root or no scaling of the LR with the batch size
  (:func:`batch_size_scaled`, the rule itself, also serves the engine).
* :func:`sqrt_scaling_adam_hparams` / :func:`sqrt_scaling_rmsprop_hparams`: the full
  square-root rule of Malladi et al. 2022 for adaptive optimizers.

Momentum cycling (torch's ``cycle_momentum`` for 1cycle and CLR) is a schedule:
``lrjax.schedules.momentum_schedule`` fed to ``optax.inject_hyperparams`` as the
``momentum`` (SGD) or ``b1`` (Adam) argument.

Every numeric argument may be a traced scalar (one member's value inside
``jax.vmap``); string options are static. Concrete bad values raise ``ValueError``.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrjax.schedules._util import check_choice, check_value, f32

PLATEAU_MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")
BATCH_SIZE_RULES = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


class ReduceLROnPlateauState(NamedTuple):
  """State of :func:`reduce_on_plateau` (torch ``ReduceLROnPlateau``'s attributes).

  Attributes:
    scale: current LR multiplier, float32 (torch: ``lr / initial lr``).
    best_value: best monitored value so far (torch ``best``), float32.
    plateau_count: evaluations without improvement (torch ``num_bad_epochs``), int32.
    cooldown_count: evaluations of cooldown left (torch ``cooldown_counter``), int32.
    count: evaluations seen (torch ``last_epoch``), int32.
  """
  scale: jax.Array
  best_value: jax.Array
  plateau_count: jax.Array
  cooldown_count: jax.Array
  count: jax.Array


def plateau_init(mode="min"):
  """The initial :class:`ReduceLROnPlateauState`: scale 1, worst possible best value.

  >>> plateau_init("max").best_value
  Array(-inf, dtype=float32)
  """
  check_choice("plateau_init", "mode", mode, PLATEAU_MODES)
  zero = jnp.zeros((), jnp.int32)
  worst = jnp.float32(jnp.inf if mode == "min" else -jnp.inf)
  return ReduceLROnPlateauState(scale=jnp.ones((), jnp.float32), best_value=worst,
                                plateau_count=zero, cooldown_count=zero, count=zero)


def _check_plateau(fn, factor, patience, threshold, threshold_mode, cooldown, min_scale,
                   mode):
  check_choice(fn, "mode", mode, PLATEAU_MODES)
  check_choice(fn, "threshold_mode", threshold_mode, THRESHOLD_MODES)
  check_value(fn, "factor", factor, lambda a: (a > 0) & (a <= 1), "in (0, 1]")
  check_value(fn, "patience", patience, lambda a: a >= 0, "non-negative")
  check_value(fn, "threshold", threshold, lambda a: a >= 0, "non-negative")
  check_value(fn, "cooldown", cooldown, lambda a: a >= 0, "non-negative")
  check_value(fn, "min_scale", min_scale, lambda a: a >= 0, "non-negative")


def plateau_step(state, value, factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_scale=0.0, mode="min", eps=1e-8):
  """One evaluation of torch ``ReduceLROnPlateau.step(value)``, as a pure function.

  The keyword arguments are torch's, one for one (``min_lr`` as ``min_scale``), so a
  config written against torch's documentation carries over.

  Copied semantics: ``value`` improves on ``best`` if ``value < best * (1 -
  threshold)`` (``mode="min"``, ``threshold_mode="rel"``), ``value < best -
  threshold`` (min, abs), ``value > best * (1 + threshold)`` (max, rel) or ``value >
  best + threshold`` (max, abs); a NaN never improves. Each non-improving
  evaluation adds one to ``plateau_count``; during cooldown the count is reset and
  the cooldown counts down. When ``plateau_count > patience`` the scale becomes
  ``max(scale * factor, min_scale)`` -- unless that changes it by no more than
  ``eps`` -- then cooldown restarts and the count resets. torch's ``min_lr`` and
  ``eps`` are LR values: here ``min_scale = min_lr / lr0`` and ``eps = torch_eps /
  lr0``. Unlike torch, ``factor = 1`` is allowed (it disables reductions, useful
  for grid members of other schedule families). The keyword arguments are torch's,
  one by one, so a torch config maps onto them directly (and each may be its own
  grid axis); grouping them would break that.

  Args:
    state: a :class:`ReduceLROnPlateauState`.
    value: the monitored value (e.g. the validation loss), scalar.
    factor: multiplier on a reduction, in (0, 1].
    patience: non-improving evaluations tolerated before a reduction.
    threshold: the margin that counts as an improvement.
    threshold_mode: ``"rel"`` or ``"abs"`` (static).
    cooldown: evaluations after a reduction during which plateaus are not counted.
    min_scale: lower bound of the scale.
    mode: ``"min"`` or ``"max"`` (static).
    eps: smallest change of scale that is applied.

  Returns:
    The new state.

  >>> state = plateau_init()
  >>> for loss in [1.0, 0.9, 0.95, 0.93, 0.91]:
  ...   state = plateau_step(state, loss, factor=0.5, patience=2)
  >>> float(state.scale), int(state.plateau_count)
  (0.5, 0)

  References:
    PyTorch ``torch.optim.lr_scheduler.ReduceLROnPlateau``.
  """
  _check_plateau("plateau_step", factor, patience, threshold, threshold_mode, cooldown,
                 min_scale, mode)
  value, best = f32(value), state.best_value
  threshold = f32(threshold)
  if mode == "min":
    bound = best * (1.0 - threshold) if threshold_mode == "rel" else best - threshold
    better = value < bound
  else:
    bound = best * (1.0 + threshold) if threshold_mode == "rel" else best + threshold
    better = value > bound
  best = jnp.where(better, value, best)
  bad = jnp.where(better, 0, state.plateau_count + 1)
  in_cooldown = state.cooldown_count > 0
  cooldown_count = jnp.where(in_cooldown, state.cooldown_count - 1, state.cooldown_count)
  bad = jnp.where(in_cooldown, 0, bad)
  reduce = bad > jnp.asarray(patience, jnp.int32)
  reduced = jnp.maximum(state.scale * f32(factor), f32(min_scale))
  scale = jnp.where(reduce & (state.scale - reduced > f32(eps)), reduced, state.scale)
  cooldown_count = jnp.where(reduce, jnp.asarray(cooldown, jnp.int32), cooldown_count)
  bad = jnp.where(reduce, 0, bad)
  return ReduceLROnPlateauState(
      scale=scale.astype(jnp.float32), best_value=best.astype(jnp.float32),
      plateau_count=bad.astype(jnp.int32), cooldown_count=cooldown_count.astype(jnp.int32),
      count=state.count + 1)


def reduce_on_plateau(factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                      cooldown=0, min_scale=0.0, mode="min", eps=1e-8):
  """Scales updates by a factor that drops when a monitored value plateaus.

  torch ``ReduceLROnPlateau`` semantics (see :func:`plateau_step`). The state is a
  few scalars per member, so ``init`` and ``update`` vmap over a member axis. Feed
  the monitored value through ``update(updates, state, params, value=v)``: the state
  steps once per call that passes ``value`` (and ``is_evaluation``, default True,
  a possibly traced bool, lets a compiled step pass a value every time but step
  only at evaluations); the updates are then scaled by the new scale. Chain it
  after the optimizer: ``optax.chain(optax.sgd(lr), reduce_on_plateau(...))``.

  Args:
    factor: multiplier on a reduction, in (0, 1].
    patience: non-improving evaluations tolerated before a reduction.
    threshold: the margin that counts as an improvement.
    threshold_mode: ``"rel"`` or ``"abs"`` (static).
    cooldown: evaluations after a reduction during which plateaus are not counted.
    min_scale: lower bound of the scale (torch ``min_lr / lr``).
    mode: ``"min"`` or ``"max"`` (static).
    eps: smallest change of scale that is applied (torch ``eps / lr``).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with
    :class:`ReduceLROnPlateauState`.

  >>> import jax.numpy as jnp, optax
  >>> tx = optax.chain(optax.sgd(0.1), reduce_on_plateau(factor=0.5, patience=0))
  >>> params = jnp.zeros(2)
  >>> state = tx.init(params)
  >>> for loss in [1.0, 1.0]:
  ...   updates, state = tx.update(jnp.ones(2), state, params, value=loss)
  >>> updates
  Array([-0.05, -0.05], dtype=float32)

  References:
    PyTorch ``ReduceLROnPlateau``; optax ``contrib.reduce_on_plateau``.
  """
  _check_plateau("reduce_on_plateau", factor, patience, threshold, threshold_mode,
                 cooldown, min_scale, mode)
  hparams = dict(factor=factor, patience=patience, threshold=threshold,
                 threshold_mode=threshold_mode, cooldown=cooldown, min_scale=min_scale,
                 mode=mode, eps=eps)

  def init_fn(params):
    del params
    return plateau_init(mode)

  def update_fn(updates, state, params=None, *, value=None, is_evaluation=True,
                **extra_args):
    del params, extra_args
    if value is not None:
      stepped = plateau_step(state, value, **hparams)
      state = jax.tree.map(lambda new, old: jnp.where(is_evaluation, new, old),
                           stepped, state)
    updates = jax.tree.map(lambda u: u * state.scale.astype(u.dtype), updates)
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def batch_size_exponent(rule):
  """The exponent ``p`` of ``lr * kappa ** p`` for a rule name, or ``rule`` itself.

  ``"linear"`` -> 1, ``"sqrt"`` -> 0.5, ``"none"`` -> 0; a number (or traced or
  per-member array) is used as the exponent, so a grid axis can mix rules.

  >>> batch_size_exponent("sqrt")
  0.5
  """
  if isinstance(rule, str):
    check_choice("batch_size_exponent", "rule", rule, tuple(BATCH_SIZE_RULES))
    return BATCH_SIZE_RULES[rule]
  return rule


def _check_batch_sizes(fn, batch_size, reference_batch_size):
  check_value(fn, "batch_size", batch_size, lambda a: a > 0, "positive")
  check_value(fn, "reference_batch_size", reference_batch_size, lambda a: a > 0, "positive")


def _kappa(fn, batch_size, reference_batch_size):
  _check_batch_sizes(fn, batch_size, reference_batch_size)
  return f32(batch_size) / f32(reference_batch_size)


def batch_size_scaled(lr, batch_size, reference_batch_size, exponent):
  """The batch-size scaling rule ``lr * (B / B_ref) ** p``, in the inputs' precision.

  The one place the rule is written: :func:`scale_lr_by_batch_size` applies it in
  float32 (to possibly traced values), ``lrjax.engine.run.scaled_lr`` to a grid's
  float64 columns, rounded to float32 once afterwards. Nothing is checked here.

  Args:
    lr: learning rate at ``reference_batch_size`` (array or scalar).
    batch_size: the member's batch size ``B``.
    reference_batch_size: ``B_ref``.
    exponent: ``p`` (1 linear, 0.5 square root, 0 none).

  Returns:
    ``lr * (batch_size / reference_batch_size) ** exponent``.

  >>> import numpy as np
  >>> batch_size_scaled(np.array([0.1, 0.1]), np.array([32.0, 128.0]), 32, 0.5)
  array([0.1, 0.2])
  """
  return lr * (batch_size / reference_batch_size) ** exponent


def scale_lr_by_batch_size(lr, batch_size, reference_batch_size, rule="linear"):
  """Scales a learning rate with the batch size: ``lr * (B / B_ref) ** p``.

  Args:
    lr: learning rate at ``reference_batch_size``.
    batch_size: the member's batch size ``B``.
    reference_batch_size: ``B_ref``.
    rule: ``"linear"`` (p = 1, Goyal et al.), ``"sqrt"`` (p = 0.5), ``"none"``
      (p = 0), or the exponent itself (may be traced).

  Returns:
    The scaled learning rate (float32).

  >>> float(scale_lr_by_batch_size(0.1, 1024, 256, "linear"))
  0.4000000059604645
  >>> float(scale_lr_by_batch_size(0.1, 1024, 256, "sqrt"))
  0.20000000298023224

  References:
    Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour;
    Krizhevsky 2014, One weird trick for parallelizing convolutional neural networks.
  """
  _check_batch_sizes("scale_lr_by_batch_size", batch_size, reference_batch_size)
  return batch_size_scaled(f32(lr), f32(batch_size), f32(reference_batch_size),
                           f32(batch_size_exponent(rule)))


def scale_by_batch_size(batch_size, reference_batch_size, rule="linear"):
  """A transform multiplying updates by ``(B / B_ref) ** p`` (see :func:`scale_lr_by_batch_size`).

  >>> import jax.numpy as jnp
  >>> tx = scale_by_batch_size(512, 128, "sqrt")
  >>> tx.update(jnp.ones(2), tx.init(None))[0]
  Array([2., 2.], dtype=float32)

  References:
    Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour.
  """
  factor = scale_lr_by_batch_size(1.0, batch_size, reference_batch_size, rule)

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: u * factor.astype(u.dtype), updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def _scaled_decay(fn, name, beta, kappa):
  check_value(fn, name, beta, lambda a: (a >= 0) & (a < 1), "in [0, 1)")
  scaled = 1.0 - kappa * (1.0 - f32(beta))
  check_value(fn, f"1 - kappa * (1 - {name})", scaled, lambda a: a >= 0,
              "non-negative (the square-root rule needs kappa * (1 - beta) <= 1)")
  return jnp.maximum(scaled, 0.0)  # traced: clipped at 0 rather than negative


def sqrt_scaling_adam_hparams(lr, b1, b2, eps, batch_size, reference_batch_size):
  """Adam hyperparameters for batch size ``B`` by Malladi et al.'s square-root rule.

  With ``kappa = B / B_ref``: ``lr * sqrt(kappa)``, ``1 - b -> kappa * (1 - b)``
  for both betas, ``eps / sqrt(kappa)``. A concrete ``kappa * (1 - b) > 1`` raises;
  a traced one clips the beta at 0.

  Args:
    lr: learning rate at ``reference_batch_size``.
    b1: Adam's first-moment decay at ``reference_batch_size``.
    b2: Adam's second-moment decay at ``reference_batch_size``.
    eps: Adam's epsilon at ``reference_batch_size``.
    batch_size: the member's batch size ``B``.
    reference_batch_size: ``B_ref``.

  Returns:
    ``(lr, b1, b2, eps)`` for batch size ``B`` (float32).

  >>> lr, b1, b2, eps = sqrt_scaling_adam_hparams(1e-3, 0.9, 0.999, 1e-8, 256, 64)
  >>> print(*[f"{float(x):.4g}" for x in (lr, b1, b2, eps)])
  0.002 0.6 0.996 5e-09

  References:
    Malladi et al. 2022, On the SDEs and Scaling Rules for Adaptive Gradient Algorithms.
  """
  fn = "sqrt_scaling_adam_hparams"
  kappa = _kappa(fn, batch_size, reference_batch_size)
  root = jnp.sqrt(kappa)
  return (f32(lr) * root, _scaled_decay(fn, "b1", b1, kappa),
          _scaled_decay(fn, "b2", b2, kappa), f32(eps) / root)


def sqrt_scaling_rmsprop_hparams(lr, decay, eps, batch_size, reference_batch_size):
  """RMSProp hyperparameters for batch size ``B`` by the square-root rule.

  ``lr * sqrt(kappa)``, ``1 - decay -> kappa * (1 - decay)``, ``eps / sqrt(kappa)``.

  >>> lr, decay, eps = sqrt_scaling_rmsprop_hparams(1e-3, 0.99, 1e-8, 64, 16)
  >>> print(*[f"{float(x):.4g}" for x in (lr, decay, eps)])
  0.002 0.96 5e-09

  References:
    Malladi et al. 2022, On the SDEs and Scaling Rules for Adaptive Gradient Algorithms.
  """
  fn = "sqrt_scaling_rmsprop_hparams"
  kappa = _kappa(fn, batch_size, reference_batch_size)
  root = jnp.sqrt(kappa)
  return f32(lr) * root, _scaled_decay(fn, "decay", decay, kappa), f32(eps) / root
