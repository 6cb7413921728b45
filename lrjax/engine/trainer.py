"""``train``: a resolved ``Run`` through the compiled program, chunk by chunk, into tables.

The steps, top to bottom (``train``):

1. ``memory.plan_chunks`` and ``chunk.chunks``: the grid cut into chunks that fit.
2. ``chunk.place_data``: the dataset's splits on the device(s), once.
3. For each chunk: ``chunk.prepare_chunk`` (its constants and initial state); for
   the first, ``compile_segment`` (the CPU width probe, then the segment program,
   compiled once); ``train_chunk`` (segment after segment, with checkpoints and
   progress); then its test evaluation (``Outputs.add``).
4. ``Outputs.result``: the chunks back into per-member arrays, then
   ``tables.result_tables``.

``train_grid(model, dataset, table, settings)`` is the Python API: ``build_run``
(the one validation) followed by ``train``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from lrjax import grid as grid_lib
from lrjax.data import Dataset
from lrjax.engine import autotune, checkpoint, devices, memory
from lrjax.engine.chunk import Chunk, Placement, chunks, place_data, prepare_chunk
from lrjax.engine.progress import Progress
from lrjax.engine.program import Program
from lrjax.engine.run import Run, build_run
from lrjax.engine.settings import GridResult, TrainSettings
from lrjax.engine.state import mean_metrics, per_example, segment_metrics
from lrjax.engine.tables import result_tables, tick_losses
from lrjax.models import ModelAdapter


def train_grid(model: ModelAdapter, dataset: Dataset, table: pd.DataFrame,
               settings: TrainSettings = TrainSettings(), *, progress: bool = True,
               on_segment: Callable[[int, int], None] | None = None,
               checkpoint_dir: str | None = None,
               checkpoint_every_s: float | None = None) -> GridResult:
  """Trains every member of ``table`` as one vmapped, scanned JAX program.

  Args:
    model: from ``lrjax.models`` (``get_model``, ``from_linen``, ``from_nnx``).
    dataset: from ``lrjax.data.load``.
    table: the member table from ``lrjax.grid.make_grid``.
    settings: optimizer, schedule, budget, augmentation, ...
    progress: show progress on stderr: a "compiling ..." line, then a bar over
      member-examples (rate and ETA exclude compiling; members alive and diverged,
      best validation accuracy and loss so far); when stderr is not a terminal, one
      plain line per evaluation instead. False: silent.
    on_segment: optional callback ``(segments_done, segments_total)``.
    checkpoint_dir: if given, the state is saved there every
      ``settings.checkpoint_every`` evaluations, at each chunk's end and when a
      SIGTERM / SIGINT stops training (``checkpoint.Interrupted``), and a run with the
      same arguments continues from what it finds there (``lrjax run --resume``).
    checkpoint_every_s: also save when this many seconds have passed since the last
      save (None: only the ``settings.checkpoint_every`` rule).

  Returns:
    A ``GridResult`` with the members table (hyperparameters + results), the
    history table, final parameters and timings.

  Raises:
    ConfigError: bad input, before anything is compiled.

  Example:
    >>> from lrjax import data, grid, models
    >>> ds = data.load("digits")
    >>> table = grid.make_grid({"lr": (0.05, 0.2), "batch_size": (32,)})
    >>> result = train_grid(models.get_model("mlp", 10, hidden=(32,)), ds, table,
    ...                     TrainSettings(epochs=1), progress=False)
    >>> result.members[["lr", "diverged"]].values.tolist()
    [[0.05, False], [0.2, False]]
  """
  return train(build_run(model, dataset, table, settings), progress=progress,
               on_segment=on_segment, checkpoint_dir=checkpoint_dir,
               checkpoint_every_s=checkpoint_every_s)


@dataclasses.dataclass(frozen=True)
class TrainHooks:
  """What a run reports to and saves through while it trains (``train``'s arguments).

  Attributes:
    on_segment: called ``(segments_done, segments_total)`` after each segment.
    checkpoint_dir: where chunk checkpoints go (None: no checkpoints).
    checkpoint_every_s: also save after this many seconds since the last save.
    writers: ``lrjax.metric_writers.MetricWriter`` objects fed every evaluation.
    stop: set by a signal (``checkpoint.catch_signals``): stop at the segment's end.
  """

  on_segment: Callable[[int, int], None] | None = None
  checkpoint_dir: str | None = None
  checkpoint_every_s: float | None = None
  writers: Sequence[Any] = ()
  stop: checkpoint.StopRequest | None = None


def train(run: Run, *, progress: bool = True,
          on_segment: Callable[[int, int], None] | None = None,
          checkpoint_dir: str | None = None, checkpoint_every_s: float | None = None,
          writers: Sequence[Any] = ()) -> GridResult:
  """Trains a resolved ``Run`` (``build_run``); arguments as ``train_grid``'s.

  ``writers``: ``lrjax.metric_writers.MetricWriter`` objects that receive every
  evaluation's metrics as training goes (TensorBoard, W&B, ...); the caller closes them.

  While training (from the main thread), SIGTERM and SIGINT end the current segment,
  save its checkpoint and raise ``checkpoint.Interrupted`` (exit status 143 / 130 in
  ``lrjax run``); the previous signal handlers are restored afterwards.

  Example:
    >>> from lrjax import data, grid, models
    >>> run = build_run(models.get_model("mlp", 10, hidden=(8,)), data.load("digits"),
    ...                 grid.make_grid({"lr": (0.1,), "batch_size": (32,)}),
    ...                 TrainSettings(epochs=0.25))
    >>> train(run, progress=False).members.updates.tolist()
    [10]
  """
  try:
    with checkpoint.catch_signals() as stop:
      return _train(run, progress, TrainHooks(on_segment, checkpoint_dir,
                                              checkpoint_every_s, tuple(writers), stop))
  finally:
    for w in writers:
      w.flush()


def _train(run: Run, show_progress: bool, hooks: TrainHooks) -> GridResult:
  chunking = Chunking.plan(run, hooks.checkpoint_dir)
  placement = Placement.for_run(run, len(chunking.group_chunks[0]))
  data = place_data(run, placement)
  bar = Progress(run, len(chunking.group_chunks), show_progress)
  for w in hooks.writers:
    w.start(run)
  outputs, compiled, train_s = Outputs(), None, 0.0
  for chunk_i, gidx in enumerate(chunking.group_chunks):
    chunk = prepare_chunk(run, gidx, placement, data, compiled and compiled.program)
    if compiled is None:
      compiled = _compile_first(run, chunk, placement, bar, hooks.checkpoint_dir, chunking)
    t0 = time.perf_counter()
    try:
      state, seg_metrics = train_chunk(run, chunk_i, compiled.segment, chunk,
                                       placement.put_members, bar, hooks)
    except BaseException:
      bar.close()
      raise
    train_s += time.perf_counter() - t0
    outputs.add(run, chunk, state, seg_metrics, data.test)
  bar.close()
  result = outputs.result(run, _run_info(run, chunking, placement, compiled, train_s))
  for w in hooks.writers:
    w.finish(result.members)
  return result


@dataclasses.dataclass(frozen=True)
class Chunking:
  """How a run's grid is cut into chunks.

  Attributes:
    group_chunks: each chunk's input groups (``chunk.chunks``).
    fit: the memory planner's choice (``memory.plan_chunks``), or None when
      ``settings.max_members_per_chunk`` sets the chunks.
    seconds: what planning took (it compiles; counted as compile time).
  """

  group_chunks: list[np.ndarray]
  fit: memory.ChunkPlan | None
  seconds: float

  @classmethod
  def plan(cls, run: Run, checkpoint_dir: str | None) -> Chunking:
    t0 = time.perf_counter()
    fit = None
    if run.settings.max_members_per_chunk == 0:  # an explicit chunk size wins
      fit = memory.plan_chunks(run, run.settings.max_memory, checkpoint_dir=checkpoint_dir)
    lay = run.layout
    group_chunks = chunks(lay.num_groups, lay.inner_size,
                          run.settings.max_members_per_chunk, 0 if fit is None else fit.groups)
    return cls(group_chunks, fit, time.perf_counter() - t0)


@dataclasses.dataclass(frozen=True)
class Compiled:
  """The segment program a run trains with.

  Attributes:
    program: its ``Program``.
    segment: ``program.segment``, compiled.
    width: the ``lax.map`` width chosen (None: the run's or backend's default).
    probe_seconds: each measured width's probe time (``autotune.choose_width``).
    seconds: what planning, choosing and compiling took.
  """

  program: Program
  segment: Any
  width: int | None
  probe_seconds: dict
  seconds: float = 0.0


def _compile_first(run: Run, chunk: Chunk, placement: Placement, bar: Progress,
                   checkpoint_dir: str | None, chunking: Chunking) -> Compiled:
  """``compile_segment`` for the first chunk, inside the progress display's
  "compiling" line (its time includes planning the chunks)."""
  bar.compiling()
  t0 = time.perf_counter()
  try:
    compiled = compile_segment(run, chunk, placement, checkpoint_dir,
                               chunking.fit and chunking.fit.compiled)
  except BaseException:
    bar.compiled(time.perf_counter() - t0)
    raise
  compiled = dataclasses.replace(compiled,
                                 seconds=time.perf_counter() - t0 + chunking.seconds)
  bar.compiled(compiled.seconds)
  return compiled


def compile_segment(run: Run, chunk: Chunk, placement: Placement,
                    checkpoint_dir: str | None, prepared: tuple | None = None) -> Compiled:
  """Chooses the ``lax.map`` width (CPU probe, or the interrupted run's choice) and
  compiles the segment program once: ``prepared`` (``memory.ChunkPlan.compiled``,
  this chunk's program already compiled) is used when its width is the one chosen.
  """
  platform = jax.devices()[0].platform
  width, probe = run.settings.vmap_width or None, {}
  members_in_chunk = len(chunk.group_indices) * run.layout.inner_size
  if autotune.wanted(run.settings, platform, members_in_chunk, placement.num_devices):
    # Which lax.map width trains fastest depends on the model: measure it. A resumed
    # run reuses the interrupted run's choice, so it compiles the same program.
    width = autotune.load_choice(checkpoint_dir)
    if width is None:
      width, probe = autotune.choose_width(run, chunk)
      autotune.save_choice(checkpoint_dir, width)
  program = Program(run, placement.partition, vmap_width=width)
  if prepared is not None and prepared[0].vmap_width == program.vmap_width:
    return Compiled(*prepared, width, probe)
  segment = program.segment.lower(chunk.state, jnp.int32(0), chunk.consts).compile(
      compiler_options=devices.compiler_options(platform, placement.num_devices))
  return Compiled(program, segment, width, probe)


class _Report:
  """A chunk's members as the metric writers and the progress display see them: the
  real ones (padding left out), in ``run.table`` order, with host-side metrics."""

  def __init__(self, run: Run, group_indices: np.ndarray, writers: Sequence[Any]):
    first = {}
    for pos, g in enumerate(group_indices):
      first.setdefault(int(g), pos)
    slots = run.layout.member_slots
    rows = np.flatnonzero(np.isin(slots[:, 0], list(first)))
    # Each member's (position in the chunk, inner slot) in the chunk's (G, I) arrays.
    self.pos = np.asarray([first[int(g)] for g in slots[rows, 0]], np.int64)
    self.inner = slots[rows, 1]
    self.members = run.table.iloc[rows].reset_index(drop=True)
    self.run, self.writers = run, writers

  @property
  def count(self) -> int:
    return len(self.members)

  def host(self, metrics) -> dict:
    """One segment's metrics on the host, per member of the chunk (val means)."""
    host = mean_metrics(devices.fetch(metrics), len(self.run.dataset.validation))
    return {k: np.asarray(v)[self.pos, self.inner] for k, v in host.items()}

  def write(self, segment_i: int, metrics, replayed: bool = False) -> dict:
    """Hands segment ``segment_i``'s metrics to the writers; returns them on the host.
    ``replayed``: a resumed chunk's segment that was trained before."""
    host = self.host(metrics)
    examples_seen = (segment_i + 1) * self.run.plan.examples_per_segment
    kwargs = {"replayed": True} if replayed else {}
    for w in self.writers:
      w.write(self.members, examples_seen, host, **kwargs)
    return host


class _Saver:
  """When a chunk's checkpoint is saved: every ``settings.checkpoint_every`` segments,
  after ``checkpoint_every_s`` seconds, after the last segment and on a stop request."""

  def __init__(self, run: Run, chunk_i: int, hooks: TrainHooks, writers: Sequence[Any]):
    self.path = (None if hooks.checkpoint_dir is None
                 else checkpoint.chunk_path(hooks.checkpoint_dir, chunk_i))
    self.every, self.every_s = run.settings.checkpoint_every, hooks.checkpoint_every_s
    self.last_segment = run.plan.num_segments - 1
    self.stop, self.writers = hooks.stop, writers
    self.last_save = time.perf_counter()

  def resumable(self) -> bool:
    return self.path is not None and os.path.exists(self.path)

  def after(self, segment_i: int, state, seg_metrics: list) -> bool:
    """Saves if due after segment ``segment_i``; returns whether training stops."""
    stopping = self.stop is not None and self.stop.requested
    due = (segment_i + 1) % self.every == 0 or (
        self.every_s is not None and time.perf_counter() - self.last_save >= self.every_s)
    stopping, due = devices.agree_any(stopping, due)  # one process's signal stops all
    if self.path is not None and (segment_i == self.last_segment or due or stopping):
      # Every process saves (orbax writes each one's shards; process 0 commits).
      checkpoint.save(self.path, state, devices.fetch(seg_metrics), segment_i + 1)
      self.last_save = time.perf_counter()
      for w in self.writers:
        w.flush()
    return stopping


def train_chunk(run: Run, chunk_i: int, segment, chunk: Chunk, put_members,
                progress: Progress, hooks: TrainHooks):
  """Runs one chunk's segments (resuming from its checkpoint); returns (state, metrics).

  After each segment, when there are ``hooks.writers`` or a progress display, the
  segment's metrics are fetched to the host and handed to them
  (``lrjax.metric_writers``). Checkpoints are saved as ``_Saver`` says; when
  ``hooks.stop`` is requested (a signal, see ``checkpoint.catch_signals``), the
  segment's checkpoint is saved and ``checkpoint.Interrupted`` raised.

  Args:
    run: the run.
    chunk_i: the chunk's index (its checkpoint's name, its progress).
    segment: the compiled segment program.
    chunk: the chunk (``prepare_chunk``).
    put_members: ``Placement.put_members``, for a resumed state.
    progress: the progress display.
    hooks: where the run reports and saves.
  """
  n_seg, total = run.plan.num_segments, progress.num_chunks * run.plan.num_segments
  report = _Report(run, chunk.group_indices, hooks.writers)
  saver = _Saver(run, chunk_i, hooks, hooks.writers)
  state, seg_metrics, first = chunk.state, [], 0
  if saver.resumable():  # resume this chunk
    state, seg_metrics, first = checkpoint.load(
        saver.path, state, dict.fromkeys(segment_metrics(run.settings), 0))
    state = put_members(state)
    progress.skip(report.count, first)
    for s, m in enumerate(seg_metrics):
      report.write(s, m, replayed=True)
  for s in range(first, n_seg):
    state, metrics = segment(state, jnp.int32(s), chunk.consts)
    if jax.process_count() > 1:  # spread over processes: every process gathers them now
      metrics = devices.fetch(metrics)
    seg_metrics.append(metrics)
    host = report.write(s, metrics) if hooks.writers or progress.enabled else None
    stopping = saver.after(s, state, seg_metrics)
    if host is not None:
      progress.step(chunk_i, s, report.members, host)
    if hooks.on_segment is not None:
      hooks.on_segment(chunk_i * n_seg + s + 1, total)
    if stopping:
      for w in hooks.writers:
        w.flush()
      signum = hooks.stop.signum if hooks.stop is not None and hooks.stop.requested \
          else signal.SIGTERM
      raise checkpoint.Interrupted(signum, chunk_i * n_seg + s + 1, total)
  progress.end_chunk()
  seg_metrics = [mean_metrics(m, len(run.dataset.validation))
                 for m in devices.fetch(seg_metrics)]
  return state, seg_metrics


FINAL_FIELDS = ("diverged", "diverged_at", "updates", "first_loss")  # of MemberState


class Outputs:
  """The chunks' results, gathered on the host and assembled into a ``GridResult``."""

  def __init__(self):
    self.history, self.params, self.model_state, self.tests, self.final = [], [], [], [], []

  def add(self, run: Run, chunk: Chunk, state, seg_metrics: list, test: tuple) -> None:
    """One trained chunk: its history, final state and test evaluation (on ``test``,
    ``DeviceData.test``)."""
    gidx = chunk.group_indices
    block_params = tuple(s.params for s in state)
    block_model_state = tuple(s.model_state for s in state)
    test_sums = devices.fetch(chunk.program.evaluate(
        tuple(zip(block_params, block_model_state)), *test))
    cat = lambda *xs: np.concatenate(xs, axis=1)
    self.history.append((gidx, seg_metrics))
    self.params.append((gidx, jax.tree.map(cat, *devices.fetch(block_params))))
    self.model_state.append((gidx, jax.tree.map(cat, *devices.fetch(block_model_state))))
    self.tests.append((gidx, {n: per_example(np.concatenate(v, axis=1), len(run.dataset.test))
                              for n, v in test_sums.items()}))
    self.final.append((gidx, tuple(cat(*devices.fetch([getattr(s, f) for s in state]))
                                   for f in FINAL_FIELDS)))

  def result(self, run: Run, info: dict) -> GridResult:
    """The members and history tables, per-member parameters and model state."""
    lay = run.layout
    num_groups = lay.num_groups
    per_member = lambda parts: jax.tree.map(lambda a: grid_lib.from_slots(a, lay),
                                            _assemble(num_groups, parts))
    hist = _assemble(num_groups, self.history)
    members, history = result_tables(run, hist, _assemble(num_groups, self.tests),
                                     _assemble(num_groups, self.final))
    return GridResult(members, history, per_member(self.params), info,
                      per_member(self.model_state), tick_losses(run, hist))


def _assemble(num_groups: int, parts):
  """Chunks' (group indices, tree) back into full (G, I) arrays; padded groups are
  overwritten by real ones."""
  out = None
  for gidx, tree in parts:
    if out is None:
      out = jax.tree.map(lambda a: np.zeros((num_groups,) + a.shape[1:], a.dtype), tree)
    out = jax.tree.map(lambda o, a: _put(o, gidx, a), out, tree)
  return out


def _put(out: np.ndarray, gidx: np.ndarray, values: np.ndarray) -> np.ndarray:
  out[gidx] = values
  return out


def _run_info(run: Run, chunking: Chunking, placement: Placement, compiled: Compiled,
              train_seconds: float) -> dict:
  """``GridResult.info``: sizes, timings and choices of the run."""
  the_plan, lay, fit = run.plan, run.layout, chunking.fit
  return {
      "micro_batch": the_plan.micro_batch, "ticks_per_segment": the_plan.ticks_per_segment,
      "num_segments": the_plan.num_segments,
      "examples_per_member": the_plan.examples_per_member,
      "epochs_effective": the_plan.examples_per_member / len(run.dataset.train),
      "num_classes": run.dataset.num_classes, "num_val": len(run.dataset.validation),
      "num_members": run.num_members, "num_groups": lay.num_groups,
      "inner_size": lay.inner_size, "num_chunks": len(chunking.group_chunks),
      "blocks": [(b.start, b.stop, b.k) for b in run.blocks],
      "batch_growth_examples": [t * the_plan.micro_batch for t in the_plan.growth_ticks],
      "budget": run.settings.budget, "update_budget": the_plan.update_budget,
      "compile_seconds": compiled.seconds, "train_seconds": train_seconds,
      "groups_per_chunk": len(chunking.group_chunks[0]),  # memory_*: bytes (engine.memory)
      "memory_budget": fit and fit.budget, "memory_estimate": fit and fit.estimate,
      "memory_compiled": memory.compiled_bytes(
          compiled.segment, memory.counted_devices(placement.num_devices)),
      "devices": [str(d) for d in jax.devices()],
      "member_devices": placement.num_devices,
      "vmap_width": compiled.width,  # None: the backend default (program.default_vmap_width)
      "vmap_width_probe_seconds": compiled.probe_seconds,
      "split_axis": (None if placement.partition is None
                     else ("groups", "inner")[placement.partition.axis]),
  }
