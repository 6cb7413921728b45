"""The CPU ``lax.map`` slice width, chosen by measuring it at start-up.

On CPU the engine trains a device's members ``width`` at a time (``lax.map`` over
slices, members of a slice vmapped). Which width is fastest depends on the model
and batch size, and no static rule matched both built-in models: one member at a
time makes every matmul a plain one, while members sharing a costly first layer
(a small convolution's patch matmul) gain from one wide matmul over the members
of an input group (benchmarks/NOTES.md, "Measured ``lax.map`` width").

So the trainer times each candidate width on a few ticks of a few real members
(the grid's own model, data, optimizer and hyperparameters) before compiling the
segment, and keeps the fastest when it beats width 1 clearly (``pick_width``). The
probe's time counts as compile time. Grids with few members per device skip it (it
would cost more than it could save) and use ``program.default_vmap_width()``.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import time

import jax
import jax.numpy as jnp

from lrjax.engine import devices
from lrjax.engine.chunk import Chunk
from lrjax.engine.plan import Block
from lrjax.engine.program import Program
from lrjax.engine.run import Run
from lrjax.engine.settings import TrainSettings

# Wider slices were never clearly faster than 2 on the built-in models, and each
# candidate costs a compilation (benchmarks/NOTES.md).
CANDIDATE_WIDTHS = (1, 2)
# Below this many members per device the probe costs more than it can save.
MIN_MEMBERS_PER_DEVICE = 16
PROBE_TICKS = 16  # per timed run (rounded to whole accumulation cycles)
ROUNDS = 3  # interleaved timings per candidate; the fastest counts
MIN_TIMED_S = 0.02  # each timing repeats the probe to last at least this long
# Leave the default width (1) only for a clear win: a few ticks on a shared CPU are
# noisy, and a wrong switch is costly (benchmarks/NOTES.md, "Width probe").
SWITCH_MARGIN = 0.10


def pick_width(seconds: dict[int, float], default: int = 1) -> int:
  """The measured width to train with: the fastest, if it beats ``default`` clearly.

  Another width is taken only when its probe time is below ``default``'s by more
  than ``SWITCH_MARGIN`` (a fraction); otherwise ``default`` stays.

  Example:
    >>> pick_width({1: 1.00, 2: 0.95}), pick_width({1: 1.00, 2: 0.85})
    (1, 2)
  """
  fastest = min(seconds, key=seconds.get)
  if default in seconds and seconds[fastest] >= (1.0 - SWITCH_MARGIN) * seconds[default]:
    return default
  return fastest


def candidate_widths(size: int) -> list[int]:
  """The candidate widths that divide a device's share ``size`` of a block.

  Example:
    >>> candidate_widths(32), candidate_widths(5)
    ([1, 2], [1])
  """
  return [w for w in CANDIDATE_WIDTHS if size % w == 0]


CHOICE_FILE = "vmap_width.json"  # in a run's checkpoint directory


def save_choice(checkpoint_dir: str | None, width: int | None) -> None:
  """Records the chosen width next to a run's checkpoints (nothing without a directory).

  Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> save_choice(d, 2); load_choice(d)
    2
  """
  if checkpoint_dir is None or width is None:
    return
  os.makedirs(checkpoint_dir, exist_ok=True)
  path = os.path.join(checkpoint_dir, CHOICE_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump({"vmap_width": int(width)}, f)
  os.replace(path + ".tmp", path)


def load_choice(checkpoint_dir: str | None) -> int | None:
  """The width an interrupted run chose, or None (no directory, or no choice saved)."""
  path = None if checkpoint_dir is None else os.path.join(checkpoint_dir, CHOICE_FILE)
  if path is None or not os.path.exists(path):
    return None
  with open(path) as f:
    return int(json.load(f)["vmap_width"])


def wanted(settings: TrainSettings, platform: str, num_members: int, num_devices: int) -> bool:
  """Whether to measure: CPU, ``vmap_width`` left to lrjax (0) and enough members, in
  one process (several would each time their own devices and could choose different
  programs; they train at the default width).

  Example:
    >>> wanted(TrainSettings(), "cpu", 64, 2), wanted(TrainSettings(vmap_width=1), "cpu", 64, 2)
    (True, False)
  """
  return (platform == "cpu" and settings.vmap_width == 0 and jax.process_count() == 1
          and num_members >= MIN_MEMBERS_PER_DEVICE * num_devices)


def choose_width(run: Run, chunk: Chunk) -> tuple[int | None, dict[int, float]]:
  """Times each candidate width on the largest block's first members; picks the fastest.

  The probe runs ``Program.block_segment`` (the segment's training part) for
  ``PROBE_TICKS`` ticks on ``max(candidates)`` members of input group 0, on one
  device, compiled with the segment's XLA options.

  Args:
    run: the resolved run (``settings.vmap_width`` 0).
    chunk: the chunk to train (``chunk.prepare_chunk``): its program's partition, its
      initial state and constants.

  Returns:
    ``(width, seconds)``: the width to train with (``pick_width``: the fastest,
    if it beats width 1 by more than ``SWITCH_MARGIN``; None when there is only
    one candidate, nothing measured) and each candidate's fastest time for one
    probe run (averaged over enough back-to-back runs to last ``MIN_TIMED_S``).
  """
  blocks, partition = run.blocks, chunk.program.partition
  bi = max(range(len(blocks)), key=lambda i: blocks[i].stop - blocks[i].start)
  # A device's share of the block, read from the state's sharding as the engine
  # reads it from the local shape under shard_map.
  updates = chunk.state[bi].updates
  widths = candidate_widths(updates.sharding.shard_shape(updates.shape)[1])
  if len(widths) < 2:
    return None, {}
  k = run.plan.k_lcm
  ticks = jnp.arange(max(k, PROBE_TICKS // k * k), dtype=jnp.int32)
  args, block = _probe_arguments(run, chunk, bi, max(widths), ticks)
  options = devices.compiler_options(jax.devices()[0].platform,
                                     1 if partition is None else partition.num_devices)

  def build(w):
    program = Program(run, partition, vmap_width=w)
    fn = jax.jit(lambda s, h, c, x: program.block_segment(s, h, block, ticks, c, x)[0])
    return fn.lower(*args).compile(compiler_options=options)

  # XLA compiles outside the GIL: the candidates compile side by side.
  with concurrent.futures.ThreadPoolExecutor(len(widths)) as pool:
    compiled = dict(zip(widths, pool.map(build, widths)))
  seconds = _time(compiled, args)
  return pick_width(seconds), seconds


def _probe_arguments(run: Run, chunk: Chunk, bi: int, n: int, ticks):
  """The probe's arguments on one device: block ``bi``'s first ``n`` members of input
  group 0, their hyperparameters, group 0's constants and its inputs for ``ticks``;
  and the ``Block`` of those ``n`` members."""
  program = Program(run, chunk.program.partition)

  @jax.jit
  def take(state, hp, c):
    state = jax.tree.map(lambda a: a[:1, :n], state)
    hp = {name: v[:1, :n] for name, v in hp.items()}
    c = c._replace(seed_index=c.seed_index[:1], aug_keys=c.aug_keys[:1],
                   dropout_keys=c.dropout_keys[:1],
                   aug_mags={name: v[:1] for name, v in c.aug_mags.items()}, hparams=())
    return state, hp, c, jax.lax.map(lambda t: program.inputs(t, c), ticks)

  args = take(chunk.state[bi], chunk.consts.hparams[bi], chunk.consts)
  return jax.device_put(args, jax.devices()[0]), Block(0, n, run.blocks[bi].k)


def _time(compiled: dict, args) -> dict[int, float]:
  """Each compiled probe's fastest time for one run, over ``ROUNDS`` interleaved rounds
  of back-to-back runs lasting ``MIN_TIMED_S`` or more."""
  first = {}
  for w, fn in compiled.items():  # first run: not timed, but sizes the timed ones
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first[w] = time.perf_counter() - t0
  # Small models run a probe in well under a millisecond: repeat it to ~MIN_TIMED_S.
  reps = max(1, math.ceil(MIN_TIMED_S / max(min(first.values()), 1e-6)))
  seconds = {w: float("inf") for w in compiled}
  for _ in range(ROUNDS):  # interleaved, so a slow spell of the machine hits all alike
    for w, fn in compiled.items():
      t0 = time.perf_counter()
      for _ in range(reps):
        out = fn(*args)
      jax.block_until_ready(out)
      seconds[w] = min(seconds[w], (time.perf_counter() - t0) / reps)
  return seconds
