"""Optimizers and schedules by name: defaults, traced hyperparameters, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import grid, optimizers, schedules
from lrjax.engine import TrainSettings
from lrjax.engine.run import split_hparams as _split_hparams
from lrjax.errors import ConfigError


def test_make_optimizer_matches_optax_when_hparams_traced():
  params = {"w": jnp.arange(3.0)}
  grads = {"w": jnp.array([0.5, -1.0, 2.0])}

  @jax.jit
  def step(lr, b2):
    opt = optimizers.make_optimizer("adam", lr, b2=b2)
    return opt.update(grads, opt.init(params), params)[0]

  expected = optax.adam(0.1, b2=0.99).update(grads, optax.adam(0.1, b2=0.99).init(params),
                                             params)[0]
  np.testing.assert_allclose(step(0.1, 0.99)["w"], expected["w"], rtol=1e-6)


def test_make_schedule_fills_length_and_peak_when_not_given():
  sched = jax.jit(lambda c: schedules.make_schedule("cosine", 0.2, 50)(c))
  np.testing.assert_allclose([sched(0), sched(25), sched(50)], [0.2, 0.1, 0.0], atol=1e-7)


@pytest.mark.parametrize("call, match", [
    (lambda: optimizers.make_optimizer("adagradx", 0.1), "optimizer: unknown"),
    (lambda: optimizers.make_optimizer("sgd", 0.1, momentum=0.9), "not hyperparameters"),
    (lambda: schedules.make_schedule("zigzag", 0.1, 10), "schedule: unknown"),
    (lambda: schedules.make_schedule("cosine", 0.1, 10, gamma=2.0), "not arguments"),
    (lambda: schedules.schedule_spec("constant", {"cosine": {}}, families=("constant",)),
     "not in grid.schedule"),
    (lambda: schedules.schedule_spec("cosine", {}, grid_args=("alpha",),
                                      families=("cosine", "constant")), "cannot be axes"),
    (lambda: schedules.schedule_spec("plateau", {"patience": 2, "gamma": 1.0}),
     "plateau rule"),
])
def test_bad_names_and_arguments_raise_config_error_naming_the_field(call, match):
  with pytest.raises(ConfigError, match=match):
    call()


def test_cycle_momentum_needs_an_optimizer_with_momentum_when_sgd():
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,)})
  settings = TrainSettings(optimizer="sgd", schedule="onecycle",
                           schedule_kwargs={"cycle_momentum": True})
  with pytest.raises(ConfigError, match="cycle_momentum"):
    _split_hparams(table, settings)


def test_momentum_schedule_is_none_unless_cycle_momentum_requested():
  assert schedules.make_momentum_schedule("onecycle", 0.1, 100) is None
  m = schedules.make_momentum_schedule("cyclic", 0.1, 100, cycle_momentum=True,
                                        base_value=0.01, step_size_up=10)
  np.testing.assert_allclose([m(0), m(10)], [0.9, 0.8], rtol=1e-6)


# The catalog, entry by entry, against the Optax optimizer it names (optax alias_test
# style): (name, the hyperparameter varied across members, its values, plain Optax).
OPTIMIZER_CATALOG = [
    ("sgd", None, None, lambda lr: optax.sgd(lr)),
    ("momentum", "momentum", (0.0, 0.5, 0.9),
     lambda lr, momentum: optax.sgd(lr, momentum=momentum)),
    ("nesterov", "momentum", (0.0, 0.5, 0.9),
     lambda lr, momentum: optax.sgd(lr, momentum=momentum, nesterov=True)),
    ("adam", "b2", (0.9, 0.99, 0.999), lambda lr, b2: optax.adam(lr, b2=b2)),
    ("adamw", "weight_decay", (0.0, 1e-2, 1e-1),
     lambda lr, weight_decay: optax.adamw(lr, weight_decay=weight_decay)),
    ("nadam", "b1", (0.5, 0.8, 0.9), lambda lr, b1: optax.nadam(lr, b1=b1)),
    ("rmsprop", "decay", (0.5, 0.9, 0.99), lambda lr, decay: optax.rmsprop(lr, decay=decay)),
]
LRS = (0.003, 0.03, 0.3)


def _steps(opt, params, n=5):
  """``n`` optimizer steps on a fixed quadratic; returns the final parameters."""
  target = jax.tree.map(lambda p: jnp.linspace(-1.0, 1.0, p.size).reshape(p.shape), params)
  loss = lambda p: sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(p),
                                                             jax.tree.leaves(target)))
  state = opt.init(params)
  for _ in range(n):
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_optimizer_catalog_table_covers_every_entry():
  assert sorted(name for name, *_ in OPTIMIZER_CATALOG) == sorted(optimizers.OPTIMIZERS)


@pytest.mark.parametrize("name, hparam, values, reference", OPTIMIZER_CATALOG,
                         ids=[c[0] for c in OPTIMIZER_CATALOG])
def test_catalog_optimizer_vmapped_over_hparams_equals_plain_optax_per_member(
    name, hparam, values, reference):
  params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
  hps = {} if hparam is None else {hparam: jnp.asarray(values, jnp.float32)}

  @jax.jit
  @jax.vmap
  def members(lr, hp):
    return _steps(optimizers.make_optimizer(name, lr, **hp), params)

  got = members(jnp.asarray(LRS, jnp.float32), hps)
  for i, lr in enumerate(LRS):
    kw = {} if hparam is None else {hparam: values[i]}
    want = _steps(reference(lr, **kw), params)
    for key in params:
      np.testing.assert_allclose(got[key][i], want[key], rtol=1e-4, atol=1e-5,
                                 err_msg=f"{name} member {i}")
