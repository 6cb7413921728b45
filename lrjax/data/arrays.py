"""A dataset from the user's own numpy arrays (``from_arrays``), and from a config's
``"package.module:function"`` dataset (``from_function``).

The engine reads every dataset as ``Split(images (N, H, W, C), labels (N,))``; this
module puts the usual layouts there: tabular features ``(N, F)`` and sequences
``(N, L)`` become ``(N, F, 1, 1)`` (the layout of MNIST-1D), grey images ``(N, H, W)``
get a channel. Inputs stay uint8 (pixels 0..255, scaled by ``to_float``) or become
float32; tabular and sequence floats are standardised with the training split's mean
and standard deviation (``standardize``), so that one LR grid and the augmentation's
noise are in comparable units across features. ``kind`` picks the augmentation
policy (``lrjax.augment.policy_for_dataset``).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from lrjax import callables
from lrjax.data.datasets import Dataset, Split, load
from lrjax.errors import ConfigError

KINDS = ("image", "sequence", "tabular")
HOLDOUT_FRACTION = 0.15  # of the given examples, for each of validation and test if missing
HOLDOUT_SEED = 0


def from_arrays(x_train, y_train, x_val=None, y_val=None, x_test=None, y_test=None, *,
                name: str, num_classes: int | None = None, kind: str = "image",
                standardize: bool = True) -> Dataset:
  """A ``Dataset`` from numpy arrays, checked before anything compiles.

  Args:
    x_train, y_train: training inputs and integer labels 0..K-1.
    x_val, y_val, x_test, y_test: the other splits; a missing one is split off the
      training arrays (``HOLDOUT_FRACTION`` each, with a fixed seed).
    name: the dataset's name in tables and reports.
    num_classes: K; default ``max(label) + 1``, every class present in training.
    kind: ``"image"`` ((N, H, W) or (N, H, W, C)), ``"sequence"`` ((N, L)) or
      ``"tabular"`` ((N, F)); picks the augmentation: image ops; MNIST-1D's sequence
      ops (shift, noise, cutout, then mixup); for tabular data noise and mixup only.
    standardize: scale float sequence/tabular features to the training split's mean 0
      and standard deviation 1 (per feature).

  Raises:
    ConfigError: naming the array and the expected shape: a wrong rank or dtype,
      lengths that differ, labels that are not 0..K-1, NaN or infinite inputs.

  Example:
    >>> from sklearn.datasets import load_wine
    >>> x, y = load_wine(return_X_y=True)
    >>> ds = from_arrays(x, y, name="wine", kind="tabular")
    >>> ds.image_shape, ds.num_classes, len(ds.train) + len(ds.validation) + len(ds.test)
    ((13, 1, 1), 3, 178)
  """
  if kind not in KINDS:
    raise ConfigError(f"kind: {kind!r} is not one of {list(KINDS)}.")
  given = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
  for split, (x, y) in given.items():
    if (x is None) != (y is None):
      raise ConfigError(f"x_{split}, y_{split}: give both or neither.")
  arrays = {split: (_inputs(f"x_{split}", x, kind), _labels(f"y_{split}", y, len(x)))
            for split, (x, y) in given.items() if x is not None}
  shapes = {split: x.shape[1:] for split, (x, _) in arrays.items()}
  if len(set(shapes.values())) > 1:
    raise ConfigError(f"x_val, x_test: every split needs the training inputs' shape "
                      f"{shapes['train']}; got {shapes}.")
  k = _num_classes(arrays, num_classes)
  arrays = _holdout(arrays)
  if standardize and kind != "image" and arrays["train"][0].dtype == np.float32:
    mean = arrays["train"][0].mean(axis=0)
    std = arrays["train"][0].std(axis=0)
    std = np.where(std > 0, std, 1.0).astype(np.float32)
    arrays = {s: ((x - mean) / std, y) for s, (x, y) in arrays.items()}
  split = {s: Split(np.ascontiguousarray(x, dtype=x.dtype), y) for s, (x, y) in arrays.items()}
  return Dataset(name=name, train=split["train"], validation=split["val"],
                 test=split["test"], num_classes=k, kind=kind)


# The layouts each kind accepts, as the error states them.
_SHAPES = {"image": "(N, H, W) or (N, H, W, C)", "sequence": "(N, length)",
           "tabular": "(N, features)"}


def _inputs(field: str, x, kind: str) -> np.ndarray:
  x = np.asarray(x)
  if kind == "image" and x.ndim == 3:
    x = x[..., None]
  elif kind != "image" and x.ndim == 2:
    x = x[:, :, None, None]
  if x.ndim != 4 or len(x) == 0:
    raise ConfigError(f"{field}: shape {np.shape(x)} for kind={kind!r}; expected "
                      f"{_SHAPES[kind]} with N >= 1.")
  if x.dtype == np.uint8:
    return x
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise ConfigError(f"{field}: dtype {x.dtype}; pass uint8 pixels (0..255) or float "
                      f"features.")
  if np.issubdtype(x.dtype, np.integer):
    raise ConfigError(f"{field}: dtype {x.dtype}; pass uint8 pixels (0..255: "
                      f"x.astype(np.uint8)) or float features (x.astype(np.float32)).")
  x = x.astype(np.float32)
  bad = ~np.isfinite(x)
  if bad.any():
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ConfigError(f"{field}: {int(bad.sum())} NaN or infinite values (the first at "
                      f"index {first}); impute or drop them first.")
  return x


def _labels(field: str, y, n: int) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1 or len(y) != n:
    raise ConfigError(f"{field}: shape {y.shape}; expected ({n},), one label per input "
                      f"(x has {n}).")
  if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating)
                                                 and np.all(np.mod(y, 1) == 0))):
    raise ConfigError(f"{field}: labels are class numbers 0..K-1; got dtype {y.dtype}. "
                      f"Encode them with np.unique(y, return_inverse=True)[1].")
  return y.astype(np.int32)


def _num_classes(arrays: Mapping[str, tuple], num_classes: int | None) -> int:
  train = arrays["train"][1]
  present = np.unique(train)
  k = int(present.max()) + 1 if num_classes is None else int(num_classes)
  if num_classes is None and (present.min() < 0 or len(present) != k):
    raise ConfigError(f"y_train: labels must be 0..K-1 with every class present; got "
                      f"{present[:10].tolist()}{' ...' if len(present) > 10 else ''}. Encode "
                      f"them with np.unique(y, return_inverse=True)[1], or pass num_classes.")
  for split, (_, y) in arrays.items():
    if len(y) and (y.min() < 0 or y.max() >= k):
      raise ConfigError(f"y_{split}: labels must be 0..{k - 1} (num_classes={k}); got "
                        f"{int(y.min())}..{int(y.max())}.")
  return k


def _holdout(arrays: dict) -> dict:
  """Splits the missing validation and test sets off training, with a fixed seed."""
  missing = [s for s in ("val", "test") if s not in arrays]
  if not missing:
    return arrays
  x, y = arrays["train"]
  n_hold = int(round(len(y) * HOLDOUT_FRACTION))
  if len(y) - n_hold * len(missing) < 1 or n_hold < 1:
    raise ConfigError(f"x_train: {len(y)} examples are too few to split off "
                      f"{' and '.join(missing)} ({HOLDOUT_FRACTION:.0%} each); pass "
                      f"x_val/y_val and x_test/y_test.")
  order = np.random.default_rng(HOLDOUT_SEED).permutation(len(y))
  out = dict(arrays)
  for i, split in enumerate(missing):
    take = np.sort(order[i * n_hold:(i + 1) * n_hold])
    out[split] = (x[take], y[take])
  keep = np.sort(order[len(missing) * n_hold:])
  out["train"] = (x[keep], y[keep])
  return out


def from_function(reference: str | Callable) -> Dataset:
  """The dataset a config's ``"package.module:function"`` (or a function) returns: a
  ``Dataset``, or the keyword arguments of ``from_arrays`` as a dict (``name``
  defaults to the function's).

  Example:
    >>> ds = from_function("lrjax.data.arrays:example_dataset")
    >>> ds.name, ds.kind, ds.image_shape
    ('example_dataset', 'tabular', (30, 1, 1))
  """
  fn = (callables.import_callable("dataset", reference) if isinstance(reference, str)
        else reference)
  out = fn()
  if isinstance(out, Dataset):
    return out
  if isinstance(out, Mapping):
    return from_arrays(**{"name": getattr(fn, "__name__", "dataset"), **out})
  raise ConfigError(f"dataset: {callables.label(reference)} returned "
                    f"{type(out).__name__}; return an lrjax.data.Dataset, or a dict of "
                    f"from_arrays arguments (x_train, y_train, ..., kind).")


def example_dataset() -> dict:
  """scikit-learn's breast-cancer table as ``from_arrays`` arguments (a config can name
  it: ``dataset="lrjax.data.arrays:example_dataset"``)."""
  from sklearn.datasets import load_breast_cancer  # pylint: disable=import-outside-toplevel
  x, y = load_breast_cancer(return_X_y=True)
  return {"x_train": x, "y_train": y, "kind": "tabular"}


def get_dataset(spec, data_dir: str | None = None) -> Dataset:
  """The dataset a config names: a ``Dataset``; a function or ``"package.module:function"``
  (``from_function``); else a built-in or TFDS catalog name (``lrjax.data.load``; a TFDS
  version suffix such as ``"cifar10:3.0.2"`` stays TFDS's).

  Example:
    >>> get_dataset("digits").image_shape
    (8, 8, 1)
    >>> get_dataset("lrjax.data.arrays:example_dataset").num_classes
    2
  """
  if isinstance(spec, Dataset):
    return spec
  if callable(spec) or (callables.is_import_path(spec) and not _tfds_version(spec)):
    return from_function(spec)
  return load(spec, data_dir)


def _tfds_version(spec: str) -> bool:
  """Whether ``spec`` is a TFDS ``name:version`` (``cifar10:3.0.2``)."""
  version = spec.rsplit(":", 1)[-1]
  return bool(version) and all(part.isdigit() for part in version.split(".")) or \
      version.endswith(".*")
