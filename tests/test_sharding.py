"""Members sharded over several devices give the same results as on one device."""
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[1]
    import jax, numpy as np
    from lrjax import data, grid, models, trainer, engine
    assert len(jax.devices()) == int(sys.argv[1])
    table = grid.make_grid({"lr": (0.01, 0.1), "batch_size": (32, 64), "seed": (0, 1)})
    res = trainer.train_grid(models.get_model("mlp", 10, hidden=(32,)), data.load("digits"),
                             table, engine.TrainSettings(epochs=1), progress=False)
    np.save(sys.argv[2], res.params["Dense_0"]["kernel"])
""")


def run_on(devices, tmp_path):
  out = tmp_path / f"w{devices}.npy"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  subprocess.run([sys.executable, "-c", SCRIPT, str(devices), str(out)], check=True, env=env)
  return np.load(out)


def test_two_device_mesh_matches_one_device_when_groups_split(tmp_path):
  np.testing.assert_allclose(run_on(2, tmp_path), run_on(1, tmp_path), rtol=1e-5, atol=1e-6)
