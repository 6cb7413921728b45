"""What a run shows while it trains (lrjax.engine.progress): the compile line, plain
lines off a TTY, the bar."""

import io
import re

import pytest

from lrjax import data, grid, models
from lrjax.engine import TrainSettings, build_run
from lrjax.engine.progress import Progress
from lrjax.engine.trainer import train_grid


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


def _table():
  return grid.make_grid({"lr": (0.05, 0.2), "batch_size": (32,)})


def _model():
  return models.get_model("mlp", 10, hidden=(32,))


def test_non_tty_progress_prints_compile_line_then_one_line_per_evaluation(digits, capsys):
  result = train_grid(_model(), digits, _table(),
                      TrainSettings(epochs=1, eval_every=320), progress=True)
  err = capsys.readouterr().err
  lines = [l for l in err.splitlines() if l.startswith(("compiling", "eval"))]
  assert re.fullmatch(r"compiling 2 members \.\.\. \d+\.\d s", lines[0]), lines[0]
  evals = lines[1:]
  n_seg = result.info["num_segments"]
  assert len(evals) == n_seg > 1
  for i, line in enumerate(evals, 1):
    assert re.fullmatch(
        rf"eval {i}/{n_seg}  examples [\d,]+  alive 2/2  failed \d  slow \d  best val_acc \d\.\d{{3}}  "
        r"val_loss \d+\.\d{3}  [\d,]+ ex/s", line), line
  best = result.history.groupby("examples_seen").val_acc.max().cummax().iloc[-1]
  assert f"best val_acc {best:.3f}" in evals[-1]
  assert "\r" not in err  # no bar in logs


def test_progress_false_is_silent(digits, capfd):
  train_grid(_model(), digits, _table(), TrainSettings(epochs=1), progress=False)
  out, err = capfd.readouterr()
  assert "compiling" not in err + out and "eval " not in err + out


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_tty_bar_starts_after_compiling_and_shows_alive_diverged_best(digits):
  run = build_run(_model(), digits, _table(), TrainSettings(epochs=1, eval_every=320))
  stream = _Terminal()
  p = Progress(run, 1, True, stream=stream)
  p.compiling()
  assert p.bar is None  # no bar (and no clock) while compiling
  p.compiled(12.34)
  assert "compiling 2 members ... 12.3 s" in stream.getvalue()
  assert p.bar is not None and p.bar.n == 0 and p.bar.unit == "ex"
  p.step(0, 0, run.table, {"diverged": [False, True], "val_acc": [0.5, 0.9],
                           "val_loss": [1.0, 0.2], "train_loss": [1.5, 0.3]})
  seg_ex = run.plan.examples_per_segment
  assert p.bar.n == 2 * seg_ex
  assert p.bar.total == 2 * seg_ex * run.plan.num_segments
  postfix = p.bar.postfix
  assert "alive 1/2" in postfix and "diverged 1" in postfix and "failed 0" in postfix
  assert "best val_acc 0.500" in postfix and "val_loss 1.000" in postfix  # diverged left out
  p.close()


def test_resumed_segments_count_as_done_not_in_rate(digits):
  run = build_run(_model(), digits, _table(), TrainSettings(epochs=1, eval_every=320))
  p = Progress(run, 1, True, stream=_Terminal())
  p.compiled(0.1)
  p.skip(2, 1)
  seg_ex = run.plan.examples_per_segment
  assert p.bar.n == p.bar.initial == 2 * seg_ex and p.trained == 0
  p.close()


def test_progress_counts_failed_and_slow_by_the_outcomes_rule(digits):
  table = grid.make_grid({"lr": (0.001, 0.01, 0.1, 1.0), "batch_size": (32,)})
  run = build_run(_model(), digits, table, TrainSettings(epochs=1, eval_every=320))
  p = Progress(run, 1, True, stream=_Terminal())
  p.compiled(0.1)
  first = {"diverged": [False] * 4, "val_acc": [0.1, 0.1, 0.1, 0.1],
           "val_loss": [2.3] * 4, "train_loss": [2.3] * 4}
  assert p.status_now(run.table, first)["failed"] == 4   # all at chance
  # lr 0.001 learned a little (slow), 0.1 is the optimum, 1.0 oscillates at 15%.
  now = {"diverged": [False] * 4, "val_acc": [0.6, 0.8, 0.95, 0.15],
         "val_loss": [1.9, 0.9, 0.2, 2.2], "train_loss": [2.0, 0.9, 0.2, 2.1]}
  p.step(0, 1, run.table, now)
  assert "failed 1" in p.bar.postfix and "slow 1" in p.bar.postfix
  p.close()
