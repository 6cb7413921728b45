"""Preemption-safe checkpoints: SIGTERM/SIGINT stop at a segment's end with a checkpoint,
``--resume`` finishes bit-identically, and a corrupt checkpoint is reported, never loaded."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from lrjax import cli
from lrjax.engine import checkpoint
from lrjax.errors import ConfigError

MAIN = "experiments/lr_batch_aug.py"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [f"{MAIN}:runlocal", "--no-progress", "--config.eval_every=320", "--config.epochs=2"]

# ``lrjax run`` with a pause after each evaluation, so a signal surely lands mid-training
# on a fast machine (the pause changes nothing that is computed).
SLOW_RUN = """
import sys, time
import lrjax.experiment as e
from lrjax import cli
train = e.train
def slow(*args, **kwargs):
  return train(*args, **{**kwargs, "on_segment": lambda done, total: time.sleep(0.3)})
e.train = slow
sys.exit(cli.main(sys.argv[1:]))
"""


def _tables(workdir):
  return [pd.read_parquet(os.path.join(workdir, name))
          for name in ("members.parquet", "history.parquet")]


@pytest.mark.slow  # three CLI runs; resume itself is in the default suite (test_cli, test_engine)
def test_sigterm_saves_checkpoint_then_resume_matches_uninterrupted_run(tmp_path):
  workdir, baseline = str(tmp_path / "r"), str(tmp_path / "base")
  partial = workdir + ".partial"
  ckpt = checkpoint.chunk_path(partial, 0)
  cmd = [sys.executable, "-c", SLOW_RUN, "run", *ARGS, "--workdir", workdir]
  proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.monotonic() + 240
    while not os.path.exists(ckpt) and proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.01)
    assert os.path.exists(ckpt), proc.poll()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 143, err
  total = 8  # 2 epochs of digits' 1280-example training split / 320
  lines = [line for line in err.splitlines() if "interrupted" in line]
  assert len(lines) == 1 and lines[0].startswith("lrjax run: interrupted by SIGTERM after "
                                                 "evaluation ")
  assert lines[0].endswith(f"/{total}; resume with --resume"), lines
  done = int(lines[0].split("evaluation ")[1].split("/")[0])
  assert 1 <= done < total
  assert not os.path.exists(workdir) and os.path.exists(ckpt)
  assert checkpoint._read(ckpt)["segments_done"] == done  # the signal's segment was saved

  resumed = subprocess.run([sys.executable, "-m", "lrjax.cli", "run", *ARGS, "--workdir",
                            workdir, "--resume"], cwd=ROOT, capture_output=True, text=True,
                           check=False)
  assert resumed.returncode == 0, resumed.stderr
  assert not os.path.exists(partial)
  whole = subprocess.run([sys.executable, "-m", "lrjax.cli", "run", *ARGS, "--workdir",
                          baseline], cwd=ROOT, capture_output=True, text=True, check=False)
  assert whole.returncode == 0, whole.stderr
  for got, want in zip(_tables(workdir), _tables(baseline)):
    pd.testing.assert_frame_equal(got, want, check_exact=True)
  assert len(_tables(workdir)[1]) == 8 * total


def _interrupt_in_process(monkeypatch, signum, after):
  """Runs the rest in this process: ``signum`` is sent to itself after evaluation ``after``."""
  from lrjax import engine
  original = engine.train

  def interrupted(*args, **kwargs):
    def send(done, total):
      if done == after:
        os.kill(os.getpid(), signum)

    return original(*args, **{**kwargs, "on_segment": send})

  monkeypatch.setattr("lrjax.experiment.train", interrupted)
  return original


def test_sigint_stops_at_segment_end_with_exit_130_and_restores_handler(tmp_path, monkeypatch,
                                                                         capsys):
  workdir = tmp_path / "r"
  before = signal.getsignal(signal.SIGINT)
  _interrupt_in_process(monkeypatch, signal.SIGINT, after=1)
  assert cli.main(["run", *ARGS, "--workdir", str(workdir)]) == 130
  err = capsys.readouterr().err
  # the signal came during evaluation 1's callback: evaluation 2 ends, then it stops
  assert "lrjax run: interrupted by SIGINT after evaluation 2/8; resume with --resume" in err
  assert signal.getsignal(signal.SIGINT) is before
  assert not workdir.exists()
  saved = checkpoint._read(checkpoint.chunk_path(str(tmp_path / "r.partial"), 0))
  assert saved["segments_done"] == 2


def test_garbled_checkpoint_is_reported_with_exit_2_and_not_loaded(tmp_path, monkeypatch,
                                                                   capsys):
  workdir = tmp_path / "r"
  original = _interrupt_in_process(monkeypatch, signal.SIGTERM, after=1)
  assert cli.main(["run", *ARGS, "--workdir", str(workdir)]) == 143
  ckpt = checkpoint.chunk_path(str(tmp_path / "r.partial"), 0)
  data_file = _largest_array_file(ckpt)
  with open(data_file, "rb") as f:
    data = bytearray(f.read())
  data[len(data) // 3] ^= 0xFF  # one flipped byte inside an array
  with open(data_file, "wb") as f:
    f.write(bytes(data))
  monkeypatch.setattr("lrjax.experiment.train", original)
  loads = []
  load = checkpoint.load

  def recording(*args):
    out = load(*args)
    loads.append(out[2])  # only reached when the file was accepted
    return out

  monkeypatch.setattr(checkpoint, "load", recording)
  capsys.readouterr()
  assert cli.main(["run", *ARGS, "--workdir", str(workdir), "--resume"]) == 2
  err = " ".join(capsys.readouterr().err.split())
  assert "chunk0000 is corrupt or incomplete" in err and "Delete it" in err, err
  assert "r.partial" in err
  assert not workdir.exists() and os.path.exists(ckpt) and not loads


def _step_dir(path):
  """The one committed step of a checkpoint directory."""
  steps = [d for d in os.listdir(path) if d.isdigit()]
  assert len(steps) == 1, os.listdir(path)
  return os.path.join(path, steps[0])


def _largest_array_file(path):
  """The biggest file orbax wrote for the arrays (where the state's bytes are)."""
  files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(_step_dir(path), "arrays"))
           for f in fs]
  return max(files, key=os.path.getsize)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "manifest"])
def test_load_refuses_damaged_file(tmp_path, damage):
  path = str(tmp_path / "chunk0000")
  state = {"w": np.random.default_rng(0).standard_normal(1000).astype(np.float32)}
  checkpoint.save(path, state, [{"loss": np.ones(3)}], 1)
  if damage == "manifest":  # a well-formed checkpoint whose data does not match its manifest
    other = str(tmp_path / "other")
    checkpoint.save(other, {"w": state["w"] + 1}, [{"loss": np.ones(3)}], 1)
    shutil.copy(os.path.join(_step_dir(path), "manifest", "metadata"),
                os.path.join(_step_dir(other), "manifest", "metadata"))
    shutil.rmtree(path)
    os.rename(other, path)
  else:
    data_file = _largest_array_file(path)
    with open(data_file, "rb") as f:
      raw = f.read()
    if damage == "truncate":
      raw = raw[:len(raw) // 2]
    elif damage == "flip":  # one bit inside the array's bytes
      i = len(raw) // 2
      raw = raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1:]
    elif damage == "empty":
      raw = b""
    with open(data_file, "wb") as f:
      f.write(raw)
  with pytest.raises(ConfigError, match="chunk0000 is corrupt or incomplete"):
    checkpoint.load(path, {"w": np.zeros(1000, np.float32)}, {"loss": 0})


@pytest.mark.parametrize("name", ["_CHECKPOINT_METADATA", "commit_success.txt",
                                  "manifest/metadata", "arrays/_METADATA",
                                  "arrays/manifest.ocdbt"])
def test_load_refuses_checkpoint_missing_a_metadata_file(tmp_path, name):
  path = str(tmp_path / "chunk0000")
  state = {"w": np.arange(10, dtype=np.float32)}
  checkpoint.save(path, state, [], 0)
  os.remove(os.path.join(_step_dir(path), name))
  with pytest.raises(ConfigError, match="chunk0000 is corrupt or incomplete.*Delete it"):
    checkpoint.load(path, state, {})


def test_load_refuses_partial_directory_left_by_a_crashed_first_save(tmp_path):
  path, scratch = str(tmp_path / "chunk0000"), str(tmp_path / "scratch")
  state = {"w": np.arange(10, dtype=np.float32)}
  checkpoint.save(scratch, state, [{"loss": np.ones(2)}], 1)
  os.makedirs(path)  # what orbax leaves when a process dies before the commit (rename)
  os.rename(_step_dir(scratch), os.path.join(path, "1.orbax-checkpoint-tmp-1700000000"))
  os.remove(os.path.join(path, "1.orbax-checkpoint-tmp-1700000000", "commit_success.txt"))
  with pytest.raises(ConfigError, match="chunk0000 is corrupt or incomplete .no save in it "
                                        "was completed"):
    checkpoint.load(path, state, {"loss": 0})


def test_crashed_later_save_leaves_previous_step_loadable_and_is_cleaned_up(tmp_path):
  path, scratch = str(tmp_path / "chunk0000"), str(tmp_path / "scratch")
  state = {"w": np.arange(10, dtype=np.float32)}
  checkpoint.save(path, state, [{"loss": np.ones(2)}], 1)
  checkpoint.save(scratch, {"w": state["w"] + 1}, [{"loss": np.ones(2)}] * 2, 2)
  tmp = os.path.join(path, "2.orbax-checkpoint-tmp-1700000000")
  os.rename(_step_dir(scratch), tmp)  # the newer save died before its rename
  got, metrics, done = checkpoint.load(path, state, {"loss": 0})
  assert done == 1 and np.array_equal(got["w"], state["w"]) and len(metrics) == 1
  checkpoint.save(path, state, [{"loss": np.ones(2)}] * 3, 3)
  assert sorted(os.listdir(path)) == ["3"]  # newest only, the leftover removed


def test_load_refuses_malformed_manifest(tmp_path):
  path = str(tmp_path / "chunk0000")
  checkpoint.save(path, {"w": np.ones(3)}, [], 0)
  with open(os.path.join(_step_dir(path), "manifest", "metadata"), "w") as f:
    json.dump({"format": checkpoint.FORMAT, "segments_done": 0, "state": [{}]}, f)
  with pytest.raises(ConfigError, match="chunk0000 is corrupt or incomplete .a malformed"):
    checkpoint.load(path, {"w": np.ones(3)}, {})


def test_load_refuses_checkpoint_of_another_shape(tmp_path):
  path = str(tmp_path / "chunk0000")
  checkpoint.save(path, {"w": np.ones(3)}, [], 0)
  with pytest.raises(ConfigError, match="does not fit"):
    checkpoint.load(path, {"w": np.ones(4)}, {})


@pytest.mark.parametrize("like", [{"v": np.ones(3)}, {"w": np.ones(3), "b": np.ones(1)},
                                  {"w": np.ones(3, np.float32)}, [np.ones(3)]])
def test_load_refuses_checkpoint_of_another_tree_or_dtype(tmp_path, like):
  path = str(tmp_path / "chunk0000")
  checkpoint.save(path, {"w": np.ones(3)}, [], 0)
  with pytest.raises(ConfigError, match="chunk0000 is corrupt or incomplete .its state"):
    checkpoint.load(path, like, {})


def test_load_refuses_metrics_of_another_structure(tmp_path):
  path = str(tmp_path / "chunk0000")
  checkpoint.save(path, {"w": np.ones(3)}, [{"loss": np.ones(2)}], 1)
  with pytest.raises(ConfigError, match="its metrics has other leaves"):
    checkpoint.load(path, {"w": np.ones(3)}, {"acc": 0})


class _State(NamedTuple):
  params: dict
  grad_acc: object
  diverged: np.ndarray
  model_state: object = None
  keys: object = None


def test_round_trip_keeps_nested_state_with_none_leaves_and_keys(tmp_path):
  path = str(tmp_path / "chunk0000")
  rng = np.random.default_rng(1)
  state = _State(
      params={"dense": {"kernel": rng.standard_normal((2, 3, 4)).astype(np.float32),
                        "bias": np.zeros((2, 3, 0), np.float32)}},
      grad_acc=None, diverged=np.array([[True, False, True]]),
      model_state={"bn": {"mean": jnp.ones((2, 3), jnp.bfloat16), "var": None},
                   "steps": (np.int32(7), [np.arange(4, dtype=np.int64)])},
      keys=jax.random.split(jax.random.key(3), (2, 3)))
  metrics = [{"loss": np.full(3, k, np.float32), "acc": None} for k in range(2)]
  checkpoint.save(path, state, metrics, 2)
  like = jax.tree.map(np.zeros_like, state._replace(keys=None))._replace(
      keys=jax.random.split(jax.random.key(0), (2, 3)))
  got, got_metrics, done = checkpoint.load(path, like, {"loss": 0, "acc": None})
  assert done == 2 and isinstance(got, _State) and got.grad_acc is None
  assert got.model_state["bn"]["var"] is None and got_metrics[1]["acc"] is None
  assert jax.tree.structure(got) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(got._replace(keys=None)),
                  jax.tree.leaves(state._replace(keys=None))):
    assert np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b)
  assert jax.random.key_impl(got.keys) == jax.random.key_impl(state.keys)
  assert np.array_equal(jax.random.key_data(got.keys), jax.random.key_data(state.keys))
  assert [m["loss"].tolist() for m in got_metrics] == [[0.0] * 3, [1.0] * 3]


def test_round_trip_saves_arrays_spread_over_processes_shard_by_shard(tmp_path, monkeypatch):
  # one process cannot make such arrays: mark every jax.Array as one
  monkeypatch.setattr(checkpoint, "_spread", lambda x: isinstance(x, jax.Array))
  path = str(tmp_path / "chunk0000")
  state = {"w": jnp.arange(6.0).reshape(2, 3), "n": np.int32(4), "k": jax.random.key(5)}
  checkpoint.save(path, state, [{"loss": jnp.ones(2)}], 1)
  entries = checkpoint._read(path)["state"]
  assert [e["at"] is None for e in entries] == [True, False, True]  # k, n, w: sorted keys
  got, metrics, done = checkpoint.load(path, state, {"loss": 0})
  assert done == 1 and np.array_equal(got["w"], state["w"]) and got["n"] == 4
  assert np.array_equal(jax.random.key_data(got["k"]), jax.random.key_data(state["k"]))
  assert metrics[0]["loss"].tolist() == [1.0, 1.0]


def test_save_leaves_no_temp_file_and_round_trips(tmp_path):
  path = str(tmp_path / "c")
  state = {"a": np.arange(4.0), "b": (np.int32(3), np.ones((2, 2), np.float32))}
  metrics = [{"loss": np.full(2, k, np.float32)} for k in range(3)]
  checkpoint.save(path, state, metrics[:1], 1)
  checkpoint.save(path, state, metrics, 3)
  assert os.listdir(tmp_path) == ["c"] and os.listdir(path) == ["3"]
  assert not [f for _, ds, fs in os.walk(path) for f in ds + fs if "tmp" in f]
  got, got_metrics, done = checkpoint.load(path, state, {"loss": 0})
  assert done == 3 and np.array_equal(got["b"][1], state["b"][1])
  assert [m["loss"].tolist() for m in got_metrics] == [m["loss"].tolist() for m in metrics]


def test_save_refuses_step_not_after_the_saved_one(tmp_path):
  path = str(tmp_path / "c")
  checkpoint.save(path, {"a": np.ones(2)}, [{"l": np.ones(1)}] * 2, 2)
  with pytest.raises(ValueError, match="already holds step 2"):
    checkpoint.save(path, {"a": np.ones(2)}, [{"l": np.ones(1)}] * 2, 2)


def test_checkpoint_every_is_validated():
  from lrjax.engine.settings import TrainSettings
  assert TrainSettings().checkpoint_every == 5  # the default, documented in README
  for bad in (0, 1.5, True):
    with pytest.raises(ConfigError, match="checkpoint_every: must be an integer >= 1"):
      TrainSettings(checkpoint_every=bad)


def test_second_signal_stops_at_once_and_handlers_are_restored():
  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(checkpoint.Interrupted) as stopped, checkpoint.catch_signals() as stop:
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.signum == signal.SIGTERM
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)  # the handler raises before this ends
  assert stopped.value.exit_code == 143 and "a second time" in str(stopped.value)
  assert signal.getsignal(signal.SIGTERM) is before
