"""The built-in models, by name: a small MLP and CNN, and the CIFAR ResNet.

``"mlp"`` and ``"cnn"`` carry no normalisation, so a member accumulating its batch
over micro-batches trains exactly as it would on the whole batch (docs/DESIGN.md).
``"resnet20"`` and ``"resnet"`` (any ``depth = 6n + 2``; ``lrjax.models.resnet``)
carry BatchNorm. The engine computes their batch statistics per micro-batch
("ghost batch norm", Hoffer et al. 2017), so the normalisation batch is the
micro-batch, not the member's batch; setting ``bn_batch`` fixes the normalisation
batch for every member (docs/MODELS.md).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
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


BUILTIN_MODELS = {"mlp": MLP, "cnn": CNN, "resnet": ResNet, "resnet20": ResNet}
# Built-in names that fix some fields of their class.
_FIXED_KWARGS = {"resnet20": {"depth": 20}}


def get_model(name: str, num_classes: int, **kwargs) -> ModelAdapter:
  """Builds a built-in model by name (a key of ``BUILTIN_MODELS``).

  Args:
    name: ``"mlp"``, ``"cnn"``, ``"resnet20"`` or ``"resnet"`` (``depth`` 6n+2).
    num_classes: outputs.
    **kwargs: fields of the model's class (``model_kwargs`` in a config).

  Raises:
    ConfigError: an unknown name or field, or a bad field value.

  Example:
    >>> get_model("mlp", num_classes=10).name
    'mlp'
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
