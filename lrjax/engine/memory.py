"""Memory-aware chunking: how many input groups one chunk of the grid may hold.

A chunk's footprint is read from XLA, not guessed: the segment program is lowered
from shapes alone (``jax.eval_shape``, nothing allocated) and compiled, and
``memory_analysis()`` gives its argument, output, temporary and generated-code
bytes. The arguments hold everything the chunk keeps on the device: its members'
state, its hyperparameters and the resident dataset and evaluation splits.

``plan_chunks`` first compiles the whole grid as one chunk: when that fits the
budget, it is the program that trains, so a grid that fits costs no extra
compilation unless the CPU width probe (``autotune``) picks another width (and
compile time hardly grows with the members: only shapes do).
Otherwise it compiles two small probes, 1 and 2 groups, side by side (XLA compiles
outside the GIL), and extrapolates linearly: a fixed part (data, code) plus a part
per group (state, activations, per-group inputs). Every per-group term grows
linearly with the groups except the segment's precomputed inputs, which are capped
(``state.INPUT_CACHE_BYTES``) and so grow less than linearly: a line through the
two smallest sizes overestimates larger chunks, erring on the safe side. All chunks
are padded to one size, so the chunk program compiles once (a probe of the chosen
size is that program).

The budget is ``max_memory`` bytes, or by default ``BUDGET_FRACTION`` of the free
memory (``free_bytes``); on CPU the devices' memory is the host's, which also
holds the host copies of every member's final parameters (``RESULT_COPIES``), so
those come off that default budget first.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

try:
  import psutil
except ImportError:  # optional: /proc/meminfo instead
  psutil = None

from lrjax.engine import chunk as chunk_lib
from lrjax.engine import devices as devices_lib
from lrjax.errors import ConfigError

BUDGET_FRACTION = 0.8  # of the free memory, when max_memory is 0
# Host copies of the final parameters at the end of a CPU run: the chunks' parts,
# the assembled (group, inner) arrays and the per-member arrays built from them.
RESULT_COPIES = 3
MIB = 1 << 20


def free_bytes(devices: list | None = None) -> int:
  """Free memory of ``devices`` (default ``jax.devices()``), in bytes.

  Accelerators: the least free device's ``bytes_limit - bytes_in_use``
  (``Device.memory_stats()``) times the number of devices, as members are split
  evenly. CPU devices share the host's memory: its available memory (``psutil``,
  else ``MemAvailable`` of ``/proc/meminfo``).

  Example:
    >>> free_bytes() > 0
    True
  """
  devices = list(jax.devices() if devices is None else devices)
  stats = [d.memory_stats() for d in devices]
  if all(s and "bytes_limit" in s for s in stats):
    return len(stats) * min(int(s["bytes_limit"]) - int(s.get("bytes_in_use", 0))
                            for s in stats)
  if psutil is not None:
    return int(psutil.virtual_memory().available)
  with open("/proc/meminfo") as f:
    kib = dict(line.split(":", 1) for line in f)["MemAvailable"].split()[0]
  return int(kib) * 1024


def counted_devices(num_devices: int) -> int:
  """The devices a chunk's bytes are counted over, when it runs on ``num_devices``.

  CPU devices share one memory: those the chunk runs on. Accelerators: all of
  them, so that the budget (over all devices) is compared per device.
  """
  return num_devices if jax.devices()[0].platform == "cpu" else len(jax.devices())


def compiled_bytes(compiled: Any, num_devices: int = 1) -> int:
  """Bytes a compiled program holds while it runs, over all ``num_devices`` devices.

  ``memory_analysis()`` describes one device's share: arguments plus outputs
  (less those aliasing donated arguments) plus temporaries and generated code.

  Example:
    >>> import jax.numpy as jnp
    >>> f = jax.jit(lambda x: x * 2).lower(jnp.zeros(1024, jnp.float32)).compile()
    >>> compiled_bytes(f) >= 2 * 4096
    True
  """
  m = compiled.memory_analysis()
  per_device = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
                + m.temp_size_in_bytes + m.generated_code_size_in_bytes)
  return int(per_device) * num_devices


@dataclasses.dataclass(frozen=True)
class Footprint:
  """A chunk's bytes as ``fixed + per_group * groups``.

  Example:
    >>> f = Footprint.through(1, 300, 2, 500)
    >>> f.fixed, f.per_group, f.bytes(10)
    (100, 200, 2100)
  """

  fixed: int
  per_group: int

  @classmethod
  def through(cls, g1: int, b1: int, g2: int, b2: int) -> Footprint:
    """The line through two measured (groups, bytes) points (never decreasing)."""
    per_group = max(0, math.ceil((b2 - b1) / (g2 - g1)))
    return cls(max(0, b1 - per_group * g1), per_group)

  def bytes(self, groups: int) -> int:
    return self.fixed + self.per_group * groups


def groups_per_chunk(footprint: Footprint, budget: int, num_groups: int,
                     inner_size: int) -> int:
  """The most groups per chunk that fit ``budget``, evened out over the chunks.

  With ``n`` the most that fit, the grid needs ``ceil(G / n)`` chunks; each then
  takes ``ceil(G / chunks)`` groups, so the last one's padding stays small.

  Raises:
    ConfigError: not even one group (``inner_size`` members) fits.

  Example:
    >>> groups_per_chunk(Footprint(100, 200), 1000, 10, 4)
    4
    >>> groups_per_chunk(Footprint(100, 200), 250, 10, 4)
    Traceback (most recent call last):
    ...
    lrjax.errors.ConfigError: max_memory: one input group (4 members, about 50 B per
    member) needs 300 B ..., more than the budget of 250 B. Raise max_memory ...
  """
  if footprint.bytes(1) > budget:
    raise ConfigError(
        f"max_memory: one input group ({inner_size} members, about "
        f"{_size(footprint.per_group / inner_size)} per member) needs "
        f"{_size(footprint.bytes(1))} with the grid's fixed {_size(footprint.fixed)}, "
        f"more than the budget of {_size(budget)}. Raise max_memory (bytes; 0 = "
        f"{BUDGET_FRACTION:.0%} of the free memory), free memory, or use fewer members per "
        f"group (fewer lr/batch_size/optimizer values per seed and augmentation) or a "
        f"smaller model.")
  fits = ((budget - footprint.fixed) // footprint.per_group if footprint.per_group
          else num_groups)
  n = min(int(fits), num_groups)
  return math.ceil(num_groups / math.ceil(num_groups / n))


def _size(n: float) -> str:
  """Bytes for people.

  Example:
    >>> _size(3 * (1 << 30)), _size(1536), _size(50)
    ('3.0 GiB', '1.5 KiB', '50 B')
  """
  for unit, scale in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", 1 << 10)):
    if abs(n) >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{n:.0f} B"


@dataclasses.dataclass
class ChunkPlan:
  """What ``plan_chunks`` chose.

  Attributes:
    groups: input groups per chunk.
    estimate: estimated bytes of one chunk's program (exact when it is the whole grid).
    budget: the bytes a chunk may use (on CPU, after the host result copies).
    compiled: ``(program, compiled segment)`` when a chunk of ``groups`` was compiled
      while planning (the whole grid, or a probe), to train with; None otherwise.
  """

  groups: int
  estimate: int | None
  budget: int | None
  compiled: tuple | None = None


class LoweredChunk(NamedTuple):
  """The segment program of one chunk size, lowered from shapes (``lower_chunk``)."""

  program: Any  # the Program
  lowered: Any  # jax.stages.Lowered
  num_devices: int
  options: dict  # compiler options
  params_bytes: int  # the chunk's members' parameters

  def compile(self):
    return self.lowered.compile(compiler_options=self.options)


CHOICE_FILE = "chunk_groups.json"  # in a run's checkpoint directory


def plan_chunks(run, max_memory: int, lower: Callable[[int], LoweredChunk] | None = None,
                checkpoint_dir: str | None = None) -> ChunkPlan:
  """Chooses the groups per chunk of ``run`` that fit the memory budget.

  Args:
    run: the resolved run.
    max_memory: bytes a chunk may use; 0 = ``BUDGET_FRACTION`` of ``free_bytes()``
      (on CPU, less the host copies of the results).
    lower: ``groups -> LoweredChunk``; default ``lower_chunk``.
    checkpoint_dir: the run's checkpoints: the choice is saved there, and a resumed
      run takes the interrupted run's choice (its chunks' checkpoints fit only
      those chunks), with nothing estimated (``estimate`` and ``budget`` None).

  Raises:
    ConfigError: one group does not fit (``groups_per_chunk``).
  """
  path = None if checkpoint_dir is None else os.path.join(checkpoint_dir, CHOICE_FILE)
  if path is not None and os.path.exists(path):
    with open(path) as f:
      return ChunkPlan(int(json.load(f)["groups_per_chunk"]), None, None)
  chosen = _plan(run, max_memory, lower or (lambda groups: lower_chunk(run, groups)))
  if path is not None:
    _save_choice(path, chosen.groups)
  return chosen


def _save_choice(path: str, groups: int) -> None:
  """Writes the choice atomically. Every process of a multi-process run writes the same
  choice into the shared checkpoint directory, so each goes through a temporary file of
  its own (with one shared name, one process's rename took the file from the other).
  """
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
  with os.fdopen(fd, "w") as f:
    json.dump({"groups_per_chunk": groups}, f)
  os.replace(tmp, path)


def _plan(run, max_memory: int, lower: Callable[[int], LoweredChunk]) -> ChunkPlan:
  lay = run.layout
  devices = jax.local_devices()  # over several processes: assumed alike
  budget = max_memory or int(BUDGET_FRACTION * free_bytes(devices) * jax.process_count())
  whole = lower(lay.num_groups)
  if not max_memory and devices[0].platform == "cpu":  # results share the host memory
    budget -= RESULT_COPIES * whole.params_bytes
  budget = devices_lib.agree_min(budget)  # every process must choose the same chunks
  compiled = whole.compile()
  size = compiled_bytes(compiled, whole.num_devices)
  if size <= budget:
    return ChunkPlan(lay.num_groups, size, budget, (whole.program, compiled))

  small = [lower(groups) for groups in (1, 2)]
  with concurrent.futures.ThreadPoolExecutor(2) as pool:  # XLA compiles without the GIL
    probes = dict(zip((1, 2), ((c.program, compiled) for c, compiled in
                               zip(small, pool.map(LoweredChunk.compile, small)))))
  b1, b2 = (compiled_bytes(probes[g][1], c.num_devices) for g, c in zip((1, 2), small))
  footprint = Footprint.through(1, b1, 2, b2)
  groups = groups_per_chunk(footprint, budget, lay.num_groups, lay.inner_size)
  reuse = probes[groups][:2] if groups in probes else None  # a probe is the chunk
  return ChunkPlan(groups, footprint.bytes(groups), budget, reuse)


def lower_chunk(run, groups: int) -> LoweredChunk:
  """The segment program for a chunk of ``groups`` input groups, lowered as the trainer
  places a real chunk (``chunk.prepare_chunk``). The members' state is abstract
  (nothing of that size is allocated); the chunk's constants (data,
  hyperparameters) are built as the trainer builds them: they are small, or
  resident anyway.
  """
  gidx = np.resize(np.arange(run.layout.num_groups), groups)
  placement = chunk_lib.Placement.for_run(run, groups)
  chunk = chunk_lib.prepare_chunk(run, gidx, placement, chunk_lib.place_data(run, placement),
                                  abstract=True)
  lowered = chunk.program.segment.lower(chunk.state, jax.numpy.int32(0), chunk.consts)
  params = sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize
               for s in chunk.state for a in jax.tree.leaves(s.params))
  return LoweredChunk(chunk.program, lowered, counted_devices(placement.num_devices),
                      devices_lib.compiler_options(jax.devices()[0].platform,
                                                   placement.num_devices), int(params))
