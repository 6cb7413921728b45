"""Convolutions as im2col + matmul, fast inside ``lax.scan`` on XLA:CPU.

On XLA:CPU (jax 0.10.2) a convolution whose dimension numbers are not the
canonical NHWC/HWIO layout is emitted as a naive elemental loop nest unless a
layout-canonicalising pass rewrites it into an Eigen call, and that pass only
reaches convolutions at the top level of the program. The backward pass of a
``flax.linen.Conv`` (the input gradient with a reversed kernel, the kernel
gradient with batch and feature swapped) holds such convolutions, so a training
step run inside ``lax.scan`` (a while loop) was 10-35x slower than the same step
jitted alone (``benchmarks/studies/conv_scan_study.py`` measures it).

``PatchConv`` computes the same function as ``nn.Conv`` from image patches and
one matmul: its forward and backward passes hold no convolution at all with the
default ``im2col="slices"`` (strided slices, a concatenation and a ``dot``), so
they compile to the same fast code at top level and inside a loop. Under the
engine's inner ``vmap`` (members sharing one input) the first layer's patches
are computed once and every member's kernel goes into one wide matmul.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

PaddingLike = str | Sequence[tuple[int, int]]


def _pairs(value: int | Sequence[int], n: int) -> tuple[int, ...]:
  if isinstance(value, int):
    return (value,) * n
  return tuple(value)


def extract_patches(x: jax.Array, kernel_size: Sequence[int], strides: Sequence[int],
                    padding: PaddingLike, method: str = "slices") -> jax.Array:
  """Image patches of an NHWC batch, flattened in ``(kh, kw, cin)`` order.

  Args:
    x: input of shape ``(..., H, W, C)`` (any number of leading batch axes).
    kernel_size: ``(kh, kw)``.
    strides: ``(sh, sw)``.
    padding: ``"SAME"``, ``"VALID"`` or ``((lo, hi), (lo, hi))``.
    method: ``"slices"`` (padding and ``kh * kw`` strided slices: no
      convolution in the forward or backward pass) or ``"patches"``
      (``lax.conv_general_dilated_patches``: a convolution with a one-hot
      kernel, whose gradient is a convolution again).

  Returns:
    Array of shape ``(..., OH, OW, kh * kw * C)``; ``patches @
    kernel.reshape(kh * kw * C, cout)`` is the convolution with an HWIO kernel.

  Example:
    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> extract_patches(x, (3, 3), (2, 2), "SAME").shape
    (1, 2, 2, 9)
  """
  kh, kw = kernel_size
  batch_shape, (h, w, c) = x.shape[:-3], x.shape[-3:]
  x = x.reshape((-1, h, w, c))
  if method == "patches":
    p = lax.conv_general_dilated_patches(
        x, (kh, kw), tuple(strides), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    # Features come out in (cin, kh, kw) order; reorder to (kh, kw, cin).
    p = p.reshape(p.shape[:3] + (c, kh * kw)).swapaxes(-1, -2)
  elif method == "slices":
    pads = padding
    if isinstance(padding, str):
      pads = lax.padtype_to_pads((h, w), (kh, kw), tuple(strides), padding)
    (plo_h, phi_h), (plo_w, phi_w) = pads
    xp = jnp.pad(x, ((0, 0), (plo_h, phi_h), (plo_w, phi_w), (0, 0)))
    sh, sw = strides
    oh = (h + plo_h + phi_h - kh) // sh + 1
    ow = (w + plo_w + phi_w - kw) // sw + 1
    n = x.shape[0]
    cols = [
        lax.slice(xp, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c),
                  (1, sh, sw, 1))
        for i in range(kh) for j in range(kw)
    ]
    p = jnp.stack(cols, axis=-2)
  else:
    raise ValueError(f"im2col method must be 'slices' or 'patches', got {method!r}")
  return p.reshape(batch_shape + p.shape[1:3] + (kh * kw * c,))


class PatchConv(nn.Module):
  """A 2-D NHWC convolution as im2col + matmul; a drop-in for ``nn.Conv``.

  Same parameters as ``nn.Conv`` (``kernel`` of shape ``(kh, kw, cin,
  features)``, ``bias`` of shape ``(features,)``, same default initialisers),
  so parameter trees are interchangeable; give it ``name="Conv_0"`` etc. to get
  the very same tree (and initial values) as a model built with ``nn.Conv``.
  No feature groups or dilation.

  Attributes:
    features: output channels.
    kernel_size: ``(kh, kw)``.
    strides: an int or ``(sh, sw)``.
    padding: ``"SAME"``, ``"VALID"`` or ``((lo, hi), (lo, hi))``.
    use_bias: add a bias.
    im2col: ``"slices"`` (default; no convolution anywhere) or ``"patches"``
      (``lax.conv_general_dilated_patches``), see ``extract_patches``.
    precision: passed to the matmul.
    kernel_init: as ``nn.Conv``'s.
    bias_init: as ``nn.Conv``'s.
    dtype: computation dtype (input and parameters are cast to it, as in
      ``nn.Conv``); ``None`` promotes the input's and the parameters' dtypes.
    param_dtype: parameter dtype.

  Example:
    >>> conv = PatchConv(8, (3, 3), strides=2)
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> params = conv.init(jax.random.key(0), x)
    >>> conv.apply(params, x).shape
    (2, 4, 4, 8)
  """

  features: int
  kernel_size: Sequence[int]
  strides: int | Sequence[int] = 1
  padding: PaddingLike = "SAME"
  use_bias: bool = True
  im2col: str = "slices"
  precision: Any = None
  kernel_init: Callable = nn.linear.default_kernel_init
  bias_init: Callable = nn.initializers.zeros_init()
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Convolves ``x`` of shape ``(..., H, W, cin)``."""
    kh, kw = self.kernel_size
    cin = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (kh, kw, cin, self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    # Cast before im2col, so the patches are built in the computation dtype.
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    patches = extract_patches(x, (kh, kw), _pairs(self.strides, 2), self.padding,
                              self.im2col)
    # One 2-D matmul over all output pixels. With the (..., OH, OW, K) patches as they
    # are, autodiff's kernel gradient contracts three axes and XLA:CPU runs it on a
    # transposed copy in a slow Eigen path: 1.3x slower training steps for the default
    # CNN (benchmarks/NOTES.md). Same values bit for bit.
    flat = patches.reshape(-1, patches.shape[-1])
    y = jnp.dot(flat, kernel.reshape(kh * kw * cin, self.features), precision=self.precision)
    y = y.reshape(patches.shape[:-1] + (self.features,))
    if bias is not None:
      y = y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)
    return y
