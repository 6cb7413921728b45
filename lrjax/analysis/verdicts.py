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
from lrjax.analysis import comparisons
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


# ------------------------------------------------------------------- sentences


def _status_findings(e: Estimates) -> list[str]:
  m = e.members
  if e.status_source.startswith("diverged flag"):
    n_div = int((m["status"] == "diverged").sum())
    return [f"Of {len(m)} members, {n_div} diverged; only non-diverged members count."]
  c = m["status"].value_counts()
  rule = e.status_source.split(": ", 1)[1] if ": " in e.status_source else ""
  why = f" ({rule})" if e.status_source.startswith("derived") else ""
  return [f"Of {len(m)} members, {c.get('trained', 0)} trained, {c.get('slow', 0)} slow "
          f"(learned, far from converged), {c.get('failed', 0)} failed and "
          f"{c.get('diverged', 0)} diverged{why}; trained and slow members count as "
          "stable, and the estimates use both."]


def _seeds_findings(e: Estimates) -> list[str]:
  if e.n_seeds <= 1:
    return ["Only one seed per cell: point estimates only; there are no intervals, so "
            "every verdict of this run is 'not settled'. Run at least 3 seeds."]
  if e.n_seeds < 5:
    return [f"Intervals are 95% seed-bootstrap intervals over only {e.n_seeds} seeds, "
            f"widened ×{stats.small_sample_factor(e.n_seeds):.2g} for the small sample; "
            "they still rest on these seeds being typical."]
  return []


def _group_of(row: pd.Series, first_value: str) -> str:
  cols = list(row.index[:list(row.index).index(first_value)])
  return group_label(cols, row[cols].tolist())


def _best_lr_findings(e: Estimates) -> list[str]:
  """Cells whose best LR is at an edge, with the advice rule (`edge_advice`), and cells
  with no usable LR."""
  out = []
  edges = best_lr_edges(e)
  edges = edges[edges["edge_kind"] != ""]
  cols = list(e.best_lr.columns[:list(e.best_lr.columns).index("best_lr")])
  grid = edges[edges["edge_kind"].str.contains("grid")]
  stable = edges[~edges["edge_kind"].str.contains("grid")]
  for name, rows, why in (
      ("Grid edge", grid, "the best LR is the smallest or largest LR of the grid, so "
       "it is a bound, not an optimum, and is left out of the scaling fit"),
      ("Stability edge", stable, "the best LR is the largest (or smallest) LR at which "
       "every seed trained and the next grid LR beyond it fails, so the optimum sits at "
       "the stability edge and is left out of the scaling fit")):
    if rows.empty:
      continue
    cells = "; ".join(
        f"{group_label(cols, [r[c] for c in cols])}: "
        f"{edge_advice(r['edge_kind'], r['grid_best_lr'], r['beside'])}"
        for _, r in rows.head(4).iterrows())
    more = f"; and {len(rows) - 4} more" if len(rows) > 4 else ""
    out.append(f"{name}: in {len(rows)} of {len(e.best_lr)} cells {why} ({cells}{more}).")
  empty = e.best_lr["best_lr"].isna()
  if empty.any():
    out.append(f"No usable LR (every LR lost a seed) in {int(empty.sum())} of "
               f"{len(e.best_lr)} cells.")
  return out


def _scaling_findings(e: Estimates) -> list[str]:
  if e.members["batch_size"].nunique() < 2:  # one batch size: no slope to speak of
    return []
  out = []
  for _, r in e.scaling.iterrows():
    verdict = {"linear": "consistent with linear scaling, not square-root",
               "sqrt": "consistent with square-root scaling, not linear",
               "neither": "neither linear nor square-root"}.get(r["verdict"], "not settled")
    out.append(f"Best LR vs batch size at {_group_of(r, 'alpha')}: exponent "
               f"{interval_text(r['alpha'], r['alpha_lo'], r['alpha_hi'])} — {verdict}: "
               f"{r['reason']}.")
  return out


def _stable_cell_text(r: pd.Series) -> str:
  """One cell's max stable LR: estimate, interval, the grid LRs around it, censoring."""
  n, above, below = (int(r[c]) for c in ("n_seeds", "n_censored_above", "n_censored_below"))
  head = f"batch {fmt(r['batch_size'])}: "
  if below == n:
    return head + (f"below the grid's smallest LR {fmt(r['bracket_hi'])} (no seed is "
                   "stable at any LR)")
  est = (f"{fmt(r['max_stable_lr'])} (one seed: no interval)" if n == 1 else
         interval_text(r["max_stable_lr"], r["max_stable_lr_lo"], r["max_stable_lr_hi"]))
  place = (f"at the grid's largest LR {fmt(r['bracket_lo'])}" if pd.isna(r["bracket_hi"])
           else f"between grid LRs {fmt(r['bracket_lo'])} and {fmt(r['bracket_hi'])}")
  out = f"{head}{est}, {place}"
  if above:
    out += f"; above the grid's largest LR for {above} of {n} seeds: a lower bound only"
  if below:
    out += f"; below the grid's smallest LR for {below} of {n} seeds: an upper bound only"
  return out


def _stability_findings(e: Estimates) -> list[str]:
  """The max stable LR of every cell, one sentence per aug level (and extra axes)."""
  t = e.max_stable
  cols = list(t.columns[:list(t.columns).index("max_stable_lr")])
  group_cols = [c for c in cols if c != "batch_size"]
  out = []
  for key, g in t.groupby(group_cols, dropna=False, sort=True):
    key = key if isinstance(key, tuple) else (key,)
    cells = "; ".join(_stable_cell_text(r) for _, r in g.iterrows())
    out.append(f"Max stable LR at {group_label(group_cols, list(key))} (per seed, the "
               "limit lies between its largest stable LR and the next grid LR; geometric "
               "mean over seeds, with a 95% interval counting the seeds and the grid "
               f"resolution): {cells}.")
  return out


def _stable_effect_text(r: pd.Series) -> str:
  """The pooled aug effect on the max stable LR: ratio, interval, what it rests on."""
  n = int(r["n_log_max_stable_lr"])
  if not n:
    return ("not measured (at every batch size, for some seed both aug levels are "
            "stable up to the top of the LR grid or neither is stable at any LR)")
  lo, hi = r["d_log_max_stable_lr_lo"], r["d_log_max_stable_lr_hi"]
  text = ("×" + interval_text(r["d_log_max_stable_lr"], lo, hi, np.exp)
          + f" (paired by seed, over {n} batch size{'s' if n > 1 else ''}")
  if np.isinf(lo) or np.isinf(hi):
    text += "; one-sided: some seed's limit lies beyond the grid"
  return text + ")"


def _aug_findings(e: Estimates) -> list[str]:
  if e.aug_pooled is None:
    return []
  out = []
  for _, r in e.aug_pooled.iterrows():
    lr_txt = interval_text(r["d_log_best_lr"], r["d_log_best_lr_lo"],
                           r["d_log_best_lr_hi"], np.exp)
    st_txt = _stable_effect_text(r)
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
  if e.noise_at_target is None:
    return [f"Gradient noise scale B_simple at {_group_of(r, 'noise_scale')}: median "
            f"{fmt(r['noise_scale'])} over training (middle half of the evaluations "
            f"{fmt(r['spread_lo'])}–{fmt(r['spread_hi'])}), from {int(r['n_members'])} "
            "members; a spread, not a confidence interval (no val_loss history to "
            "align progress by)." for _, r in e.noise_summary.iterrows()]
  out = [f"Gradient noise scale B_simple at {_group_of(r, 'noise_scale')}, where each "
         f"best-LR member first reaches val_loss {fmt(r['target'])}: "
         f"{interval_text(r['noise_scale'], r['lo'], r['hi'])} (geometric mean over "
         f"{int(r['n_seeds'])} seeds, {int(r['n_members'])} members)."
         for _, r in e.noise_at_target.iterrows()]
  for _, r in (e.noise_effect if e.noise_effect is not None else pd.DataFrame()).iterrows():
    ratio = "×" + interval_text(r["ratio"], r["lo"], r["hi"])
    said = ("raised" if r["verdict"] == "higher" else "lowered" if r["verdict"] == "lower"
            else "changed")
    out.append(f"Aug {fmt(r['aug'])} vs {fmt(r['reference_aug'])} {said} B_simple at "
               f"equal progress by {ratio} (paired by seed)"
               + (" — not settled: the interval includes ×1; more seeds would settle it."
                  if r["verdict"] == "not settled" else "."))
  return out


# Each gives its sentences, in this order.
FINDINGS = (_status_findings, _seeds_findings, _best_lr_findings, _scaling_findings,
            _stability_findings, _aug_findings, _critical_batch_findings, _noise_findings)


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


# ----------------------------------------------------------- ordering the findings

# The question each sentence function of FINDINGS answers, by name (a new estimator's
# sentences need only an entry here); unnamed ones are exploratory (noise scale).
FINDING_QUESTIONS = {"_best_lr_findings": "best_lr", "_scaling_findings": "scaling",
                     "_aug_findings": "aug_effect", "_stability_findings": "max_stable_lr",
                     "_critical_batch_findings": "b_crit"}
# Context for every verdict (member status, seeds): the notes after the findings.
NOTE_FINDINGS = ("_status_findings", "_seeds_findings")
# Sentences a primary question's decisions restate at the family-wise level; dropped
# when the question is primary (the others carry more and stay, as exploratory).
RESTATED_BY_DECISIONS = ("_best_lr_findings", "_scaling_findings")


def findings_by_function(e: Estimates) -> dict[str, list[str]]:
  """The sentences of `findings_from`, keyed by the FINDINGS function that wrote them.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> e = estimate(synthetic_members(batch_sizes=(64, 128, 256)), n_boot=50)
    >>> list(findings_by_function(e))[:2]
    ['_status_findings', '_seeds_findings']
  """
  return {f.__name__: f(e) for f in FINDINGS}


def ranked_findings(e: Estimates, primary: dict[str, list[str]],
                    exploratory: dict[str, list[str]], strength: dict[str, float],
                    headline: list[str]) -> dict[str, list[str]]:
  """The findings in order: headline, primary, exploratory (strongest first), notes.

  Args:
    e: the estimates (their FINDINGS sentences fill in the exploratory part).
    primary: question -> its family-wise sentences, in the config's question order
      (the first key may be ``""``: the family's description).
    exploratory: question -> sentences of the decisions that are not primary (those of
      the arms are used; the other questions speak through their FINDINGS sentences).
    strength: question -> smallest p-value of its decisions (NaN: no test), ranking the
      exploratory questions.
    headline: the headline sentences.

  Returns:
    ``{"headline", "primary", "exploratory", "notes"}`` -> sentences.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> e = estimate(synthetic_members(batch_sizes=(64, 128, 256)), n_boot=50)
    >>> r = ranked_findings(e, {"scaling": ["S."]}, {}, {}, ["H."])
    >>> r["headline"], r["primary"], r["notes"][0][:15]
    (['H.'], ['S.'], 'Of 270 members,')
  """
  by_fn = findings_by_function(e)
  groups: dict[str, list[str]] = {}
  for name, sentences in by_fn.items():
    if name in NOTE_FINDINGS or not sentences:
      continue
    q = FINDING_QUESTIONS.get(name, "")
    if q in primary and name in RESTATED_BY_DECISIONS:
      continue
    groups.setdefault(q, []).extend(sentences)
  for q, sentences in exploratory.items():
    if q.startswith("arms:"):  # the other questions speak through their FINDINGS
      groups.setdefault(q, []).extend(sentences)
  order = sorted(groups, key=lambda q: (not np.isfinite(strength.get(q, np.nan)),
                                        strength.get(q, np.inf)))
  ranked = [s for q in order for s in groups[q]]
  if ranked:
    ranked.insert(0, "The findings below are exploratory: 95% intervals, not corrected "
                     "for multiplicity; read them as leads, not answers.")
  return {"headline": list(headline), "primary": [s for v in primary.values() for s in v],
          "exploratory": ranked,
          "notes": [s for name in NOTE_FINDINGS for s in by_fn.get(name, [])]}
