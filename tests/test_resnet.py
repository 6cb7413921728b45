"""The CIFAR ResNet (lrjax.models.resnet), its built-in names, and experiments/cifar10_resnet.py."""
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lrjax import data, experiment, models
from lrjax.errors import ConfigError
from lrjax.models import BasicBlock, ResNet

ROOT = pathlib.Path(__file__).parents[1]
EXPERIMENT = ROOT / "experiments" / "cifar10_resnet.py"
TINY = dict(depth=8, width=0.25)  # 4/8/16 channels: fast to compile

# ResNet-20 at width 1 with projection shortcuts, counted by hand. Convolutions have no
# bias; each BatchNorm has a scale and a bias per channel (running statistics are
# batch_stats, not params).
#   stem: 3x3x3x16 conv 432 + BN 32                                       =     464
#   stage 1, 3 blocks: 2 x 3x3x16x16 (2 x 2,304) + 2 BN (2 x 32) = 4,672 each =  14,016
#   stage 2, block 1: 3x3x16x32 4,608 + 3x3x32x32 9,216 + 2 BN 128
#                     + projection 1x1x16x32 512 + BN 64 = 14,528
#            blocks 2-3: 2 x (2 x 9,216 + 128) = 37,120                     =  51,648
#   stage 3, block 1: 3x3x32x64 18,432 + 3x3x64x64 36,864 + 2 BN 256
#                     + projection 1x1x32x64 2,048 + BN 128 = 57,728
#            blocks 2-3: 2 x (2 x 36,864 + 256) = 147,968                   = 205,696
#   dense: 64 x 10 + 10                                                   =     650
#   total                                                                 = 272,474
# (the paper's "0.27M"; its option-A shortcuts have no projection: 272,474 - 2,752).
RESNET20_PARAMS = 272_474


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _variables(model, shape):
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))


def _load_experiment():
  spec = importlib.util.spec_from_file_location("cifar10_resnet", EXPERIMENT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _init(model, x):
  """Variables of the right shapes, drawn with numpy: ``model.init`` compiles one random
  normal per kernel shape, seconds each on XLA:CPU (the end-to-end test covers it)."""
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if "var" in name or "scale" in name:
      return jnp.ones(leaf.shape, leaf.dtype)
    if "mean" in name or "bias" in name:
      return jnp.zeros(leaf.shape, leaf.dtype)
    return jnp.asarray(rng.normal(0.0, 0.3, leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, _variables(model, x.shape))


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (2, 8, 8, 1)])
def test_logits_have_class_axis_for_cifar_and_digit_sizes(shape):
  model = ResNet(num_classes=7, **TINY)
  variables = _variables(model, shape)
  logits = jax.eval_shape(model.apply, variables, jnp.zeros(shape))
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32


def test_logits_are_finite_when_run_in_both_modes():
  model = ResNet(**TINY)
  x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
  variables = _init(model, x)

  @jax.jit
  def both(variables, x):
    return model.apply(variables, x), model.apply(variables, x, train=True,
                                                  mutable=["batch_stats"])[0]

  assert all(bool(jnp.all(jnp.isfinite(out))) for out in both(variables, x))


def test_parameter_count_is_paper_size_when_resnet20_width_1():
  variables = _variables(ResNet(num_classes=10, depth=20), (1, 32, 32, 3))
  assert _count(variables["params"]) == RESNET20_PARAMS
  # A running mean and variance per channel of each of the 21 BatchNorms (stem, two per
  # block, two projections).
  bn_channels = 16 + 3 * 2 * 16 + (6 * 32 + 32) + (6 * 64 + 64)
  assert _count(variables["batch_stats"]) == 2 * bn_channels


def test_depth_sets_blocks_per_stage_when_6n_plus_2():
  params = _variables(ResNet(depth=32, width=0.25), (1, 8, 8, 1))["params"]
  assert sum(name.startswith("stage2_") for name in params) == 5
  assert models.resnet.blocks_per_stage(56) == 9


def test_train_mode_updates_batch_stats_and_eval_mode_does_not():
  model = ResNet(**TINY)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1)) + 3.0
  variables = _init(model, x)

  @jax.jit
  def stats(variables, x):
    return (model.apply(variables, x, train=True, mutable=["batch_stats"])[1],
            model.apply(variables, x, train=False, mutable=["batch_stats"])[1])

  trained, evaluated = stats(variables, x)
  before = variables["batch_stats"]
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before,
                                          trained["batch_stats"])))
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), before,
                                          evaluated["batch_stats"])))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, "bfloat16"])
def test_bfloat16_dtype_keeps_float32_params_and_bf16_activations(dtype):
  model = ResNet(dtype=dtype, **TINY)
  x = jnp.ones((2, 8, 8, 1))
  variables = _variables(model, x.shape)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]),
      variables, x)
  inner = state["intermediates"]
  outputs = {name: out["__call__"][0].dtype for name, out in inner.items()
             if name.startswith("stage") or name == "head"}
  assert len(outputs) == 4 and set(outputs.values()) == {jnp.dtype(jnp.bfloat16)}
  assert logits.dtype == jnp.float32


def test_default_dtype_follows_bf16_params_and_inputs_when_engine_casts_them():
  model = ResNet(**TINY)
  x = jnp.ones((2, 8, 8, 1), jnp.bfloat16)
  variables = _variables(model, x.shape)
  cast = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.bfloat16), variables)
  _, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]),
      cast, x)
  assert state["intermediates"]["stage3_block1"]["__call__"][0].dtype == jnp.bfloat16


def test_dropout_differs_by_rng_only_when_training_with_rate():
  model = ResNet(dropout_rate=0.5, **TINY)
  x = jnp.ones((2, 8, 8, 1))
  variables = _init(model, x)

  @jax.jit
  def logits(variables, key):
    return model.apply(variables, x, train=True, mutable=["batch_stats"],
                       rngs={"dropout": key})[0], model.apply(variables, x)

  (a, evaluated), (b, _) = logits(variables, jax.random.key(1)), logits(variables,
                                                                       jax.random.key(2))
  assert not bool(jnp.allclose(a, b)) and evaluated.shape == (2, 10)


def test_basic_block_projects_shortcut_only_when_shape_changes():
  x = jnp.ones((1, 8, 8, 4))
  same = _variables(BasicBlock(4), x.shape)["params"]
  wider = _variables(BasicBlock(8), x.shape)["params"]
  strided = _variables(BasicBlock(4, strides=2), x.shape)["params"]
  assert "proj_conv" not in same
  assert {"proj_conv", "proj_bn"} <= set(wider) and {"proj_conv", "proj_bn"} <= set(strided)


@pytest.mark.parametrize("depth", [21, 2, 0, "20", 20.0])
def test_depth_not_6n_plus_2_raises_config_error_naming_field(depth):
  with pytest.raises(ConfigError, match="model_kwargs.depth"):
    ResNet(depth=depth)
  with pytest.raises(ConfigError, match="model_kwargs.depth"):
    models.get_model("resnet", 10, depth=depth)


@pytest.mark.parametrize("kwargs, field", [
    ({"width": 0}, "model_kwargs.width"), ({"width": 0.01}, "model_kwargs.width"),
    ({"dropout_rate": 1.0}, "model_kwargs.dropout_rate"),
    ({"dtype": "int32"}, "model_kwargs.dtype"), ({"dtype": "nonsense"}, "model_kwargs.dtype")])
def test_bad_field_raises_config_error_naming_it(kwargs, field):
  with pytest.raises(ConfigError, match=field):
    models.get_model("resnet", 10, **kwargs)


def test_builtin_names_resnet20_and_resnet_build_resnets():
  assert models.BUILTIN_MODELS["resnet20"] is ResNet and models.BUILTIN_MODELS["resnet"] is ResNet
  assert models.get_model("resnet20", 10).name == "resnet20"
  assert models.get_model("resnet20", 10, depth=20, width=0.5).name == "resnet20"


def test_resnet20_with_other_depth_raises_config_error_naming_field():
  with pytest.raises(ConfigError, match="model_kwargs.depth.*model='resnet'"):
    models.get_model("resnet20", 10, depth=32)


def test_unknown_field_raises_config_error_naming_class():
  with pytest.raises(ConfigError, match="model_kwargs.*ResNet"):
    models.get_model("resnet20", 10, hidden=(32,))


def test_cifar10_config_resolves_when_cifar10_is_mocked(tmp_path):
  config = _load_experiment().get_config()
  config.data_dir = str(tmp_path)
  data.load.cache_clear()
  try:
    with tfds.testing.mock_data(num_examples=1200):  # >= the largest batch size after holdout
      run = experiment.resolve(config)
  finally:
    data.load.cache_clear()
  assert run.dataset.image_shape == (32, 32, 3) and run.dataset.num_classes == 10
  assert run.num_members == 7 * 4 * 2 * 2 and run.plan.micro_batch == 128
  assert run.model.name == "resnet20" and run.settings.augment_policy.flip_prob == 0.5
  assert run.settings.schedule == "cosine" and run.settings.optimizer == "momentum"


def test_runlocal_config_is_small_and_on_digits():
  config = _load_experiment().get_config("runlocal")
  assert config.dataset == "digits" and config.epochs == 1.0
  with pytest.raises(ValueError, match="runlocal"):
    _load_experiment().get_config("bogus")


@pytest.mark.slow  # the ResNet experiment end to end
def test_runlocal_trains_resnet_on_digits(tmp_path):
  config = _load_experiment().get_config("runlocal")
  result = experiment.train_and_evaluate(config, str(tmp_path / "run"), progress=False,
                                         writers=())
  members = result.members
  assert len(members) == 2 * 2 * 2 * 1
  assert np.isfinite(members.first_train_loss).all()
  assert np.isfinite(members.final_train_loss).all()
  assert np.isfinite(members.final_val_loss).all()
