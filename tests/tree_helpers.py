"""The one tree-compare helper for tests (kept out of the package)."""
import jax
import numpy as np


def assert_trees_allclose(actual, expected, rtol=1e-6, atol=1e-6):
  """Asserts two pytrees have the same structure and allclose leaves."""
  actual_leaves, actual_def = jax.tree_util.tree_flatten(actual)
  expected_leaves, expected_def = jax.tree_util.tree_flatten(expected)
  assert actual_def == expected_def, f"tree structures differ:\n{actual_def}\n{expected_def}"
  for a, e in zip(actual_leaves, expected_leaves):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


def assert_trees_equal(actual, expected):
  """Asserts two pytrees are bit-identical."""
  actual_leaves, actual_def = jax.tree_util.tree_flatten(actual)
  expected_leaves, expected_def = jax.tree_util.tree_flatten(expected)
  assert actual_def == expected_def
  for a, e in zip(actual_leaves, expected_leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e))
