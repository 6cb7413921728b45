"""An experiment's questions as decisions, the primary ones answered as one family.

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
their own; `inference.p_from_interval` derives one consistent with the interval: with the
interval's half-width on the side facing the null value read as ``q · se``, ``q`` the
two-sided 95% quantile of Student's t with ``n_seeds − 1`` degrees of freedom (the
bootstrap intervals are widened to that t interval, `stats.small_sample_factor`), or of
the normal distribution when the degrees of freedom are unknown. The interval
excludes the null value exactly when that p is below 0.05.

The decisions of the primary questions (fixed by the config before the run, never by
the data) form one family (`lrjax.analysis.family.family_table`): Holm's step-down over all of them
(`inference.holm`; a decision without a test counts with p = 1, so the family size is
the number of decisions), and their intervals at `inference.simultaneous_level` of
the family size. A primary verdict stands only when Holm rejects its null;
everything else is exploratory, at 95% and uncorrected.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from lrjax.analysis import comparisons as comparisons_lib
from lrjax.analysis import inference, verdicts
from lrjax.analysis.family import FAMILY_COLUMNS, Decision, disagreement_sentences, family_table
from lrjax.analysis.inference import one_sided_p, p_from_interval, seed_df, tost_from_interval
from lrjax.analysis.analysis_settings import ARMS_PREFIX, AnalysisSettings
from lrjax.analysis.stats import fmt, group_label

ALPHA = 1 - inference.LEVEL
MAX_SEEDS = 1000


# ------------------------------------------------------------------------ builders


def _cells_before(table: pd.DataFrame, first_value: str) -> list[str]:
  return list(table.columns[:list(table.columns).index(first_value)])


def _best_lr(e, settings: AnalysisSettings) -> list[Decision]:
  edges = verdicts.best_lr_edges(e)
  cols = _cells_before(e.best_lr, "best_lr")
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
      df = seed_df(r["n_seeds"])
      est, lo, hi = (math.log(v) if np.isfinite(v) and v > 0 else math.nan
                     for v in (r["best_lr"], r["best_lr_lo"], r["best_lr_hi"]))
      p = max(one_sided_p(est, lo, math.log(r["usable_min"]), df, below=True),
              one_sided_p(est, hi, math.log(r["usable_max"]), df, below=False))
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
    df = seed_df(n)
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
    df = seed_df(e.n_seeds)
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
        words += "; LRs between them would narrow it"
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
  table = family_table(items, comparisons, looks=settings.looks)
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
  family = {"questions": primary_qs, "size": m, "looks": settings.looks,
            "level": inference.simultaneous_level(m * settings.looks), "method": "Holm"}
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
  looks = family.get("looks", 1)
  over = (f" over {looks} planned looks (lrjax settle's waves; each look at family-wise "
          f"{5 / looks:.2g}%)" if looks > 1 else "")
  return (f"Primary questions (fixed by the config before the run): "
          f"{', '.join(family['questions'])}; {family['size']} decisions, Holm-corrected, "
          f"family-wise 95%{over}; their intervals are simultaneous "
          f"{100 * family['level']:.3g}% intervals (Bonferroni), and a verdict follows "
          "Holm's adjusted p, which can reject where such an interval still reaches the "
          "null value.")
