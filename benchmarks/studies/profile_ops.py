"""Per-op time of one lrjax grid run on CPU, from a JAX profiler trace.

XLA:CPU records each thunk (fusion, dot, copy, ...) of a run when
``--xla_cpu_enable_xprof_traceme=true`` is in ``XLA_FLAGS``; this script traces one
``train_grid`` call, reads the trace with ``jax.profiler.ProfileData`` and prints
every op's count and median/fastest duration, so one step's cost can be split into
its matmuls and the rest (benchmarks/NOTES.md has the tables it made). From the
repository root, pinned to a core for steadier numbers:

  LRJAX_CPU_DEVICES=1 taskset -c 1 python benchmarks/studies/profile_ops.py --model mlp --batch 32
"""
import argparse
import collections
import glob
import os
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_enable_xprof_traceme=true").strip()


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--model", default="mlp")
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--members", type=int, default=8)
  ap.add_argument("--epochs", type=float, default=1.0)
  ap.add_argument("--top", type=int, default=30)
  ap.add_argument("--width", type=int, default=0, help="vmap_width (0: lrjax's choice)")
  args = ap.parse_args()
  import lrjax  # noqa: PLC0415
  lrjax.use_cpu_cores()  # before any JAX computation
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415
  from jax.profiler import ProfileData  # noqa: PLC0415
  from lrjax import data, models  # noqa: PLC0415

  ds = data.load("digits")
  adapter = models.get_model(args.model, ds.num_classes)
  table = lrjax.make_grid({"lr": lrjax.log_space(1e-3, 0.3, args.members),
                           "batch_size": (args.batch,)})
  settings = lrjax.TrainSettings(optimizer="momentum", epochs=args.epochs,
                                 vmap_width=args.width)
  run = lambda: lrjax.train_grid(adapter, ds, table, settings, progress=False)
  run()  # compile caches warm, first run not traced
  with tempfile.TemporaryDirectory() as out:
    with jax.profiler.trace(out):
      info = run().info
    trace = ProfileData.from_file(glob.glob(f"{out}/**/*.xplane.pb", recursive=True)[0])
    ops = collections.defaultdict(list)
    for plane in trace.planes:
      for line in plane.lines:
        if "XLA" not in line.name:  # XLA:CPU's worker threads
          continue
        for event in line.events:
          ops[event.name].append(event.duration_ns / 1e3)
  print(f"{args.model} N={args.members} B={args.batch}: train {info['train_seconds']:.3f} s "
        f"(traced), {info['member_devices']} device(s), vmap_width {info['vmap_width']}")
  print(f"{'op':40s} {'count':>7s} {'median us':>10s} {'fastest us':>10s} {'total ms':>9s}")
  rows = sorted(ops.items(), key=lambda kv: -sum(kv[1]))
  for name, durations in rows[:args.top]:
    print(f"{name[:40]:40s} {len(durations):7d} {np.median(durations):10.2f} "
          f"{min(durations):10.2f} {sum(durations) / 1e3:9.2f}")


if __name__ == "__main__":
  main()
