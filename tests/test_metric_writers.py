"""TensorBoard event files written while training, read back; the optional W&B writer."""

import glob
import os
import sys
import types

import numpy as np
import pandas as pd
import pytest

from lrjax import experiment
from lrjax.metric_writers import (SCALARS, TensorBoardWriter, WandbWriter, make_writers,
                                  member_run_name)

EventAccumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator").EventAccumulator


def _config():
  c = experiment.default_config()
  c.grid.lr, c.grid.batch_size, c.grid.aug, c.grid.seed = (0.05, 0.2), (32,), (0.0,), (0, 1)
  c.model_kwargs = {"hidden": (32,)}
  c.epochs, c.eval_every = 1, 320
  return c


def _grid_row(row):
  return pd.Series({k: row[k] for k in ("member", "lr", "batch_size", "aug", "seed")})


def _read_events(directory):
  """The event files in ``directory``, read back: ``(scalars, plugin)``, the last
  ``(step, value)`` of each scalar tag and the HParams plugin data of each hparams tag."""
  from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
  from tensorboard.plugins.hparams import plugin_data_pb2

  scalars, plugin = {}, {}
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in EventFileLoader(path).Load():
      for v in event.summary.value:
        if v.metadata.plugin_data.plugin_name == "hparams":
          plugin[v.tag] = plugin_data_pb2.HParamsPluginData.FromString(
              v.metadata.plugin_data.content)
        elif v.HasField("tensor"):
          scalars[v.tag] = (event.step, float(v.tensor.float_val[0]))
        else:
          scalars[v.tag] = (event.step, v.simple_value)
  return scalars, plugin


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("tb") / "run")
  result = experiment.train_and_evaluate(_config(), workdir, progress=False)
  return workdir, result


def test_every_evaluation_of_every_member_is_in_tensorboard(finished):
  workdir, result = finished
  tb = os.path.join(workdir, "tb")
  assert not os.path.exists(workdir + ".partial")  # moved into the run directory
  for row in result.members.to_dict("records"):
    name = member_run_name(_grid_row(row))
    assert name.startswith(f"member{row['member']:04d}_lr{row['lr']:g}_bs32_aug0_seed")
    acc = EventAccumulator(os.path.join(tb, name))
    acc.Reload()
    hist = result.history[result.history.member == row["member"]]
    for tag in ("val_loss", "val_acc", "train_loss", "lr_now"):
      events = acc.Scalars(tag)
      assert [e.step for e in events] == hist.examples_seen.tolist()
      np.testing.assert_allclose([e.value for e in events], hist[tag], rtol=1e-5)
    assert acc.Scalars("test_acc")[-1].value == pytest.approx(row["test_acc"], rel=1e-5)


def test_hparams_dashboard_has_the_grid(finished):
  workdir, result = finished
  tb = os.path.join(workdir, "tb")
  _, plugin = _read_events(tb)
  root = plugin["_hparams_/experiment"].experiment
  assert {h.name for h in root.hparam_infos} >= {"lr", "batch_size", "aug", "seed"}
  assert {m.name.tag for m in root.metric_infos} >= set(SCALARS) | {"test_acc"}
  for row in result.members.to_dict("records"):
    _, data = _read_events(os.path.join(tb, member_run_name(_grid_row(row))))
    start = data["_hparams_/session_start_info"].session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(row["lr"])
    assert start.hparams["seed"].number_value == row["seed"]
    assert "_hparams_/session_end_info" in data


def test_wandb_is_imported_only_when_asked_and_logs_per_member(monkeypatch, tmp_path):
  monkeypatch.delitem(sys.modules, "wandb", raising=False)
  writers = make_writers(["tensorboard"], str(tmp_path))
  assert [type(w) for w in writers] == [TensorBoardWriter] and "wandb" not in sys.modules
  logged = []

  class FakeRun:
    def log(self, data, step):
      logged.append((step, data))

    def finish(self):
      logged.append("finished")

  fake = types.SimpleNamespace(init=lambda **kw: FakeRun(),
                               Table=lambda dataframe: len(dataframe))
  monkeypatch.setitem(sys.modules, "wandb", fake)
  c = _config()
  c.grid.seed = (0,)
  workdir = str(tmp_path / "run")
  result = experiment.train_and_evaluate(c, workdir, progress=False,
                                         writers=[WandbWriter(mode="disabled")])
  assert logged[-1] == "finished" and not os.path.exists(os.path.join(workdir, "tb"))
  evals = [d for _, d in logged[:-2]]
  assert len(evals) == result.history.examples_seen.nunique()
  assert "member0001_lr0.2_bs32_aug0_seed0/val_acc" in evals[0]


def test_status_is_an_hparams_metric_and_failures_end_as_failures(tmp_path):
  from tensorboard.plugins.hparams import api_pb2

  from lrjax import grid
  from lrjax.metric_writers import STATUS_CODES

  table = grid.make_grid({"lr": (0.001, 0.1, 1.0, 10.0), "batch_size": (32,)})
  writer = TensorBoardWriter(str(tmp_path))
  writer.start(types.SimpleNamespace(table=table))
  writer.write(table, 64, {"val_loss": np.ones(4), "diverged": np.zeros(4, bool)})
  statuses = ["slow", "trained", "failed", "diverged"]
  writer.finish(table.assign(status=statuses, diverged=[False, False, False, True]))
  writer.close()

  _, root = _read_events(str(tmp_path))
  assert "status" in {m.name.tag for m in root["_hparams_/experiment"].experiment.metric_infos}
  assert STATUS_CODES == {"trained": 0, "slow": 1, "failed": 2, "diverged": 3}
  for row, status in zip(table.to_dict("records"), statuses):
    scalars, plugin = _read_events(str(tmp_path / member_run_name(row)))
    assert scalars["status"] == (64, STATUS_CODES[status])
    end = plugin["_hparams_/session_end_info"].session_end_info.status
    assert end == (api_pb2.STATUS_FAILURE if status in ("failed", "diverged")
                   else api_pb2.STATUS_SUCCESS)


def test_open_files_and_threads_bounded_when_16384_members(tmp_path, monkeypatch):
  """16,384 members, 3 evaluations, a fake clock past flush_secs between them: one
  event file open at a time, no writer threads, every member's events on disk."""
  import threading

  from lrjax import grid, metric_writers

  table = grid.make_grid({"lr": tuple(np.geomspace(1e-3, 1.0, 64)),
                          "batch_size": (32, 64, 128, 256), "seed": tuple(range(64))})
  assert len(table) == 16384
  now, open_now, most_open = [0.0], [0], [0]
  real_open = metric_writers._open_event_file

  class Counted:
    def __init__(self, path):
      self.f = real_open(path)

    def __enter__(self):
      open_now[0] += 1
      most_open[0] = max(most_open[0], open_now[0])
      return self.f.__enter__()

    def __exit__(self, *exc):
      open_now[0] -= 1
      return self.f.__exit__(*exc)

  monkeypatch.setattr(metric_writers, "_open_event_file", Counted)
  threads = threading.active_count()
  writer = TensorBoardWriter(str(tmp_path), flush_secs=30, clock=lambda: now[0])
  writer.start(types.SimpleNamespace(table=table))
  n = len(table)
  for step in (64, 128, 192):
    now[0] += 31.0  # past flush_secs: this evaluation reaches the event files
    writer.write(table, step, {"val_loss": np.full(n, 1.0 / step), "val_acc": np.ones(n)})
    assert threading.active_count() == threads
  writer.finish(table.assign(status="trained", test_acc=0.5))
  writer.close()
  assert most_open[0] == 1 and open_now[0] == 0
  assert len(os.listdir(tmp_path)) == n + 1  # a run per member, and the HParams experiment
  for row in table.iloc[[0, 8191, n - 1]].to_dict("records"):
    scalars, plugin = _read_events(str(tmp_path / member_run_name(row)))
    assert scalars["val_loss"] == (192, pytest.approx(1.0 / 192))
    assert scalars["test_acc"] == (192, 0.5)
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(plugin)


def test_wandb_logs_bounded_keys_and_says_so_when_16384_members(monkeypatch, capsys):
  from lrjax import grid
  from lrjax.metric_writers import WANDB_MEMBER_CURVES

  logged, inits = [], []

  class FakeRun:
    def log(self, data, step):
      logged.append(data)

    def finish(self):
      pass

  fake = types.SimpleNamespace(init=lambda **kw: inits.append(kw) or FakeRun(),
                               Table=lambda dataframe: len(dataframe))
  monkeypatch.setitem(sys.modules, "wandb", fake)
  table = grid.make_grid({"lr": tuple(np.geomspace(1e-3, 1.0, 64)),
                          "batch_size": (32, 64, 128, 256), "seed": tuple(range(64))})
  n = len(table)
  writer = WandbWriter(mode="disabled")
  writer.start(types.SimpleNamespace(table=table))
  val_loss = np.linspace(0.1, 2.0, n)
  val_loss[5] = np.nan
  writer.write(table, 64, {"val_loss": val_loss, "diverged": np.arange(n) == 5})
  writer.finish(table)
  member_keys = [k for k in logged[0] if k.startswith("member")]
  assert len(member_keys) == WANDB_MEMBER_CURVES  # one scalar of 64 of the 16,384
  assert logged[0]["grid/val_loss_min"] == pytest.approx(0.1)
  assert logged[0]["grid/val_loss_max"] == pytest.approx(2.0)
  assert logged[0]["grid/diverged_fraction"] == pytest.approx(1 / n)
  assert logged[1] == {"members": n}  # the final table has every member
  assert inits[0]["config"]["curves_of"] == "every 256th member (64 of 16384)"
  assert "every 256th member (64 of 16384)" in capsys.readouterr().err


def test_session_start_and_record_framing_match_tensorboardx():
  from tensorboardX.record_writer import masked_crc32c
  from tensorboardX.summary import hparams

  from lrjax import metric_writers

  values = {"lr": 0.1, "batch_size": 32, "optimizer": "adam", "nesterov": True, "x": None}
  _, theirs, _ = hparams(values, {"val_loss": 0.0})
  assert (metric_writers.session_start(values).SerializeToString()
          == theirs.SerializeToString())
  for data in (b"", b"lrjax", bytes(range(256)) * 9):
    assert metric_writers._masked_crc32c(data) == masked_crc32c(data)


def test_tensorboard_lists_each_member_as_a_run_with_its_hparams_session(tmp_path):
  """What `tensorboard --logdir` reads (its EventMultiplexer): one run per member, the
  HParams experiment at the root, a session per member run."""
  from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

  from lrjax import grid

  table = grid.make_grid({"lr": (0.01, 0.1), "batch_size": (32, 64)})
  writer = TensorBoardWriter(str(tmp_path))
  writer.start(types.SimpleNamespace(table=table))
  writer.write(table, 64, {"val_loss": np.ones(4), "val_acc": np.full(4, 0.5)})
  writer.finish(table.assign(status="trained"))
  writer.close()
  multiplexer = EventMultiplexer().AddRunsFromDirectory(str(tmp_path))
  multiplexer.Reload()
  members = {member_run_name(r) for r in table.to_dict("records")}
  assert set(multiplexer.Runs()) == members | {"."}
  hparams = multiplexer.PluginRunToTagToContent("hparams")
  assert "_hparams_/experiment" in hparams["."]
  for run in members:
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(hparams[run])
    assert multiplexer.Tensors(run, "val_loss")[0].step == 64
