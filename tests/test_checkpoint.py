"""Preemption-safe checkpoints: SIGTERM/SIGINT stop at a segment's end with a checkpoint,
``--resume`` finishes bit-identically, and a corrupt checkpoint is reported, never loaded."""
import os
import signal
import subprocess
import sys
import time

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
  with open(ckpt, "rb") as f:
    data = bytearray(f.read())
  data[len(data) // 3] ^= 0xFF  # one flipped byte inside an array
  with open(ckpt, "wb") as f:
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
  assert "chunk0000.npz is corrupt or incomplete" in err and "Delete it" in err, err
  assert "r.partial" in err
  assert not workdir.exists() and os.path.exists(ckpt) and not loads


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "manifest"])
def test_load_refuses_damaged_file(tmp_path, damage):
  path = str(tmp_path / "chunk0000.npz")
  state = {"w": np.arange(1000, dtype=np.float32)}
  checkpoint.save(path, state, [{"loss": np.ones(3)}], 1)
  with open(path, "rb") as f:
    raw = f.read()
  if damage == "truncate":
    raw = raw[:len(raw) // 2]
  elif damage == "flip":
    i = raw.index(np.arange(1000, dtype=np.float32)[500:502].tobytes())
    raw = raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1:]
  elif damage == "empty":
    raw = b""
  with open(path, "wb") as f:
    f.write(raw)
  if damage == "manifest":  # a well-formed file whose data does not match its manifest
    with np.load(path) as f:
      arrays = dict(f)
    arrays["s0"] = arrays["s0"] + 1
    np.savez(path, **arrays)
  with pytest.raises(ConfigError, match="chunk0000.npz is corrupt or incomplete"):
    checkpoint.load(path, {"w": np.zeros(1000, np.float32)}, {"loss": 0})


def test_load_refuses_checkpoint_of_another_shape(tmp_path):
  path = str(tmp_path / "c.npz")
  checkpoint.save(path, {"w": np.ones(3)}, [], 0)
  with pytest.raises(ConfigError, match="does not fit"):
    checkpoint.load(path, {"w": np.ones(4)}, {})


def test_save_leaves_no_temp_file_and_round_trips(tmp_path):
  path = str(tmp_path / "c.npz")
  state = {"a": np.arange(4.0), "b": (np.int32(3), np.ones((2, 2), np.float32))}
  metrics = [{"loss": np.full(2, k, np.float32)} for k in range(3)]
  checkpoint.save(path, state, metrics, 3)
  assert os.listdir(tmp_path) == ["c.npz"]
  got, got_metrics, done = checkpoint.load(path, state, {"loss": 0})
  assert done == 3 and np.array_equal(got["b"][1], state["b"][1])
  assert [m["loss"].tolist() for m in got_metrics] == [m["loss"].tolist() for m in metrics]


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
