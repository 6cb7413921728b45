"""Tests for the offline MNIST-1D TFDS builder (lrjax.data.mnist1d_builder; ~10 s on 2 cores)."""

from __future__ import annotations

import hashlib
import random
import socket

import numpy as np
import pytest

pytest.importorskip("mnist1d")
tfds = pytest.importorskip("tensorflow_datasets")

from lrjax.data import mnist1d_builder as mb  # noqa: E402  (registers the "mnist1d" builder)

SIZES = {"train": 6000, "validation": 2000, "test": 2000}


@pytest.fixture(scope="module")
def arrays():
  return mb.mnist1d_arrays()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  builder = mb.Mnist1d(data_dir=data_dir)
  builder.download_and_prepare()
  return builder, data_dir


def test_generation_is_offline_and_writes_nothing(monkeypatch, tmp_path):
  def no_network(*args, **kwargs):
    raise AssertionError("mnist1d tried to use the network")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket, "create_connection", no_network)
  import requests
  monkeypatch.setattr(requests, "get", no_network)
  monkeypatch.chdir(tmp_path)  # mnist1d.get_dataset would write a pickle here
  out = mb.mnist1d_arrays()
  assert set(out) == set(SIZES)
  assert list(tmp_path.iterdir()) == []


def test_deterministic_and_restores_global_rng(arrays):
  np.random.seed(123)
  random.seed(123)
  expected_np, expected_py = np.random.rand(), random.random()
  np.random.seed(123)
  random.seed(123)
  again = mb.mnist1d_arrays()
  assert (np.random.rand(), random.random()) == (expected_np, expected_py)
  for split in SIZES:
    np.testing.assert_array_equal(again[split][0], arrays[split][0])
    np.testing.assert_array_equal(again[split][1], arrays[split][1])


def test_shapes_dtypes_sizes_and_balance(arrays):
  assert {s: len(y) for s, (x, y) in arrays.items()} == SIZES
  for split, (x, y) in arrays.items():
    assert x.shape == (SIZES[split], 40, 1, 1) and x.dtype == np.float32
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    counts = np.bincount(y, minlength=10)
    assert counts.min() >= 0.8 * len(y) / 10 and counts.max() <= 1.2 * len(y) / 10, counts
  all_y = np.concatenate([y for _, y in arrays.values()])
  np.testing.assert_array_equal(np.bincount(all_y), np.full(10, 1000))
  all_x = np.concatenate([x for x, _ in arrays.values()])
  assert abs(all_x.mean()) < 1e-4 and abs(all_x.std() - 1.0) < 1e-4  # standardized
  assert np.isfinite(all_x).all() and -6 < all_x.min() and all_x.max() < 6


def test_splits_are_the_documented_cut(arrays):
  from mnist1d.data import get_dataset_args, make_dataset

  args = get_dataset_args()
  args.num_samples, args.seed = 10_000, 42
  state = np.random.get_state()
  data = make_dataset(args)
  np.random.set_state(state)
  x = data["x"].astype(np.float32)[:, :, None, None]
  np.testing.assert_array_equal(arrays["train"][0], x[:6000])
  np.testing.assert_array_equal(arrays["validation"][0], x[6000:])
  np.testing.assert_array_equal(arrays["test"][0],
                                data["x_test"].astype(np.float32)[:, :, None, None])
  np.testing.assert_array_equal(arrays["test"][1], data["y_test"])


def test_labels_fingerprint(arrays):
  # The labels depend only on numpy's legacy seeded RNG stream (stable across
  # numpy versions), so a change here means mnist1d's generator changed.
  labels = np.concatenate([arrays[s][1] for s in SIZES]).astype(np.int64)
  digest = hashlib.sha256(labels.tobytes()).hexdigest()[:16]
  assert digest == LABELS_SHA256_16, digest


def test_prepare_and_read_back(prepared, arrays):
  builder, data_dir = prepared
  info = builder.info
  assert info.name == "mnist1d"
  assert info.supervised_keys == ("image", "label")
  assert info.features["label"].num_classes == 10
  assert {s: info.splits[s].num_examples for s in SIZES} == SIZES
  for split in SIZES:
    source = tfds.data_source("mnist1d", split=split, data_dir=data_dir, download=False,
                              builder_kwargs={"file_format": "array_record"})
    records = source.__getitems__(list(range(len(source))))
    x = np.stack([r["image"] for r in records])
    y = np.asarray([r["label"] for r in records])
    assert x.dtype == np.float32 and x.shape == (SIZES[split], 40, 1, 1)
    # disable_shuffling=True: stored order is the generated order.
    np.testing.assert_array_equal(x, arrays[split][0])
    np.testing.assert_array_equal(y, arrays[split][1])


def test_as_data_source_and_builder_by_name(prepared):
  builder, data_dir = prepared
  sources = builder.as_data_source()
  assert {s: len(sources[s]) for s in SIZES} == SIZES
  assert sources["test"][0]["image"].shape == (40, 1, 1)
  # The lookup lrjax.data.load does for a registered name.
  by_name = tfds.builder("mnist1d", data_dir=data_dir, file_format="array_record")
  assert by_name.is_prepared()
  assert by_name.info.supervised_keys == ("image", "label")


LABELS_SHA256_16 = "8904d7156a1ecc79"
