"""TensorBoard logging's cost: one grid trained with live metrics on and off, side by side.

The grid is the main job's (``experiments/lr_batch_aug.py``: digits, MLP 256-256, SGD
with momentum, constant LR, 10 epochs, its batch sizes and augmentation strengths),
with seeds and LRs set to reach the member count asked for; the arms alternate in one
process in ABBA order (off, on, on, off, ...), and
the report gives each arm's training seconds (``GridResult.info["train_seconds"]``,
which holds the writer's calls at each evaluation), the seconds the writer itself took
(all its calls, start and finish included), and the ratio on/off. From the repository
root:

  python benchmarks/tb_overhead.py --members 360 --json benchmarks/results/tb_overhead_360.json
  python benchmarks/tb_overhead.py --members 16384 --repeats 1 --epochs 1
  (benchmarks/studies/large_grid_cli.py times the writer in the 16,384-member CLI run)
  python benchmarks/tb_overhead.py --quick     # a smoke run: 8 members, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import numpy as np

from lrjax import experiment
from lrjax.config_files import load_config
from lrjax.metric_writers import TensorBoardWriter

class TimedWriter(TensorBoardWriter):
  """A ``TensorBoardWriter`` that adds up the seconds spent in its own calls."""

  def __init__(self, logdir: str):
    super().__init__(logdir)
    self.seconds = 0.0

  def _timed(self, method, *args, **kwargs):
    t0 = time.perf_counter()
    try:
      return method(*args, **kwargs)
    finally:
      self.seconds += time.perf_counter() - t0

  def start(self, run):
    return self._timed(super().start, run)

  def write(self, *args, **kwargs):
    return self._timed(super().write, *args, **kwargs)

  def finish(self, members):
    return self._timed(super().finish, members)

  def flush(self):
    return self._timed(super().flush)

  def close(self):
    return self._timed(super().close)


def grid_config(members: int, epochs: float | None):
  """The main job's config (``experiments/lr_batch_aug.py``: MLP 256-256, SGD with
  momentum, its epochs) with about ``members`` members: its batch sizes and
  augmentation strengths, then seeds and log-spaced LRs."""
  config = load_config("experiments/lr_batch_aug.py", [])
  if epochs is not None:
    config.epochs = epochs
  per_lr = len(config.grid.batch_size) * len(config.grid.aug)
  seeds = max(1, members // (per_lr * 16))
  lrs = max(2, math.ceil(members / (per_lr * seeds)))  # the questions need 2+ LRs
  config.grid.seed = tuple(range(seeds))
  config.grid.lr = tuple(float(v) for v in np.geomspace(1e-3, 1.0, lrs))
  return config


def measure(members: int, epochs: float, repeats: int) -> dict:
  config = grid_config(members, epochs)
  rows = {"off": [], "on": []}
  for repeat in range(repeats):  # ABBA...: a drift of the machine hits both arms alike
    for arm in ("off", "on") if repeat % 2 == 0 else ("on", "off"):
      with tempfile.TemporaryDirectory() as tmp:
        writer = TimedWriter(f"{tmp}/tb") if arm == "on" else None
        result = experiment.train_and_evaluate(config, f"{tmp}/run", progress=False,
                                               writers=(writer,) if writer else ())
        rows[arm].append({"train_s": result.info["train_seconds"],
                          "writer_s": writer.seconds if writer else 0.0})
  n = len(result.members)
  best = {arm: min(r["train_s"] for r in rs) for arm, rs in rows.items()}
  writer_s = min(r["writer_s"] for r in rows["on"])
  return {"members": n, "epochs": epochs, "evaluations": int(
              result.history.groupby("member").size().max()),
          "repeats": rows, "train_s_off": best["off"], "train_s_on": best["on"],
          "ratio_on_off": best["on"] / best["off"], "writer_s": writer_s,
          "writer_share_of_train": writer_s / best["off"]}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--members", type=int, default=360)
  parser.add_argument("--epochs", type=float, default=None,
                      help="default: the main job's (10)")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--quick", action="store_true", help="8 members, 1 epoch, 1 repeat")
  parser.add_argument("--json", help="write the report here")
  args = parser.parse_args(argv)
  if args.quick:
    args.members, args.epochs, args.repeats = 8, 1.0, 1
  report = measure(args.members, args.epochs, args.repeats)
  print(json.dumps({k: v for k, v in report.items() if k != "repeats"}, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == "__main__":
  main()
