"""Every estimate of a run at once (`estimate`), and its verdicts as sentences (`findings`).

Each sentence states a verdict with its 95% interval, or says plainly that the run
does not settle the question and why. See `lrjax.analysis.stats` for the conventions.

An estimate is an estimator in its own module, fields of `Estimates` filled by one
function in `ESTIMATORS`, and its sentences from one function in `FINDINGS`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from lrjax.analysis import critical_batch, noise_scale, optima, stability, stats
from lrjax.analysis.stats import fmt, group_label, interval_text
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
      without a finite ``noise_scale`` history column).
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
    # hardest level all its batch sizes reach (stronger augmentation ends higher).
    steps = critical_batch.steps_to_target(
        x.history, x.members, x.target, STEPS_METRIC,
        by=None if x.target is not None else ["aug", *stats.extra_axes(x.members)])
  except ConfigError as e:
    return {**none, "steps_note": str(e)}
  levels = steps["target"].dropna().unique()
  fit = critical_batch.best_steps_fit(steps, x.n_boot, x.rng_seed)
  return {"target": float(levels[0]) if len(levels) == 1 else None,
          "best_steps": fit.table, "critical_batch": critical_batch.critical_batch_from_fit(fit),
          "steps_note": ""}


def _noise_estimates(x: _Inputs) -> dict:
  """The noise scale, when the history has a finite ``noise_scale`` column."""
  none = {"noise_curve": None, "noise_summary": None}
  h = x.history
  if (h is None or "noise_scale" not in h.columns or "member" not in x.members.columns
      or not np.isfinite(h["noise_scale"].to_numpy(float)).any()):
    return none
  summary = noise_scale.noise_scale_summary(h, x.members)
  if summary.empty:
    return none
  return {"noise_curve": noise_scale.noise_scale_curve(h, x.members), "noise_summary": summary}


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


# ------------------------------------------------------------------- sentences


def _status_findings(e: Estimates) -> list[str]:
  m = e.members
  if e.status_source.startswith("diverged flag"):
    n_div = int((m["status"] == "diverged").sum())
    return [f"Of {len(m)} members, {n_div} diverged; only non-diverged members count."]
  c = m["status"].value_counts()
  why = (" (training loss fell < 10% or accuracy within 2 SE of chance)"
         if "chance" in e.status_source and "unknown" not in e.status_source else
         " (training loss fell < 10%)" if e.status_source.startswith("derived") else "")
  return [f"Of {len(m)} members, {c.get('trained', 0)} trained, {c.get('diverged', 0)} "
          f"diverged and {c.get('failed', 0)} failed{why}; only trained members count."]


def _seeds_findings(e: Estimates) -> list[str]:
  if e.n_seeds <= 1:
    return ["Only one seed per cell: point estimates only; there are no intervals, so "
            "every verdict below is 'not settled'. Run at least 3 seeds."]
  if e.n_seeds < 5:
    return [f"Intervals are 95% seed-bootstrap intervals over only {e.n_seeds} seeds, "
            f"widened ×{stats.small_sample_factor(e.n_seeds):.2g} for the small sample; "
            "they still rest on these seeds being typical."]
  return []


def _group_of(row: pd.Series, first_value: str) -> str:
  cols = list(row.index[:list(row.index).index(first_value)])
  return group_label(cols, row[cols].tolist())


def _best_lr_findings(e: Estimates) -> list[str]:
  """Cells whose best LR is at the grid edge, and cells with no usable LR."""
  out = []
  edges = e.best_lr[e.best_lr["edge"].astype(bool)]
  if len(edges):
    cells = "; ".join(_group_of(r, "best_lr") for _, r in edges.head(4).iterrows())
    more = f" and {len(edges) - 4} more" if len(edges) > 4 else ""
    out.append(f"Grid edge: in {len(edges)} of {len(e.best_lr)} cells ({cells}{more}) the "
               "best LR is the smallest or largest usable LR, so it is a bound, not an "
               "optimum, and is left out of the scaling fit; widen grid.lr.")
  empty = e.best_lr["best_lr"].isna()
  if empty.any():
    out.append(f"No usable LR (every LR lost a seed) in {int(empty.sum())} of "
               f"{len(e.best_lr)} cells.")
  return out


def _scaling_findings(e: Estimates) -> list[str]:
  out = []
  for _, r in e.scaling.iterrows():
    verdict = {"linear": "consistent with linear scaling, not square-root",
               "sqrt": "consistent with square-root scaling, not linear",
               "neither": "neither linear nor square-root"}.get(r["verdict"], "not settled")
    out.append(f"Best LR vs batch size at {_group_of(r, 'alpha')}: exponent "
               f"{interval_text(r['alpha'], r['alpha_lo'], r['alpha_hi'])} — {verdict}: "
               f"{r['reason']}.")
  return out


def _aug_findings(e: Estimates) -> list[str]:
  if e.aug_pooled is None:
    return []
  out = []
  for _, r in e.aug_pooled.iterrows():
    lr_txt = interval_text(r["d_log_best_lr"], r["d_log_best_lr_lo"],
                           r["d_log_best_lr_hi"], np.exp)
    st_txt = ("×" + interval_text(r["d_log_max_stable_lr"], r["d_log_max_stable_lr_lo"],
                                  r["d_log_max_stable_lr_hi"], np.exp)
              if int(r["n_log_max_stable_lr"]) else
              "not measured (at every batch size one aug level is stable up to the top "
              "of the LR grid, or nothing is stable)")
    m_txt = interval_text(r["d_best_metric"], r["d_best_metric_lo"], r["d_best_metric_hi"])
    extra = _group_of(r, "reference_aug").split(", ")[1:]
    at = f" at {', '.join(extra)}" if extra else ""
    out.append(
        f"Aug {fmt(r['aug'])} vs {fmt(e.reference_aug)}{at} (mean over "
        f"{int(r['n_batch_sizes'])} batch sizes with interior optima): best LR ×{lr_txt} — "
        f"{r['verdict']}; max stable LR {st_txt} — {r['max_stable_verdict']}; "
        f"best {e.metric} change {m_txt} — {r['metric_verdict']}.")
  return out


def _critical_batch_findings(e: Estimates) -> list[str]:
  if e.critical_batch is None:
    if e.steps_note and e.steps_note != "no history":
      return [f"Critical batch size: not settled ({e.steps_note})."]
    return []
  out = []
  for _, r in e.critical_batch.iterrows():
    head = (f"Critical batch size at {_group_of(r, 'b_crit')} (target {STEPS_METRIC} ≤ "
            f"{fmt(r.get('target', e.target))}): ")
    if r["reason"].startswith("not settled"):
      out.append(head + r["reason"] + ".")
    else:
      b_crit = interval_text(r["b_crit"], r["b_crit_lo"], r["b_crit_hi"])
      out.append(head + f"B_crit ≈ {b_crit}, S_min ≈ {fmt(r['s_min'])} steps; "
                 f"{r['reason']}.")
  return out


def _noise_findings(e: Estimates) -> list[str]:
  if e.noise_summary is None:
    return []
  return [f"Gradient noise scale B_simple at {_group_of(r, 'noise_scale')}: median "
          f"{fmt(r['noise_scale'])} over training (middle half of the evaluations "
          f"{fmt(r['spread_lo'])}–{fmt(r['spread_hi'])}; first {fmt(r['first'])}, last "
          f"{fmt(r['last'])}), from {int(r['n_members'])} trained members; a spread, not a "
          "confidence interval." for _, r in e.noise_summary.iterrows()]


# Each gives its sentences, in this order.
FINDINGS = (_status_findings, _seeds_findings, _best_lr_findings, _scaling_findings,
            _aug_findings, _critical_batch_findings, _noise_findings)


def findings_from(e: Estimates) -> list[str]:
  """The sentences of `findings`, from an `Estimates` already computed.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> e = estimate(synthetic_members(batch_sizes=(64, 128, 256)), n_boot=100)
    >>> findings_from(e)[0]
    'Of 270 members, 0 diverged; only non-diverged members count.'
  """
  return [sentence for sentences in FINDINGS for sentence in sentences(e)]


def findings(members: pd.DataFrame, history: pd.DataFrame | None = None, *,
             metric: str = "final_val_loss", num_classes: int | None = None,
             num_val: int | None = None, reference_aug: float | None = None,
             target: float | None = None, n_boot: int = 1000,
             rng_seed: int = 0) -> list[str]:
  """Plain-English findings, each a verdict with its 95% interval.

  Its nine parameters are those of `estimate`, passed through.

  Covers member status, best LRs at the grid edge, the best-LR vs batch-size
  exponent per group, the pooled effect of each aug level, the critical batch size
  (when ``history`` has ``val_loss``) and the gradient noise scale (when the history
  has ``noise_scale``). Anything the data cannot decide is said to be "not
  settled", with why.

  Args:
    members: the members table.
    history: the history table (optional).
    metric: the members metric for best LRs.
    num_classes, num_val: when the table has no ``status`` column, members are
      labelled by `lrjax.outcomes.member_status` with these (`stats.with_status`).
    reference_aug: baseline for aug effects (default the smallest level).
    target: steps-to-target level (default: per aug group, see `estimate`).
    n_boot: bootstrap replicates.
    rng_seed: seed of the bootstrap draws.

  Returns:
    A list of sentences.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(64, 128), seeds=(0,), noise=0.0)
    >>> for s in findings(t, n_boot=50): print(s)  # doctest: +ELLIPSIS
    Of 56 members, 0 diverged; only non-diverged members count.
    Only one seed per cell: point estimates only; there are no intervals...
    Best LR vs batch size at aug 0: exponent 0.5 (no interval) — not settled: only 2 of 2 ...
  """
  return findings_from(estimate(
      members, history, metric=metric, num_classes=num_classes, num_val=num_val,
      reference_aug=reference_aug, target=target, n_boot=n_boot, rng_seed=rng_seed))
