"""Tests for lrjax.engine.plan: how a run's budget is cut into segments."""
import importlib

import numpy as np
import pytest

from lrjax import grid
from lrjax.engine import TrainSettings, plan
from lrjax.errors import ConfigError

# The module itself: the package re-exports its function `plan` under the same name.
plan_module = importlib.import_module("lrjax.engine.plan")


def _table(batch_sizes=(32,)):
  return grid.make_grid({"lr": (0.1,), "batch_size": batch_sizes})


def test_budget_is_epochs_when_eval_every_exceeds_run():
  # 2 epochs of 1000 examples; an evaluation interval 500x longer than the run.
  p = plan(_table(), 1000, TrainSettings(epochs=2, eval_every=10**6))
  assert p.num_segments == 1
  # The 2-epoch budget in whole batches: 62.5 ticks of 32 round to 62.
  assert p.examples_per_member == 62 * 32


def test_segments_follow_eval_every_when_shorter_than_run():
  p = plan(_table(), 1000, TrainSettings(epochs=2, eval_every=320))
  assert (p.ticks_per_segment, p.num_segments) == (10, 6)


def test_segment_is_whole_batches_of_every_member_when_eval_every_exceeds_run():
  # Batch sizes 32 and 96 share micro-batch 32: a segment is a multiple of k = 3 ticks.
  p = plan(_table((32, 96)), 1000, TrainSettings(epochs=1, eval_every=10**6))
  assert p.ticks_per_segment % 3 == 0 and p.num_segments == 1
  assert abs(p.examples_per_member - 1000) <= 3 * 32


def test_examples_per_segment_is_ticks_times_micro_batch():
  p = plan(_table(), 1000, TrainSettings(epochs=2, eval_every=320))
  assert p.examples_per_segment == p.ticks_per_segment * p.micro_batch == 320
  assert p.examples_per_segment * p.num_segments == p.examples_per_member


def test_updates_budget_gives_every_member_the_smallest_batch_updates():
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32, 64, 128)})
  p = plan(table, 1000, TrainSettings(epochs=2, eval_every=256, budget="updates"))
  assert p.update_budget == round(2 * 1000 / 32)
  k = table["batch_size"].to_numpy() // p.micro_batch
  assert (plan_module.total_updates(k, np.ones(3, np.int64), p) == p.update_budget).all()
  # The run is whole segments long enough for the largest batch's updates.
  assert p.total_ticks * p.micro_batch >= p.update_budget * 128
  assert (p.num_segments - 1) * p.ticks_per_segment * p.micro_batch < p.update_budget * 128


def test_updates_budget_growth_points_start_each_phase_on_a_whole_batch():
  growth = np.array([1, 2, 3])
  points = plan_module.member_growth_updates(growth, 100, (0.5, 0.75), 2)
  assert (points % growth[:, None] ** 2 == 0).all()
  at, _ = plan_module.member_ticks(np.array([2, 2, 2]), growth, points, 100)
  # Phase p + 1 starts on a tick that is a multiple of its own k.
  for p in range(2):
    assert (at[:, p] % (2 * growth ** (p + 1)) == 0).all()


@pytest.mark.parametrize("budget", ["steps", "", None, 1])
def test_bad_budget_raises_config_error_naming_the_field(budget):
  with pytest.raises(ConfigError, match=r"^budget: one of \['examples', 'updates'\]"):
    TrainSettings(budget=budget)
