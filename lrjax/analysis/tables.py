"""Result tables and fits for a run directory: best LR, divergence, LR-batch scaling.

Everything here is pure pandas/numpy on the engine's tables (``members.parquet``,
``history.parquet``, ``config.json``); figures live in ``lrjax.analysis.plots`` and the HTML
report in ``lrjax.analysis.report``.

Conventions:
  * A *cell* is one setting of every grid axis except ``seed``; its metric is the mean
    over seeds. A cell where any seed diverged is *unstable* and never chosen as a best
    LR: a learning rate that blows up on one seed in three is not a usable optimum.
  * Axes beyond ``lr``, ``batch_size``, ``aug`` and ``seed`` (``momentum``,
    ``schedule``, ...) are maximised over: per (batch_size, aug, lr) the table keeps the
    best setting of the extra axes and reports it in their columns.
  * Metrics whose name contains ``loss`` are minimised, all others maximised.

References: Goyal et al. 2017 (linear scaling rule); Malladi et al. 2022 (square-root
rule for adaptive optimizers); Shallue et al. 2019 (batch-size regimes).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax.errors import ConfigError

METRIC_COLUMNS = (
    "final_val_loss", "final_val_acc", "best_val_loss", "best_val_acc",
    "test_loss", "test_acc")
CORE_AXES = ("lr", "batch_size", "aug", "seed")
# Per-member bookkeeping the engine may add; never grid axes.
_NON_AXIS_COLUMNS = ("updates", "examples_seen", "lr_now")
KNOWN_MEMBER_COLUMNS = frozenset(
    ("member", *CORE_AXES, "diverged", "diverged_at", *METRIC_COLUMNS,
     *_NON_AXIS_COLUMNS))
REQUIRED_MEMBER_COLUMNS = ("member", "lr", "batch_size", "diverged")
# A grid without an aug or seed axis ran at these values.
AXIS_DEFAULTS = {"aug": 0.0, "seed": 0}
REQUIRED_HISTORY_COLUMNS = ("member", "examples_seen", "val_loss", "val_acc")
# Prefixes/suffixes of per-member result columns an engine may add; never axes.
_RESULT_PREFIXES = ("final_", "best_", "test_", "train_", "val_", "n_", "wall")
_RESULT_SUFFIXES = ("_loss", "_acc", "_at", "_time", "_s")


class RunTables(NamedTuple):
  """One run directory, loaded.

  Attributes:
    config: the resolved experiment config (nested dict from ``config.json``).
    members: one row per member (README, "What a run gives you").
    history: one row per member and evaluation.
    run_dir: where it was loaded from.
  """
  config: dict
  members: pd.DataFrame
  history: pd.DataFrame
  run_dir: str


def load_run(run_dir: str) -> RunTables:
  """Loads ``config.json``, ``members.parquet`` and ``history.parquet`` from a run dir.

  Falls back to ``members.csv`` when the parquet file is absent.

  Args:
    run_dir: the ``--workdir`` of ``lrjax run``.

  Returns:
    A `RunTables`.

  Raises:
    ConfigError: the directory or a file is missing, or a table lacks a column.

  Example:
    >>> import tempfile
    >>> try:
    ...   load_run(tempfile.mkdtemp())
    ... except ConfigError as e:
    ...   print(str(e).split(":")[0])
    run directory is incomplete
  """
  if not os.path.isdir(run_dir):
    raise ConfigError(f"run directory {run_dir!r} does not exist; pass the --workdir "
                      "of a finished `lrjax run`.")
  paths = {name: os.path.join(run_dir, name)
           for name in ("config.json", "members.parquet", "history.parquet")}
  if not os.path.exists(paths["members.parquet"]):
    csv = os.path.join(run_dir, "members.csv")
    if os.path.exists(csv):
      paths["members.parquet"] = csv
  missing = [n for n, p in paths.items() if not os.path.exists(p)]
  if missing:
    raise ConfigError(
        f"run directory is incomplete: {run_dir!r} lacks {', '.join(missing)}. "
        "Was the run interrupted? Resume it with `lrjax run ... --resume`.")
  with open(paths["config.json"]) as f:
    config = json.load(f)
  mpath = paths["members.parquet"]
  members = pd.read_csv(mpath) if mpath.endswith(".csv") else pd.read_parquet(mpath)
  history = pd.read_parquet(paths["history.parquet"])
  for name, df, required in (("members", members, REQUIRED_MEMBER_COLUMNS),
                             ("history", history, REQUIRED_HISTORY_COLUMNS)):
    absent = [c for c in required if c not in df.columns]
    if absent:
      raise ConfigError(f"{name} table in {run_dir!r} lacks columns {absent}; it was "
                        "written by an incompatible lrjax version.")
  return RunTables(config=config, members=with_default_axes(members), history=history,
             run_dir=run_dir)


def with_default_axes(members: pd.DataFrame) -> pd.DataFrame:
  """Adds ``aug``/``seed`` columns a grid left out (0.0 / 0); ``diverged`` as bool.

  Example:
    >>> df = pd.DataFrame({"lr": [0.1], "batch_size": [32], "diverged": [None]})
    >>> with_default_axes(df)[["aug", "seed", "diverged"]].values.tolist()
    [[0.0, 0, False]]
  """
  missing = {k: v for k, v in AXIS_DEFAULTS.items() if k not in members.columns}
  if not missing and members["diverged"].dtype == bool:
    return members
  members = members.assign(**missing)
  members["diverged"] = members["diverged"].fillna(False).astype(bool)
  return members


def grid_axes(members: pd.DataFrame, config: dict | None = None) -> list[str]:
  """Names of the grid axes present in a members table, core axes first.

  Extra axes come from ``config["grid"]`` when given, else from the columns that are
  neither known columns nor look like results (``*_loss``, ``final_*``, ...).

  Example:
    >>> df = pd.DataFrame({"member": [0], "lr": [0.1], "batch_size": [32], "aug": [0.0],
    ...                    "seed": [0], "momentum": [0.9], "diverged": [False],
    ...                    "final_val_acc": [0.9]})
    >>> grid_axes(df)
    ['lr', 'batch_size', 'aug', 'seed', 'momentum']
  """
  core = [a for a in CORE_AXES if a in members.columns]
  if config is not None and isinstance(config.get("grid"), dict):
    extra = [k for k in config["grid"] if k not in CORE_AXES and k in members.columns]
  else:
    extra = [c for c in members.columns
             if c not in KNOWN_MEMBER_COLUMNS and not c.startswith(_RESULT_PREFIXES)
             and not c.endswith(_RESULT_SUFFIXES)]
  return core + extra


def metric_mode(metric: str) -> str:
  """``"min"`` for losses, ``"max"`` otherwise.

  Example:
    >>> metric_mode("final_val_loss"), metric_mode("test_acc")
    ('min', 'max')
  """
  return "min" if "loss" in metric else "max"


def _check_metric(members: pd.DataFrame, metric: str) -> None:
  if metric not in members.columns:
    raise ConfigError(f"metric {metric!r} is not a members column; choose one of "
                      f"{[c for c in METRIC_COLUMNS if c in members.columns]}.")


def lr_cells(members: pd.DataFrame, metric: str = "final_val_acc",
             by: Sequence[str] = ("batch_size", "aug"),
             axes: Sequence[str] | None = None) -> pd.DataFrame:
  """Seed-averaged metric per (``by``..., lr), best over any extra grid axes.

  Args:
    members: the members table.
    metric: a members metric column.
    by: the axes to keep besides ``lr``.
    axes: all grid axes; detected with `grid_axes` when None.

  Returns:
    One row per (by..., lr) with ``value`` (mean over seeds of the surviving
    members), ``std``, ``n`` (members averaged), ``n_diverged``, ``stable`` (no seed
    diverged) and the chosen value of each extra axis. Stable settings of the extra
    axes win over unstable ones; an all-diverged cell has ``value`` NaN.

  Example:
    >>> df = pd.DataFrame({"lr": [0.1, 0.1, 1.0], "batch_size": 32, "aug": 0.0,
    ...                    "seed": [0, 1, 0], "diverged": [False, False, True],
    ...                    "final_val_acc": [0.5, 0.75, np.nan]})
    >>> lr_cells(df)[["lr", "value", "stable"]].to_dict("list")
    {'lr': [0.1, 1.0], 'value': [0.625, nan], 'stable': [True, False]}
  """
  _check_metric(members, metric)
  members = with_default_axes(members)
  axes = list(axes) if axes is not None else grid_axes(members)
  by = list(by)
  extra = [a for a in axes if a not in (*by, "lr", "seed")]
  keys = by + ["lr"] + extra
  df = members.copy()
  # Diverged members' metrics are meaningless even if the engine wrote a number.
  df["_v"] = df[metric].where(~df["diverged"].astype(bool))
  cells = (df.groupby(keys, dropna=False, sort=True)
           .agg(value=("_v", "mean"), std=("_v", "std"), n=("_v", "size"),
                n_diverged=("diverged", "sum"))
           .reset_index())
  cells["n_diverged"] = cells["n_diverged"].astype(int)
  cells["stable"] = cells["n_diverged"] == 0
  if extra:
    # Order so the first row per (by, lr) is the best: stable first, then by value.
    ascending = metric_mode(metric) == "min"
    cells = cells.sort_values(["stable", "value"], ascending=[False, ascending],
                              na_position="last", kind="stable")
    cells = cells.groupby(by + ["lr"], dropna=False, sort=True).head(1)
    cells = cells.sort_values(by + ["lr"], kind="stable")
  return cells[by + ["lr", "value", "std", "n", "n_diverged", "stable"] + extra
               ].reset_index(drop=True)


def best_lr_table(members: pd.DataFrame, metric: str = "final_val_acc",
                  by: Sequence[str] = ("batch_size", "aug"), rel_tol: float = 0.01,
                  axes: Sequence[str] | None = None) -> pd.DataFrame:
  """Per (batch_size, aug): the best LR (mean over seeds first) and the near-best range.

  Args:
    members: the members table.
    metric: the members column to optimise (losses minimised, others maximised).
    by: the axes to group by.
    rel_tol: LRs whose stable cell is within ``rel_tol * |best|`` of the best count as
      near-best; their span is ``lr_lo``..``lr_hi``.
    axes: all grid axes; detected when None.

  Returns:
    One row per group: ``best_lr`` (NaN when no LR is stable), ``metric`` (the name),
    ``value`` and ``std`` (over seeds) at the best LR, ``lr_lo``, ``lr_hi``,
    ``n_within``, ``n_lrs``, ``edge`` (``"low"``/``"high"`` when the best LR is the
    smallest/largest tried, so the grid should be widened; else ``""``) and the chosen
    values of any extra axes.

  Example:
    >>> df = pd.DataFrame({"lr": [0.01, 0.1, 1.0] * 2, "batch_size": [32] * 3 + [64] * 3,
    ...                    "aug": 0.0, "seed": 0, "diverged": False,
    ...                    "final_val_acc": [0.5, 0.9, 0.7, 0.5, 0.8, 0.95]})
    >>> best_lr_table(df)[["batch_size", "best_lr", "value", "edge"]].to_dict("list")
    {'batch_size': [32, 64], 'best_lr': [0.1, 1.0], 'value': [0.9, 0.95], 'edge': ['', 'high']}
  """
  by = list(by)
  cells = lr_cells(members, metric, by, axes)
  extra = [c for c in cells.columns
           if c not in (*by, "lr", "value", "std", "n", "n_diverged", "stable")]
  minimise = metric_mode(metric) == "min"
  rows = []
  for key, group in cells.groupby(by, dropna=False, sort=True):
    key = key if isinstance(key, tuple) else (key,)
    row: dict[str, Any] = dict(zip(by, key))
    lrs = np.sort(group["lr"].unique())
    ok = group[group["stable"] & np.isfinite(group["value"])]
    row.update(metric=metric, n_lrs=len(lrs))
    if ok.empty:
      row.update(best_lr=np.nan, value=np.nan, std=np.nan, lr_lo=np.nan, lr_hi=np.nan,
                 n_within=0, edge="", **{e: np.nan for e in extra})
    else:
      best = ok.loc[ok["value"].idxmin() if minimise else ok["value"].idxmax()]
      near = ok[(ok["value"] - best["value"]).abs() <= rel_tol * abs(best["value"])]
      edge = ""
      if len(lrs) > 1 and best["lr"] == lrs[0]:
        edge = "low"
      elif len(lrs) > 1 and best["lr"] == lrs[-1]:
        edge = "high"
      row.update(best_lr=float(best["lr"]), value=float(best["value"]),
                 std=float(best["std"]), lr_lo=float(near["lr"].min()),
                 lr_hi=float(near["lr"].max()), n_within=int(near["lr"].nunique()),
                 edge=edge, **{e: best[e] for e in extra})
    rows.append(row)
  cols = by + ["best_lr", "metric", "value", "std", "lr_lo", "lr_hi", "n_within",
               "n_lrs", "edge"] + extra
  return pd.DataFrame(rows, columns=cols)


def divergence_boundary(members: pd.DataFrame,
                        by: Sequence[str] = ("batch_size", "aug")) -> pd.DataFrame:
  """Per (batch_size, aug): the smallest LR at which any member diverged.

  Args:
    members: the members table.
    by: the axes to group by.

  Returns:
    One row per group: ``min_diverged_lr`` (NaN when nothing diverged),
    ``max_stable_lr`` (largest LR below it where no member diverged; NaN when even
    the smallest LR diverged), ``n_diverged`` and ``n_members``.

  Example:
    >>> df = pd.DataFrame({"lr": [0.1, 1.0, 10.0], "batch_size": 32, "aug": 0.0,
    ...                    "diverged": [False, True, True]})
    >>> divergence_boundary(df)[["min_diverged_lr", "max_stable_lr"]].to_dict("list")
    {'min_diverged_lr': [1.0], 'max_stable_lr': [0.1]}
  """
  by = list(by)
  members = with_default_axes(members)
  rows = []
  for key, group in members.groupby(by, dropna=False, sort=True):
    key = key if isinstance(key, tuple) else (key,)
    div = group["diverged"].astype(bool)
    per_lr = div.groupby(group["lr"]).any()
    min_div = float(per_lr[per_lr].index.min()) if per_lr.any() else np.nan
    stable = per_lr[~per_lr].index
    if not math.isnan(min_div):
      stable = stable[stable < min_div]
    rows.append({**dict(zip(by, key)), "min_diverged_lr": min_div,
                 "max_stable_lr": float(stable.max()) if len(stable) else np.nan,
                 "n_diverged": int(div.sum()), "n_members": len(group)})
  return pd.DataFrame(rows, columns=by + ["min_diverged_lr", "max_stable_lr",
                                          "n_diverged", "n_members"])


def fit_lr_batch_scaling(best_lrs: pd.DataFrame, by: str = "aug") -> pd.DataFrame:
  """Least-squares slope of log(best LR) vs log(batch size), per ``by`` value.

  The linear scaling rule (Goyal et al. 2017) predicts slope 1, the square-root rule
  (Malladi et al. 2022) slope 0.5. Best LRs come from a discrete grid, so treat a
  slope's standard error as a lower bound on its uncertainty.

  Args:
    best_lrs: the output of `best_lr_table`.
    by: the column to fit separately for.

  Returns:
    One row per ``by`` value: ``n_points``, ``slope``, ``slope_se`` (NaN with fewer
    than 3 points), ``intercept`` (log best LR at batch size 1), ``r2``,
    ``z_linear``/``z_sqrt`` ((slope - rule) / se), ``consistent_linear``/
    ``consistent_sqrt`` (within 2 se) and ``closer_to`` (``"linear"`` or ``"sqrt"``).

  Example:
    >>> t = pd.DataFrame({"batch_size": [32, 64, 128], "aug": 0.0,
    ...                   "best_lr": [0.01, 0.02, 0.04]})
    >>> fit = fit_lr_batch_scaling(t)
    >>> round(float(fit["slope"][0]), 6), fit["closer_to"][0]
    (1.0, 'linear')
  """
  rows = []
  for key, group in best_lrs.groupby(by, dropna=False, sort=True):
    g = group[np.isfinite(group["best_lr"]) & (group["best_lr"] > 0)]
    x = np.log(g["batch_size"].to_numpy(float))
    y = np.log(g["best_lr"].to_numpy(float))
    n = len(x)
    row = {by: key, "n_points": n, "slope": np.nan, "slope_se": np.nan,
           "intercept": np.nan, "r2": np.nan}
    if n >= 2 and np.ptp(x) > 0:
      slope, intercept = np.polyfit(x, y, 1)
      row.update(slope=float(slope), intercept=float(intercept))
      resid = y - (slope * x + intercept)
      ss_tot = float(np.sum((y - y.mean()) ** 2))
      row["r2"] = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else 1.0
      if n >= 3:
        # cov="unscaled" is (X^T X)^-1; scale by the residual variance ourselves so
        # that an exact fit gives se 0 instead of numpy's error.
        _, cov = np.polyfit(x, y, 1, cov="unscaled")
        sigma2 = float(np.sum(resid ** 2)) / (n - 2)
        row["slope_se"] = math.sqrt(max(float(cov[0, 0]) * sigma2, 0.0))
    for rule, target in (("linear", 1.0), ("sqrt", 0.5)):
      diff, se = row["slope"] - target, row["slope_se"]
      row[f"z_{rule}"] = (diff / se if se > 0 else
                          (0.0 if abs(diff) < 1e-9 else math.copysign(np.inf, diff))
                          ) if np.isfinite(se) else np.nan
      row[f"consistent_{rule}"] = (bool(abs(diff) <= 2 * se + 1e-9)
                                   if np.isfinite(se) else None)
    row["closer_to"] = ("" if not np.isfinite(row["slope"]) else
                        "linear" if abs(row["slope"] - 1) < abs(row["slope"] - 0.5)
                        else "sqrt")
    rows.append(row)
  return pd.DataFrame(rows, columns=[
      by, "n_points", "slope", "slope_se", "intercept", "r2", "z_linear", "z_sqrt",
      "consistent_linear", "consistent_sqrt", "closer_to"])


def aug_effect(best_lrs: pd.DataFrame) -> pd.DataFrame:
  """How augmentation shifts the best LR: ratio to the weakest aug, per batch size.

  Returns:
    One row per (batch_size, aug) with ``best_lr`` and ``ratio_to_base`` (best LR
    divided by the best LR at the smallest aug strength of the same batch size).

  Example:
    >>> t = pd.DataFrame({"batch_size": [32, 32], "aug": [0.0, 0.5],
    ...                   "best_lr": [0.1, 0.2]})
    >>> aug_effect(t)["ratio_to_base"].tolist()
    [1.0, 2.0]
  """
  t = best_lrs[["batch_size", "aug", "best_lr"]].sort_values(["batch_size", "aug"])
  base = t.groupby("batch_size")["best_lr"].transform("first")
  return t.assign(ratio_to_base=t["best_lr"] / base).reset_index(drop=True)


def jsonable(obj: Any) -> Any:
  """Converts numpy/pandas values (and NaN) to plain JSON types, recursively.

  Example:
    >>> jsonable({"a": np.float32(0.5), "b": [np.nan, np.int64(3)]})
    {'a': 0.5, 'b': [None, 3]}
  """
  if isinstance(obj, pd.DataFrame):
    return jsonable(obj.to_dict(orient="records"))
  if isinstance(obj, dict):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple, np.ndarray)):
    return [jsonable(v) for v in obj]
  if isinstance(obj, (bool, np.bool_)):
    return bool(obj)
  if isinstance(obj, (int, np.integer)):
    return int(obj)
  if isinstance(obj, (float, np.floating)):
    return None if not math.isfinite(float(obj)) else float(obj)
  if obj is None or obj is pd.NA or obj is pd.NaT:
    return None
  return obj if isinstance(obj, str) else str(obj)


def summarize(run: RunTables, metric: str = "final_val_acc") -> dict:
  """The run's headline numbers as a JSON-serialisable dict (``summary.json``).

  Args:
    run: a `RunTables` from `load_run`.
    metric: the members column that ranks members and LRs.

  Returns:
    A dict with ``n_members``, ``n_diverged``, ``axes`` (name -> values), ``metric``,
    ``best_member`` (its hparams and metrics), ``best_lr`` (the `best_lr_table`
    records), ``scaling_fit``, ``divergence_boundary``, ``aug_effect`` and
    ``warnings`` (e.g. best LRs at the edge of the grid).

  Example:
    >>> m = pd.DataFrame({"member": [0, 1], "lr": [0.1, 1.0], "batch_size": 32,
    ...                   "aug": 0.0, "seed": 0, "diverged": [False, True],
    ...                   "final_val_acc": [0.9, np.nan]})
    >>> s = summarize(RunTables({}, m, pd.DataFrame(), "."))
    >>> s["n_diverged"], s["best_member"]["lr"]
    (1, 0.1)
  """
  members, config = with_default_axes(run.members), run.config
  axes = grid_axes(members, config)
  _check_metric(members, metric)
  minimise = metric_mode(metric) == "min"
  ok = members[~members["diverged"].astype(bool) & members[metric].notna()]
  best_member = None
  if not ok.empty:
    b = ok.loc[ok[metric].idxmin() if minimise else ok[metric].idxmax()]
    best_member = {"member": b["member"], **{a: b[a] for a in axes},
                   **{c: b[c] for c in METRIC_COLUMNS if c in b.index}}
  table = best_lr_table(members, metric, axes=axes)
  fit = fit_lr_batch_scaling(table)
  warnings = []
  n_div = int(members["diverged"].astype(bool).sum())
  if n_div == len(members):
    warnings.append("every member diverged: lower the learning rates.")
  for _, r in table[table["edge"] != ""].iterrows():
    side = "smallest" if r["edge"] == "low" else "largest"
    warnings.append(f"batch_size={r['batch_size']}, aug={r['aug']}: the best LR "
                    f"{r['best_lr']:g} is the {side} tried; widen grid.lr.")
  return jsonable({
      "n_members": len(members),
      "n_diverged": n_div,
      "axes": {a: sorted(members[a].dropna().unique().tolist(), key=str)
               if members[a].dtype == object else sorted(members[a].dropna().unique())
               for a in axes},
      "metric": metric,
      "best_member": best_member,
      "best_lr": table,
      "scaling_fit": fit,
      "divergence_boundary": divergence_boundary(members),
      "aug_effect": aug_effect(table),
      "warnings": warnings,
  })
