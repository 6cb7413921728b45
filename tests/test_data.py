"""Data: the built-in digits and mnist1d, catalog datasets through mocked TFDS, to_float,
the example stream."""
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
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
  with pytest.raises(ConfigError, match="dataset: unknown") as info:
    data.load("definitely_not_a_dataset")
  assert "'digits'" in str(info.value) and "'mnist1d'" in str(info.value)


def test_builtin_datasets_are_digits_and_mnist1d():
  assert set(data.BUILTIN_DATASETS) == {"digits", "mnist1d"}
  assert data.BUILTIN == "digits"


def test_unprepared_catalog_error_names_builtin_alternatives(tmp_path):
  with pytest.raises(ConfigError, match="mnist1d"):
    data.load("cifar100", str(tmp_path))


def test_mnist1d_prepared_offline_then_loaded_as_float32(tmp_path):
  from lrjax.data import mnist1d_builder
  data.prepare("mnist1d", str(tmp_path))
  ds = data.load("mnist1d", str(tmp_path))
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (6000, 2000, 2000)
  assert ds.image_shape == (40, 1, 1) and ds.num_classes == 10
  arrays = mnist1d_builder.mnist1d_arrays()
  for name in ("train", "validation", "test"):
    split = getattr(ds, name)
    # Not cast to uint8: the standardized values come back exactly, in order.
    assert split.images.dtype == np.float32 and split.labels.dtype == np.int32
    np.testing.assert_array_equal(split.images, arrays[name][0])
    np.testing.assert_array_equal(split.labels, arrays[name][1])
  assert ds.train.images.min() < -3 and ds.train.images.max() > 3


def test_to_float_scales_uint8_keeps_float_under_jit():
  u8 = np.array([[0, 1, 128, 255]], np.uint8)
  got = jax.jit(data.to_float)(u8)
  assert got.dtype == jnp.float32
  # The same expression the engine used before: uint8 results stay bit-identical.
  np.testing.assert_array_equal(got, jax.jit(lambda x: x.astype(jnp.float32) / 255.0)(u8))
  feats = np.array([-4.5, 0.0, 3.25], np.float32)
  np.testing.assert_array_equal(jax.jit(data.to_float)(feats), feats)
  assert data.to_float(feats.astype(np.float64)).dtype == jnp.float32
  assert data.to_float(jnp.ones(2, jnp.bfloat16)).dtype == jnp.float32
  with pytest.raises(TypeError, match="uint8"):
    data.to_float(np.arange(3, dtype=np.int32))


def test_example_order_is_epoch_permutations_when_stream_spans_epochs():
  order = data.example_order(3, num_train=7, num_examples=20)
  assert sorted(order[:7]) == list(range(7)) and sorted(order[7:14]) == list(range(7))
  np.testing.assert_array_equal(order, data.example_order(3, 7, 20))
  assert not np.array_equal(order, data.example_order(4, 7, 20))


def test_builtin_dataset_prepared_once_when_processes_race(tmp_path):
  """Processes of a multi-process run on a fresh machine prepare the same built-in
  dataset at the same moment; TFDS's rename into place used to fail for all but one."""
  script = ("import sys; from lrjax import data; "
            "ds = data.load('digits', sys.argv[1]); print(len(ds.train))")
  procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(3)]
  results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
  for out, err, rc in results:
    assert rc == 0, err[-2000:]
    assert out.split()[-1] == "1297"  # TFDS also prints its progress here
  assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["1.0.0"]


def test_prepare_without_network_refuses_at_once_naming_the_fix(tmp_path, monkeypatch):
  from lrjax.data import datasets

  def unreachable(address, timeout=None):
    raise OSError(101, "Network is unreachable")

  monkeypatch.setattr(datasets.socket, "create_connection", unreachable)
  monkeypatch.setattr(datasets.tfds, "builder", lambda *a, **k: pytest.fail("downloaded"))
  with pytest.raises(ConfigError, match=r"prepare: 'mnist' must be downloaded once, and "
                     r"storage.googleapis.com cannot be reached \(Network is unreachable") as e:
    data.prepare("mnist", data_dir=str(tmp_path))
  assert "digits, mnist1d" in str(e.value) and "--data_dir DIR" in str(e.value)
  assert os.listdir(tmp_path) == []


def test_prepare_cut_off_mid_download_leaves_nothing_behind(tmp_path, monkeypatch):
  from lrjax.data import datasets

  (tmp_path / "downloads").mkdir()
  (tmp_path / "downloads" / "other.zip").write_text("kept")  # another dataset's download

  class CutOff:
    def download_and_prepare(self):
      (tmp_path / "mnist" / "3.0.1.incomplete").mkdir(parents=True)
      (tmp_path / "downloads" / "mnist.gz.tmp.123").write_text("half")
      raise ConnectionError("Connection aborted")

  monkeypatch.setattr(datasets.socket, "create_connection",
                      lambda *a, **k: types.SimpleNamespace(close=lambda: None))
  monkeypatch.setattr(datasets.tfds, "builder", lambda *a, **k: CutOff())
  with pytest.raises(ConfigError, match=r"downloading 'mnist' failed \(ConnectionError"):
    data.prepare("mnist", data_dir=str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["downloads"]
  assert os.listdir(tmp_path / "downloads") == ["other.zip"]
