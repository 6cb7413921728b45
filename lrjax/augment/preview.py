"""A PNG grid of the same examples at several augmentation strengths (`lrjax augment-preview`).

Images: rows are strengths, columns the same examples. 1-D sequences (inputs of shape
(L, 1, 1), e.g. mnist1d): line plots, one row per example and one column per strength,
the unaugmented sequence in grey behind each. Every strength uses the same random key, so
one differs from the next only by strength (as members do under common random numbers).
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


def is_sequence(shape) -> bool:
  """Whether inputs of shape (H, W, C) are 1-D sequences: W = 1 and C = 1.

  >>> is_sequence((40, 1, 1)), is_sequence((8, 8, 1))
  (True, False)
  """
  return tuple(shape[1:]) == (1, 1)


def augment_rows(images, strengths: Sequence[float], policy: augment.Policy,
                 seed: int = 0) -> np.ndarray:
  """Augments the same examples at each strength with one shared key.

  Args:
    images: (n, H, W, C) uint8 images, or float features (e.g. mnist1d's (n, 40, 1, 1)).
    strengths: the strengths, one row each.
    policy: an `augment.Policy`.
    seed: the PRNG seed (shared by every row).

  Returns:
    (len(strengths), n, H, W, C) float32: uint8 images scaled to [0, 1] and clipped to
    it for display; float features as augmented, unclipped.

  >>> pol = augment.policy_for("digits", (8, 8, 1))
  >>> augment_rows(np.zeros((2, 8, 8, 1), np.uint8), [0.0, 1.0], pol).shape
  (2, 2, 8, 8, 1)
  """
  x = data.to_float(images)
  y = jnp.full((x.shape[0], 1), 1.0)  # labels don't show; mixup/cutmix still mix images
  key = jax.random.key(seed)
  mags = jax.vmap(lambda s: augment.magnitudes(policy, s))(jnp.asarray(strengths, jnp.float32))
  run = jax.jit(jax.vmap(augment.augment_batch, in_axes=(None, None, None, 0, None)),
                static_argnums=4)
  rows, _ = run(key, x, y, mags, policy)
  rows = np.asarray(rows)
  return np.clip(rows, 0.0, 1.0) if np.asarray(images).dtype == np.uint8 else rows


def _active(policy: augment.Policy, s: float) -> str:
  mags = augment.magnitudes(policy, s)
  return ", ".join(f"{op} {float(v):.3g}" for op, v in mags.items() if float(v) > 0)


def preview_figure(images, strengths: Sequence[float], policy: augment.Policy,
                   seed: int = 0, title: str | None = None, labels=None) -> Figure:
  """A matplotlib Figure of the given examples at each strength.

  Images: rows = strengths, columns = the images. 1-D sequences ((n, L, 1, 1), e.g.
  mnist1d): line plots, rows = the examples, columns = strengths, each over the
  unaugmented sequence in grey, on one shared y scale.

  Args:
    images: (n, H, W, C) uint8 images (C = 1 or 3), or float (n, L, 1, 1) sequences.
    strengths: the strengths to show, one row (images) or column (sequences) each.
    policy: the `augment.Policy` to apply.
    seed: the PRNG seed shared by every strength.
    title: the figure title (default: the policy name).
    labels: optional (n,) class labels, shown next to each sequence's row.

  Returns:
    The Figure (not shown; call `.savefig`).

  >>> pol = augment.policy_for("digits", (8, 8, 1))
  >>> fig = preview_figure(np.zeros((3, 8, 8, 1), np.uint8), [0, 1], pol)
  >>> len(fig.axes)
  6
  >>> pol = augment.policy_for("mnist1d", (40, 1, 1))
  >>> fig = preview_figure(np.zeros((3, 40, 1, 1), np.float32), [0, 1], pol)
  >>> len(fig.axes)
  6
  """
  strengths = [float(s) for s in strengths]
  rows = augment_rows(images, strengths, policy, seed)
  if is_sequence(rows.shape[2:]):
    base = np.asarray(data.to_float(images))[..., 0, 0]
    return _sequence_figure(rows[..., 0, 0], base, strengths, policy, title, labels)
  n_rows, n_cols = rows.shape[:2]
  fig = Figure(figsize=(1.1 * n_cols + 1.6, 1.1 * n_rows + 0.7), layout="constrained")
  axes = fig.subplots(n_rows, n_cols, squeeze=False)
  gray = rows.shape[-1] == 1
  # uint8 images are in [0, 1]; float features get their own range.
  vmin, vmax = ((0.0, 1.0) if np.asarray(images).dtype == np.uint8
                else (float(rows.min()), float(rows.max())))
  for r, s in enumerate(strengths):
    shown = _active(policy, s)
    for c in range(n_cols):
      ax = axes[r, c]
      img = rows[r, c, ..., 0] if gray else rows[r, c]
      ax.imshow(img, cmap="gray" if gray else None, vmin=vmin, vmax=vmax,
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


def _sequence_figure(seqs, base, strengths, policy, title, labels) -> Figure:
  """Line plots: `seqs` (S, n, L) augmented over `base` (n, L); rows = examples."""
  n_strengths, n_examples, length = seqs.shape
  fig = Figure(figsize=(1.9 * n_strengths + 1.2, 0.85 * n_examples + 1.3),
               layout="constrained")
  axes = fig.subplots(n_examples, n_strengths, squeeze=False, sharex=True, sharey=True)
  t = np.arange(length)
  finite = np.concatenate([seqs.ravel(), base.ravel()])
  finite = finite[np.isfinite(finite)]
  lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
  pad = 0.05 * (hi - lo or 1.0)
  for c, s in enumerate(strengths):
    axes[0, c].set_title(f"s = {s:g}\n" + _wrap(_active(policy, s) or "identity", 34),
                         fontsize=6)
    for r in range(n_examples):
      ax = axes[r, c]
      ax.plot(t, base[r], color="0.75", linewidth=0.8)
      ax.plot(t, seqs[c, r], color="C0", linewidth=1.0)
      ax.set_ylim(lo - pad, hi + pad)
      ax.tick_params(labelsize=5, length=2)
  for r in range(n_examples):
    name = f"label {int(labels[r])}" if labels is not None else f"example {r}"
    axes[r, 0].set_ylabel(name, fontsize=7)
  for c in range(n_strengths):
    axes[-1, c].set_xlabel("position", fontsize=6)
  fig.suptitle(title or f"augmentation policy '{policy.name}': same sequences, same draws "
               f"(grey: unaugmented)", fontsize=9)
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
  """Writes a PNG grid of the same training examples at each strength; returns `path`.

  Images are drawn as images (rows = strengths); 1-D sequences such as mnist1d's as
  line plots (rows = examples, columns = strengths, the unaugmented sequence in grey).

  Args:
    dataset: a dataset name for `lrjax.data.load` (`"digits"` and `"mnist1d"` are
      built in and offline).
    strengths: the strengths to show (e.g. 0, 0.5, 1, 1.5, 2).
    path: where to write the PNG.
    n_images: how many examples from the training split, one per class first.
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
  what = ("sequences (grey: unaugmented)" if is_sequence(images.shape[1:])
          else "images")
  fig = preview_figure(images[idx], strengths, policy, seed,
                       title=f"{ds.name}: policy '{policy.name}', the same {what} and "
                             f"random draws at each strength s",
                       labels=np.asarray(ds.train.labels)[idx])
  fig.savefig(path, dpi=110)
  return path
