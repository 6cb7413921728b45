"""The probe behind ``lrjax.engine.devices.compiler_options`` (benchmarks/NOTES.md).

Trains the benchmark's grid (N MLP members, one batch size, momentum SGD) with
``lrjax.train_grid`` under several XLA option sets for the segment
program, interleaved in rounds with the ``scans`` baseline of ``lrjax bench``, all
in one process with one CPU device per core and no process-wide XLA flags.
Prints each variant's fastest and median train seconds and, per round, the
baseline's time over the variant's. From the repository root:

  python benchmarks/studies/cpu_options_study.py --batch 32 --rounds 8
"""
import argparse
import os
import sys

import numpy as np

from lrjax.engine import devices

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/

YNN = {"xla_cpu_experimental_ynn_fusion_type":
       "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE"}
VARIANTS = {
    "xla defaults": {},
    "ynn fusions": YNN,
    "one thread/device": devices.ONE_THREAD_PER_DEVICE,
    "ynn + one thread": {**YNN, **devices.ONE_THREAD_PER_DEVICE},
}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--members", type=int, default=64)
  ap.add_argument("--epochs", type=float, default=2.0)
  ap.add_argument("--rounds", type=int, default=4)
  args = ap.parse_args()
  devices.use_cpu_cores()
  import baselines  # noqa: PLC0415 - after the device count is set
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  import lrjax  # noqa: PLC0415
  from lrjax import data, models  # noqa: PLC0415
  from lrjax.engine import plan  # noqa: PLC0415

  ds = data.load("digits")
  adapter = models.get_model("mlp", ds.num_classes)
  b, n = args.batch, args.members
  table = lrjax.make_grid({"lr": lrjax.log_space(1e-3, 0.3, n), "batch_size": (b,),
                           "seed": (0,)})
  settings = lrjax.TrainSettings(optimizer="momentum", epochs=args.epochs, vmap_width=1,
                                 eval_every=int(round(args.epochs * len(ds.train))))
  examples = plan(table, len(ds.train), settings).examples_per_member
  steps = examples // b
  order = data.example_order(0, len(ds.train), examples)[:steps * b].reshape(steps, b)
  labels = ds.train.labels[order].astype(np.int32)
  init = jax.jit(lambda: adapter.init(jax.random.key(0), jnp.zeros((1,) + ds.image_shape)))
  work = baselines.Work(
      apply=adapter.apply, init_params=init(), lrs=table["lr"].to_numpy(np.float32),
      xs=jax.device_put(ds.train.images[order].astype(np.float32) / np.float32(255.0)),
      ys=jax.device_put(np.eye(ds.num_classes, dtype=np.float32)[labels]), labels=labels)
  times = {"scans": []}
  for r in range(args.rounds):
    times["scans"].append(baselines.sequential_scans(work).train_s)
    for name, options in VARIANTS.items():
      # The trainer compiles the segment with devices.compiler_options(...): swap it.
      devices.compiler_options = lambda platform, num_devices, o=options: dict(o)
      res = lrjax.train_grid(adapter, ds, table, settings, progress=False)
      times.setdefault(name, []).append(res.info["train_seconds"])
    print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()),
          flush=True)
  scans = np.array(times["scans"])
  for name, t in times.items():
    t = np.array(t)
    print(f"N={n} B={b} {name:18s} fastest {t.min():.3f} s  median {np.median(t):.3f} s  "
          f"scans/this per round {np.round(scans / t, 2).tolist()}")


if __name__ == "__main__":
  main()
