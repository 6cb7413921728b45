"""The compiled program: on accelerators the whole grid is one vmap, so the traced
program must not grow with the number of members (no per-member Python or host work)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import augment, data, grid, models
from lrjax.engine import Program, TrainSettings, build_run
from lrjax.engine.trainer import _placement, _root_keys, chunk_constants, chunks, place_data


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


def _segment_jaxpr(digits, num_lrs, vmap_width):
  """The traced segment of a grid with ``num_lrs`` x 2 batch sizes x 2 augs x 2 seeds."""
  program, state, t, consts = _segment_call(digits, num_lrs, vmap_width)
  return jax.make_jaxpr(program._segment)(state, t, consts)


def _count(jaxpr):
  """Equations, nested sub-jaxprs (scan, cond, map bodies) included."""
  n = 0
  for eqn in jaxpr.eqns:
    n += 1
    for p in eqn.params.values():
      for sub in (p if isinstance(p, (list, tuple)) else [p]):
        inner = getattr(sub, "jaxpr", None)
        if inner is not None:
          n += _count(inner if hasattr(inner, "eqns") else inner.jaxpr)
  return n


def test_whole_grid_vmap_traces_same_program_when_members_grow(digits):
  wide = 1 << 30  # the accelerator setting: every member side by side
  small, large = (_count(_segment_jaxpr(digits, n, wide).jaxpr) for n in (2, 32))
  assert small == large and small > 100  # nested bodies counted, not just the top level


def _segment_call(digits, num_lrs, vmap_width=1 << 30):
  """The program of a grid (``num_lrs`` x 2 batch sizes x 2 augs x 2 seeds; by default
  whole-grid vmapped) and a segment's arguments, all on the device:
  ``(program, state, t, consts)``."""
  table = grid.make_grid({"lr": grid.log_space(0.01, 0.1, num_lrs), "batch_size": (32, 64),
                          "aug": (0.0, 1.0), "seed": (0, 1)})
  settings = TrainSettings(epochs=0.25, augment_policy=augment.policy_for(
      "digits", digits.image_shape))
  run = build_run(models.get_model("mlp", 10, hidden=(16,)), digits, table, settings)
  group_chunks = chunks(run.layout.num_groups, run.layout.inner_size, 0)
  placement = _placement(run, group_chunks)
  placement.partition = None  # one device: what a single accelerator runs
  placement.put_members = placement.put_groups = jax.device_put
  device_data, val, _ = place_data(run, placement)
  init_keys, aug_keys = _root_keys(run)
  consts = chunk_constants(run, group_chunks[0], device_data, val, aug_keys, placement)
  program = Program(run, None, vmap_width=vmap_width)
  sample = jnp.zeros((1,) + digits.image_shape, jnp.float32)
  state = program.init(init_keys[group_chunks[0]], sample, consts.hparams)
  return program, state, jax.device_put(jnp.int32(0)), consts


@pytest.mark.parametrize("num_lrs", [1, 8])  # 8 and 64 members
def test_segment_makes_no_host_transfer_when_grid_vmapped(digits, num_lrs):
  # Every member's training inside a segment stays on the device: no host->device or
  # device->host transfer (each would raise under the guard; XLA:CPU enforces the
  # host->device direction, a GPU both), one executable.
  program, state, t, consts = _segment_call(digits, num_lrs)
  jax.block_until_ready((state, t, consts))
  with jax.transfer_guard_host_to_device("disallow"), \
       jax.transfer_guard_device_to_host("disallow"):
    with pytest.raises(jax.errors.JaxRuntimeError, match="Disallowed host-to-device"):
      jax.jit(lambda a: a + 1)(np.int32(1))  # the guard is on
    state, _ = program.segment(state, t, consts)
    state, metrics = program.segment(state, t, consts)
    jax.block_until_ready((state, metrics))
  assert program.segment._cache_size() == 1
