"""A PNG grid of the same images at several augmentation strengths (`lrjax augment-preview`).

Rows are strengths, columns the same examples; every row uses the same random key, so a
row differs from the next only by strength (as members do under common random numbers).
"""
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from lrjax import data
from lrjax.augment import policy as augment


def pick_examples(labels, n_images: int, seed: int = 0) -> np.ndarray:
  """Indices of `n_images` examples, one class after another where there are enough classes.

  >>> pick_examples(np.array([0, 0, 1, 2, 1]), 3).tolist()
  [0, 2, 3]
  """
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(labels)) if seed else np.arange(len(labels))
  picked, seen = [], set()
  for i in order:  # first pass: one per class
    if labels[i] not in seen:
      picked.append(int(i))
      seen.add(labels[i])
    if len(picked) == n_images:
      return np.array(picked)
  rest = [int(i) for i in order if int(i) not in set(picked)]
  return np.array(picked + rest[:n_images - len(picked)])


def augment_rows(images_uint8, strengths: Sequence[float], policy: augment.Policy,
                 seed: int = 0) -> np.ndarray:
  """Augments the same images at each strength with one shared key.

  Args:
    images_uint8: (n, H, W, C) uint8 images.
    strengths: the strengths, one row each.
    policy: an `augment.Policy`.
    seed: the PRNG seed (shared by every row).

  Returns:
    (len(strengths), n, H, W, C) float32 images, clipped to [0, 1] for display.

  >>> pol = augment.policy_for("digits", (8, 8, 1))
  >>> augment_rows(np.zeros((2, 8, 8, 1), np.uint8), [0.0, 1.0], pol).shape
  (2, 2, 8, 8, 1)
  """
  x = jnp.asarray(images_uint8, jnp.float32) / 255.0
  y = jnp.full((x.shape[0], 1), 1.0)  # labels don't show; mixup/cutmix still mix images
  key = jax.random.key(seed)
  mags = jax.vmap(lambda s: augment.magnitudes(policy, s))(jnp.asarray(strengths, jnp.float32))
  run = jax.jit(jax.vmap(augment.augment_batch, in_axes=(None, None, None, 0, None)),
                static_argnums=4)
  rows, _ = run(key, x, y, mags, policy)
  return np.clip(np.asarray(rows), 0.0, 1.0)


def preview_figure(images_uint8, strengths: Sequence[float], policy: augment.Policy,
                   seed: int = 0, title: str | None = None) -> Figure:
  """A matplotlib Figure: rows = strengths, columns = the given images.

  Args:
    images_uint8: (n, H, W, C) uint8 images (C = 1 or 3).
    strengths: the strengths to show, one row each.
    policy: the `augment.Policy` to apply.
    seed: the PRNG seed shared by every row.
    title: the figure title (default: the policy name).

  Returns:
    The Figure (not shown; call `.savefig`).

  >>> pol = augment.policy_for("digits", (8, 8, 1))
  >>> fig = preview_figure(np.zeros((3, 8, 8, 1), np.uint8), [0, 1], pol)
  >>> len(fig.axes)
  6
  """
  strengths = [float(s) for s in strengths]
  rows = augment_rows(images_uint8, strengths, policy, seed)
  n_rows, n_cols = rows.shape[:2]
  fig = Figure(figsize=(1.1 * n_cols + 1.6, 1.1 * n_rows + 0.7), layout="constrained")
  axes = fig.subplots(n_rows, n_cols, squeeze=False)
  gray = rows.shape[-1] == 1
  for r, s in enumerate(strengths):
    mags = augment.magnitudes(policy, s)
    shown = ", ".join(f"{op} {float(v):.3g}" for op, v in mags.items() if float(v) > 0)
    for c in range(n_cols):
      ax = axes[r, c]
      img = rows[r, c, ..., 0] if gray else rows[r, c]
      ax.imshow(img, cmap="gray" if gray else None, vmin=0.0, vmax=1.0,
                interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
    axes[r, 0].set_ylabel(f"s = {s:g}", rotation=0, ha="right", va="center", fontsize=10)
    axes[r, n_cols - 1].yaxis.set_label_position("right")
    axes[r, n_cols - 1].set_ylabel(_wrap(shown or "identity"), rotation=0, ha="left",
                                   va="center", fontsize=6)
  fig.suptitle(title or f"augmentation policy '{policy.name}': same images, same draws",
               fontsize=10)
  return fig


def _wrap(text: str, width: int = 28) -> str:
  lines, line = [], ""
  for part in text.split(", "):
    if line and len(line) + len(part) + 2 > width:
      lines.append(line + ",")
      line = part
    else:
      line = f"{line}, {part}" if line else part
  return "\n".join(lines + [line])


def write_preview(dataset: str, strengths: Sequence[float], path: str, n_images: int = 8,
                  seed: int = 0, data_dir=None) -> str:
  """Writes a PNG grid of the same training images at each strength; returns `path`.

  Args:
    dataset: a dataset name for `lrjax.data.load` (`"digits"` is built in and offline).
    strengths: the strengths to show, one row each (e.g. 0, 0.5, 1, 1.5, 2).
    path: where to write the PNG.
    n_images: columns: examples from the training split, one per class first.
    seed: picks the examples (0: the first of each class) and seeds the augmentation.
    data_dir: the TFDS data directory (None: lrjax's default).

  Returns:
    `path`.

  >>> import tempfile, os
  >>> out = write_preview("digits", [0, 1, 2], os.path.join(tempfile.mkdtemp(), "p.png"), 4)
  >>> out.endswith("p.png")
  True
  """

  ds = data.load(dataset, data_dir=data_dir)
  images = np.asarray(ds.train.images)
  idx = pick_examples(ds.train.labels, n_images, seed)
  policy = augment.policy_for(ds.name, images.shape[1:])
  fig = preview_figure(images[idx], strengths, policy, seed,
                       title=f"{ds.name}: policy '{policy.name}', the same images and "
                             f"random draws at each strength s")
  fig.savefig(path, dpi=110)
  return path
