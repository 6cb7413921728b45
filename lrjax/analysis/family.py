"""A family of decisions: each `Decision` of the questions, Holm's step-down over the
primary ones, and the sentences that state them.

`lrjax.analysis.questions` builds the decisions; `family_table` tests them together:
Holm's step-down over all of them (`inference.holm`; a decision without a test counts
with p = 1, so the family size is the number of decisions), and their intervals at
`inference.simultaneous_level` of the family size. A primary verdict stands only when
Holm rejects its null; everything else is exploratory, at 95% and uncorrected.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax.analysis import comparisons as comparisons_lib
from lrjax.analysis import inference
from lrjax.analysis.analysis_settings import ARMS_PREFIX
from lrjax.analysis.inference import MAX_SEEDS, rescale_interval, seed_df, seeds_needed
from lrjax.analysis.stats import fmt

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



def _to_test(d: "Decision", x: float) -> float:
  """``x`` on the decision's test scale (log for LRs and ratios)."""
  if not d.log or np.isnan(x):
    return x
  return math.log(x) if x > 0 else -math.inf



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
                 comparisons: pd.DataFrame | None = None, looks: int = 1) -> pd.DataFrame:
  """Decisions with their role, Holm over the primary ones, intervals and sentences.

  Args:
    items: ``(decision, role)`` pairs, role ``"primary"`` (the family) or
      ``"exploratory"``.
    comparisons: the `compare_arms` table, for the arms' sentences.
    looks: how many times the family is looked at (``AnalysisSettings.looks``): Holm
      runs at family-wise ``0.05 / looks`` and the intervals at
      ``simultaneous_level(size * looks)``.

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
  level_p = inference.simultaneous_level(m * looks)
  p_in = [items[i][0].p if np.isfinite(items[i][0].p) else 1.0 for i in primary]
  rejected, adjusted = (inference.holm(p_in, alpha=(1 - inference.LEVEL) / looks) if m
                        else (np.zeros(0, bool), np.zeros(0)))
  holm = {i: (bool(rejected[k]), float(adjusted[k]) if np.isfinite(items[i][0].p)
              else math.nan) for k, i in enumerate(primary)}
  rows = []
  for i, (d, role) in enumerate(items):
    rej, p_holm = holm.get(i, (False, math.nan))
    level = level_p if role == "primary" else inference.LEVEL
    lo, hi = d.lo, d.hi
    if d.widen and level != inference.LEVEL:
      e_t, lo_t, hi_t = (_to_test(d, x) for x in (d.estimate, d.lo, d.hi))
      lo_t, hi_t = rescale_interval(e_t, lo_t, hi_t, level, seed_df(d.n_seeds))
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
