"""``summary.json``: every estimate of a run, with its interval and verdict, as plain JSON."""
from __future__ import annotations

import pandas as pd

from lrjax.analysis import tables
from lrjax.analysis.stats import check_metric
from lrjax.analysis.tables import RunTables, jsonable
from lrjax.analysis.verdicts import STEPS_METRIC, Estimates, estimate, findings_from

DEFAULT_METRIC = "final_val_loss"


def _records(df: pd.DataFrame | None) -> list:
  return [] if df is None else df.to_dict(orient="records")


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
  history = run.history if isinstance(run.history, pd.DataFrame) else None
  e = estimate(members, history, metric=metric, n_boot=n_boot, rng_seed=rng_seed)
  e = e._replace(status_source=source)
  members = e.members
  axes = tables.grid_axes(members, run.config)
  status = members["status"]
  counts = {k: int((status == k).sum()) for k in ("trained", "failed", "diverged")}
  steps = ({"metric": STEPS_METRIC, "target": e.target,
            "best_steps": _records(e.best_steps),
            "critical_batch": _records(e.critical_batch), "note": e.steps_note}
           if e.best_steps is not None else {"note": e.steps_note})
  summary = jsonable({
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
      "findings": findings_from(e),
      "best_lr": e.best_lr,
      "scaling": e.scaling,
      "max_stable_lr": e.max_stable,
      "reference_aug": e.reference_aug,
      "aug_effect": _records(e.aug_effect),
      "aug_effect_pooled": _records(e.aug_pooled),
      "steps_to_target": steps,
      "noise_scale": _records(e.noise_summary),
      "best_member": _best_member(members, metric, axes),
      "warnings": _warnings(e, counts),
  })
  return summary, e


def _best_member(members: pd.DataFrame, metric: str, axes: list[str]) -> dict | None:
  """The single best trained member by ``metric``: one seed, not an estimate."""
  ok = members[(members["status"] == "trained") & members[metric].notna()]
  if ok.empty:
    return None
  minimise = tables.metric_mode(metric) == "min"
  b = ok.loc[ok[metric].idxmin() if minimise else ok[metric].idxmax()]
  return {"member": b["member"], **{a: b[a] for a in axes},
          **{c: b[c] for c in tables.METRIC_COLUMNS if c in b.index}}


def _warnings(e: Estimates, counts: dict) -> list[str]:
  """No member trained; best LRs at the edge of the LR grid."""
  out = []
  if counts["diverged"] == len(e.members):
    out.append("every member diverged: lower the learning rates.")
  elif counts["trained"] == 0:
    out.append("no member trained (every one diverged or failed): check the LR "
               "range and the training budget.")
  extra = [c for c in e.best_lr.columns[:list(e.best_lr.columns).index("best_lr")]
           if c not in ("batch_size", "aug")]
  for _, r in e.best_lr[e.best_lr["edge"].astype(bool)].iterrows():
    usable = e.members[(e.members["batch_size"] == r["batch_size"])
                       & (e.members["aug"] == r["aug"])]
    side = ("largest" if r["grid_best_lr"] >= usable["lr"].median() else "smallest")
    where = ", ".join(f"{c}={r[c]}" for c in ("batch_size", "aug", *extra))
    out.append(f"{where}: the best LR {r['grid_best_lr']:g} is the {side} usable LR; "
               "it is a bound, not an optimum: widen grid.lr.")
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
    ``status_counts`` (trained / failed / diverged), ``status_source``, ``n_seeds``,
    ``axes`` (name -> values), ``findings`` (sentences), ``best_lr`` (per cell, with
    interval and ``edge``), ``scaling`` (exponent per aug and extra axes, with
    interval and ``verdict``), ``max_stable_lr``, ``reference_aug``, ``aug_effect``
    and ``aug_effect_pooled`` (with intervals), ``steps_to_target`` (target, best
    steps per cell and ``critical_batch`` per group, or a ``note``),
    ``noise_scale`` (per aug; empty without a ``noise_scale`` history column),
    ``best_member`` (the single best trained member: one seed, not an estimate) and
    ``warnings``.

  Raises:
    lrjax.errors.ConfigError: the metric is not a members column.

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_run
    >>> s = summarize(synthetic_run(batch_sizes=(32, 64), seeds=(0, 1, 2)), n_boot=100)
    >>> s["status_counts"], [r["verdict"] for r in s["scaling"]]
    ({'trained': 90, 'failed': 0, 'diverged': 18}, ['not settled', 'not settled'])
  """
  return analyze(run, metric, n_boot, rng_seed)[0]
