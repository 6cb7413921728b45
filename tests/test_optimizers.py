"""Optimizers and schedules by name: defaults, traced hyperparameters, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import grid, optimizers, schedules
from lrjax.engine import TrainSettings
from lrjax.engine.run import split_hparams
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
    split_hparams(table, settings)


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


# -- any Optax optimizer: factories (learning_rate, **hparams) -------------------------
def _kernels_only(params):
  """Weight-decay mask: decay the Dense kernels, not the biases."""
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def clipped_decayed_sgd(learning_rate, clip, weight_decay=1e-3):
  return optax.chain(optax.clip_by_global_norm(clip),
                     optax.add_decayed_weights(weight_decay, mask=_kernels_only),
                     optax.sgd(learning_rate, momentum=0.9))


def clipped_decayed_adam(learning_rate, clip, weight_decay=1e-3, b1=0.9):
  return optax.chain(optax.clip_by_global_norm(clip),
                     optax.add_decayed_weights(weight_decay, mask=_kernels_only),
                     optax.adam(learning_rate, b1=b1))


@pytest.fixture(scope="module")
def digits():
  from lrjax import data
  return data.load("digits")


@pytest.mark.parametrize("factory, lr, kwargs", [
    (clipped_decayed_sgd, 0.1, {"weight_decay": 1e-2}),
    (clipped_decayed_adam, 0.003, {"b1": 0.8}),
], ids=["sgd", "adam"])
def test_factory_chain_with_clip_axis_equals_plain_optax_loop(digits, factory, lr, kwargs):
  from lrjax import models, train_grid
  from plain_training import plain_train
  from tree_helpers import assert_trees_allclose

  model = models.get_model("mlp", 10, hidden=(32,))
  table = grid.make_grid({"lr": (lr,), "batch_size": (32,), "clip": (0.05, 1.0)})
  settings = TrainSettings(optimizer=factory, optimizer_kwargs=kwargs, epochs=1,
                           eval_every=640)
  result = train_grid(model, digits, table, settings, progress=False)
  examples = result.info["examples_per_member"]
  params = [jax.tree.map(lambda a, i=i: a[i], result.params) for i in range(len(table))]
  for row in table.itertuples():
    expected = plain_train(model, digits, factory(row.lr, clip=row.clip, **kwargs), 32, 0,
                           examples)
    assert_trees_allclose(params[row.member], expected, rtol=1e-4, atol=1e-5)
  # The clip axis matters: the two members differ.
  assert not np.allclose(params[0]["Dense_0"]["kernel"], params[1]["Dense_0"]["kernel"])


def test_factory_keywords_sort_into_defaults_and_required():
  assert optimizers.optimizer_hparams(clipped_decayed_adam) == {"weight_decay": 1e-3, "b1": 0.9}
  assert optimizers.required_hparams(clipped_decayed_adam) == ("clip",)
  assert optimizers.momentum_name(clipped_decayed_adam) is None
  assert optimizers.optimizer_hparams("optax:adamw")["weight_decay"] == 1e-4


def test_split_hparams_routes_factory_axes_when_kwargs_factory_and_schedule_share_grid():
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,), "b1": (0.8, 0.9),
                          "alpha": (0.0, 0.1)})
  any_kw = lambda learning_rate, **kw: optax.adamw(learning_rate, **kw)
  opt_cols, sched_cols, _ = split_hparams(
      table, TrainSettings(optimizer=any_kw, schedule="cosine"))
  assert (opt_cols, sched_cols) == (["b1"], ["alpha"])


def test_import_path_optimizer_resolves_when_given_in_config():
  from lrjax import experiment
  c = experiment.default_config()
  c.optimizer = "optax:adamw"
  c.optimizer_kwargs = {"weight_decay": 0.01}
  c.grid.b1 = (0.8, 0.9)
  run = experiment.resolve(c)
  assert run.settings.optimizer == "optax:adamw" and run.opt_cols == ("b1",)


def test_import_path_optimizer_drops_file_kwargs_when_overridden_on_command_line(capsys):
  from lrjax import cli
  c = cli.load_config("experiments/lr_batch_aug.py:runlocal",
                      ["--config.optimizer=optax:adamw", "--config.grid.b2=(0.99,0.999)"])
  assert c.optimizer == "optax:adamw" and dict(c.optimizer_kwargs) == {}
  assert "momentum" in capsys.readouterr().err


def test_factory_config_writes_label_when_run_directory_written(tmp_path):
  import json
  from lrjax import experiment
  config = experiment.config_to_dict(experiment.default_config())
  config.update(optimizer=clipped_decayed_sgd, optimizer_kwargs={"clip": 1.0}, epochs=1,
                model_kwargs={"hidden": (32,)})
  config["grid"].update(lr=(0.1,), batch_size=(64,))
  experiment.train_and_evaluate(config, str(tmp_path / "run"), progress=False, writers=())
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["optimizer"] == f"{__name__}:clipped_decayed_sgd"


@pytest.mark.parametrize("settings, match", [
    (dict(optimizer=3), "optimizer: must be"),
    (dict(optimizer="lrjax.no_such_module:adam"), "optimizer: cannot import module"),
    (dict(optimizer="optax:no_such_optimizer"), "optimizer: module 'optax' has no attribute"),
    (dict(optimizer="math:pi"), "optimizer: 'math:pi' is a float, not a function"),
    (dict(optimizer=lambda **hparams: optax.sgd(0.1)), "optimizer: .* learning rate"),
])
def test_bad_optimizer_raises_config_error_naming_optimizer(settings, match):
  with pytest.raises(ConfigError, match=match):
    TrainSettings(**settings)


@pytest.mark.parametrize("settings, match", [
    (dict(optimizer=clipped_decayed_sgd), r"optimizer: \['clip'\] .* have no default"),
    (dict(optimizer=clipped_decayed_sgd, optimizer_kwargs={"clip": 1.0, "gamma": 2.0}),
     r"optimizer_kwargs: \['gamma'\] are not hyperparameters"),
    (dict(optimizer="optax:adamw", schedule="onecycle",
          schedule_kwargs={"cycle_momentum": True}), "cycle_momentum"),
])
def test_factory_settings_raise_config_error_when_hparams_do_not_fit(settings, match):
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,)})
  with pytest.raises(ConfigError, match=match):
    split_hparams(table, TrainSettings(**settings))
