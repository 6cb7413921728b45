"""``lrjax extend``: added members train alone, equal a fresh union run, and the run's own
rows, refusals, interruptions and failures leave it as it was."""

import hashlib
import json
import os
import shutil
import signal

import numpy as np
import pandas as pd
import pytest

from lrjax import cli, experiment, extend
from lrjax.engine import checkpoint
from lrjax.errors import ConfigError, RunNotWritten
from lrjax.outcomes import member_status, status_arguments
from lrjax.workdir import locked

TRAINED = ["diverged", "diverged_at", "updates", "final_val_loss", "final_val_acc",
           "best_val_loss", "best_val_acc", "test_loss", "test_acc", "first_train_loss",
           "final_train_loss"]
METRICS = ["updates", "lr_now", "train_loss", "val_loss", "val_acc"]


def _config(**grid):
  c = experiment.default_config()
  c.model_kwargs = {"hidden": (16,)}
  c.epochs = 1.0
  c.eval_every = 640  # two evaluations: a resumable segment boundary
  c.grid.lr = (0.05, 0.2)
  c.grid.batch_size = (32, 64)
  c.grid.seed = (0,)
  for axis, values in grid.items():
    c.grid[axis] = values
  return c


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished 4-member run, copied afresh into each test's directory."""
  workdir = str(tmp_path_factory.mktemp("base") / "run")
  experiment.train_and_evaluate(_config(), workdir, progress=False, writers=())
  return workdir


@pytest.fixture
def run_dir(finished, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished, workdir)
  return workdir


def _digests(workdir):
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _tables(workdir):
  return (pd.read_parquet(os.path.join(workdir, "members.parquet")),
          pd.read_parquet(os.path.join(workdir, "history.parquet")))


def _by_hparams(members, history, keys=("lr", "batch_size", "seed")):
  """history indexed by hyperparameters instead of member numbers."""
  merged = history.merge(members[["member", *keys]], on="member")
  return merged.drop(columns="member").set_index([*keys, "examples_seen"]).sort_index()


def test_extend_keeps_existing_rows_bit_identical_when_seeds_added(run_dir):
  members0, history0 = _tables(run_dir)
  result = extend.extend_run(run_dir, {"seed": (1, 2)}, progress=False, writers=())
  members, history = _tables(run_dir)
  assert len(members) == 12 and sorted(members["member"]) == list(range(12))
  old = members[members["member"] < 4].reset_index(drop=True)
  pd.testing.assert_frame_equal(old.drop(columns="status"), members0.drop(columns="status"),
                                check_exact=True)
  assert history[history["member"] < 4].reset_index(drop=True).equals(history0)
  # status is re-judged over the union, with the run's own rule
  dataset = experiment.resolve(_config()).dataset
  want = member_status(members, num_classes=10, num_val=len(dataset.validation),
                       **status_arguments(experiment.resolve(_config()).settings))
  assert members["status"].tolist() == list(want)
  assert result.members.equals(members)


def test_new_members_equal_fresh_union_run_when_micro_batch_changes(run_dir, tmp_path):
  extend.extend_run(run_dir, {"batch_size": (16,), "seed": (1,)}, progress=False, writers=())
  with open(os.path.join(run_dir, "run_info.json")) as f:
    info = json.load(f)
  assert info["micro_batch"] == 32 and info["extensions"][0]["micro_batch"] == 16
  union = str(tmp_path / "union")
  experiment.train_and_evaluate(_config(batch_size=(16, 32, 64), seed=(0, 1)), union,
                                progress=False, writers=())
  members, history = _tables(run_dir)
  fresh = _by_hparams(*_tables(union))
  got = _by_hparams(members, history)
  assert got.index.equals(fresh.index)
  new = members[members["member"] >= 4]
  new_keys = set(zip(new.lr, new.batch_size, new.seed))
  rows = [k[:3] in new_keys for k in got.index]
  # The added members train with the union's micro-batch of 16: the same program math.
  np.testing.assert_allclose(got[rows][METRICS].to_numpy(float),
                             fresh[rows][METRICS].to_numpy(float), rtol=2e-5, atol=1e-6)
  # The run's own members (micro-batch 32) differ from the union's (16) only by the
  # order of accumulation.
  old = [not r for r in rows]
  np.testing.assert_allclose(got[old][METRICS].to_numpy(float),
                             fresh[old][METRICS].to_numpy(float), rtol=2e-3, atol=2e-4)


def test_extend_records_extension_and_rebuilds_report(run_dir):
  extend.extend_run(run_dir, {"lr": (0.8,)}, progress=False, writers=())
  with open(os.path.join(run_dir, "config.json")) as f:
    config = json.load(f)
  (record,) = config["extensions"]
  assert record["added"] == 2 and record["members"] == [4, 5]
  assert config["grid"]["lr"] == [0.05, 0.2, 0.8]
  with open(os.path.join(run_dir, "summary.json")) as f:
    summary = json.load(f)
  assert sum(summary["status_counts"].values()) == 6
  assert "0.8" in open(os.path.join(run_dir, "report.html")).read()


BAD_EXTENSIONS = [
    # (overrides, points, the words the error must hold)
    (["--config.epochs=2"], None, ["epochs:", "start a new run"]),
    (["--config.optimizer=adam"], None, ["optimizer:"]),
    (["--config.grid.momentum=(0.5,)"], None, ["grid.momentum: not an axis"]),
    (["--config.grid.seed=(0,)"], None, ["in the run already"]),
    ([], pd.DataFrame({"lr": [0.3]}), ["--points:", "missing"]),
    (["--config.grid.lr=(-1.0,)"], None, ["grid.lr"]),
]


@pytest.mark.parametrize("overrides,points,words", BAD_EXTENSIONS)
def test_refused_extension_names_field_and_changes_nothing(run_dir, overrides, points, words):
  before = _digests(run_dir)
  with pytest.raises(ConfigError) as error:
    saved = extend.read_run(run_dir)[0]
    values = extend.values_from_overrides(saved, overrides) if overrides else None
    extend.extend_run(run_dir, values, points, progress=False, writers=())
  for word in words:
    assert word in str(error.value)
  assert _digests(run_dir) == before
  assert not os.path.exists(extend.extension_dir(run_dir))


def test_extension_changing_update_budget_is_refused(tmp_path):
  workdir = str(tmp_path / "run")
  config = _config()
  config.budget = "updates"
  experiment.train_and_evaluate(config, workdir, progress=False, writers=())
  before = _digests(workdir)
  with pytest.raises(ConfigError, match=r"grid.batch_size: .*updates per member"):
    extend.extend_run(workdir, {"batch_size": (16,)}, progress=False, writers=())
  assert _digests(workdir) == before


def test_cli_extend_refusal_exits_2_and_names_field(run_dir, capsys):
  before = _digests(run_dir)
  assert cli.main(["extend", run_dir, "--config.schedule=cosine", "--no-progress"]) == 2
  assert "schedule:" in capsys.readouterr().err
  assert _digests(run_dir) == before


def test_extension_of_locked_run_is_refused(run_dir):
  with locked(run_dir), pytest.raises(ConfigError, match="in use by another lrjax run"):
    extend.extend_run(run_dir, {"seed": (1,)}, progress=False, writers=())


def _interrupt_after_first_evaluation(monkeypatch):
  original = extend.train

  def interrupted(*args, **kwargs):
    def send(done, total):
      if done == 1:
        os.kill(os.getpid(), signal.SIGTERM)
    return original(*args, **{**kwargs, "on_segment": send})

  monkeypatch.setattr("lrjax.extend.train", interrupted)
  return original


def test_killed_extension_resumes_to_uninterrupted_result(run_dir, tmp_path, monkeypatch):
  twin = str(tmp_path / "twin")
  shutil.copytree(run_dir, twin)
  before = _digests(run_dir)
  original = _interrupt_after_first_evaluation(monkeypatch)
  with pytest.raises(checkpoint.Interrupted):
    extend.extend_run(run_dir, {"seed": (1,)}, progress=False, writers=())
  assert _digests(run_dir) == before  # the run is as it was
  assert os.path.isdir(extend.extension_dir(run_dir))
  with pytest.raises(ConfigError, match="pass --resume"):
    extend.extend_run(run_dir, {"seed": (1,)}, progress=False, writers=())
  monkeypatch.setattr("lrjax.extend.train", original)
  assert cli.main(["extend", run_dir, "--resume", "--no-progress"]) == 0
  assert not os.path.exists(extend.extension_dir(run_dir))
  extend.extend_run(twin, {"seed": (1,)}, progress=False, writers=())
  for got, want in zip(_tables(run_dir), _tables(twin)):
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_failure_while_writing_keeps_run_and_trained_members(run_dir, monkeypatch):
  before = _digests(run_dir)

  def disk_full(directory, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr("lrjax.workdir.report.write_report", disk_full)
  with pytest.raises(RunNotWritten, match="No space left") as raised:
    extend.extend_run(run_dir, {"seed": (1,)}, progress=False, writers=())
  assert isinstance(raised.value.cause, OSError)
  assert f"{extend.extension_dir(run_dir)} holds the final checkpoints" in str(raised.value)
  assert _digests(run_dir) == before
  parent = os.path.dirname(run_dir)
  assert not [n for n in os.listdir(parent) if n.startswith(".lrjax-")]  # no temporary left
  # the trained members are kept: their checkpoint holds every evaluation
  saved = checkpoint._read(checkpoint.chunk_path(extend.extension_dir(run_dir), 0))
  assert saved["segments_done"] == 2
  monkeypatch.undo()
  extend.extend_run(run_dir, resume=True, progress=False, writers=())
  assert len(_tables(run_dir)[0]) == 8 and not os.path.exists(extend.extension_dir(run_dir))


def test_run_resume_on_finished_run_points_to_extend(finished, capsys):
  args = ["run", "experiments/lr_batch_aug.py:runlocal", "--workdir", finished, "--resume"]
  assert cli.main(args) == 2
  err = capsys.readouterr().err
  assert "is finished" in err and "lrjax extend" in err


@pytest.mark.parametrize("values,words", [({"seed": (3, 3)}, "grid.seed: the value 3"),
                                          ({"lr": (0.2000000001,)}, "equal in float32")])
def test_repeated_or_float32_equal_added_value_is_refused(run_dir, values, words):
  before = _digests(run_dir)
  with pytest.raises(ConfigError, match=words):
    extend.extend_run(run_dir, values, progress=False, writers=())
  assert _digests(run_dir) == before


def test_members_of_one_schedule_family_added_when_grid_has_several(tmp_path):
  """Per-family schedule_kwargs name every family of the run's grid.schedule; an
  extension whose new members are all of one family still takes them."""
  c = _config(schedule=("constant", "cosine"), batch_size=(32,))
  c.schedule_kwargs = {"cosine": {"alpha": 0.1}}
  workdir, union = str(tmp_path / "run"), str(tmp_path / "union")
  experiment.train_and_evaluate(c, workdir, progress=False, writers=())
  points = pd.DataFrame({"lr": [0.1], "batch_size": [32], "aug": [0.0], "seed": [0],
                         "schedule": ["constant"]})
  extend.extend_run(workdir, points=points, progress=False, writers=())
  c.grid.lr = (0.05, 0.1, 0.2)
  experiment.train_and_evaluate(c, union, progress=False, writers=())
  keys = ("lr", "batch_size", "seed", "schedule")
  members, history = _tables(union)
  fresh = _by_hparams(members, history[history["member"].isin(
      members[(members.lr != 0.1) | (members.schedule == "constant")]["member"])], keys)
  got = _by_hparams(*_tables(workdir), keys)
  assert got.index.equals(fresh.index)
  np.testing.assert_allclose(got[METRICS].to_numpy(float), fresh[METRICS].to_numpy(float),
                             rtol=2e-5, atol=1e-6)
