"""Coverage of `max_stable_lr`'s 95% interval on planted per-seed stability limits.

Each replication plants one limit per seed, ``log T_s ~ N(mu, sigma^2)``, with ``mu``
uniform between the grid's second and second-to-last LRs and ``sigma`` a multiple of
the grid's mean log spacing (a "grid step"). Member (seed s, lr) is stable when
``lr <= T_s``. Two variants of what the unstable members look like:

* ``diverged``: every unstable member diverged;
* ``failed+slow``: unstable members within 4x of the limit failed (did not learn),
  those further up diverged, and 30% of the stable members at the grid's two smallest
  LRs are ``slow`` (learned, far from converged: stable).

The members table has the engine's columns; the replications are cells along an
extra grid axis ``replication``, so one call of the real
`lrjax.analysis.stability.max_stable_lr` estimates all of them. The truth is
``exp(mu)``, the geometric mean of the limits over the population of seeds. Reported
per setting: the interval's coverage, its median width in grid steps (inf when over
half the replications have a seed censored beyond the grid), and the fraction of
uncensored replications whose interval is two-sided (``lo < estimate < hi``).

Run from the repository root (about a minute at 200 replications)::

  python benchmarks/coverage_stability.py --reps 200
"""
from __future__ import annotations

import argparse
import itertools
import sys
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax.analysis.stability import max_stable_lr

GRIDS = {
    "main": (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    "2x": tuple(0.001 * 2.0 ** k for k in range(10)),
}
VARIANTS = ("diverged", "failed+slow")
SIGMAS = (0.1, 0.3, 1.0, 2.0)   # in grid steps
SEEDS = (3, 5, 10)
TARGET = 0.90                   # required coverage at 3 and 5 seeds
REQUIRED_SEEDS = (3, 5)


def grid_step(lrs: Sequence[float]) -> float:
  """The grid's mean spacing in log LR.

  Example:
    >>> round(grid_step((0.01, 0.02, 0.04)), 4)
    0.6931
  """
  return float(np.log(lrs[-1] / lrs[0]) / (len(lrs) - 1))


def planted_members(lrs: Sequence[float], n_seeds: int, sigma_steps: float, reps: int,
                    variant: str, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
  """A members table of ``reps`` planted replications, and each one's true log limit.

  Args:
    lrs: the LR grid.
    n_seeds: seeds per replication.
    sigma_steps: the spread of the per-seed log limits, in grid steps.
    reps: replications (cells along the ``replication`` axis).
    variant: one of `VARIANTS`.
    rng: the random generator.

  Returns:
    ``(members, mu)``: the table and the (reps,) planted ``mu``.

  Example:
    >>> m, mu = planted_members(GRIDS["2x"], 3, 1.0, 2, "diverged",
    ...                         np.random.default_rng(0))
    >>> len(m), mu.shape, sorted(m["status"].unique())
    (60, (2,), ['diverged', 'trained'])
  """
  log_lrs = np.log(np.asarray(lrs, float))
  mu = rng.uniform(log_lrs[1], log_lrs[-2], size=reps)
  log_t = mu[:, None] + sigma_steps * grid_step(lrs) * rng.normal(size=(reps, n_seeds))
  rep, seed, k = (a.ravel() for a in np.meshgrid(np.arange(reps), np.arange(n_seeds),
                                                 np.arange(len(lrs)), indexing="ij"))
  over = log_lrs[k] - log_t[rep, seed]           # > 0: unstable
  status = np.where(over <= 0, "trained", "diverged").astype(object)
  if variant == "failed+slow":
    status[(over > 0) & (over <= np.log(4.0))] = "failed"
    slow = (over <= 0) & (k < 2) & (rng.uniform(size=len(k)) < 0.3)
    status[slow] = "slow"
  elif variant != "diverged":
    raise ValueError(f"variant: one of {VARIANTS}; got {variant!r}")
  diverged = status == "diverged"
  loss = np.where(diverged, np.nan, np.where(status == "failed", np.log(10.0),
                                             0.3 + np.minimum(over, 0) ** 2))
  members = pd.DataFrame({
      "member": np.arange(len(k)), "lr": np.asarray(lrs, float)[k], "batch_size": 32,
      "aug": 0.0, "seed": seed, "replication": rep, "status": status.astype(str),
      "diverged": diverged, "final_val_loss": loss})
  return members, mu


class Coverage(NamedTuple):
  """One setting's result (see the module docstring)."""
  coverage: float
  median_width_steps: float
  two_sided: float       # fraction of uncensored replications; NaN when none
  censored: float        # fraction of replications with a seed beyond the grid


def coverage(lrs: Sequence[float], n_seeds: int, sigma_steps: float, reps: int,
             variant: str, rng_seed: int = 0) -> Coverage:
  """How often `max_stable_lr`'s interval holds the planted ``exp(mu)``.

  Example:
    >>> c = coverage(GRIDS["2x"], 3, 0.3, 20, "diverged")
    >>> c.coverage >= 0.9, c.two_sided
    (True, 1.0)
  """
  members, mu = planted_members(lrs, n_seeds, sigma_steps, reps, variant,
                                np.random.default_rng(rng_seed))
  t = max_stable_lr(members).sort_values("replication")
  with np.errstate(divide="ignore", invalid="ignore"):  # 0 / inf bounds of open sides
    lo, hi = (np.log(t[f"max_stable_lr_{s}"].to_numpy()) for s in ("lo", "hi"))
    est = np.log(t["max_stable_lr"].to_numpy())
    width = (hi - lo) / grid_step(lrs)
  censored = (t["n_censored_above"] + t["n_censored_below"]).to_numpy() > 0
  inner = ~censored
  two_sided = ((lo < est) & (est < hi))[inner].mean() if inner.any() else np.nan
  return Coverage(float(((lo <= mu) & (mu <= hi)).mean()), float(np.median(width)),
                  float(two_sided), float(censored.mean()))


def coverage_table(reps: int, seeds: Sequence[int] = SEEDS,
                   sigmas: Sequence[float] = SIGMAS, rng_seed: int = 0) -> pd.DataFrame:
  """`coverage` of every (grid, variant, sigma, seeds) setting, one row each.

  Example:
    >>> t = coverage_table(10, seeds=(3,), sigmas=(1.0,))
    >>> len(t), list(t.columns)[:4]
    (4, ['grid', 'variant', 'sigma_steps', 'seeds'])
  """
  rows = []
  for n, ((grid, lrs), variant, sigma, n_seeds) in enumerate(
      itertools.product(GRIDS.items(), VARIANTS, sigmas, seeds)):
    c = coverage(lrs, n_seeds, sigma, reps, variant, rng_seed + n)
    rows.append({"grid": grid, "variant": variant, "sigma_steps": sigma, "seeds": n_seeds,
                 **c._asdict()})
  return pd.DataFrame(rows)


def failures(table: pd.DataFrame) -> pd.DataFrame:
  """The rows that miss a requirement: coverage < `TARGET` at 3 or 5 seeds, or an
  uncensored interval that is not two-sided.

  Example:
    >>> failures(pd.DataFrame({"seeds": [3, 10], "coverage": [0.95, 0.5],
    ...                        "two_sided": [1.0, 1.0]})).empty
    True
  """
  low = table["seeds"].isin(REQUIRED_SEEDS) & (table["coverage"] < TARGET)
  one_sided = table["two_sided"].notna() & (table["two_sided"] < 1.0)
  return table[low | one_sided]


def markdown(table: pd.DataFrame) -> str:
  """The table as Markdown, coverage and fractions in %, widths to 2 digits."""
  head = ("| grid | variant | sigma (steps) | seeds | coverage | median width (steps) "
          "| two-sided | censored reps |")
  lines = [head, "|" + "---|" * 8]
  for r in table.itertuples():
    two = "n/a" if np.isnan(r.two_sided) else f"{100 * r.two_sided:.0f}%"
    lines.append(f"| {r.grid} | {r.variant} | {r.sigma_steps:g} | {r.seeds} | "
                 f"{100 * r.coverage:.1f}% | {r.median_width_steps:.2f} | {two} | "
                 f"{100 * r.censored:.0f}% |")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--reps", type=int, default=200, help="replications per setting")
  parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
  parser.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS),
                      help="spreads of the per-seed log limits, in grid steps")
  parser.add_argument("--rng-seed", type=int, default=0)
  args = parser.parse_args(argv)
  table = coverage_table(args.reps, args.seeds, args.sigmas, args.rng_seed)
  print(markdown(table))
  bad = failures(table)
  print(f"\n{args.reps} replications per setting; required: coverage >= {TARGET:.0%} at "
        f"{' and '.join(map(str, REQUIRED_SEEDS))} seeds, two-sided without censoring: "
        + ("met." if bad.empty else f"NOT met in {len(bad)} settings."))
  return 0 if bad.empty else 1


if __name__ == "__main__":
  sys.exit(main())
