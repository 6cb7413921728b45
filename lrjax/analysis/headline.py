"""The headline of a run: the best configuration with its intervals, and one sentence
per primary question (`lrjax.analysis.questions.answer`), as ``summary.json``'s
``headline`` and the first lines ``lrjax run`` prints.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lrjax.analysis import comparisons as comparisons_lib
from lrjax.analysis import inference, stats
from lrjax.analysis.analysis_settings import ARMS_PREFIX
from lrjax.analysis.questions import Answers, family_statement
from lrjax.analysis.stats import fmt, group_label

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
    >>> from lrjax.analysis import verdicts
    >>> from lrjax.analysis.analysis_settings import AnalysisSettings
    >>> from lrjax.analysis.questions import answer
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
