"""A run's estimates (`lrjax.analysis.verdicts.Estimates`) as sentences: the findings.

Each sentence states a verdict with its 95% interval, or says plainly that the run
does not settle the question and why. One function of `FINDINGS` gives the sentences
of one estimate; `ranked_findings` orders them for the report and ``summary.json``
(headline, primary, exploratory, notes).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lrjax.analysis import critical_batch, stats
from lrjax.analysis.stats import fmt, group_label, interval_text
from lrjax.analysis.verdicts import (STEPS_METRIC, Estimates, best_lr_edges, edge_advice,
                                     estimate)

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


def _cells_of(row: pd.Series, first_value: str) -> list[str]:
  return list(row.index[:list(row.index).index(first_value)])


def _group_of(row: pd.Series, first_value: str) -> str:
  cols = _cells_of(row, first_value)
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
    cols = [c for c in _cells_of(r, "b_crit") if c != critical_batch.TARGET_RANK]
    rank = int(r.get(critical_batch.TARGET_RANK, 0) or 0)
    which = "hardest target" if rank == 0 else f"easier target {rank}"
    where = f" at {group_label(cols, [r[c] for c in cols])}" if cols else ""
    head = (f"Critical batch size{where}, {which} ({STEPS_METRIC} ≤ "
            f"{fmt(r.get('target', e.target))}): ")
    if r["verdict"] == "not settled" and np.isnan(r["b_crit"]):
      out.append(head + f"not settled: {r['reason']}.")
    elif r["verdict"] == "not identifiable":
      bounds = (f" (95% interval [{fmt(r['b_crit_lo'])}, {fmt(r['b_crit_hi'])}])"
                if np.isfinite(r["b_crit_lo"]) or r["b_crit_lo"] == 0 else "")
      out.append(head + f"{r['reason']}{bounds}.")
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
            "members; a spread, not a confidence interval (no estimate at equal progress: "
            "it needs best-LR members with a noise scale where they first reach a common "
            "val_loss target)." for _, r in e.noise_summary.iterrows()]
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
