"""An experiment's questions as decisions, the primary family Holm-corrected, and the headline.

Each question of the catalog (`lrjax.analysis.analysis_settings.QUESTIONS`) yields one
decision per cell it is asked about (`decisions`): an estimate with its interval, a
p-value, and the verdict it supports on its own at 95%.

* ``best_lr``: the best LR of a cell; the test is that it lies inside the LR grid
  (both one-sided tests against the smallest and the largest usable LR reject). At an
  edge there is no test, and the advice says what to run (`verdicts.edge_advice`).
* ``scaling``: the exponent α; "linear" rejects α = 0.5, "sqrt" rejects α = 1,
  "neither" rejects both (its p is the larger one).
* ``aug_effect``: the ratio of best LRs; "raised"/"lowered" reject a ratio of 1,
  "equivalent" shows it within ×/÷ ``lr_equivalence_factor`` (two one-sided tests).
* ``arms:<axis>``: the paired difference of `lrjax.analysis.comparisons`; "different"
  rejects 0, "equivalent" shows it within ±``equivalence_margin``.
* ``max_stable_lr`` and ``b_crit``: estimates without a test.

A decision claims one of two hypotheses that cannot both be false (α = 0.5 or α = 1;
"no difference" or "a difference beyond the margin"), so its p is that of the claim it
makes (the smaller one when it makes none). Bootstrap estimates have no p-value of
their own; `p_from_interval` derives one consistent with the interval: with the
interval's half-width on the side facing the null value read as ``q · se``, ``q`` the
two-sided 95% quantile of Student's t with ``n_seeds − 1`` degrees of freedom (the
bootstrap intervals are widened to that t interval, `stats.small_sample_factor`), or of
the normal distribution when the degrees of freedom are unknown. The interval
excludes the null value exactly when that p is below 0.05.

The decisions of the primary questions (fixed by the config before the run, never by
the data) form one family (`family_table`): Holm's step-down over all of them
(`inference.holm`; a decision without a test counts with p = 1, so the family size is
the number of decisions), and their intervals at `inference.simultaneous_level` of
the family size. A primary verdict stands only when Holm rejects its null;
everything else is exploratory, at 95% and uncorrected.
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from lrjax.analysis import comparisons as comparisons_lib
from lrjax.analysis import inference, stats, verdicts
from lrjax.analysis.analysis_settings import ARMS_PREFIX, AnalysisSettings
from lrjax.analysis.stats import fmt, group_label

ALPHA = 1 - inference.LEVEL
MAX_SEEDS = 1000


class Decision(NamedTuple):
  """One decision of a question about one cell.

  Attributes:
    question: its catalog name (``"scaling"``, ``"arms:schedule"``, ...).
    cell: what it is about, as text (``"aug 0"``, ``"batch_size 64, aug 0"``).
    metric: the members metric it rests on.
    subject: the sentence's head, before the value.
    estimate, lo, hi: the estimate and its 95% interval (LRs and ratios as such).
    n_seeds: seeds behind it.
    p: the p-value of its claim (NaN: no test).
    claim: its verdict alone at 95% (``"linear"``, ``"different"``, ``"not settled"``,
      ``"at the grid edge"``, ...).
    words: the claim in words for the sentence.
    advice: what, besides more seeds, would settle it ("" if nothing to add).
    target: the half-width (on the test scale) that would settle it (NaN: more seeds
      would not).
    log: the test scale is log (LRs and ratios).
    widen: the interval is statistical (rescaled at other levels); False for grid
      brackets.
    ratio: shown as ``×value``.
  """
  question: str
  cell: str
  metric: str
  subject: str
  estimate: float
  lo: float
  hi: float
  n_seeds: int
  p: float
  claim: str
  words: str
  advice: str = ""
  target: float = math.nan
  log: bool = False
  widen: bool = True
  ratio: bool = False


# ------------------------------------------------------------------ p from intervals


def quantile(level: float, df: float | None = None) -> float:
  """The two-sided ``level`` quantile: Student's t with ``df`` degrees of freedom, or
  the normal one when ``df`` is None or below 1.

  Example:
    >>> round(quantile(0.95), 3), round(quantile(0.95, 2), 3)
    (1.96, 4.303)
  """
  if df is None or not np.isfinite(df) or df < 1:
    return float(scipy_stats.norm.ppf(0.5 + level / 2))
  return inference.t_quantile(level, int(df))


def _sf(z: float, df) -> float:
  if df is None or not np.isfinite(df) or df < 1:
    return float(scipy_stats.norm.sf(z))
  return float(scipy_stats.t.sf(z, int(df)))


def _one_sided(estimate: float, bound: float, null: float, df, below: bool) -> float:
  """p of ``H0: θ ≤ null`` (``below``; ``bound`` the interval's lower end) or of
  ``H0: θ ≥ null`` (``bound`` its upper end), the standard error read from the
  distance between the estimate and ``bound``: ``|estimate − bound| / quantile``."""
  if np.isnan(estimate) or np.isnan(bound) or np.isnan(null):
    return math.nan
  z_num = (estimate - null) if below else (null - estimate)
  se = abs(estimate - bound) / quantile(inference.LEVEL, df)
  tol = 1e-9 * max(1.0, abs(estimate))  # a noise-free fit lands a rounding error off
  if se <= tol:
    return 0.0 if z_num > tol else 1.0
  return _sf(z_num / se, df)


def p_from_interval(estimate: float, lo: float, hi: float, null: float,
                    df: float | None = None) -> float:
  """Two-sided p-value of ``θ = null`` consistent with a 95% interval ``[lo, hi]``.

  The half-width on the null's side is ``quantile(0.95, df) · se``; ``p = 2 P(T >
  |estimate − null| / se)``, so ``p < 0.05`` exactly when the interval excludes
  ``null``. NaN when the estimate or that bound is NaN.

  Example:
    >>> round(p_from_interval(1.0, 0.8, 1.2, null=0.5), 6) < 0.05
    True
    >>> round(p_from_interval(1.0, 0.5, 1.5, null=0.5), 3)  # null on the bound
    0.05
  """
  below = null <= estimate
  one = _one_sided(estimate, lo if below else hi, null, df, below)
  return math.nan if np.isnan(one) else min(1.0, 2 * one)


def tost_from_interval(estimate: float, lo: float, hi: float, margin: float,
                       df: float | None = None) -> float:
  """p of equivalence within ``±margin`` (two one-sided tests) from a 95% interval.

  Example:
    >>> tost_from_interval(0.0, -0.01, 0.01, margin=0.05) < 0.05
    True
    >>> tost_from_interval(0.0, -0.1, 0.1, margin=0.05) > 0.05
    True
  """
  p_lower = _one_sided(estimate, lo, -margin, df, below=True)   # H0: θ ≤ -margin
  p_upper = _one_sided(estimate, hi, margin, df, below=False)   # H0: θ ≥ margin
  if np.isnan(p_lower) or np.isnan(p_upper):
    return math.nan
  return max(p_lower, p_upper)


def rescale_interval(estimate: float, lo: float, hi: float, level: float,
                     df: float | None = None) -> tuple[float, float]:
  """A 95% interval stretched about its estimate to coverage ``level``.

  Example:
    >>> lo, hi = rescale_interval(0.0, -1.96, 1.96, level=0.99)
    >>> round(hi, 3)
    2.576
  """
  k = quantile(level, df) / quantile(inference.LEVEL, df)
  return estimate - k * (estimate - lo), estimate + k * (hi - estimate)


def seeds_needed(half: float, n: int, target: float, level: float = inference.LEVEL
                 ) -> int | None:
  """Seeds for a t interval of half-width ``half`` over ``n`` seeds to shrink to ``target``.

  Assumes the seeds' spread stays as it is; None when that needs over `MAX_SEEDS`, or
  when ``target`` is not positive.

  Example:
    >>> seeds_needed(half=0.3, n=3, target=0.1)
    9
  """
  if not (np.isfinite(half) and np.isfinite(target)) or target <= 0 or n < 2:
    return None
  if half <= target:
    return n
  sd_ = half * math.sqrt(n) / quantile(level, n - 1)
  for k in range(n + 1, MAX_SEEDS + 1):
    if quantile(level, k - 1) * sd_ / math.sqrt(k) <= target:
      return k
  return None


def _to_test(d: "Decision", x: float) -> float:
  """``x`` on the decision's test scale (log for LRs and ratios)."""
  if not d.log or np.isnan(x):
    return x
  return math.log(x) if x > 0 else -math.inf


# ------------------------------------------------------------------------ builders


def _df(n_seeds) -> float:
  return float(n_seeds) - 1 if np.isfinite(n_seeds) and n_seeds >= 2 else math.nan


def _cells_before(table: pd.DataFrame, first_value: str) -> list[str]:
  return list(table.columns[:list(table.columns).index(first_value)])


def _best_lr(e, settings: AnalysisSettings) -> list[Decision]:
  edges = verdicts.best_lr_edges(e)
  cols = _cells_before(e.best_lr, "best_lr")
  f = settings.lr_equivalence_factor
  out = []
  for _, r in edges.iterrows():
    cell = group_label(cols, [r[c] for c in cols])
    base = dict(question="best_lr", cell=cell, metric=e.metric, n_seeds=int(r["n_seeds"]),
                subject=f"Best LR at {cell} ({e.metric}):", log=True,
                estimate=r["best_lr"], lo=r["best_lr_lo"], hi=r["best_lr_hi"])
    if not np.isfinite(r["best_lr"]):
      out.append(Decision(**base, p=math.nan, claim="no usable LR",
                          words="no LR at which every seed trained",
                          advice=f"LRs below {fmt(r['lr_min'])}"))
    elif r["edge_kind"]:
      out.append(Decision(**base, p=math.nan, claim="at an edge",
                          words=verdicts.edge_advice(r["edge_kind"], r["grid_best_lr"],
                                                     r["beside"]),
                          advice=""))
    else:
      df = _df(r["n_seeds"])
      est, lo, hi = (math.log(v) if np.isfinite(v) and v > 0 else math.nan
                     for v in (r["best_lr"], r["best_lr_lo"], r["best_lr_hi"]))
      p = max(_one_sided(est, lo, math.log(r["usable_min"]), df, below=True),
              _one_sided(est, hi, math.log(r["usable_max"]), df, below=False))
      near = min(est - math.log(r["usable_min"]), math.log(r["usable_max"]) - est)
      claim = "inside the grid" if p < ALPHA else "not settled"
      out.append(Decision(
          **base, p=p, claim=claim,
          words=(f"inside the LR grid ({fmt(r['usable_min'])}–{fmt(r['usable_max'])})"
                 if claim != "not settled" else "may lie at the grid's edge"),
          advice=f"LRs between {fmt(r['below'])} and {fmt(r['above'])}", target=near))
  return out


_SCALING_WORDS = {"linear": "consistent with linear scaling, not square-root",
                  "sqrt": "consistent with square-root scaling, not linear",
                  "neither": "neither linear nor square-root"}


def _scaling(e, settings: AnalysisSettings) -> list[Decision]:
  cols = _cells_before(e.scaling, "alpha")
  b_max = e.members["batch_size"].max()
  out = []
  for _, r in e.scaling.iterrows():
    cell = group_label(cols, [r[c] for c in cols])
    a, lo, hi, n = r["alpha"], r["alpha_lo"], r["alpha_hi"], int(r["n_seeds"])
    base = dict(question="scaling", cell=cell, metric=e.metric, n_seeds=n,
                subject=f"Best LR vs batch size at {cell}: exponent", estimate=a, lo=lo,
                hi=hi)
    if not (np.isfinite(lo) and np.isfinite(hi)):
      out.append(Decision(**base, p=math.nan, claim="not settled",
                          words=f"not settled: {r['reason']}",
                          advice=f"batch sizes beyond {fmt(b_max)}"))
      continue
    df = _df(n)
    p_sqrt, p_lin = (p_from_interval(a, lo, hi, v, df) for v in (0.5, 1.0))
    claim = ("neither" if p_sqrt < ALPHA and p_lin < ALPHA else "linear" if p_sqrt < ALPHA
             else "sqrt" if p_lin < ALPHA else "not settled")
    p = {"neither": max(p_sqrt, p_lin), "linear": p_sqrt, "sqrt": p_lin}.get(
        claim, min(p_sqrt, p_lin))
    out.append(Decision(**base, p=p, claim=claim,
                        words=_SCALING_WORDS.get(claim, "not settled"),
                        advice=f"batch sizes beyond {fmt(b_max)}",
                        target=max(abs(a - 0.5), abs(a - 1.0))))
  return out


def _equivalence_claim(p_eq: float, p_diff: float, different: str) -> tuple[str, float]:
  if p_eq < ALPHA:
    return "equivalent", p_eq
  if p_diff < ALPHA:
    return different, p_diff
  return "not settled", float(np.nanmin([p_eq, p_diff])) if np.isfinite(
      [p_eq, p_diff]).any() else math.nan


def _aug(e, settings: AnalysisSettings) -> list[Decision]:
  if e.aug_pooled is None:
    return []
  cols = _cells_before(e.aug_pooled, "reference_aug")
  f = settings.lr_equivalence_factor
  out = []
  for _, r in e.aug_pooled.iterrows():
    extra = [c for c in cols if c != "aug"]
    at = f" at {group_label(extra, [r[c] for c in extra])}" if extra else ""
    d, lo, hi = r["d_log_best_lr"], r["d_log_best_lr_lo"], r["d_log_best_lr_hi"]
    base = dict(question="aug_effect", cell=group_label(cols, [r[c] for c in cols]),
                metric=e.metric, n_seeds=e.n_seeds, log=True, ratio=True,
                subject=(f"Augmentation {fmt(r['aug'])} vs {fmt(r['reference_aug'])}{at} "
                         f"({e.metric}; ratio of best LRs, mean over "
                         f"{int(r['n_batch_sizes'])} batch sizes with interior optima):"),
                estimate=math.exp(d) if np.isfinite(d) else math.nan,
                lo=math.exp(lo) if np.isfinite(lo) else math.nan,
                hi=math.exp(hi) if np.isfinite(hi) else math.nan)
    if not (np.isfinite(lo) and np.isfinite(hi)):
      out.append(Decision(**base, p=math.nan, claim="not settled",
                          words="not settled: no interval (one seed, or no batch size "
                                "with interior optima at both strengths)",
                          advice="widen grid.lr where the optimum is at an edge"))
      continue
    df = _df(e.n_seeds)
    p_diff = p_from_interval(d, lo, hi, 0.0, df)
    p_eq = tost_from_interval(d, lo, hi, math.log(f), df)
    claim, p = _equivalence_claim(p_eq, p_diff, "raised" if d > 0 else "lowered")
    words = {"equivalent": f"equivalent within ×/÷{fmt(f)}",
             "raised": "augmentation raised the best LR",
             "lowered": "augmentation lowered the best LR"}.get(claim, "not settled")
    out.append(Decision(**base, p=p, claim=claim, words=words,
                        target=max(abs(d), math.log(f) - abs(d))))
  return out


def _arms(comparisons: pd.DataFrame, axis: str, metric: str) -> list[Decision]:
  rows = comparisons[(comparisons["axis"] == axis) & (comparisons["metric"] == metric)]
  out = []
  for _, r in rows.iterrows():
    n = int(r["n"])
    claim, p = ("not settled", math.nan) if n < 2 else _equivalence_claim(
        r["p_equivalence"], r["p"], "different")
    m = r["margin"]
    target = (max(abs(r["mean"]), m - abs(r["mean"])) if abs(r["mean"]) < m
              else abs(r["mean"])) if np.isfinite(r["mean"]) else math.nan
    words = {"equivalent": f"equivalent within ±{fmt(m)}",
             "different": f"different ({r['arm']} is "
                          f"{comparisons_lib.direction(r['mean'], metric)})"}.get(claim, claim)
    out.append(Decision(
        question=ARMS_PREFIX + axis, cell=f"{r['arm']} at {r['cell']}", metric=metric,
        subject=f"{axis} {r['arm']} − {r['reference']} at {r['cell']}", estimate=r["mean"],
        lo=r["lo"], hi=r["hi"], n_seeds=n, p=p, claim=claim, words=words, target=target))
  return out


def _max_stable(e, settings: AnalysisSettings) -> list[Decision]:
  t = e.max_stable
  cols = _cells_before(t, "max_stable_lr")
  has_interval = {"max_stable_lr_lo", "max_stable_lr_hi"} <= set(t.columns)
  out = []
  for _, r in t.iterrows():
    cell = group_label(cols, [r[c] for c in cols])
    est, nxt = r["max_stable_lr"], r["next_lr"]
    lo, hi = ((r["max_stable_lr_lo"], r["max_stable_lr_hi"]) if has_interval
              else (est, nxt))
    base = dict(question="max_stable_lr", cell=cell, metric="status", log=True,
                n_seeds=int(r["n_seeds"]), subject=f"Max stable LR at {cell}:",
                estimate=est, lo=lo, hi=hi, p=math.nan, widen=has_interval)
    if not np.isfinite(est):
      out.append(Decision(**base, claim="none stable",
                          words=f"no LR is stable; try LRs below {fmt(nxt)}"))
    elif not np.isfinite(nxt):
      out.append(Decision(**base, claim="stable at the top",
                          words=(f"stable up to the grid's largest LR: a lower bound; "
                                 f"LRs above {fmt(est)} would find the limit")))
    else:
      wide = nxt / est > settings.lr_equivalence_factor
      words = f"the limit lies between grid LRs {fmt(est)} and {fmt(nxt)}"
      if wide:
        words += f"; LRs between them would narrow it"
      out.append(Decision(**base, claim="bracketed", words=words))
  return out


def _b_crit(e, settings: AnalysisSettings) -> list[Decision]:
  if e.critical_batch is None:
    return [Decision(question="b_crit", cell="all", metric=verdicts.STEPS_METRIC,
                     subject="Critical batch size:", estimate=math.nan, lo=math.nan,
                     hi=math.nan, n_seeds=e.n_seeds, p=math.nan, claim="not computed",
                     words=f"not computed ({e.steps_note or 'no history'})")]
  t = e.critical_batch
  cols = _cells_before(t, "b_crit")
  cols = [c for c in cols if c != "target_rank"]
  out = []
  for _, r in t.iterrows():
    cell = group_label(cols, [r[c] for c in cols])
    unsettled = str(r["reason"]).startswith("not settled")
    out.append(Decision(
        question="b_crit", cell=cell, metric=verdicts.STEPS_METRIC,
        subject=f"Critical batch size at {cell}:", estimate=r["b_crit"], lo=r["b_crit_lo"],
        hi=r["b_crit_hi"], n_seeds=int(r.get("n_seeds", e.n_seeds)), p=math.nan, log=True,
        claim="not settled" if unsettled else "estimated",
        words=str(r["reason"])))
  return out


_BUILDERS = {"best_lr": _best_lr, "scaling": _scaling, "aug_effect": _aug,
             "max_stable_lr": _max_stable, "b_crit": _b_crit}
# Questions whose answer depends on the ranking metric (asked again on its companion).
METRIC_QUESTIONS = ("best_lr", "scaling", "aug_effect")


def decisions(e, question: str, settings: AnalysisSettings,
              comparisons: pd.DataFrame | None = None,
              arms_metric: str | None = None) -> list[Decision]:
  """The decisions of one question on an `lrjax.analysis.verdicts.Estimates`.

  Args:
    e: the estimates (their ``metric`` ranks LRs).
    question: a catalog name (``"arms:<axis>"`` reads ``comparisons``).
    settings: the analysis settings (margins).
    comparisons: `lrjax.analysis.comparisons.compare_arms` of the same members.
    arms_metric: the comparisons' metric for ``arms:`` questions (default
      ``e.metric``).

  Returns:
    A list of `Decision` (empty when the run has nothing to decide it on).

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> e = verdicts.estimate(synthetic_members(batch_sizes=(64, 128, 256)), n_boot=200)
    >>> [(d.cell, d.claim) for d in decisions(e, "scaling", AnalysisSettings())]
    [('aug 0', 'sqrt')]
  """
  if question.startswith(ARMS_PREFIX):
    if comparisons is None or comparisons.empty:
      return []
    return _arms(comparisons, question[len(ARMS_PREFIX):], arms_metric or e.metric)
  return _BUILDERS[question](e, settings)


# -------------------------------------------------------------------------- family

FAMILY_COLUMNS = ("question", "cell", "metric", "role", "estimate", "lo", "hi", "level",
                  "n_seeds", "p", "p_holm", "rejected", "claim", "verdict", "words",
                  "ratio", "sentence", "settle")


def _settle(d: Decision, lo: float, hi: float, level: float) -> str:
  """What would settle an unsettled decision: more seeds (how many), and its advice."""
  parts = []
  if d.n_seeds < 2:
    parts.append("at least 3 seeds")
  elif np.isfinite(d.target) and d.widen:
    lo_t, hi_t = (_to_test(d, x) for x in (lo, hi))
    k = seeds_needed((hi_t - lo_t) / 2, d.n_seeds, d.target, level)
    parts.append(f"~{k} seeds (now {d.n_seeds})" if k else
                 f"more than {MAX_SEEDS} seeds at this spread")
  if d.advice:
    parts.append(d.advice)
  return " or ".join(parts)


def _verdict(d: Decision, rejected: bool, role: str) -> str:
  if np.isnan(d.p) or d.claim == "not settled":
    return d.claim
  if role == "primary" and not rejected:
    return "not settled"
  return d.claim


def decision_sentence(d: Decision, verdict: str, lo: float, hi: float, level: float,
                      settle: str) -> str:
  """One decision as a sentence: its estimate, the interval at ``level``, the verdict.

  Example:
    >>> d = Decision("scaling", "aug 0", "final_val_loss",
    ...              "Best LR vs batch size at aug 0: exponent", 0.98, 0.9, 1.06, 3,
    ...              0.001, "linear", "consistent with linear scaling, not square-root")
    >>> decision_sentence(d, "linear", 0.9, 1.06, 0.95, "")
    'Best LR vs batch size at aug 0: exponent 0.98 [0.9, 1.06] (95%) — consistent with linear scaling, not square-root.'
  """
  level_text = f"{100 * level:.3g}%"
  if d.question.startswith(ARMS_PREFIX):
    return ""  # arms: `comparisons.comparison_sentence`, see `family_table`
  value = (f"{'×' if d.ratio else ''}{fmt(d.estimate)}" + (
      f" [{'×' if d.ratio else ''}{fmt(lo)}, {'×' if d.ratio else ''}{fmt(hi)}] "
      f"({level_text})" if np.isfinite(lo) or np.isfinite(hi) else " (no interval)"))
  if d.question == "max_stable_lr":
    value = fmt(d.estimate) if np.isfinite(d.estimate) else "none"
  words = d.words if verdict == d.claim else (
      f"not settled at family-wise 95% (alone at 95%: {d.words})")
  text = f"{d.subject} {value} — {words}"
  if settle and verdict == "not settled":
    text += f"; would be settled by {settle}"
  return text + "."


def family_table(items: Sequence[tuple[Decision, str]],
                 comparisons: pd.DataFrame | None = None) -> pd.DataFrame:
  """Decisions with their role, Holm over the primary ones, intervals and sentences.

  Args:
    items: ``(decision, role)`` pairs, role ``"primary"`` (the family) or
      ``"exploratory"``.
    comparisons: the `compare_arms` table, for the arms' sentences.

  Returns:
    One row per decision with `FAMILY_COLUMNS`: primary rows have ``p_holm``
    (Holm-adjusted; NaN without a test), ``rejected``, intervals at
    ``simultaneous_level(family size)`` and a ``verdict`` that stands only when Holm
    rejects; exploratory rows keep their 95% interval and verdict.

  Example:
    >>> d = [Decision("scaling", f"aug {a}", "m", "exponent", 1.0, 0.9, 1.1, 3, p, claim,
    ...               claim) for a, p, claim in ((0, 0.001, "linear"), (1, 0.03, "linear"),
    ...                                          (2, float("nan"), "not settled"))]
    >>> t = family_table([(x, "primary") for x in d])  # the untestable one counts: m = 3
    >>> t["verdict"].tolist(), [round(x, 3) for x in t["p_holm"]]
    (['linear', 'not settled', 'not settled'], [0.003, 0.06, nan])
    >>> round(float(t["level"][0]), 4), round(float(t["hi"][0]), 3)  # simultaneous, t(2)
    (0.9833, 1.178)
  """
  primary = [i for i, (_, role) in enumerate(items) if role == "primary"]
  m = len(primary)
  level_p = inference.simultaneous_level(m)
  p_in = [items[i][0].p if np.isfinite(items[i][0].p) else 1.0 for i in primary]
  rejected, adjusted = inference.holm(p_in) if m else (np.zeros(0, bool), np.zeros(0))
  holm = {i: (bool(rejected[k]), float(adjusted[k]) if np.isfinite(items[i][0].p)
              else math.nan) for k, i in enumerate(primary)}
  rows = []
  for i, (d, role) in enumerate(items):
    rej, p_holm = holm.get(i, (False, math.nan))
    level = level_p if role == "primary" else inference.LEVEL
    lo, hi = d.lo, d.hi
    if d.widen and level != inference.LEVEL:
      e_t, lo_t, hi_t = (_to_test(d, x) for x in (d.estimate, d.lo, d.hi))
      lo_t, hi_t = rescale_interval(e_t, lo_t, hi_t, level, _df(d.n_seeds))
      lo, hi = (math.exp(x) for x in (lo_t, hi_t)) if d.log else (lo_t, hi_t)
    verdict = _verdict(d, rej, role)
    settle = _settle(d, lo, hi, level) if verdict == "not settled" else ""
    sentence = _sentence(d, verdict, lo, hi, level, settle, comparisons)
    if role == "primary" and np.isfinite(p_holm):
      sentence = sentence[:-1] + f" (Holm-adjusted p {p_holm:.2g})."
    rows.append({"question": d.question, "cell": d.cell, "metric": d.metric, "role": role,
                 "estimate": d.estimate, "lo": lo, "hi": hi, "level": level,
                 "n_seeds": d.n_seeds, "p": d.p, "p_holm": p_holm, "rejected": rej,
                 "claim": d.claim, "verdict": verdict, "words": d.words,
                 "ratio": d.ratio, "sentence": sentence, "settle": settle})
  return pd.DataFrame(rows, columns=list(FAMILY_COLUMNS))


def _sentence(d: Decision, verdict: str, lo: float, hi: float, level: float, settle: str,
              comparisons: pd.DataFrame | None) -> str:
  if not d.question.startswith(ARMS_PREFIX):
    return decision_sentence(d, verdict, lo, hi, level, settle)
  axis = d.question[len(ARMS_PREFIX):]
  c = comparisons[(comparisons["axis"] == axis) & (comparisons["metric"] == d.metric)
                  & (comparisons["arm"].astype(str) + " at " + comparisons["cell"] == d.cell)]
  row = dict(c.iloc[0])
  row["verdict"] = verdict
  text = comparisons_lib.comparison_sentence(row, lo, hi, f"{100 * level:.3g}%")
  if verdict != d.claim:
    text = text[:-1] + f"; not settled at family-wise 95% (alone at 95%: {d.claim})."
  if settle and verdict == "not settled":
    text = text[:-1] + f"; would be settled by {settle}."
  return text


def disagreement_sentences(table: pd.DataFrame, companion: pd.DataFrame) -> dict[str, list[str]]:
  """Per question: where the decision on the companion metric disagrees (another claim
  at 95%, or intervals that do not overlap).

  Example:
    >>> a = pd.DataFrame({"question": ["scaling"], "cell": ["aug 0"], "metric": ["final_val_loss"],
    ...                   "claim": ["linear"], "estimate": [1.0], "lo": [0.9], "hi": [1.1]})
    >>> b = a.assign(metric="best_val_loss", claim="not settled", lo=0.4, hi=1.2)
    >>> disagreement_sentences(a, b)["scaling"]  # doctest: +NORMALIZE_WHITESPACE
    ['scaling at aug 0: final_val_loss and best_val_loss disagree (linear, 1 [0.9, 1.1]
    vs not settled, 1 [0.4, 1.2]).']
  """
  out: dict[str, list[str]] = {}
  if companion is None or companion.empty or table.empty:
    return out
  right = companion.set_index(["question", "cell"])
  for _, x in table.iterrows():
    key = (x["question"], x["cell"])
    if key not in right.index:
      continue
    y = right.loc[key]
    finite = np.isfinite([x["lo"], x["hi"], y["lo"], y["hi"]]).all()
    apart = finite and (x["hi"] < y["lo"] or y["hi"] < x["lo"])
    if x["claim"] != y["claim"] or apart:
      out.setdefault(x["question"], []).append(
          f"{x['question']} at {x['cell']}: {x['metric']} and {y['metric']} disagree "
          f"({x['claim']}, {fmt(x['estimate'])} [{fmt(x['lo'])}, {fmt(x['hi'])}] vs "
          f"{y['claim']}, {fmt(y['estimate'])} [{fmt(y['lo'])}, {fmt(y['hi'])}]).")
  return out


# ------------------------------------------------------------------ all questions


class Answers(NamedTuple):
  """The questions of a run answered (`answer`).

  Attributes:
    table: every decision: ``role`` ``"primary"`` (the family), ``"exploratory"`` or
      ``"check"`` (a primary or exploratory decision redone on the companion metric).
    primary: question -> its family-wise sentences (key ``""``: the family's statement).
    exploratory: question -> the sentences of its exploratory decisions.
    strength: question -> smallest p-value of its decisions (NaN without a test).
    family: ``{"questions", "size", "level", "method"}``.
  """
  table: pd.DataFrame
  primary: dict
  exploratory: dict
  strength: dict
  family: dict


def applicable_questions(e, comparisons: pd.DataFrame | None) -> list[str]:
  """The catalog questions a run's estimates can answer, in catalog order.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> applicable_questions(verdicts.estimate(synthetic_members(), n_boot=0), None)
    ['best_lr', 'scaling', 'max_stable_lr']
  """
  out = ["best_lr"]
  if e.members["batch_size"].nunique() >= 2:
    out.append("scaling")
  if e.aug_pooled is not None:
    out.append("aug_effect")
  out.append("max_stable_lr")
  if e.critical_batch is not None:
    out.append("b_crit")
  if comparisons is not None and not comparisons.empty:
    out += [ARMS_PREFIX + a for a in pd.unique(comparisons["axis"])]
  return out


def _arms_metrics(e, companion, comparisons) -> tuple[str | None, str | None]:
  have = [] if comparisons is None or comparisons.empty else list(
      pd.unique(comparisons["metric"]))
  if not have:
    return None, None
  main = e.metric if e.metric in have else have[0]
  other = companion.metric if companion is not None and companion.metric in have else next(
      (m for m in have if m != main), None)
  return main, other


def _decisions_of(e, questions, settings, comparisons, arms_metric, role) -> list:
  items = []
  for q in questions:
    ds = decisions(e, q, settings, comparisons, arms_metric)
    if not ds and role == "primary":  # asked, but the run cannot answer it
      ds = [Decision(q, "all", e.metric, f"{q}:", math.nan, math.nan, math.nan, e.n_seeds,
                     math.nan, "not computed", "not computed: the run has no data for it")]
    items += [(d, role) for d in ds]
  return items


def answer(e, settings: AnalysisSettings, comparisons: pd.DataFrame | None = None,
           companion=None) -> Answers:
  """Every question of the catalog the run can answer, the config's primary ones as a
  Holm-corrected family.

  Args:
    e: the estimates (`lrjax.analysis.verdicts.estimate`).
    settings: the analysis settings; ``settings.questions`` is the primary family.
    comparisons: `lrjax.analysis.comparisons.compare_arms` of the same members.
    companion: the estimates on the companion metric (best vs final validation loss,
      `lrjax.analysis.verdicts.with_metric`), for the checks; None: none.

  Returns:
    `Answers`.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> e = verdicts.estimate(synthetic_members(batch_sizes=(64, 128, 256)), n_boot=200)
    >>> a = answer(e, AnalysisSettings(questions=("scaling",)))
    >>> a.family["size"], a.table.loc[a.table["role"] == "primary", "verdict"].tolist()
    (1, ['sqrt'])
  """
  primary_qs = list(settings.questions or ())
  main_arm, other_arm = _arms_metrics(e, companion, comparisons)
  rest = [q for q in applicable_questions(e, comparisons) if q not in primary_qs]
  items = (_decisions_of(e, primary_qs, settings, comparisons, main_arm, "primary")
           + _decisions_of(e, rest, settings, comparisons, main_arm, "exploratory"))
  table = family_table(items, comparisons)
  checks = pd.DataFrame(columns=list(FAMILY_COLUMNS))
  disagree: dict[str, list[str]] = {}
  if companion is not None or other_arm is not None:
    asked = [q for q in [*primary_qs, *rest]
             if q in METRIC_QUESTIONS or q.startswith(ARMS_PREFIX)]
    mine = [(d, "check") for d, _ in items if d.question in asked]
    theirs = _decisions_of(companion if companion is not None else e,
                           [q for q in asked if companion is not None
                            or q.startswith(ARMS_PREFIX)], settings, comparisons,
                           other_arm, "check")
    checks = family_table(theirs, comparisons)
    disagree = disagreement_sentences(family_table(mine, comparisons), checks)
  m = int((table["role"] == "primary").sum())
  family = {"questions": primary_qs, "size": m, "level": inference.simultaneous_level(m),
            "method": "Holm"}
  return Answers(pd.concat([table, checks], ignore_index=True), *_sentences(
      table, disagree, primary_qs, family), family)


def _sentences(table: pd.DataFrame, disagree: dict, primary_qs: list[str],
               family: dict) -> tuple[dict, dict, dict]:
  primary = {"": [family_statement(family)]} if primary_qs else {}
  for q in primary_qs:
    rows = table[(table["role"] == "primary") & (table["question"] == q)]
    primary[q] = rows["sentence"].tolist() + disagree.get(q, [])
  exploratory, strength = {}, {}
  for q, rows in table.groupby("question", sort=False):
    p = rows["p"].to_numpy(float)
    strength[q] = float(np.nanmin(p)) if np.isfinite(p).any() else math.nan
    if q not in primary_qs:
      exploratory[q] = rows["sentence"].tolist() + disagree.get(q, [])
  return primary, exploratory, strength


def family_statement(family: dict) -> str:
  """The sentence that says what the primary family is and how it was corrected.

  Example:
    >>> print(family_statement({"questions": ["best_lr", "scaling"], "size": 4,
    ...                         "level": 0.9875}))  # doctest: +ELLIPSIS
    Primary questions (fixed by the config before the run): best_lr, scaling; 4 decisions, Holm-corrected, family-wise 95%; their intervals are simultaneous 98.8% intervals (Bonferroni)...
  """
  return (f"Primary questions (fixed by the config before the run): "
          f"{', '.join(family['questions'])}; {family['size']} decisions, Holm-corrected, "
          f"family-wise 95%; their intervals are simultaneous "
          f"{100 * family['level']:.3g}% intervals (Bonferroni), and a verdict follows "
          "Holm's adjusted p, which can reject where such an interval still reaches the "
          "null value.")


# ------------------------------------------------------------------------ headline

# Members metrics the best configuration reports, when the table has them.
HEADLINE_METRICS = ("final_val_loss", "best_val_loss", "final_val_acc", "best_val_acc",
                    "test_loss", "test_acc")
# Phrases per question in a headline sentence; the rest are in the findings.
HEADLINE_PHRASES = 6


def best_configuration(members: pd.DataFrame, metric: str) -> dict | None:
  """The setting (cell and grid LR) with the best seed-mean ``metric`` among those where
  every seed counts, with each metric's mean over seeds and 95% t interval.

  Returns:
    ``{"setting": {column: value}, "metrics": {name: {"mean", "lo", "hi", "n"}},
    "n_candidates": settings that competed, "metric": metric}``, or None when no
    setting trained on every seed.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_run
    >>> m = synthetic_run(lrs=(0.005, 0.01, 0.02), batch_sizes=(32,), augs=(0.0,),
    ...                   seeds=(0, 1, 2)).members
    >>> b = best_configuration(m, "final_val_loss")
    >>> b["setting"], b["n_candidates"], sorted(b["metrics"])[:2]
    ({'lr': 0.01, 'batch_size': 32, 'aug': 0.0}, 3, ['best_val_acc', 'best_val_loss'])
  """
  members = stats.prepare_members(members)
  if "status" not in members.columns:
    members = members.assign(status=stats.status_labels(members))
  cols = stats.cell_columns(members)
  means = comparisons_lib.lr_means(members, metric, cols)
  ok = means[means["usable"]]
  if ok.empty:
    return None
  sign = 1.0 if stats.metric_mode(metric) == "min" else -1.0
  best = ok.loc[(sign * ok["mean"]).idxmin()]
  where = {c: best[c] for c in cols}
  out = {}
  for name in [metric, *[c for c in HEADLINE_METRICS if c != metric]]:
    if name in members.columns:
      mean, lo, hi, n = inference.mean_interval(
          comparisons_lib.seed_values(members, name, where, float(best["lr"])))
      out[name] = {"mean": mean, "lo": lo, "hi": hi, "n": n}
  setting = {k: (v.item() if hasattr(v, "item") else v)
             for k, v in {"lr": best["lr"], **where}.items()}
  return {"setting": setting, "metrics": out, "n_candidates": int(len(ok)),
          "metric": metric}


def best_configuration_sentence(best: dict | None) -> str:
  """The headline's first sentence: the best configuration and its metrics.

  Example:
    >>> best_configuration_sentence({"setting": {"batch_size": 32, "lr": 0.01},
    ...     "metric": "final_val_loss", "n_candidates": 1,
    ...     "metrics": {"final_val_loss": {"mean": 0.5, "lo": 0.4, "hi": 0.6, "n": 3}}})
    'Best configuration (final_val_loss, the best seed mean among 1 setting where every seed trained): batch_size 32, lr 0.01 — final_val_loss 0.5 [0.4, 0.6] (mean over 3 seeds, 95% t interval).'
  """
  if best is None:
    return ("Best configuration: none; no setting trained on every seed (see the "
            "member status counts).")
  k = best["n_candidates"]
  setting = group_label(list(best["setting"]), list(best["setting"].values()))
  values = ", ".join(
      f"{name} {fmt(v['mean'])}" + (f" [{fmt(v['lo'])}, {fmt(v['hi'])}]"
                                    if np.isfinite(v["lo"]) else " (one seed)")
      for name, v in best["metrics"].items())
  n = max(v["n"] for v in best["metrics"].values())
  note = (f"; the validation numbers are optimistic, being the best of {k}, the test "
          "numbers are not" if k > 1 and any(x.startswith("test_") for x in best["metrics"])
          else "")
  over = (f"mean over {n} seeds, 95% t interval" if n > 1 else
          "one seed: no intervals; run at least 3 seeds")
  return (f"Best configuration ({best['metric']}, the best seed mean among {k} "
          f"setting{'s' if k != 1 else ''} where every seed trained): {setting} — "
          f"{values} ({over}{note}).")


def _title(q: str, rows: pd.DataFrame, e, comparisons) -> str:
  metric = rows["metric"].iloc[0] if len(rows) else e.metric
  if q.startswith(ARMS_PREFIX):
    axis = q[len(ARMS_PREFIX):]
    ref = comparisons.loc[comparisons["axis"] == axis, "reference"]
    ref = ref.iloc[0] if len(ref) else "the reference"
    return (f"{axis} against {ref} ({metric}, arm − reference, each arm at its best LR; "
            "lower is better)" if "loss" in metric else
            f"{axis} against {ref} ({metric}, arm − reference, each arm at its best LR)")
  return {"best_lr": f"Best LR per cell ({metric})",
          "scaling": f"LR–batch-size exponent ({metric}; linear 1, square root 0.5)",
          "aug_effect": f"Augmentation effect on the best LR ({metric}; ratio to aug "
                        f"{fmt(e.reference_aug) if e.reference_aug is not None else 'ref'})",
          "max_stable_lr": "Max stable LR",
          "b_crit": "Critical batch size"}.get(q, q)


def _phrase(r: pd.Series) -> str:
  x = "×" if r["ratio"] else ""
  value = f"{x}{fmt(r['estimate'])}"
  if r["question"].startswith(ARMS_PREFIX) and np.isfinite(r["estimate"]):
    value = f"{'+' if r['estimate'] >= 0 else '-'}{fmt(abs(r['estimate']))}"
  if np.isfinite(r["lo"]) and np.isfinite(r["hi"]):
    value += f" [{x}{fmt(r['lo'])}, {x}{fmt(r['hi'])}]"
  verdict = r["words"] if r["verdict"] == r["claim"] else "not settled"
  text = f"{r['cell']}: {value} — {verdict}" if np.isfinite(r["estimate"]) else (
      f"{r['cell']}: {verdict}")
  if r["settle"]:
    text += f"; {r['settle']} would settle it"
  return text


def headline(answers: Answers, best: dict | None, e, comparisons=None) -> list[str]:
  """The headline: the best configuration, then one sentence per primary question.

  Each sentence gives the answers with their family-wise intervals, or "not settled"
  followed by what would settle it (more seeds, how many; LRs between two values;
  batch sizes beyond one).

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> t = synthetic_members(batch_sizes=(64, 128, 256))
    >>> e = verdicts.estimate(t, n_boot=200)
    >>> a = answer(e, AnalysisSettings(questions=("scaling",)))
    >>> headline(a, best_configuration(t, e.metric), e)[1]  # doctest: +ELLIPSIS
    'LR–batch-size exponent (final_val_loss; linear 1, square root 0.5): aug 0: 0.49... [0.38..., 0.57...] — consistent with square-root scaling, not linear.'
  """
  out = [best_configuration_sentence(best)]
  t = answers.table[answers.table["role"] == "primary"]
  for q in answers.family["questions"]:
    rows = t[t["question"] == q]
    phrases = [_phrase(r) for _, r in rows.iterrows()]
    more = (f"; and {len(phrases) - HEADLINE_PHRASES} more in the findings"
            if len(phrases) > HEADLINE_PHRASES else "")
    out.append(f"{_title(q, rows, e, comparisons)}: "
               f"{'; '.join(phrases[:HEADLINE_PHRASES]) or 'nothing to decide'}{more}.")
  if answers.family["questions"]:
    out.append(family_statement(answers.family))
  return out
