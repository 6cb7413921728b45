"""A run directory's tables: loading, grid axes, member status and cell means.

Everything here is pure pandas/numpy on the engine's tables (``members.parquet``,
``history.parquet``, ``config.json``). The estimators with intervals live in
``optima``, ``stability``, ``critical_batch``, ``noise_scale`` and ``findings``;
``summary.json`` is built by ``lrjax.analysis.summary``; figures live in
``lrjax.analysis.plots`` and the HTML report in ``lrjax.analysis.report``.

Conventions:
  * A *cell* is one setting of every grid axis except ``seed``; its metric is the mean
    over seeds. Only members with status ``trained`` count as stable (`stats.with_status`
    labels tables written without a ``status`` column).
  * Metrics whose name contains ``loss`` are minimised, all others maximised.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax import outcomes
from lrjax.analysis import stats
from lrjax.analysis.stats import check_metric, metric_mode
from lrjax.errors import ConfigError
from lrjax.grid import CORE_AXES

METRIC_COLUMNS = (
    "final_val_loss", "final_val_acc", "best_val_loss", "best_val_acc",
    "test_loss", "test_acc")
KNOWN_MEMBER_COLUMNS = frozenset(
    ("member", *CORE_AXES, *METRIC_COLUMNS, *stats.BOOKKEEPING_COLUMNS,
     *stats.TRAIN_LOSS_COLUMNS))
REQUIRED_MEMBER_COLUMNS = ("member", "lr", "batch_size", "diverged")
REQUIRED_HISTORY_COLUMNS = ("member", "examples_seen", "val_loss", "val_acc")


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
  missing = {k: v for k, v in stats.AXIS_DEFAULTS.items() if k not in members.columns}
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
             if c not in KNOWN_MEMBER_COLUMNS and not stats.is_result_column(c)]
  return core + extra


def lr_cells(members: pd.DataFrame, metric: str = "final_val_loss",
             by: Sequence[str] = ("batch_size", "aug"),
             axes: Sequence[str] | None = None) -> pd.DataFrame:
  """Seed-averaged metric per (``by``..., lr), best over any extra grid axes: heatmap cells.

  A descriptive table, not an estimate: the value is the mean over the seeds that did
  not diverge (failed members' metrics are real numbers and count), ``std`` its
  spread over seeds.

  Args:
    members: the members table (a ``status`` column, else the ``diverged`` flag).
    metric: a members metric column.
    by: the axes to keep besides ``lr``.
    axes: all grid axes; detected with `grid_axes` when None.

  Returns:
    One row per (by..., lr) with ``value`` (mean over non-diverged seeds), ``std``
    (over seeds), ``lo``/``hi`` (range over seeds), ``n`` (members), ``n_trained``,
    ``n_slow``, ``n_failed``, ``n_diverged``, ``stable`` (every seed trained or slow)
    and the chosen value
    of each extra axis: stable settings of the extra axes win over unstable ones, then
    the better mean. An all-diverged cell has ``value`` NaN.

  Raises:
    ConfigError: the metric is not a members column.

  Example:
    >>> df = pd.DataFrame({"lr": [0.1, 0.1, 1.0], "batch_size": 32, "aug": 0.0,
    ...                    "seed": [0, 1, 0], "diverged": [False, False, True],
    ...                    "final_val_acc": [0.5, 0.75, np.nan]})
    >>> lr_cells(df, "final_val_acc")[["lr", "value", "stable"]].to_dict("list")
    {'lr': [0.1, 1.0], 'value': [0.625, nan], 'stable': [True, False]}
  """
  check_metric(members, metric)
  members = with_default_axes(members)
  axes = list(axes) if axes is not None else grid_axes(members)
  by = list(by)
  extra = [a for a in axes if a not in (*by, "lr", "seed") and a in members.columns]
  keys = by + ["lr"] + extra
  status = stats.status_labels(members)
  df = members[keys].assign(
      _v=members[metric].where(status != "diverged").astype(float),
      _t=status == "trained", _s=status == "slow", _f=status == "failed",
      _d=status == "diverged")
  cells = (df.groupby(keys, dropna=False, sort=True)
           .agg(value=("_v", "mean"), std=("_v", "std"), lo=("_v", "min"), hi=("_v", "max"),
                n=("_v", "size"), n_trained=("_t", "sum"), n_slow=("_s", "sum"),
                n_failed=("_f", "sum"), n_diverged=("_d", "sum"))
           .reset_index())
  for c in ("n_trained", "n_slow", "n_failed", "n_diverged"):
    cells[c] = cells[c].astype(int)
  # Slow members learned and stayed finite: stable (`lrjax.outcomes`).
  cells["stable"] = cells["n_trained"] + cells["n_slow"] == cells["n"]
  if extra:
    # Order so the first row per (by, lr) is the best: stable first, then by value.
    ascending = metric_mode(metric) == "min"
    cells = cells.sort_values(["stable", "value"], ascending=[False, ascending],
                              na_position="last", kind="stable")
    cells = cells.groupby(by + ["lr"], dropna=False, sort=True).head(1)
    cells = cells.sort_values(by + ["lr"], kind="stable")
  return cells[by + ["lr", "value", "std", "lo", "hi", "n", "n_trained", "n_slow",
                     "n_failed", "n_diverged", "stable"] + extra].reset_index(drop=True)


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


def dataset_sizes(run: RunTables) -> tuple[int | None, int | None]:
  """``(num_classes, num_val)`` of the run's dataset, where the run recorded them.

  Looked up as top-level ``num_classes`` and ``num_val`` keys of ``config.json``, then
  of ``run_info.json`` beside it; None when absent. They set chance accuracy for
  `lrjax.outcomes.member_status`.

  Example:
    >>> dataset_sizes(RunTables({"num_classes": 10, "num_val": 500}, None, None, ""))
    (10, 500)
  """
  sources = [run.config or {}]
  info_path = os.path.join(run.run_dir, "run_info.json") if run.run_dir else ""
  if info_path and os.path.exists(info_path):
    with open(info_path) as f:
      try:
        sources.append(json.load(f))
      except json.JSONDecodeError:
        pass
  found = {}
  for key in ("num_classes", "num_val"):
    for src in sources:
      value = src.get(key) if isinstance(src, dict) else None
      if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        found[key] = int(value)
        break
  return found.get("num_classes"), found.get("num_val")


def analysis_members(run: RunTables) -> tuple[pd.DataFrame, str]:
  """The members table the estimators read: grid axes, status and results only.

  Keeps ``member``, the grid axes (`grid_axes`, from the config when it has a grid
  that tells the members apart, else from the column names), the metric, status and
  bookkeeping columns, and adds ``status`` when the table has
  none (`lrjax.analysis.stats.with_status`, with `dataset_sizes`).

  Returns:
    ``(members, status_source)``.

  Example:
    >>> m = pd.DataFrame({"member": [0, 1], "lr": 0.1, "batch_size": 32,
    ...                   "seed": [0, 1], "diverged": [False, True], "host": ["a", "b"],
    ...                   "final_val_loss": [0.5, np.nan]})
    >>> members, source = analysis_members(RunTables({"grid": {"lr": [0.1]}}, m, None, ""))
    >>> list(members.columns)
    ['member', 'lr', 'batch_size', 'aug', 'seed', 'diverged', 'final_val_loss', 'status']
    >>> members["status"].tolist()
    ['trained', 'diverged']
  """
  members = with_default_axes(run.members)
  axes = grid_axes(members, run.config)
  if members.duplicated([a for a in axes if a in members.columns]).any():
    # The config's grid does not name every axis of this table (renamed column?): fall
    # back to the columns that look like axes, rather than merge distinct members.
    axes = grid_axes(members)
  keep = [c for c in members.columns
          if c == "member" or c in axes or c in KNOWN_MEMBER_COLUMNS
          and c not in CORE_AXES]
  members = members[[c for c in ("member", *axes) if c in members.columns]
                    + [c for c in keep if c != "member" and c not in axes]]
  num_classes, num_val = dataset_sizes(run)
  return stats.with_status(members, num_classes, num_val, thresholds=status_thresholds(run))


def status_thresholds(run: RunTables) -> dict:
  """The run's own outcome thresholds from its config (the rule's defaults where absent),
  so that a status derived again is the one the run would write
  (`lrjax.outcomes.STATUS_SETTINGS` maps each setting to its argument).

  Example:
    >>> status_thresholds(RunTables({"slow_fraction": 0.3}, None, None, ""))
    {'slow_fraction': 0.3}
  """
  config = run.config if isinstance(run.config, dict) else {}
  return {arg: float(config[key]) for key, arg in outcomes.STATUS_SETTINGS.items()
          if isinstance(config.get(key), (int, float)) and not isinstance(config[key], bool)}
