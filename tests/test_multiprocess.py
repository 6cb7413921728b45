"""Several processes (``jax.distributed``, on localhost) train a grid as one process does."""
import collections
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from lrjax import cli
from lrjax.engine import devices

CONFIG = "experiments/lr_batch_aug.py:runlocal"
# 4 members in 2 input groups (seeds): the groups split over 2 devices.
OVERRIDES = ['--config.model_kwargs={"hidden": (16,)}', "--config.grid.aug=(0.0,)",
             "--config.grid.seed=(0,1)", "--config.grid.batch_size=(32,)",
             "--config.grid.lr=(0.03,0.1)"]
TIMEOUT_S = 300  # a hung collective fails the test instead of blocking it
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


# `lrjax run` whose process 1 alone gets a SIGTERM after the first evaluation.
SIGNALLED = textwrap.dedent("""
    import os, signal, sys
    from lrjax import cli, experiment
    original = experiment.train
    def on_segment(done, total):
      if done == 1 and sys.argv[sys.argv.index("--process-id") + 1] == "1":
        os.kill(os.getpid(), signal.SIGTERM)
    experiment.train = lambda *a, **kw: original(*a, **kw, on_segment=on_segment)
    sys.exit(cli.main(sys.argv[1:]))
""")


def _start(workdir, cpu_devices, *flags, program=("-m", "lrjax.cli")):
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
  env.update(LRJAX_CPU_DEVICES=str(cpu_devices), JAX_PLATFORMS="cpu")
  return subprocess.Popen(
      [sys.executable, *program, "run", CONFIG, "--workdir", str(workdir),
       "--no-progress", *OVERRIDES, *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def _two_processes(workdir, *flags, program=("-m", "lrjax.cli")):
  port = _free_port()
  return [_start(workdir, 1, "--coordinator", f"localhost:{port}", "--num-processes", "2",
                 "--process-id", str(i), *flags, program=program) for i in (0, 1)]


def _wait(procs):
  """Each process's (returncode, stdout, stderr); all are killed if one hangs."""
  deadline, out = time.monotonic() + TIMEOUT_S, []
  try:
    for p in procs:
      stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
      out.append((p.returncode, stdout, stderr))
  except subprocess.TimeoutExpired:
    pytest.fail(f"a run did not finish within {TIMEOUT_S} s")
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return out


def test_two_processes_match_one_process_on_one_and_two_devices(tmp_path):
  runs = {"two_processes": tmp_path / "p2" / "run", "two_devices": tmp_path / "d2" / "run",
          "one_device": tmp_path / "d1" / "run"}
  procs = _two_processes(runs["two_processes"])
  procs += [_start(runs["two_devices"], 2), _start(runs["one_device"], 1)]
  results = _wait(procs)
  for code, _, stderr in results:
    assert code == 0, stderr[-3000:]
  # Process 0 alone reports and writes: the run directory, no lock or .partial left.
  assert "Results in" in results[0][1] and "Results in" not in results[1][1]
  assert sorted(os.listdir(runs["two_processes"].parent)) == ["run"]
  info = json.loads((runs["two_processes"] / "run_info.json").read_text())
  assert info["member_devices"] == 2 and len(info["devices"]) == 2

  read = lambda name, table: pd.read_parquet(runs[name] / f"{table}.parquet")
  for table in ("members", "history"):
    # The same program on the same 2-device mesh: bit for bit.
    pd.testing.assert_frame_equal(read("two_processes", table), read("two_devices", table),
                                  check_exact=True)
    # One device compiles the chunk as one program (XLA's own threading), so float32
    # sums round differently: as close as tests/test_sharding.py asks.
    two, one = read("two_processes", table), read("one_device", table)
    floats = [c for c in two.columns if two[c].dtype.kind == "f"]
    pd.testing.assert_frame_equal(two.drop(columns=floats), one.drop(columns=floats))
    np.testing.assert_allclose(two[floats].to_numpy(), one[floats].to_numpy(), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.slow
def test_two_processes_stop_together_and_resume_when_one_is_signalled(tmp_path):
  workdir, several = tmp_path / "p2" / "run", ["--config.eval_every=320"]  # 4 evaluations
  results = _wait(_two_processes(workdir, *several, program=("-c", SIGNALLED)) +
                  [_start(tmp_path / "d2" / "run", 2, *several)])
  assert [code for code, _, _ in results] == [143, 143, 0], results[0][2][-3000:]
  assert not workdir.exists() and os.listdir(str(workdir) + ".partial")
  for code, _, stderr in _wait(_two_processes(workdir, *several, "--resume")):
    assert code == 0, stderr[-3000:]
  for table in ("members", "history"):
    pd.testing.assert_frame_equal(pd.read_parquet(workdir / f"{table}.parquet"),
                                  pd.read_parquet(tmp_path / "d2" / "run" / f"{table}.parquet"),
                                  check_exact=True)


@pytest.mark.parametrize("flags, named", [
    (["--num-processes", "2", "--process-id", "0"], "--coordinator"),
    (["--coordinator", "localhost:1234", "--process-id", "0"], "--num-processes"),
    (["--coordinator", "localhost:1234", "--num-processes", "0", "--process-id", "0"],
     "--num-processes"),
    (["--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "1"],
     "--coordinator"),
])
def test_run_refuses_process_flags_when_incomplete_or_out_of_range(flags, named, capsys,
                                                                    tmp_path):
  code = cli.main(["run", CONFIG, "--workdir", str(tmp_path / "run"), *flags])
  err = capsys.readouterr().err
  assert code == 2 and named in err and "Traceback" not in err
  assert not (tmp_path / "run").exists()


def test_join_processes_leaves_a_single_process_run_alone(monkeypatch):
  for var in ("SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri"):
    monkeypatch.delenv(var, raising=False)
  assert devices.join_processes() == 1
  assert devices.join_processes("localhost:1234", 1, 0) == 1  # one process: nothing to join


def test_join_processes_joins_a_detected_cluster_only_with_several_processes(monkeypatch):
  calls = []
  monkeypatch.setattr(devices, "_initialize", lambda **kw: calls.append(kw))
  slurm = dict(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="node001", SLURM_PROCID="0",
               SLURM_LOCALID="0")
  for var, value in slurm.items():
    monkeypatch.setenv(var, value)
  monkeypatch.setenv("SLURM_NTASKS", "1")
  devices.join_processes()
  assert calls == []  # `python` in an allocation of one task: a single-process run
  monkeypatch.setenv("SLURM_NTASKS", "2")
  devices.join_processes()
  assert calls == [{}]  # jax.distributed.initialize() reads the rest from SLURM


def test_alike_per_process_takes_as_many_devices_from_each_process():
  Device = collections.namedtuple("Device", "id process_index")
  devs = [Device(i, i // 2) for i in range(4)]  # 2 processes x 2 devices
  assert devices._alike_per_process(devs, 2) == [devs[0], devs[2]]
  assert devices._alike_per_process(devs, 4) == devs
  assert devices._alike_per_process(devs, 3) is None  # one process would idle
  assert devices._alike_per_process(devs[:2], 1) == devs[:1]


# `lrjax run` whose process 0 cannot write the run directory (a full disk).
WRITE_FAILS = textwrap.dedent("""
    import sys
    from lrjax import cli, experiment
    def full_disk(*args, **kwargs):
      raise OSError(28, "No space left on device")
    experiment.write_results = full_disk
    sys.exit(cli.main(sys.argv[1:]))
""")


@pytest.mark.slow  # two processes train, then both must stop at once
def test_every_process_stops_at_once_when_process_0_cannot_write_the_run(tmp_path):
  workdir = tmp_path / "run"
  t0 = time.monotonic()
  results = _wait(_two_processes(workdir, program=("-c", WRITE_FAILS)))
  elapsed = time.monotonic() - t0
  (code0, _, err0), (code1, _, err1) = results
  assert (code0, code1) == (2, 2), (err0[-2000:], err1[-2000:])
  err0, err1 = " ".join(err0.split()), " ".join(err1.split())  # one wrapped paragraph
  assert "No space left on device" in err0 and "--resume" in err0
  assert "process 0 could not write the run directory" in err1
  assert elapsed < 120, elapsed  # not the 300 s a barrier waits before it times out
  assert (tmp_path / "run.partial").is_dir() and not workdir.exists()
