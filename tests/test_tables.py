"""Tests for lrjax.analysis.tables: loading run directories, grid axes and JSON values."""
import json

import numpy as np
import pandas as pd
import pytest

from lrjax.analysis import tables
from lrjax.analysis.synthetic import save_run, synthetic_run
from lrjax.errors import ConfigError


def test_load_run_roundtrip(tmp_path):
  run = synthetic_run(lrs=(0.01, 0.02), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  loaded = tables.load_run(save_run(run, str(tmp_path)))
  assert loaded.config["grid"]["lr"] == [0.01, 0.02]
  pd.testing.assert_frame_equal(loaded.members, run.members, check_dtype=False)
  assert len(loaded.history) == len(run.history)


def test_load_run_missing_files_raises(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    tables.load_run(str(tmp_path / "nope"))
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(ConfigError, match="members.parquet, history.parquet"):
    tables.load_run(str(tmp_path))


def test_load_run_missing_column_raises(tmp_path):
  run = synthetic_run(lrs=(0.01,), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  save_run(run._replace(members=run.members.drop(columns=["diverged"])), str(tmp_path))
  with pytest.raises(ConfigError, match="diverged"):
    tables.load_run(str(tmp_path))


def test_dataset_sizes_read_from_run_info(tmp_path):
  run = synthetic_run(lrs=(0.01,), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  config = {k: v for k, v in run.config.items() if k not in ("num_classes", "num_val")}
  save_run(run._replace(config=config), str(tmp_path))
  (tmp_path / "run_info.json").write_text(json.dumps({"num_classes": 10, "num_val": 250}))
  assert tables.dataset_sizes(tables.load_run(str(tmp_path))) == (10, 250)


def test_grid_axes_lists_extra_axis_after_core_axes():
  run = synthetic_run(lrs=(0.01, 0.02), batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                      extra_axes={"momentum": (0.0, 0.9)})
  assert tables.grid_axes(run.members) == ["lr", "batch_size", "aug", "seed", "momentum"]


def test_grid_axes_skips_status_and_train_loss_columns():
  run = synthetic_run(lrs=(0.01,), batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                      status_columns=True)
  assert tables.grid_axes(run.members) == ["lr", "batch_size", "aug", "seed"]


def test_jsonable_converts_numpy_values_and_nan():
  assert tables.jsonable({"a": np.float32(0.5), "b": [np.nan, np.int64(3)]}) == {
      "a": 0.5, "b": [None, 3]}


def test_status_thresholds_read_the_settings_the_engine_passes_to_member_status():
  from lrjax import outcomes
  from lrjax.engine import TrainSettings
  settings = TrainSettings(failed_loss_ratio=0.9, failed_acc_factor=1.5, slow_fraction=0.3)
  config = {"grid": {"lr": [0.1]},
            **{field: getattr(settings, field) for field in outcomes.STATUS_SETTINGS}}
  run = tables.RunTables(config, None, None, "")
  assert tables.status_thresholds(run) == outcomes.status_arguments(settings)
  flag = tables.RunTables({"slow_fraction": True}, None, None, "")
  assert tables.status_thresholds(flag) == {}
