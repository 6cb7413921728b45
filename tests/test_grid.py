"""Grids: products, explicit members, validation, and the two-level layout."""
import numpy as np
import pytest

from lrjax import grid
from lrjax.errors import ConfigError


def test_product_puts_input_axes_outermost_when_axes_mixed():
  table = grid.make_grid({"lr": (0.1, 1.0), "batch_size": (16, 32), "aug": (0.0, 1.0)})
  assert len(table) == 8
  assert table.aug.tolist() == [0.0] * 4 + [1.0] * 4
  lay = grid.layout(table)
  assert (lay.num_groups, lay.inner_size) == (2, 4)
  assert lay.pad_mask.all()


def test_explicit_members_are_padded_when_groups_unequal():
  table = grid.make_grid(members=[{"lr": 0.1, "batch_size": 16, "seed": 0},
                                  {"lr": 0.2, "batch_size": 16, "seed": 0},
                                  {"lr": 0.3, "batch_size": 16, "seed": 1}])
  lay = grid.layout(table)
  assert (lay.num_groups, lay.inner_size) == (2, 2)
  assert lay.pad_mask.tolist() == [[True, True], [True, False]]
  slots = grid.to_slots(table.lr.to_numpy(), lay)
  np.testing.assert_array_equal(grid.from_slots(slots, lay), table.lr.to_numpy())


def test_log_space_is_geometric_when_called():
  values = grid.log_space(1e-4, 1.0, 5)
  np.testing.assert_allclose(np.diff(np.log10(values)), 1.0)


@pytest.mark.parametrize("axes, match", [
    ({"lr": (), "batch_size": (32,)}, "grid.lr: empty"),
    ({"batch_size": (32,)}, "missing axis"),
    ({"lr": 0.1, "batch_size": (32,)}, "grid.lr: must be a sequence"),
])
def test_make_grid_rejects_bad_axes_with_field_named(axes, match):
  with pytest.raises(ConfigError, match=match):
    grid.make_grid(axes)


@pytest.mark.parametrize("axes, micro, match", [
    ({"lr": (0.0,), "batch_size": (32,)}, 32, "grid.lr"),
    ({"lr": (float("nan"),), "batch_size": (32,)}, 32, "grid.lr"),
    ({"lr": (0.1,), "batch_size": (24,)}, 16, "multiple of micro_batch"),
    ({"lr": (0.1,), "batch_size": (2048,)}, 32, "exceed the training split"),
    ({"lr": (0.1,), "batch_size": (32,), "aug": (-1.0,)}, 32, "grid.aug"),
])
def test_validate_rejects_bad_values_with_field_named(axes, micro, match):
  with pytest.raises(ConfigError, match=match):
    grid.validate(grid.make_grid(axes), micro, num_train=1297)


def test_axis_kinds_route_every_kind_of_axis():
  kinds = {n: grid.axis_kind(n).kind for n in (
      "lr", "batch_size", "aug", "seed", "schedule", "optimizer", "batch_growth",
      "lr_scaling", "label_smoothing", "aug_max_shift", "momentum", "decay_steps")}
  assert kinds == {
      "lr": "core", "batch_size": "core", "aug": "core", "seed": "core",
      "schedule": "name", "optimizer": "name", "batch_growth": "engine",
      "lr_scaling": "engine", "label_smoothing": "engine", "aug_max_shift": "aug_op",
      "momentum": "hparam", "decay_steps": "hparam"}
  assert grid.CORE_AXES == ("lr", "batch_size", "aug", "seed")
  assert grid.NAME_AXES == ("schedule", "optimizer")
  inputs = [n for n in ("lr", "aug", "seed", "aug_noise_std", "momentum", "schedule")
            if grid.is_input_axis(n)]
  assert inputs == ["aug", "seed", "aug_noise_std"]


def test_hparam_and_aug_op_columns_pick_their_kinds_in_table_order():
  table = grid.make_grid({"lr": (0.1,), "batch_size": (8,), "momentum": (0.9,),
                          "aug_flip_prob": (0.5,), "label_smoothing": (0.1,),
                          "schedule": ("cosine",), "decay_steps": (10,)})
  assert grid.hparam_columns(table) == ["momentum", "decay_steps"]
  assert grid.aug_op_columns(table.columns) == {"aug_flip_prob": "flip_prob"}


def test_name_axes_take_names_other_axes_numbers():
  assert grid.make_grid({"lr": (0.1,), "batch_size": (8,),
                         "schedule": ("cosine", "constant")}).schedule.tolist() == [
                             "cosine", "constant"]
  with pytest.raises(ConfigError, match="grid.momentum: values must be numbers"):
    grid.make_grid({"lr": (0.1,), "batch_size": (8,), "momentum": ("high",)})


def test_make_grid_rejects_duplicate_axis_value_when_given_twice():
  with pytest.raises(ConfigError) as e:
    grid.make_grid({"lr": (0.1,), "batch_size": (32,), "seed": (0, 0)})
  message = str(e.value)
  assert message.startswith("grid.seed: the value 0 appears twice")
  assert '--config.grid.seed="(0,)"' in message
  with pytest.raises(ConfigError, match="grid.schedule: the value 'cosine' appears 3 times"):
    grid.make_grid({"lr": (0.1,), "batch_size": (32,),
                    "schedule": ("cosine", "constant", "cosine", "cosine")})


def test_make_grid_rejects_float32_equal_values_when_on_one_axis():
  with pytest.raises(ConfigError) as e:
    grid.make_grid({"lr": (0.1, 0.3, 0.1000000001), "batch_size": (32,)})
  message = str(e.value)
  assert "grid.lr: the values 0.1 and 0.1000000001 are equal in float32" in message
  assert '--config.grid.lr="(0.1,0.3)"' in message
  # Integer axes compare exactly: seeds float32 cannot tell apart are distinct.
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,), "seed": (2**24, 2**24 + 1)})
  assert table.seed.tolist() == [2**24, 2**24 + 1]


def test_make_grid_leaves_non_finite_values_to_validate_when_repeated():
  table = grid.make_grid({"lr": (float("inf"), float("inf")), "batch_size": (32,)})
  with pytest.raises(ConfigError, match="grid.lr: learning rates must be finite"):
    grid.validate(table, 32, num_train=1297)


def test_make_grid_rejects_identical_members_when_listed_twice():
  with pytest.raises(ConfigError, match=r"grid: members 0 and 2 of the member list are the "
                                        r"same: \{'lr': 0.1, 'batch_size': 16, 'seed': 0"):
    grid.make_grid(members=[{"lr": 0.1, "batch_size": 16},
                            {"lr": 0.2, "batch_size": 16},
                            {"lr": 0.1, "batch_size": 16, "seed": 0}])  # seed 0: the default
  with pytest.raises(ConfigError, match=r"in float32.*lr: 0.1 and 0.1000000001"):
    grid.make_grid(members=[{"lr": 0.1, "batch_size": 16},
                            {"lr": 0.1000000001, "batch_size": 16}])
  assert len(grid.make_grid(members=[{"lr": 0.1, "batch_size": 16, "seed": s}
                                     for s in (0, 1)])) == 2
