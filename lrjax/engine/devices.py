"""Spreading a grid's members over devices; on CPU, one JAX device per core.

Why one CPU device per core: XLA:CPU splits each small op of a training step over
its thread pool, and at these sizes (a 32x256 @ 256x256 matmul, an optimizer update
over 300 KB) that splitting costs more than it gains -- a lone member's compiled
scan keeps 2 cores only ~1.35x busy. Giving each core its own device and its own
share of the members keeps both busy with independent work: measured on the 2-core
development VM, 64 MLP members at batch 32 trained 1.7-2x faster over 2 CPU devices
than on 1 (benchmarks/NOTES.md). The same sharding spreads members over GPUs/TPUs,
and over the devices of several processes (``join_processes``; ``place``, ``fetch``
and ``agree_any`` are what a multi-process run needs in place of ``device_put``,
``device_get`` and a host-side ``if``; docs/DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import os

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax._src import clusters  # JAX's own cluster detection (cluster_processes)
from jax._src import xla_bridge  # the only way to ask "too late?" (use_cpu_cores)
from jax.sharding import Mesh, PartitionSpec

from lrjax.errors import ConfigError

AXIS = "members"
ENV_VAR = "LRJAX_CPU_DEVICES"


# XLA:CPU options for a segment program that runs on one of several CPU devices:
# each device is one core's worth of work, so its ops run on its own thread rather
# than being split over the process's shared intra-op pool (where two devices'
# ops contend). Per compilation, so other programs in the process (benchmark
# baselines included) keep XLA's defaults. Measured in one process, 8 interleaved
# rounds, 64 MLP members at batch 32 on 2 devices (benchmarks/NOTES.md): median
# 1.18 s vs 1.31 s with XLA's defaults; at batch 128 equal (0.785 vs 0.792 s).
ONE_THREAD_PER_DEVICE = {"xla_cpu_multi_thread_eigen": False,
                         "xla_cpu_parallel_codegen_split_count": 1}


def compiler_options(platform: str, num_devices: int) -> dict[str, bool | int]:
  """XLA options for compiling the engine's segment program.

  Args:
    platform: ``jax.devices()[0].platform`` of the devices the program runs on.
    num_devices: how many devices the members are split over.

  Returns:
    Options for ``jax.stages.Lowered.compile(compiler_options=...)``: on CPU with
    members over several devices, ``ONE_THREAD_PER_DEVICE``; otherwise none.

  Example:
    >>> compiler_options("cpu", 2)["xla_cpu_multi_thread_eigen"]
    False
    >>> compiler_options("gpu", 8)
    {}
  """
  if platform == "cpu" and num_devices > 1:
    return dict(ONE_THREAD_PER_DEVICE)
  return {}


def use_cpu_cores(count: int | None = None) -> int:
  """Asks JAX for one CPU device per core; call it before any JAX computation.

  A no-op once JAX's backends exist (then it returns what JAX has), and the
  device count is left alone when ``XLA_FLAGS`` already sets
  ``--xla_force_host_platform_device_count``. The ``lrjax`` command calls it at
  start-up; the environment variable ``LRJAX_CPU_DEVICES`` overrides ``count``
  (``LRJAX_CPU_DEVICES=1`` turns the split off).

  Args:
    count: devices to create; default ``os.cpu_count()``.

  Returns:
    The number of CPU devices JAX will have (or has).

  Raises:
    ConfigError: ``LRJAX_CPU_DEVICES`` is not a positive integer.

  Example:
    >>> import lrjax
    >>> n = lrjax.use_cpu_cores()   # first thing in a script, before any jnp op
    >>> n >= 1
    True
  """
  env = os.environ.get(ENV_VAR, "").strip()
  if env:
    if not env.isdigit() or int(env) < 1:
      raise ConfigError(f"{ENV_VAR}: a positive integer (CPU devices), e.g. "
                       f"{ENV_VAR}=2; got {env!r}.")
    count = int(env)
  count = count or os.cpu_count() or 1
  if xla_bridge.backends_are_initialized():  # too late to change; keep what JAX has
    return len(jax.devices("cpu"))
  if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    return len(jax.devices("cpu"))  # the user chose; leave it
  jax.config.update("jax_num_cpu_devices", count)
  return count


@dataclasses.dataclass(frozen=True)
class Partition:
  """How a chunk's members are split over devices.

  Attributes:
    mesh: a 1-D mesh named ``"members"``.
    axis: 0 to split input groups (each device builds only its groups' inputs),
      1 to split every block's inner (optimizer-hyperparameter) members.
  """

  mesh: Mesh
  axis: int

  @property
  def members(self) -> PartitionSpec:
    """Spec of a leaf with leading (group, inner) axes."""
    return PartitionSpec(AXIS) if self.axis == 0 else PartitionSpec(None, AXIS)

  @property
  def groups(self) -> PartitionSpec:
    """Spec of a per-group leaf (leading group axis only)."""
    return PartitionSpec(AXIS) if self.axis == 0 else PartitionSpec()

  @property
  def num_devices(self) -> int:
    return self.mesh.devices.size


def member_partition(num_groups: int, block_sizes: list[int],
                     devices: list | None = None) -> Partition | None:
  """Chooses how to split a chunk over ``devices`` (default: all of the default backend).

  Groups are split when their count divides evenly (no input is built twice);
  otherwise the inner members when every block's size divides evenly. With
  neither, the largest device count that divides is used; None means one device.
  Devices of several processes are taken alike from each (every process trains a
  share); with None, each process trains every member on its own device.

  Example:
    >>> p = member_partition(3, [10, 10], jax.devices()[:1])
    >>> p is None
    True
  """
  devices = list(jax.devices() if devices is None else devices)
  for d in range(len(devices), 1, -1):
    chosen = _alike_per_process(devices, d)
    if chosen is None:
      continue
    mesh = Mesh(np.array(chosen), (AXIS,))
    if num_groups % d == 0:
      return Partition(mesh, 0)
    if all(size % d == 0 for size in block_sizes):
      return Partition(mesh, 1)
  return None


def _alike_per_process(devices: list, count: int) -> list | None:
  """``count`` of ``devices``, as many from each process (in order), or None."""
  by_process: dict[int, list] = {}
  for d in devices:
    by_process.setdefault(d.process_index, []).append(d)
  if len(by_process) == 1:
    return devices[:count]
  per, rest = divmod(count, len(by_process))
  if rest or any(len(ds) < per for ds in by_process.values()):
    return None
  return [d for _, ds in sorted(by_process.items()) for d in ds[:per]]


# -- several processes (JAX's multi-controller runtime) ------------------------------------
# Every process runs the same program on its own devices; the mesh spans all of them
# (``jax.devices()``). Each process builds its devices' shards from host arrays it holds
# whole (``place``), fetches arrays that span processes with an all-gather (``fetch``)
# and agrees with the others on every host-side decision that guards a collective
# (``agree_any``). With one process each of these is the plain single-process call.


def cluster_processes() -> int:
  """How many processes the cluster JAX detects wants (SLURM, Open MPI, TPU pods, ...).

  1 where no cluster environment is detected, or it asks for one process (a plain
  ``python`` inside a SLURM allocation, a single-host TPU VM).

  Example:
    >>> cluster_processes() >= 1
    True
  """
  for env in clusters.ClusterEnv._cluster_types:  # pylint: disable=protected-access
    try:
      if not env.opt_in_only_method and env.is_env_present():
        return max(1, int(env.get_process_count()))
    except Exception:  # pylint: disable=broad-except
      continue  # a half-configured environment: not a cluster to join
  return 1


def join_processes(coordinator: str | None = None, num_processes: int | None = None,
                   process_id: int | None = None) -> int:
  """Joins a multi-process JAX run (``jax.distributed.initialize``); call it first.

  With no arguments, joins the cluster JAX detects (``cluster_processes``) when it
  has several processes, and does nothing otherwise: a single-process run is left
  alone. With all three arguments, joins that run explicitly (a ``num_processes``
  of 1 is a single-process run: nothing to join). On CPU, JAX 0.10's default
  cross-process collectives (gloo) serve; nothing else is configured.

  Args:
    coordinator: ``HOST:PORT`` of process 0 (every process gives the same).
    num_processes: how many processes the run has.
    process_id: this process's index, ``0 <= process_id < num_processes``.

  Returns:
    The number of processes in the run.

  Raises:
    ConfigError: the arguments are incomplete or out of range (naming the
      ``lrjax run`` flag), or JAX's backends already exist.

  Example:
    >>> join_processes()  # no cluster here: a single-process run
    1
    >>> join_processes("localhost:1234", 2, 2)
    Traceback (most recent call last):
    ...
    lrjax.errors.ConfigError: --process-id: from 0 to 1 with --num-processes 2; got 2.
  """
  given = {"--coordinator": coordinator, "--num-processes": num_processes,
           "--process-id": process_id}
  missing = [flag for flag, value in given.items() if value is None]
  if missing and len(missing) < len(given):
    raise ConfigError(f"{missing[0]}: a multi-process run needs --coordinator HOST:PORT, "
                      f"--num-processes and --process-id together (or none of them, to "
                      f"join a cluster JAX detects); {missing[0]} is missing.")
  if missing:
    count = cluster_processes()
    if count > 1 and not jax.distributed.is_initialized():
      _initialize()
    return jax.process_count() if jax.distributed.is_initialized() else 1
  host, _, port = str(coordinator).rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ConfigError(f"--coordinator: HOST:PORT of process 0, e.g. "
                      f"--coordinator node001:12345; got {coordinator!r}.")
  if int(num_processes) < 1:
    raise ConfigError(f"--num-processes: at least 1; got {num_processes}.")
  if not 0 <= int(process_id) < int(num_processes):
    raise ConfigError(f"--process-id: from 0 to {int(num_processes) - 1} with "
                      f"--num-processes {num_processes}; got {process_id}.")
  if int(num_processes) == 1:
    return 1
  _initialize(coordinator_address=coordinator, num_processes=int(num_processes),
              process_id=int(process_id))
  return jax.process_count()


def _initialize(**kwargs) -> None:
  if xla_bridge.backends_are_initialized():
    raise ConfigError("join_processes: JAX's backends already exist; join a multi-process "
                      "run before any JAX computation (first thing in the script).")
  jax.distributed.initialize(**kwargs)


def leave_processes() -> None:
  """Leaves a multi-process run (``jax.distributed.shutdown``); nothing in a single process.

  Called by every process once the run is written: the shutdown barrier is then met
  while all are alive, client before service. Left to interpreter exit, process 0
  (which hosts the coordination service) can tear the service down before its own
  client reaches the barrier, and the run aborts after training.

  Example:
    >>> leave_processes()
  """
  if jax.distributed.is_initialized():
    jax.distributed.shutdown()


def is_first_process() -> bool:
  """Whether this is process 0, the one that writes the run directory and shows progress.

  Example:
    >>> is_first_process()  # a single-process run is process 0
    True
  """
  return jax.process_index() == 0


def place(tree, sharding: jax.sharding.Sharding):
  """``jax.device_put(tree, sharding)`` that works when ``sharding`` spans processes.

  Over several processes, every process holds each leaf whole (host data, or a
  local array) and puts only its own devices' shards (``make_array_from_callback``);
  a leaf already spread over the processes is resharded.

  Example:
    >>> s = jax.sharding.NamedSharding(Mesh(np.array(jax.devices()[:1]), (AXIS,)),
    ...                                PartitionSpec())
    >>> place({"w": np.ones(2)}, s)["w"].sharding == s
    True
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def leaf(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x, sharding)
    x = x if isinstance(x, jax.Array) else np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(leaf, tree)


def fetch(tree):
  """``jax.device_get(tree)`` that works when arrays span processes.

  Leaves spread over several processes are all-gathered (a collective: every
  process calls ``fetch`` on the same tree in the same order); every process
  gets the whole values as numpy arrays.

  Example:
    >>> fetch({"a": jax.numpy.arange(3)})["a"].tolist()
    [0, 1, 2]
  """
  if jax.process_count() == 1:
    return jax.device_get(tree)

  def leaf(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.device_get(x)

  return jax.tree.map(leaf, tree)


def agree_any(*flags: bool) -> tuple[bool, ...]:
  """Each flag true if it is true on any process: host decisions that guard
  collectives (a signal, a timed checkpoint) taken alike by every process.

  Example:
    >>> agree_any(False, True)
    (False, True)
  """
  if jax.process_count() == 1:
    return tuple(bool(f) for f in flags)
  seen = np.asarray(multihost_utils.process_allgather(np.asarray(flags, np.int32)))
  return tuple(bool(v) for v in seen.reshape(-1, len(flags)).any(axis=0))


def agree_min(value: int) -> int:
  """The smallest of every process's ``value`` (bytes, agreed to the MiB): a size all
  processes can take (each process measures its own free memory, but all must choose
  the same chunks).

  Example:
    >>> agree_min(7)
    7
  """
  if jax.process_count() == 1:
    return int(value)
  # In MiB as int32: without jax_enable_x64 an int64 would arrive as int32 and wrap.
  mib = np.int32(min(max(int(value), 0) >> 20, np.iinfo(np.int32).max))
  return int(np.asarray(multihost_utils.process_allgather(mib)).min()) << 20


def all_succeeded(ok: bool) -> bool:
  """Whether every process's ``ok`` is true; every process must call it (a collective,
  which is also a barrier). Process 0 writes the run directory: when that fails, the
  others learn it here at once instead of waiting at a barrier until it times out.

  Example:
    >>> all_succeeded(True), all_succeeded(False)
    (True, False)
  """
  if jax.process_count() == 1:
    return bool(ok)
  flags = multihost_utils.process_allgather(np.int32(bool(ok)))
  return bool(np.asarray(flags).min())


def sync(name: str) -> None:
  """Waits until every process reaches ``sync(name)`` (nothing with one process).

  Example:
    >>> sync("doctest")
  """
  if jax.process_count() > 1:
      multihost_utils.sync_global_devices(name)
