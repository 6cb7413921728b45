"""The built-in offline TFDS dataset: scikit-learn's bundled handwritten digits.

1,797 grayscale 8x8 images of the digits 0-9 (UCI "optdigits" test set, shipped
inside scikit-learn, so it builds with no download). Pixel values 0..16 are
rescaled to uint8 0..255 (``round(v * 255 / 16)``).

Splits are fixed: the 1,797 examples are shuffled once with
``numpy.random.default_rng(20171101).permutation`` and cut into

* ``train``: 1,297 examples,
* ``validation``: 250 examples,
* ``test``: 250 examples.

Features are ``tfds.features.Tensor`` and the file format is ``array_record``, so
the dataset builds and reads without TensorFlow.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

SPLIT_SIZES = {"train": 1297, "validation": 250, "test": 250}
SPLIT_SEED = 20171101


def digits_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Returns the fixed splits as ``{split: (uint8 images (N,8,8,1), int64 labels)}``.

  Example:
    >>> splits = digits_arrays()
    >>> splits["train"][0].shape
    (1297, 8, 8, 1)
  """
  bunch = load_digits()
  images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = bunch.target.astype(np.int64)
  order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
  out, start = {}, 0
  for split, size in SPLIT_SIZES.items():
    idx = order[start:start + size]
    out[split] = (images[idx], labels[idx])
    start += size
  assert start == len(labels), "split sizes must cover the dataset"
  return out


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 handwritten digits as a TFDS dataset (offline)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Fixed 1297/250/250 train/validation/test splits."}

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ships with scikit-learn.
    arrays = digits_arrays()
    return {split: self._generate_examples(*arrays[split]) for split in SPLIT_SIZES}

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image, "label": label}
