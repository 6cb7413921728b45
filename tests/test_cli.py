"""The command line: a small run end to end, and bad input rejected before compiling."""
import json
import os

import ml_collections
import pandas as pd
import pytest

from lrjax import cli
from lrjax.config_files import apply_overrides, load_config

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
  out = capsys.readouterr().out
  assert str(workdir) in out
  # It ends with the headline of summary.json: the best configuration first.
  headline = json.loads((workdir / "summary.json").read_text())["headline"]["sentences"]
  assert headline and out.index("Best configuration") < out.index("Results in")
  assert " ".join(out.split()).count(" ".join(headline[0].split())) == 1
  # `lrjax report` regenerates the figures from the tables.
  os.remove(workdir / "heatmap_val_acc.png")
  assert run(["report", str(workdir)]) == 0
  assert (workdir / "heatmap_val_acc.png").exists()
  # ... ranked by another metric; an unknown metric names the ones there are.
  assert run(["report", str(workdir), "--metric", "final_val_acc"]) == 0
  assert json.loads((workdir / "summary.json").read_text())
  capsys.readouterr()
  assert run(["report", str(workdir), "--metric", "nosuchmetric"]) == 2
  err = capsys.readouterr().err
  assert "nosuchmetric" in err and "final_val_loss" in err and "Traceback" not in err


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
  assert os.path.exists(engine.checkpoint.chunk_path(str(tmp_path / "r.partial"), 0))
  assert not workdir.exists()
  monkeypatch.setattr("lrjax.experiment.train", original)
  assert run(base + ["--resume", "--config.epochs=2"]) == 2
  err = " ".join(capsys.readouterr().err.split())
  assert "config differs" in err and "in epochs (was " in err and "now 2.0)" in err
  assert run(base + ["--resume"]) == 0
  assert (workdir / "members.parquet").exists() and not (tmp_path / "r.partial").exists()


HELP_OPTIONS = {
    "run": ["-h, --help", "--workdir DIR", "--overwrite", "--resume", "--no-progress"],
    "find": ["-h, --help", "--workdir DIR", "--overwrite", "--start-lr LR", "--end-lr LR"],
    "report": ["-h, --help", "--metric NAME"],
    "augment-preview": ["-h, --help", "--dataset NAME", "--strengths LIST", "--out PATH",
                        "--data_dir DIR"],
    "prepare": ["-h, --help", "--data_dir DIR"],
}


@pytest.mark.parametrize("command", ["", *HELP_OPTIONS])
def test_help_is_clean_when_asked_for_each_command(command, capsys):
  with pytest.raises(SystemExit) as exit_:
    run([command, "--help"] if command else ["--help"])
  assert exit_.value.code == 0
  out = capsys.readouterr().out
  assert out.count("usage:") == 1
  lines = out.splitlines()
  for option in HELP_OPTIONS.get(command, ["-h, --help"]):
    rows = [line for line in lines if line.strip().startswith(option)]
    assert len(rows) == 1, (option, rows)  # listed once ...
    assert len(rows[0].strip()) > len(option) + 4  # ... with its help on the same line
  if not command:
    for name in ("run", "find", "report", "augment-preview", "prepare", "bench"):
      assert any(line.split()[:1] == [name] for line in lines), name
  if command in ("run", "find"):
    assert "config overrides" in out
    for text in ('--config.grid.lr="(0.01,0.1,1.0)"', "--config.grid.momentum=",
                 "--config.optimizer_kwargs.b2=", "--config.optimizer_kwargs=\"{",
                 ":runlocal", "examples:"):
      assert text in out, text


def _resolve_instead_of_training(monkeypatch):
  """Replaces training by resolving the config: what the CLI would have trained."""
  from lrjax import experiment

  seen = {}

  def resolve_only(config, workdir, **kwargs):
    del workdir, kwargs
    seen["runs"] = experiment.resolve_runs(config)
    seen["config"] = config

  monkeypatch.setattr(experiment, "train_and_evaluate", resolve_only)
  return seen


def test_optimizer_override_drops_kwargs_of_the_old_optimizer_with_a_note(tmp_path,
                                                                         monkeypatch, capsys):
  seen = _resolve_instead_of_training(monkeypatch)
  assert run(["run", f"{MAIN}:runlocal", "--workdir", str(tmp_path / "r"),
              "--config.optimizer=adam"]) == 0
  (settings,) = [r.settings for r in seen["runs"]]
  assert settings.optimizer == "adam" and dict(settings.optimizer_kwargs) == {}
  note = capsys.readouterr().err.strip().splitlines()
  assert len(note) == 1 and "note" in note[0]
  assert "['momentum']" in note[0] and "'adam'" in note[0] and "dropped" in note[0]


@pytest.mark.parametrize("model", ["cnn", "mnist1d_cnn"])
def test_model_override_drops_kwargs_of_the_old_model_with_a_note(tmp_path, monkeypatch,
                                                                  capsys, model):
  seen = _resolve_instead_of_training(monkeypatch)
  assert run(["run", f"{MAIN}:runlocal", "--workdir", str(tmp_path / "r"),
              f"--config.model={model}"]) == 0
  (resolved,) = seen["runs"]
  assert resolved.model.name == model
  note = " ".join(capsys.readouterr().err.split())
  assert f"model_kwargs ['hidden'] belong to 'mlp', not '{model}'" in note
  assert "['channels']" in note and "dropped" in note


def test_model_and_mismatched_kwargs_overridden_together_is_an_error_naming_the_field(
    tmp_path, capsys):
  assert run(["run", f"{MAIN}:runlocal", "--workdir", str(tmp_path / "r"),
              "--config.model=cnn", "--config.model_kwargs={'hidden': (8,)}"]) == 2
  err = " ".join(capsys.readouterr().err.split())
  assert "model_kwargs" in err and "hidden" in err and "Traceback" not in err


def test_grid_override_drops_questions_it_leaves_unanswerable_with_a_note(tmp_path,
                                                                        monkeypatch, capsys):
  seen = _resolve_instead_of_training(monkeypatch)
  assert run(["run", f"{MAIN}:runlocal", "--workdir", str(tmp_path / "r"),
              "--config.grid.aug=(0.0,)"]) == 0
  assert tuple(seen["config"].analysis.questions) == ("best_lr", "scaling")
  note = capsys.readouterr().err.strip().splitlines()
  assert len(note) == 1 and "note: analysis.questions" in note[0]
  assert "'aug_effect' needs 2+ values on grid.aug, which now has [0.0]; dropped" in note[0]


def test_questions_given_on_the_command_line_are_checked_not_dropped(tmp_path, capsys):
  code = run(["run", f"{MAIN}:runlocal", "--workdir", str(tmp_path / "r"),
              "--config.grid.aug=(0.0,)", "--config.analysis.questions=('aug_effect',)"])
  assert code == 2 and "analysis.questions: 'aug_effect' needs 2+ values on grid.aug" in \
      capsys.readouterr().err
  assert not (tmp_path / "r").exists()


def test_optimizer_and_kwargs_overridden_together_mismatch_says_what_to_pass(
    tmp_path, monkeypatch, capsys):
  seen = _resolve_instead_of_training(monkeypatch)
  base = ["run", f"{MAIN}:runlocal", "--workdir", str(tmp_path / "r"),
          "--config.optimizer=adam"]
  assert run(base + ["--config.optimizer_kwargs.b2=0.99"]) == 2
  err = capsys.readouterr().err
  fix = "--config.optimizer_kwargs=\"{'b2': 0.99}\""
  assert "['momentum']" in err and fix in " ".join(err.split())
  assert "runs" not in seen
  assert run(base + [fix.replace('"', "")]) == 0  # the fix, as the shell passes it
  (settings,) = [r.settings for r in seen["runs"]]
  assert dict(settings.optimizer_kwargs) == {"b2": 0.99}
  assert run(base + ["--config.optimizer_kwargs={}"]) == 0
  assert "note" not in capsys.readouterr().err


def test_new_grid_axes_and_kwargs_keys_accepted_from_command_line(tmp_path, monkeypatch):
  seen = _resolve_instead_of_training(monkeypatch)
  assert run(["run", f"{MAIN}:runlocal", "--workdir", str(tmp_path / "r"),
              "--config.grid.momentum=(0.5,0.9)", "--config.schedule=cosine",
              "--config.schedule_kwargs.alpha=0.1", "--config.model_kwargs.hidden=(16,)"]
             ) == 0
  (r,) = seen["runs"]
  assert sorted(set(r.table["momentum"])) == [0.5, 0.9] and len(r.table) == 16
  assert seen["config"].schedule_kwargs.alpha == 0.1
  assert run(["run", f"{MAIN}:runlocal", "--workdir", str(tmp_path / "r"),
              "--config.grid.b2=0.99", "--config.optimizer=adam"]) == 0  # one value: an axis
  assert set(seen["runs"][0].table["b2"]) == {0.99}


NO_GET_CONFIG = "no_get_config.py"


@pytest.mark.parametrize("args, expected, named_once", [
    ([f"{MAIN}:runlocal", "--config.epoch=2"], "did you mean epochs", "--config.epoch:"),
    ([f"{MAIN}:runlocal", "--config.nosuchkey=1"], "no such config key", "nosuchkey"),
    ([f"{MAIN}:nosucharg"], "unknown config argument", "nosucharg"),
    (["README.md"], "CONFIG_FILE: README.md is not a Python config file", "README.md"),
    ([NO_GET_CONFIG], "defines no get_config()", NO_GET_CONFIG),
    (["experiments/nope.py"], "CONFIG_FILE", "nope.py"),
    ([f"{MAIN}:runlocal", "--config.grid.lr=(0.1,-1.0,0.01)"], "grid.lr", "-1.0"),
    ([f"{MAIN}:runlocal", "--config.epochs=abc"], "--config.epochs", "abc"),
    ([f"{MAIN}:runlocal", "--config.model_kwargs=abc"], "--config.model_kwargs", "abc"),
    ([f"{MAIN}:runlocal", "--config.optimizer=adam", "--config.optimizer_kwargs.b2=0.99"],
     "optimizer_kwargs", "['momentum']"),
    ([f"{MAIN}:runlocal", "--config.grid.lr.x=1"], "grid.lr", "--config.grid.lr.x"),
    ([f"{MAIN}:runlocal", "--bogus"], "--bogus", "--bogus"),
    ([f"{MAIN}:runlocal", "--config.grid.batchsize=(32,)"], "Did you mean grid.batch_size?",
     "grid.batchsize"),
    ([f"{MAIN}:runlocal", "--config.optimizer=adam", "--config.grid.momentum=(0.9,)"],
     "argument of optimizer 'adam' (b1, b2, eps)", "grid.momentum"),
])
def test_bad_input_is_one_readable_paragraph_with_exit_2(tmp_path, monkeypatch, capsys, args,
                                                        expected, named_once):
  (tmp_path / NO_GET_CONFIG).write_text("CONFIG = {}\n")
  args = [str(tmp_path / a) if a == NO_GET_CONFIG else a for a in args]
  workdir = tmp_path / "run"
  code = run(["run", *args, "--workdir", str(workdir)])
  err = capsys.readouterr().err
  assert code == 2
  assert "Traceback" not in err and "\\'" not in err and "\\n" not in err
  assert len(err.strip().splitlines()) <= 4
  flat = " ".join(err.split())
  assert expected in flat
  assert flat.count(named_once) == 1, flat
  assert not workdir.exists()


def test_duplicate_axis_value_exits_2_when_given_before_anything_is_written(tmp_path, capsys):
  workdir = tmp_path / "run"
  code = run(["run", f"{MAIN}:runlocal", "--workdir", str(workdir),
              "--config.grid.seed=(0,0)"])
  err = " ".join(capsys.readouterr().err.split())
  assert code == 2 and "Traceback" not in err
  assert "grid.seed: the value 0 appears twice" in err
  assert '--config.grid.seed="(0,)"' in err
  assert not workdir.exists() and not (tmp_path / "run.partial").exists()
  assert os.listdir(tmp_path) == []


def test_repeated_override_takes_last_value_when_key_given_twice():
  config = load_config(f"{MAIN}:runlocal", [
      "--config.grid.seed=(0,)", "--config.epochs=2", "--config.grid.seed=(1,2)",
      "--config.epochs", "3", "--config.grid.momentum=(0.5,)", "--config.grid.momentum=0.9"])
  assert config.grid.seed == (1, 2)
  assert config.epochs == 3.0
  assert config.grid.momentum == (0.9,)


def test_scalar_override_is_one_value_axis_when_axis_exists():
  config = load_config(f"{MAIN}:runlocal", ["--config.grid.lr=0.1",
                                            "--config.grid.batch_size=32"])
  assert config.grid.lr == (0.1,) and config.grid.batch_size == (32,)
  # An axis the config gives as one value or as a list is overridden the same way.
  base = ml_collections.ConfigDict({"grid": {"lr": 0.1, "seed": [0, 1]}})
  config = apply_overrides(base, ["--config.grid.lr=(0.3,1.0)", "--config.grid.seed=2"])
  assert config.grid.lr == (0.3, 1.0) and config.grid.seed == (2,)


def _count_segments(monkeypatch):
  """Wraps the trainer so the segments trained are counted."""
  from lrjax import engine

  trained, original = [], engine.train

  def counting(*args, **kwargs):
    return original(*args, **{**kwargs, "on_segment": lambda done, total: trained.append(done)})

  monkeypatch.setattr("lrjax.experiment.train", counting)
  return trained


def _fail_with(error):
  def fail(*args, **kwargs):
    raise error
  return fail


_real_to_parquet = pd.DataFrame.to_parquet


def _disk_full_outside_partial(self, path, *args, **kwargs):
  """``to_parquet`` on a disk that filled up once training ended: the tables kept in
  ``.partial`` while training were written, the run directory's are not."""
  if ".partial" in str(path):
    return _real_to_parquet(self, path, *args, **kwargs)
  raise OSError(28, "No space left on device", str(path))


# Where the writing of a trained run fails, and how (the operating system's errors).
AFTER_TRAINING_FAILURES = {
    "disk_full_in_tables": ("pandas.DataFrame.to_parquet", _disk_full_outside_partial,
                            "No space left on device", "the disk is full"),
    "open_files_in_report": ("lrjax.workdir.report.write_report",
                             _fail_with(OSError(24, "Too many open files", "report.html")),
                             "Too many open files", "ulimit -n"),
    "permission_denied_on_workdir": ("lrjax.workdir.replace_dir",
                                     _fail_with(PermissionError(13, "Permission denied",
                                                                "run")),
                                     "Permission denied", "pass a --workdir you can write"),
}


# One injected failure in the default suite; the others (each a run and its resume) slow.
@pytest.mark.parametrize("target, replacement, strerror, fix", [
    pytest.param(*case, id=name, marks=() if name == "disk_full_in_tables" else pytest.mark.slow)
    for name, case in AFTER_TRAINING_FAILURES.items()])
def test_failure_after_training_keeps_partial_and_resume_trains_nothing_again(
    tmp_path, monkeypatch, capsys, target, replacement, strerror, fix):
  workdir, partial = tmp_path / "r", tmp_path / "r.partial"
  base = ["run", f"{MAIN}:runlocal", "--workdir", str(workdir), "--no-progress"]
  trained = _count_segments(monkeypatch)
  with monkeypatch.context() as broken:
    broken.setattr(target, replacement)
    assert run(base) == 2
  err = capsys.readouterr().err
  flat = " ".join(err.split())
  assert "Traceback" not in err and "\n\n" not in err.strip(), err  # one paragraph
  assert "training finished" in flat and fix in flat and strerror in flat
  assert "--resume" in flat and f"lrjax report {partial}" in flat
  assert not workdir.exists() and sorted(os.listdir(tmp_path)) == ["r.partial"]
  segments = len(trained)
  assert segments > 0
  assert run(base + ["--resume"]) == 0
  assert len(trained) == segments  # the resumed run trained no segment
  assert (workdir / "report.html").exists() and not partial.exists()
  assert len(pd.read_parquet(workdir / "members.parquet")) == 8


def test_os_failure_while_training_is_one_paragraph_naming_the_checkpoints(
    tmp_path, monkeypatch, capsys):
  workdir = tmp_path / "r"
  with monkeypatch.context() as broken:
    broken.setattr("lrjax.engine.checkpoint.save",
                   _fail_with(OSError(28, "No space left on device", "ckpt")))
    code = run(["run", f"{MAIN}:runlocal", "--workdir", str(workdir), "--no-progress",
                "--config.eval_every=320"])
  err = capsys.readouterr().err
  flat = " ".join(err.split())
  assert code == 2 and "Traceback" not in err and "\n\n" not in err.strip(), err
  assert "No space left on device (ckpt): the disk is full" in flat
  assert f"{tmp_path / 'r.partial'}" in flat and "--resume" in flat
  assert not workdir.exists()


def test_analysis_failure_writes_tables_and_a_report_naming_the_failed_step(
    tmp_path, monkeypatch, capsys):
  workdir = tmp_path / "r"

  def broken_fit(*args, **kwargs):
    raise FloatingPointError("no finite slope")

  monkeypatch.setattr("lrjax.analysis.verdicts.estimate", broken_fit)
  monkeypatch.setattr("lrjax.analysis.summary.estimate", broken_fit)
  with pytest.warns(UserWarning, match="analysis of .* failed"):
    assert run(["run", f"{MAIN}:runlocal", "--workdir", str(workdir), "--no-progress"]) == 0
  out = " ".join(capsys.readouterr().out.split())
  assert "The analysis failed in" in out and "no finite slope" in out
  assert len(pd.read_parquet(workdir / "members.parquet")) == 8
  assert not (tmp_path / "r.partial").exists()
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["analysis_failed"]["error"] == "FloatingPointError: no finite slope"
  assert summary["analysis_failed"]["step"] == "lrjax.analysis.summary.analyze"
  assert summary["n_members"] == 8
  page = (workdir / "report.html").read_text()
  assert "Analysis failed" in page and "no finite slope" in page and "<table" in page
