"""Tests for lrjax.engine.plan: how a run's budget is cut into segments."""
from lrjax import grid
from lrjax.engine import TrainSettings, plan


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
