"""16,384 members through the command line, as a user runs it, with default settings.

The main job's experiment (digits MLP) with 64 log-spaced LRs (1e-3..1) x 4 batch sizes
x 4 augmentation strengths x 16 seeds, one epoch, TensorBoard logging on (the
default). The command runs in this process (``lrjax.cli.main``), with the TensorBoard
writer timed: it starts no thread and works in the caller's thread, so the seconds
spent in its calls are what it adds to the run. Records the wall time, the process's
peak resident set, the training seconds (``run_info.json``), the writer's seconds and
their share of training, and what the run directory holds (members rows, report,
event files).

  python benchmarks/studies/large_grid_cli.py --workdir /tmp/grid16k \\
      --json benchmarks/results/large_grid_cli_16384.json
  python benchmarks/studies/large_grid_cli.py --workdir /tmp/grid_small --lrs 4 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tb_overhead import TimedWriter  # noqa: E402  (benchmarks/ is not a package)

GIB = 1 << 30


def command(workdir: str, lrs: int, seeds: int) -> list[str]:
  """The ``lrjax run`` arguments of the grid."""
  lr_values = ",".join(f"{v:.6g}" for v in np.geomspace(1e-3, 1.0, lrs))
  return ["run", "experiments/lr_batch_aug.py", "--workdir", workdir, "--no-progress",
          "--config.epochs=1", f"--config.grid.lr=({lr_values})",
          "--config.grid.batch_size=(32,64,128,256)", "--config.grid.aug=(0.0,0.5,1.0,1.5)",
          f"--config.grid.seed=({','.join(map(str, range(seeds)))},)"]


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--lrs", type=int, default=64)
  parser.add_argument("--seeds", type=int, default=16)
  parser.add_argument("--json", help="write the measurements here")
  args = parser.parse_args(argv)
  from lrjax import cli, metric_writers  # pylint: disable=import-outside-toplevel

  writers = []

  def timed(logdir):
    writers.append(TimedWriter(logdir))
    return writers[-1]

  metric_writers.TensorBoardWriter = timed  # make_writers builds the timed one
  shutil.rmtree(args.workdir, ignore_errors=True)
  argv_run = command(args.workdir, args.lrs, args.seeds)
  t0 = time.perf_counter()
  code = cli.main(argv_run)
  wall = time.perf_counter() - t0
  with open(os.path.join(args.workdir, "run_info.json")) as f:
    info = json.load(f)
  import pandas as pd  # pylint: disable=import-outside-toplevel
  members = pd.read_parquet(os.path.join(args.workdir, "members.parquet"))
  events = sum(len(files) for _, _, files in os.walk(os.path.join(args.workdir, "tb")))
  report = {
      "command": "lrjax " + " ".join(argv_run), "exit_code": code,
      "members": len(members), "wall_s": round(wall, 1),
      "train_seconds": round(info["train_seconds"], 1),
      "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 2),
      "tensorboard_s": round(sum(w.seconds for w in writers), 1),
      "tensorboard_share_of_train": round(sum(w.seconds for w in writers)
                                          / info["train_seconds"], 4),
      "report_html": os.path.exists(os.path.join(args.workdir, "report.html")),
      "tb_files": events, "num_chunks": info.get("num_chunks"),
  }
  print(json.dumps(report, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == "__main__":
  main()
