"""Models with state and randomness: BatchNorm (ghost batches) and dropout, linen and NNX.

Each grid member is checked against ``plain_train_stateful``, a loop that trains one
model micro-batch by micro-batch in Python with the same keys and ghost batches.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lrjax import data, grid, models
from lrjax.engine import TrainSettings, train_grid
from lrjax.models import eval_logits, from_linen, from_nnx, initial_state, train_logits
from plain_training import plain_train_stateful
from tree_helpers import assert_trees_allclose


class BatchNormDropoutNet(nn.Module):
  """Dense -> BatchNorm -> ReLU -> Dropout -> Dense."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[:-3] + (-1,))
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(32)(x)))
    x = nn.Dropout(0.3, deterministic=not train)(x)
    return nn.Dense(10)(x)


class NnxBatchNormDropoutNet(nnx.Module):
  def __init__(self, rngs):
    self.dense = nnx.Linear(64, 32, rngs=rngs)
    self.bn = nnx.BatchNorm(32, momentum=0.9, rngs=rngs)
    self.dropout = nnx.Dropout(0.3, rngs=rngs)
    self.out = nnx.Linear(32, 10, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[:-3] + (-1,))
    return self.out(self.dropout(nnx.relu(self.bn(self.dense(x)))))


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


def member(tree, i):
  return jax.tree.map(lambda a: a[i], tree)


def _check_members_equal_plain_loop(adapter, digits, settings, table, **plain):
  result = train_grid(adapter, digits, table, settings, progress=False)
  assert not result.members.diverged.any()
  n = result.info["examples_per_member"]
  micro = result.info["micro_batch"]
  for row in table.itertuples():
    params, state = plain_train_stateful(
        adapter, digits, optax.sgd(row.lr, momentum=0.9), row.batch_size, row.seed, n,
        micro_batch=micro, **plain)
    assert_trees_allclose(member(result.params, row.member), params, rtol=1e-4, atol=1e-5)
    assert_trees_allclose(member(result.model_state, row.member), state, rtol=1e-4,
                          atol=1e-5)
  return result


def test_linen_batchnorm_dropout_member_equals_plain_loop_with_accumulation(digits):
  adapter = from_linen(BatchNormDropoutNet())
  table = grid.make_grid({"lr": (0.05, 0.2), "batch_size": (16, 32), "seed": (0, 1)})
  result = _check_members_equal_plain_loop(
      adapter, digits, TrainSettings(epochs=1, eval_every=640), table)
  assert set(result.model_state) == {"batch_stats"}
  assert result.members.final_val_acc.min() > 0.5


def test_ghost_batches_of_bn_batch_equal_plain_loop_with_same_ghost_batches(digits):
  adapter = from_linen(BatchNormDropoutNet())
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32, 64), "seed": (0,)})
  _check_members_equal_plain_loop(
      adapter, digits, TrainSettings(epochs=1, eval_every=640, bn_batch=8), table,
      bn_batch=8)


def test_bn_batch_changes_training_when_smaller_than_micro_batch(digits):
  adapter = from_linen(BatchNormDropoutNet())
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,)})
  whole = train_grid(adapter, digits, table, TrainSettings(epochs=1), progress=False)
  ghost = train_grid(adapter, digits, table, TrainSettings(epochs=1, bn_batch=8),
                     progress=False)
  diff = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), whole.params, ghost.params)
  assert max(jax.tree.leaves(diff)) > 1e-3


def test_nnx_batchnorm_dropout_member_equals_plain_loop(digits):
  adapter = from_nnx(NnxBatchNormDropoutNet)
  table = grid.make_grid({"lr": (0.05, 0.2), "batch_size": (16, 32), "seed": (0,)})
  _check_members_equal_plain_loop(adapter, digits, TrainSettings(epochs=1, eval_every=640),
                                  table)


def test_validation_uses_running_averages_and_no_dropout(digits):
  adapter = from_linen(BatchNormDropoutNet())
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,)})
  result = train_grid(adapter, digits, table, TrainSettings(epochs=1), progress=False)
  x = jnp.asarray(digits.validation.images, jnp.float32) / 255.0
  logits = eval_logits(adapter, member(result.params, 0), member(result.model_state, 0), x)
  loss = optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.asarray(digits.validation.labels)).mean()
  np.testing.assert_allclose(result.members.final_val_loss[0], float(loss), rtol=1e-5)


def test_members_sharing_seed_draw_same_dropout_masks(digits):
  # Learning rate ~0: the weights barely move, so two members of one seed see the same
  # masks (common random numbers) and report the same training loss; another seed's
  # masks (and weights) differ.
  adapter = from_linen(BatchNormDropoutNet())
  table = grid.make_grid({"lr": (1e-12, 2e-12), "batch_size": (32,), "seed": (0, 1)})
  result = train_grid(adapter, digits, table, TrainSettings(optimizer="sgd", epochs=1),
                      progress=False)
  loss = result.history.groupby("member").train_loss.first().to_numpy()
  np.testing.assert_allclose(loss[0], loss[1], rtol=1e-6)
  assert abs(loss[0] - loss[2]) > 1e-4


def test_train_logits_updates_batch_stats_and_eval_logits_does_not():
  adapter = from_linen(BatchNormDropoutNet())
  x = jax.random.uniform(jax.random.key(0), (16, 8, 8, 1))
  params = adapter.init(jax.random.key(1), x)
  state = initial_state(adapter, jax.random.key(1), x)
  _, new_state = jax.jit(lambda p, s: train_logits(adapter, p, s, x, jax.random.key(2)))(
      params, state)
  assert not np.allclose(new_state["batch_stats"]["BatchNorm_0"]["mean"],
                         state["batch_stats"]["BatchNorm_0"]["mean"])
  a = jax.jit(lambda p, s: eval_logits(adapter, p, s, x))(params, state)
  b = jax.jit(lambda p, s: eval_logits(adapter, p, s, x))(params, state)
  np.testing.assert_array_equal(a, b)  # no dropout at evaluation


def test_dropout_keys_change_masks_per_step():
  adapter = from_linen(BatchNormDropoutNet())
  x = jax.random.uniform(jax.random.key(0), (16, 8, 8, 1))
  params = adapter.init(jax.random.key(1), x)
  state = initial_state(adapter, jax.random.key(1), x)
  run = jax.jit(lambda r: train_logits(adapter, params, state, x, r)[0])
  np.testing.assert_array_equal(run(jax.random.key(5)), run(jax.random.key(5)))
  assert not np.allclose(run(jax.random.key(5)), run(jax.random.key(6)))


def test_stateless_builtin_model_has_empty_state():
  adapter = models.get_model("mlp", 10, hidden=(8,))
  x = jnp.zeros((1, 8, 8, 1))
  assert initial_state(adapter, jax.random.key(0), x) == {}


def test_bn_batch_not_dividing_micro_batch_is_refused(digits):
  from lrjax.errors import ConfigError
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,)})
  with pytest.raises(ConfigError, match="bn_batch: 12 does not divide the 32 examples"):
    train_grid(from_linen(BatchNormDropoutNet()), digits, table,
               TrainSettings(epochs=1, bn_batch=12), progress=False)
