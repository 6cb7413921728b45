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
