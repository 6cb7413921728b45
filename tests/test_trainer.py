"""The trainer (lrjax.engine.trainer): chunks in, one result out; what it reports while it
trains (segment callbacks, metric writers) and what its result records."""

import numpy as np
import pytest

from lrjax import data, grid, models
from lrjax.engine import TrainSettings, build_run, train
from lrjax.engine.trainer import train_grid

# 3 input groups (seeds) of 2 members; width 1 fixed, so no width probe compiles.
AXES = {"lr": (0.05, 0.2), "batch_size": (32,), "seed": (0, 1, 2)}
SETTINGS = dict(epochs=0.5, eval_every=320, vmap_width=1)


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


def _model():
  return models.get_model("mlp", 10, hidden=(16,))


class _Writer:
  """A metric writer that records what it is handed."""

  def __init__(self):
    self.calls = []

  def start(self, run):
    self.calls.append(("start", run.num_members))

  def write(self, members, examples_seen, metrics, replayed=False):
    self.calls.append(("write", tuple(members.member), examples_seen,
                       np.asarray(metrics["val_loss"]).copy(), replayed))

  def flush(self):
    pass

  def finish(self, members):
    self.calls.append(("finish", len(members)))


@pytest.fixture(scope="module")
def two_chunks(digits):
  """A grid trained in 2 chunks of 2 groups (the last padded), with a writer and a
  segment callback."""
  run = build_run(_model(), digits, grid.make_grid(AXES),
                  TrainSettings(max_members_per_chunk=4, **SETTINGS))
  writer, segments = _Writer(), []
  result = train(run, progress=False, writers=[writer],
                 on_segment=lambda done, total: segments.append((done, total)))
  return run, result, writer.calls, segments


def test_on_segment_counts_every_segment_of_every_chunk(two_chunks):
  run, result, _, segments = two_chunks
  total = 2 * run.plan.num_segments
  assert result.info["num_chunks"] == 2
  assert segments == [(i, total) for i in range(1, total + 1)]


def test_writers_get_every_evaluation_of_the_real_members_then_the_result(two_chunks):
  run, result, calls, _ = two_chunks
  assert calls[0] == ("start", 6) and calls[-1] == ("finish", 6)
  writes = calls[1:-1]
  n_seg = run.plan.num_segments
  assert len(writes) == 2 * n_seg
  # The second chunk repeats group 2 as padding: its members are written once.
  assert [w[1] for w in writes] == [(0, 1, 2, 3)] * n_seg + [(4, 5)] * n_seg
  steps = [(s + 1) * run.plan.examples_per_segment for s in range(n_seg)]
  assert [w[2] for w in writes] == steps * 2
  assert not any(w[4] for w in writes)
  history = result.history.set_index(["member", "examples_seen"]).val_loss
  for _, members, seen, val_loss, _ in writes:
    np.testing.assert_array_equal(val_loss, [history[(m, seen)] for m in members])


def test_chunks_equal_one_chunk(digits, two_chunks):
  _, chunked, _, _ = two_chunks
  whole = train_grid(_model(), digits, grid.make_grid(AXES), TrainSettings(**SETTINGS),
                     progress=False)
  assert whole.info["num_chunks"] == 1
  np.testing.assert_allclose(chunked.members.final_val_loss, whole.members.final_val_loss,
                             rtol=1e-6)
  np.testing.assert_array_equal(chunked.members.updates, whole.members.updates)


def test_info_records_sizes_and_timings(two_chunks):
  run, result, _, _ = two_chunks
  info = result.info
  assert info["examples_per_member"] == run.plan.examples_per_member
  assert info["groups_per_chunk"] == 2 and info["num_groups"] == 3
  assert info["compile_seconds"] > 0 and info["train_seconds"] > 0
  assert info["vmap_width"] == 1 and info["vmap_width_probe_seconds"] == {}
  assert info["memory_budget"] is None  # max_members_per_chunk set the chunks
