"""``TrainSettings``: everything static about a grid run, validated where it is defined.

Each field carries its own check (``metadata["check"]``), run when the settings are
built, so a bad value raises a ``ConfigError`` naming the field before any data is
loaded or anything compiles. Fields with ``metadata["config"]`` False are not
experiment-config fields (``lrjax.experiment.DEFAULTS`` lists the others). Adding
a setting means adding a field here and reading it where it is used.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import pandas as pd

from lrjax import losses
from lrjax import optimizers, outcomes
from lrjax.errors import ConfigError
from lrjax.schedules import family


def _positive_number(name, v):
  if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
    raise ConfigError(f"{name}: must be a finite number > 0; got {v!r}.")


def _nonnegative_int(name, v):
  if isinstance(v, bool) or not isinstance(v, int) or v < 0:
    raise ConfigError(f"{name}: must be an integer >= 0; got {v!r}.")


def _positive_int(name, v):
  if isinstance(v, bool) or not isinstance(v, int) or v < 1:
    raise ConfigError(f"{name}: must be an integer >= 1; got {v!r}.")


def _fraction(name, v):
  if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
    raise ConfigError(f"{name}: must be a number in [0, 1) (0 = off); got {v!r}.")


def _at_least_one(name, v):
  if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
      or v < 1.0):
    raise ConfigError(f"{name}: must be a finite number ≥ 1, e.g. 2.0; got {v!r}.")


def _ratio(name, v):
  if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 1.0:
    raise ConfigError(f"{name}: must be a number in (0, 1], e.g. 1.0; got {v!r}.")


def _flag(name, v):
  if not isinstance(v, bool):
    raise ConfigError(f"{name}: must be True or False; got {v!r}.")


def _exponent(name, v):
  if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
    raise ConfigError(f"{name}: an exponent in [0, 1] (0 none, 0.5 square root, 1 linear); "
                      f"got {v!r}.")


def _fractions(name, v):
  ok = isinstance(v, (tuple, list)) and all(
      isinstance(f, (int, float)) and not isinstance(f, bool) and 0.0 < f < 1.0 for f in v)
  if not ok or list(v) != sorted(set(v)):
    raise ConfigError(f"{name}: increasing fractions of the example budget in (0, 1), "
                      f"e.g. (0.5, 0.75); got {v!r}.")


def _mapping(name, v):
  if not isinstance(v, Mapping):
    raise ConfigError(f"{name}: must be a dict of keyword arguments; got {v!r}.")


def _optimizer(name, v):
  optimizers.check_optimizer(v)


def _schedule(name, v):
  family.check_schedule(v)


def _loss(name, v):
  losses.resolve_loss(v)


def _metrics(name, v):
  _mapping(name, v)
  losses.resolve_metrics(v)


# What every member gets the same of (`lrjax.engine.plan`).
BUDGETS = ("examples", "updates")


def _budget(name, v):
  if v not in BUDGETS:
    raise ConfigError(f"{name}: one of {list(BUDGETS)} ('examples': every member sees "
                      f"epochs x the training split; 'updates': every member takes the "
                      f"updates the smallest batch size takes in that many examples); "
                      f"got {v!r}.")


def _dtype(name, v):
  if v not in DTYPES:
    raise ConfigError(f"{name}: one of {list(DTYPES)}; got {v!r}.")


# Compute dtypes: parameters and optimizer state stay float32 (master weights);
# activations and the parameters' working copies take this dtype.
DTYPES = ("float32", "bfloat16")


def _setting(default, check=None, *, config=True, factory=None, doc=""):
  metadata = {"check": check, "config": config, "doc": doc}
  if factory is not None:
    return dataclasses.field(default_factory=factory, metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Everything static about a grid run: optimizer, schedule, budget, augmentation.

  Every field is validated when the settings are built (``ConfigError``, naming
  the field). The fields are the experiment config's fields of the same names.

  Example:
    >>> TrainSettings(optimizer="adam", epochs=2).epochs
    2
    >>> TrainSettings(epochs=0)
    Traceback (most recent call last):
    ...
    lrjax.errors.ConfigError: epochs: must be a finite number > 0; got 0.
  """

  optimizer: Any = _setting(
      "momentum", _optimizer,
      doc="a name of OPTIMIZERS, a factory (learning_rate, **hparams) -> "
          "optax.GradientTransformation, or \"package.module:function\" naming one")
  schedule: Any = _setting(
      "constant", _schedule,
      doc="a schedule family, a function (step, peak_lr, total_updates, **hparams) -> lr, "
          "or \"package.module:function\" naming one")
  schedule_kwargs: Mapping[str, Any] = _setting(None, _mapping, factory=dict)
  optimizer_kwargs: Mapping[str, Any] = _setting(None, _mapping, factory=dict)
  epochs: float = _setting(10.0, _positive_number, doc="examples budget, in epochs")
  budget: str = _setting(
      "examples", _budget,
      doc="what every member gets the same of: 'examples' (epochs x the training split) "
          "or 'updates' (the optimizer updates the smallest batch size takes in that many "
          "examples; a larger batch sees more examples)")
  eval_every: int = _setting(0, _nonnegative_int,
                             doc="examples between evaluations; 0 = one epoch")
  # A save writes every member's parameters and optimizer state: saving at every
  # evaluation can cost as much as training (benchmarks/NOTES.md).
  checkpoint_every: int = _setting(
      5, _positive_int, doc="with a run directory, save a checkpoint every this many "
                            "evaluations (and at each chunk's end and on SIGTERM/SIGINT), "
                            "for --resume; 1 = every evaluation")
  micro_batch: int = _setting(0, _nonnegative_int, doc="0 = gcd of the grid's batch sizes")
  multiplicity: int = _setting(1, _positive_int,
                               doc="augmented copies of each example per micro-batch")
  divergence_factor: float = _setting(100.0, _positive_number)
  label_smoothing: float = _setting(0.0, _fraction,
                                    doc="optax.smooth_labels alpha of the training loss")
  loss: Any = _setting(
      losses.DEFAULT_LOSS, _loss,
      doc="training loss: a name of lrjax.losses.LOSSES, 'package.module:function', or a "
          "callable (logits, soft labels) -> per-example loss")
  metrics: Mapping[str, Any] = _setting(
      None, _metrics, factory=dict,
      doc="extra validation/test metrics: name -> (logits, labels) -> per-example value "
          "(callable or 'package.module:function'); columns val_<name>, test_<name>")
  bn_batch: int = _setting(
      0, _nonnegative_int,
      doc="examples per BatchNorm normalisation (ghost) batch; 0 = the micro-batch")
  dtype: str = _setting("float32", _dtype,
                        doc="compute dtype (float32 or bfloat16); weights stay float32")
  lr_reference_batch: int = _setting(
      0, _nonnegative_int, doc="with lr_scaling, the batch size at which lr is the grid's lr")
  lr_scaling: float = _setting(
      0.0, _exponent,
      doc="batch-size scaling exponent of the lr: 0 none, 0.5 square root, 1 linear; "
          "a grid axis too")
  batch_growth_at: tuple = _setting(
      (), _fractions, doc="fractions of the example budget where each member's batch size "
                          "is multiplied by its batch_growth (Smith et al. 2018)")
  batch_growth: int = _setting(2, _positive_int,
                               doc="the factor; a grid axis too (1 = a constant batch size)")
  failed_loss_ratio: float = _setting(
      outcomes.LOSS_RATIO, _ratio,
      doc="a member whose final training loss is at least this fraction of its first "
          "failed, as does one at chance accuracy (lrjax.outcomes)")
  failed_acc_factor: float = _setting(
      outcomes.FAILED_ACC_FACTOR, _at_least_one,
      doc="above its cell's best LR, a member ending below this multiple of chance "
          "accuracy failed (lrjax.outcomes)")
  slow_fraction: float = _setting(
      outcomes.SLOW_FRACTION, _fraction,
      doc="below its cell's best LR, a member with less than this fraction of the best "
          "LR's training-loss reduction is slow; 0 = none is (lrjax.outcomes)")
  measure_noise_scale: bool = _setting(
      True, _flag, doc="record the gradient noise scale of members with k > 1")
  max_members_per_chunk: int = _setting(0, _nonnegative_int, doc="0 = one chunk")
  max_memory: int = _setting(
      0, _nonnegative_int, doc="bytes a grid chunk may use over all devices (on CPU, of the "
                               "host's memory); chunks are sized to fit (0 = 80% of the free "
                               "memory; max_members_per_chunk > 0 wins)")
  vmap_width: int = _setting(0, _nonnegative_int,
                             doc="members side by side in the program; 0 = per backend")
  augment_policy: Any = _setting(None, config=False,
                                 doc="an lrjax.augment.Policy, or None for no augmentation")
  eval_batch: int = _setting(1000, _positive_int, config=False)
  record_tick_loss: bool = _setting(
      False, _flag, config=False,
      doc="also return every tick's training loss per member (GridResult.tick_loss): "
          "the LR range test reads its loss curve from it")

  def __post_init__(self):
    for field in dataclasses.fields(self):
      check = field.metadata.get("check")
      if check is not None:
        check(field.name, getattr(self, field.name))


def config_fields() -> dict[str, Any]:
  """The settings an experiment config sets, with their defaults.

  Example:
    >>> config_fields()["optimizer"]
    'momentum'
  """
  defaults = TrainSettings()
  return {f.name: getattr(defaults, f.name) for f in dataclasses.fields(TrainSettings)
          if f.metadata.get("config", True)}


@dataclasses.dataclass
class GridResult:
  """What a grid run returns.

  Attributes:
    members: the member table plus result columns (README, "What a run gives you").
    history: one row per member and evaluation.
    params: final parameters, leaves with a leading member axis (N, ...).
    info: timings and sizes: ticks, examples per member, compile and train seconds.
    model_state: the models' final mutable variables (e.g. BatchNorm running
      averages), leaves with a leading member axis; ``{}`` for stateless models.
    tick_loss: with ``settings.record_tick_loss``, every tick's training loss (one
      micro-batch) per member, float32 (N, ticks), not masked after divergence;
      None otherwise.
    summary: the run's ``summary.json`` (``lrjax.train_and_evaluate``, which writes
      the run directory); None from ``train_grid``.
  """

  members: pd.DataFrame
  history: pd.DataFrame
  params: Any
  info: dict
  model_state: Any = None
  tick_loss: Any = None
  summary: dict | None = None

  @property
  def best(self):
    """The member that learned with the lowest ``final_val_loss``: its hyperparameters,
    metrics and parameters (``lrjax.best.best_member``; one seed, not an estimate)."""
    from lrjax.best import best_member  # pylint: disable=import-outside-toplevel
    return best_member(self)
