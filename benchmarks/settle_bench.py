"""Compute to an answer: ``lrjax settle`` from a coarse start against a dense fixed grid.

Both ways answer the same primary question of the same experiment (the LR-batch
scaling exponent at aug 0: MLP 256-256 on the built-in digits, SGD with momentum 0.9,
constant LR, batch sizes 16-512) and the benchmark reports, for each, the
member-epochs, the wall seconds (measured side by side in this one process), the
verdict and the final interval's width, then the ratios:

1. ``settle``: a coarse grid (5 LRs x 6 batch sizes x 2 seeds) settled by
   ``lrjax.settle_run`` (its looks fixed up front: the family is tested at 5% / looks);
2. ``dense``: a fixed grid dense enough to settle it (16 LRs x 6 batch sizes x 8
   seeds), one run (one look).

The goal is the same verdict with at most 1/3 of the member-epochs, at an equal or
narrower interval. From the repository root:

  python benchmarks/settle_bench.py --json benchmarks/results/settle_bench.json
  python benchmarks/settle_bench.py --quick     # a smoke run: tiny grids, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import lrjax
from lrjax import experiment


def base_config(epochs: float):
  config = experiment.default_config()
  config.dataset, config.model = "digits", "mlp"
  config.model_kwargs = {"hidden": (256, 256)}
  config.optimizer, config.optimizer_kwargs = "momentum", {"momentum": 0.9}
  config.schedule, config.epochs = "constant", epochs
  config.grid.aug = (0.0,)
  config.analysis.questions = ("scaling",)
  return config


def _answer(workdir: str) -> dict:
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  (d,) = [d for d in summary["decisions"] if d["role"] == "primary"]
  nan = float("nan")
  lo, hi = (nan if d[k] is None else d[k] for k in ("lo", "hi"))
  return {"verdict": d["verdict"], "estimate": nan if d["estimate"] is None else d["estimate"],
          "lo": lo, "hi": hi, "width": hi - lo, "level": d["level"],
          "members": summary["n_members"]}


def run_dense(root: str, lrs, batch_sizes, seeds, epochs: float) -> dict:
  config = base_config(epochs)
  config.grid.lr, config.grid.batch_size, config.grid.seed = lrs, batch_sizes, seeds
  workdir = os.path.join(root, "dense")
  t0 = time.perf_counter()
  experiment.train_and_evaluate(config, workdir, progress=False, writers=())
  seconds = time.perf_counter() - t0
  answer = _answer(workdir)
  return {**answer, "seconds": seconds, "member_epochs": answer["members"] * epochs}


def run_settle(root: str, lrs, batch_sizes, seeds, epochs: float,
               settings: lrjax.SettleSettings) -> dict:
  config = base_config(epochs)
  config.grid.lr, config.grid.batch_size, config.grid.seed = lrs, batch_sizes, seeds
  workdir = os.path.join(root, "settle")
  t0 = time.perf_counter()
  record = lrjax.settle_run(workdir, settings, config, progress=False)
  seconds = time.perf_counter() - t0
  answer = _answer(workdir)
  return {**answer, "seconds": seconds, "member_epochs": answer["members"] * epochs,
          "waves": record["waves"], "stopped": record["stopped"]}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny grids, 1 epoch")
  parser.add_argument("--json", default="", help="write the report here")
  parser.add_argument("--epochs", type=float, default=10.0)
  args = parser.parse_args(argv)
  batch_sizes = (16, 32, 64) if args.quick else (16, 32, 64, 128, 256, 512)
  epochs = 1.0 if args.quick else args.epochs
  dense_lrs = lrjax.log_space(0.01, 1.0, 4 if args.quick else 16)
  coarse_lrs = (0.03, 0.3) if args.quick else (0.01, 0.03, 0.1, 0.3, 1.0)
  dense_seeds = (0, 1) if args.quick else tuple(range(8))
  # settle may spend what brings its total to 1/3 of the dense grid's member-epochs
  dense_epochs = len(dense_lrs) * len(batch_sizes) * len(dense_seeds) * epochs
  start_epochs = len(coarse_lrs) * len(batch_sizes) * 2 * epochs
  settings = lrjax.SettleSettings(
      max_waves=1 if args.quick else 4, max_seeds=8,
      budget_member_epochs=max(dense_epochs / 3 - start_epochs, epochs))
  with tempfile.TemporaryDirectory() as root:
    settle = run_settle(root, coarse_lrs, batch_sizes, (0, 1), epochs, settings)
    dense = run_dense(root, dense_lrs, batch_sizes, dense_seeds, epochs)
  report = {"settle": settle, "dense": dense,
            "member_epoch_ratio": settle["member_epochs"] / dense["member_epochs"],
            "seconds_ratio": settle["seconds"] / dense["seconds"],
            "width_ratio": settle["width"] / dense["width"] if dense["width"] else None,
            "same_verdict": settle["verdict"] == dense["verdict"],
            "quick": args.quick, "epochs": epochs}
  for name in ("settle", "dense"):
    r = report[name]
    print(f"{name:7s} {r['verdict']:12s} exponent {r['estimate']:.3g} [{r['lo']:.3g}, "
          f"{r['hi']:.3g}] ({100 * r['level']:.3g}%), {r['members']} members, "
          f"{r['member_epochs']:g} member-epochs, {r['seconds']:.0f} s")
  print(f"settle / dense: member-epochs {report['member_epoch_ratio']:.2f}, seconds "
        f"{report['seconds_ratio']:.2f}, interval width {report['width_ratio']}, "
        f"same verdict {report['same_verdict']}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == "__main__":
  main()
