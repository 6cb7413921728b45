"""Experiment configs -> a trained grid -> a run directory (Flax-examples style).

``train_and_evaluate(config, workdir)`` is the library function behind
``lrjax run``: it validates the whole config before anything compiles, trains
the grid, and writes the run directory atomically (to a temporary sibling that
is renamed at the end), so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from typing import Any

import ml_collections
import numpy as np

from lrjax import data as data_lib
from lrjax import grid as grid_lib
from lrjax import models as models_lib
from lrjax import optimizers
from lrjax.engine import GridResult, TrainSettings
from lrjax.errors import ConfigError
from lrjax.trainer import train_grid

# Fields every experiment config has (the DESIGN.md contract), with defaults.
DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "data_dir": "",
    "model": "mlp",
    "model_kwargs": {},
    "optimizer": "momentum",
    "optimizer_kwargs": {},
    "schedule": "constant",
    "schedule_kwargs": {},
    "epochs": 10.0,
    "eval_every": 0,
    "micro_batch": 0,
    "multiplicity": 1,
    "divergence_factor": 100.0,
    "max_members_per_chunk": 0,
    "vmap_width": 0,
    "grid": {"lr": (0.1,), "batch_size": (32,), "aug": (0.0,), "seed": (0,)},
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


def _plain(value):
  """ConfigDict / tuples / numpy scalars -> JSON-able Python values."""
  if isinstance(value, (ml_collections.ConfigDict, dict)):
    return {k: _plain(v) for k, v in dict(value).items()}
  if isinstance(value, (tuple, list)):
    return [_plain(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def config_to_dict(config) -> dict:
  """The resolved config as plain JSON-serialisable data."""
  return _plain(config.to_dict() if hasattr(config, "to_dict") else config)


def resolve(config) -> tuple[data_lib.Dataset, models_lib.ModelAdapter, Any, TrainSettings]:
  """Validates a config and builds what training needs; raises ``ConfigError`` on bad input.

  Returns:
    ``(dataset, model, member_table, settings)``.
  """
  cfg = config_to_dict(config)
  unknown = sorted(set(cfg) - set(DEFAULTS))
  if unknown:
    raise ConfigError(f"config: unknown fields {unknown}. Known fields: {sorted(DEFAULTS)}.")
  cfg = {**DEFAULTS, **cfg}
  # Cheap name checks first, before loading data.
  optimizers.check_optimizer(cfg["optimizer"])
  if cfg["model"] not in models_lib.BUILTIN_MODELS:
    models_lib.get_model(cfg["model"], 10)  # raises the ConfigError
  optimizers.check_schedule_kwargs(cfg["schedule"], {})
  for name in ("epochs", "divergence_factor"):
    v = cfg[name]
    if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
      raise ConfigError(f"{name}: must be a finite number > 0; got {v!r}.")
  for name in ("eval_every", "micro_batch", "max_members_per_chunk", "multiplicity",
               "vmap_width"):
    if not isinstance(cfg[name], int) or cfg[name] < 0:
      raise ConfigError(f"{name}: must be an integer >= 0; got {cfg[name]!r}.")
  axes = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["grid"].items()}
  table = grid_lib.make_grid(axes)

  dataset = data_lib.load(cfg["dataset"], cfg["data_dir"] or None)
  model_kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["model_kwargs"].items()}
  model = models_lib.get_model(cfg["model"], dataset.num_classes, **model_kwargs)
  policy = None
  uses_aug = (table["aug"] != 0).any() or any(c.startswith("aug_") for c in table.columns)
  if uses_aug:
    from lrjax import augment  # noqa: PLC0415

    policy = augment.policy_for(cfg["dataset"], dataset.image_shape)
    unknown_ops = sorted(c[4:] for c in table.columns
                         if c.startswith("aug_") and c[4:] not in augment.OPS)
    if unknown_ops:
      raise ConfigError(f"grid: unknown augmentation ops {unknown_ops}; per-op axes are "
                        f"grid.aug_<op> with <op> in {list(augment.OPS)}.")
  elif cfg["multiplicity"] > 1:
    raise ConfigError("multiplicity: augmented copies need augmentation; set grid.aug > 0 "
                      "or multiplicity=1.")
  settings = TrainSettings(
      optimizer=cfg["optimizer"], schedule=cfg["schedule"],
      schedule_kwargs=dict(cfg["schedule_kwargs"]),
      optimizer_kwargs=dict(cfg["optimizer_kwargs"]), epochs=float(cfg["epochs"]),
      eval_every=cfg["eval_every"], micro_batch=cfg["micro_batch"], augment_policy=policy,
      multiplicity=max(1, cfg["multiplicity"]), divergence_factor=float(cfg["divergence_factor"]),
      max_members_per_chunk=cfg["max_members_per_chunk"], vmap_width=cfg["vmap_width"])
  # Full validation (batch sizes vs micro-batch and split size, hparam names, ...).
  from lrjax.plan import _split_hparams, plan  # noqa: PLC0415

  plan(table, len(dataset.train), settings)
  _split_hparams(table, settings)
  return dataset, model, table, settings


def check_workdir(workdir: str, overwrite: bool = False) -> None:
  """Refuses to overwrite an existing non-empty workdir unless asked."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir: {workdir} exists and is not a directory; choose another.")
  if os.path.isdir(workdir) and os.listdir(workdir) and not overwrite:
    raise ConfigError(f"--workdir: {workdir} already holds files; lrjax does not overwrite "
                      f"a run silently. Choose a new --workdir, or pass --overwrite to "
                      f"replace it.")


def write_results(result: GridResult, config, workdir: str) -> list[str]:
  """Writes config.json, members/history tables, summary, figures and report.

  Writes into a temporary sibling directory and renames it into place at the end.
  """
  parent = os.path.dirname(os.path.abspath(workdir)) or "."
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".lrjax-", dir=parent)
  try:
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(config_to_dict(config), f, indent=2, sort_keys=True)
    result.members.to_parquet(os.path.join(tmp, "members.parquet"), index=False)
    result.members.to_csv(os.path.join(tmp, "members.csv"), index=False)
    result.history.to_parquet(os.path.join(tmp, "history.parquet"), index=False)
    with open(os.path.join(tmp, "run_info.json"), "w") as f:
      json.dump(_plain(result.info), f, indent=2)
    from lrjax import report  # noqa: PLC0415

    report.write_report(tmp)
    if os.path.isdir(workdir):
      shutil.rmtree(workdir)
    os.replace(tmp, workdir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return sorted(os.path.join(workdir, n) for n in os.listdir(workdir))


def partial_dir(workdir: str) -> str:
  """Where a run's checkpoints live until it finishes: ``<workdir>.partial``."""
  return os.path.abspath(workdir).rstrip(os.sep) + ".partial"


def train_and_evaluate(config, workdir: str, *, overwrite: bool = False,
                       progress: bool = True, resume: bool = False) -> GridResult:
  """Validates ``config``, trains its grid, and writes the run directory.

  While training, checkpoints go to ``<workdir>.partial`` (at most one a minute);
  it is removed when the run directory is written. An interrupted run continues
  from there with ``resume=True`` (``lrjax run ... --resume``) if the config is
  unchanged.

  Args:
    config: an experiment ``ConfigDict`` (see ``default_config``).
    workdir: the run directory to create.
    overwrite: replace an existing non-empty ``workdir``.
    progress: show the progress bar.
    resume: continue the interrupted run in ``<workdir>.partial``.

  Example:
    >>> c = default_config()
    >>> c.grid.lr, c.grid.batch_size, c.epochs = (0.1,), (64,), 1
    >>> import tempfile, os
    >>> run = os.path.join(tempfile.mkdtemp(), "run")
    >>> result = train_and_evaluate(c, run, progress=False)
    >>> os.path.exists(os.path.join(run, "members.parquet"))
    True
  """
  check_workdir(workdir, overwrite)
  dataset, model, table, settings = resolve(config)
  partial = partial_dir(workdir)
  config_json = json.dumps(config_to_dict(config), indent=2, sort_keys=True)
  saved = os.path.join(partial, "config.json")
  if os.path.isdir(partial):
    if not resume:
      raise ConfigError(f"--workdir: an interrupted run of {workdir} is in {partial}. Pass "
                        f"--resume to continue it, or delete that directory to start over.")
    with open(saved) as f:
      if f.read() != config_json:
        raise ConfigError(f"--resume: the config differs from the interrupted run's "
                          f"({saved}); resume with the same config and overrides, or "
                          f"delete {partial} to start over.")
  elif resume:
    raise ConfigError(f"--resume: nothing to resume, {partial} does not exist. Run without "
                      f"--resume.")
  else:
    os.makedirs(partial)
    with open(saved, "w") as f:
      f.write(config_json)
  result = train_grid(model, dataset, table, settings, progress=progress,
                      checkpoint_dir=partial)
  write_results(result, config, workdir)
  shutil.rmtree(partial, ignore_errors=True)
  return result
