"""Every estimate of a run at once (`estimate`), and the advice rule at an LR edge.

See `lrjax.analysis.stats` for the conventions. An estimate is an estimator in its
own module and fields of `Estimates` filled by one function in `ESTIMATORS`; its
sentences come from one function of `lrjax.analysis.sentences.FINDINGS`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from lrjax.analysis import critical_batch, noise_scale, optima, stability, stats
from lrjax.analysis import comparisons
from lrjax.analysis.stats import fmt
from lrjax.errors import ConfigError

STEPS_METRIC = "val_loss"


class Estimates(NamedTuple):
  """Everything `estimate` computes for one run; DataFrames are None when not computable.

  Attributes:
    members: the prepared members table, with a ``status`` column.
    status_source: where the status labels came from (`stats.with_status`).
    metric, n_boot, reference_aug: the settings used.
    n_seeds: distinct seeds in the table.
    best_lr: `optima.best_lr`.
    scaling: `optima.scaling_exponent`.
    scaling_band: `optima.scaling_band`.
    max_stable: `stability.max_stable_lr`.
    aug_effect, aug_pooled: `stability.aug_effect` and `aug_effect_pooled` (None with
      one aug level).
    target: the steps-to-target level when one level serves every group (None when
      not computed or when each aug group has its own; see ``best_steps["target"]``).
    best_steps: `critical_batch.best_steps_per_batch` (None without a history).
    critical_batch: `critical_batch.fit_critical_batch`.
    steps_note: why steps to target were not computed ("" when they were).
    noise_curve, noise_summary: `noise_scale.noise_scale_curve` / `_summary` (None
      without a finite ``noise_scale`` history column): its spread over training.
    noise_at_target, noise_effect: `noise_scale.noise_scale_at_target` and
      `noise_scale.noise_scale_aug_effect` (B_simple per aug at equal progress with
      an interval over seeds, and each aug's ratio to the reference, paired by seed;
      None without a noise scale or a ``val_loss`` history column).
  """
  members: pd.DataFrame
  status_source: str
  metric: str
  n_boot: int
  reference_aug: float | None
  n_seeds: int
  best_lr: pd.DataFrame
  scaling: pd.DataFrame
  scaling_band: pd.DataFrame
  max_stable: pd.DataFrame
  aug_effect: pd.DataFrame | None
  aug_pooled: pd.DataFrame | None
  target: float | None
  best_steps: pd.DataFrame | None
  critical_batch: pd.DataFrame | None
  steps_note: str
  noise_curve: pd.DataFrame | None
  noise_summary: pd.DataFrame | None
  noise_at_target: pd.DataFrame | None
  noise_effect: pd.DataFrame | None


class _Inputs(NamedTuple):
  """What every estimator of `estimate` reads."""
  members: pd.DataFrame          # prepared, with a status column
  history: pd.DataFrame | None
  metric: str
  reference_aug: float | None
  target: float | None
  n_boot: int
  rng_seed: int
  lr_fit: optima.BestLrFit       # shared by the best LR, scaling and aug effect


def _best_lr_estimates(x: _Inputs) -> dict:
  scaling = optima.scaling_fit(x.members, None, x.metric, x.n_boot, x.rng_seed, fit=x.lr_fit)
  return {"best_lr": x.lr_fit.table, "scaling": scaling.table, "scaling_band": scaling.band}


def _stability_estimates(x: _Inputs) -> dict:
  return {"max_stable": stability.max_stable_lr(x.members)}


def _aug_estimates(x: _Inputs) -> dict:
  """The aug effect against the reference (default the smallest level); None with one."""
  levels = np.sort(x.members["aug"].astype(float).unique())
  if len(levels) < 2:
    return {"reference_aug": None, "aug_effect": None, "aug_pooled": None}
  reference = float(levels[0]) if x.reference_aug is None else x.reference_aug
  fit = stability.aug_effect_fit(x.members, x.metric, reference, x.n_boot, x.rng_seed,
                                 fit=x.lr_fit)
  return {"reference_aug": reference, "aug_effect": fit.per_batch, "aug_pooled": fit.pooled}


def _steps_estimates(x: _Inputs) -> dict:
  """Steps to target and B_crit, or a note saying why the history does not give them."""
  none = {"target": None, "best_steps": None, "critical_batch": None}
  if x.history is None or x.history.empty:
    return {**none, "steps_note": "no history"}
  if STEPS_METRIC not in x.history.columns or "member" not in x.members.columns:
    return {**none, "steps_note": f"the history has no {STEPS_METRIC!r} column"}
  try:
    # Without an explicit target, each aug (and extra-axes) group gets its own: the
    # hardest level all its batch sizes reach (stronger augmentation ends higher),
    # and easier ones (B_crit grows as the target gets harder; McCandlish et al.).
    steps = critical_batch.steps_to_target(
        x.history, x.members, x.target, STEPS_METRIC,
        by=None if x.target is not None else ["aug", *stats.extra_axes(x.members)],
        n_easier=0 if x.target is not None else critical_batch.N_EASIER)
  except ConfigError as e:
    return {**none, "steps_note": str(e)}
  levels = steps["target"].dropna().unique()
  fit = critical_batch.best_steps_fit(steps, x.n_boot, x.rng_seed)
  return {"target": float(levels[0]) if len(levels) == 1 else None,
          "best_steps": fit.table, "critical_batch": critical_batch.critical_batch_from_fit(fit),
          "steps_note": ""}


def _noise_estimates(x: _Inputs) -> dict:
  """The noise scale, when the history has a finite ``noise_scale`` column: its spread
  over training, and per aug at equal progress (the steps-to-target metric)."""
  none = dict.fromkeys(("noise_curve", "noise_summary", "noise_at_target", "noise_effect"))
  h = x.history
  if (h is None or "noise_scale" not in h.columns or "member" not in x.members.columns
      or not np.isfinite(h["noise_scale"].to_numpy(float)).any()):
    return none
  summary = noise_scale.noise_scale_summary(h, x.members)
  if summary.empty:
    return none
  out = {**none, "noise_curve": noise_scale.noise_scale_curve(h, x.members),
         "noise_summary": summary}
  if STEPS_METRIC in h.columns and "final_val_loss" in x.members.columns:
    per_seed = noise_scale.noise_scale_per_seed(h, x.members, x.target, STEPS_METRIC)
    if not per_seed.empty:
      out["noise_at_target"] = noise_scale.noise_scale_at_target(per_seed)
      out["noise_effect"] = noise_scale.noise_scale_aug_effect(per_seed, x.reference_aug)
  return out


# Each fills its fields of `Estimates`.
ESTIMATORS = (_best_lr_estimates, _stability_estimates, _aug_estimates, _steps_estimates,
              _noise_estimates)


def estimate(members: pd.DataFrame, history: pd.DataFrame | None = None, *,
             metric: str = "final_val_loss", num_classes: int | None = None,
             num_val: int | None = None, reference_aug: float | None = None,
             target: float | None = None, n_boot: int = 1000,
             rng_seed: int = 0) -> Estimates:
  """Runs every estimator on a run's tables, sharing the bootstrap draws.

  Its nine parameters are the two tables and, keyword-only, the settings of the
  estimators it runs (`ESTIMATORS`), each passed through once.

  Args:
    members: the members table.
    history: the history table (optional; needed for steps to target and the noise
      scale).
    metric: the members metric for best LRs (losses minimised).
    num_classes, num_val: when the table has no ``status`` column but has training
      losses, members are labelled with these by `lrjax.outcomes.member_status`;
      otherwise only diverged members are excluded (`stats.with_status`).
    reference_aug: baseline for aug effects; default the smallest aug level.
    target: steps-to-target level; default: per aug (and extra-axes) group,
      `critical_batch.default_target` of the group.
    n_boot: bootstrap replicates.
    rng_seed: seed of the bootstrap draws.

  Returns:
    An `Estimates`.

  Raises:
    ConfigError: a column is missing, the metric is unknown, or a setting repeats.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> e = estimate(synthetic_members(batch_sizes=(64, 128, 256)), n_boot=100)
    >>> e.scaling["verdict"].tolist(), e.aug_effect is None, e.best_steps is None
    (['sqrt'], True, True)
  """
  members, source = stats.with_status(stats.prepare_members(members), num_classes, num_val,
                                      loss_only=False)
  x = _Inputs(members, history, metric, reference_aug, target, n_boot, rng_seed,
              lr_fit=optima.best_lr_fit(members, metric, n_boot, rng_seed))
  fields = {}
  for estimator in ESTIMATORS:
    fields.update(estimator(x))
  return Estimates(members=members, status_source=source, metric=metric, n_boot=n_boot,
                   n_seeds=int(members["seed"].nunique()), **fields)


# ------------------------------------------------------------------- the advice rule


def edge_advice(kind: str, lr: float, beside: float) -> str:
  """What to run next when a cell's best LR sits at an edge of what trained.

  At the *grid's* edge (the best LR is the grid's own largest or smallest) the optimum
  may lie beyond it: widen ``grid.lr``. At the *stability* edge (the next grid LR up,
  or down, exists but not every seed trained there) widening shows nothing new: refine
  the LRs between the best one and the first failing one.

  Args:
    kind: comma-joined edge kinds of `lrjax.analysis.comparisons.best_lrs`
      (``grid_high``, ``grid_low``, ``stability_high``, ``stability_low``).
    lr: the best grid LR.
    beside: the first failing LR next to it (stability edges).

  Example:
    >>> edge_advice("stability_high", 0.1, 0.3)
    'the next LR up, 0.3, fails: refine grid.lr between 0.1 and 0.3 (widening it would not help)'
    >>> edge_advice("grid_high", 0.1, float("nan"))
    "0.1 is the grid's largest LR: widen grid.lr above 0.1"
  """
  out = []
  for k in kind.split(","):
    if k == "grid_high":
      out.append(f"{fmt(lr)} is the grid's largest LR: widen grid.lr above {fmt(lr)}")
    elif k == "grid_low":
      out.append(f"{fmt(lr)} is the grid's smallest LR: widen grid.lr below {fmt(lr)}")
    elif k == "stability_high":
      out.append(f"the next LR up, {fmt(beside)}, fails: refine grid.lr between "
                 f"{fmt(lr)} and {fmt(beside)} (widening it would not help)")
    elif k == "stability_low":
      out.append(f"the next LR down, {fmt(beside)}, fails: refine grid.lr between "
                 f"{fmt(beside)} and {fmt(lr)}")
  return "; ".join(out)


def best_lr_edges(e: Estimates) -> pd.DataFrame:
  """``e.best_lr`` with where each cell's best LR sits among the LRs that trained.

  Adds ``edge_kind`` (``""`` for an interior optimum, else the kinds of
  `lrjax.analysis.comparisons.best_lrs`), ``beside`` (the failing LR next to a
  stability edge), ``usable_min``/``usable_max`` (the smallest and largest LR at which
  every seed counts), ``below``/``above`` (the grid LRs next to the best one) and
  ``lr_min`` (the cell's smallest LR).

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> m = synthetic_members(batch_sizes=(64,), lrs=(0.0025, 0.005, 0.01, 0.02),
    ...                       seeds=(0, 1), diverge_factor=1.5)
    >>> best_lr_edges(estimate(m, n_boot=0))[["grid_best_lr", "edge_kind", "beside"]].values.tolist()
    [[0.01, 'stability_high', 0.02]]
  """
  t = e.best_lr
  cols = list(t.columns[:list(t.columns).index("best_lr")])
  means = comparisons.lr_means(e.members, e.metric, cols)
  groups = {k if isinstance(k, tuple) else (k,): g.sort_values("lr")
            for k, g in means.groupby(cols, dropna=False, sort=True)}
  extra = {c: [] for c in ("edge_kind", "beside", "usable_min", "usable_max", "below",
                           "above", "lr_min")}
  for _, r in t.iterrows():
    g = groups[tuple(r[c] for c in cols)]
    lrs, usable = g["lr"].to_numpy(float), g["usable"].to_numpy(bool)
    kind, beside, below, above = "", np.nan, np.nan, np.nan
    if np.isfinite(r["grid_best_lr"]) and usable.any():
      i = int(np.argmin(np.abs(np.log(lrs) - np.log(r["grid_best_lr"]))))
      if bool(r["edge"]):
        kind, beside = comparisons.lr_edge(lrs, usable, i)
      below = lrs[i - 1] if i > 0 else np.nan
      above = lrs[i + 1] if i + 1 < len(lrs) else np.nan
    for c, v in (("edge_kind", kind), ("beside", beside),
                 ("usable_min", lrs[usable].min() if usable.any() else np.nan),
                 ("usable_max", lrs[usable].max() if usable.any() else np.nan),
                 ("below", below), ("above", above), ("lr_min", lrs.min())):
      extra[c].append(v)
  return t.assign(**extra)


def with_metric(e: Estimates, metric: str, rng_seed: int = 0) -> Estimates:
  """``e`` with its metric-dependent estimates (best LR, scaling, aug effect) redone on
  another metric, on the same seed draws; stability, steps and noise scale are kept.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> e = estimate(synthetic_members(batch_sizes=(64, 128, 256)), n_boot=50)
    >>> with_metric(e, "best_val_loss").metric
    'best_val_loss'
  """
  stats.check_metric(e.members, metric)
  x = _Inputs(e.members, None, metric, e.reference_aug, None, e.n_boot, rng_seed,
              lr_fit=optima.best_lr_fit(e.members, metric, e.n_boot, rng_seed))
  fields = {**_best_lr_estimates(x), **_aug_estimates(x)}
  return e._replace(metric=metric, **fields)
