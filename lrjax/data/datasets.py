"""Datasets as uint8 arrays, through TFDS: the built-in digits or any catalog dataset.

Every dataset goes through TFDS. The built-in ``"digits"`` builder (see
:mod:`lrjax.data.digits_builder`) is prepared on first use, offline, without
TensorFlow. Catalog datasets (mnist, fashion_mnist, cifar10, ...) are read with
``tfds.data_source``; preparing them needs TensorFlow (``pip install 'lrjax[tf]'``)
and a network connection, once: ``lrjax prepare mnist``.

The training engine puts whole splits on the device once (``to_device``) and
gathers batches by index inside the compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from lrjax.data.digits_builder import Digits  # importing registers the builder
from lrjax.errors import ConfigError

BUILTIN = "digits"
# Catalog datasets without a validation split get a fixed held-out part of train.
VALIDATION_FRACTION = 0.1
VALIDATION_MAX = 10_000
VALIDATION_SEED = 0


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: ``images`` uint8 (N, H, W, C) and ``labels`` int32 (N,)."""

  images: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A dataset as host arrays, with train/validation/test splits."""

  name: str
  train: Split
  validation: Split
  test: Split
  num_classes: int

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.images.shape[1:])


def default_data_dir() -> str:
  """Where TFDS data lives: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _source_to_split(source, image_key: str, label_key: str) -> Split:
  keys = list(range(len(source)))
  try:
    records = source.__getitems__(keys)  # one batched read
  except TypeError:  # tfds.testing.mock_data's source has no batched read
    records = [source[k] for k in keys]
  images = np.stack([np.asarray(r[image_key]) for r in records]).astype(np.uint8)
  if images.ndim == 3:  # (N, H, W) -> NHWC
    images = images[..., None]
  labels = np.asarray([r[label_key] for r in records], dtype=np.int32)
  return Split(images, labels)


def _holdout(split: Split) -> tuple[Split, Split]:
  n_val = min(VALIDATION_MAX, int(round(len(split) * VALIDATION_FRACTION)))
  order = np.random.default_rng(VALIDATION_SEED).permutation(len(split))
  val, train = order[:n_val], np.sort(order[n_val:])
  return (Split(split.images[train], split.labels[train]),
          Split(split.images[val], split.labels[val]))


def prepare(name: str, data_dir: str | None = None) -> None:
  """Builds a TFDS dataset in the ``array_record`` format ``load`` reads.

  The built-in digits need nothing but scikit-learn; catalog datasets need
  TensorFlow (``pip install 'lrjax[tf]'``) and a network connection.

  Example:
    >>> prepare("digits")
  """
  data_dir = data_dir or default_data_dir()
  if name == BUILTIN:
    Digits(data_dir=data_dir).download_and_prepare()
    return
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()


def _catalog_error(name: str, data_dir: str, cause: Exception) -> ConfigError:
  return ConfigError(
      f"dataset: '{name}' is not prepared as array_record in {data_dir} ({cause}). "
      f"Prepare it once with TensorFlow installed and a network connection: "
      f"pip install 'lrjax[tf]' && lrjax prepare {name} "
      f"--data_dir {data_dir}; or pick the built-in offline dataset with "
      f"--config.dataset=digits.")


@functools.lru_cache(maxsize=8)
def load(name: str = BUILTIN, data_dir: str | None = None) -> Dataset:
  """Loads a dataset's splits as uint8 host arrays.

  Args:
    name: ``"digits"`` (built-in, offline) or a TFDS catalog image-classification
      dataset (``"mnist"``, ``"cifar10"``, ...).
    data_dir: TFDS data directory; default ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``.

  Returns:
    A ``Dataset`` with train/validation/test splits. Catalog datasets without a
    validation split get a fixed 10% (at most 10,000 examples) of train.

  Raises:
    ConfigError: unknown or unprepared dataset, with the fix.

  Example:
    >>> ds = load("digits")
    >>> (len(ds.train), len(ds.validation), len(ds.test), ds.image_shape)
    (1297, 250, 250, (8, 8, 1))
  """
  data_dir = data_dir or default_data_dir()
  if name == BUILTIN:
    builder = Digits(data_dir=data_dir)
    if not builder.is_prepared():
      builder.download_and_prepare()
  elif name not in tfds.list_builders(with_community_datasets=False):
    raise ConfigError(
        f"dataset: unknown dataset '{name}'. Use 'digits' (built-in, offline) "
        f"or a TFDS catalog image-classification name such as 'mnist', "
        f"'fashion_mnist', 'cifar10', 'cifar100', 'svhn_cropped'.")
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  info = builder.info
  if not info.supervised_keys:
    raise ConfigError(f"dataset: '{name}' has no (image, label) supervised keys; "
                      f"lrjax needs an image-classification dataset.")
  image_key, label_key = info.supervised_keys
  num_classes = info.features[label_key].num_classes

  def read(split: str) -> Split:
    try:
      source = tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                                builder_kwargs={"file_format": "array_record"})
    except Exception as e:  # noqa: BLE001 - TFDS raises many types here
      raise _catalog_error(name, data_dir, e) from None
    return _source_to_split(source, image_key, label_key)

  train = read("train")
  if "validation" in info.splits:
    validation = read("validation")
  else:
    train, validation = _holdout(train)
  return Dataset(name=name, train=train, validation=validation, test=read("test"),
                 num_classes=int(num_classes))


def example_order(seed: int, num_train: int, num_examples: int) -> np.ndarray:
  """The training stream of a seed: example indices, epoch after epoch.

  Epoch ``e`` is ``numpy.random.default_rng((seed, e)).permutation(N)`` (host-side:
  no compilation at start-up); the stream concatenates epochs and is cut at
  ``num_examples``, so a batch may straddle an epoch boundary (like
  ``repeat().batch()``). Every member with this seed reads the same stream (common
  random numbers), whatever its batch size.

  Example:
    >>> order = example_order(0, num_train=10, num_examples=25)
    >>> order.shape, sorted(order[:10].tolist()) == list(range(10))
    ((25,), True)
  """
  num_epochs = -(-num_examples // num_train)
  perms = [np.random.default_rng((seed, e)).permutation(num_train) for e in range(num_epochs)]
  return np.concatenate(perms).astype(np.int32)[:num_examples]
