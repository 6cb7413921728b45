"""``train``: a resolved ``Run`` through the compiled program, chunk by chunk, into tables.

The steps, top to bottom:

1. ``place_data``: the dataset's splits on the device(s), once.
2. ``chunk_constants`` / ``initial_state``: a chunk's hyperparameters, inputs and state.
3. ``compile_segment``: the width probe (CPU), then the segment program, compiled once.
4. ``train_chunk``: segment after segment, with checkpoints and progress.
5. ``assemble``: chunks back into per-member arrays, then ``tables.result_tables``.

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
from lrjax.data import Dataset, example_order
from lrjax.engine import autotune, checkpoint, devices, memory
from lrjax.engine.plan import padded_split
from lrjax.engine.progress import Progress
from lrjax.engine.program import Program
from lrjax.engine.state import Constants, mean_metrics, per_example, segment_metrics
from lrjax.engine.run import Run, build_run
from lrjax.engine.settings import GridResult, TrainSettings
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


def chunks(num_groups: int, inner: int, max_members: int,
           groups: int = 0) -> list[np.ndarray]:
  """Group indices per chunk; the last chunk is padded by repeating its groups.

  ``max_members`` > 0 sets the chunk size; otherwise ``groups`` > 0 (groups per
  chunk, ``memory.plan_chunks``); otherwise one chunk.

  Example:
    >>> [c.tolist() for c in chunks(3, 2, 4)]
    [[0, 1], [2, 2]]
    >>> [c.tolist() for c in chunks(5, 2, 0, groups=2)]
    [[0, 1], [2, 3], [4, 4]]
  """
  per_chunk = (max(1, max_members // inner) if max_members > 0 else
               groups if groups > 0 else num_groups)
  per_chunk = min(per_chunk, num_groups)
  out = []
  for start in range(0, num_groups, per_chunk):
    idx = np.arange(start, min(start + per_chunk, num_groups))
    if len(idx) < per_chunk:
      idx = np.concatenate([idx, np.resize(idx, per_chunk - len(idx))])
    out.append(idx)
  return out


@dataclasses.dataclass
class _Placement:
  """Where arrays go: the member partition and the device_put for each kind of leaf."""

  partition: devices.Partition | None
  put_members: Callable[[Any], Any] = jax.device_put
  put_groups: Callable[[Any], Any] = jax.device_put

  @property
  def num_devices(self) -> int:
    return 1 if self.partition is None else self.partition.num_devices


def _placement(run: Run, group_chunks: list[np.ndarray]) -> _Placement:
  partition = devices.member_partition(len(group_chunks[0]),
                                       [b.stop - b.start for b in run.blocks])
  if partition is None:
    return _Placement(None)
  # devices.place: jax.device_put in one process; over several, each its own shards.
  shard = lambda spec: (lambda tree: devices.place(
      tree, jax.sharding.NamedSharding(partition.mesh, spec)))
  return _Placement(partition, shard(partition.members), shard(partition.groups))


def place_data(run: Run, placement: _Placement):
  """The training stream, training split and evaluation splits as device arrays, once.

  Returns:
    ``(device_data, validation, test)``: a dict of the training arrays and each
    seed's example order, and (images, labels, weights) of the padded splits.
  """
  dataset, the_plan = run.dataset, run.plan
  order = np.stack([example_order(s, len(dataset.train), the_plan.examples_per_member)
                    for s in run.distinct_seeds])
  device_data = dict(
      train_images=jnp.asarray(dataset.train.images),
      train_labels=jnp.asarray(dataset.train.labels, jnp.int32),
      order=jnp.asarray(order))
  batch = run.settings.eval_batch
  val = [jnp.asarray(a) for a in padded_split(dataset.validation.images,
                                               dataset.validation.labels, batch)]
  test = [jnp.asarray(a) for a in padded_split(dataset.test.images, dataset.test.labels,
                                                batch)]
  if placement.partition is not None:
    # Data and evaluation splits replicated once, not copied at every segment call.
    replicate = lambda tree: devices.place(tree, jax.sharding.NamedSharding(
        placement.partition.mesh, jax.sharding.PartitionSpec()))
    device_data, val = replicate((device_data, val))
    if jax.process_count() > 1:  # evaluated against parameters spread over processes
      test = replicate(test)
  return device_data, val, test


def _root_keys(run: Run):
  root = jax.vmap(jax.random.key)(jnp.asarray(run.seeds))
  init_keys = jax.vmap(lambda key: jax.random.fold_in(key, 0))(root)
  aug_keys = jax.vmap(lambda key: jax.random.fold_in(key, 2))(root)
  return init_keys, aug_keys


def _dropout_keys(seeds: np.ndarray):
  """Each group's dropout stream: from its seed alone, so members that share a seed
  draw the same masks (common random numbers)."""
  return jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 3))(jnp.asarray(seeds))


def chunk_constants(run: Run, gidx: np.ndarray, device_data, val, aug_keys,
                    placement: _Placement) -> Constants:
  """The arrays one chunk's compiled program reads."""
  consts = Constants(
      **device_data, eval_images=val[0], eval_labels=val[1], eval_weights=val[2],
      seed_index=jnp.asarray(run.seed_row[gidx]), aug_keys=aug_keys[gidx],
      aug_mags={n: jnp.asarray(v[gidx]) for n, v in run.aug_magnitudes.items()},
      hparams=tuple({n: jnp.asarray(v[gidx][:, blk.start:blk.stop])
                     for n, v in run.hparams.items()} for blk in run.blocks),
      dropout_keys=_dropout_keys(run.seeds[gidx]))
  return consts._replace(
      seed_index=placement.put_groups(consts.seed_index),
      dropout_keys=placement.put_groups(consts.dropout_keys),
      aug_keys=placement.put_groups(consts.aug_keys),
      aug_mags=placement.put_groups(consts.aug_mags),
      hparams=placement.put_members(consts.hparams))


def compile_segment(run: Run, placement: _Placement, state, consts: Constants,
                    checkpoint_dir: str | None, prepared: tuple | None = None):
  """Chooses the ``lax.map`` width (CPU probe, or the interrupted run's choice) and
  compiles the segment program once: ``prepared`` (``memory.ChunkPlan.compiled``,
  this chunk's program already compiled) is used when its width is the one chosen.

  Returns:
    ``(program, compiled_segment, vmap_width, probe_seconds)``.
  """
  platform = jax.devices()[0].platform
  width, probe = run.settings.vmap_width or None, {}
  members_in_chunk = state[0].updates.shape[0] * run.layout.inner_size
  if autotune.wanted(run.settings, platform, members_in_chunk, placement.num_devices):
    # Which lax.map width trains fastest depends on the model: measure it. A resumed
    # run reuses the interrupted run's choice, so it compiles the same program.
    width = autotune.load_choice(checkpoint_dir)
    if width is None:
      width, probe = autotune.choose_width(run, placement.partition, state, consts)
      autotune.save_choice(checkpoint_dir, width)
  program = Program(run, placement.partition, vmap_width=width)
  if prepared is not None and prepared[0].vmap_width == program.vmap_width:
    return (*prepared, width, probe)
  segment = program.segment.lower(state, jnp.int32(0), consts).compile(
      compiler_options=devices.compiler_options(platform, placement.num_devices))
  return program, segment, width, probe


def _chunk_members(run: Run, gidx: np.ndarray):
  """Which members one chunk trains: their rows of ``run.table`` and their (position
  in the chunk, inner slot) in the chunk's (G, I) metric arrays (padding left out)."""
  first = {}
  for pos, g in enumerate(gidx):
    first.setdefault(int(g), pos)
  slots = run.layout.member_slots
  rows = np.flatnonzero(np.isin(slots[:, 0], list(first)))
  pos = np.asarray([first[int(g)] for g in slots[rows, 0]], np.int64)
  return rows, pos, slots[rows, 1]


def _host_metrics(metrics, run: Run, pos: np.ndarray, inner: np.ndarray) -> dict:
  """One segment's metrics on the host, per member of the chunk (val means)."""
  host = mean_metrics(devices.fetch(metrics), len(run.dataset.validation))
  return {k: np.asarray(v)[pos, inner] for k, v in host.items()}


def train_chunk(run: Run, chunk_i: int, segment, state, consts: Constants,
                put_members, progress: Progress, checkpoint_dir: str | None,
                checkpoint_every_s: float | None, on_segment, num_chunks: int,
                gidx: np.ndarray | None = None, writers: Sequence[Any] = (),
                stop: checkpoint.StopRequest | None = None):
  """Runs one chunk's segments (resuming from its checkpoint); returns (state, metrics).

  After each segment, when there are ``writers`` or a progress display, the segment's
  metrics are fetched to the host and handed to them (``lrjax.metric_writers``). The
  checkpoint is saved every ``run.settings.checkpoint_every`` segments and after the
  last, and after ``checkpoint_every_s`` seconds when given. When ``stop`` is requested (a signal, see
  ``checkpoint.catch_signals``), the segment's checkpoint is saved and
  ``checkpoint.Interrupted`` raised.
  """
  n_seg = run.plan.num_segments
  seg_ex = run.plan.ticks_per_segment * run.plan.micro_batch
  if gidx is None:
    gidx = np.arange(state[0].updates.shape[0])
  rows, pos, inner = _chunk_members(run, gidx)
  members = run.table.iloc[rows].reset_index(drop=True)
  seg_metrics, first = [], 0
  ckpt = None if checkpoint_dir is None else checkpoint.chunk_path(checkpoint_dir, chunk_i)
  if ckpt is not None and os.path.exists(ckpt):  # resume this chunk
    state, seg_metrics, first = checkpoint.load(
        ckpt, state, dict.fromkeys(segment_metrics(run.settings), 0))
    state = put_members(state)
    progress.skip(len(rows), first)
    for s, m in enumerate(seg_metrics):
      host = _host_metrics(m, run, pos, inner)
      for w in writers:
        w.write(members, (s + 1) * seg_ex, host, replayed=True)
  every = run.settings.checkpoint_every
  last_save = time.perf_counter()
  for s in range(first, n_seg):
    state, metrics = segment(state, jnp.int32(s), consts)
    if jax.process_count() > 1:  # spread over processes: every process gathers them now
      metrics = devices.fetch(metrics)
    seg_metrics.append(metrics)
    host = None
    if writers or progress.enabled:
      host = _host_metrics(metrics, run, pos, inner)
      for w in writers:
        w.write(members, (s + 1) * seg_ex, host)
    stopping = stop is not None and stop.requested
    due = (s + 1) % every == 0 or (checkpoint_every_s is not None and
                                   time.perf_counter() - last_save >= checkpoint_every_s)
    stopping, due = devices.agree_any(stopping, due)  # one process's signal stops all
    if ckpt is not None and (s == n_seg - 1 or due or stopping):
      # Every process saves (orbax writes each one's shards; process 0 commits).
      checkpoint.save(ckpt, state, devices.fetch(seg_metrics), s + 1)
      last_save = time.perf_counter()
      for w in writers:
        w.flush()
    if host is not None:
      progress.step(chunk_i, s, len(rows), host)
    if on_segment is not None:
      on_segment(chunk_i * n_seg + s + 1, num_chunks * n_seg)
    if stopping:
      for w in writers:
        w.flush()
      signum = stop.signum if stop is not None and stop.requested else signal.SIGTERM
      raise checkpoint.Interrupted(signum, chunk_i * n_seg + s + 1, num_chunks * n_seg)
  progress.end_chunk()
  seg_metrics = [mean_metrics(m, len(run.dataset.validation))
                 for m in devices.fetch(seg_metrics)]
  return state, seg_metrics


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
  """
  try:
    with checkpoint.catch_signals() as stop:
      return _train(run, progress, on_segment, checkpoint_dir, checkpoint_every_s, writers,
                    stop)
  finally:
    for w in writers:
      w.flush()


def _train(run: Run, progress: bool, on_segment, checkpoint_dir: str | None,
           checkpoint_every_s: float | None, writers: Sequence[Any],
           stop: checkpoint.StopRequest | None = None) -> GridResult:
  lay, the_plan = run.layout, run.plan
  fit, t0 = None, time.perf_counter()
  if run.settings.max_members_per_chunk == 0:  # an explicit chunk size wins
    fit = memory.plan_chunks(run, run.settings.max_memory, checkpoint_dir=checkpoint_dir)
  plan_s = time.perf_counter() - t0
  group_chunks = chunks(lay.num_groups, lay.inner_size, run.settings.max_members_per_chunk,
                        0 if fit is None else fit.groups)
  placement = _placement(run, group_chunks)
  device_data, val, test = place_data(run, placement)
  init_keys, aug_keys = _root_keys(run)
  sample_x = jnp.zeros((1,) + run.dataset.image_shape, jnp.float32)
  bar = Progress(run, len(group_chunks), progress)
  for w in writers:
    w.start(run)

  history_parts, param_parts, test_parts, final_parts = [], [], [], []
  model_state_parts = []
  compile_s, train_s, width, probe = 0.0, 0.0, None, {}
  program = segment = None
  for chunk_i, gidx in enumerate(group_chunks):
    consts = chunk_constants(run, gidx, device_data, val, aug_keys, placement)
    init = (program or Program(run, placement.partition)).init
    state = placement.put_members(init(init_keys[gidx], sample_x, consts.hparams))
    if segment is None:
      bar.compiling()
      t0 = time.perf_counter()
      try:
        program, segment, width, probe = compile_segment(
            run, placement, state, consts, checkpoint_dir, fit and fit.compiled)
      except BaseException:
        bar.compiled(time.perf_counter() - t0)
        raise
      compile_s = time.perf_counter() - t0 + plan_s
      bar.compiled(compile_s)
    t0 = time.perf_counter()
    try:
      state, seg_metrics = train_chunk(run, chunk_i, segment, state, consts,
                                       placement.put_members, bar, checkpoint_dir,
                                       checkpoint_every_s, on_segment, len(group_chunks),
                                       gidx, writers, stop)
    except BaseException:
      bar.close()
      raise
    train_s += time.perf_counter() - t0
    block_params = tuple(s.params for s in state)
    block_model_state = tuple(s.model_state for s in state)
    test_sums = devices.fetch(program.evaluate(tuple(zip(block_params, block_model_state)),
                                               *test))
    cat = lambda *xs: np.concatenate(xs, axis=1)
    history_parts.append((gidx, seg_metrics))
    param_parts.append((gidx, jax.tree.map(cat, *devices.fetch(block_params))))
    model_state_parts.append((gidx, jax.tree.map(cat, *devices.fetch(block_model_state))))
    test_parts.append((gidx, {n: per_example(np.concatenate(v, axis=1), len(run.dataset.test))
                              for n, v in test_sums.items()}))
    final_parts.append((gidx, tuple(cat(*devices.fetch([getattr(s, f) for s in state]))
                                    for f in ("diverged", "diverged_at", "updates", "first_loss"))))
  bar.close()

  G = lay.num_groups
  params = jax.tree.map(lambda a: grid_lib.from_slots(a, lay), _assemble(G, param_parts))
  model_state = jax.tree.map(lambda a: grid_lib.from_slots(a, lay),
                             _assemble(G, model_state_parts))
  hist = _assemble(G, history_parts)
  members, history = result_tables(run, hist, _assemble(G, test_parts),
                                   _assemble(G, final_parts))
  info = {
      "micro_batch": the_plan.micro_batch, "ticks_per_segment": the_plan.ticks_per_segment,
      "num_segments": the_plan.num_segments,
      "examples_per_member": the_plan.examples_per_member,
      "epochs_effective": the_plan.examples_per_member / len(run.dataset.train),
      "num_classes": run.dataset.num_classes, "num_val": len(run.dataset.validation),
      "num_members": run.num_members, "num_groups": lay.num_groups,
      "inner_size": lay.inner_size, "num_chunks": len(group_chunks),
      "blocks": [(b.start, b.stop, b.k) for b in run.blocks],
      "batch_growth_examples": [t * the_plan.micro_batch for t in the_plan.growth_ticks],
      "compile_seconds": compile_s, "train_seconds": train_s,
      "groups_per_chunk": len(group_chunks[0]),  # memory_*: bytes (engine.memory)
      "memory_budget": fit and fit.budget, "memory_estimate": fit and fit.estimate,
      "memory_compiled": memory.compiled_bytes(
          segment, memory.counted_devices(placement.num_devices)),
      "devices": [str(d) for d in jax.devices()],
      "member_devices": placement.num_devices,
      "vmap_width": width,  # None: the backend default (program.default_vmap_width)
      "vmap_width_probe_seconds": probe,
      "split_axis": (None if placement.partition is None
                     else ("groups", "inner")[placement.partition.axis]),
  }
  for w in writers:
    w.finish(members)
  return GridResult(members, history, params, info, model_state, tick_losses(run, hist))
