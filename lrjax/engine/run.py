"""``Run``: one grid run, validated and resolved, before anything compiles.

``build_run`` is where a grid meets its settings and dataset: it checks every
value (raising ``ConfigError`` naming the field and the fix), sizes the run
(``plan``), lays members out on the engine's (group, inner) axes, sorts the grid's
hyperparameters into optimizer and schedule arguments, and computes per-group
augmentation magnitudes. The trainer, the compiled program, the width probe and
the LR finder only read the ``Run`` it returns; nothing validates or plans twice.
"""

from __future__ import annotations

import dataclasses
import difflib

import jax
import numpy as np
import pandas as pd

from lrjax import augment
from lrjax import callables
from lrjax import grid as grid_lib
from lrjax import optimizers
from lrjax import transforms
from lrjax.data import Dataset
from lrjax.engine.plan import (Block, Plan, batch_growth, blocks_for, member_growth_updates,
                              member_ticks, plan, total_updates)
from lrjax.engine.settings import TrainSettings
from lrjax.errors import ConfigError
from lrjax.models import ModelAdapter
from lrjax.schedules import ScheduleSpec, schedule_spec
from lrjax.schedules.family import check_schedule_kwargs, schedule_arguments


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """Everything a grid run is, resolved: what the engine consumes.

  Attributes:
    model: the model adapter.
    dataset: the dataset (host arrays).
    table: the member table (one row per member).
    settings: the run's ``TrainSettings``.
    plan: sizes (micro-batch, segment length, number of segments).
    layout: members on the (group, inner) axes.
    blocks: runs of inner members with equal accumulation factor ``k``.
    opt_cols: grid columns that are optimizer hyperparameters.
    schedule: how each member's learning rate (and momentum) evolves.
    hparams: per-member hyperparameters in slot layout, name -> (G, I) array
      (``lr``, ``k``, ``total_updates``, optimizer/schedule columns, and
      ``schedule_index`` when ``schedule`` is a grid axis).
    seeds: per input group, its seed (G,).
    seed_row: per input group, the row of its seed's example stream (G,).
    aug_magnitudes: per input group, each active augmentation op's magnitude (G,).
  """

  model: ModelAdapter
  dataset: Dataset
  table: pd.DataFrame
  settings: TrainSettings
  plan: Plan
  layout: grid_lib.Layout
  blocks: tuple[Block, ...]
  opt_cols: tuple[str, ...]
  schedule: ScheduleSpec
  hparams: dict[str, np.ndarray]
  seeds: np.ndarray
  seed_row: np.ndarray
  aug_magnitudes: dict[str, np.ndarray]

  @property
  def distinct_seeds(self) -> list[int]:
    """The seeds of the run, sorted; ``seed_row`` indexes into this list."""
    return sorted(set(self.seeds.tolist()))

  @property
  def num_members(self) -> int:
    return len(self.table)


def _schedule_takes(schedule, name: str) -> bool:
  """Whether a (single) schedule takes the argument ``name``."""
  try:
    check_schedule_kwargs(schedule, {name: 1.0})
  except ConfigError:
    return False
  return True


def _check_known_axes(sched_cols, schedule, families, opt_label: str, opt_names) -> None:
  """Refuses a grid axis that is no axis lrjax knows, no optimizer hyperparameter and no
  argument of any of the run's schedules, with the closest name and every name it could
  be (``grid.batchsize`` is ``grid.batch_size`` misspelt, not a schedule argument)."""
  schedules = families or (schedule,)
  unknown = [c for c in sched_cols
             if not any(_schedule_takes(f, c) for f in schedules)]
  if not unknown:
    return
  takes = sorted({a for f in schedules for a in schedule_arguments(f)})
  names = [*grid_lib.AXES, *sorted(opt_names), *takes]
  col = unknown[0]
  close = difflib.get_close_matches(col, names, n=1, cutoff=0.6)
  hint = f" Did you mean grid.{close[0]}?" if close else " Check the name."
  labels = ", ".join(f"'{callables.label(f)}'" for f in schedules)
  raise ConfigError(
      f"grid.{col}: not a grid axis ({', '.join(grid_lib.AXES)}, aug_<op>), nor an "
      f"argument of optimizer '{opt_label}' ({', '.join(sorted(opt_names)) or 'lr only'}) "
      f"or of schedule {labels} ({', '.join(takes)}).{hint}")


def split_hparams(table: pd.DataFrame, settings: TrainSettings
                  ) -> tuple[list[str], list[str], ScheduleSpec]:
  """Sorts the grid's hyperparameter columns (``grid.axis_kind`` "hparam") into
  optimizer and schedule arguments.

  Returns:
    ``(opt_cols, sched_cols, spec)``.

  Raises:
    ConfigError: a column or ``*_kwargs`` key that belongs to neither.
  """
  opt = settings.optimizer
  opt_label = callables.label(opt)
  for axis in grid_lib.NAME_AXES:
    odd = [v for v in dict.fromkeys(table[axis]) if not isinstance(v, str)] \
        if axis in table.columns else []
    if odd:
      raise ConfigError(f"grid.{axis}: values are names or \"package.module:function\" "
                        f"strings; got {[callables.label(v) for v in odd]}. A function goes "
                        f"in settings.{axis} (one per run).")
  if "optimizer" in table.columns and set(table["optimizer"]) != {opt}:
    raise ConfigError(f"grid.optimizer: {sorted(set(table['optimizer']))} in one run of "
                      f"'{opt_label}'; each optimizer trains as its own run "
                      f"(lrjax.experiment.resolve_runs).")
  opt_names = {**optimizers.optimizer_hparams(opt),
               **dict.fromkeys(optimizers.required_hparams(opt))}
  families = tuple(dict.fromkeys(table["schedule"])) if "schedule" in table else ()
  opt_cols, sched_cols = [], []
  for col in grid_lib.hparam_columns(table):
    # A factory with **kwargs takes any name: the schedule's own arguments stay its.
    to_opt = col in opt_names or (optimizers.accepts_hparam(opt, col) and (
        bool(families) or not _schedule_takes(settings.schedule, col)))
    (opt_cols if to_opt else sched_cols).append(col)
  _check_known_axes(sched_cols, settings.schedule, families, opt_label, opt_names)
  spec = schedule_spec(settings.schedule, settings.schedule_kwargs, tuple(sched_cols),
                       families)
  cycles = [callables.label(f) for f, kw in zip(spec.families, spec.kwargs)
            if kw.get("cycle_momentum")]
  if cycles and optimizers.momentum_name(opt) is None:
    raise ConfigError(f"schedule_kwargs: cycle_momentum ({cycles}) needs an optimizer with "
                      f"momentum or b1; '{opt_label}' has none. Use e.g. "
                      f"optimizer='momentum' or 'adam'.")
  unknown_opt = sorted(k for k in settings.optimizer_kwargs
                       if not optimizers.accepts_hparam(opt, k))
  if unknown_opt:
    raise ConfigError(f"optimizer_kwargs: {unknown_opt} are not hyperparameters of "
                      f"'{opt_label}'; it takes {sorted(opt_names) or 'only lr'}.")
  missing = [n for n in optimizers.required_hparams(opt)
             if n not in settings.optimizer_kwargs and n not in opt_cols]
  if missing:
    raise ConfigError(optimizers.missing_hparams_message(opt, missing))
  return opt_cols, sched_cols, spec


def scaled_lr(table: pd.DataFrame, settings: TrainSettings) -> np.ndarray:
  """Each member's learning rate: the grid's ``lr`` times ``(B / lr_reference_batch) **
  lr_scaling`` (the linear rule at 1, Goyal et al. 2017; the square-root rule at 0.5).

  Example:
    >>> from lrjax import grid
    >>> t = grid.make_grid({"lr": (0.1,), "batch_size": (32, 128), "lr_scaling": (0.5, 1)})
    >>> scaled_lr(t, TrainSettings(lr_reference_batch=32)).round(3).tolist()
    [0.1, 0.1, 0.2, 0.4]
  """
  lr = table["lr"].to_numpy(np.float64)
  exponent = (table["lr_scaling"].to_numpy(np.float64) if "lr_scaling" in table.columns
              else np.full(len(table), settings.lr_scaling))
  if not settings.lr_reference_batch:
    if (exponent != 0).any():
      raise ConfigError("lr_scaling: scaling the lr with the batch size needs "
                        "lr_reference_batch, the batch size at which lr is the grid's lr "
                        "(e.g. --config.lr_reference_batch=32).")
    return lr
  if ((exponent < 0) | (exponent > 1)).any():
    raise ConfigError(f"grid.lr_scaling: exponents in [0, 1] (0 none, 0.5 sqrt, 1 linear); "
                      f"got {sorted(set(exponent.tolist()))}.")
  return transforms.batch_size_scaled(lr, table["batch_size"].to_numpy(np.float64),
                                     settings.lr_reference_batch, exponent)


def _float32_lr(lr: np.ndarray) -> np.ndarray:
  """The learning rates as the program computes them (float32), refusing any that
  overflow to inf or underflow to 0 there."""
  with np.errstate(over="ignore", under="ignore"):
    lr32 = lr.astype(np.float32)
  bad = sorted(set(lr[~(np.isfinite(lr32) & (lr32 > 0))].tolist()))
  if bad:
    raise ConfigError(f"grid.lr: learning rates {bad} (after lr_scaling) are outside float32's "
                      f"range and would train as inf or 0; use e.g. "
                      f"--config.grid.lr=\"(0.01,0.1,1.0)\".")
  return lr32


def _label_smoothing(table: pd.DataFrame) -> np.ndarray:
  """The ``label_smoothing`` axis (optax.smooth_labels alpha per member), checked."""
  alpha = table["label_smoothing"].to_numpy(np.float64)
  if ((alpha < 0) | (alpha >= 1) | ~np.isfinite(alpha)).any():
    raise ConfigError(f"grid.label_smoothing: values in [0, 1) (0 = none); got "
                      f"{sorted(set(alpha.tolist()))}.")
  return alpha.astype(np.float32)


def uses_augmentation(table: pd.DataFrame) -> bool:
  """Whether any member augments (a nonzero ``aug`` or any ``aug_<op>`` axis).

  Example:
    >>> from lrjax import grid
    >>> uses_augmentation(grid.make_grid({"lr": (0.1,), "batch_size": (8,)}))
    False
  """
  return bool((table["aug"] != 0).any()) or bool(grid_lib.aug_op_columns(table.columns))


def _aug_magnitudes(table: pd.DataFrame, groups: pd.DataFrame, settings: TrainSettings):
  """Per input group, each augmentation op's magnitude; ops off in every group dropped."""
  policy = settings.augment_policy
  if policy is None:
    if uses_augmentation(table):
      raise ConfigError("grid.aug: nonzero augmentation strengths need an augmentation "
                        "policy (settings.augment_policy, e.g. lrjax.augment.policy_for("
                        "dataset)).")
    if settings.multiplicity > 1:
      raise ConfigError("multiplicity: augmented copies need augmentation; set grid.aug > 0 "
                        "or multiplicity=1.")
    return {}
  unknown_ops = sorted(op for op in grid_lib.aug_op_columns(table.columns).values()
                       if op not in augment.OPS)
  if unknown_ops:
    raise ConfigError(f"grid: unknown augmentation ops {unknown_ops}; per-op axes are "
                      f"grid.{grid_lib.AUG_OP_PREFIX}<op> with <op> in {list(augment.OPS)}.")
  overrides = {op: groups[c].to_numpy(np.float32)
               for c, op in grid_lib.aug_op_columns(groups.columns).items()}
  strengths = groups["aug"].to_numpy(np.float32)
  mags = jax.tree.map(np.asarray, jax.vmap(
      lambda s, o: augment.magnitudes(policy, s, **o))(strengths, overrides))
  # Ops at magnitude 0 in every group would still run under vmap: drop them.
  return augment.drop_inactive(mags)


def build_run(model: ModelAdapter, dataset: Dataset, table: pd.DataFrame,
              settings: TrainSettings = TrainSettings(),
              plan_table: pd.DataFrame | None = None) -> Run:
  """Validates a grid against its settings and dataset and resolves it into a ``Run``.

  ``plan_table`` (a grid holding ``table``'s members) sizes the run instead of
  ``table``: micro-batch, evaluation interval and budget are those the members would
  get in that grid. ``lrjax.extend`` trains the members it adds to a run this way, so
  each equals what a fresh run of the whole grid gives it.

  An augmented grid without ``settings.augment_policy`` takes the dataset's policy
  (``lrjax.augment.policy_for_dataset``: its name's recipe, or its kind's).

  Raises:
    ConfigError: bad input, naming the field and the fix.

  Example:
    >>> from lrjax import data, grid, models
    >>> table = grid.make_grid({"lr": (0.05, 0.2), "batch_size": (32, 64)})
    >>> run = build_run(models.get_model("mlp", 10), data.load("digits"), table)
    >>> run.plan.micro_batch, [(b.start, b.stop, b.k) for b in run.blocks]
    (32, [(0, 2, 1), (2, 4, 2)])
  """
  if settings.augment_policy is None and uses_augmentation(
      table if plan_table is None else plan_table):  # the dataset's own recipe
    settings = dataclasses.replace(settings,
                                   augment_policy=augment.policy_for_dataset(dataset))
  the_plan = plan(table if plan_table is None else plan_table, len(dataset.train), settings)
  rows = the_plan.micro_batch * settings.multiplicity  # examples per member per tick
  if settings.bn_batch and rows % settings.bn_batch:
    raise ConfigError(f"bn_batch: {settings.bn_batch} does not divide the {rows} examples "
                      f"of a micro-batch (micro_batch {the_plan.micro_batch} x multiplicity "
                      f"{settings.multiplicity}); use a divisor of {rows}, or set "
                      f"micro_batch to a multiple of bn_batch.")
  # The union grid's schedule families, so that an extension adding members of one
  # family still takes the per-family schedule_kwargs of all.
  opt_cols, sched_cols, spec = split_hparams(table if plan_table is None else plan_table,
                                             settings)
  lay = grid_lib.layout(table)
  k = table["batch_size"].to_numpy() // the_plan.micro_batch
  growth = batch_growth(table, settings)
  member_hp = {
      "lr": _float32_lr(scaled_lr(table, settings)),
      "k": k.astype(np.int32),
      "total_updates": total_updates(k, growth, the_plan).astype(np.int32),
  }
  if settings.batch_growth_at:
    member_hp["growth"] = growth.astype(np.int32)
  if settings.batch_growth_at and the_plan.update_budget:
    # Equal updates: each member's batch grows at its own tick (`plan.member_ticks`).
    points = member_growth_updates(growth, the_plan.update_budget, settings.batch_growth_at,
                                   len(settings.batch_growth_at))
    at, _ = member_ticks(k, growth, points, the_plan.update_budget)
    for p in range(at.shape[1]):
      member_hp[f"growth_tick_{p}"] = at[:, p].astype(np.int32)
  if "label_smoothing" in table.columns:
    member_hp["label_smoothing"] = _label_smoothing(table)
  for col in opt_cols + sched_cols:
    member_hp[col] = table[col].to_numpy(np.float32)
  if len(spec.families) > 1:
    member_hp["schedule_index"] = np.array(
        [spec.families.index(f) for f in table["schedule"]], np.int32)
  slot_hp = {n: grid_lib.to_slots(v, lay) for n, v in member_hp.items()}
  groups = lay.groups
  seeds = (groups["seed"].to_numpy().astype(np.int64) if "seed" in groups
           else np.zeros(lay.num_groups, np.int64))
  distinct = sorted(set(seeds.tolist()))
  return Run(
      model=model, dataset=dataset, table=table, settings=settings, plan=the_plan,
      layout=lay, opt_cols=tuple(opt_cols),
      # A growing batch size has no static k: one block on the masked, per-member path.
      blocks=(blocks_for(slot_hp["k"], lay.pad_mask) if not settings.batch_growth_at
              else (Block(0, lay.inner_size, None),)),
      schedule=spec, hparams=slot_hp, seeds=seeds,
      seed_row=np.array([distinct.index(s) for s in seeds], np.int32),
      aug_magnitudes=_aug_magnitudes(table, groups, settings))
