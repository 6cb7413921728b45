"""One chunk of a grid, set up for the compiled program: placement, keys, constants, state.

A chunk is a set of input groups that one call of the segment program trains
(``chunks`` cuts a grid into equal ones). The trainer, the memory planner
(``memory.lower_chunk``), the CPU width probe and the tests build a chunk the same
way, from here:

1. ``Placement.for_run``: how members (and input groups) are split over devices.
2. ``place_data``: the dataset's splits on the device(s), once per run.
3. ``prepare_chunk``: a chunk's program, initial state and ``Constants``.

Every random key of a member comes from its seed, one named stream per use
(``stream_key``): members that share a seed share their initial weights,
augmentation and dropout masks (common random numbers).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrjax.data import example_order
from lrjax.engine import devices
from lrjax.engine.plan import padded_split
from lrjax.engine.program import Program
from lrjax.engine.run import Run
from lrjax.engine.state import Constants, MemberState

# The key streams of a seed: fold_in(key(seed), stream). Fixed numbers, since a
# member's initial weights and random draws follow from them.
INIT_STREAM = 0  # initial weights and model state
AUGMENT_STREAM = 2  # augmentation draws, folded with the tick
DROPOUT_STREAM = 3  # dropout masks, folded with the tick (then the ghost batch)


def stream_key(seed, stream: int) -> jax.Array:
  """A seed's key of one stream: ``fold_in(key(seed), stream)``.

  Args:
    seed: an integer seed (or a traced one).
    stream: ``INIT_STREAM``, ``AUGMENT_STREAM`` or ``DROPOUT_STREAM``.

  Example:
    >>> k = stream_key(0, DROPOUT_STREAM)
    >>> bool((jax.random.key_data(k) == jax.random.key_data(
    ...     jax.random.fold_in(jax.random.key(0), 3))).all())
    True
  """
  return jax.random.fold_in(jax.random.key(seed), stream)


def seed_keys(seeds, stream: int) -> jax.Array:
  """``stream_key`` of every seed in ``seeds``: a key array of the same length.

  Example:
    >>> seed_keys(np.array([0, 1, 0]), INIT_STREAM).shape
    (3,)
  """
  return jax.vmap(lambda s: stream_key(s, stream))(jnp.asarray(seeds))


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
class Placement:
  """Where a chunk's arrays go: the member partition and the ``device_put`` of each kind
  of leaf (per-member leaves, per-group leaves). The default is one device.

  Example:
    >>> Placement().num_devices
    1
  """

  partition: devices.Partition | None = None
  put_members: Callable[[Any], Any] = jax.device_put
  put_groups: Callable[[Any], Any] = jax.device_put

  @classmethod
  def for_run(cls, run: Run, groups: int) -> Placement:
    """The placement of chunks of ``groups`` input groups: over every device when the
    members split evenly (``devices.member_partition``), else one device."""
    partition = devices.member_partition(groups, [b.stop - b.start for b in run.blocks])
    if partition is None:
      return cls()
    # devices.place: jax.device_put in one process; over several, each its own shards.
    shard = lambda spec: (lambda tree: devices.place(
        tree, jax.sharding.NamedSharding(partition.mesh, spec)))
    return cls(partition, shard(partition.members), shard(partition.groups))

  @property
  def num_devices(self) -> int:
    return 1 if self.partition is None else self.partition.num_devices

  def abstract_members(self, tree):
    """Shapes of per-member arrays (``jax.eval_shape``) as this placement lays them out."""
    if self.partition is None:
      return tree
    members = jax.sharding.NamedSharding(self.partition.mesh, self.partition.members)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(
        a.shape, a.dtype, weak_type=a.weak_type, sharding=members), tree)


class DeviceData(NamedTuple):
  """A run's data on the device(s), placed once and read by every chunk.

  Attributes:
    train: ``train_images``, ``train_labels`` and ``order`` (each seed's example
      stream), the ``Constants`` fields of the same names.
    validation: ``(images, labels, weights)`` of the validation split, padded to a
      multiple of ``settings.eval_batch`` (weights 0 on padding).
    test: the same for the test split.
  """

  train: dict
  validation: tuple
  test: tuple


def place_data(run: Run, placement: Placement) -> DeviceData:
  """The training stream, training split and evaluation splits as device arrays, once.

  Example:
    >>> from lrjax import data, grid, models
    >>> from lrjax.engine import build_run
    >>> run = build_run(models.get_model("mlp", 10), data.load("digits"),
    ...                 grid.make_grid({"lr": (0.1,), "batch_size": (32,)}))
    >>> place_data(run, Placement()).validation[0].shape[1:]
    (8, 8, 1)
  """
  dataset, the_plan = run.dataset, run.plan
  order = np.stack([example_order(s, len(dataset.train), the_plan.examples_per_member)
                    for s in run.distinct_seeds])
  train = dict(
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
    train, val = replicate((train, val))
    if jax.process_count() > 1:  # evaluated against parameters spread over processes
      test = replicate(test)
  return DeviceData(train, tuple(val), tuple(test))


def chunk_constants(run: Run, group_indices: np.ndarray, data: DeviceData,
                    placement: Placement) -> Constants:
  """The arrays one chunk's compiled program reads: data, its groups' seeds, keys and
  augmentation magnitudes, its members' hyperparameters (per block)."""
  seeds = run.seeds[group_indices]
  val_images, val_labels, val_weights = data.validation
  return Constants(
      **data.train, eval_images=val_images, eval_labels=val_labels, eval_weights=val_weights,
      seed_index=placement.put_groups(jnp.asarray(run.seed_row[group_indices])),
      aug_keys=placement.put_groups(seed_keys(seeds, AUGMENT_STREAM)),
      aug_mags=placement.put_groups({n: jnp.asarray(v[group_indices])
                                     for n, v in run.aug_magnitudes.items()}),
      hparams=placement.put_members(tuple(
          {n: jnp.asarray(v[group_indices][:, blk.start:blk.stop])
           for n, v in run.hparams.items()} for blk in run.blocks)),
      dropout_keys=placement.put_groups(seed_keys(seeds, DROPOUT_STREAM)))


@dataclasses.dataclass(frozen=True)
class Chunk:
  """One chunk, ready for its segment program.

  Attributes:
    group_indices: the chunk's input groups (rows of ``run.layout.groups``).
    program: the ``Program`` (its ``init`` built ``state``).
    state: the members' initial state, one ``MemberState`` per block; shapes only
      (``jax.ShapeDtypeStruct``) when prepared ``abstract``.
    consts: the chunk's ``Constants``.
  """

  group_indices: np.ndarray
  program: Program
  state: tuple[MemberState, ...]
  consts: Constants


def prepare_chunk(run: Run, group_indices: np.ndarray, placement: Placement,
                  data: DeviceData, program: Program | None = None,
                  abstract: bool = False) -> Chunk:
  """A chunk's constants and its members' initial state, placed on the device(s).

  Args:
    run: the resolved run.
    group_indices: the chunk's input groups (one entry of ``chunks``).
    placement: ``Placement.for_run``.
    data: ``place_data``.
    program: the program to initialise with; default a new ``Program`` at the
      default width (initial state does not depend on the width).
    abstract: only the state's shapes (``jax.eval_shape``: nothing of that size is
      allocated), laid out as the placement would, for lowering.

  Example:
    >>> from lrjax import data, grid, models
    >>> from lrjax.engine import build_run
    >>> run = build_run(models.get_model("mlp", 10), data.load("digits"),
    ...                 grid.make_grid({"lr": (0.1, 0.2), "batch_size": (32,)}))
    >>> chunk = prepare_chunk(run, np.arange(1), Placement(), place_data(run, Placement()))
    >>> chunk.state[0].updates.shape  # (groups, members of the block)
    (1, 2)
  """
  consts = chunk_constants(run, group_indices, data, placement)
  program = program or Program(run, placement.partition)
  init_keys = seed_keys(run.seeds[group_indices], INIT_STREAM)
  sample_x = jnp.zeros((1,) + run.dataset.image_shape, jnp.float32)
  if abstract:
    state = placement.abstract_members(
        jax.eval_shape(program.init, init_keys, sample_x, consts.hparams))
  else:
    state = placement.put_members(program.init(init_keys, sample_x, consts.hparams))
  return Chunk(np.asarray(group_indices), program, state, consts)
