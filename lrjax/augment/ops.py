"""Batched image ops behind `lrjax.augment`: NHWC float batches, per-image random draws.

Every op takes the per-image random draws as arrays (never Python numbers), so it is
jit- and vmap-compatible and branch-free. Geometric ops are gathers: under a member vmap
they stay gathers instead of becoming per-member convolutions or `lax.switch` branches.
Callers guard each op with `jnp.where(magnitude > 0, op(x), x)` so that a zero magnitude
returns the input bit-for-bit.
"""
import math

import jax
import jax.numpy as jnp
import dm_pix


def per_image(v):
  """(n,) -> (n, 1, 1, 1): a per-image value broadcast over an NHWC batch, explicit so
  rank promotion stays off.

  >>> per_image(jnp.arange(3.)).shape
  (3, 1, 1, 1)
  """
  return v[:, None, None, None]


def flip_translate(x, dy, dx, flip):
  """Flips (left-right) then translates each image by integer pixels, zero fill.

  One gather per batch: output pixel (i, j) of image k reads input pixel
  (i - dy[k], j') with j' = j - dx[k], or W - 1 - (j - dx[k]) when flip[k].

  Args:
    x: (n, H, W, C) images.
    dy: (n,) int32 row shifts (positive moves content down).
    dx: (n,) int32 column shifts (positive moves content right).
    flip: (n,) bool, flip left-right before translating.

  Returns:
    (n, H, W, C) images; pixels shifted in from outside are 0.

  >>> x = jnp.arange(4.).reshape(1, 2, 2, 1)
  >>> flip_translate(x, jnp.array([0]), jnp.array([1]), jnp.array([False]))[0, ..., 0]
  Array([[0., 0.],
         [0., 2.]], dtype=float32)
  """
  n, h, w, c = x.shape
  rows = jnp.arange(h)[None, :] - dy[:, None]  # (n, h)
  cols = jnp.arange(w)[None, :] - dx[:, None]  # (n, w)
  valid = (((rows >= 0) & (rows < h))[:, :, None]
           & ((cols >= 0) & (cols < w))[:, None, :])  # (n, h, w)
  cols = jnp.where(flip[:, None], w - 1 - cols, cols)
  idx = (jnp.clip(rows, 0, h - 1)[:, :, None] * w
         + jnp.clip(cols, 0, w - 1)[:, None, :])  # (n, h, w)
  out = jnp.take_along_axis(x.reshape(n, h * w, c), idx.reshape(n, h * w, 1), axis=1)
  out = out.reshape(n, h, w, c)
  return jnp.where(valid[..., None], out, jnp.zeros((), x.dtype))


def rotate_scale(x, angle, zoom):
  """Rotates by `angle` radians and zooms by `zoom` about the centre: bilinear, zero fill.

  Hand-written rather than `dm_pix.affine_transform`: that one resamples in 3-D (the
  channel axis too, 8 corners per sample, coordinates per channel) and takes one image,
  so it is vmapped per image; this one does 4 flat gathers for the whole batch and
  measured faster on CPU (see docs/AUGMENT.md).

  Output pixel p reads the input at c + R(-angle) (p - c) / zoom, c the image centre.

  Args:
    x: (n, H, W, C) images.
    angle: (n,) counter-clockwise angles in radians.
    zoom: (n,) positive zoom factors (> 1 enlarges the content).

  Returns:
    (n, H, W, C) images.

  >>> x = jnp.ones((1, 4, 4, 1))
  >>> rotate_scale(x, jnp.zeros(1), jnp.ones(1)).shape
  (1, 4, 4, 1)
  """
  n, h, w, c = x.shape
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  ii, jj = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - cy,
                        jnp.arange(w, dtype=jnp.float32) - cx, indexing="ij")
  cos = (jnp.cos(angle) / zoom)[:, None, None]
  sin = (jnp.sin(angle) / zoom)[:, None, None]
  # Rows point down: an on-screen counter-clockwise turn pulls from R(-angle) in (x, -y).
  src_y = cos * ii[None] + sin * jj[None] + cy
  src_x = cos * jj[None] - sin * ii[None] + cx
  y0 = jnp.floor(src_y)
  x0 = jnp.floor(src_x)
  wy = (src_y - y0)[..., None]
  wx = (src_x - x0)[..., None]
  y0 = y0.astype(jnp.int32)
  x0 = x0.astype(jnp.int32)
  flat = x.reshape(n, h * w, c)

  def corner(yi, xi):
    ok = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
    idx = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
    v = jnp.take_along_axis(flat, idx.reshape(n, h * w, 1), axis=1).reshape(n, h, w, c)
    return jnp.where(ok[..., None], v, jnp.zeros((), x.dtype))

  top = corner(y0, x0) * (1 - wx) + corner(y0, x0 + 1) * wx
  bottom = corner(y0 + 1, x0) * (1 - wx) + corner(y0 + 1, x0 + 1) * wx
  return (top * (1 - wy) + bottom * wy).astype(x.dtype)


def brightness(x, delta):
  """Adds `delta` (n,) per image (dm-pix's `adjust_brightness`, as tf.image's); any channels.

  >>> brightness(jnp.full((1, 2, 2, 1), .5), jnp.array([.1]))[0, 0, 0]
  Array([0.6], dtype=float32)
  """
  return dm_pix.adjust_brightness(x, per_image(delta))


def contrast(x, factor):
  """Scales each image's deviation from its channel means by `factor` (n,) (dm-pix).

  >>> contrast(jnp.array([[[[0.], [1.]]]]), jnp.array([.5]))[0, 0, :, 0]
  Array([0.25, 0.75], dtype=float32)
  """
  return dm_pix.adjust_contrast(x, per_image(factor))


def normal16(key, shape):
  """Standard normal draws quantised to 16 bits: two per 32-bit threefry word.

  Generating random bits is most of the cost of pixel noise on CPU (a full-size
  `jax.random.normal` took ~35x an add); 65536 levels (tails cut at 4.3 sigma, variance
  0.9999) are far finer than the 8-bit images being perturbed.

  >>> z = normal16(jax.random.key(0), (100000,))
  >>> bool(abs(z.std() - 1) < 0.01)
  True
  """
  size = math.prod(shape)
  bits = jax.random.bits(key, ((size + 1) // 2,), jnp.uint32)
  k = jnp.concatenate([bits & 0xFFFF, bits >> 16])[:size].astype(jnp.float32)
  u = (k + 0.5) * (2.0 / 65536.0) - 1.0
  return (math.sqrt(2.0) * jax.lax.erf_inv(u)).reshape(shape)


def saturation_hue(x, factor, delta):
  """Scales HSV saturation by `factor` and rotates hue by `delta` turns (RGB only).

  One RGB->HSV->RGB round trip for both (dm-pix's `adjust_saturation` and `adjust_hue`
  would do two).

  >>> x = jnp.array([[[[1., 0., 0.]]]])
  >>> saturation_hue(x, jnp.ones(1), jnp.array([1 / 3]))[0, 0, 0].round(4)
  Array([0., 1., 0.], dtype=float32)
  """
  hsv = dm_pix.rgb_to_hsv(x)
  h = jnp.mod(hsv[..., 0] + delta[:, None, None], 1.0)
  s = jnp.clip(hsv[..., 1] * factor[:, None, None], 0.0, 1.0)
  return dm_pix.hsv_to_rgb(jnp.stack([h, s, hsv[..., 2]], axis=-1))


def box_mask(h, w, cy, cx, size_y, size_x):
  """(n, H, W) bool: pixels whose centres lie in the box centred (cy, cx), sides size_*.

  Boxes may hang over the border (they are clipped), as in Cutout (DeVries & Taylor 2017).
  A zero-size box selects no pixel.

  >>> box_mask(4, 4, jnp.array([2.]), jnp.array([2.]), jnp.array([2.]), jnp.array([2.]))[0]
  Array([[False, False, False, False],
         [False,  True,  True, False],
         [False,  True,  True, False],
         [False, False, False, False]], dtype=bool)
  """
  py = jnp.arange(h, dtype=jnp.float32)[None, :] + 0.5
  px = jnp.arange(w, dtype=jnp.float32)[None, :] + 0.5
  in_y = jnp.abs(py - cy[:, None]) < size_y[:, None] / 2
  in_x = jnp.abs(px - cx[:, None]) < size_x[:, None] / 2
  return in_y[:, :, None] & in_x[:, None, :]


def partner_index(u, n):
  """Each image's mixing partner: the batch rolled by an offset in [1, n) set by u in [0, 1).

  A roll is one gather (a permutation would be a sort per member); no image pairs with
  itself when n > 1.

  >>> partner_index(jnp.float32(0.5), 4)
  Array([2, 3, 0, 1], dtype=int32)
  """
  k = 1 + jnp.floor(u * (n - 1)).astype(jnp.int32)
  return (jnp.arange(n, dtype=jnp.int32) + k) % n


BETA_TRIES = 6
BETA_ROWS = 4 * BETA_TRIES + 2  # uniform rows `beta` consumes per image


def beta(u, alpha):
  """Beta(alpha, alpha) draws from uniforms u of shape (BETA_ROWS, n); 1.0 where alpha <= 0.

  Hand-written because `jax.random.beta` (a while-loop rejection sampler) took ~8 s to
  compile on a 2-core CPU, and taking uniforms (not a key) lets all of an augmentation's
  draws come from one threefry call. Beta = G1 / (G1 + G2), with Gamma(alpha) drawn as
  Gamma(alpha + 1) * U^(1/alpha) (kept in logs, so a tiny alpha cannot give 0/0) and
  Gamma(alpha + 1) by Marsaglia & Tsang (2000) with BETA_TRIES proposals in parallel: each
  is accepted with probability > 0.95, so all fail with probability < 1e-7 (the first
  proposal is then used).

  >>> u = jax.random.uniform(jax.random.key(0), (BETA_ROWS, 10000))
  >>> bool(abs(beta(u, jnp.float32(0.4)).mean() - 0.5) < 0.02)
  True
  """
  n = u.shape[1]
  t = BETA_TRIES
  on = alpha > 0
  a = jnp.where(on, alpha, 1.0)
  d = a + 1.0 - 1.0 / 3.0
  c = 1.0 / jnp.sqrt(9.0 * d)
  tiny = jnp.float32(1e-7)
  # Rows [0, 2t): normals for 2n gammas; [2t, 4t): acceptance; last 2: the U^(1/alpha) boost.
  z = jnp.sqrt(2.0) * jax.lax.erf_inv(jnp.clip(2.0 * u[:2 * t] - 1.0, -1.0 + tiny, 1.0 - tiny))
  z = z.reshape(t, 2 * n)
  log_u = jnp.log(jnp.maximum(u[2 * t:4 * t], tiny)).reshape(t, 2 * n)
  v = (1.0 + c * z) ** 3
  log_v = jnp.log(jnp.maximum(v, 1e-30))
  ok = (v > 0) & (log_u < 0.5 * z * z + d - d * v + d * log_v)
  first = jnp.argmax(ok, axis=0)  # the first accepted proposal
  log_g = jnp.log(d) + jnp.take_along_axis(log_v, first[None], axis=0)[0]
  log_g = log_g + jnp.log(jnp.maximum(u[4 * t:].reshape(2 * n), tiny)) / a
  lam = jax.nn.sigmoid(log_g[:n] - log_g[n:])
  return jnp.where(on, lam, 1.0)
