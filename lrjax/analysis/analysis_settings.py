"""An experiment's analysis settings: the config field ``analysis``.

What the analysis of a run may claim, fixed before the run trains:

* ``equivalence_margin`` (default 0.02, in the units of the validation loss): two arms
  are called *equivalent* only when the paired difference of their validation losses
  is shown to lie within ``±equivalence_margin`` (two one-sided tests,
  `lrjax.analysis.inference.equivalence`); overlapping intervals never are.
* ``lr_equivalence_factor`` (default 2): a claim about learning rates (augmentation
  does not move the best LR) needs the ratio shown to lie within ×/÷ this factor.
* ``reference`` (default ``{}``): axis -> the value every other value of that axis is
  compared against (arm comparisons; ``aug`` sets the reference augmentation
  strength). An axis not named here is compared against its first grid value.
* ``questions`` (default ``None``: chosen from the grid, see `default_questions`): the
  experiment's primary questions, names from `QUESTIONS`. Their decisions form one
  family, Holm-corrected at family-wise 95% (`lrjax.analysis.questions`); everything
  else the report says is exploratory. ``()`` makes every finding exploratory.

`resolve_settings` checks the field against the grid when ``lrjax.experiment``
resolves a config (before anything compiles) and again when ``lrjax report`` reads
``config.json``; a ``config.json`` without the field gets the defaults.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from lrjax.errors import ConfigError

DEFAULT_MARGIN = 0.02
DEFAULT_LR_FACTOR = 2.0
ARMS_PREFIX = "arms:"
# The catalog of primary questions, in the order the findings answer them.
QUESTIONS = {
    "best_lr": "the best LR per batch size and aug (and other axes): is it inside the "
               "LR grid, and where",
    "scaling": "the exponent of best LR ∝ batch size^α per aug: linear (1), square "
               "root (0.5), neither",
    "aug_effect": "the ratio by which each augmentation strength moves the best LR, "
                  "against the reference strength",
    "max_stable_lr": "the largest LR at which every seed trains, per cell",
    "b_crit": "the critical batch size per aug (steps to a target vs batch size)",
    ARMS_PREFIX + "<axis>": "each value of a non-core grid axis (schedule, optimizer, ...) "
                            "against its reference value: the paired difference of the "
                            "validation loss, each arm at its best LR",
}
# Axes a question needs with at least this many values.
_NEEDS = {"best_lr": ("lr", 2), "scaling": ("batch_size", 2), "aug_effect": ("aug", 2),
          "max_stable_lr": ("lr", 2), "b_crit": ("batch_size", 2)}
_CORE = ("lr", "batch_size", "aug", "seed")
FIELDS = ("equivalence_margin", "lr_equivalence_factor", "reference", "questions", "looks")


def _is_number(x) -> bool:
  return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
  """The ``analysis`` field of an experiment config; each field checks itself.

  Attributes:
    equivalence_margin: ``δ`` of "equivalent within ±δ", in metric units (> 0).
    lr_equivalence_factor: LRs within ×/÷ this factor are equivalent (> 1).
    reference: axis -> reference value for comparisons along that axis.
    questions: the primary questions (names of `QUESTIONS`, ``"arms:<axis>"`` for an
      axis); None: `default_questions` of the grid.
    looks: how many times the primary family may be looked at before the answer is
      final (``lrjax settle`` fixes it up front: one look per planned wave). The
      family's error rate is split over the looks (Bonferroni), so the chance of any
      false primary verdict at any look stays at most 5%.

  Raises:
    ConfigError: naming the field and the fix.

  Example:
    >>> AnalysisSettings(questions=["arms:schedule"]).questions
    ('arms:schedule',)
    >>> try:
    ...   AnalysisSettings(equivalence_margin=0)
    ... except ConfigError as e:
    ...   print(str(e).split(";")[0])
    analysis.equivalence_margin: must be a finite number > 0 in the metric's units (validation loss)
  """
  equivalence_margin: float = DEFAULT_MARGIN
  lr_equivalence_factor: float = DEFAULT_LR_FACTOR
  reference: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  questions: tuple[str, ...] | None = None
  looks: int = 1

  def __post_init__(self):
    m = self.equivalence_margin
    if not (_is_number(m) and math.isfinite(m) and m > 0):
      raise ConfigError(
          f"analysis.equivalence_margin: must be a finite number > 0 in the metric's units "
          f"(validation loss); got {m!r}. Use e.g. {DEFAULT_MARGIN}.")
    f = self.lr_equivalence_factor
    if not (_is_number(f) and math.isfinite(f) and f > 1):
      raise ConfigError(
          f"analysis.lr_equivalence_factor: must be a finite number > 1 (LRs within ×/÷ "
          f"this factor are equivalent); got {f!r}. Use e.g. {DEFAULT_LR_FACTOR}.")
    object.__setattr__(self, "equivalence_margin", float(m))
    object.__setattr__(self, "lr_equivalence_factor", float(f))
    object.__setattr__(self, "reference", _check_reference(self.reference))
    object.__setattr__(self, "questions", _check_questions(self.questions))
    if isinstance(self.looks, bool) or not isinstance(self.looks, int) or self.looks < 1:
      raise ConfigError(f"analysis.looks: a whole number >= 1 (how often the primary "
                        f"family is looked at); got {self.looks!r}. Use 1 for one run.")


def _check_reference(reference) -> dict:
  if reference is None:
    return {}
  if not isinstance(reference, Mapping):
    raise ConfigError(
        f"analysis.reference: must map axis names to values, e.g. {{'schedule': "
        f"'constant'}}; got {reference!r}.")
  out = {}
  for axis, value in reference.items():
    if not isinstance(axis, str) or not (isinstance(value, str) or _is_number(value)
                                         or isinstance(value, bool)):
      raise ConfigError(
          f"analysis.reference: {axis!r}: {value!r} must be one value of the axis (a "
          "string or a number), e.g. {'schedule': 'constant'}.")
    out[axis] = value
  return out


def _check_questions(questions) -> tuple[str, ...] | None:
  if questions is None:
    return None
  if isinstance(questions, str) or not isinstance(questions, Sequence):
    raise ConfigError(
        f"analysis.questions: must be a tuple of question names, e.g. ('best_lr', "
        f"'scaling'); got {questions!r}. Catalog: {sorted(QUESTIONS)}.")
  out = []
  for q in questions:
    if not isinstance(q, str):
      raise ConfigError(f"analysis.questions: {q!r} is not a question name; the catalog "
                        f"is {sorted(QUESTIONS)}.")
    if q not in QUESTIONS or q == ARMS_PREFIX + "<axis>":
      if not (q.startswith(ARMS_PREFIX) and len(q) > len(ARMS_PREFIX)):
        raise ConfigError(
            f"analysis.questions: unknown question {q!r}; the catalog is "
            f"{sorted(QUESTIONS)} ('arms:<axis>' names a grid axis, e.g. "
            "'arms:schedule').")
    if q in out:
      raise ConfigError(f"analysis.questions: {q!r} is named twice; name it once.")
    out.append(q)
  return tuple(out)


def _values(axes: Mapping[str, Any], axis: str) -> list:
  v = axes[axis]
  return list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v]


def _on_axis(value, values: Sequence) -> bool:
  for v in values:
    if _is_number(value) and _is_number(v):
      if math.isclose(float(value), float(v), rel_tol=1e-9, abs_tol=1e-12):
        return True
    elif value == v:
      return True
  return False


def default_questions(axes: Mapping[str, Any]) -> tuple[str, ...]:
  """The primary questions of a grid whose config names none.

  ``arms:<axis>`` for every non-core axis with 2+ values, ``scaling`` with 3+ batch
  sizes, ``aug_effect`` with 2+ aug levels; ``best_lr`` when none of these applies and
  the grid has 2+ LRs.

  Example:
    >>> default_questions({"lr": [0.1, 1.0], "batch_size": [32, 64, 128],
    ...                    "schedule": ["constant", "cosine"]})
    ('scaling', 'arms:schedule')
    >>> default_questions({"lr": [0.1, 1.0], "batch_size": [32]})
    ('best_lr',)
  """
  def n(axis):
    return len(_values(axes, axis)) if axis in axes else 0
  out = []
  if n("batch_size") >= 3:
    out.append("scaling")
  if n("aug") >= 2:
    out.append("aug_effect")
  out += [ARMS_PREFIX + a for a in axes if a not in _CORE and n(a) >= 2]
  if not out and n("lr") >= 2:
    out.append("best_lr")
  return tuple(out)


def check_against_grid(settings: AnalysisSettings, axes: Mapping[str, Any]) -> None:
  """Raises a `ConfigError` when the settings name axes or values the grid lacks.

  Args:
    settings: the analysis settings.
    axes: the grid, axis name -> values (``config.grid``).

  Example:
    >>> try:
    ...   check_against_grid(AnalysisSettings(questions=("arms:schedule",)),
    ...                      {"lr": [0.1], "optimizer": ["sgd", "adam"]})
    ... except ConfigError as e:
    ...   print(str(e).split(";")[0])
    analysis.questions: 'arms:schedule' names no grid axis
  """
  for axis, value in settings.reference.items():
    if axis in ("lr", "seed", "batch_size"):
      raise ConfigError(f"analysis.reference: {axis!r} is not compared arm against arm; "
                        "name 'aug' or a non-core grid axis (schedule, optimizer, ...).")
    if axis not in axes:
      raise ConfigError(f"analysis.reference: {axis!r} is not a grid axis; the grid has "
                        f"{sorted(axes)}.")
    if not _on_axis(value, _values(axes, axis)):
      raise ConfigError(f"analysis.reference.{axis}: {value!r} is not on the axis; choose "
                        f"one of {_values(axes, axis)}.")
  for q in settings.questions or ():
    if q.startswith(ARMS_PREFIX):
      axis = q[len(ARMS_PREFIX):]
      if axis not in axes or axis in _CORE:
        hint = " (for aug use 'aug_effect')" if axis == "aug" else ""
        others = sorted(a for a in axes if a not in _CORE)
        has = f"the grid's are {others}" if others else "the grid has none"
        raise ConfigError(
            f"analysis.questions: {q!r} names no grid axis; arms compare the values of a "
            f"non-core axis (schedule, optimizer, ...) and {has}{hint}. Add the axis to "
            "the grid or drop the question.")
    axis, k = question_need(q)
    if axis not in axes or len(_values(axes, axis)) < k:
      raise ConfigError(f"analysis.questions: {q!r} needs {k}+ values on grid.{axis}; "
                        f"the grid has {_values(axes, axis) if axis in axes else 'none'}. "
                        "Add values or drop the question.")


def question_need(question: str) -> tuple[str, int]:
  """The grid axis a question of the catalog compares along, and how many values it needs.

  Example:
    >>> question_need("scaling"), question_need("arms:schedule")
    (('batch_size', 2), ('schedule', 2))
  """
  if question.startswith(ARMS_PREFIX):
    return question[len(ARMS_PREFIX):], 2
  return _NEEDS[question]


def unanswerable(questions: Sequence[str], axes: Mapping[str, Any]) -> list[str]:
  """The questions of ``questions`` (catalog names) that a grid with ``axes`` (name ->
  values) cannot ask: too few values on the axis each needs.

  Example:
    >>> unanswerable(("scaling", "aug_effect"), {"batch_size": (32, 64), "aug": (0.0,)})
    ['aug_effect']
  """
  out = []
  for q in questions:
    if q not in QUESTIONS and not q.startswith(ARMS_PREFIX):
      continue  # an unknown name: resolve_settings says so
    axis, k = question_need(q)
    if axis not in axes or len(_values(axes, axis)) < k:
      out.append(q)
  return out


def resolve_settings(value, axes: Mapping[str, Any]) -> AnalysisSettings:
  """The checked `AnalysisSettings` of a config's ``analysis`` field.

  Args:
    value: the field (a dict or ConfigDict; None or absent: the defaults).
    axes: the grid, axis name -> values.

  Returns:
    `AnalysisSettings` with ``questions`` filled in (`default_questions` when the
    field names none).

  Raises:
    ConfigError: an unknown key, a bad value, or an axis the grid lacks.

  Example:
    >>> s = resolve_settings({"reference": {"schedule": "cosine"}},
    ...                      {"lr": [0.1, 1.0], "schedule": ["constant", "cosine"]})
    >>> s.questions, s.reference, s.equivalence_margin
    (('arms:schedule',), {'schedule': 'cosine'}, 0.02)
  """
  if value is None:
    value = {}
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if not isinstance(value, Mapping):
    raise ConfigError(f"analysis: must be a dict of {list(FIELDS)}; got {value!r}.")
  unknown = sorted(set(value) - set(FIELDS))
  if unknown:
    raise ConfigError(f"analysis: unknown keys {unknown}; the fields are {list(FIELDS)}.")
  settings = AnalysisSettings(**dict(value))
  check_against_grid(settings, axes)
  if settings.questions is None:
    settings = dataclasses.replace(settings, questions=default_questions(axes))
  return settings


def reference_value(settings: AnalysisSettings, axis: str, values: Sequence):
  """The reference value of ``axis``: the setting's, matched to ``values``, else the first.

  Example:
    >>> reference_value(AnalysisSettings(reference={"w": 0.1}), "w", [0.0, 0.1000000001])
    0.1000000001
  """
  if axis in settings.reference:
    for v in values:
      if _on_axis(settings.reference[axis], [v]):
        return v
  return values[0]


def as_dict(settings: AnalysisSettings) -> dict:
  """The settings as plain JSON data (for ``summary.json``).

  Example:
    >>> as_dict(AnalysisSettings(questions=()))["questions"]
    []
  """
  return {"equivalence_margin": settings.equivalence_margin,
          "lr_equivalence_factor": settings.lr_equivalence_factor,
          "reference": dict(settings.reference),
          "questions": list(settings.questions or ())}
