"""ResNet for small images: the CIFAR architecture of He et al. 2016, Sec. 4.2.

A 3x3 convolution stem with 16 filters, then three stages of ``n`` basic blocks
with 16, 32 and 64 filters (times ``width``), the first block of stages 2 and 3
striding by 2; BatchNorm after every convolution, ReLU, global average pooling
and one dense layer. There are ``6n + 2`` weight layers, so ResNet-20 is
``n = 3`` (about 0.27M parameters), ResNet-56 ``n = 9``, ResNet-110 ``n = 18``.

Shortcuts follow the paper's option B: identity where the shape is unchanged,
a projection (1x1 convolution with the block's stride, then BatchNorm) where it
changes. The paper's CIFAR models use option A (zero-padded identity, no
parameters); option B adds 2,752 parameters to ResNet-20.

Convolutions are ``lrjax.models.conv.PatchConv`` (im2col + matmul: the same
function as ``nn.Conv``, fast inside ``lax.scan`` on XLA:CPU). The network takes
any input size: global average pooling follows whatever the strided stages leave
(32x32 -> 8x8, the built-in 8x8 digits -> 2x2).

BatchNorm keeps running statistics in the ``batch_stats`` collection:
``train=True`` normalises with the batch's statistics and updates them (apply
with ``mutable=["batch_stats"]``), ``train=False`` uses the running averages.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrjax.errors import ConfigError
from lrjax.models.conv import PatchConv

STAGE_FEATURES = (16, 32, 64)
# He et al.'s initialisation (their ref. [13]): N(0, 2 / fan_in), not truncated.
HE_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _compute_dtype(dtype: Any) -> jnp.dtype | None:
  """``dtype`` (a dtype or its name, e.g. ``"bfloat16"``) as a floating dtype; None stays
  None (Flax infers it from the inputs and parameters)."""
  if dtype is None:
    return None
  try:
    out = jnp.dtype(dtype)
  except TypeError:
    out = None
  if out is None or not jnp.issubdtype(out, jnp.floating):
    raise ConfigError(f"model_kwargs.dtype: a floating dtype such as 'float32' or "
                      f"'bfloat16'; got {dtype!r}.")
  return out


def _batch_norm(train: bool, dtype: Any, name: str | None = None) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, param_dtype=jnp.float32, name=name)


def _conv(features: int, kernel: int, strides: int, dtype: Any,
          name: str | None = None) -> PatchConv:
  # No bias: the BatchNorm that follows has its own.
  return PatchConv(features, (kernel, kernel), strides=strides, padding="SAME",
                   use_bias=False, kernel_init=HE_NORMAL,
                   dtype=dtype, param_dtype=jnp.float32, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with BatchNorm and a shortcut: ``relu(F(x) + shortcut(x))``.

  ``F`` is conv-BN-ReLU-conv-BN, the first convolution striding by ``strides``.
  The shortcut is the identity when ``x`` already has ``features`` channels and
  ``strides`` is 1, else a projection: 1x1 convolution with stride ``strides``,
  then BatchNorm (He et al. 2016, option B).

  Attributes:
    features: output channels.
    strides: stride of the first convolution and the projection.
    dtype: computation dtype or its name; None (default) infers it from the
      input and the parameters, as Flax layers do.

  Example:
    >>> block = BasicBlock(8, strides=2)
    >>> x = jnp.ones((2, 8, 8, 4))
    >>> variables = jax.eval_shape(block.init, jax.random.key(0), x)  # shapes only
    >>> sorted(variables["params"])
    ['bn1', 'bn2', 'conv1', 'conv2', 'proj_bn', 'proj_conv']
    >>> jax.eval_shape(block.apply, variables, x).shape
    (2, 4, 4, 8)
  """

  features: int
  strides: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Applies the block to ``x`` of shape ``(..., H, W, C)``."""
    dtype = _compute_dtype(self.dtype)
    y = _conv(self.features, 3, self.strides, dtype, "conv1")(x)
    y = nn.relu(_batch_norm(train, dtype, "bn1")(y))
    y = _conv(self.features, 3, 1, dtype, "conv2")(y)
    y = _batch_norm(train, dtype, "bn2")(y)
    shortcut = x
    if x.shape[-1] != self.features or self.strides != 1:
      shortcut = _conv(self.features, 1, self.strides, dtype, "proj_conv")(x)
      shortcut = _batch_norm(train, dtype, "proj_bn")(shortcut)
    return nn.relu(y + shortcut.astype(y.dtype))


def blocks_per_stage(depth: int) -> int:
  """``n`` for a CIFAR ResNet of ``depth = 6n + 2`` layers.

  Raises:
    ConfigError: ``depth`` is not ``6n + 2`` with ``n >= 1``.

  Example:
    >>> blocks_per_stage(20), blocks_per_stage(110)
    (3, 18)
  """
  if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
    raise ConfigError(f"model_kwargs.depth: a CIFAR ResNet has 6n+2 layers (8, 14, 20, "
                      f"32, 44, 56, 110, ...); got {depth!r}. Use e.g. depth=20.")
  return (depth - 2) // 6


class ResNet(nn.Module):
  """The CIFAR ResNet of He et al. 2016 (Sec. 4.2), ``depth = 6n + 2``.

  Stem (3x3 conv, 16 filters, BN, ReLU), three stages of ``n`` ``BasicBlock``s
  with ``(16, 32, 64) * width`` filters (stride 2 at stages 2 and 3; projection
  shortcuts where the shape changes), global average pooling, optional dropout,
  dense. Logits come back as float32 whatever ``dtype`` is, for a stable loss.

  Attributes:
    num_classes: outputs.
    depth: ``6n + 2`` (20, 32, 44, 56, 110, ...); anything else raises
      ``ConfigError`` naming ``model_kwargs.depth``.
    width: multiplier of the stage widths (16, 32, 64); ``0.25`` gives 4, 8, 16.
    dropout_rate: dropout before the dense layer when ``train`` (0 = none; then no
      ``dropout`` RNG is needed).
    dtype: computation dtype of convolutions, BatchNorm and the dense layer, e.g.
      ``jnp.bfloat16`` or its name ``"bfloat16"`` (as in a config's
      ``model_kwargs``); parameters are created float32. None (default) infers it
      from the input and the parameters as Flax layers do: float32, or bfloat16
      when the engine's mixed precision (``TrainSettings.dtype="bfloat16"``)
      casts both.

  Example:
    >>> model = ResNet(num_classes=10)  # ResNet-20
    >>> x = jnp.zeros((2, 32, 32, 3))
    >>> # model.init(key, x) gives the values; eval_shape only their shapes, fast.
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)
    >>> sum(p.size for p in jax.tree.leaves(variables["params"]))
    272474
    >>> train_step = lambda v: model.apply(v, x, train=True, mutable=["batch_stats"])
    >>> logits, updates = jax.eval_shape(train_step, variables)
    >>> logits.shape, list(updates)
    ((2, 10), ['batch_stats'])
  """

  num_classes: int = 10
  depth: int = 20
  width: float = 1.0
  dropout_rate: float = 0.0
  dtype: Any = None

  def __post_init__(self):
    blocks_per_stage(self.depth)
    _compute_dtype(self.dtype)
    if (isinstance(self.width, bool) or not isinstance(self.width, numbers.Real)
        or not self.width > 0 or round(STAGE_FEATURES[0] * self.width) < 1):
      raise ConfigError(f"model_kwargs.width: a multiplier of the stage widths (16, 32, 64) "
                        f"with at least 1 channel per stage, e.g. 1 or 0.25; got "
                        f"{self.width!r}.")
    if (isinstance(self.dropout_rate, bool) or not isinstance(self.dropout_rate, numbers.Real)
        or not 0.0 <= self.dropout_rate < 1.0):
      raise ConfigError(f"model_kwargs.dropout_rate: a probability in [0, 1) (0 = off); got "
                        f"{self.dropout_rate!r}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Logits for images ``x`` of shape ``(..., H, W, C)``.

    Args:
      x: float images, any number of leading batch axes.
      train: normalise with batch statistics and update ``batch_stats`` (apply
        with ``mutable=["batch_stats"]``), and apply dropout.
    """
    n = blocks_per_stage(self.depth)
    dtype = _compute_dtype(self.dtype)
    features = [round(f * self.width) for f in STAGE_FEATURES]
    x = _conv(features[0], 3, 1, dtype, "stem_conv")(x)
    x = nn.relu(_batch_norm(train, dtype, "stem_bn")(x))
    block = functools.partial(BasicBlock, dtype=dtype)
    for stage, f in enumerate(features):
      for i in range(n):
        strides = 2 if stage > 0 and i == 0 else 1
        x = block(f, strides, name=f"stage{stage + 1}_block{i + 1}")(x, train)
    x = jnp.mean(x, axis=(-3, -2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=dtype, param_dtype=jnp.float32,
                 name="head")(x)
    return x.astype(jnp.float32)
