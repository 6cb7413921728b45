"""``lrjax settle``: each proposal rule acts on its planted situation, waves stay within
the budget and are recorded for the report."""

import json
import math
import os

import pytest

from lrjax import cli, experiment
from lrjax.analysis import summary as summary_lib
from lrjax.analysis.synthetic import synthetic_run
from lrjax.errors import ConfigError
from lrjax.settle import SettleSettings, is_open, propose, settle_run
from lrjax.settle.waves import _flips

AXES = ["seed", "aug", "lr", "batch_size"]


def _proposal(run, questions, num_train=10_000, **settings):
  run = run._replace(config={**run.config, "analysis": {"questions": questions}})
  summary, est = summary_lib.analyze(run, n_boot=200)
  return summary, est, propose(summary, est, AXES, num_train, SettleSettings(**settings))


def _lrs(addition):
  return sorted(addition.points["lr"].unique().tolist())


def test_edge_optimum_gets_next_lr_by_grid_ratio_for_every_seed():
  # best LR 0.01 * B/32: at 64+ it lies above the grid's largest LR, 0.02
  run = synthetic_run(lrs=tuple(0.01 * 2.0 ** k for k in range(-3, 2)), augs=(0.0,),
                      seeds=(0, 1, 2))
  _, _, (additions, _) = _proposal(run, ("best_lr",))
  assert [(a.rule, a.cell) for a in additions] == [
      ("edge", f"batch_size {b}, aug 0") for b in (64, 128, 256)]
  for a in additions:
    assert _lrs(a) == [pytest.approx(0.04)]  # 0.02 x the grid's ratio 2
    assert sorted(a.points["seed"]) == [0, 1, 2]


def test_stability_bracket_is_bisected_and_top_bound_extended():
  run = synthetic_run(lrs=tuple(0.01 * 4.0 ** k for k in range(-2, 3)), augs=(0.0,),
                      diverge_above=3.0)
  summary, _, (additions, _) = _proposal(run, ("max_stable_lr",))
  by_cell = {a.cell: a for a in additions}
  # 64 and 128: stable at 0.08, failing at 0.16 (wider than x2): the log-midpoint
  for b in (64, 128):
    assert _lrs(by_cell[f"batch_size {b}, aug 0"]) == [pytest.approx(math.sqrt(0.08 * 0.16))]
  # 256: stable at the grid's top, 0.16: the next LR out, x4
  assert _lrs(by_cell["batch_size 256, aug 0"]) == [pytest.approx(0.64)]
  # 32: bracketed within x2, closed: nothing added
  assert "batch_size 32, aug 0" not in by_cell
  closed = [d for d in summary["decisions"] if d["cell"] == "batch_size 32, aug 0"
            and d["role"] == "primary"]
  assert closed and not is_open(closed[0])


def test_unsettled_exponent_gets_a_block_of_seeds_in_every_cell_it_uses():
  run = synthetic_run(augs=(0.0,), seeds=(0, 1))
  run = run._replace(config={**run.config, "analysis": {"questions": ("scaling",)}})
  summary, est = summary_lib.analyze(run, n_boot=200)
  # plant the situation: the exponent's interval holds both 0.5 and 1
  for d in summary["decisions"]:
    if d["question"] == "scaling" and d["role"] == "primary":
      d["verdict"] = "not settled"
  additions, opens = propose(summary, est, AXES, 10_000, SettleSettings(max_seeds=8))
  (a,) = additions
  assert a.rule == "seeds" and a.question == "scaling"
  assert sorted(a.points["seed"].unique()) == [2, 3]  # doubles 2 seeds
  cells = run.members[["lr", "batch_size"]].drop_duplicates()
  assert len(a.points) == 2 * len(cells)  # every LR of every batch size at aug 0
  assert opens == []
  # at max_seeds nothing is added and the reason says so
  additions, opens = propose(summary, est, AXES, 10_000, SettleSettings(max_seeds=2))
  assert additions == [] and "max_seeds (2) reached" in opens[0].why


def test_unidentified_b_crit_gets_larger_batch_or_dataset_too_small():
  run = synthetic_run(augs=(0.0,), b_crit=1e6)  # steps still fall as 1/B at 256
  summary, _, (additions, opens) = _proposal(run, ("b_crit",))
  assert all(is_open(d) for d in summary["decisions"]
             if d["role"] == "primary" and d["question"] == "b_crit")
  (a,) = additions
  assert a.rule == "larger_batch" and a.points["batch_size"].unique().tolist() == [512]
  largest = sorted(run.members.loc[run.members.batch_size == 256, "lr"].unique())
  assert _lrs(a)[0] == pytest.approx(2 * largest[0])
  _, _, (additions, opens) = _proposal(run, ("b_crit",), num_train=300)
  assert additions == [] and "dataset too small" in opens[0].why


def test_settled_decision_that_changes_is_reported_as_flip():
  first = {}
  assert _flips([{"question": "scaling", "cell": "aug 0", "verdict": "linear"}], first, 0) == []
  flips = _flips([{"question": "scaling", "cell": "aug 0", "verdict": "not settled"}],
                 first, 2)
  assert flips == [{"question": "scaling", "cell": "aug 0", "wave": 2, "was": "linear",
                    "now": "not settled"}]


def _tiny_config():
  c = experiment.default_config()
  c.model_kwargs = {"hidden": (16,)}
  c.epochs = 1.0
  c.grid.lr = (0.01, 0.03)
  c.grid.batch_size = (32,)
  c.analysis.questions = ("best_lr",)
  return c


def test_settle_stays_within_member_epoch_budget_and_records_waves(tmp_path):
  workdir = str(tmp_path / "run")
  record = settle_run(workdir, SettleSettings(budget_member_epochs=3, max_waves=3),
                      _tiny_config(), progress=False, n_boot=200)
  assert record["budget"]["spent_member_epochs"] <= 3
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  assert config["analysis"]["looks"] == 4  # fixed up front: max_waves + 1
  waves = [e["wave"] for e in config["extensions"]]
  assert len(waves) == record["waves"] >= 1
  assert waves[0]["added"][0]["rule"] == "edge"  # 0.03, the grid's top, was best
  assert config["settle"]["stopped"] == record["stopped"]
  page = open(os.path.join(workdir, "report.html")).read()
  assert "How this was settled" in page and "<th>member-epochs</th>" in page
  assert "(edge)" in page and "Stopped after" in page
  assert record["budget"]["spent_s"] > 0


def test_cli_settle_refuses_bad_budget_before_training(tmp_path, capsys):
  args = ["settle", "experiments/lr_batch_aug.py:runlocal", "--workdir",
          str(tmp_path / "r"), "--max-seeds", "0"]
  assert cli.main(args) == 2
  assert "--max-seeds" in capsys.readouterr().err
  assert not (tmp_path / "r").exists()


def test_settle_of_missing_run_names_workdir(tmp_path):
  with pytest.raises(ConfigError, match="WORKDIR"):
    settle_run(str(tmp_path / "none"), SettleSettings())


def test_seed_block_that_does_not_fit_shrinks_to_what_the_budget_affords():
  import pandas as pd
  from lrjax.settle.rules import Addition
  from lrjax.settle.waves import _afford
  points = pd.DataFrame({"seed": [2, 3, 4, 5] * 3, "aug": 0.0, "lr": 0.1,
                         "batch_size": [16] * 4 + [32] * 4 + [64] * 4})
  edge = Addition("edge", "best_lr", "c", "add", points.iloc[:2])
  seeds = Addition("seeds", "scaling", "aug 0", "block", points)
  kept, cut = _afford([edge, seeds], left_epochs=9, epochs=1, left_s=1e9, s_per_epoch=0)
  assert kept[0] is edge and cut
  assert sorted(kept[1].points["seed"].unique()) == [2, 3]  # 6 members: 7 epochs were left
  assert "2 of its 4 new seeds" in kept[1].why
  kept, cut = _afford([edge], left_epochs=1, epochs=1, left_s=1e9, s_per_epoch=0)
  assert kept == [] and cut  # an LR addition is never cut in part


def test_settling_finished_run_again_adds_its_waves_to_the_looks(tmp_path, monkeypatch):
  from lrjax.analysis.synthetic import save_run
  from lrjax.settle import waves
  workdir = save_run(synthetic_run(lrs=(0.01, 0.1), batch_sizes=(32,), augs=(0.0,), seeds=(0,)),
                     str(tmp_path / "run"))
  monkeypatch.setattr(waves, "_waves", lambda *a, **k: {
      "waves": 0, "stopped": "test", "flips": [], "opens": [], "verdicts": [],
      "summary": {"decisions": []}})
  settle_run(workdir, SettleSettings(max_waves=2), progress=False)
  settle_run(workdir, SettleSettings(max_waves=3), progress=False)
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["analysis"]["looks"] == 1 + 2 + 3


def test_settle_analyses_run_whose_grid_has_several_schedule_families(tmp_path):
  """Per-family schedule_kwargs name every family; each wave's analysis reads the whole
  run (it once built a run of the first member alone, whose one family refused them)."""
  c = _tiny_config()
  c.grid.schedule = ("constant", "cosine")
  c.schedule_kwargs = {"cosine": {"alpha": 0.1}}
  workdir = str(tmp_path / "run")
  record = settle_run(workdir, SettleSettings(budget_member_epochs=4, max_waves=1), c,
                      progress=False, n_boot=200)
  assert record["waves"] == 1 and record["budget"]["spent_member_epochs"] <= 4
  with open(os.path.join(workdir, "config.json")) as f:
    added = json.load(f)["extensions"][0]["wave"]["added"]
  assert {a["rule"] for a in added} == {"edge"}  # 0.03, the grid's top, was best


def test_unsettled_arm_comparison_gets_seeds_in_its_arm_and_reference_cells():
  run = synthetic_run(augs=(0.0,), seeds=(0, 1), batch_sizes=(32, 64),
                      extra_axes={"warmup_fraction": (0.0, 0.1)})
  run = run._replace(config={**run.config,
                             "analysis": {"questions": ("arms:warmup_fraction",)}})
  summary, est = summary_lib.analyze(run, n_boot=200)
  arms = [d for d in summary["decisions"]
          if d["question"] == "arms:warmup_fraction" and d["role"] == "primary"]
  assert [d["cell"] for d in arms] == ["0.1 at batch_size 32, aug 0",
                                       "0.1 at batch_size 64, aug 0"]
  arms[1]["verdict"] = "not settled"  # plant: batch 64's comparison holds both answers
  additions, opens = propose(summary, est, [*AXES, "warmup_fraction"], 10_000,
                             SettleSettings(max_seeds=8))
  (a,) = additions
  assert a.rule == "seeds" and a.cell == arms[1]["cell"] and opens == []
  assert set(a.points["batch_size"]) == {64}  # the group the comparison holds fixed
  assert set(a.points["warmup_fraction"]) == {0.0, 0.1}  # the arm and its reference
  assert sorted(a.points["seed"].unique()) == [2, 3]  # doubles 2 seeds, paired
  lrs = run.members[run.members.batch_size == 64]["lr"].nunique()
  assert len(a.points) == 2 * 2 * lrs  # 2 arms x 2 seeds x every LR
