"""Members sharded over several devices give the same results as on one device."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[1]
    import jax, numpy as np
    from lrjax import data, grid, models, engine
    assert len(jax.devices()) == int(sys.argv[1])
    table = grid.make_grid(json.loads(sys.argv[3]))
    res = engine.train_grid(models.get_model("mlp", 10, hidden=(32,)), data.load("digits"),
                            table, engine.TrainSettings(epochs=1, schedule=sys.argv[4]),
                            progress=False)
    assert res.info["member_devices"] == int(sys.argv[1]), res.info
    np.savez(sys.argv[2], kernel=res.params["Dense_0"]["kernel"],
             val_loss=res.history["val_loss"].to_numpy(), axis=str(res.info["split_axis"]))
""")

GRIDS = {
    # two seeds: the group axis splits
    "groups": ({"lr": (0.01, 0.1), "batch_size": (32, 64), "seed": (0, 1)}, "constant"),
    # one input group, two blocks of 4 LRs: the inner axis splits; plateau reads val loss
    "inner": ({"lr": (0.003, 0.01, 0.03, 0.1), "batch_size": (32, 64)}, "plateau"),
}


def run_on(devices, tmp_path, grid_name):
  out = tmp_path / f"{grid_name}{devices}.npz"
  axes, schedule = GRIDS[grid_name]
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "LRJAX_CPU_DEVICES")}
  subprocess.run([sys.executable, "-c", SCRIPT, str(devices), str(out),
                  __import__("json").dumps(axes), schedule], check=True, env=env)
  return np.load(out)


# The group split in the default suite; the inner-axis split (a second pair of CLI
# runs) under -m slow.
@pytest.mark.parametrize("grid_name", [
    pytest.param(name, marks=pytest.mark.slow) if name == "inner" else name
    for name in sorted(GRIDS)])
def test_two_device_mesh_matches_one_device_when_members_split(tmp_path, grid_name):
  two, one = run_on(2, tmp_path, grid_name), run_on(1, tmp_path, grid_name)
  assert str(two["axis"]) == grid_name and str(one["axis"]) == "None"
  np.testing.assert_allclose(two["kernel"], one["kernel"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-5, atol=1e-6)
