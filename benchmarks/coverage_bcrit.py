"""Coverage of the B_crit interval on planted hyperbolas, evaluations quantised as a run's.

Plants, per batch size B and grid LR, the steps to a target

  S(B, lr) = S_min (1 + B_crit / B) exp(c (log lr - log lr*(B))^2) exp(sigma N(0, 1))

with lr*(B) = 0.02 (B / 32)^0.5 and an independent lognormal seed factor per member.
Each member gets a validation-loss history as the engine writes one: evaluations at
multiples of a fixed interval of examples (``examples_seen``; ``updates`` =
examples / B), the loss a power law in steps, ``(updates / S)^-0.7``, so it crosses
the target 1.0 exactly at the planted steps. The interval is sized so that the
smallest batch at its best LR crosses after about ``--evals`` evaluations (larger
batches cross after more, off-optimum LRs later still); the histories run for 3x the
slowest best-LR crossing. Then the real pipeline: `steps_to_target` (target 1.0) ->
`best_steps_per_batch` -> `fit_critical_batch`.

Per planted B_crit and number of seeds it prints: coverage (the share of replications
whose 95% interval contains the planted B_crit; a replication without an interval
counts as a miss), the median interval width as a log10 factor (log10(hi / lo); inf
when an open bound is the median), the median estimate and how often each verdict
occurs. The planted values sit below the batch range (B_min / 2), inside it, at its
top, at 2 B_max (extrapolated) and far above it (not identifiable).

  python benchmarks/coverage_bcrit.py --reps 200
  python benchmarks/coverage_bcrit.py --reps 20 --b-crits 128 --seeds 3   # a quick look
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import pandas as pd

from lrjax.analysis import critical_batch as cb

BATCHES = (32, 64, 128, 256, 512)
LRS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
B_CRITS = (16.0, 128.0, 512.0, 1024.0, 1e6)
S_MIN = 200.0
CURVATURE = 0.5   # c: one grid step (x2-2.5) off the best LR costs 1.2-1.5x the steps
LOSS_POWER = 0.7
HORIZON = 3.0     # histories run this many times the slowest best-LR crossing
VERDICTS = ("identified", "extrapolated", "not identifiable", "not settled")


def lr_star(b: np.ndarray) -> np.ndarray:
  """The planted best LR at batch size ``b``."""
  return 0.02 * (np.asarray(b, float) / BATCHES[0]) ** 0.5


def plant(b_crit: float, n_seeds: int, sigma: float, evals: float,
          rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
  """A members table and its history with planted steps to the target 1.0.

  Args:
    b_crit: the planted critical batch size.
    n_seeds: seeds per setting.
    sigma: standard deviation of the log seed factor.
    evals: evaluations before the smallest batch's best-LR crossing.
    rng: the noise.

  Returns:
    ``(members, history)`` in the engine's columns.
  """
  grid = pd.MultiIndex.from_product([LRS, BATCHES, range(n_seeds)],
                                    names=["lr", "batch_size", "seed"]).to_frame(index=False)
  b = grid["batch_size"].to_numpy(float)
  off = np.log(grid["lr"].to_numpy()) - np.log(lr_star(b))
  need = (S_MIN * (1 + b_crit / b) * np.exp(CURVATURE * off**2)
          * np.exp(sigma * rng.normal(size=len(grid))))
  best_examples = S_MIN * (np.asarray(BATCHES, float) + b_crit)   # S(B) B at lr*
  # An interval of examples that is a multiple of every batch size, so updates are whole.
  every = max(1, round(best_examples[0] / evals / BATCHES[-1])) * BATCHES[-1]
  n_evals = math.ceil(HORIZON * best_examples.max() / every)
  examples = every * np.arange(1, n_evals + 1, dtype=float)
  members = grid.assign(member=np.arange(len(grid)), aug=0.0, diverged=False)
  updates = examples[None, :] / b[:, None]
  history = pd.DataFrame({
      "member": np.repeat(members["member"].to_numpy(), n_evals),
      "examples_seen": np.tile(examples, len(grid)),
      "updates": updates.ravel(),
      "val_loss": (updates / need[:, None]).ravel() ** -LOSS_POWER})
  return members, history


def replicate(b_crit: float, n_seeds: int, sigma: float, evals: float, n_boot: int,
              rng: np.random.Generator) -> dict:
  """One planted run through the real pipeline: its B_crit row and whether it covers."""
  members, history = plant(b_crit, n_seeds, sigma, evals, rng)
  steps = cb.steps_to_target(history, members, target=1.0)
  r = cb.fit_critical_batch(steps, n_boot=n_boot, rng_seed=int(rng.integers(2**31))).iloc[0]
  lo, hi = float(r["b_crit_lo"]), float(r["b_crit_hi"])
  return {"covered": bool(lo <= b_crit <= hi), "width": math.log10(hi / lo)
          if lo > 0 and np.isfinite(lo) else math.inf if lo == 0 else math.nan,
          "b_crit": float(r["b_crit"]), "verdict": r["verdict"]}


def coverage_table(reps: int, b_crits, seeds, sigma: float, evals: float, n_boot: int,
                   rng_seed: int = 0) -> pd.DataFrame:
  """One row per (planted B_crit, seeds): coverage, median width, verdict shares.

  Example:
    >>> t = coverage_table(2, [128.0], [3], 0.1, 4, 100)
    >>> t[["b_crit", "seeds", "reps"]].values.tolist()
    [[128.0, 3.0, 2.0]]
  """
  rows = []
  for b_crit in b_crits:
    for n_seeds in seeds:
      rng = np.random.default_rng([rng_seed, int(b_crit), n_seeds])
      out = pd.DataFrame([replicate(b_crit, n_seeds, sigma, evals, n_boot, rng)
                          for _ in range(reps)])
      shares = out["verdict"].value_counts(normalize=True)
      width = out["width"].dropna()
      rows.append({"b_crit": b_crit, "seeds": n_seeds, "reps": reps,
                   "coverage": out["covered"].mean(),
                   "median_width_log10": float(np.median(width)) if len(width) else np.nan,
                   "median_estimate": float(out["b_crit"].median()),
                   **{v: float(shares.get(v, 0.0)) for v in VERDICTS}})
  return pd.DataFrame(rows)


def markdown(t: pd.DataFrame) -> str:
  """The table as Markdown."""
  head = ("| planted B_crit | seeds | coverage | median width (log10) | median estimate | "
          + " | ".join(VERDICTS) + " |")
  lines = [head, "|" + "--:|" * (5 + len(VERDICTS))]
  for r in t.itertuples():
    lines.append(f"| {r.b_crit:g} | {r.seeds} | {r.coverage:.0%} | "
                 f"{r.median_width_log10:.2f} | {r.median_estimate:.3g} | "
                 + " | ".join(f"{getattr(r, v.replace(' ', '_')):.0%}" for v in VERDICTS)
                 + " |")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reps", type=int, default=200, help="replications per row")
  parser.add_argument("--b-crits", type=lambda s: [float(v) for v in s.split(",")],
                      default=list(B_CRITS), help="planted B_crit values, comma-separated")
  parser.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")],
                      default=[3, 5], help="seeds per setting, comma-separated")
  parser.add_argument("--sigma", type=float, default=0.1, help="log seed-noise sd")
  parser.add_argument("--evals", type=float, default=4.0,
                      help="evaluations before the smallest batch's best-LR crossing")
  parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
  parser.add_argument("--rng-seed", type=int, default=0)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  t = coverage_table(args.reps, args.b_crits, args.seeds, args.sigma, args.evals,
                     args.n_boot, args.rng_seed)
  t = t.rename(columns={v: v.replace(" ", "_") for v in VERDICTS})
  print(f"batch sizes {BATCHES}, {len(LRS)} LRs, S_min {S_MIN:g}, c {CURVATURE:g}, "
        f"sigma {args.sigma:g}, ~{args.evals:g} evaluations to the smallest batch's "
        f"crossing, n_boot {args.n_boot}, {args.reps} replications per row "
        f"({time.perf_counter() - start:.0f} s)")
  print(markdown(t))
  return 0


if __name__ == "__main__":
  sys.exit(main())
