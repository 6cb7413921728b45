"""Adding members to a finished run (``lrjax extend``): seeds, LRs, batch sizes, points.

An extension trains only the members it adds, as one program sized by the whole
(union) grid (``build_run``'s ``plan_table``): each new member gets the micro-batch,
evaluation points and budget a fresh run of the union would give it, and members do
not depend on their grid companions (tests/test_program.py), so it equals that
member of a fresh union run within the engine's accumulation tolerance. The run's
members keep their rows of ``members.parquet`` and ``history.parquet`` as they were,
except ``status``: it judges a member against its cell's best LR
(``lrjax.outcomes``), which new LRs can move, so it is judged again over the union.

Refused before anything compiles (a ``ConfigError`` naming the field):

* a changed non-grid field (dataset, model, epochs, schedule, analysis, ...);
* a new axis (the run's members have no value on it);
* values that would change the existing members' evaluation interval or budget (a
  batch size that changes the lcm of the batch sizes, a smaller batch size under
  ``budget="updates"``);
* nothing new.

Nothing is lost: the new members train in ``<workdir>.extend`` (checkpoints and the
extension's spec, ``extension.json``), the union is written to a temporary sibling
and swapped in atomically (``workdir.replace_dir``), and ``resume=True`` continues
an interrupted extension. The workdir lock of ``lrjax run`` applies.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import shutil
import time
from typing import Mapping, Sequence

import ml_collections
import pandas as pd

from lrjax import callables
from lrjax import experiment
from lrjax import grid as grid_lib
from lrjax.config_files import apply_overrides
from lrjax.engine import GridResult, train
from lrjax.engine.plan import plan
from lrjax.errors import ConfigError, RunNotWritten
from lrjax.metric_writers import make_writers
from lrjax.outcomes import member_status, status_arguments
from lrjax.workdir import PartialTables, is_finished_run, locked, plain, write_results

SPEC_FILE = "extension.json"


def extension_dir(workdir: str) -> str:
  """Where an extension of ``workdir`` trains: ``<workdir>.extend``.

  Example:
    >>> extension_dir("/runs/a/")
    '/runs/a.extend'
  """
  return os.path.abspath(workdir).rstrip(os.sep) + ".extend"


def read_run(workdir: str) -> tuple[dict, pd.DataFrame, pd.DataFrame, dict]:
  """A finished run's ``(config, members, history, run_info)``.

  Raises:
    ConfigError: ``workdir`` holds no finished run.
  """
  if not is_finished_run(workdir):
    hint = (" It is still training or was interrupted: continue it with `lrjax run CONFIG "
            "--workdir DIR --resume`." if os.path.isdir(workdir.rstrip(os.sep) + ".partial")
            else "")
    raise ConfigError(f"WORKDIR: {workdir} holds no finished run (no config.json and "
                      f"members.parquet); give a directory written by `lrjax run`.{hint}")
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  info_path = os.path.join(workdir, "run_info.json")
  info = json.load(open(info_path)) if os.path.exists(info_path) else {}
  return (config, pd.read_parquet(os.path.join(workdir, "members.parquet")),
          pd.read_parquet(os.path.join(workdir, "history.parquet")), info)


# Records a run's config.json keeps beside the config it trains.
RECORDS = ("extensions", "settle")


def run_config(config: dict) -> dict:
  """A saved ``config.json`` without its records (``extensions``, ``settle``): the
  config it trains.

  Example:
    >>> run_config({"epochs": 2, "extensions": []})
    {'epochs': 2}
  """
  return {k: v for k, v in config.items() if k not in RECORDS}


def axis_columns(config: dict) -> list[str]:
  """The grid columns of a run's member table (``seed`` and ``aug`` always).

  Example:
    >>> axis_columns({"grid": {"lr": [0.1], "batch_size": [32]}})
    ['seed', 'aug', 'lr', 'batch_size']
  """
  columns = experiment.grid_table(experiment.checked_fields(run_config(config))).columns
  return [c for c in columns if c != "member"]


def added_members(config: dict, members: pd.DataFrame,
                  values: Mapping[str, Sequence] | None = None,
                  points: pd.DataFrame | None = None) -> pd.DataFrame:
  """The members an extension adds, numbered after the run's last member.

  ``values`` adds values to axes: every combination of the other axes that the run
  has, with every value (old or new) of the axes given, that the run does not have
  yet. On a full grid this is the product of the axes with the values added.
  ``points`` adds explicit members (one row each, a column per axis of the run).

  Raises:
    ConfigError: an axis the run lacks, a point missing an axis, or nothing new.

  Example:
    >>> cfg = {"grid": {"lr": [0.1, 1.0], "batch_size": [32], "seed": [0]}}
    >>> run = experiment.grid_table(cfg)
    >>> new = added_members(cfg, run, values={"seed": (1,)})
    >>> new[["member", "lr", "seed"]].values.tolist()
    [[2.0, 0.1, 1.0], [3.0, 1.0, 1.0]]
  """
  cols = axis_columns(config)
  existing = members[cols]
  parts = []
  if values:
    unknown = [a for a in values if a not in cols]
    if unknown:
      raise ConfigError(f"grid.{unknown[0]}: not an axis of this run (its axes: {cols}); an "
                        f"extension adds values to the axes the run has. A new axis is a new "
                        f"run (lrjax run).")
    others = [c for c in cols if c not in values]
    axes = {a: tuple(dict.fromkeys([*existing[a].tolist(), *values[a]])) for a in values}
    for a in values:  # repeated or float32-equal values, as grid.make_grid refuses them
      grid_lib.make_grid({"lr": (0.1,), "batch_size": (1,), **{a: tuple(values[a])}})
      grid_lib.make_grid({"lr": (0.1,), "batch_size": (1,), **{a: axes[a]}})
    grown = pd.DataFrame(list(itertools.product(*axes.values())), columns=list(axes))
    combos = existing[others].drop_duplicates()
    parts.append(combos.merge(grown, how="cross")[cols] if others else grown[cols])
  if points is not None:
    missing = [c for c in cols if c not in points.columns]
    extra = [c for c in points.columns if c not in cols and c != "member"]
    if missing or extra:
      raise ConfigError(f"--points: each row gives every axis of the run, {cols}; "
                        f"{'missing ' + str(missing) if missing else 'unknown ' + str(extra)}.")
    parts.append(points[cols])
  if not parts:
    raise ConfigError("extend: nothing to add; give new axis values (e.g. "
                      "--config.grid.seed=\"(3,4)\") or --points FILE.csv.")
  new = pd.concat(parts, ignore_index=True).astype(existing.dtypes.to_dict())
  new = new.drop_duplicates().merge(existing.drop_duplicates(), how="left", indicator=True)
  new = new[new["_merge"] == "left_only"].drop(columns="_merge").reset_index(drop=True)
  if new.empty:
    raise ConfigError("grid: every member these values give is in the run already; nothing "
                      "to extend. Give values the run lacks, e.g. --config.grid.seed=\"(3,4)\".")
  new.insert(0, "member", int(members["member"].max()) + 1 + pd.RangeIndex(len(new)))
  return new.astype({"member": members["member"].dtype})


def union_grid(config: dict, table: pd.DataFrame) -> dict:
  """``config["grid"]`` over a member table: each axis's values, the run's first.

  Example:
    >>> t = pd.DataFrame({"lr": [0.1, 0.3, 0.1], "seed": [0, 0, 1]})
    >>> union_grid({"grid": {"lr": [0.1], "seed": [0]}}, t)
    {'lr': [0.1, 0.3], 'seed': [0, 1]}
  """
  return {a: plain(list(dict.fromkeys(table[a].tolist())))
          for a in [*config["grid"], *(c for c in table.columns
                                       if c not in config["grid"] and c != "member")]}


def check_unchanged_fields(saved: dict, config) -> None:
  """Refuses an extension config that changes anything but the grid.

  Raises:
    ConfigError: naming the first changed field.

  Example:
    >>> check_unchanged_fields({"epochs": 2.0, "grid": {}}, {"epochs": 2.0, "grid": {"lr": [1]}})
  """
  new = json.loads(json.dumps(experiment.config_to_dict(config), default=callables.json_default))
  saved = run_config(saved)
  for key in sorted((set(saved) | set(new)) - {"grid"}):
    if saved.get(key) != new.get(key):
      raise ConfigError(f"{key}: an extension keeps every field of the run but the grid; the "
                        f"run has {saved.get(key)!r}, the override gives {new.get(key)!r}. "
                        f"To change {key}, start a new run (lrjax run ... --workdir NEW).")


def values_from_overrides(saved: dict, overrides: list[str]) -> dict[str, tuple]:
  """``--config.grid.AXIS=VALUES`` overrides of ``lrjax extend`` -> axis -> added values.

  The overrides are parsed as ``lrjax run`` parses them, on the run's own config;
  every other field must keep its value.

  Raises:
    ConfigError: a bad override, or one that changes a non-grid field.

  Example:
    >>> saved = {**experiment.config_to_dict(experiment.default_config())}
    >>> values_from_overrides(saved, ["--config.grid.seed=(1,2)"])
    {'seed': (1, 2)}
  """
  config = ml_collections.ConfigDict(_tuples(run_config(saved)))
  config = apply_overrides(config, overrides, prog="lrjax extend", reconcile=False)
  check_unchanged_fields(saved, config)
  keys = [o.split("=", 1)[0][len("--config."):] for o in overrides if "=" in o]
  axes = [k[len("grid."):] for k in keys if k.startswith("grid.")]
  return {a: tuple(config.grid[a]) for a in dict.fromkeys(axes)}


def _tuples(value):
  """JSON lists -> tuples (ml_collections' and config_flags' sequences)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def _check_plans_unchanged(runs, old: pd.DataFrame) -> None:
  """Refuses added members that would change the existing members' sizes."""
  for run in runs:
    same = (old if "optimizer" not in old.columns
            else old[old["optimizer"] == run.settings.optimizer])
    if same.empty:
      continue
    before, after = plan(same, len(run.dataset.train), run.settings), run.plan
    sizes = {"updates per member (budget=\"updates\")": lambda p: p.update_budget,
             "evaluation interval (examples)": lambda p: p.examples_per_segment,
             "examples per member": lambda p: p.examples_per_member,
             "batch growth points (examples)":
                 lambda p: tuple(t * p.micro_batch for t in p.growth_ticks)}
    for what, size in sizes.items():
      if size(before) != size(after):
        added = sorted(set(run.table["batch_size"]) - set(same["batch_size"]))
        raise ConfigError(
            f"grid.batch_size: the extended grid changes the run's {what} from "
            f"{size(before)} to {size(after)} (segments are whole batches of every batch "
            f"size; under budget=\"updates\" the smallest batch sets everyone's updates), so "
            f"the members the run has would differ from those of the extended grid. Added "
            f"batch sizes {added}: choose ones that keep the lcm of the run's batch sizes "
            f"{sorted(set(same['batch_size']))}, or train the larger grid as a new run.")


def extend_run(workdir: str, values: Mapping[str, Sequence] | None = None,
               points: pd.DataFrame | None = None, *, resume: bool = False,
               progress: bool = True, writers=("tensorboard",),
               wave: dict | None = None) -> GridResult:
  """Adds members to the finished run in ``workdir`` and rebuilds it over the union.

  Args:
    workdir: a directory written by ``lrjax run`` (or extended before).
    values: axis -> values to add (``added_members``).
    points: explicit members to add, a column per axis.
    resume: continue the interrupted extension in ``<workdir>.extend`` (give no
      ``values`` or ``points``: it adds what it was started with).
    progress: show the progress bar.
    writers: live metrics of the new members (``lrjax.metric_writers``).
    wave: what ``lrjax settle`` records about the wave this extension is (kept in the
      extension's record in ``config.json``).

  Returns:
    The union ``GridResult`` (members and history of every member).

  Raises:
    ConfigError: bad input (before anything compiles), or an extension in progress.

  Example:
    >>> import tempfile
    >>> c = experiment.default_config()
    >>> c.grid.lr, c.grid.batch_size, c.epochs = (0.1,), (64,), 1
    >>> run = os.path.join(tempfile.mkdtemp(), "run")
    >>> _ = experiment.train_and_evaluate(c, run, progress=False)
    >>> union = extend_run(run, {"seed": (1,)}, progress=False)
    >>> union.members[["member", "seed"]].values.tolist()
    [[0, 0], [1, 1]]
  """
  with locked(workdir):
    return _extend(workdir, values, points, resume, progress, writers, wave)


def _added_or_resumed(workdir, saved, members, values, points, resume) -> pd.DataFrame:
  """The members to add: new ones, or those of the interrupted extension."""
  partial = extension_dir(workdir)
  if not resume:
    if os.path.isdir(partial):
      raise ConfigError(f"WORKDIR: an interrupted extension of {workdir} is in {partial}; "
                        f"pass --resume to continue it, or delete that directory.")
    return added_members(saved, members, values, points)
  if not os.path.isdir(partial):
    raise ConfigError(f"--resume: no interrupted extension of {workdir} ({partial} does not "
                      f"exist); extend without --resume.")
  if values or points is not None:
    raise ConfigError("--resume: continues the interrupted extension with the members it "
                      "was started with; drop the --config.grid / --points arguments.")
  with open(os.path.join(partial, SPEC_FILE)) as f:
    spec = json.load(f)
  if spec["members_before"] != len(members):
    raise ConfigError(f"--resume: {workdir} has {len(members)} members, the interrupted "
                      f"extension started from {spec['members_before']}; delete {partial}.")
  return pd.DataFrame(spec["added"]).astype(
      members[["member", *axis_columns(saved)]].dtypes.to_dict())


def _extend(workdir, values, points, resume, progress, writers, wave) -> GridResult:
  saved, members, history, info = read_run(workdir)
  added = _added_or_resumed(workdir, saved, members, values, points, resume)
  old_rows = members[["member", *axis_columns(saved)]]
  union_rows = pd.concat([old_rows, added], ignore_index=True)
  union_cfg = {**run_config(saved), "grid": union_grid(saved, union_rows)}
  runs = experiment.resolve_runs(union_cfg, table=added, plan_table=union_rows)
  _check_plans_unchanged(runs, old_rows)
  partial = extension_dir(workdir)
  started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  if not resume:
    os.makedirs(partial)
    with open(os.path.join(partial, SPEC_FILE), "w") as f:
      json.dump({"started": started, "members_before": len(members), "wave": wave,
                 "added": plain(added.to_dict("records"))}, f, indent=2)
  else:
    with open(os.path.join(partial, SPEC_FILE)) as f:
      spec = json.load(f)
    started, wave = spec["started"], spec.get("wave")
  t0 = time.perf_counter()
  new = _train_new(runs, partial, progress, writers, workdir)
  train_s = time.perf_counter() - t0
  union_members = pd.concat([members, new.members[members.columns]], ignore_index=True)
  run = runs[0]
  union_members["status"] = member_status(
      union_members, num_classes=run.dataset.num_classes, num_val=len(run.dataset.validation),
      **status_arguments(run.settings))
  union_history = pd.concat([history, new.history[history.columns]], ignore_index=True)
  record = {"started": started, "added": len(added), "train_s": round(train_s, 1),
            "members": [int(m) for m in added["member"]],
            **({"wave": wave} if wave else {})}
  config = {**saved, "grid": union_cfg["grid"],
            "extensions": [*saved.get("extensions", []), record]}
  union_info = {**info, "extensions": [*info.get("extensions", []), new.info]}
  result = GridResult(union_members, union_history, None, union_info)
  try:
    write_results(result, config, workdir,
                  tb_dir=[os.path.join(workdir, "tb"), os.path.join(partial, "tb")])
  except Exception as e:  # the new members' trained state stays in <workdir>.extend
    raise RunNotWritten(workdir, partial, e) from e
  shutil.rmtree(partial, ignore_errors=True)
  return result


def _train_new(runs, partial, progress, writers, workdir) -> GridResult:
  """Trains the added members (one program per optimizer), checkpointing in ``partial``."""
  tb_dir = os.path.join(partial, "tb")
  all_writers = [PartialTables(partial), *make_writers(
      writers or (), tb_dir, run_name=os.path.basename(os.path.abspath(workdir)))]
  try:
    results = [train(run, progress=progress, writers=all_writers,
                     checkpoint_dir=(partial if len(runs) == 1
                                     else os.path.join(partial, run.settings.optimizer)))
               for run in runs]
  finally:
    for w in all_writers:
      w.close()
  return results[0] if len(results) == 1 else experiment.concatenate(results)
