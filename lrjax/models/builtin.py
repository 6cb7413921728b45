"""The built-in models, by name: a small MLP and CNN, an MNIST-1D CNN, the CIFAR ResNet.

``"mnist1d_cnn"`` is the 1-D convnet of Greydanus 2020 ("Scaling down deep
learning", ``ConvBase`` in the mnist1d repository) for the ``"mnist1d"`` dataset.
``"mlp"``, ``"cnn"`` and ``"mnist1d_cnn"`` carry no normalisation, so a member
accumulating its batch over micro-batches trains exactly as it would on the whole
batch (docs/DESIGN.md).
``"resnet20"`` and ``"resnet"`` (any ``depth = 6n + 2``; ``lrjax.models.resnet``)
carry BatchNorm. The engine computes their batch statistics per micro-batch
("ghost batch norm", Hoffer et al. 2017), so the normalisation batch is the
micro-batch, not the member's batch; setting ``bn_batch`` fixes the normalisation
batch for every member (docs/MODELS.md).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrjax.errors import ConfigError
from lrjax.models.adapters import ModelAdapter, from_linen
from lrjax.models.conv import PatchConv
from lrjax.models.resnet import ResNet


class MLP(nn.Module):
  """A ReLU multilayer perceptron on flattened images (default 256-256)."""

  num_classes: int = 10
  hidden: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[:-3] + (-1,))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


class CNN(nn.Module):
  """A small ReLU convnet: two 3x3 convolutions (the second strided), mean pool, dense."""

  num_classes: int = 10
  channels: Sequence[int] = (32, 64)

  @nn.compact
  def __call__(self, x):
    for i, ch in enumerate(self.channels):
      # im2col + matmul: inside lax.scan XLA:CPU runs nn.Conv's backward convolutions
      # on a naive path, 7-32x slower (benchmarks/studies/conv_scan_study.py). Same params as nn.Conv.
      x = nn.relu(PatchConv(ch, (3, 3), strides=(1, 1) if i == 0 else (2, 2),
                            name=f"Conv_{i}")(x))
    x = jnp.mean(x, axis=(-3, -2))
    return nn.Dense(self.num_classes)(x)


class MNIST1DCNN(nn.Module):
  """The MNIST-1D convnet of Greydanus 2020: three strided 1-D convolutions, dense.

  The mnist1d repository's ``ConvBase`` (``notebooks/models.py``): ``Conv1d(1, c,
  5, stride=2, padding=1)``, then twice ``Conv1d(c, c, 3, stride=2, padding=1)``,
  each followed by a ReLU, then the flattened features into one linear layer. On
  length 40 the lengths are 40 -> 19 -> 10 -> 5, so with ``channels=25`` the head
  takes 125 features and the model has 5,210 parameters, as ``ConvBase``.

  The sequence is the height axis of an NHWC image (``"mnist1d"`` gives ``(40, 1,
  1)``), so each convolution is a ``(k, 1)`` kernel with padding 1 along the
  height only. Two differences from the PyTorch model: the head reads the
  features in (length, channel) order rather than PyTorch's (channel, length), a
  permutation of its weight rows (the same functions; ported weights give the
  same outputs), and the parameters start from Flax's default initialisers
  (LeCun normal kernels, zero biases) rather than PyTorch's uniform ones, so a
  run does not retrace a PyTorch run's trajectory.

  With Adam at lr 1e-2, batch 100 and a constant learning rate (the paper's
  optimizer), 20 epochs of ``"mnist1d"``'s 6,000 training examples (1,200 updates)
  reach 92.5-93.4% test accuracy over seeds 0-4; the paper's 6,000 updates reach
  95.75% (seed 0).

  Attributes:
    num_classes: outputs.
    channels: channels of each convolution (25 in the paper).

  Example:
    >>> model = MNIST1DCNN(num_classes=10)
    >>> x = jnp.zeros((2, 40, 1, 1))
    >>> params = model.init(jax.random.key(0), x)
    >>> model.apply(params, x).shape
    (2, 10)
    >>> sum(p.size for p in jax.tree_util.tree_leaves(params))
    5210
  """

  num_classes: int = 10
  channels: int = 25

  @nn.compact
  def __call__(self, x):
    """Maps ``x`` of shape ``(..., L, 1, 1)`` (any leading batch axes) to logits."""
    for i, k in enumerate((5, 3, 3)):
      # im2col + matmul rather than nn.Conv: inside lax.scan XLA:CPU runs nn.Conv's
      # backward convolutions on a naive path (lrjax.models.conv). Padding 1 on the
      # sequence axis only, as the paper's Conv1d(padding=1).
      x = nn.relu(PatchConv(self.channels, (k, 1), strides=(2, 1),
                            padding=((1, 1), (0, 0)), name=f"Conv_{i}")(x))
    x = x.reshape(x.shape[:-3] + (-1,))
    return nn.Dense(self.num_classes)(x)


BUILTIN_MODELS = {"mlp": MLP, "cnn": CNN, "mnist1d_cnn": MNIST1DCNN, "resnet": ResNet,
                  "resnet20": ResNet}
# Built-in names that fix some fields of their class.
_FIXED_KWARGS = {"resnet20": {"depth": 20}}


def get_model(name: str, num_classes: int, **kwargs) -> ModelAdapter:
  """Builds a built-in model by name (a key of ``BUILTIN_MODELS``).

  Args:
    name: ``"mlp"``, ``"cnn"``, ``"mnist1d_cnn"`` (Greydanus 2020's convnet for
      ``"mnist1d"``; ``MNIST1DCNN``), ``"resnet20"`` or ``"resnet"`` (``depth``
      6n+2).
    num_classes: outputs.
    **kwargs: fields of the model's class (``model_kwargs`` in a config).

  Raises:
    ConfigError: an unknown name or field, or a bad field value.

  Example:
    >>> get_model("mlp", num_classes=10).name
    'mlp'
    >>> get_model("mnist1d_cnn", num_classes=10, channels=32).name
    'mnist1d_cnn'
    >>> get_model("resnet", num_classes=10, depth=32, width=0.5).name
    'resnet'
  """
  if name not in BUILTIN_MODELS:
    raise ConfigError(f"model: unknown model '{name}'. Use one of {sorted(BUILTIN_MODELS)}, "
                      f"or pass your own Flax model to lrjax.train_grid.")
  for field, value in _FIXED_KWARGS.get(name, {}).items():
    if kwargs.setdefault(field, value) != value:
      raise ConfigError(f"model_kwargs.{field}: model '{name}' has {field}={value!r}; got "
                        f"{kwargs[field]!r}. Drop model_kwargs.{field}, or use model="
                        f"'resnet' with model_kwargs.{field}={kwargs[field]!r}.")
  try:
    module = BUILTIN_MODELS[name](num_classes=num_classes, **kwargs)
  except TypeError as e:
    raise ConfigError(f"model_kwargs: {e}. Check the field names of lrjax.models."
                      f"{BUILTIN_MODELS[name].__name__}.") from None
  return from_linen(module, name)
