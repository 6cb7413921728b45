"""Experiment configs -> a resolved ``Run`` -> a run directory (Flax-examples style).

``train_and_evaluate(config, workdir)`` is the library function behind ``lrjax
run``; ``find_lr(config, workdir)`` is the one behind ``lrjax find``. Both start
from ``resolve(config)``, the only place a config is validated: it checks the
config's fields, loads the dataset and model, and hands the grid to
``lrjax.engine.build_run``, which returns the ``Run`` everything downstream reads.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any, Mapping

import ml_collections
import pandas as pd

from lrjax import callables
from lrjax import data as data_lib
from lrjax import grid as grid_lib
from lrjax import lr_finder
from lrjax import models as models_lib
from lrjax.analysis import analysis_settings
from lrjax.engine import GridResult, Run, TrainSettings, build_run, train
from lrjax.engine import devices
from lrjax.engine.settings import config_fields
from lrjax.best import summary_of
from lrjax.errors import ConfigError, RunNotWritten
from lrjax.optimizers import OPTIMIZERS
from lrjax.metric_writers import make_writers
from lrjax.workdir import (PartialTables, check_workdir, is_finished_run,
                           locked_by_first_process, partial_dir, plain, write_results)

# Fields every experiment config has, with defaults: what to train on, the grid, and
# every config field of TrainSettings (optimizer, schedule, epochs, ...).
DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "data_dir": "",
    "model": "mlp",
    "model_kwargs": {},
    **config_fields(),
    "grid": {"lr": (0.1,), "batch_size": (32,), "aug": (0.0,), "seed": (0,)},
    # What the analysis may claim, fixed before the run: the margins of equivalence
    # claims, the reference arm of each axis and the primary questions (None: chosen
    # from the grid). Checked against the grid by resolve_runs; see
    # lrjax.analysis.analysis_settings.
    "analysis": {"equivalence_margin": analysis_settings.DEFAULT_MARGIN,
                 "lr_equivalence_factor": analysis_settings.DEFAULT_LR_FACTOR,
                 "reference": {}, "questions": None},
}


def default_config() -> ml_collections.ConfigDict:
  """A config with every field at its default; experiment files start from it.

  Example:
    >>> c = default_config()
    >>> c.grid.lr = (0.01, 0.1)
    >>> c.optimizer
    'momentum'
  """
  return ml_collections.ConfigDict(DEFAULTS)


def config_to_dict(config) -> dict:
  """The resolved config as plain JSON-serialisable data.

  Example:
    >>> config_to_dict(default_config())["grid"]["lr"]
    [0.1]
  """
  return plain(config.to_dict() if hasattr(config, "to_dict") else config)


def _settings(cfg: dict) -> TrainSettings:
  """The config's TrainSettings fields (each validated by TrainSettings itself)."""
  values = {name: cfg[name] for name in config_fields()}
  for name, value in values.items():
    if isinstance(value, dict):
      values[name] = dict(value)
  return TrainSettings(**values)


def resolve(config) -> Run:
  """Validates a config and resolves it into the ``Run`` the engine trains.

  A config whose grid has an ``optimizer`` axis resolves into one run per optimizer
  (``resolve_runs``); ``resolve`` refuses it.

  Cheap checks (field names, types, optimizer/schedule/model names) come before the
  dataset is loaded; the grid is then checked against the dataset and settings by
  ``lrjax.engine.build_run``. Nothing is compiled.

  Raises:
    ConfigError: naming the field and the fix.

  Example:
    >>> c = default_config()
    >>> c.grid.lr, c.grid.batch_size = (0.01, 0.1), (32, 64)
    >>> run = resolve(c)
    >>> run.num_members, run.plan.micro_batch
    (4, 32)
  """
  runs = resolve_runs(config)
  if len(runs) > 1:
    raise ConfigError("grid.optimizer: several optimizers train as several runs; use "
                      "resolve_runs(config), or train_and_evaluate.")
  return runs[0]


def _per_optimizer_kwargs(cfg: dict, optimizers: tuple[str, ...]) -> dict[str, dict]:
  """``optimizer_kwargs`` for each optimizer of a ``grid.optimizer`` axis.

  Keyed by optimizer name when every key names an optimizer (of the axis or the
  catalog; names not on the axis are ignored) and every value is a dict of
  arguments; otherwise one dict of arguments they all take. ``{"momentum": 0.95}`` is
  the latter: "momentum" names an optimizer and a hyperparameter, 0.95 is no dict.

  Example:
    >>> cfg = {"optimizer_kwargs": {"momentum": 0.95}}
    >>> _per_optimizer_kwargs(cfg, ("momentum", "nesterov"))
    {'momentum': {'momentum': 0.95}, 'nesterov': {'momentum': 0.95}}
    >>> cfg = {"optimizer_kwargs": {"adam": {"b2": 0.99}}}
    >>> _per_optimizer_kwargs(cfg, ("sgd", "adam"))
    {'sgd': {}, 'adam': {'b2': 0.99}}
  """
  kwargs = dict(cfg["optimizer_kwargs"])
  by_name = (bool(kwargs) and set(kwargs) <= set(OPTIMIZERS) | set(optimizers)
             and all(isinstance(v, Mapping) for v in kwargs.values()))
  if by_name:
    return {name: dict(kwargs.get(name, {})) for name in optimizers}
  return {name: dict(kwargs) for name in optimizers}


def resolve_runs(config, table: pd.DataFrame | None = None,
                 plan_table: pd.DataFrame | None = None) -> list[Run]:
  """Validates a config and resolves it into its runs: one, or one per optimizer when
  the grid has an ``optimizer`` axis (optimizers differ in state, so each trains as its
  own program). Members keep their numbers in the whole grid.

  Args:
    config: an experiment config.
    table: the members to train (``grid.make_grid`` rows with their ``member``
      numbers); default the product of ``config.grid``.
    plan_table: a grid holding ``table`` that sizes the runs (``build_run``); default
      ``table``.

  Example:
    >>> c = default_config()
    >>> c.grid.optimizer = ("sgd", "adam")
    >>> c.optimizer_kwargs = {"adam": {"b2": 0.99}}
    >>> [(r.settings.optimizer, r.num_members) for r in resolve_runs(c)]
    [('sgd', 1), ('adam', 1)]
  """
  cfg = checked_fields(config)
  analysis_settings.resolve_settings(cfg["analysis"], cfg["grid"])
  optimizer_axis = tuple(cfg["grid"].get("optimizer", ()))
  if not optimizer_axis:
    return [_resolve_one(cfg, table, plan_table)]
  per_optimizer = _per_optimizer_kwargs(cfg, optimizer_axis)
  full = grid_table(cfg) if table is None else table
  runs = []
  for name in optimizer_axis:
    sub = {**cfg, "optimizer": name, "optimizer_kwargs": per_optimizer[name]}
    part = full[full["optimizer"] == name].reset_index(drop=True)
    if part.empty:  # an extension that adds members of some optimizers only
      continue
    plan_part = (None if plan_table is None else
                 plan_table[plan_table["optimizer"] == name].reset_index(drop=True))
    runs.append(_resolve_one(sub, part, plan_part))
  return runs


def checked_fields(config) -> dict:
  """The config as a dict with every field (defaults filled), refusing unknown ones.

  Example:
    >>> checked_fields({"epochs": 2})["model"]
    'mlp'
  """
  cfg = config_to_dict(config)
  unknown = sorted(set(cfg) - set(DEFAULTS))
  if unknown:
    raise ConfigError(f"config: unknown fields {unknown}. Known fields: {sorted(DEFAULTS)}.")
  return {**DEFAULTS, **cfg}


def grid_table(cfg: dict) -> pd.DataFrame:
  """The member table of a config dict's grid (the product of its axes).

  Example:
    >>> len(grid_table({"grid": {"lr": [0.1, 1.0], "batch_size": [32]}}))
    2
  """
  return grid_lib.make_grid({k: tuple(v) if isinstance(v, list) else v
                             for k, v in cfg["grid"].items()})


def _resolve_one(cfg: dict, table, plan_table=None) -> Run:
  settings = _settings(cfg)
  if cfg["model"] not in models_lib.BUILTIN_MODELS:
    models_lib.get_model(cfg["model"], 10)  # raises the ConfigError
  if table is None:
    table = grid_table(cfg)

  dataset = data_lib.get_dataset(cfg["dataset"], cfg["data_dir"] or None)
  model_kwargs = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in cfg["model_kwargs"].items()}
  model = models_lib.get_model(cfg["model"], dataset.num_classes, **model_kwargs)
  # An augmented grid takes the dataset's policy (build_run: its recipe, or its kind's).
  return build_run(model, dataset, table, settings, plan_table=plan_table)


def _check_partial(workdir: str, config_json: str, resume: bool) -> str:
  """Checks ``<workdir>.partial`` against the run: present (with the same config) exactly
  when resuming. Returns its path; ``_write_partial`` creates it for a new run."""
  partial = partial_dir(workdir)
  saved = os.path.join(partial, "config.json")
  if os.path.isdir(partial):
    if not resume:
      raise ConfigError(f"--workdir: an interrupted run of {workdir} is in {partial}. Pass "
                        f"--resume to continue it, or delete that directory to start over.")
    with open(saved) as f:
      saved_json = f.read()
    if saved_json != config_json:
      differ = config_differences(json.loads(saved_json), json.loads(config_json))
      raise ConfigError(f"--resume: the config differs from the interrupted run's "
                        f"({saved}) in {differ}; resume with the same config and "
                        f"overrides, or delete {partial} to start over.")
  elif resume:
    raise ConfigError(f"--resume: nothing to resume, {partial} does not exist. Run without "
                      f"--resume.")
  return partial


def config_differences(saved: dict, now: dict, limit: int = 4) -> str:
  """The fields where two configs differ, with both values (the first ``limit``).

  Example:
    >>> config_differences({"epochs": 10, "grid": {"lr": [0.1]}},
    ...                    {"epochs": 2, "grid": {"lr": [0.1], "seed": [0]}})
    'epochs (was 10, now 2), grid.seed (was absent, now [0])'
  """
  def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
      if isinstance(v, dict) and v:
        out.update(flat(v, f"{prefix}{k}."))
      else:
        out[f"{prefix}{k}"] = v
    return out

  a, b = flat(saved), flat(now)
  keys = [k for k in sorted(set(a) | set(b)) if a.get(k, KeyError) != b.get(k, KeyError)]
  shown = [f"{k} (was {json.dumps(a[k]) if k in a else 'absent'}, now "
           f"{json.dumps(b[k]) if k in b else 'absent'})" for k in keys[:limit]]
  more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
  return ", ".join(shown) + more


def _write_partial(partial: str, config_json: str) -> None:
  os.makedirs(partial)
  with open(os.path.join(partial, "config.json"), "w") as f:
    f.write(config_json)


def train_and_evaluate(config, workdir: str, *, overwrite: bool = False,
                       progress: bool = True, resume: bool = False,
                       writers=("tensorboard",)) -> GridResult:
  """Validates ``config``, trains its grid, and writes the run directory.

  While training, checkpoints go to ``<workdir>.partial`` (every ``checkpoint_every``
  evaluations, and on SIGTERM/SIGINT);
  it is removed when the run directory is written. An interrupted run continues
  from there with ``resume=True`` (``lrjax run ... --resume``) if the config is
  unchanged.

  Args:
    config: an experiment ``ConfigDict`` (see ``default_config``).
    workdir: the run directory to create.
    overwrite: replace an existing non-empty ``workdir``.
    progress: show the progress bar.
    resume: continue the interrupted run in ``<workdir>.partial``.
    writers: live metrics while training (``lrjax.metric_writers.make_writers``):
      ``"tensorboard"`` (event files in ``<workdir>.partial/tb``, then
      ``<workdir>/tb``), ``"wandb"`` (needs ``lrjax[wandb]``), or writer objects.
      Whatever the writers, ``<workdir>.partial`` keeps ``members.parquet`` and
      ``history.parquet`` of what is known so far (``lrjax report WORKDIR.partial``).

  Raises:
    ConfigError: bad input, before anything compiles.
    RunNotWritten: training finished but the run directory could not be written (a
      full disk, say); ``<workdir>.partial`` keeps the trained state, and
      ``resume=True`` writes the run without training again. An analysis that fails
      does not raise: the tables are written, and the report says what failed.

  Example:
    >>> c = default_config()
    >>> c.grid.lr, c.grid.batch_size, c.epochs = (0.1,), (64,), 1
    >>> import tempfile, os
    >>> run = os.path.join(tempfile.mkdtemp(), "run")
    >>> result = train_and_evaluate(c, run, progress=False)
    >>> os.path.exists(os.path.join(run, "members.parquet"))
    True
  """
  # One live run per workdir (a resume never races a running run); with several
  # processes, process 0 holds the lock for all of them (docs/DESIGN.md).
  with locked_by_first_process(workdir):
    return _train_and_write(config, workdir, overwrite, progress, resume, writers)


def _train_and_write(config, workdir, overwrite, progress, resume, writers) -> GridResult:
  # Several processes (docs/DESIGN.md): each checks and trains; process 0 alone shows
  # progress and writes <workdir>.partial and the run directory; orbax checkpoints are
  # saved by all (each its own shards).
  first = devices.is_first_process()
  if resume and not os.path.isdir(partial_dir(workdir)) and is_finished_run(workdir):
    raise ConfigError(f"--resume: the run in {workdir} is finished, there is nothing to "
                      f"resume. To add members (seeds, LRs, batch sizes, ...) to it, use "
                      f"`lrjax extend {workdir} --config.grid.seed=\"(3,4)\"` (README: "
                      f"Extending a run).")
  check_workdir(workdir, overwrite)
  runs = resolve_runs(config)
  config_dict = config_to_dict(config)
  # A function in the config (Python API) is stored as its label ("module:function").
  config_json = json.dumps(config_dict, indent=2, sort_keys=True,
                           default=callables.json_default)
  config_dict = json.loads(config_json)
  partial = _check_partial(workdir, config_json, resume)
  # Every process has checked <workdir>.partial before process 0 creates it (the syncs
  # are no-ops in a single process).
  devices.sync("lrjax: partial checked")
  if first and not resume:
    _write_partial(partial, config_json)
  devices.sync("lrjax: partial created")
  progress = progress and first
  tb_dir = os.path.join(partial, "tb")
  all_writers = [PartialTables(partial), *make_writers(
      writers or (), tb_dir, run_name=os.path.basename(os.path.abspath(workdir)))
                 ] if first else []
  try:
    if len(runs) == 1:
      result = train(runs[0], progress=progress, checkpoint_dir=partial,
                     writers=all_writers)
    else:
      result = concatenate([
          train(run, progress=progress,
                checkpoint_dir=os.path.join(partial, run.settings.optimizer),
                writers=all_writers)
          for run in runs])
  finally:
    for w in all_writers:
      w.close()
  error = None
  if first:
    try:
      write_results(result, config_dict, workdir, tb_dir=tb_dir)
    except Exception as e:  # the trained state stays in <workdir>.partial
      error = RunNotWritten(workdir, partial, e)
      error.__cause__ = e
    else:
      shutil.rmtree(partial, ignore_errors=True)
      result.summary = summary_of(workdir)
  # Every process returns once the run exists, or raises at once when process 0 failed.
  if not devices.all_succeeded(error is None):
    raise error or RunNotWritten(workdir, partial, RuntimeError(
        "process 0 could not write the run directory (its message says why)"))
  return result


def concatenate(results: list[GridResult]) -> GridResult:
  """One result from the runs of a ``grid.optimizer`` axis (members keep their numbers).

  Example:
    >>> one = GridResult(pd.DataFrame({"member": [1]}),
    ...                  pd.DataFrame({"member": [1], "examples_seen": [0]}), None, {})
    >>> two = GridResult(pd.DataFrame({"member": [0]}),
    ...                  pd.DataFrame({"member": [0], "examples_seen": [0]}), None, {})
    >>> concatenate([one, two]).members["member"].tolist()
    [0, 1]
  """
  members = pd.concat([r.members for r in results]).sort_values("member", kind="stable")
  history = pd.concat([r.history for r in results]).sort_values(
      ["member", "examples_seen"], kind="stable")
  return GridResult(members.reset_index(drop=True), history.reset_index(drop=True),
                    params=[r.params for r in results],
                    info={"runs": [r.info for r in results],
                          "run_members": [r.members["member"].astype(int).tolist()
                                          for r in results]})


def find_lr(config, workdir: str, *, overwrite: bool = False, start_lr: float = 1e-6,
            end_lr: float = 10.0) -> dict:
  """Runs the LR range test and its vectorised variant for a config; writes ``workdir``.

  The whole config counts: for every batch size of the grid,
  ``lrjax.lr_finder.batch_size_test`` runs the classic range test (an exponential LR
  ramp trained by the engine with the config's settings: its optimizer, loss, label
  smoothing, dtype, BatchNorm ghost batches and the first member's augmentation) for
  a centre (its ramp from ``start_lr`` to ``end_lr``, fastai's and Lightning's
  ``lr_find`` bounds), then the vectorised test trains 9 fixed LRs around it for one epoch as one
  grid, with every augmentation strength, schedule and other axis value of the config
  at that batch size (first seed). Writes ``lr_find.json`` (``lr_finder.summarise``),
  ``lr_find.csv`` and one ``lr_find_bs<B>.png`` per batch size (``lr_find.png`` for the
  first); the summary holds one suggestion per batch size and a grid of LRs covering
  all of them.

  Example:
    >>> import tempfile
    >>> c = default_config()
    >>> c.model_kwargs = {"hidden": (32,)}
    >>> c.grid.batch_size = (32, 64)
    >>> out = find_lr(c, tempfile.mkdtemp() + "/find")
    >>> [s["batch_size"] for s in out["per_batch_size"]], len(out["suggested_grid_lr"])
    ([32, 64], 7)
  """
  if not 0 < start_lr < end_lr or not math.isfinite(end_lr):
    raise ConfigError(f"--start-lr, --end-lr: the ramp needs 0 < start_lr < end_lr, both "
                      f"finite; got {start_lr:g} and {end_lr:g}. The defaults are 1e-06 "
                      f"and 10.")
  check_workdir(workdir, overwrite)
  run = resolve(config)
  os.makedirs(workdir, exist_ok=True)
  tests = [lr_finder.batch_size_test(run, batch, start_lr, end_lr)
           for batch in sorted(set(int(b) for b in run.table.batch_size))]
  for i, test in enumerate(tests):
    names = [f"lr_find_bs{test['batch_size']}.png"] + (["lr_find.png"] if i == 0 else [])
    for name in names:
      lr_finder.plot(test["range_test"], test["vectorised"], os.path.join(workdir, name))
  summary = lr_finder.summarise(run.settings, tests)
  with open(os.path.join(workdir, "lr_find.json"), "w") as f:
    json.dump(summary, f, indent=2)
  lr_finder.curve_table(tests).to_csv(os.path.join(workdir, "lr_find.csv"), index=False)
  return summary
