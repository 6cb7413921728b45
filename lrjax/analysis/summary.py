"""``summary.json``: every estimate of a run, with its interval and verdict, as plain JSON.

Besides the estimates it holds what a researcher acts on: the ``headline`` (the best
configuration and one answer per primary question), the arm ``comparisons``, the
``decisions`` of every question (the primary ones Holm-corrected as one family,
`lrjax.analysis.questions`) and the ``findings`` in that order: headline, primary,
exploratory (strongest first), notes.
"""
from __future__ import annotations

import pandas as pd

from lrjax import outcomes
from lrjax.analysis import analysis_settings, comparisons as comparisons_lib, questions, tables
from lrjax.analysis import headline as headline_lib
from lrjax.analysis.stats import check_metric
from lrjax.analysis.tables import RunTables, jsonable
from lrjax.analysis.sentences import ranked_findings
from lrjax.analysis.verdicts import (STEPS_METRIC, Estimates, best_lr_edges, edge_advice,
                                     estimate, with_metric)

DEFAULT_METRIC = "final_val_loss"
# Each ranking metric's companion: the final and the best value during training.
COMPANION_METRICS = {"final_val_loss": "best_val_loss", "best_val_loss": "final_val_loss",
                     "final_val_acc": "best_val_acc", "best_val_acc": "final_val_acc"}


def _records(df: pd.DataFrame | None) -> list:
  return [] if df is None else df.to_dict(orient="records")


def run_settings(run: RunTables, members: pd.DataFrame
                 ) -> analysis_settings.AnalysisSettings:
  """The run's analysis settings: ``config["analysis"]`` checked against the grid the
  members table holds (defaults when the config has none).

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_run
    >>> run = synthetic_run(batch_sizes=(32, 64, 128), seeds=(0,))
    >>> run_settings(run, run.members).questions
    ('scaling', 'aug_effect')
  """
  axes = {a: comparisons_lib.axis_values(members, a, run.config)
          for a in tables.grid_axes(members, run.config) if a in members.columns}
  config = run.config if isinstance(run.config, dict) else {}
  return analysis_settings.resolve_settings(config.get("analysis"), axes)


def analyze(run: RunTables, metric: str = DEFAULT_METRIC, n_boot: int = 1000,
            rng_seed: int = 0) -> tuple[dict, Estimates]:
  """`summarize`, also returning the `lrjax.analysis.verdicts.Estimates` it was built from.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_run
    >>> s, e = analyze(synthetic_run(batch_sizes=(32, 64), seeds=(0,)), n_boot=0)
    >>> s["scaling"][0]["verdict"], len(e.best_lr)
    ('not settled', 4)
  """
  members, source = tables.analysis_members(run)
  check_metric(members, metric)
  settings = run_settings(run, members)
  history = run.history if isinstance(run.history, pd.DataFrame) else None
  reference_aug = settings.reference.get("aug")
  e = estimate(members, history, metric=metric, n_boot=n_boot, rng_seed=rng_seed,
               reference_aug=None if reference_aug is None else float(reference_aug))
  e = e._replace(status_source=source)
  members = e.members
  companion = COMPANION_METRICS.get(metric)
  companion_e = (with_metric(e, companion, rng_seed)
                 if companion in members.columns else None)
  arms = comparisons_lib.compare_arms(members, settings, config=run.config)
  answers = questions.answer(e, settings, arms, companion_e)
  best = headline_lib.best_configuration(members, metric)
  head = headline_lib.headline(answers, best, e, arms)
  sections = ranked_findings(e, answers.primary, answers.exploratory, answers.strength,
                             head)
  sections["notes"] = [*sections.get("notes", []), budget_note(run.config)]
  axes = tables.grid_axes(members, run.config)
  summary = jsonable({
      **_estimates_part(e, metric, n_boot, source, axes),
      "analysis": {**analysis_settings.as_dict(settings), "companion_metric": companion_e
                   and companion_e.metric},
      "headline": {"best": best, "sentences": head, "family": answers.family},
      # The headline ends with the family's statement, which opens the primary part too.
      "findings": list(dict.fromkeys(s for part in sections.values() for s in part)),
      "findings_sections": sections,
      "comparisons": arms.to_dict(orient="records"),
      "decisions": answers.table.to_dict(orient="records"),
      "best_member": _best_member(members, metric, axes),
      "warnings": _warnings(e, _counts(members)),
  })
  return summary, e


def _counts(members: pd.DataFrame) -> dict:
  return outcomes.status_counts(members["status"])


def _estimates_part(e: Estimates, metric: str, n_boot: int, source: str, axes) -> dict:
  """The estimates' own keys of ``summary.json``."""
  members = e.members
  counts = _counts(members)
  steps = ({"metric": STEPS_METRIC, "target": e.target,
            "best_steps": _records(e.best_steps),
            "critical_batch": _records(e.critical_batch), "note": e.steps_note}
           if e.best_steps is not None else {"note": e.steps_note})
  return {
      "metric": metric,
      "n_boot": n_boot,
      "n_members": len(members),
      "n_diverged": counts["diverged"],
      "status_counts": counts,
      "status_source": source,
      "n_seeds": e.n_seeds,
      "axes": {a: sorted(members[a].dropna().unique().tolist(), key=str)
               if members[a].dtype == object else sorted(members[a].dropna().unique())
               for a in axes},
      "best_lr": e.best_lr,
      "scaling": e.scaling,
      "max_stable_lr": e.max_stable,
      "reference_aug": e.reference_aug,
      "aug_effect": _records(e.aug_effect),
      "aug_effect_pooled": _records(e.aug_pooled),
      "steps_to_target": steps,
      "noise_scale": _records(e.noise_summary),
      "noise_scale_at_target": _records(e.noise_at_target),
      "noise_scale_aug_effect": _records(e.noise_effect),
  }


def budget_note(config) -> str:
  """What every member got the same of, and what that means for the verdicts.

  Example:
    >>> budget_note({"budget": "updates", "epochs": 2})[:46]
    'Budget: equal optimizer updates for every memb'
  """
  config = config if isinstance(config, dict) else {}
  epochs = config.get("epochs")
  span = f"{epochs:g} epochs" if isinstance(epochs, (int, float)) else "the epochs"
  if config.get("budget") == "updates":
    return (f"Budget: equal optimizer updates for every member (those of the smallest batch "
            f"size in {span}), so larger batches saw more examples; the verdicts compare "
            "members at equal updates.")
  return (f"Budget: equal examples for every member ({span}), so larger batches took fewer "
          "optimizer updates; best LRs and the scaling exponent compare members at equal "
          "examples (budget='updates' compares them at equal updates).")


def headline_lines(summary: dict) -> list[str]:
  """The headline of a ``summary.json`` as lines to print (``lrjax run`` at its end).

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_run
    >>> lines = headline_lines(summarize(synthetic_run(seeds=(0, 1, 2)), n_boot=50))
    >>> lines[0].startswith("Best configuration (final_val_loss")
    True
  """
  head = summary.get("headline") or {}
  return list(head.get("sentences") or [])


def _best_member(members: pd.DataFrame, metric: str, axes: list[str]) -> dict | None:
  """The single best member that learned (trained or slow) by ``metric``: one seed, not an estimate."""
  ok = members[members["status"].isin(outcomes.LEARNED) & members[metric].notna()]
  if ok.empty:
    return None
  minimise = tables.metric_mode(metric) == "min"
  b = ok.loc[ok[metric].idxmin() if minimise else ok[metric].idxmax()]
  return {"member": b["member"], **{a: b[a] for a in axes},
          **{c: b[c] for c in tables.METRIC_COLUMNS if c in b.index}}


def _warnings(e: Estimates, counts: dict) -> list[str]:
  """No member trained; best LRs at an edge, with the advice rule (`edge_advice`)."""
  out = []
  if counts["diverged"] == len(e.members):
    out.append("every member diverged: lower the learning rates.")
  elif counts["trained"] + counts["slow"] == 0:
    out.append("no member learned (every one diverged or failed): check the LR "
               "range and the training budget.")
  cols = list(e.best_lr.columns[:list(e.best_lr.columns).index("best_lr")])
  for _, r in best_lr_edges(e).iterrows():
    if not r["edge_kind"]:
      continue
    where = ", ".join(f"{c}={r[c]}" for c in cols)
    what = "a bound, not an optimum" if "grid" in r["edge_kind"] else (
        "at the stability edge")
    out.append(f"{where}: the best LR {r['grid_best_lr']:g} is {what}: "
               f"{edge_advice(r['edge_kind'], r['grid_best_lr'], r['beside'])}.")
  return out


def summarize(run: RunTables, metric: str = DEFAULT_METRIC, n_boot: int = 1000,
              rng_seed: int = 0) -> dict:
  """The run's estimates as a JSON-serialisable dict (``summary.json``).

  Built from `lrjax.analysis.verdicts.estimate`; every estimate carries its 95%
  seed-bootstrap interval (NaN -> null without one) and every verdict says
  ``"not settled"`` when the run cannot decide it.

  Args:
    run: a `RunTables` from `lrjax.analysis.tables.load_run`.
    metric: the members column that ranks LRs (default ``final_val_loss``, mean over
      seeds).
    n_boot: bootstrap replicates.
    rng_seed: seed of the bootstrap draws.

  Returns:
    A dict with ``metric``, ``n_boot``, ``n_members``, ``n_diverged``,
    ``status_counts`` (trained / slow / failed / diverged), ``status_source``, ``n_seeds``,
    ``axes`` (name -> values), ``analysis`` (the settings used: margins, references,
    primary questions, the companion metric), ``headline`` (``best``: the best
    configuration with its metrics and 95% t intervals; ``sentences``: it and one
    answer per primary question; ``family``: questions, size, simultaneous level),
    ``findings`` (sentences: headline, primary, exploratory, notes; by part in
    ``findings_sections``), ``comparisons`` (`lrjax.analysis.comparisons.compare_arms`:
    one row per axis, arm, cell and metric), ``decisions`` (every question's decisions,
    `lrjax.analysis.questions.answer`), ``best_lr`` (per cell, with
    interval and ``edge``), ``scaling`` (exponent per aug and extra axes, with
    interval and ``verdict``), ``max_stable_lr``, ``reference_aug``, ``aug_effect``
    and ``aug_effect_pooled`` (with intervals), ``steps_to_target`` (target, best
    steps per cell and ``critical_batch`` per group, or a ``note``),
    ``noise_scale`` (per aug, its spread over training; empty without a
    ``noise_scale`` history column), ``noise_scale_at_target`` (per aug at equal
    progress, with a 95% interval over seeds) and ``noise_scale_aug_effect`` (each
    aug's ratio to the reference, paired by seed),
    ``best_member`` (the single best trained member: one seed, not an estimate) and
    ``warnings``.

  Raises:
    lrjax.errors.ConfigError: the metric is not a members column.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_run
    >>> s = summarize(synthetic_run(batch_sizes=(32, 64), seeds=(0, 1, 2)), n_boot=100)
    >>> s["status_counts"], [r["verdict"] for r in s["scaling"]]
    ({'trained': 90, 'slow': 0, 'failed': 0, 'diverged': 18}, ['not settled', 'not settled'])
  """
  return analyze(run, metric, n_boot, rng_seed)[0]
