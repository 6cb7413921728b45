"""Setting a chunk up (lrjax.engine.chunk): key streams, chunks, placement, constants and
initial state, the same for the trainer, the memory planner and the width probe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import augment, data, grid, models
from lrjax.engine import TrainSettings, build_run
from lrjax.engine import chunk as chunk_lib
from lrjax.engine.chunk import (AUGMENT_STREAM, DROPOUT_STREAM, INIT_STREAM, Placement,
                                chunks, place_data, prepare_chunk, seed_keys, stream_key)


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


@pytest.fixture(scope="module")
def run(digits):
  table = grid.make_grid({"lr": (0.05, 0.2), "batch_size": (32, 64), "aug": (0.0, 1.0),
                          "seed": (3, 7)})
  settings = TrainSettings(epochs=0.25, augment_policy=augment.policy_for(
      "digits", digits.image_shape))
  return build_run(models.get_model("mlp", 10, hidden=(8,)), digits, table, settings)


def _data(key):
  return np.asarray(jax.random.key_data(key))


def test_key_streams_are_fold_in_of_the_seed_key():
  # The numbers are part of every run's results: initial weights 0, augmentation 2,
  # dropout 3 (tests/plain_training.py builds its reference keys the same way).
  assert (INIT_STREAM, AUGMENT_STREAM, DROPOUT_STREAM) == (0, 2, 3)
  for stream in (INIT_STREAM, AUGMENT_STREAM, DROPOUT_STREAM):
    expected = jax.random.fold_in(jax.random.key(5), stream)
    np.testing.assert_array_equal(_data(stream_key(5, stream)), _data(expected))
    np.testing.assert_array_equal(_data(seed_keys(np.array([5, 5]), stream)),
                                  _data(jnp.stack([expected, expected])))


def test_chunks_are_equal_sized_and_cover_every_group():
  parts = chunks(7, 4, 8)  # 2 groups of 4 members per chunk
  assert [len(p) for p in parts] == [2, 2, 2, 2]
  assert sorted(set(np.concatenate(parts).tolist())) == list(range(7))
  assert [p.tolist() for p in chunks(7, 4, 0)] == [list(range(7))]


def test_chunk_constants_hold_the_chunks_groups_and_block_hyperparameters(run):
  placement = Placement()
  gidx = np.array([3, 1])
  consts = chunk_lib.chunk_constants(run, gidx, place_data(run, placement), placement)
  np.testing.assert_array_equal(consts.seed_index, run.seed_row[gidx])
  np.testing.assert_array_equal(_data(consts.dropout_keys),
                                _data(seed_keys(run.seeds[gidx], DROPOUT_STREAM)))
  np.testing.assert_array_equal(_data(consts.aug_keys),
                                _data(seed_keys(run.seeds[gidx], AUGMENT_STREAM)))
  assert len(consts.hparams) == len(run.blocks)
  for hp, blk in zip(consts.hparams, run.blocks):
    np.testing.assert_array_equal(hp["lr"], run.hparams["lr"][gidx][:, blk.start:blk.stop])


def test_abstract_chunk_has_the_shapes_of_the_real_one(run):
  placement = Placement.for_run(run, run.layout.num_groups)
  device_data = place_data(run, placement)
  gidx = np.arange(run.layout.num_groups)
  real = prepare_chunk(run, gidx, placement, device_data)
  abstract = prepare_chunk(run, gidx, placement, device_data, abstract=True)
  shape = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)
  assert shape(real.state) == shape(abstract.state)
  assert isinstance(jax.tree.leaves(abstract.state)[0], jax.ShapeDtypeStruct)
  if placement.partition is not None:  # laid out as the real state is
    leaf = lambda s: jax.tree.leaves(s)[0].sharding
    assert leaf(abstract.state) == leaf(real.state)


def test_initial_weights_come_from_each_groups_init_stream(run):
  placement = Placement()
  chunk = prepare_chunk(run, np.arange(run.layout.num_groups), placement,
                        place_data(run, placement))
  sample = jnp.zeros((1,) + run.dataset.image_shape, jnp.float32)
  for g, seed in enumerate(run.seeds):
    expected = run.model.init(stream_key(int(seed), INIT_STREAM), sample)
    got = jax.tree.map(lambda a: a[g, 0], chunk.state[0].params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(a, b)
