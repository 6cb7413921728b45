"""Tests for the built-in models of lrjax.models.builtin: MNIST1DCNN ("mnist1d_cnn")."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import experiment, models
from lrjax.models.builtin import MNIST1DCNN


def _final_length(length=40):
  # Conv1d output length: (L + 2 * padding - kernel) // stride + 1, padding 1, stride 2.
  for kernel in (5, 3, 3):
    length = (length + 2 - kernel) // 2 + 1
  return length


def _convbase_params(channels=25, num_classes=10):
  """Parameter count of the PyTorch ConvBase (mnist1d repository, notebooks/models.py)."""
  convs = (1 * channels * 5 + channels) + 2 * (channels * channels * 3 + channels)
  return convs + channels * _final_length() * num_classes + num_classes


def _count(params):
  return sum(p.size for p in jax.tree_util.tree_leaves(params))


def test_output_shape_and_param_count_equal_convbase_for_default_channels():
  assert _final_length() == 5  # 40 -> 19 -> 10 -> 5: ConvBase's linear_in = 25 * 5 = 125
  model = MNIST1DCNN(num_classes=10)
  x = jnp.zeros((7, 40, 1, 1))
  params = jax.jit(model.init)(jax.random.key(0), x)
  assert jax.jit(model.apply)(params, x).shape == (7, 10)
  assert _count(params) == _convbase_params() == 5210
  assert params["params"]["Dense_0"]["kernel"].shape == (125, 10)


def test_param_count_follows_channels_field_when_set():
  model = MNIST1DCNN(num_classes=3, channels=8)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 40, 1, 1)))
  assert _count(params) == _convbase_params(channels=8, num_classes=3)


def test_output_keeps_leading_batch_axes_and_vmaps_over_members():
  model = MNIST1DCNN(num_classes=10)
  x = jax.random.normal(jax.random.key(1), (3, 4, 40, 1, 1))
  params = jax.jit(model.init)(jax.random.key(0), x[0])
  apply = jax.jit(model.apply)
  many = apply(params, x)
  assert many.shape == (3, 4, 10)
  np.testing.assert_allclose(many[1], apply(params, x[1]), rtol=1e-5, atol=1e-5)
  # As the engine does: one parameter set per member, members sharing one input.
  keys = jax.random.split(jax.random.key(2), 2)
  stacked = jax.jit(jax.vmap(lambda k: model.init(k, x[0])))(keys)
  out = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))(stacked, x[0])
  assert out.shape == (2, 4, 10)


def _conv1d(x, weight, bias):
  """PyTorch's Conv1d(stride=2, padding=1) in numpy: x (N, Cin, L), weight (Cout, Cin, K)."""
  k = weight.shape[-1]
  xp = np.pad(x, ((0, 0), (0, 0), (1, 1)))
  length = (xp.shape[-1] - k) // 2 + 1
  windows = np.stack([xp[:, :, 2 * i:2 * i + k] for i in range(length)], axis=1)
  return np.einsum("nlck,ock->nol", windows, weight) + bias[None, :, None]


def test_forward_equals_numpy_convbase_with_ported_weights():
  model = MNIST1DCNN(num_classes=10)
  x = np.asarray(jax.random.normal(jax.random.key(1), (5, 40, 1, 1)))
  p = jax.tree_util.tree_map(np.asarray, jax.jit(model.init)(jax.random.key(0), x)["params"])
  h = x[:, :, 0, 0][:, None, :]  # ConvBase's (N, 1, L)
  for i in range(3):
    kernel = p[f"Conv_{i}"]["kernel"]  # (k, 1, cin, cout) -> PyTorch's (cout, cin, k)
    h = np.maximum(_conv1d(h, kernel[:, 0].transpose(2, 1, 0), p[f"Conv_{i}"]["bias"]), 0)
  # The model flattens (length, channel); PyTorch flattens (channel, length).
  dense = p["Dense_0"]["kernel"].reshape(5, 25, 10).transpose(1, 0, 2).reshape(125, 10)
  want = h.reshape(5, -1) @ dense + p["Dense_0"]["bias"]
  got = jax.jit(model.apply)({"params": p}, x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_get_model_builds_mnist1d_cnn_by_name_with_channels():
  assert models.BUILTIN_MODELS["mnist1d_cnn"] is MNIST1DCNN
  adapter = models.get_model("mnist1d_cnn", num_classes=10, channels=16)
  params = jax.jit(adapter.init)(jax.random.key(0), jnp.zeros((1, 40, 1, 1)))
  assert adapter.name == "mnist1d_cnn" and _count(params) == _convbase_params(channels=16)


def _mnist1d_config(epochs):
  # Greydanus 2020's optimizer: Adam at lr 1e-2, batch 100, constant learning rate.
  c = experiment.default_config()
  c.dataset, c.model, c.optimizer, c.schedule = "mnist1d", "mnist1d_cnn", "adam", "constant"
  c.epochs = epochs
  c.grid.lr, c.grid.batch_size, c.grid.seed = (0.01,), (100,), (0,)
  return c


def test_reaches_90_percent_test_accuracy_on_mnist1d_after_20_epochs(tmp_path):
  # 20 epochs of the 6,000 training examples = 1,200 updates, a fifth of the paper's
  # 6,000; about 6 s on 2 CPU cores. Seeds 0-4 end at 92.5-93.4% test accuracy.
  result = experiment.train_and_evaluate(_mnist1d_config(20), os.path.join(tmp_path, "run"),
                                         progress=False, writers=())
  (row,) = result.members.itertuples()
  assert row.updates == 1200 and not row.diverged
  assert row.test_acc >= 0.90
