"""Memory-aware chunking: the footprint line, the budget, the chunk size it picks."""

import concurrent.futures
import os
import threading
import types

import pandas as pd
import pytest

from lrjax import data, grid, models
from lrjax.engine import TrainSettings, build_run, memory, program
from lrjax.engine.settings import config_fields
from lrjax.engine.trainer import train_grid
from lrjax.errors import ConfigError

MODEL = {"hidden": (16,)}
# 3 input groups (seeds) of 2 members; width 1 fixed, so no width probe compiles.
AXES = {"lr": (0.05, 0.2), "batch_size": (32,), "seed": (0, 1, 2)}
SETTINGS = {"epochs": 0.3, "eval_every": 128, "vmap_width": 1}


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


@pytest.fixture(scope="module")
def one_chunk_lowerings(digits):
  """The grid trained with the default budget, and its lowerings (``lowerings``)."""
  with pytest.MonkeyPatch.context() as patch:
    seen = _count_lowerings(patch)
    return _train(digits), seen


@pytest.fixture(scope="module")
def one_chunk(one_chunk_lowerings):
  return one_chunk_lowerings[0]


@pytest.fixture(scope="module")
def group_bytes(digits):
  """Compiled bytes of chunks of 1 and 2 groups."""
  run = build_run(models.get_model("mlp", 10, **MODEL), digits, grid.make_grid(AXES),
                  TrainSettings(**SETTINGS))
  chunks = [memory.lower_chunk(run, g) for g in (1, 2)]
  with concurrent.futures.ThreadPoolExecutor(2) as pool:  # compiled side by side
    return [memory.compiled_bytes(c, chunk.num_devices)
            for c, chunk in zip(pool.map(memory.LoweredChunk.compile, chunks), chunks)]


@pytest.fixture
def lowerings(monkeypatch):
  return _count_lowerings(monkeypatch)


def _count_lowerings(monkeypatch) -> list[dict]:
  """Records every lowering of a ``Program.segment``: its chunk's groups and compiles."""
  seen = []
  real_init = program.Program.__init__

  def init(self, *args, **kwargs):
    real_init(self, *args, **kwargs)
    jitted = self.segment

    class Segment:
      def __call__(self, *a, **k):
        return jitted(*a, **k)

      def lower(self, state, *rest):
        lowered = jitted.lower(state, *rest)
        entry = {"groups": state[0].updates.shape[0], "compiles": 0}
        seen.append(entry)

        def compile(*a, **k):
          entry["compiles"] += 1
          return lowered.compile(*a, **k)

        return types.SimpleNamespace(compile=compile)

    self.segment = Segment()

  monkeypatch.setattr(program.Program, "__init__", init)
  return seen


def _train(digits, **kw):
  return train_grid(models.get_model("mlp", 10, **MODEL), digits, grid.make_grid(AXES),
                    TrainSettings(**SETTINGS, **kw), progress=False)


def test_three_chunks_equal_one_chunk_and_compile_once_when_one_group_fits(
    digits, one_chunk, group_bytes, lowerings):
  b1, b2 = group_bytes
  result = _train(digits, max_memory=(b1 + b2) // 2)  # one group fits, two do not
  info = result.info
  assert info["num_chunks"] == 3 and info["groups_per_chunk"] == 1
  assert one_chunk.info["num_chunks"] == 1
  pd.testing.assert_frame_equal(result.members, one_chunk.members, check_exact=False,
                                rtol=1e-6)
  pd.testing.assert_frame_equal(result.history, one_chunk.history, check_exact=False,
                                rtol=1e-6)
  # The whole grid (does not fit), then probes of 1 and 2 groups, each compiled once;
  # the 1-group probe is the program all three chunks train with.
  assert sorted(e["groups"] for e in lowerings) == [1, 2, 3]
  assert all(e["compiles"] == 1 for e in lowerings), lowerings
  assert info["memory_compiled"] == b1 <= info["memory_estimate"] <= info["memory_budget"]


def test_grid_that_fits_compiles_its_program_once(one_chunk_lowerings):
  result, lowerings = one_chunk_lowerings
  assert result.info["num_chunks"] == 1
  assert [(e["groups"], e["compiles"]) for e in lowerings] == [(3, 1)]


def test_explicit_max_members_per_chunk_wins_over_max_memory(digits, lowerings):
  result = _train(digits, max_members_per_chunk=2, max_memory=1)
  assert result.info["num_chunks"] == 3 and result.info["memory_budget"] is None
  assert [(e["groups"], e["compiles"]) for e in lowerings] == [(1, 1)]


def test_one_group_over_budget_raises_config_error_naming_max_memory(digits):
  with pytest.raises(ConfigError, match=r"max_memory: one input group \(2 members, "
                                        r"about .* per member\).*Raise max_memory"):
    _train(digits, max_memory=1000)


def test_info_records_chunk_size_estimate_and_budget(one_chunk):
  info = one_chunk.info
  assert info["groups_per_chunk"] == info["num_groups"] == 3
  assert 0 < info["memory_estimate"] == info["memory_compiled"] <= info["memory_budget"]


def test_footprint_through_two_probes_extrapolates_linearly():
  f = memory.Footprint.through(1, 1_300, 2, 2_500)
  assert (f.fixed, f.per_group) == (100, 1_200)
  assert f.bytes(10) == 12_100
  assert memory.Footprint.through(1, 500, 2, 400) == memory.Footprint(500, 0)


def test_groups_per_chunk_evens_out_chunks_when_budget_is_tight():
  f = memory.Footprint(1_000, 100)
  assert memory.groups_per_chunk(f, 1_000 + 100 * 7, 10, 4) == 5  # 2 chunks of 5, not 7+3
  assert memory.groups_per_chunk(f, 10**9, 10, 4) == 10
  with pytest.raises(ConfigError, match="max_memory"):
    memory.groups_per_chunk(memory.Footprint(2_000, 0), 1_000, 10, 4)


def test_free_bytes_counts_least_free_accelerator_per_device():
  gpus = [types.SimpleNamespace(memory_stats=lambda: {"bytes_limit": 100, "bytes_in_use": 30}),
          types.SimpleNamespace(memory_stats=lambda: {"bytes_limit": 100})]
  assert memory.free_bytes(gpus) == 140  # the least free device, times two
  cpu = types.SimpleNamespace(memory_stats=lambda: None)
  assert 0 < memory.free_bytes([cpu])


def test_max_memory_is_a_validated_config_field():
  assert config_fields()["max_memory"] == 0
  assert TrainSettings(max_memory=8 << 30).max_memory == 8 << 30
  with pytest.raises(ConfigError, match="max_memory"):
    TrainSettings(max_memory=-1)


def _fake_lower(bytes_of, lowered=None):
  """A ``lower`` whose chunk of ``g`` groups compiles to ``bytes_of(g)`` bytes."""
  def lower(groups):
    if lowered is not None:
      lowered.append(groups)
    stats = types.SimpleNamespace(
        argument_size_in_bytes=bytes_of(groups), output_size_in_bytes=0,
        alias_size_in_bytes=0, temp_size_in_bytes=0, generated_code_size_in_bytes=0)
    compiled = types.SimpleNamespace(memory_analysis=lambda: stats, groups=groups)
    return memory.LoweredChunk(f"program {groups}", types.SimpleNamespace(
        compile=lambda compiler_options: compiled), 1, {}, 0)
  return lower


RUN_10X4 = types.SimpleNamespace(layout=types.SimpleNamespace(num_groups=10, inner_size=4))


def test_plan_probes_one_and_two_groups_when_whole_grid_exceeds_budget():
  seen = []
  plan = memory.plan_chunks(RUN_10X4, 1_000 + 100 * 4, _fake_lower(
      lambda g: 1_000 + 100 * g, seen))
  assert seen == [10, 1, 2]
  assert (plan.groups, plan.estimate, plan.budget, plan.compiled) == (4, 1_400, 1_400, None)


def test_plan_keeps_whole_grid_compile_when_it_fits():
  plan = memory.plan_chunks(RUN_10X4, 10**6, _fake_lower(lambda g: 1_000 + 100 * g))
  assert (plan.groups, plan.estimate) == (10, 2_000)
  assert plan.compiled[0] == "program 10" and plan.compiled[1].groups == 10


def test_resumed_run_keeps_interrupted_runs_chunk_size(tmp_path):
  tight = memory.plan_chunks(RUN_10X4, 1_250, _fake_lower(lambda g: 1_000 + 100 * g),
                             checkpoint_dir=str(tmp_path))
  assert tight.groups == 2
  nothing = _fake_lower(lambda g: pytest.fail("planned again"))
  resumed = memory.plan_chunks(RUN_10X4, 10**9, nothing, checkpoint_dir=str(tmp_path))
  assert (resumed.groups, resumed.estimate, resumed.budget) == (2, None, None)


def test_processes_saving_the_choice_at_once_all_succeed(tmp_path):
  # The processes of a multi-process run share the checkpoint directory and all plan the
  # same chunks; they reach the save together (here: threads released by a barrier).
  writers = 8
  for attempt in range(10):
    directory = str(tmp_path / str(attempt))
    together = threading.Barrier(writers)

    def plan(_):
      def lower(groups):
        together.wait() if groups == 10 else None
        return _fake_lower(lambda g: 1_000 + 100 * g)(groups)
      return memory.plan_chunks(RUN_10X4, 10**6, lower, checkpoint_dir=directory).groups

    with concurrent.futures.ThreadPoolExecutor(writers) as pool:
      assert list(pool.map(plan, range(writers))) == [10] * writers
    resumed = memory.plan_chunks(RUN_10X4, 10**6, _fake_lower(lambda g: pytest.fail("planned")),
                                 checkpoint_dir=directory)
    assert resumed.groups == 10
    assert sorted(os.listdir(directory)) == [memory.CHOICE_FILE]
