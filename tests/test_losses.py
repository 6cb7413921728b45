"""Losses and metrics: callables, names, the label-smoothing axis, mixed precision."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import augment, data, grid, losses, models
from lrjax.engine import TrainSettings, train_grid
from lrjax.errors import ConfigError
from plain_training import plain_train, plain_train_stateful
from tree_helpers import assert_trees_allclose

TINY_MLP = dict(hidden=(32,))


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


def member(tree, i):
  return jax.tree.map(lambda a: a[i], tree)


def squared_error(logits, labels):
  """A loss on soft labels: squared error of the softmax (Brier score)."""
  return jnp.sum((jax.nn.softmax(logits) - labels) ** 2, -1)


def test_label_smoothing_axis_members_equal_plain_loops(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,), "label_smoothing": (0.0, 0.1,
                                                                                   0.3)})
  result = train_grid(model, digits, table, TrainSettings(epochs=1), progress=False)
  n = result.info["examples_per_member"]
  for row in table.itertuples():
    expected = plain_train(model, digits, optax.sgd(0.1, momentum=0.9), 32, 0, n,
                           label_smoothing=row.label_smoothing)
    assert_trees_allclose(member(result.params, row.member), expected, rtol=1e-4, atol=1e-5)
  assert "label_smoothing" in result.members.columns


def test_label_smoothing_axis_outside_unit_interval_is_refused(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,), "label_smoothing": (0.0, 1.5)})
  with pytest.raises(ConfigError, match="grid.label_smoothing"):
    train_grid(model, digits, table, TrainSettings(epochs=1), progress=False)


def test_callable_loss_member_equals_plain_loop(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.5,), "batch_size": (16, 32)})
  result = train_grid(model, digits, table, TrainSettings(epochs=1, loss=squared_error),
                      progress=False)
  n = result.info["examples_per_member"]
  for row in table.itertuples():
    params, _ = plain_train_stateful(model, digits, optax.sgd(0.5, momentum=0.9),
                                     row.batch_size, 0, n, micro_batch=16,
                                     loss=squared_error)
    assert_trees_allclose(member(result.params, row.member), params, rtol=1e-4, atol=1e-5)
  # Validation reports the same loss, on one-hot labels.
  assert result.members.final_val_loss.between(0.0, 2.0).all()


def test_loss_named_by_import_path_trains():
  settings = TrainSettings(loss="optax:softmax_cross_entropy")
  assert losses.resolve_loss(settings.loss) is optax.softmax_cross_entropy


@pytest.mark.parametrize("bad, match", [
    ("hinge", "loss: unknown loss 'hinge'"),
    ("no_such_module_x:f", "loss: cannot import module"),
    (3, "loss"),
])
def test_bad_loss_is_refused_naming_the_field(bad, match):
  with pytest.raises(ConfigError, match=match):
    TrainSettings(loss=bad)


def test_metrics_reported_in_history_and_members(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.05, 0.2), "batch_size": (32,)})
  metrics = {"top2": losses.top_k_accuracy(2), "xent": "cross_entropy"}
  result = train_grid(model, digits, table, TrainSettings(epochs=1, metrics=metrics),
                      progress=False)
  m = result.members
  assert {"final_val_top2", "test_top2", "final_val_xent", "test_xent"} <= set(m.columns)
  assert "val_top2" in result.history.columns
  assert (m.final_val_top2 >= m.final_val_acc).all()  # top-2 at least top-1
  np.testing.assert_allclose(m.final_val_xent, m.final_val_loss, rtol=1e-5)
  np.testing.assert_allclose(m.test_xent, m.test_loss, rtol=1e-5)


@pytest.mark.parametrize("bad, match", [
    ({"acc": "cross_entropy"}, "always reported"),
    ({"not a name": "cross_entropy"}, "identifiers"),
    ({"x": "nope"}, "unknown loss"),
])
def test_bad_metrics_are_refused(bad, match):
  with pytest.raises(ConfigError, match=match):
    TrainSettings(metrics=bad)


def test_bfloat16_member_trains_finite_and_close_to_float32(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  # Learning rates below the noisy regime (at 0.2 float32 itself jumps between
  # evaluations), where rounding differences do not compound.
  table = grid.make_grid({"lr": (0.02, 0.05), "batch_size": (32,)})
  runs = {d: train_grid(model, digits, table, TrainSettings(epochs=2, dtype=d),
                        progress=False) for d in ("float32", "bfloat16")}
  bf16, f32 = runs["bfloat16"], runs["float32"]
  assert np.isfinite(bf16.members.final_val_loss).all()
  # Master weights and optimizer state stay float32.
  assert all(a.dtype == np.float32 for a in jax.tree.leaves(bf16.params))
  np.testing.assert_allclose(bf16.members.final_val_loss, f32.members.final_val_loss,
                             rtol=0.05)
  np.testing.assert_allclose(bf16.members.final_val_acc, f32.members.final_val_acc,
                             atol=0.05)
  diff = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()),
                                          bf16.params, f32.params)))
  assert diff > 0  # bfloat16 really computed in lower precision


def test_unknown_dtype_is_refused():
  with pytest.raises(ConfigError, match="dtype"):
    TrainSettings(dtype="float16")


def test_mixup_soft_labels_reach_a_custom_loss_as_they_reach_the_default(digits):
  def soft_cross_entropy(logits, labels):  # written out: -sum(labels * log_softmax)
    return -jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1)

  model = models.get_model("mlp", 10, **TINY_MLP)
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,), "aug": (1.0,),
                          "aug_mixup_alpha": (0.4,)})
  policy = augment.policy_for(digits.name, digits.image_shape)
  runs = [train_grid(model, digits, table,
                     TrainSettings(epochs=1, augment_policy=policy, loss=loss),
                     progress=False) for loss in ("cross_entropy", soft_cross_entropy)]
  assert np.isfinite(runs[1].members.final_val_loss).all()
  assert_trees_allclose(runs[0].params, runs[1].params, rtol=1e-4, atol=1e-5)
  plain = train_grid(model, digits, grid.make_grid({"lr": (0.1,), "batch_size": (32,)}),
                     TrainSettings(epochs=1, loss=soft_cross_entropy), progress=False)
  diff = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), runs[1].params, plain.params)
  assert max(jax.tree.leaves(diff)) > 1e-3  # mixup really changed the labels it trained on
