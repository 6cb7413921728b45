"""Spreading a grid's members over devices; on CPU, one JAX device per core.

Why one CPU device per core: XLA:CPU splits each small op of a training step over
its thread pool, and at these sizes (a 32x256 @ 256x256 matmul, an optimizer update
over 300 KB) that splitting costs more than it gains -- a lone member's compiled
scan keeps 2 cores only ~1.35x busy. Giving each core its own device and its own
share of the members keeps both busy with independent work: measured on the 2-core
development VM, 64 MLP members at batch 32 trained 1.7-2x faster over 2 CPU devices
than on 1 (benchmarks/NOTES.md). The same sharding spreads members over GPUs/TPUs.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
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

  Example:
    >>> p = member_partition(3, [10, 10], jax.devices()[:1])
    >>> p is None
    True
  """
  devices = list(jax.devices() if devices is None else devices)
  for d in range(len(devices), 1, -1):
    mesh = Mesh(np.array(devices[:d]), (AXIS,))
    if num_groups % d == 0:
      return Partition(mesh, 0)
    if all(size % d == 0 for size in block_sizes):
      return Partition(mesh, 1)
  return None
