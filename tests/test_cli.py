"""The command line: a small run end to end, and bad input rejected before compiling."""
import json
import os

import pandas as pd
import pytest

from lrjax import cli

MAIN = "experiments/lr_batch_aug.py"


def run(argv):
  return cli.main(argv)


def test_run_writes_run_directory_when_config_is_runlocal(tmp_path, capsys):
  workdir = tmp_path / "run"
  assert run(["run", f"{MAIN}:runlocal", "--workdir", str(workdir), "--no-progress"]) == 0
  names = set(os.listdir(workdir))
  assert {"config.json", "members.parquet", "members.csv", "history.parquet", "summary.json",
          "report.html", "heatmap_val_acc.png", "heatmap_val_loss.png"} <= names
  members = pd.read_parquet(workdir / "members.parquet")
  assert len(members) == 8
  for col in ("member", "lr", "batch_size", "aug", "seed", "diverged", "diverged_at",
              "final_val_loss", "final_val_acc", "best_val_loss", "best_val_acc",
              "test_loss", "test_acc"):
    assert col in members.columns
  history = pd.read_parquet(workdir / "history.parquet")
  for col in ("member", "examples_seen", "updates", "lr_now", "train_loss", "val_loss",
              "val_acc"):
    assert col in history.columns
  assert json.loads((workdir / "config.json").read_text())["grid"]["aug"] == [0.0, 1.0]
  assert str(workdir) in capsys.readouterr().out
  # `lrjax report` regenerates the figures from the tables.
  os.remove(workdir / "heatmap_val_acc.png")
  assert run(["report", str(workdir)]) == 0
  assert (workdir / "heatmap_val_acc.png").exists()


@pytest.mark.parametrize("override, field", [
    ("--config.dataset=nosuchdata", "dataset"),
    ("--config.model=transformer9000", "model"),
    ("--config.optimizer=adagradx", "optimizer"),
    ("--config.schedule=zigzag", "schedule"),
    ("--config.grid.lr=(0.1,-1.0)", "grid.lr"),
    ("--config.grid.lr=(0.1,inf)", "grid.lr"),
    ("--config.grid.lr=()", "grid.lr"),
    ("--config.grid.batch_size=(32,0)", "grid.batch_size"),
    ("--config.grid.batch_size=(32,4096)", "grid.batch_size"),
    ("--config.micro_batch=64", "grid.batch_size"),
    ("--config.nosuchkey=1", "nosuchkey"),
    ("--config.epochs=0", "epochs"),
])
def test_bad_config_exits_nonzero_with_field_named_and_nothing_written(tmp_path, capsys,
                                                                          override, field):
  workdir = tmp_path / "run"
  code = run(["run", f"{MAIN}:runlocal", "--workdir", str(workdir), override])
  err = capsys.readouterr().err
  assert code == 2
  assert field in err and "Traceback" not in err
  assert len(err.strip().splitlines()) <= 4  # one paragraph
  assert not workdir.exists()
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".lrjax-")]


def test_run_refuses_existing_workdir_when_not_overwriting(tmp_path, capsys):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "keep.txt").write_text("mine")
  assert run(["run", f"{MAIN}:runlocal", "--workdir", str(workdir)]) == 2
  assert "--overwrite" in capsys.readouterr().err
  assert (workdir / "keep.txt").read_text() == "mine"


def test_missing_config_file_exits_nonzero_when_path_is_wrong(tmp_path, capsys):
  assert run(["run", "experiments/nope.py", "--workdir", str(tmp_path / "r")]) == 2
  assert "CONFIG_FILE" in capsys.readouterr().err


def test_resume_without_interrupted_run_exits_nonzero_with_fix(tmp_path, capsys):
  assert run(["run", f"{MAIN}:runlocal", "--workdir", str(tmp_path / "r"), "--resume"]) == 2
  assert "nothing to resume" in capsys.readouterr().err


def test_interrupted_run_is_not_restarted_silently_when_resume_not_given(tmp_path, capsys):
  (tmp_path / "r.partial").mkdir()
  assert run(["run", f"{MAIN}:runlocal", "--workdir", str(tmp_path / "r")]) == 2
  assert "--resume" in capsys.readouterr().err
  assert (tmp_path / "r.partial").is_dir()


def test_resume_continues_interrupted_run_when_config_unchanged(tmp_path, monkeypatch,
                                                                capsys):
  from lrjax import engine

  workdir = tmp_path / "r"
  calls = {"n": 0}
  original = engine.train

  def interrupted(*args, **kwargs):
    def stop(done, total):
      raise KeyboardInterrupt

    return original(*args, **{**kwargs, "on_segment": stop, "checkpoint_every_s": 0.0})

  monkeypatch.setattr("lrjax.experiment.train", interrupted)
  base = ["run", f"{MAIN}:runlocal", "--workdir", str(workdir), "--no-progress",
          "--config.eval_every=320"]  # several segments: interrupted after the first
  assert run(base) == 130
  assert (tmp_path / "r.partial" / "chunk0000.npz").exists() and not workdir.exists()
  monkeypatch.setattr("lrjax.experiment.train", original)
  assert run(base + ["--resume", "--config.epochs=2"]) == 2
  assert "config differs" in capsys.readouterr().err
  assert run(base + ["--resume"]) == 0
  assert (workdir / "members.parquet").exists() and not (tmp_path / "r.partial").exists()
