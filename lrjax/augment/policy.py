"""On-device augmentation of images and 1-D sequences with a continuous, per-member strength.

A `Policy` (static, hashable) says which ops exist and how strong each is at strength 1.
`magnitudes(policy, s)` maps a scalar strength `s` (a Python float or a traced per-member
scalar) to every op's magnitude; `augment_batch` applies them to an NHWC batch (images, or
1-D sequences laid out as (L, 1, 1) such as mnist1d's). Which ops
run is decided by the *keys* of the magnitude dict (static structure); how strong they are
by its *values* (traced arrays). There is no `lax.switch`/`cond`: every op is branch-free,
and a zero magnitude gives its input back bit-for-bit, so strength 0 is exactly the
identity. Under `jax.vmap` over members each member gets its own key and magnitudes.

Laws (u ~ U[-1, 1) and v ~ U[0, 1) drawn independently per image and per op):

- translation, m = `max_shift` magnitude in pixels: per axis, shift = floor(u (m + 1/2) + 1/2),
  zero fill. At integer m it is uniform on {-m, ..., m} (CIFAR's pad-m crop); at m = 0 it
  is 0. An axis of size 1 is never shifted (a shift could only blank the input), so a
  1-D sequence (L, 1, 1) shifts along the sequence only.
- flip: left-right with probability p (flip iff v < p); the identity when W = 1.
- rotation: angle = u * `rotate_deg`; zoom = 1 + u' * `scale`; one bilinear resample.
  Rotation needs H, W > 1 (ValueError on 1-D inputs); zoom alone on a 1-D input
  stretches the sequence.
- brightness: x + u b; contrast: (x - mean) (1 + u c) + mean; saturation: S (1 + u s);
  hue: H + u h turns; then clipped to `policy.value_range` ([0, 1]; not clipped when it
  is None, as for standardized features). Saturation and hue need RGB.
- cutout: a square of side `cutout_frac` * (H, W), centre uniform on the image, set to
  `policy.cutout_fill`. On a 1-D input the box spans the size-1 axis: a contiguous
  segment of `cutout_frac` * L points.
- mixup: lam ~ Beta(a, a) per image; x = lam x + (1 - lam) x_p, same for labels.
- cutmix: lam ~ Beta(a, a); a box of sides sqrt(1 - lam) (H, W), centre uniform, pasted
  from the partner; labels mixed by the box's true (clipped) area. On a 1-D input: a
  segment of (1 - lam) L points.
- noise: x + sigma z, not clipped; z a standard normal quantised to 16 bits
  (z = sqrt(2) erfinv(2 (k + 1/2) / 2^16 - 1), k uniform on 0..2^16-1: half the random bits).

The partner x_p is the batch rolled by a random offset. Order: flip/translate, rotation,
colour, cutout, mixup, cutmix, noise.

References: DeVries & Taylor 2017 (Cutout); Zhang et al. 2018 (mixup); Yun et al. 2019
(CutMix); Hoffer et al. 2019 and Fort et al. 2021 (augmentation multiplicity).
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from lrjax.augment import ops

# Op magnitudes, in the order they are applied.
OPS = ("max_shift", "flip_prob", "rotate_deg", "scale", "brightness", "contrast",
       "saturation", "hue", "cutout_frac", "mixup_alpha", "cutmix_alpha", "noise_std")
COLOUR_RGB_ONLY = ("saturation", "hue")
_MAX_FLIP_PROB = 0.5  # past 1/2 a flip adds no variety, it only makes flipped the norm


@dataclasses.dataclass(frozen=True)
class Policy:
  """Which augmentation ops exist and their magnitudes at strength 1.

  A magnitude at strength s is `value * s + beyond[op] * max(s - 1, 0)`, clipped at 0;
  `flip_prob` is also capped at 1/2. `beyond` holds ops (or extra slope) that join only
  above s = 1, so s in [0, 1] scales the dataset's standard recipe and s > 1 adds
  aggressive ops on top. An op is off when its value and its `beyond` slope are both 0
  (unless `magnitudes` gets an override for it).

  Attributes:
    name: a label for reports.
    max_shift: translation range in pixels (per axis).
    flip_prob: probability of a left-right flip.
    rotate_deg: maximum rotation in degrees.
    scale: maximum relative zoom change (0.1: zoom in [0.9, 1.1]).
    brightness: maximum additive brightness change.
    contrast: maximum relative contrast change.
    saturation: maximum relative saturation change (RGB only).
    hue: maximum hue rotation in turns (RGB only).
    cutout_frac: cutout square side as a fraction of the image side.
    mixup_alpha: mixup's Beta(a, a) parameter.
    cutmix_alpha: CutMix's Beta(a, a) parameter.
    noise_std: Gaussian noise standard deviation, in input units (images are in [0, 1];
      mnist1d's sequences are standardized).
    beyond: (op, slope) pairs: magnitude added per unit of strength above 1.
    cutout_fill: the value erased pixels get (0 is the mean of standardized inputs).
    value_range: (lo, hi), the range of the inputs, which colour ops clip their result
      to; None for unbounded (standardized) features: nothing is clipped.

  >>> Policy(max_shift=4, flip_prob=.5).max_shift
  4
  """
  name: str = "custom"
  max_shift: float = 0.0
  flip_prob: float = 0.0
  rotate_deg: float = 0.0
  scale: float = 0.0
  brightness: float = 0.0
  contrast: float = 0.0
  saturation: float = 0.0
  hue: float = 0.0
  cutout_frac: float = 0.0
  mixup_alpha: float = 0.0
  cutmix_alpha: float = 0.0
  noise_std: float = 0.0
  beyond: tuple = ()
  cutout_fill: float = 0.0
  value_range: tuple | None = (0.0, 1.0)

  def __post_init__(self):
    # Tuples all the way down, so the policy stays hashable (static under jit).
    object.__setattr__(self, "beyond", tuple((str(op), float(e)) for op, e in self.beyond))
    if self.value_range is not None:
      lo, hi = (float(v) for v in self.value_range)
      object.__setattr__(self, "value_range", (lo, hi))
    for op, _ in self.beyond:
      if op not in OPS:
        raise ValueError(f"unknown augmentation op {op!r} in beyond; known: {OPS}")


_RGB_BEYOND = (("rotate_deg", 10.0), ("scale", 0.1), ("brightness", 0.2),
               ("contrast", 0.2), ("saturation", 0.2), ("hue", 0.05),
               ("cutout_frac", 0.5))
_GRAY_BEYOND = (("scale", 0.1), ("noise_std", 0.05), ("cutout_frac", 0.3))


def policy_for(dataset: str, image_shape: tuple) -> Policy:
  """The dataset's standard recipe at strength 1, with aggressive extras above it.

  | dataset | s = 1 | added above s = 1 (per unit of s - 1) |
  |---|---|---|
  | digits (8x8x1) | shift 1 px, rotate 10 deg, noise 0.05 | scale 0.1, noise 0.05, cutout 0.3 |
  | mnist, fashion_mnist, kmnist, emnist | shift 2 px | rotate 10, scale 0.1, noise 0.05, cutout 0.3 |
  | cifar10, cifar100 | shift 4 px, flip 0.5 | rotate 10, scale 0.1, colour jitter, cutout 0.5 |
  | svhn_cropped | shift 4 px | the same, no flip |
  | mnist1d (40x1x1 sequence) | shift 4 points, noise 0.15, cutout 0.15 | mixup 0.4 |
  | anything else | shift H/8 px | noise 0.05 (+ brightness/contrast 0.1 on RGB) |

  Digits and SVHN never flip (a flipped 2 or 5 is another glyph); colour ops only on RGB.
  MNIST-1D shifts along the sequence only, never flips (time reversal or negation makes
  another digit), rotates or zooms, and is not clipped (its values are standardized,
  about -5..5); cutout erases a segment to 0, the data mean.

  Args:
    dataset: a dataset name; a TFDS version suffix (`cifar10:3.0.2`) is ignored.
    image_shape: (H, W, C).

  Returns:
    A `Policy`.

  >>> policy_for("cifar10", (32, 32, 3)).flip_prob
  0.5
  >>> policy_for("mnist1d", (40, 1, 1)).value_range is None
  True
  """
  name = dataset.split(":")[0].lower()
  h, w, c = image_shape
  rgb = c == 3
  fill = 0.5 if rgb else 0.0  # grey on colour images, background on digit-like ones
  if name == "digits":
    return Policy(name=name, max_shift=1.0, rotate_deg=10.0, noise_std=0.05,
                  beyond=(("scale", 0.1), ("noise_std", 0.05), ("cutout_frac", 0.3)))
  if name == "mnist1d":
    # Standardized units (std 1): the generator's own i.i.d. noise is ~0.13, its
    # translations reach ~26 of 40 points, so these preserve the label.
    return Policy(name=name, max_shift=4.0, noise_std=0.15, cutout_frac=0.15,
                  beyond=(("mixup_alpha", 0.4),), cutout_fill=0.0, value_range=None)
  if name in ("mnist", "fashion_mnist", "kmnist", "emnist"):
    return Policy(name=name, max_shift=2.0,
                  beyond=(("rotate_deg", 10.0),) + _GRAY_BEYOND)
  if name in ("cifar10", "cifar100", "svhn_cropped"):
    flip = 0.0 if name == "svhn_cropped" else 0.5
    beyond = _RGB_BEYOND if rgb else _GRAY_BEYOND
    return Policy(name=name, max_shift=4.0, flip_prob=flip, beyond=beyond,
                  cutout_fill=fill)
  beyond = (("noise_std", 0.05),)
  if rgb:
    beyond += (("brightness", 0.1), ("contrast", 0.1))
  return Policy(name="generic", max_shift=float(max(1, round(min(h, w) / 8))),
                beyond=beyond, cutout_fill=fill)


def magnitudes(policy: Policy, strength, **overrides) -> dict:
  """Maps a scalar strength to the magnitude of every op the policy (or overrides) enables.

  Args:
    policy: a `Policy`.
    strength: a scalar, possibly traced (one per member under vmap).
    **overrides: op name -> magnitude (possibly traced), replacing the policy's law, so one
      op's magnitude can be its own grid axis; an override also enables an op the policy
      leaves off. Taken as given (flip_prob is clipped to [0, 1] when applied).

  Returns:
    A dict op name -> float32 scalar, with keys in `OPS` order; the key set is static.

  >>> m = magnitudes(policy_for("cifar10", (32, 32, 3)), 0.5)
  >>> float(m["max_shift"]), float(m["flip_prob"])
  (2.0, 0.25)
  """
  unknown = set(overrides) - set(OPS)
  if unknown:
    raise ValueError(f"unknown augmentation ops {sorted(unknown)}; known: {OPS}")
  s = jnp.asarray(strength, jnp.float32)
  above = jnp.maximum(s - 1.0, 0.0)
  slopes = dict(policy.beyond)
  mags = {}
  for op in OPS:
    if op in overrides:
      mags[op] = jnp.asarray(overrides[op], jnp.float32)
      continue
    base, extra = float(getattr(policy, op)), float(slopes.get(op, 0.0))
    if base == 0.0 and extra == 0.0:
      continue
    m = jnp.maximum(base * s + extra * above, 0.0)
    mags[op] = jnp.minimum(m, _MAX_FLIP_PROB) if op == "flip_prob" else m
  return mags


def drop_inactive(mags: dict) -> dict:
  """Drops the ops whose (concrete) magnitudes are 0 for every member: host-side pruning.

  Under vmap every op in the dict is computed for every member, even at magnitude 0. A
  grid whose strengths are known before compiling (they always are) can leave out the ops
  no member uses, e.g. CIFAR's rotation and colour jitter when no strength exceeds 1.

  Args:
    mags: op -> magnitudes with a leading member axis (numpy or concrete jax arrays).

  Returns:
    The same dict without the ops that are 0 everywhere.

  >>> pol = policy_for("cifar10", (32, 32, 3))
  >>> mags = jax.vmap(lambda s: magnitudes(pol, s))(jnp.array([0.0, 1.0]))
  >>> sorted(drop_inactive(mags))
  ['flip_prob', 'max_shift']
  """
  return {op: m for op, m in mags.items() if np.any(np.asarray(m) > 0)}


def _layout():
  """Row slices of the per-image uniform table: fixed, so ops never share draws."""
  rows = (("shift", 2), ("flip", 1), ("rotate", 1), ("scale", 1), ("brightness", 1),
          ("contrast", 1), ("saturation", 1), ("hue", 1), ("cutout", 2),
          ("mixup_partner", 1), ("mixup_beta", ops.BETA_ROWS), ("cutmix_partner", 1),
          ("cutmix_beta", ops.BETA_ROWS), ("cutmix_box", 2))
  out, start = {}, 0
  for name, size in rows:
    out[name] = slice(start, start + size)
    start += size
  return out, start


_ROWS, _N_ROWS = _layout()


def augment_batch(key, images, labels, mags: dict, policy: Policy,
                  multiplicity: int = 1) -> tuple:
  """Augments a batch: `multiplicity` independently augmented copies of each example.

  Args:
    key: a PRNG key (one per member under vmap).
    images: (b, H, W, C) float inputs (`lrjax.data.to_float`): images in [0, 1], or
      scaled features such as mnist1d's standardized sequences, (b, 40, 1, 1).
    labels: (b, K) float one-hot or soft labels.
    mags: from `magnitudes`; its keys choose the ops, its values their strengths.
    policy: the `Policy` (static; supplies `cutout_fill`).
    multiplicity: M copies per example (Hoffer et al. 2019); copy m of example i is row
      m * b + i.

  Returns:
    (images (b M, H, W, C) of the input dtype, labels (b M, K) float32 summing to 1 per
    row when the input rows do). With every magnitude 0 the images are the input, tiled,
    bit-for-bit.

  >>> pol = policy_for("digits", (8, 8, 1))
  >>> x, y = jnp.zeros((4, 8, 8, 1)), jax.nn.one_hot(jnp.arange(4), 10)
  >>> xa, ya = jax.jit(augment_batch, static_argnums=(4, 5))(
  ...     jax.random.key(0), x, y, magnitudes(pol, 1.0), pol, 2)
  >>> xa.shape, ya.shape
  ((8, 8, 8, 1), (8, 10))
  """
  unknown = set(mags) - set(OPS)
  if unknown:
    raise ValueError(f"unknown augmentation ops {sorted(unknown)}; known: {OPS}")
  dtype = images.dtype
  x = jnp.tile(images.astype(jnp.float32), (multiplicity, 1, 1, 1))
  y = jnp.tile(labels.astype(jnp.float32), (multiplicity, 1))
  n, h, w, c = x.shape
  if c != 3 and any(op in mags for op in COLOUR_RGB_ONLY):
    raise ValueError(f"saturation/hue need RGB images, got {c} channels")
  if "rotate_deg" in mags and (h == 1 or w == 1):
    raise ValueError(f"rotate_deg needs 2-D images, got (H, W) = ({h}, {w}): a rotation "
                     f"would mix a 1-D sequence's axis with its size-1 axis")
  zero = jnp.zeros((), jnp.float32)
  mag = {op: mags.get(op, zero) for op in OPS}
  on = {op: mag[op] > 0 for op in OPS}
  # Every per-image draw comes from one flat threefry call: each jax.random call adds
  # a full threefry graph, and ~20 of them made XLA:CPU compile this in ~15 s.
  k_table, k_noise = jax.random.split(key)
  table = jax.random.uniform(k_table, (_N_ROWS * n,)).reshape(_N_ROWS, n)
  u = {name: table[rows] for name, rows in _ROWS.items()}  # each (rows, n), in [0, 1)
  sym = lambda name: 2.0 * u[name][0] - 1.0  # U[-1, 1)

  if "max_shift" in mags or "flip_prob" in mags:
    dy, dx = (jnp.floor((2.0 * u["shift"][i] - 1.0) * (mag["max_shift"] + 0.5) + 0.5)
              .astype(jnp.int32) if size > 1 else jnp.zeros((n,), jnp.int32)
              for i, size in enumerate((h, w)))  # a size-1 axis: shifting only blanks
    flip = u["flip"][0] < jnp.clip(mag["flip_prob"], 0.0, 1.0)
    x = jnp.where(on["max_shift"] | on["flip_prob"], ops.flip_translate(x, dy, dx, flip), x)

  if "rotate_deg" in mags or "scale" in mags:
    angle = sym("rotate") * mag["rotate_deg"] * (math.pi / 180)
    zoom = jnp.maximum(1.0 + sym("scale") * mag["scale"], 0.05)  # zoom <= 0 would flip
    x = jnp.where(on["rotate_deg"] | on["scale"], ops.rotate_scale(x, angle, zoom), x)

  # Colour: every branch is an elementwise chain (plus one small mean), one clip at the end.
  colour = jnp.zeros((), bool)
  if "brightness" in mags:
    x = jnp.where(on["brightness"],
                  ops.brightness(x, sym("brightness") * mag["brightness"]), x)
    colour = colour | on["brightness"]
  if "contrast" in mags:
    x = jnp.where(on["contrast"], ops.contrast(x, 1.0 + sym("contrast") * mag["contrast"]), x)
    colour = colour | on["contrast"]
  if "saturation" in mags or "hue" in mags:
    on_sh = on["saturation"] | on["hue"]
    x_sh = ops.saturation_hue(x, 1.0 + sym("saturation") * mag["saturation"],
                              sym("hue") * mag["hue"])
    x = jnp.where(on_sh, x_sh, x)
    colour = colour | on_sh
  if (any(op in mags for op in ("brightness", "contrast", "saturation", "hue"))
      and policy.value_range is not None):
    x = jnp.where(colour, jnp.clip(x, *policy.value_range), x)

  def box_sides(frac):
    """Box sides for a side fraction (n,): a size-1 axis (1-D input) is spanned whole."""
    whole = jnp.full_like(frac, 2.0)  # |centre - 0.5| < 1 for any centre in [0, 1)
    return (whole if h == 1 else frac * h), (whole if w == 1 else frac * w)

  if "cutout_frac" in mags:
    side = jnp.full((n,), mag["cutout_frac"])
    mask = ops.box_mask(h, w, u["cutout"][0] * h, u["cutout"][1] * w, *box_sides(side))
    fill = jnp.asarray(policy.cutout_fill, x.dtype)
    x = jnp.where(on["cutout_frac"] & mask[..., None], fill, x)

  if "mixup_alpha" in mags:
    partner = ops.partner_index(u["mixup_partner"][0, 0], n)
    lam = ops.beta(u["mixup_beta"], mag["mixup_alpha"])
    mixed_x = ops._per_image(lam) * x + ops._per_image(1 - lam) * x[partner]
    mixed_y = lam[:, None] * y + (1 - lam)[:, None] * y[partner]
    x = jnp.where(on["mixup_alpha"], mixed_x, x)
    y = jnp.where(on["mixup_alpha"], mixed_y, y)

  if "cutmix_alpha" in mags:
    partner = ops.partner_index(u["cutmix_partner"][0, 0], n)
    frac = 1.0 - ops.beta(u["cutmix_beta"], mag["cutmix_alpha"])  # the pasted fraction
    side = frac if h == 1 or w == 1 else jnp.sqrt(frac)  # 1-D: a segment; 2-D: a box
    mask = ops.box_mask(h, w, u["cutmix_box"][0] * h, u["cutmix_box"][1] * w,
                        *box_sides(side))
    area = jnp.mean(mask.astype(jnp.float32), axis=(1, 2))  # the clipped box: labels match
    mixed_x = jnp.where(mask[..., None], x[partner], x)
    mixed_y = (1 - area)[:, None] * y + area[:, None] * y[partner]
    x = jnp.where(on["cutmix_alpha"], mixed_x, x)
    y = jnp.where(on["cutmix_alpha"], mixed_y, y)

  if "noise_std" in mags:
    noise = ops.normal16(k_noise, x.shape)
    x = jnp.where(on["noise_std"], x + mag["noise_std"] * noise, x)

  return x.astype(dtype), y
