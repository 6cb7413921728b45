"""Data: the built-in digits, catalog datasets through mocked TFDS, the example stream."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lrjax import data
from lrjax.errors import ConfigError


def test_digits_splits_are_fixed_uint8_when_loaded():
  ds = data.load("digits")
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (1297, 250, 250)
  assert ds.train.images.dtype == np.uint8 and ds.image_shape == (8, 8, 1)
  assert ds.num_classes == 10 and set(np.unique(ds.train.labels)) == set(range(10))
  assert ds.train.images.max() == 255
  # Disjoint splits: no test image appears in train.
  train = {im.tobytes() + bytes([lab]) for im, lab in zip(ds.train.images, ds.train.labels)}
  overlap = sum(im.tobytes() + bytes([lab]) in train
                for im, lab in zip(ds.test.images, ds.test.labels))
  assert overlap <= 5  # optdigits holds a few exact duplicates, not a split leak


def test_catalog_dataset_reads_through_data_source_when_mocked(tmp_path):
  with tfds.testing.mock_data(num_examples=40):
    ds = data.load("mnist", str(tmp_path))
  assert ds.image_shape == (28, 28, 1) and ds.num_classes == 10
  assert len(ds.train) + len(ds.validation) == 40 and len(ds.validation) == 4
  assert ds.train.images.dtype == np.uint8


def test_unprepared_catalog_dataset_error_says_how_to_prepare(tmp_path):
  data.load.cache_clear()
  with pytest.raises(ConfigError, match="lrjax prepare cifar10"):
    data.load("cifar10", str(tmp_path))


def test_unknown_dataset_raises_config_error_naming_field():
  with pytest.raises(ConfigError, match="dataset: unknown"):
    data.load("definitely_not_a_dataset")


def test_example_order_is_epoch_permutations_when_stream_spans_epochs():
  order = data.example_order(3, num_train=7, num_examples=20)
  assert sorted(order[:7]) == list(range(7)) and sorted(order[7:14]) == list(range(7))
  np.testing.assert_array_equal(order, data.example_order(3, 7, 20))
  assert not np.array_equal(order, data.example_order(4, 7, 20))
