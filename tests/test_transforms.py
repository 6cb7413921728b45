"""Tests for lrjax.transforms: torch ReduceLROnPlateau parity, batch-size scaling rules."""
import doctest
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import schedules, transforms

PLATEAU = json.loads(
    (pathlib.Path(__file__).parent / "data" / "plateau_references.json").read_text())
STATIC = ("mode", "threshold_mode")


def _hparams(case):
  """The case's torch arguments as lrjax plateau hyperparameters (scale units)."""
  kw = dict(case["kwargs"])
  lr0 = case["base_lr"]
  hp = {"min_scale": kw.pop("min_lr", 0.0) / lr0, "eps": 1e-8 / lr0}
  hp.update(kw)
  return hp


def run_plateau(losses, numeric, static):
  """Scales after each plateau_step over `losses`, all numeric hparams traced."""
  def body(state, loss):
    state = transforms.plateau_step(state, loss, **numeric, **static)
    return state, state.scale
  _, scales = jax.lax.scan(body, transforms.plateau_init(static.get("mode", "min")), losses)
  return scales


@pytest.mark.parametrize("case", PLATEAU["cases"],
                         ids=[f"{c['loss']}_{i}" for i, c in enumerate(PLATEAU["cases"])])
def test_plateau_step_reproduces_torch_lr_sequence_under_jit(case):
  hp = _hparams(case)
  static = {k: hp.pop(k) for k in STATIC if k in hp}
  numeric = {k: jnp.float32(v) for k, v in hp.items()}
  losses = jnp.asarray(PLATEAU["losses"][case["loss"]], jnp.float32)
  scales = jax.jit(lambda l, n: run_plateau(l, n, static))(losses, numeric)
  np.testing.assert_allclose(np.asarray(scales, np.float64) * case["base_lr"], case["lrs"],
                             rtol=1e-6)


def test_plateau_members_vmap_with_their_own_hyperparameters():
  cases = [c for c in PLATEAU["cases"] if c["kwargs"].get("mode", "min") == "min"
           and c["kwargs"].get("threshold_mode", "rel") == "rel"]
  keys = ("factor", "patience", "threshold", "cooldown", "min_scale", "eps")
  defaults = dict(factor=0.1, patience=10, threshold=1e-4, cooldown=0, min_scale=0.0)
  hps = [{**defaults, **_hparams(c)} for c in cases]
  numeric = {k: jnp.asarray([hp[k] for hp in hps], jnp.float32) for k in keys}
  losses = jnp.asarray([PLATEAU["losses"][c["loss"]] for c in cases], jnp.float32)
  scales = jax.jit(jax.vmap(lambda l, n: run_plateau(l, n, {})))(losses, numeric)
  for m, case in enumerate(cases):
    np.testing.assert_allclose(np.asarray(scales[m], np.float64) * case["base_lr"],
                               case["lrs"], rtol=1e-6)


def test_reduce_on_plateau_scales_updates_only_at_evaluations():
  tx = optax.chain(optax.sgd(1.0), transforms.reduce_on_plateau(factor=0.5, patience=0))
  params = jnp.zeros(2)

  @jax.jit
  def step(state, loss, is_evaluation):
    return tx.update(jnp.ones(2), state, params, value=loss, is_evaluation=is_evaluation)
  state = tx.init(params)
  plateau_state = lambda s: s[1]
  updates, state = step(state, 1.0, True)  # first value: improves on +inf
  np.testing.assert_allclose(updates, [-1.0, -1.0])
  for _ in range(3):  # not evaluations: the scale stays although the loss is worse
    updates, state = step(state, 5.0, False)
  np.testing.assert_allclose(updates, [-1.0, -1.0])
  assert int(plateau_state(state).count) == 1
  updates, state = step(state, 5.0, True)
  np.testing.assert_allclose(updates, [-0.5, -0.5])
  # Without a value the transform only applies the scale.
  updates, state2 = tx.update(jnp.ones(2), state, params)
  np.testing.assert_allclose(updates, [-0.5, -0.5])
  assert int(plateau_state(state2).count) == 2


def test_reduce_on_plateau_state_is_per_member_under_vmap():
  def member(factor, losses):
    tx = transforms.reduce_on_plateau(factor=factor, patience=0)
    state = tx.init(None)
    for loss in losses:
      _, state = tx.update(jnp.ones(()), state, value=loss)
    return state
  states = jax.jit(jax.vmap(member))(jnp.asarray([0.5, 1.0, 0.1]),
                                     jnp.asarray([[1.0, 2.0, 3.0]] * 3))
  assert isinstance(states, transforms.ReduceLROnPlateauState)
  np.testing.assert_allclose(states.scale, [0.25, 1.0, 0.01], rtol=1e-6)
  assert states.plateau_count.dtype == jnp.int32


def test_batch_size_rules_scale_learning_rate():
  lr = jax.jit(transforms.scale_lr_by_batch_size, static_argnums=3)
  np.testing.assert_allclose(lr(0.1, 512, 128, "linear"), 0.4, rtol=1e-6)
  np.testing.assert_allclose(lr(0.1, 512, 128, "sqrt"), 0.2, rtol=1e-6)
  np.testing.assert_allclose(lr(0.1, 512, 128, "none"), 0.1, rtol=1e-6)
  # A grid axis of rules: exponents as a per-member array, batch sizes per member.
  grid = jax.jit(jax.vmap(transforms.scale_lr_by_batch_size, in_axes=(None, 0, None, 0)))(
      0.1, jnp.asarray([32.0, 512.0, 512.0]), 128.0, jnp.asarray([1.0, 0.5, 0.0]))
  np.testing.assert_allclose(grid, [0.025, 0.2, 0.1], rtol=1e-6)
  tx = transforms.scale_by_batch_size(256, 64, "sqrt")
  np.testing.assert_allclose(tx.update({"w": jnp.ones(2)}, tx.init(None))[0]["w"], [2.0, 2.0])


def test_sqrt_rule_for_adam_matches_malladi_formula():
  f = jax.jit(transforms.sqrt_scaling_adam_hparams)
  lr, b1, b2, eps = f(3e-4, 0.9, 0.999, 1e-8, 512.0, 128.0)
  np.testing.assert_allclose([lr, b1, b2, eps], [6e-4, 0.6, 0.996, 5e-9], rtol=1e-5)
  # kappa = 1 is the identity; the result feeds inject_hyperparams directly.
  same = f(3e-4, 0.9, 0.999, 1e-8, 128.0, 128.0)
  np.testing.assert_allclose(same, [3e-4, 0.9, 0.999, 1e-8], rtol=1e-6)
  opt = optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=b1, b2=b2, eps=eps)
  state = opt.init(jnp.zeros(2))
  np.testing.assert_allclose(state.hyperparams["b1"], 0.6, rtol=1e-6)
  lr, decay, eps = transforms.sqrt_scaling_rmsprop_hparams(1e-3, 0.99, 1e-8, 32, 128)
  np.testing.assert_allclose([lr, decay, eps], [5e-4, 0.9975, 2e-8], rtol=1e-5)


def test_cycled_momentum_feeds_inject_hyperparams_for_adam():
  lr_kwargs = dict(base_value=1e-4, max_value=1e-3, step_size_up=4)
  opt = optax.inject_hyperparams(optax.adam)(
      learning_rate=schedules.cyclic(**lr_kwargs),
      b1=schedules.momentum_schedule("cyclic", lr_kwargs, 0.85, 0.95))
  state = opt.init(jnp.zeros(2))
  update = jax.jit(opt.update)
  b1s = []
  for _ in range(5):
    _, state = update(jnp.ones(2), state)
    b1s.append(float(state.hyperparams["b1"]))
  np.testing.assert_allclose(b1s, [0.95, 0.925, 0.9, 0.875, 0.85], rtol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: transforms.reduce_on_plateau(factor=1.5), "factor"),
    (lambda: transforms.reduce_on_plateau(patience=-1), "patience"),
    (lambda: transforms.reduce_on_plateau(mode="lowest"), "mode"),
    (lambda: transforms.reduce_on_plateau(threshold_mode="relative"), "threshold_mode"),
    (lambda: transforms.scale_lr_by_batch_size(0.1, 0, 128), "batch_size"),
    (lambda: transforms.scale_lr_by_batch_size(0.1, 64, 128, "cubic"), "rule"),
    (lambda: transforms.sqrt_scaling_adam_hparams(1e-3, 0.9, 0.999, 1e-8, 4096, 128), "b1"),
    (lambda: transforms.sqrt_scaling_adam_hparams(1e-3, 1.0, 0.999, 1e-8, 64, 128), "b1"),
])
def test_bad_concrete_arguments_raise_value_error(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def test_docstring_examples_run():
  result = doctest.testmod(transforms)
  assert result.failed == 0 and result.attempted > 0
