"""What became of each member: ``trained``, ``failed`` or ``diverged``.

Pure pandas/numpy on the members table, so the engine (which writes the
``status`` column) and the analysis (which reads it, or derives it for older
tables) share one rule.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lrjax.errors import ConfigError

STATUSES = ("trained", "failed", "diverged")


def member_status(members: pd.DataFrame, *, num_classes: int, num_val: int,
                  loss_ratio: float = 0.9) -> pd.Series:
  """Labels each member ``"trained"``, ``"failed"`` or ``"diverged"``.

  * ``diverged``: the ``diverged`` flag is set.
  * ``failed``: it did not learn: ``final_train_loss >= loss_ratio *
    first_train_loss`` (training loss fell by less than 10% by default), or
    ``final_val_acc`` lies within chance ± 2 standard errors, where chance is
    ``1/num_classes`` and the standard error of an accuracy measured on ``num_val``
    examples at chance is ``sqrt(chance * (1 - chance) / num_val)``. A criterion whose
    inputs are NaN is not applied.
  * ``trained``: everything else.

  Args:
    members: the members table (needs ``diverged``, ``first_train_loss``,
      ``final_train_loss``, ``final_val_acc``).
    num_classes: number of classes (sets chance accuracy).
    num_val: number of validation examples behind ``final_val_acc``.
    loss_ratio: a member whose final training loss is at least this fraction of its
      first has failed.

  Returns:
    A string Series named ``status`` with the members' index.

  Raises:
    ConfigError: a column is missing or an argument is out of range.

  Example:
    >>> t = pd.DataFrame({"diverged": [False, False, False, True],
    ...                   "first_train_loss": [2.3, 2.3, 2.3, 2.3],
    ...                   "final_train_loss": [0.4, 2.2, 0.5, np.nan],
    ...                   "final_val_acc": [0.9, 0.5, 0.1, np.nan]})
    >>> member_status(t, num_classes=10, num_val=1000).tolist()
    ['trained', 'failed', 'failed', 'diverged']
  """
  if not (isinstance(num_classes, (int, np.integer)) and num_classes >= 2):
    raise ConfigError(f"num_classes: must be an integer ≥ 2; got {num_classes!r}.")
  if not (isinstance(num_val, (int, np.integer)) and num_val >= 1):
    raise ConfigError(
        f"num_val: must be a positive integer (validation set size); got {num_val!r}.")
  if not 0 < loss_ratio <= 1:
    raise ConfigError(f"loss_ratio: must be in (0, 1]; got {loss_ratio!r}. Use e.g. 0.9.")
  missing = [c for c in ("diverged", "first_train_loss", "final_train_loss", "final_val_acc")
             if c not in members.columns]
  if missing:
    raise ConfigError(f"members: missing columns {missing}; give a members table written by "
                      f"lrjax 0.1 or later.")
  chance, band = chance_band(num_classes, num_val)
  diverged = members["diverged"].fillna(False).astype(bool).to_numpy()
  first = members["first_train_loss"].to_numpy(float)
  final = members["final_train_loss"].to_numpy(float)
  acc = members["final_val_acc"].to_numpy(float)
  with np.errstate(invalid="ignore"):
    no_progress = final >= loss_ratio * first
    at_chance = np.abs(acc - chance) <= band
  status = np.where(diverged, "diverged",
                    np.where(no_progress | at_chance, "failed", "trained"))
  return pd.Series(status, index=members.index, name="status")


def chance_band(num_classes: int, num_val: int) -> tuple[float, float]:
  """Chance accuracy and the half-width of "at chance": 2 standard errors of an
  accuracy measured on ``num_val`` examples at chance.

  Example:
    >>> [round(v, 4) for v in chance_band(10, 250)]
    [0.1, 0.0379]
  """
  chance = 1.0 / num_classes
  return chance, 2 * math.sqrt(chance * (1 - chance) / num_val)

