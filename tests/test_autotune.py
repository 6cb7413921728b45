"""The start-up measurement that picks the CPU lax.map width."""
import doctest

import jax
import pytest

from lrjax import data, grid, models
from lrjax.engine import autotune
from lrjax.engine import TrainSettings
from lrjax.engine import train_grid
from tree_helpers import assert_trees_allclose

TINY_MLP = {"hidden": (32,)}


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


def _table(n):
  return grid.make_grid({"lr": grid.log_space(0.01, 0.1, n), "batch_size": (32,)})


def test_docstring_examples_pass():
  assert doctest.testmod(autotune).failed == 0


def test_candidate_widths_divide_the_device_share():
  assert autotune.candidate_widths(32) == [1, 2]
  assert autotune.candidate_widths(7) == [1]


def test_pick_width_keeps_default_unless_another_wins_by_the_margin():
  margin = autotune.SWITCH_MARGIN
  assert autotune.pick_width({1: 1.0, 2: 1.0 - margin / 2}) == 1  # within the margin
  assert autotune.pick_width({1: 1.0, 2: 1.0 - 2 * margin}) == 2  # a clear win
  assert autotune.pick_width({1: 0.5, 2: 1.0}) == 1
  assert autotune.pick_width({2: 1.0, 4: 0.5}, default=1) == 4  # default not measured


def test_wanted_only_on_cpu_with_width_unset_and_many_members():
  many = autotune.MIN_MEMBERS_PER_DEVICE * 2
  assert autotune.wanted(TrainSettings(), "cpu", many, 2)
  assert not autotune.wanted(TrainSettings(), "cpu", many - 1, 2)
  assert not autotune.wanted(TrainSettings(vmap_width=1), "cpu", many, 2)
  assert not autotune.wanted(TrainSettings(), "gpu", many, 2)


def test_train_grid_measures_widths_and_matches_width_one_when_grid_is_large(digits):
  devices = len(jax.devices())
  n = autotune.MIN_MEMBERS_PER_DEVICE * devices
  model = models.get_model("mlp", 10, **TINY_MLP)
  common = dict(optimizer="momentum", epochs=0.25, eval_every=320)
  tuned = train_grid(model, digits, _table(n), TrainSettings(**common), progress=False)
  assert set(tuned.info["vmap_width_probe_seconds"]) == {1, 2}
  assert all(s > 0 for s in tuned.info["vmap_width_probe_seconds"].values())
  assert tuned.info["vmap_width"] in (1, 2)
  plain = train_grid(model, digits, _table(n), TrainSettings(vmap_width=1, **common),
                     progress=False)
  assert plain.info["vmap_width"] == 1 and plain.info["vmap_width_probe_seconds"] == {}
  assert_trees_allclose(tuned.params, plain.params, rtol=1e-4, atol=1e-5)


def test_train_grid_skips_measuring_when_grid_is_small(digits):
  model = models.get_model("mlp", 10, **TINY_MLP)
  res = train_grid(model, digits, _table(4), TrainSettings(epochs=0.25, eval_every=320),
                   progress=False)
  assert res.info["vmap_width"] is None and res.info["vmap_width_probe_seconds"] == {}


@pytest.mark.slow  # an interrupted and a resumed CLI run
def test_resumed_run_reuses_saved_width_instead_of_measuring(digits, tmp_path):
  devices = len(jax.devices())
  n = autotune.MIN_MEMBERS_PER_DEVICE * devices
  model = models.get_model("mlp", 10, **TINY_MLP)
  settings = TrainSettings(optimizer="momentum", epochs=0.25, eval_every=320)
  first = train_grid(model, digits, _table(n), settings, progress=False,
                     checkpoint_dir=str(tmp_path))
  assert autotune.load_choice(str(tmp_path)) == first.info["vmap_width"]
  other = 1 if first.info["vmap_width"] == 2 else 2
  autotune.save_choice(str(tmp_path), other)  # as if the interrupted run had chosen it
  for chunk in tmp_path.glob("chunk*.npz"):  # retrain from the start with that width
    chunk.unlink()
  again = train_grid(model, digits, _table(n), settings, progress=False,
                     checkpoint_dir=str(tmp_path))
  assert again.info["vmap_width"] == other and again.info["vmap_width_probe_seconds"] == {}
  assert_trees_allclose(again.params, first.params, rtol=1e-4, atol=1e-5)
