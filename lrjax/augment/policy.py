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
colour, cutout, mixup, cutmix, noise. `STAGES` is the ops' registry, in that order: each
stage's function, its ops (`OP_REGISTRY`: what each magnitude means, its default and
bound) and the random draws it reads.

References: DeVries & Taylor 2017 (Cutout); Zhang et al. 2018 (mixup); Yun et al. 2019
(CutMix); Hoffer et al. 2019 and Fort et al. 2021 (augmentation multiplicity).
"""
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrjax.augment import ops

COLOUR_RGB_ONLY = ("saturation", "hue")


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


def policy_for_dataset(dataset) -> Policy:
  """The policy of a ``lrjax.data.Dataset``: its name's recipe (``policy_for``), unless
  its ``kind`` says its inputs are no images.

  | kind | s = 1 | added above s = 1 |
  |---|---|---|
  | image | ``policy_for(name, shape)`` | (its recipe's) |
  | sequence (L, 1, 1) | shift L/10 points, noise 0.15, cutout 0.15 (MNIST-1D's ops) | mixup 0.4 |
  | tabular (F, 1, 1) | noise 0.1 | mixup 0.4 |

  Sequence and tabular inputs are standardised (``lrjax.data.from_arrays``), so noise
  is in standard deviations and nothing is clipped; a feature order has no
  neighbourhood, so tabular rows are never shifted or cut.

  Example:
    >>> from lrjax.data import from_arrays
    >>> ds = from_arrays(np.random.rand(40, 5), np.arange(40) % 2, name="t", kind="tabular")
    >>> p = policy_for_dataset(ds)
    >>> p.name, p.noise_std, p.max_shift, p.beyond
    ('tabular', 0.1, 0.0, (('mixup_alpha', 0.4),))
  """
  kind = getattr(dataset, "kind", "image")
  if kind == "tabular":
    return Policy(name="tabular", noise_std=0.1, beyond=(("mixup_alpha", 0.4),),
                  value_range=None)
  if kind == "sequence" and dataset.name.split(":")[0].lower() != "mnist1d":
    length = dataset.image_shape[0]
    return Policy(name="sequence", max_shift=float(max(1, round(length / 10))),
                  noise_std=0.15, cutout_frac=0.15, beyond=(("mixup_alpha", 0.4),),
                  cutout_fill=0.0, value_range=None)
  return policy_for(dataset.name, dataset.image_shape)


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
    limit = OP_REGISTRY[op].limit
    mags[op] = m if limit is None else jnp.minimum(m, limit)
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


class _Batch(NamedTuple):
  """The batch as one stage hands it to the next."""
  x: jax.Array  # (n, H, W, C) float32 images
  y: jax.Array  # (n, K) float32 labels
  colour: jax.Array  # bool scalar: a colour op is on, so the colour clip applies


@dataclasses.dataclass(frozen=True)
class _Draws:
  """What every stage of one `augment_batch` call reads: magnitudes and random draws.

  Attributes:
    mag: every op's magnitude (0 for an op the magnitude dict leaves out).
    on: every op's `mag > 0`, the guard that makes a zero magnitude the identity.
    u: each draw's uniforms in [0, 1), (rows, n) (`Stage.draws`).
    key_noise: the key of the pixel noise.
    policy: the `Policy` (`cutout_fill`, `value_range`).
  """
  mag: dict
  on: dict
  u: dict
  key_noise: jax.Array
  policy: Policy

  def sym(self, name):
    """The first row of draw `name` as U[-1, 1)."""
    return 2.0 * self.u[name][0] - 1.0


def _flip_translate(d: _Draws, b: _Batch) -> _Batch:
  n, h, w, _ = b.x.shape
  dy, dx = (jnp.floor((2.0 * d.u["shift"][i] - 1.0) * (d.mag["max_shift"] + 0.5) + 0.5)
            .astype(jnp.int32) if size > 1 else jnp.zeros((n,), jnp.int32)
            for i, size in enumerate((h, w)))  # a size-1 axis: shifting only blanks
  flip = d.u["flip"][0] < jnp.clip(d.mag["flip_prob"], 0.0, 1.0)
  return b._replace(x=jnp.where(d.on["max_shift"] | d.on["flip_prob"],
                                ops.flip_translate(b.x, dy, dx, flip), b.x))


def _rotate_scale(d: _Draws, b: _Batch) -> _Batch:
  angle = d.sym("rotate") * d.mag["rotate_deg"] * (math.pi / 180)
  zoom = jnp.maximum(1.0 + d.sym("scale") * d.mag["scale"], 0.05)  # zoom <= 0 would flip
  return b._replace(x=jnp.where(d.on["rotate_deg"] | d.on["scale"],
                                ops.rotate_scale(b.x, angle, zoom), b.x))


# Colour: every stage is an elementwise chain (plus one small mean); one clip at the end.
def _brightness(d: _Draws, b: _Batch) -> _Batch:
  x = jnp.where(d.on["brightness"],
                ops.brightness(b.x, d.sym("brightness") * d.mag["brightness"]), b.x)
  return _Batch(x, b.y, b.colour | d.on["brightness"])


def _contrast(d: _Draws, b: _Batch) -> _Batch:
  x = jnp.where(d.on["contrast"],
                ops.contrast(b.x, 1.0 + d.sym("contrast") * d.mag["contrast"]), b.x)
  return _Batch(x, b.y, b.colour | d.on["contrast"])


def _saturation_hue(d: _Draws, b: _Batch) -> _Batch:
  on_sh = d.on["saturation"] | d.on["hue"]
  x_sh = ops.saturation_hue(b.x, 1.0 + d.sym("saturation") * d.mag["saturation"],
                            d.sym("hue") * d.mag["hue"])
  return _Batch(jnp.where(on_sh, x_sh, b.x), b.y, b.colour | on_sh)


def _colour_clip(d: _Draws, b: _Batch) -> _Batch:
  if d.policy.value_range is None:  # standardized features: nothing to clip to
    return b
  return b._replace(x=jnp.where(b.colour, jnp.clip(b.x, *d.policy.value_range), b.x))


def _box_sides(frac, h: int, w: int):
  """Box sides for a side fraction (n,): a size-1 axis (1-D input) is spanned whole."""
  whole = jnp.full_like(frac, 2.0)  # |centre - 0.5| < 1 for any centre in [0, 1)
  return (whole if h == 1 else frac * h), (whole if w == 1 else frac * w)


def _cutout(d: _Draws, b: _Batch) -> _Batch:
  n, h, w, _ = b.x.shape
  side = jnp.full((n,), d.mag["cutout_frac"])
  mask = ops.box_mask(h, w, d.u["cutout"][0] * h, d.u["cutout"][1] * w,
                      *_box_sides(side, h, w))
  fill = jnp.asarray(d.policy.cutout_fill, b.x.dtype)
  return b._replace(x=jnp.where(d.on["cutout_frac"] & mask[..., None], fill, b.x))


def _mixup(d: _Draws, b: _Batch) -> _Batch:
  x, y = b.x, b.y
  partner = ops.partner_index(d.u["mixup_partner"][0, 0], x.shape[0])
  lam = ops.beta(d.u["mixup_beta"], d.mag["mixup_alpha"])
  mixed_x = ops.per_image(lam) * x + ops.per_image(1 - lam) * x[partner]
  mixed_y = lam[:, None] * y + (1 - lam)[:, None] * y[partner]
  return b._replace(x=jnp.where(d.on["mixup_alpha"], mixed_x, x),
                    y=jnp.where(d.on["mixup_alpha"], mixed_y, y))


def _cutmix(d: _Draws, b: _Batch) -> _Batch:
  x, y = b.x, b.y
  n, h, w, _ = x.shape
  partner = ops.partner_index(d.u["cutmix_partner"][0, 0], n)
  frac = 1.0 - ops.beta(d.u["cutmix_beta"], d.mag["cutmix_alpha"])  # the pasted fraction
  side = frac if h == 1 or w == 1 else jnp.sqrt(frac)  # 1-D: a segment; 2-D: a box
  mask = ops.box_mask(h, w, d.u["cutmix_box"][0] * h, d.u["cutmix_box"][1] * w,
                      *_box_sides(side, h, w))
  area = jnp.mean(mask.astype(jnp.float32), axis=(1, 2))  # the clipped box: labels match
  mixed_x = jnp.where(mask[..., None], x[partner], x)
  mixed_y = (1 - area)[:, None] * y + area[:, None] * y[partner]
  return b._replace(x=jnp.where(d.on["cutmix_alpha"], mixed_x, x),
                    y=jnp.where(d.on["cutmix_alpha"], mixed_y, y))


def _noise(d: _Draws, b: _Batch) -> _Batch:
  noise = ops.normal16(d.key_noise, b.x.shape)
  return b._replace(x=jnp.where(d.on["noise_std"], b.x + d.mag["noise_std"] * noise, b.x))


@dataclasses.dataclass(frozen=True)
class Op:
  """One augmentation op: what its magnitude is, and how `magnitudes` bounds it.

  Attributes:
    meaning: the magnitude in words (it is the `Policy` field of the same name).
    default: its magnitude in a `Policy` that does not set it (0: off).
    limit: the largest magnitude a strength gives it (None: unbounded).
  """
  meaning: str
  default: float = 0.0
  limit: float | None = None


@dataclasses.dataclass(frozen=True)
class Stage:
  """One step of `augment_batch`: a function applying one or more ops together.

  Attributes:
    name: a label.
    apply: `(draws, batch) -> batch`.
    ops: the ops it applies, name -> `Op`.
    draws: (name, rows) of the uniform rows it reads per image. Every stage keeps its
      rows whether it runs or not, so ops never share draws.
    after: ops besides its own whose presence runs it (the colour clip).
  """
  name: str
  apply: Callable[[_Draws, _Batch], _Batch]
  ops: Mapping[str, Op]
  draws: tuple = ()
  after: tuple = ()


# The stages, in the order they are applied: the augmentation ops' registry.
STAGES = (
    Stage("flip_translate", _flip_translate, {
        "max_shift": Op("translation range in pixels (per axis)"),
        # Past 1/2 a flip adds no variety, it only makes flipped the norm.
        "flip_prob": Op("probability of a left-right flip", limit=0.5)},
        draws=(("shift", 2), ("flip", 1))),
    Stage("rotate_scale", _rotate_scale, {
        "rotate_deg": Op("maximum rotation in degrees"),
        "scale": Op("maximum relative zoom change (0.1: zoom in [0.9, 1.1])")},
        draws=(("rotate", 1), ("scale", 1))),
    Stage("brightness", _brightness, {
        "brightness": Op("maximum additive brightness change")},
        draws=(("brightness", 1),)),
    Stage("contrast", _contrast, {"contrast": Op("maximum relative contrast change")},
          draws=(("contrast", 1),)),
    Stage("saturation_hue", _saturation_hue, {
        "saturation": Op("maximum relative saturation change (RGB only)"),
        "hue": Op("maximum hue rotation in turns (RGB only)")},
        draws=(("saturation", 1), ("hue", 1))),
    Stage("colour_clip", _colour_clip, {},
          after=("brightness", "contrast", "saturation", "hue")),
    Stage("cutout", _cutout, {
        "cutout_frac": Op("cutout square side as a fraction of the image side")},
        draws=(("cutout", 2),)),
    Stage("mixup", _mixup, {"mixup_alpha": Op("mixup's Beta(a, a) parameter")},
          draws=(("mixup_partner", 1), ("mixup_beta", ops.BETA_ROWS))),
    Stage("cutmix", _cutmix, {"cutmix_alpha": Op("CutMix's Beta(a, a) parameter")},
          draws=(("cutmix_partner", 1), ("cutmix_beta", ops.BETA_ROWS),
                 ("cutmix_box", 2))),
    Stage("noise", _noise, {
        "noise_std": Op("Gaussian noise standard deviation, in input units (images are "
                        "in [0, 1]; mnist1d's sequences are standardized)")}),
)
# Op name -> `Op`, in the order the ops are applied.
OP_REGISTRY: Mapping[str, Op] = {name: op for st in STAGES for name, op in st.ops.items()}
OPS = tuple(OP_REGISTRY)


def _draw_rows(stages=STAGES):
  """Row slices of the per-image uniform table, stage after stage, and its height."""
  out, start = {}, 0
  for name, size in (d for st in stages for d in st.draws):
    out[name] = slice(start, start + size)
    start += size
  return out, start


_ROWS, _N_ROWS = _draw_rows()


def _check_inputs(mags: dict, shape: tuple) -> None:
  """Raises ValueError for unknown ops or ops the input shape cannot take."""
  unknown = set(mags) - set(OPS)
  if unknown:
    raise ValueError(f"unknown augmentation ops {sorted(unknown)}; known: {OPS}")
  _, h, w, c = shape
  if c != 3 and any(op in mags for op in COLOUR_RGB_ONLY):
    raise ValueError(f"saturation/hue need RGB images, got {c} channels")
  if "rotate_deg" in mags and (h == 1 or w == 1):
    raise ValueError(f"rotate_deg needs 2-D images, got (H, W) = ({h}, {w}): a rotation "
                     f"would mix a 1-D sequence's axis with its size-1 axis")


def augment_batch(key, images, labels, mags: dict, policy: Policy,
                  multiplicity: int = 1) -> tuple:
  """Augments a batch: `multiplicity` independently augmented copies of each example.

  Runs each of `STAGES` in order whose ops are keys of `mags`.

  Args:
    key: a PRNG key (one per member under vmap).
    images: (b, H, W, C) float inputs (`lrjax.data.to_float`): images in [0, 1], or
      scaled features such as mnist1d's standardized sequences, (b, 40, 1, 1).
    labels: (b, K) float one-hot or soft labels.
    mags: from `magnitudes`; its keys choose the ops, its values their strengths.
    policy: the `Policy` (static; supplies `cutout_fill` and `value_range`).
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
  _check_inputs(mags, images.shape)
  x = jnp.tile(images.astype(jnp.float32), (multiplicity, 1, 1, 1))
  y = jnp.tile(labels.astype(jnp.float32), (multiplicity, 1))
  n = x.shape[0]
  zero = jnp.zeros((), jnp.float32)
  mag = {op: mags.get(op, zero) for op in OPS}
  on = {op: mag[op] > 0 for op in OPS}
  # Every per-image draw comes from one flat threefry call: each jax.random call adds
  # a full threefry graph, and ~20 of them made XLA:CPU compile this in ~15 s.
  k_table, k_noise = jax.random.split(key)
  table = jax.random.uniform(k_table, (_N_ROWS * n,)).reshape(_N_ROWS, n)
  u = {name: table[rows] for name, rows in _ROWS.items()}  # each (rows, n), in [0, 1)
  draws = _Draws(mag, on, u, k_noise, policy)
  batch = _Batch(x, y, jnp.zeros((), bool))
  for stage in STAGES:
    if any(op in mags for op in (*stage.ops, *stage.after)):
      batch = stage.apply(draws, batch)
  return batch.x.astype(images.dtype), batch.y
