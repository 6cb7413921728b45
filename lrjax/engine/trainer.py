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
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lrjax import grid as grid_lib
from lrjax.data import Dataset, example_order
from lrjax.engine import autotune, checkpoint, devices
from lrjax.engine.plan import padded_split
from lrjax.engine.program import Program
from lrjax.engine.state import SEGMENT_METRICS, Constants, mean_metrics, per_example
from lrjax.engine.run import Run, build_run
from lrjax.engine.settings import GridResult, TrainSettings
from lrjax.engine.tables import result_tables
from lrjax.models import ModelAdapter
from lrjax.outcomes import chance_band


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


def chunks(num_groups: int, inner: int, max_members: int) -> list[np.ndarray]:
  """Group indices per chunk; the last chunk is padded by repeating its groups.

  Example:
    >>> [c.tolist() for c in chunks(3, 2, 4)]
    [[0, 1], [2, 2]]
  """
  per_chunk = num_groups if max_members <= 0 else max(1, max_members // inner)
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
  shard = lambda spec: (lambda tree: jax.device_put(
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
    replicate = lambda tree: jax.device_put(tree, jax.sharding.NamedSharding(
        placement.partition.mesh, jax.sharding.PartitionSpec()))
    device_data, val = replicate((device_data, val))
  return device_data, val, test


def _root_keys(run: Run):
  root = jax.vmap(jax.random.key)(jnp.asarray(run.seeds))
  init_keys = jax.vmap(lambda key: jax.random.fold_in(key, 0))(root)
  aug_keys = jax.vmap(lambda key: jax.random.fold_in(key, 2))(root)
  return init_keys, aug_keys


def chunk_constants(run: Run, gidx: np.ndarray, device_data, val, aug_keys,
                    placement: _Placement) -> Constants:
  """The arrays one chunk's compiled program reads."""
  consts = Constants(
      **device_data, eval_images=val[0], eval_labels=val[1], eval_weights=val[2],
      seed_index=jnp.asarray(run.seed_row[gidx]), aug_keys=aug_keys[gidx],
      aug_mags={n: jnp.asarray(v[gidx]) for n, v in run.aug_magnitudes.items()},
      hparams=tuple({n: jnp.asarray(v[gidx][:, blk.start:blk.stop])
                     for n, v in run.hparams.items()} for blk in run.blocks))
  return consts._replace(
      seed_index=placement.put_groups(consts.seed_index),
      aug_keys=placement.put_groups(consts.aug_keys),
      aug_mags=placement.put_groups(consts.aug_mags),
      hparams=placement.put_members(consts.hparams))


def compile_segment(run: Run, placement: _Placement, state, consts: Constants,
                    checkpoint_dir: str | None):
  """Chooses the ``lax.map`` width (CPU probe, or the interrupted run's choice) and
  compiles the segment program once.

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


class _Progress:
  """What the user sees while training: nothing (``enabled=False``), or a compile line
  then a tqdm bar over member-examples (a TTY), or one plain line per evaluation (logs).

  Rate and ETA count training only: the bar starts once the program is compiled.
  """

  def __init__(self, run: Run, num_chunks: int, enabled: bool, stream=None):
    self.run, self.num_chunks = run, num_chunks
    self.stream = sys.stderr if stream is None else stream
    isatty = getattr(self.stream, "isatty", None)
    self.mode = ("off" if not enabled else
                 "bar" if isatty is not None and isatty() else "lines")
    the_plan = run.plan
    self.seg_examples = the_plan.ticks_per_segment * the_plan.micro_batch
    self.total_segments = num_chunks * the_plan.num_segments
    self.bar = None
    self.t0 = None  # start of training (after compiling)
    self.trained = 0  # member-examples trained in this process (not resumed ones)
    self.done = 0  # member-examples done, resumed ones included
    self.diverged_before = 0  # diverged members of finished chunks
    self.diverged_now = 0  # diverged members of the current chunk
    self.best_acc, self.best_loss = -np.inf, np.inf

  @property
  def enabled(self) -> bool:
    return self.mode != "off"

  def _print(self, text: str, end: str = "\n") -> None:
    if self.bar is not None:
      self.bar.write(text, file=self.stream, end=end)
    else:
      print(text, file=self.stream, end=end, flush=True)

  def compiling(self) -> None:
    if self.enabled:
      self._print(f"compiling {self.run.num_members} members ...", end="")

  def compiled(self, seconds: float) -> None:
    """Ends the compile line; training (its rate and ETA) starts now."""
    if self.enabled:
      self._print(f" {seconds:.1f} s")
      self._start()

  def _start(self) -> None:
    if self.t0 is not None:
      return
    self.t0 = time.perf_counter()
    if self.mode == "bar":
      self.bar = tqdm(total=self.run.num_members * self.run.plan.num_segments
                      * self.seg_examples, unit="ex", unit_scale=True, dynamic_ncols=True,
                      desc=f"{self.run.num_members} members", file=self.stream)

  def skip(self, members: int, segments: int) -> None:
    """Segments a resumed chunk had done: counted as done, not in the rate."""
    self._start()
    n = members * segments * self.seg_examples
    self.done += n
    if self.bar is not None and n:
      self.bar.n += n
      self.bar.initial += n
      self.bar.last_print_n = self.bar.n
      self.bar.refresh()

  def end_chunk(self) -> None:
    self.diverged_before += self.diverged_now
    self.diverged_now = 0

  def step(self, chunk_i: int, segment_i: int, members: int, host_metrics) -> None:
    """After evaluation ``segment_i`` (from 0) of chunk ``chunk_i``; ``host_metrics``
    the chunk's per-member metrics (val means)."""
    if not self.enabled:
      return
    self._start()
    n = members * self.seg_examples
    self.trained += n
    self.done += n
    diverged = np.asarray(host_metrics["diverged"], bool)
    self.diverged_now = int(diverged.sum())
    alive = ~diverged
    with np.errstate(all="ignore"):
      acc = np.asarray(host_metrics["val_acc"], np.float64)[alive]
      loss = np.asarray(host_metrics["val_loss"], np.float64)[alive]
      if np.isfinite(acc).any():
        self.best_acc = max(self.best_acc, float(np.nanmax(acc[np.isfinite(acc)])))
      if np.isfinite(loss).any():
        self.best_loss = min(self.best_loss, float(np.min(loss[np.isfinite(loss)])))
    n_div = self.diverged_before + self.diverged_now
    # At chance now (the accuracy half of the "failed" rule; the loss half needs the
    # run's end): a hint of members that are not learning, per chunk.
    chance, band = chance_band(self.run.dataset.num_classes,
                               len(self.run.dataset.validation))
    with np.errstate(invalid="ignore"):
      at_chance = int((np.abs(acc - chance) <= band).sum())
    alive_text = (f"alive {self.run.num_members - n_div}/{self.run.num_members}  "
                  f"at chance {at_chance}")
    best = (f"best val_acc {self.best_acc:.3f}  val_loss {self.best_loss:.3f}"
            if np.isfinite(self.best_acc) else "best val_acc -  val_loss -")
    if self.bar is not None:
      self.bar.set_postfix_str(
          (f"chunk {chunk_i + 1}/{self.num_chunks}, " if self.num_chunks > 1 else "") +
          f"{alive_text.replace('  ', ', ')}, diverged {n_div}, {best.replace('  ', ', ')}",
          refresh=False)
      self.bar.update(n)
      return
    rate = self.trained / max(time.perf_counter() - self.t0, 1e-9)
    eval_i = chunk_i * self.run.plan.num_segments + segment_i + 1
    chunk = f"  chunk {chunk_i + 1}/{self.num_chunks}" if self.num_chunks > 1 else ""
    self._print(f"eval {eval_i}/{self.total_segments}{chunk}  examples "
                f"{(segment_i + 1) * self.seg_examples:,}  {alive_text}  {best}  "
                f"{rate:,.0f} ex/s")

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
      self.bar = None


def _host_metrics(metrics, run: Run, pos: np.ndarray, inner: np.ndarray) -> dict:
  """One segment's metrics on the host, per member of the chunk (val means)."""
  host = mean_metrics(jax.device_get(metrics), len(run.dataset.validation))
  return {k: np.asarray(v)[pos, inner] for k, v in host.items()}


def train_chunk(run: Run, chunk_i: int, segment, state, consts: Constants,
                put_members, progress: _Progress, checkpoint_dir: str | None,
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
    state, seg_metrics, first = checkpoint.load(ckpt, state, dict.fromkeys(SEGMENT_METRICS, 0))
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
    seg_metrics.append(metrics)
    host = None
    if writers or progress.enabled:
      host = _host_metrics(metrics, run, pos, inner)
      for w in writers:
        w.write(members, (s + 1) * seg_ex, host)
    stopping = stop is not None and stop.requested
    due = (s + 1) % every == 0 or (checkpoint_every_s is not None and
                                   time.perf_counter() - last_save >= checkpoint_every_s)
    if ckpt is not None and (s == n_seg - 1 or due or stopping):
      checkpoint.save(ckpt, state, jax.device_get(seg_metrics), s + 1)
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
      raise checkpoint.Interrupted(stop.signum, chunk_i * n_seg + s + 1, num_chunks * n_seg)
  progress.end_chunk()
  seg_metrics = [mean_metrics(m, len(run.dataset.validation))
                 for m in jax.device_get(seg_metrics)]
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
  group_chunks = chunks(lay.num_groups, lay.inner_size, run.settings.max_members_per_chunk)
  placement = _placement(run, group_chunks)
  device_data, val, test = place_data(run, placement)
  init_keys, aug_keys = _root_keys(run)
  sample_x = jnp.zeros((1,) + run.dataset.image_shape, jnp.float32)
  bar = _Progress(run, len(group_chunks), progress)
  for w in writers:
    w.start(run)

  history_parts, param_parts, test_parts, final_parts = [], [], [], []
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
        program, segment, width, probe = compile_segment(run, placement, state, consts,
                                                         checkpoint_dir)
      except BaseException:
        bar.compiled(time.perf_counter() - t0)
        raise
      compile_s = time.perf_counter() - t0
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
    test_loss, test_acc = (per_example(np.concatenate(sums, axis=1), len(run.dataset.test))
                           for sums in jax.device_get(program.evaluate(block_params, *test)))
    cat = lambda *xs: np.concatenate(xs, axis=1)
    history_parts.append((gidx, seg_metrics))
    param_parts.append((gidx, jax.tree.map(cat, *jax.device_get(block_params))))
    test_parts.append((gidx, (test_loss, test_acc)))
    final_parts.append((gidx, tuple(cat(*jax.device_get([getattr(s, f) for s in state]))
                                    for f in ("diverged", "diverged_at", "updates", "first_loss"))))
  bar.close()

  G = lay.num_groups
  params = jax.tree.map(lambda a: grid_lib.from_slots(a, lay), _assemble(G, param_parts))
  members, history = result_tables(run, _assemble(G, history_parts),
                                   _assemble(G, test_parts), _assemble(G, final_parts))
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
      "devices": [str(d) for d in jax.devices()],
      "member_devices": placement.num_devices,
      "vmap_width": width,  # None: the backend default (program.default_vmap_width)
      "vmap_width_probe_seconds": probe,
      "split_axis": (None if placement.partition is None
                     else ("groups", "inner")[placement.partition.axis]),
  }
  for w in writers:
    w.finish(members)
  return GridResult(members, history, params, info)
