"""The user's own data: numpy arrays and dataset functions, checked, split, trained."""
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_wine

from lrjax import augment, cli, data, grid, models
from lrjax.data import arrays
from lrjax.engine import TrainSettings, train_grid
from lrjax.errors import ConfigError

RNG = np.random.default_rng(0)


def _quadrant_images(n: int = 300):
  """Random uint8 images whose label is the quadrant holding a bright square."""
  images = RNG.integers(0, 128, size=(n, 12, 12, 3), dtype=np.uint8)
  labels = RNG.integers(0, 4, size=n)
  for i, quadrant in enumerate(labels):
    r, c = divmod(int(quadrant), 2)
    images[i, 6 * r:6 * r + 6, 6 * c:6 * c + 6] = 255
  return images, labels


IMAGES, IMAGE_LABELS = _quadrant_images()


def test_tabular_arrays_split_with_a_fixed_seed_and_standardised():
  x, y = load_breast_cancer(return_X_y=True)
  ds = data.from_arrays(x, y, name="breast_cancer", kind="tabular")
  again = data.from_arrays(x, y, name="breast_cancer", kind="tabular")
  assert ds.image_shape == (30, 1, 1) and ds.num_classes == 2 and ds.kind == "tabular"
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (399, 85, 85)
  np.testing.assert_array_equal(ds.test.labels, again.test.labels)
  np.testing.assert_allclose(ds.train.images.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(ds.train.images.std(axis=0), 1.0, atol=1e-4)
  assert ds.train.images.dtype == np.float32


@pytest.mark.parametrize("x, kind, shape, dtype", [
    (np.zeros((20, 40)), "sequence", (40, 1, 1), np.float32),
    (np.zeros((20, 5), np.float32), "tabular", (5, 1, 1), np.float32),
    (np.zeros((20, 8, 8), np.uint8), "image", (8, 8, 1), np.uint8),
    (np.zeros((20, 8, 8, 3), np.uint8), "image", (8, 8, 3), np.uint8),
    (np.zeros((20, 8, 8, 3), np.float64), "image", (8, 8, 3), np.float32),
])
def test_input_layouts_become_nhwc_when_given_as_users_hold_them(x, kind, shape, dtype):
  ds = data.from_arrays(x, np.arange(20) % 2, name="t", kind=kind)
  assert ds.image_shape == shape and ds.train.images.dtype == dtype


def test_given_validation_and_test_splits_are_kept_whole():
  x, y = load_wine(return_X_y=True)
  ds = data.from_arrays(x[:100], y[:100], x[100:140], y[100:140], x[140:], y[140:],
                        name="wine", kind="tabular", num_classes=3)
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (100, 40, 38)


BAD_ARRAYS = {
    "lengths differ": (dict(x_train=np.zeros((10, 3)), y_train=np.zeros(9, int)),
                       r"y_train: shape \(9,\); expected \(10,\)"),
    "labels not 0..K-1": (dict(x_train=np.zeros((10, 3)), y_train=np.arange(10) % 3 + 1),
                          r"y_train: labels must be 0..K-1 .* got \[1, 2, 3\]"),
    "labels beyond num_classes": (dict(x_train=np.zeros((10, 3)), y_train=np.arange(10) % 3,
                                       num_classes=2), r"y_train: labels must be 0..1"),
    "string labels": (dict(x_train=np.zeros((10, 3)), y_train=np.array(["a", "b"] * 5)),
                      r"y_train: labels are class numbers"),
    "NaN inputs": (dict(x_train=np.where(np.eye(10, 3) > 0, np.nan, 1.0),
                        y_train=np.arange(10) % 2),
                   r"x_train: 3 NaN or infinite values \(the first at index \(0, 0, 0, 0\)\)"),
    "wrong rank": (dict(x_train=np.zeros((10, 3, 2)), y_train=np.arange(10) % 2),
                   r"x_train: shape \(10, 3, 2\) for kind='tabular'; expected \(N, features\)"),
    "int64 pixels": (dict(x_train=np.zeros((10, 4, 4), np.int64), y_train=np.arange(10) % 2,
                          kind="image"), r"x_train: dtype int64; pass uint8 pixels"),
    "split shapes differ": (dict(x_train=np.zeros((10, 3)), y_train=np.arange(10) % 2,
                                 x_val=np.zeros((4, 5)), y_val=np.arange(4) % 2),
                            r"every split needs the training inputs' shape"),
    "unknown kind": (dict(x_train=np.zeros((10, 3)), y_train=np.arange(10) % 2, kind="text"),
                     r"kind: 'text' is not one of"),
}


@pytest.mark.parametrize("kwargs, match", BAD_ARRAYS.values(), ids=BAD_ARRAYS)
def test_bad_arrays_raise_config_error_naming_the_array(kwargs, match):
  with pytest.raises(ConfigError, match=match):
    data.from_arrays(**{"name": "bad", "kind": "tabular", **kwargs})


def test_fewer_examples_than_the_largest_batch_is_refused_before_compiling():
  ds = data.from_arrays(np.zeros((40, 3)), np.arange(40) % 2, name="small", kind="tabular")
  table = grid.make_grid({"lr": (0.1,), "batch_size": (8, 64)})
  with pytest.raises(ConfigError, match="batch_size"):
    train_grid(models.get_model("mlp", 2, hidden=(8,)), ds, table, TrainSettings(epochs=1),
               progress=False)


USERS_DATA = {
    "breast_cancer (tabular)": lambda: data.from_arrays(
        *load_breast_cancer(return_X_y=True), name="breast_cancer", kind="tabular"),
    "wine (tabular)": lambda: data.from_arrays(*load_wine(return_X_y=True), name="wine",
                                               kind="tabular"),
    "uint8 images": lambda: data.from_arrays(IMAGES, IMAGE_LABELS, name="pictures"),
}


@pytest.mark.parametrize("make", USERS_DATA.values(), ids=USERS_DATA)
def test_users_data_trains_at_augmentation_zero_and_one(make):
  ds = make()
  table = grid.make_grid({"lr": (0.05,), "batch_size": (16,), "aug": (0.0, 1.0)})
  result = train_grid(models.get_model("mlp", ds.num_classes, hidden=(16,)), ds, table,
                      TrainSettings(epochs=2, eval_every=0), progress=False)
  members = result.members.set_index("aug")
  assert members["final_val_loss"].notna().all() and not members["diverged"].any()
  # The augmented member saw other inputs: its training diverges from the plain one's.
  assert members.loc[1.0, "final_train_loss"] != members.loc[0.0, "final_train_loss"]
  assert members["final_val_acc"].max() > 1.0 / ds.num_classes


def test_kind_picks_the_augmentation_policy():
  tabular = data.from_arrays(np.zeros((20, 5)), np.arange(20) % 2, name="t", kind="tabular")
  sequence = data.from_arrays(np.zeros((20, 40)), np.arange(20) % 2, name="s",
                              kind="sequence")
  image = data.from_arrays(IMAGES, IMAGE_LABELS, name="cifar10")
  policy = augment.policy_for_dataset
  assert (policy(tabular).max_shift, policy(tabular).cutout_frac) == (0.0, 0.0)
  assert policy(tabular).noise_std > 0 and policy(tabular).value_range is None
  assert policy(sequence).max_shift == 4.0 and policy(sequence).value_range is None
  assert policy(image) == augment.policy_for("cifar10", (12, 12, 3))
  assert policy(data.load("mnist1d")) == augment.policy_for("mnist1d", (40, 1, 1))


def wine_arrays():
  """A dataset function as a user writes one (named in a config as
  ``tests.test_arrays:wine_arrays``)."""
  x, y = load_wine(return_X_y=True)
  return {"x_train": x, "y_train": y, "kind": "tabular"}


def test_dataset_function_runs_from_the_command_line_with_a_report(tmp_path):
  workdir = tmp_path / "wine"
  assert cli.main(["run", "experiments/lr_batch_aug.py:runlocal", "--workdir", str(workdir),
                   "--no-progress", "--config.dataset=tests.test_arrays:wine_arrays",
                   "--config.grid.batch_size=(16,)"]) == 0
  members = pd.read_parquet(workdir / "members.parquet")
  assert len(members) > 0 and members["final_val_acc"].notna().all()
  assert os.path.exists(workdir / "report.html")


def test_dataset_function_returning_something_else_is_a_config_error():
  with pytest.raises(ConfigError, match=r"dataset: .*returned list; return an lrjax.data"):
    arrays.from_function(lambda: [1, 2])


def test_tfds_version_suffix_stays_a_catalog_name():
  assert arrays._tfds_version("cifar10:3.0.2") and not arrays._tfds_version("pkg.mod:fn")
