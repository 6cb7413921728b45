"""``train_grid``: run a member table through the engine, chunk by chunk, into tables."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from lrjax import autotune
from lrjax import checkpoint
from lrjax import parallel
from lrjax import grid as grid_lib
from lrjax.data import Dataset, example_order
from lrjax.engine import (SEGMENT_METRICS, Constants, Program, mean_metrics,
                          per_example)
from lrjax.plan import (GridResult, TrainSettings, _padded_split, _split_hparams, blocks_for,
                        plan)
from lrjax.errors import ConfigError
from lrjax.models import ModelAdapter


def _chunks(num_groups: int, inner: int, max_members: int) -> list[np.ndarray]:
  """Group indices per chunk; the last chunk is padded by repeating its groups."""
  per_chunk = num_groups if max_members <= 0 else max(1, max_members // inner)
  per_chunk = min(per_chunk, num_groups)
  chunks = []
  for start in range(0, num_groups, per_chunk):
    idx = np.arange(start, min(start + per_chunk, num_groups))
    if len(idx) < per_chunk:
      idx = np.concatenate([idx, np.resize(idx, per_chunk - len(idx))])
    chunks.append(idx)
  return chunks


def train_grid(model: ModelAdapter, dataset: Dataset, table: pd.DataFrame,
               settings: TrainSettings = TrainSettings(), *, progress: bool = True,
               on_segment: Callable[[int, int], None] | None = None,
               checkpoint_dir: str | None = None,
               checkpoint_every_s: float = 60.0) -> GridResult:
  """Trains every member of ``table`` as one vmapped, scanned JAX program.

  Args:
    model: from ``lrjax.models`` (``get_model``, ``from_linen``, ``from_nnx``).
    dataset: from ``lrjax.data.load``.
    table: the member table from ``lrjax.grid.make_grid``.
    settings: optimizer, schedule, budget, augmentation, ...
    progress: show a progress bar (members, examples/s, ETA).
    on_segment: optional callback ``(segments_done, segments_total)``.
    checkpoint_dir: if given, the state is saved there after a segment at most every
      ``checkpoint_every_s`` seconds (and at each chunk's end), and a run with the
      same arguments continues from what it finds there (``lrjax run --resume``).
    checkpoint_every_s: minimum seconds between checkpoints.

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
  the_plan = plan(table, len(dataset.train), settings)
  opt_cols, sched_cols, spec = _split_hparams(table, settings)
  lay = grid_lib.layout(table)
  b = the_plan.micro_batch

  # Per-member inner hyperparameters in slot layout (G, I).
  k = table["batch_size"].to_numpy() // b
  member_hp = {
      "lr": table["lr"].to_numpy(np.float32),
      "k": k.astype(np.int32),
      "total_updates": (the_plan.total_ticks // k).astype(np.int32),
  }
  for col in opt_cols + sched_cols:
    member_hp[col] = table[col].to_numpy(np.float32)
  if len(spec.families) > 1:
    member_hp["schedule_index"] = np.array(
        [spec.families.index(f) for f in table["schedule"]], np.int32)
  slot_hp = {n: grid_lib.to_slots(v, lay) for n, v in member_hp.items()}
  blocks = blocks_for(slot_hp["k"], lay.pad_mask)

  # Per-group input settings.
  groups = lay.groups
  seeds = groups["seed"].to_numpy().astype(np.int64) if "seed" in groups else np.zeros(
      lay.num_groups, np.int64)
  distinct_seeds = sorted(set(seeds.tolist()))
  seed_row = np.array([distinct_seeds.index(s) for s in seeds], np.int32)
  policy = settings.augment_policy
  aug_mags = {}
  if policy is not None:
    from lrjax import augment  # noqa: PLC0415

    overrides = {c[len("aug_"):]: groups[c].to_numpy(np.float32)
                 for c in groups.columns if c.startswith("aug_")}
    strengths = groups["aug"].to_numpy(np.float32)
    aug_mags = jax.tree.map(np.asarray, jax.vmap(
        lambda s, o: augment.magnitudes(policy, s, **o))(strengths, overrides))
    # Ops at magnitude 0 in every group would still run under vmap: drop them.
    aug_mags = augment.drop_inactive(aug_mags)
  elif (table["aug"] != 0).any() or any(c.startswith("aug_") for c in table.columns):
    raise ConfigError("grid.aug: nonzero augmentation strengths need an augmentation policy "
                      "(settings.augment_policy, e.g. lrjax.augment.policy_for(dataset)).")

  # Device-resident data, once.
  order = np.stack([example_order(s, len(dataset.train), the_plan.examples_per_member)
                    for s in distinct_seeds])
  device_data = dict(
      train_images=jnp.asarray(dataset.train.images),
      train_labels=jnp.asarray(dataset.train.labels, jnp.int32),
      order=jnp.asarray(order))
  val = [jnp.asarray(a) for a in _padded_split(dataset.validation.images,
                                                dataset.validation.labels, settings.eval_batch)]
  test = [jnp.asarray(a) for a in _padded_split(dataset.test.images, dataset.test.labels,
                                                 settings.eval_batch)]
  chunks = _chunks(lay.num_groups, lay.inner_size, settings.max_members_per_chunk)
  partition = parallel.member_partition(len(chunks[0]), [b.stop - b.start for b in blocks])
  make_program = lambda st: Program(model, dataset.num_classes, st, the_plan, opt_cols, spec,
                                    blocks, partition)
  program = make_program(settings)
  num_devices = 1 if partition is None else partition.num_devices
  platform = jax.devices()[0].platform
  vmap_width, width_probe = settings.vmap_width or None, {}
  sample_x = jnp.zeros((1,) + dataset.image_shape, jnp.float32)
  root_keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  init_keys = jax.vmap(lambda key: jax.random.fold_in(key, 0))(root_keys)
  aug_keys = jax.vmap(lambda key: jax.random.fold_in(key, 2))(root_keys)

  put_members = put_groups = jax.device_put  # one device: the default
  if partition is not None:  # members (and, when split, groups) over the device mesh
    shard = lambda spec: (lambda tree: jax.device_put(
        tree, jax.sharding.NamedSharding(partition.mesh, spec)))
    put_members, put_groups = shard(partition.members), shard(partition.groups)
    # Data and evaluation splits replicated once, not copied at every segment call.
    device_data, val = shard(jax.sharding.PartitionSpec())((device_data, val))
  n_seg = the_plan.num_segments
  bar = None
  if progress:
    from tqdm.auto import tqdm  # noqa: PLC0415

    bar = tqdm(total=len(chunks) * n_seg, unit="eval", dynamic_ncols=True,
               desc=f"{len(table)} members")
  history_parts, final_params, test_metrics, final_state_parts = [], [], [], []
  compile_s, train_s = 0.0, 0.0
  for chunk_i, gidx in enumerate(chunks):
    consts = Constants(
        **device_data, eval_images=val[0], eval_labels=val[1], eval_weights=val[2],
        seed_index=jnp.asarray(seed_row[gidx]), aug_keys=aug_keys[gidx],
        aug_mags={n: jnp.asarray(v[gidx]) for n, v in aug_mags.items()},
        hparams=tuple({n: jnp.asarray(v[gidx][:, blk.start:blk.stop])
                       for n, v in slot_hp.items()} for blk in blocks))
    consts = consts._replace(
        seed_index=put_groups(consts.seed_index), aug_keys=put_groups(consts.aug_keys),
        aug_mags=put_groups(consts.aug_mags), hparams=put_members(consts.hparams))
    state = put_members(program.init(init_keys[gidx], sample_x, consts.hparams))
    if chunk_i == 0:
      t0 = time.perf_counter()
      if autotune.wanted(settings, platform, len(gidx) * lay.inner_size, num_devices):
        # Which lax.map width trains fastest depends on the model: measure it. A resumed
        # run reuses the interrupted run's choice, so it compiles the same program.
        vmap_width = autotune.load_choice(checkpoint_dir)
        if vmap_width is None:
          vmap_width, width_probe = autotune.choose_width(
              make_program, settings, state, consts, blocks, the_plan, partition)
          autotune.save_choice(checkpoint_dir, vmap_width)
        if vmap_width is not None:
          program = make_program(dataclasses.replace(settings, vmap_width=vmap_width))
      segment = program.segment.lower(state, jnp.int32(0), consts).compile(
          compiler_options=parallel.compiler_options(platform, num_devices))
      compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    seg_metrics, first = [], 0
    ckpt = None if checkpoint_dir is None else checkpoint.chunk_path(checkpoint_dir, chunk_i)
    if ckpt is not None and os.path.exists(ckpt):  # resume this chunk
      state, seg_metrics, first = checkpoint.load(ckpt, state, dict.fromkeys(SEGMENT_METRICS, 0))
      state = put_members(state)
      if bar is not None:
        bar.update(first)
    last_save = time.perf_counter()
    for s in range(first, n_seg):
      state, metrics = segment(state, jnp.int32(s), consts)
      seg_metrics.append(metrics)
      if ckpt is not None and (s == n_seg - 1 or
                               time.perf_counter() - last_save >= checkpoint_every_s):
        checkpoint.save(ckpt, state, jax.device_get(seg_metrics), s + 1)
        last_save = time.perf_counter()
      if bar is not None:
        jax.block_until_ready(metrics)
        rate = (len(table) * (s + 1 - first) * the_plan.ticks_per_segment * b /
                max(time.perf_counter() - t0, 1e-9))
        bar.set_postfix_str(f"chunk {chunk_i + 1}/{len(chunks)}, {rate:,.0f} member-examples/s")
        bar.update(1)
      if on_segment is not None:
        on_segment(chunk_i * n_seg + s + 1, len(chunks) * n_seg)
    seg_metrics = [mean_metrics(m, len(dataset.validation)) for m in jax.device_get(seg_metrics)]
    train_s += time.perf_counter() - t0
    block_params = tuple(s.params for s in state)
    test_loss, test_acc = (per_example(np.concatenate(sums, axis=1), len(dataset.test))
                           for sums in jax.device_get(program.evaluate(block_params, *test)))
    history_parts.append((gidx, seg_metrics))
    cat = lambda *xs: np.concatenate(xs, axis=1)
    final_params.append((gidx, jax.tree.map(cat, *jax.device_get(block_params))))
    test_metrics.append((gidx, test_loss, test_acc))
    final_state_parts.append((gidx, tuple(cat(*jax.device_get([getattr(s, f) for s in state]))
                                          for f in ("diverged", "diverged_at", "updates"))))
  if bar is not None:
    bar.close()

  # Reassemble chunks into full (G, I) arrays; padded groups are overwritten by real ones.
  def assemble(parts):
    G = lay.num_groups
    out = None
    for gidx, tree in parts:
      if out is None:
        out = jax.tree.map(lambda a: np.zeros((G,) + a.shape[1:], a.dtype), tree)
      out = jax.tree.map(lambda o, a: _put(o, gidx, a), out, tree)
    return out

  params = jax.tree.map(lambda a: grid_lib.from_slots(a, lay), assemble(final_params))
  hist = assemble([(g, m) for g, m in history_parts])
  tests = assemble([(g, (l, a)) for g, l, a in test_metrics])
  diverged, diverged_at, updates = assemble(final_state_parts)

  members, history = _tables(table, lay, the_plan, hist, tests,
                             (diverged, diverged_at, updates))
  info = {
      "micro_batch": b, "ticks_per_segment": the_plan.ticks_per_segment,
      "num_segments": n_seg, "examples_per_member": the_plan.examples_per_member,
      "epochs_effective": the_plan.examples_per_member / len(dataset.train),
      "num_members": len(table), "num_groups": lay.num_groups, "inner_size": lay.inner_size,
      "num_chunks": len(chunks), "blocks": [(b.start, b.stop, b.k) for b in blocks],
      "compile_seconds": compile_s, "train_seconds": train_s,
      "devices": [str(d) for d in jax.devices()],
      "member_devices": num_devices,
      "vmap_width": vmap_width,  # None: the backend default (engine.default_vmap_width)
      "vmap_width_probe_seconds": width_probe,
      "split_axis": None if partition is None else ("groups", "inner")[partition.axis],
  }
  return GridResult(members, history, params, info)


def _put(out: np.ndarray, gidx: np.ndarray, values: np.ndarray) -> np.ndarray:
  out[gidx] = values
  return out


def _tables(table, lay, the_plan, hist, tests, final_state):
  """Builds the members and history DataFrames from (G, I) slot arrays."""
  per_member = lambda a: grid_lib.from_slots(np.asarray(a), lay)
  n_seg = the_plan.num_segments
  seg_ex = the_plan.ticks_per_segment * the_plan.micro_batch
  rows = []
  metric_names = tuple(n for n in SEGMENT_METRICS if n != "diverged")  # final state has it
  stacked = {n: np.stack([per_member(hist[s][n]) for s in range(n_seg)], 1) for n in metric_names}
  for s in range(n_seg):
    frame = pd.DataFrame({"member": table["member"].to_numpy(),
                          "examples_seen": np.int64((s + 1) * seg_ex)})
    for n in metric_names:
      frame[n] = stacked[n][:, s]
    rows.append(frame)
  history = pd.concat(rows, ignore_index=True).sort_values(
      ["member", "examples_seen"], kind="stable").reset_index(drop=True)

  diverged, diverged_at, updates = (per_member(a) for a in final_state)
  members = table.copy()
  members["diverged"] = diverged.astype(bool)
  members["diverged_at"] = np.where(diverged, diverged_at.astype(float), np.nan)
  members["updates"] = updates.astype(np.int64)
  members["final_val_loss"] = stacked["val_loss"][:, -1]
  members["final_val_acc"] = stacked["val_acc"][:, -1]
  with np.errstate(all="ignore"):
    val_loss = np.where(np.isnan(stacked["val_loss"]), np.inf, stacked["val_loss"])
    val_acc = np.where(np.isnan(stacked["val_acc"]), -np.inf, stacked["val_acc"])
    members["best_val_loss"] = np.where(np.isfinite(val_loss.min(1)), val_loss.min(1), np.nan)
    members["best_val_acc"] = np.where(np.isfinite(val_acc.max(1)), val_acc.max(1), np.nan)
  test_loss, test_acc = (per_member(a) for a in tests)
  members["test_loss"] = np.where(diverged, np.nan, test_loss)
  members["test_acc"] = np.where(diverged, np.nan, test_acc)
  return members, history
