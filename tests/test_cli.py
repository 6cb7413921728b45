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
