"""Arm comparisons: every value of a non-core grid axis against its reference value.

For each grid axis beyond lr, batch size, aug and seed with 2+ values (schedule,
optimizer, lr_scaling, warmup, batch_growth, label_smoothing, any hyperparameter:
`lrjax.analysis.stats.extra_axes`), and each setting of the other axes (a *cell*:
batch size, aug and the remaining extra axes):

1. each arm's best grid LR: the lowest seed-mean metric among the LRs at which every
   seed of the arm trained (`lr_means`, `best_lrs`);
2. the per-seed metric of each arm at its own best LR;
3. the difference ``arm - reference`` paired over the seeds both share (same initial
   weights, data order and augmentation draws:
   `lrjax.analysis.inference.paired_difference`), with its 95% t interval;
4. the verdict of `lrjax.analysis.inference.equivalence` with the analysis setting's
   margin: ``"equivalent"`` (within ±margin, two one-sided tests), ``"different"``
   (the interval excludes 0) or ``"not settled"``.

Both arms' LRs are picked on the same seeds whose metric is then compared, so each
side is a little optimistic; the two sides are picked the same way, so the difference
is less so. Every comparison is made on the final and on the best validation loss
during training (`COMPARISON_METRICS`); `disagreements` says where the two differ.
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax.analysis import inference, stats
from lrjax.analysis.analysis_settings import AnalysisSettings, reference_value
from lrjax.analysis.stats import fmt, group_label

COMPARISON_METRICS = ("final_val_loss", "best_val_loss")
COLUMNS = ("axis", "arm", "reference", "cell", "batch_size", "aug", "metric", "arm_lr",
           "reference_lr", "arm_mean", "reference_mean", "mean", "lo", "hi", "n", "p",
           "p_equivalence", "margin", "verdict", "text", "arm_edge", "reference_edge")


def counting_mask(members: pd.DataFrame) -> np.ndarray:
  """Whether each member counts, by the estimators' rule (`lrjax.analysis.stats`).

  Example:
    >>> counting_mask(pd.DataFrame({"status": ["trained", "failed"]})).tolist()
    [True, False]
  """
  return np.asarray(stats.usable_mask(members), bool)


def lr_means(members: pd.DataFrame, metric: str, cell_cols: Sequence[str]) -> pd.DataFrame:
  """Per (cell, lr): the seed-mean of ``metric`` and whether every seed of the cell counts.

  Args:
    members: the members table with a ``status`` column (or ``diverged``).
    metric: a members metric column.
    cell_cols: the columns that define a cell.

  Returns:
    One row per (cell, lr), sorted: the cell columns, ``lr``, ``mean`` (over the
    seeds that trained), ``n_ok`` (trained with a finite metric), ``n_seeds`` (of the
    cell) and ``usable`` (every seed of the cell counts at this LR).

  Example:
    >>> m = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "batch_size": 32, "seed": [0, 1] * 2,
    ...                   "status": ["trained"] * 3 + ["diverged"],
    ...                   "final_val_loss": [0.5, 0.7, 0.4, np.nan]})
    >>> lr_means(m, "final_val_loss", ["batch_size"])[["lr", "mean", "usable"]].values.tolist()
    [[0.1, 0.6, True], [1.0, 0.4, False]]
  """
  cell_cols = list(cell_cols)
  ok = counting_mask(members) & np.isfinite(members[metric].to_numpy(float))
  df = members[[*cell_cols, "lr", "seed"]].assign(
      _v=np.where(ok, members[metric].to_numpy(float), np.nan), _ok=ok)
  seeds = (df.groupby(cell_cols, dropna=False, sort=True)["seed"].nunique()
           .rename("n_seeds").reset_index())
  out = (df.groupby([*cell_cols, "lr"], dropna=False, sort=True)
         .agg(mean=("_v", "mean"), n_ok=("_ok", "sum")).reset_index()
         .merge(seeds, on=cell_cols, how="left"))
  out["n_ok"] = out["n_ok"].astype(int)
  out["usable"] = out["n_ok"] == out["n_seeds"]
  return out


def lr_edge(lrs: np.ndarray, usable: np.ndarray, best: int) -> tuple[str, float]:
  """Where the best LR (index ``best`` of a cell's sorted ``lrs``) sits among the
  ``usable`` ones, and the failing LR beside it: ``edge`` and ``beside`` of `best_lrs`.

  Example:
    >>> lr_edge(np.array([0.1, 0.3, 1.0]), np.array([True, True, False]), 1)
    ('stability_high', 1.0)
  """
  kinds, beside = [], math.nan
  use = np.flatnonzero(usable)
  if best == use.max():
    if best == len(lrs) - 1:
      kinds.append("grid_high")
    else:
      kinds.append("stability_high")
      beside = float(lrs[best + 1])
  if best == use.min():
    if best == 0:
      kinds.append("grid_low")
    else:
      kinds.append("stability_low")
      beside = float(lrs[best - 1]) if math.isnan(beside) else beside
  return ",".join(kinds), beside


def best_lrs(members: pd.DataFrame, metric: str, cell_cols: Sequence[str]) -> pd.DataFrame:
  """Per cell: the best grid LR, its seed-mean metric with a t interval, and its edge.

  The best LR is the one with the best seed-mean ``metric`` (``loss`` in the name:
  lowest) among the LRs at which every seed of the cell trained.

  Returns:
    One row per cell: the cell columns, ``best_lr`` (NaN without a usable LR),
    ``mean``, ``lo``, ``hi`` (95% t interval over seeds at that LR), ``n``,
    ``n_usable_lrs``, ``edge`` and ``beside``. ``edge`` is ``""`` for an interior
    optimum, else comma-joined: ``grid_high`` / ``grid_low`` (the grid's own largest /
    smallest LR: the optimum may lie beyond the grid) or ``stability_high`` /
    ``stability_low`` (the next grid LR up / down exists but not every seed trained
    there: the optimum sits at the stability edge); ``beside`` is that failing LR.

  Example:
    >>> m = pd.DataFrame({"lr": [0.1, 0.3, 1.0] * 2, "batch_size": 32,
    ...                   "seed": [0, 0, 0, 1, 1, 1],
    ...                   "status": ["trained", "trained", "diverged"] * 2,
    ...                   "final_val_loss": [0.5, 0.4, np.nan, 0.6, 0.45, np.nan]})
    >>> r = best_lrs(m, "final_val_loss", ["batch_size"]).iloc[0]
    >>> float(r["best_lr"]), round(float(r["mean"]), 3), r["edge"], float(r["beside"])
    (0.3, 0.425, 'stability_high', 1.0)
  """
  cell_cols = list(cell_cols)
  means = lr_means(members, metric, cell_cols)
  sign = 1.0 if stats.metric_mode(metric) == "min" else -1.0
  rows = []
  for key, g in means.groupby(cell_cols, dropna=False, sort=True):
    key = key if isinstance(key, tuple) else (key,)
    g = g.sort_values("lr")
    usable = g["usable"].to_numpy(bool)
    row = dict(zip(cell_cols, key), best_lr=math.nan, mean=math.nan, lo=math.nan,
               hi=math.nan, n=0, n_usable_lrs=int(usable.sum()), edge="", beside=math.nan)
    if usable.any():
      score = np.where(usable, sign * g["mean"].to_numpy(float), np.inf)
      best = int(np.argmin(score))
      row["best_lr"] = float(g["lr"].to_numpy(float)[best])
      row["edge"], row["beside"] = lr_edge(g["lr"].to_numpy(float), usable, best)
      vals = seed_values(members, metric, dict(zip(cell_cols, key)), row["best_lr"])
      row["mean"], row["lo"], row["hi"], row["n"] = inference.mean_interval(vals.to_numpy())
    rows.append(row)
  return pd.DataFrame(rows, columns=[*cell_cols, "best_lr", "mean", "lo", "hi", "n",
                                     "n_usable_lrs", "edge", "beside"])


def _select(members: pd.DataFrame, where: Mapping) -> np.ndarray:
  keep = np.ones(len(members), bool)
  for col, value in where.items():
    col_values = members[col]
    if isinstance(value, float) and math.isnan(value):
      keep &= col_values.isna().to_numpy()
    else:
      keep &= (col_values == value).to_numpy()
  return keep


def seed_values(members: pd.DataFrame, metric: str, where: Mapping, lr: float) -> pd.Series:
  """The per-seed ``metric`` of the members at ``where`` and ``lr`` (NaN unless trained).

  Example:
    >>> m = pd.DataFrame({"lr": [0.1, 0.1], "batch_size": 32, "seed": [0, 1],
    ...                   "status": ["trained", "failed"], "final_val_loss": [0.5, 2.3]})
    >>> seed_values(m, "final_val_loss", {"batch_size": 32}, 0.1).tolist()
    [0.5, nan]
  """
  keep = _select(members, where) & np.isclose(members["lr"].to_numpy(float), lr)
  sub = members[keep]
  ok = counting_mask(sub)
  return pd.Series(np.where(ok, sub[metric].to_numpy(float), np.nan),
                   index=sub["seed"].to_numpy()).sort_index()


def axis_values(members: pd.DataFrame, axis: str, config: Mapping | None = None) -> list:
  """The values of ``axis``: in ``config["grid"]`` order when given, else as they appear.

  Example:
    >>> axis_values(pd.DataFrame({"schedule": ["cos", "const", "cos"]}), "schedule")
    ['cos', 'const']
  """
  present = list(pd.unique(members[axis]))
  grid = (config or {}).get("grid") if isinstance(config, Mapping) else None
  if isinstance(grid, Mapping) and axis in grid:
    order = list(grid[axis]) if isinstance(grid[axis], (list, tuple)) else [grid[axis]]
    ranked = [v for v in order if any(v == p for p in present)]
    return ranked + [p for p in present if not any(p == v for v in ranked)]
  return present


class _Arm(NamedTuple):
  lr: float
  edge: str
  values: pd.Series   # per seed


def _arm(members: pd.DataFrame, metric: str, where: dict, best: pd.DataFrame) -> _Arm:
  row = best[_select(best, where)]
  if row.empty or not np.isfinite(row["best_lr"].iloc[0]):
    return _Arm(math.nan, "", pd.Series(dtype=float))
  lr = float(row["best_lr"].iloc[0])
  return _Arm(lr, str(row["edge"].iloc[0]), seed_values(members, metric, where, lr))


def verdict_text(verdict: str, mean: float, lo: float, hi: float, margin: float) -> str:
  """``"equivalent within ±0.02"``, ``"different: +0.031 [0.012, 0.05]"`` or
  ``"not settled: +0.01 [-0.02, 0.04]"``.

  Example:
    >>> verdict_text("different", 0.031, 0.012, 0.05, 0.02)
    'different: +0.031 [0.012, 0.05]'
  """
  if verdict == "equivalent":
    return f"equivalent within ±{fmt(margin)}"
  if not np.isfinite(mean):
    return "not settled: no usable LR on one side"
  sign = "+" if mean >= 0 else "-"
  body = f"{sign}{fmt(abs(mean))}"
  body += f" [{fmt(lo)}, {fmt(hi)}]" if np.isfinite(lo) else " (no interval: one shared seed)"
  return f"{verdict}: {body}"


def _compare(members, metric, axis, arm, ref, where, best, margin) -> dict:
  """One row of `compare_arms`."""
  a = _arm(members, metric, {**where, axis: arm}, best)
  r = _arm(members, metric, {**where, axis: ref}, best)
  seeds = sorted(set(a.values.index) | set(r.values.index))
  d = inference.paired_difference(a.values.reindex(seeds).to_numpy(float),
                                  r.values.reindex(seeds).to_numpy(float))
  eq = inference.equivalence(d, margin)
  verdict = eq.verdict
  return {"arm": arm, "reference": ref, "metric": metric, "arm_lr": a.lr,
          "reference_lr": r.lr, "arm_mean": float(np.nanmean(a.values)) if a.values.notna().any()
          else math.nan,
          "reference_mean": float(np.nanmean(r.values)) if r.values.notna().any() else math.nan,
          "mean": d.mean, "lo": d.lo, "hi": d.hi, "n": d.n, "p": d.p_value,
          "p_equivalence": eq.p_equivalence, "margin": margin, "verdict": verdict,
          "text": verdict_text(verdict, d.mean, d.lo, d.hi, margin),
          "arm_edge": a.edge, "reference_edge": r.edge}


def compare_arms(members: pd.DataFrame, settings: AnalysisSettings | None = None,
                 metrics: Sequence[str] = COMPARISON_METRICS,
                 config: Mapping | None = None) -> pd.DataFrame:
  """Each arm of each non-core axis against the reference arm, per cell and metric.

  Args:
    members: the members table (with a ``status`` column, else ``diverged``).
    settings: the analysis settings (margin, reference values); default
      `AnalysisSettings()`.
    metrics: the metrics to compare on; those the table lacks are skipped.
    config: the run's config, for the order of each axis's values (the reference
      defaults to the first).

  Returns:
    One row per (axis, arm, cell, metric) with `COLUMNS`: ``cell`` the cell as text
    (``batch_size``/``aug`` also as columns), ``arm_lr``/``reference_lr`` each arm's
    best grid LR, ``arm_mean``/``reference_mean`` the seed means there, ``mean``,
    ``lo``, ``hi``, ``n``, ``p`` the paired difference ``arm - reference`` over ``n``
    shared seeds (two-sided p of no difference), ``p_equivalence`` (TOST), ``margin``,
    ``verdict`` and ``text`` (`verdict_text`), ``arm_edge``/``reference_edge`` (see
    `best_lrs`: a best LR at an edge is only the best the grid shows).

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_run
    >>> m = synthetic_run(lrs=(0.01, 0.02, 0.04), batch_sizes=(32,), augs=(0.0,),
    ...                   seeds=(0, 1, 2), extra_axes={"schedule": ("constant", "cosine")},
    ...                   noise=0.002).members
    >>> r = compare_arms(m, AnalysisSettings(equivalence_margin=0.02))
    >>> r[["arm", "reference", "metric", "n", "verdict"]].values.tolist()
    [['cosine', 'constant', 'final_val_loss', 3, 'equivalent'], ['cosine', 'constant', 'best_val_loss', 3, 'equivalent']]
  """
  settings = settings or AnalysisSettings()
  members = stats.prepare_members(members)
  if "status" not in members.columns:
    members = members.assign(status=stats.status_labels(members))
  rows = []
  for metric in [m for m in metrics if m in members.columns]:
    for axis in stats.extra_axes(members):
      values = axis_values(members, axis, config)
      ref = reference_value(settings, axis, values)
      cell_cols = [c for c in stats.cell_columns(members) if c != axis]
      best = best_lrs(members, metric, [*cell_cols, axis])
      for key, _ in best.groupby(cell_cols, dropna=False, sort=True):
        where = dict(zip(cell_cols, key if isinstance(key, tuple) else (key,)))
        cell = group_label(list(where), list(where.values()))
        for arm in values:
          if arm is ref or arm == ref:
            continue
          row = _compare(members, metric, axis, arm, ref, where, best,
                         settings.equivalence_margin)
          rows.append({"axis": axis, "cell": cell, "batch_size": where.get("batch_size"),
                       "aug": where.get("aug"), **row})
  return pd.DataFrame(rows, columns=list(COLUMNS))


def direction(difference: float, metric: str) -> str:
  """A difference ``arm - reference`` in words: ``"lower (better)"`` for a loss below 0.

  Example:
    >>> direction(-0.1, "final_val_loss"), direction(-0.1, "final_val_acc")
    ('lower (better)', 'lower (worse)')
  """
  better = (difference < 0) == (stats.metric_mode(metric) == "min")
  return f"{'lower' if difference < 0 else 'higher'} ({'better' if better else 'worse'})"


def comparison_sentence(row: Mapping, lo: float | None = None, hi: float | None = None,
                        level_text: str = "95%") -> str:
  """One comparison as a sentence, its sign convention in words.

  Args:
    row: a row of `compare_arms`.
    lo, hi: another interval to show (the family-wise one of a primary question);
      default the row's 95% interval.
    level_text: the interval's coverage, for the sentence.

  Example:
    >>> row = {"axis": "schedule", "arm": "cosine", "reference": "constant",
    ...        "cell": "batch_size 64, aug 0", "metric": "final_val_loss", "arm_lr": 0.3,
    ...        "reference_lr": 0.1, "mean": 0.03, "lo": 0.01, "hi": 0.05, "n": 3,
    ...        "verdict": "different", "margin": 0.02, "arm_edge": "", "reference_edge": ""}
    >>> comparison_sentence(row)  # doctest: +NORMALIZE_WHITESPACE
    'schedule cosine − constant at batch_size 64, aug 0 (final_val_loss, each at its best
    grid LR: 0.3 and 0.1; paired over 3 seeds; 95% interval): different: +0.03 [0.01,
    0.05] — cosine is higher (worse).'
  """
  lo = row["lo"] if lo is None else lo
  hi = row["hi"] if hi is None else hi
  metric = row["metric"]
  head = (f"{row['axis']} {row['arm']} − {row['reference']} at {row['cell']} ({metric}, "
          f"each at its best grid LR: {fmt(row['arm_lr'])} and {fmt(row['reference_lr'])}; "
          f"paired over {int(row['n'])} seed{'s' if int(row['n']) != 1 else ''}; "
          f"{level_text} interval): ")
  text = verdict_text(row["verdict"], row["mean"], lo, hi, row["margin"])
  if row["verdict"] == "different":
    text += f" — {row['arm']} is {direction(row['mean'], metric)}"
  edges = [name for name, e in ((row["arm"], row.get("arm_edge")),
                                (row["reference"], row.get("reference_edge"))) if e]
  if edges:
    text += (f" ({' and '.join(map(str, edges))}: best LR at an edge of what trained, "
             "so only the best the grid shows)")
  return head + text + "."


def disagreements(comparisons: pd.DataFrame,
                  metrics: Sequence[str] = COMPARISON_METRICS) -> list[str]:
  """Sentences for the comparisons whose verdicts on the two metrics differ, or whose
  intervals do not overlap.

  Example:
    >>> c = pd.DataFrame({"axis": "schedule", "arm": "cosine", "reference": "constant",
    ...                   "cell": "batch_size 64", "metric": ["final_val_loss", "best_val_loss"],
    ...                   "mean": [0.05, 0.0], "lo": [0.03, -0.01], "hi": [0.07, 0.01],
    ...                   "margin": 0.02, "verdict": ["different", "equivalent"]})
    >>> disagreements(c)  # doctest: +NORMALIZE_WHITESPACE
    ['schedule cosine − constant at batch_size 64: final_val_loss and best_val_loss
    disagree (different: +0.05 [0.03, 0.07] vs equivalent within ±0.02).']
  """
  if comparisons is None or comparisons.empty or len(metrics) != 2:
    return []
  a, b = metrics
  key = ["axis", "arm", "reference", "cell"]
  left = comparisons[comparisons["metric"] == a].set_index(key)
  right = comparisons[comparisons["metric"] == b].set_index(key)
  out = []
  for k in left.index.intersection(right.index):
    x, y = left.loc[k], right.loc[k]
    apart = (np.isfinite([x["lo"], y["lo"]]).all()
             and (x["hi"] < y["lo"] or y["hi"] < x["lo"]))
    if x["verdict"] != y["verdict"] or apart:
      tx = verdict_text(x["verdict"], x["mean"], x["lo"], x["hi"], x["margin"])
      ty = verdict_text(y["verdict"], y["mean"], y["lo"], y["hi"], y["margin"])
      out.append(f"{k[0]} {k[1]} − {k[2]} at {k[3]}: {a} and {b} disagree ({tx} vs {ty}).")
  return out
