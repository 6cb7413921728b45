"""Device partitions for a grid's members, and the CPU device set-up."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import cli
from lrjax.engine import devices as parallel
from lrjax.errors import ConfigError


def _two_devices():
  if len(jax.devices()) < 2:
    pytest.skip("needs 2 devices (tests run with one CPU device per core)")
  return jax.devices()[:2]


def test_member_partition_splits_groups_when_they_divide():
  p = parallel.member_partition(4, [3, 5], _two_devices())
  assert p.axis == 0 and p.num_devices == 2
  assert p.members == jax.sharding.PartitionSpec("members")


def test_member_partition_splits_inner_when_only_blocks_divide():
  p = parallel.member_partition(3, [10, 4], _two_devices())
  assert p.axis == 1 and p.members == jax.sharding.PartitionSpec(None, "members")
  assert p.groups == jax.sharding.PartitionSpec()


def test_member_partition_is_none_when_nothing_divides():
  assert parallel.member_partition(3, [10, 3], _two_devices()) is None
  assert parallel.member_partition(4, [4], jax.devices()[:1]) is None


def test_use_cpu_cores_rejects_bad_environment_value(monkeypatch):
  monkeypatch.setenv(parallel.ENV_VAR, "two")
  with pytest.raises(ConfigError, match=parallel.ENV_VAR):
    parallel.use_cpu_cores()


def test_cli_reports_bad_cpu_device_count_without_traceback(monkeypatch, capsys, tmp_path):
  monkeypatch.setenv(parallel.ENV_VAR, "0")
  code = cli.main(["run", "experiments/lr_batch_aug.py:runlocal", "--workdir",
                   str(tmp_path / "run")])
  err = capsys.readouterr().err
  assert code == 2 and parallel.ENV_VAR in err and "Traceback" not in err
  assert not (tmp_path / "run").exists()


def test_use_cpu_cores_keeps_devices_once_jax_is_initialised():
  assert parallel.use_cpu_cores(7) == len(jax.devices("cpu"))


def test_compiler_options_one_thread_per_device_only_for_several_cpu_devices():
  assert parallel.compiler_options("cpu", 2) == parallel.ONE_THREAD_PER_DEVICE
  assert parallel.compiler_options("cpu", 1) == {}
  assert parallel.compiler_options("gpu", 4) == {}


def test_compiler_options_accepted_by_xla_and_leave_results_unchanged():
  # XLA rejects unknown option names at compile time; the options only change
  # threading, so a small program computes the same values.
  f = jax.jit(lambda a, b: jnp.tanh(a @ b).sum(0))
  a = jnp.linspace(-1.0, 1.0, 64 * 32, dtype=jnp.float32).reshape(64, 32)
  lowered = f.lower(a, a.T)
  plain = lowered.compile()(a, a.T)
  tuned = lowered.compile(compiler_options=parallel.compiler_options("cpu", 2))(a, a.T)
  np.testing.assert_allclose(tuned, plain, rtol=1e-6)
