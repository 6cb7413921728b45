"""Does the LR range test find the best LR? ``lrjax find``'s suggestions against a run's
settled optima.

For every batch size and augmentation strength of a finished run, the ratio of each
suggestion of ``lrjax find`` on the same config (range test: ``valley``, ``steepest``,
``minimum_div_10``; the vectorised one-epoch test: ``vectorised``) to the run's best LR,
with the interval the best LR's interval gives it (suggestion / [lo, hi]; the range
test runs once, so the best LR's seed interval is the only one), and which rule comes
closest (the smallest mean |log ratio|). Run the main job and the finder first:

  python3 dev.py run                       # or: lrjax run experiments/lr_batch_aug.py --workdir R
  lrjax find experiments/lr_batch_aug.py --workdir runs/find
  .venv/bin/python scripts/finder_vs_optimum.py --run R --find runs/find [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os

RULES = ("valley", "steepest", "minimum_div_10", "vectorised")


def _suggestions(find: dict, batch: int, aug: float) -> dict:
  (entry,) = [p for p in find["per_batch_size"] if p["batch_size"] == batch]
  out = {r: entry["range_test"].get(r) for r in RULES[:3]}
  by_aug = {float(k): v for k, v in entry["vectorised_best_lr_by_aug"].items()}
  out["vectorised"] = by_aug.get(float(aug), entry["vectorised_best_lr"])
  return out


def compare(run_dir: str, find_dir: str) -> dict:
  """One row per (batch size, aug) and rule, and each rule's mean |log ratio|."""
  with open(os.path.join(run_dir, "summary.json")) as f:
    summary = json.load(f)
  with open(os.path.join(find_dir, "lr_find.json")) as f:
    find = json.load(f)
  rows = []
  for cell in summary["best_lr"]:
    best, lo, hi = cell["best_lr"], cell["best_lr_lo"], cell["best_lr_hi"]
    for rule, lr in _suggestions(find, cell["batch_size"], cell["aug"]).items():
      if lr is None or not math.isfinite(lr):
        continue
      rows.append({"batch_size": cell["batch_size"], "aug": cell["aug"], "rule": rule,
                   "suggested": lr, "best_lr": best, "ratio": lr / best,
                   "ratio_lo": lr / hi, "ratio_hi": lr / lo,
                   "inside": lo <= lr <= hi})
  closeness = {}
  for rule in RULES:
    logs = [abs(math.log(r["ratio"])) for r in rows if r["rule"] == rule]
    if logs:
      closeness[rule] = {"mean_abs_log_ratio": sum(logs) / len(logs),
                         "factor": math.exp(sum(logs) / len(logs)),
                         "inside": sum(r["inside"] for r in rows if r["rule"] == rule),
                         "cells": len(logs)}
  return {"rows": rows, "closeness": closeness,
          "closest": min(closeness, key=lambda r: closeness[r]["mean_abs_log_ratio"])}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", required=True, help="a finished run directory")
  parser.add_argument("--find", required=True, help="the lrjax find directory")
  parser.add_argument("--json", default="", help="write the comparison here")
  args = parser.parse_args(argv)
  out = compare(args.run, args.find)
  print("| batch | aug | rule | suggested | best LR | ratio [interval] |\n|---|---|---|---|---|---|")
  for r in out["rows"]:
    print(f"| {r['batch_size']} | {r['aug']:g} | {r['rule']} | {r['suggested']:.3g} | "
          f"{r['best_lr']:.3g} | ×{r['ratio']:.2g} [×{r['ratio_lo']:.2g}, ×{r['ratio_hi']:.2g}] |")
  for rule, c in out["closeness"].items():
    print(f"{rule}: off by ×{c['factor']:.2f} on average (|log ratio| {c['mean_abs_log_ratio']:.2f});"
          f" inside the best LR's interval in {c['inside']} of {c['cells']} cells")
  print(f"closest: {out['closest']}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)
  return out


if __name__ == "__main__":
  main()
