"""The compiled program: on accelerators the whole grid is one vmap, so the traced
program must not grow with the number of members (no per-member Python or host work)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import augment, data, grid, models
from lrjax.engine import Program, TrainSettings, build_run
from lrjax.engine.chunk import Placement, chunks, place_data, prepare_chunk
from lrjax.engine.state import segment_metrics


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


def _segment_jaxpr(digits, num_lrs, vmap_width):
  """The traced segment of a grid with ``num_lrs`` x 2 batch sizes x 2 augs x 2 seeds."""
  program, state, t, consts = _segment_call(digits, num_lrs, vmap_width)
  return jax.make_jaxpr(program.segment)(state, t, consts)


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


def _segment_call(digits, num_lrs, vmap_width=1 << 30, **settings):
  """The program of a grid (``num_lrs`` x 2 batch sizes x 2 augs x 2 seeds; by default
  whole-grid vmapped) and a segment's arguments, all on one device (what a single
  accelerator runs): ``(program, state, t, consts)``."""
  table = grid.make_grid({"lr": grid.log_space(0.01, 0.1, num_lrs), "batch_size": (32, 64),
                          "aug": (0.0, 1.0), "seed": (0, 1)})
  settings = TrainSettings(epochs=0.25, augment_policy=augment.policy_for(
      "digits", digits.image_shape), **settings)
  run = build_run(models.get_model("mlp", 10, hidden=(16,)), digits, table, settings)
  group_chunks = chunks(run.layout.num_groups, run.layout.inner_size, 0)
  placement = Placement()
  chunk = prepare_chunk(run, group_chunks[0], placement, place_data(run, placement),
                        Program(run, None, vmap_width=vmap_width))
  return chunk.program, chunk.state, jax.device_put(jnp.int32(0)), chunk.consts


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


# Width 1 in the default suite; the other widths (one compile each) under -m slow.
@pytest.mark.parametrize("vmap_width", [1, pytest.param(2, marks=pytest.mark.slow),
                                        pytest.param(1 << 30, marks=pytest.mark.slow)])
def test_segment_returns_exactly_state_segment_metrics(digits, vmap_width):
  # The program builds its metrics from state.segment_metrics (the history table's
  # columns): the same names, extra metrics and tick losses included.
  extra = dict(metrics={"xent": "cross_entropy"}, record_tick_loss=True)
  for settings in ({}, extra):
    program, state, t, consts = _segment_call(digits, 1, vmap_width, **settings)
    _, metrics = jax.eval_shape(program.segment, state, t, consts)
    names = segment_metrics(program.settings)
    assert sorted(metrics) == sorted(names) and len(set(names)) == len(names)
  assert segment_metrics(program.settings)[-2:] == ("val_xent", "tick_loss")


def test_segment_refuses_to_trace_when_its_metrics_and_the_list_disagree(digits):
  program, state, t, consts = _segment_call(digits, 1, 1)
  program.metric_names = program.metric_names + ("val_missing",)
  with pytest.raises(AssertionError, match="state.segment_metrics"):
    jax.eval_shape(program.segment, state, t, consts)
