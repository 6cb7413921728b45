"""Run directories: permissions, and a report of an interrupted run's .partial dir."""

import os

import pandas as pd
import pytest

from lrjax import experiment
from lrjax.analysis.report import write_report
from lrjax.analysis.synthetic import synthetic_run
from lrjax.engine import GridResult
from lrjax.workdir import partial_dir, write_results


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_run_directory_gets_usual_permissions_not_mkdtemp_private(tmp_path, umask):
  run = synthetic_run(lrs=(0.01, 0.1), batch_sizes=(32,), seeds=(0,))
  old = os.umask(umask)
  try:
    write_results(GridResult(run.members, run.history, None, {}), run.config,
                  str(tmp_path / "run"))
  finally:
    os.umask(old)
  assert os.stat(tmp_path / "run").st_mode & 0o777 == 0o777 & ~umask


def test_report_of_interrupted_run_from_partial_dir(tmp_path, monkeypatch):
  from lrjax import engine

  original = engine.train

  def interrupted(*args, **kwargs):
    def stop(done, total):
      if done == 2:
        raise KeyboardInterrupt

    return original(*args, **{**kwargs, "on_segment": stop, "checkpoint_every_s": 0.0})

  monkeypatch.setattr("lrjax.experiment.train", interrupted)
  c = experiment.default_config()
  c.grid.lr, c.grid.batch_size, c.grid.seed = (0.05, 0.2), (32, 64), (0, 1)
  c.model_kwargs = {"hidden": (32,)}
  c.epochs, c.eval_every = 1, 320
  workdir = str(tmp_path / "run")
  with pytest.raises(KeyboardInterrupt):
    experiment.train_and_evaluate(c, workdir, progress=False)
  partial = partial_dir(workdir)
  assert not os.path.exists(workdir)
  members = pd.read_parquet(os.path.join(partial, "members.parquet"))
  history = pd.read_parquet(os.path.join(partial, "history.parquet"))
  assert sorted(members.member) == list(range(8))
  assert sorted(history.examples_seen.unique()) == [320, 640]
  assert members.final_val_acc.notna().all() and members.test_acc.isna().all()
  assert os.path.isdir(os.path.join(partial, "tb"))
  written = write_report(partial, n_boot=0)
  assert os.path.basename(written[-1]) == "report.html"
  page = open(written[-1]).read()
  assert "Unfinished run." in page and "8 members so far, each evaluated up to 640" in page

  # Resuming finishes the run; its history starts with what the partial dir showed.
  monkeypatch.setattr("lrjax.experiment.train", original)
  result = experiment.train_and_evaluate(c, workdir, progress=False, resume=True)
  first = result.history[result.history.examples_seen <= 640].sort_values(
      ["member", "examples_seen"]).reset_index(drop=True)
  pd.testing.assert_series_equal(first.val_loss, history.val_loss, check_dtype=False)
  assert os.path.isdir(os.path.join(workdir, "tb")) and not os.path.exists(partial)
  assert "Unfinished run" not in open(os.path.join(workdir, "report.html")).read()


def test_second_run_of_a_workdir_is_refused_while_the_first_is_alive(tmp_path, capsys):
  # A live process holds the workdir's lock, as a running `lrjax run` does.
  import subprocess
  import sys
  import time

  from lrjax import cli

  workdir = tmp_path / "run"
  holder = subprocess.Popen([sys.executable, "-c", (
      "import sys, time; from lrjax.workdir import locked\n"
      f"with locked({str(workdir)!r}):\n  print('held', flush=True); time.sleep(60)")],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    for extra in ([], ["--resume"]):
      code = cli.main(["run", "experiments/lr_batch_aug.py:runlocal", "--workdir",
                       str(workdir), "--no-progress", *extra])
      err = " ".join(capsys.readouterr().err.split())  # the CLI wraps at 100 columns
      assert code == 2 and "in use by another lrjax run" in err and str(holder.pid) in err
    assert not workdir.exists()
  finally:
    holder.kill()
    holder.wait()
  time.sleep(0.1)
  # Once the holder is gone (killed: the kernel drops its lock), the run proceeds.
  assert cli.main(["run", "experiments/lr_batch_aug.py:runlocal", "--workdir", str(workdir),
                   "--no-progress"]) == 0
  assert (workdir / "members.parquet").exists() and not (tmp_path / "run.lock").exists()
