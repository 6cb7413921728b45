"""Shared statistics for the estimators: columns, member status, seed-bootstrap intervals.

Conventions every estimator follows:
  * A *cell* is one setting of ``batch_size``, ``aug`` and every extra grid axis
    (`extra_axes`); within a cell the grid varies ``lr`` and ``seed``.
  * Metrics whose name contains ``loss`` are minimised, all others maximised.
  * A member *counts* (`usable_mask`) when its status is ``"trained"`` or ``"slow"``
    (`status_labels`, the rule of `lrjax.outcomes`) and its metric is finite: a slow
    member at a small LR is a real, if unconverged, measurement of that LR. Failed and
    diverged members never count. A learning rate where any seed of the cell does not
    count is never an optimum: an LR that blows up on one seed in three is not a usable
    choice.
  * Uncertainty comes from a percentile bootstrap over *seeds*: one replicate draws
    the seed labels with replacement and recomputes every estimate from the members
    with the drawn seeds. All cells, and all functions called with the same
    ``n_boot`` and ``rng_seed`` on the same seeds, share the same draws
    (`seed_counts`), so differences and fits across cells (scaling exponents,
    augmentation effects, critical batch sizes) use joint replicates. Intervals are
    95%: the percentile interval of the replicates, widened about their median by
    `small_sample_factor` (×2.69 for 3 seeds, ×1.87 for 4, ×1.22 for 10). In
    simulations a plain percentile bootstrap over 4 seeds covered ~75%; the widening
    makes it the exact Student-t interval when the estimate is a mean over seeds.
  * With one seed there is no interval, and every verdict is ``"not settled"``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from lrjax import outcomes
from lrjax.errors import ConfigError
# Which columns are grid axes and which define a cell: `lrjax.outcomes` owns them (the
# engine labels members by cell without importing the analysis); re-exported here.
from lrjax.outcomes import (BOOKKEEPING_COLUMNS, RESULT_PREFIXES, RESULT_SUFFIXES,
                            cell_columns, extra_axes, is_result_column)

# A table without an aug or seed column ran at these values.
AXIS_DEFAULTS = {"aug": 0.0, "seed": 0}
# Columns `lrjax.analysis.critical_batch.steps_to_target` adds; never grid axes.
STEPS_COLUMNS = ("steps", "examples", "target")
CI = (0.025, 0.975)
# A replicate-based interval needs at least this fraction of non-NaN replicates.
_MIN_FINITE_FRACTION = 0.5


# ------------------------------------------------------------------- input checks


def require_columns(df: pd.DataFrame, columns: Sequence[str], table: str) -> None:
  """Raises a `ConfigError` naming the columns of ``columns`` that ``df`` lacks.

  Args:
    df: the table to check.
    columns: the columns it needs.
    table: its name in the message (``"members"``, ``"history"``, ...).

  Example:
    >>> try:
    ...   require_columns(pd.DataFrame({"lr": [0.1]}), ["lr", "seed"], "members")
    ... except ConfigError as e:
    ...   print(str(e).split(";")[0])
    members: missing column(s) ['seed']
  """
  missing = [c for c in columns if c not in df.columns]
  if missing:
    raise ConfigError(
        f"{table}: missing column(s) {missing}; it has {sorted(map(str, df.columns))}. "
        f"Pass the engine's {table} table (or add the column).")


def check_n_boot(n_boot: int) -> None:
  """Raises a `ConfigError` unless ``n_boot`` is a non-negative integer.

  Example:
    >>> check_n_boot(0)
    >>> try:
    ...   check_n_boot(-1)
    ... except ConfigError as e:
    ...   print(str(e).split(";")[0])
    n_boot: must be a non-negative integer
  """
  if not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
    raise ConfigError(
        f"n_boot: must be a non-negative integer; got {n_boot!r}. Use e.g. 1000 "
        "(0 skips the bootstrap).")


def prepare_members(members: pd.DataFrame) -> pd.DataFrame:
  """The members table every estimator reads: core columns checked, aug/seed filled in.

  Checks that ``members`` is a DataFrame with ``lr`` and ``batch_size`` and that every
  learning rate is finite and positive; adds absent ``aug``/``seed`` columns at their
  defaults (`AXIS_DEFAULTS`); resets the index.

  Raises:
    ConfigError: not a DataFrame, a core column is missing, or an LR is not positive.

  Example:
    >>> list(prepare_members(pd.DataFrame({"lr": [0.1], "batch_size": [32]})).columns)
    ['lr', 'batch_size', 'aug', 'seed']
  """
  if not isinstance(members, pd.DataFrame):
    raise ConfigError(f"members: expected a pandas DataFrame; got {type(members).__name__}.")
  require_columns(members, ("lr", "batch_size"), "members")
  out = members.reset_index(drop=True)
  for col, value in AXIS_DEFAULTS.items():
    if col not in out.columns:
      out = out.assign(**{col: value})
  lr = out["lr"].to_numpy(float)
  if not (np.isfinite(lr).all() and (lr > 0).all()):
    raise ConfigError("members.lr: every learning rate must be finite and positive.")
  return out


def check_metric(members: pd.DataFrame, metric: str) -> None:
  """Raises a `ConfigError` when ``metric`` is not a column of ``members``.

  The message lists the columns that look like metrics (``final_*``, ``best_*``,
  ``test_*``).

  Example:
    >>> try:
    ...   check_metric(pd.DataFrame({"lr": [0.1], "final_val_acc": [0.9]}), "val_f1")
    ... except ConfigError as e:
    ...   print(e)
    metric: 'val_f1' is not a column of members; choose one of ['final_val_acc'].
  """
  if metric not in members.columns:
    numeric = [c for c in members.columns if str(c).startswith(("final_", "best_", "test_"))]
    raise ConfigError(
        f"metric: {metric!r} is not a column of members; choose one of {numeric}.")


# ------------------------------------------------------------------------- columns


def metric_mode(metric: str) -> str:
  """``"min"`` for metrics whose name contains ``loss``, else ``"max"``.

  Example:
    >>> metric_mode("final_val_loss"), metric_mode("final_val_acc")
    ('min', 'max')
  """
  return "min" if "loss" in metric else "max"


def status_labels(members: pd.DataFrame, num_classes: int | None = None,
                  num_val: int | None = None) -> np.ndarray:
  """Each member's status, one of `lrjax.outcomes.STATUSES`.

  With ``num_classes`` and ``num_val``, `with_status`'s labels (an older or missing
  ``status`` column derived again by `lrjax.outcomes.member_status`); without them,
  the ``status`` column as written, else ``diverged`` / ``trained`` from the
  ``diverged`` flag (as `with_status` with ``loss_only=False``).

  Example:
    >>> status_labels(pd.DataFrame({"diverged": [False, True]})).tolist()
    ['trained', 'diverged']
  """
  if "status" not in members.columns:
    require_columns(members, ("diverged",), "members")
  elif num_classes is None or num_val is None or _current_status(members["status"]):
    return members["status"].astype(str).to_numpy()
  labelled, _ = with_status(members, num_classes, num_val, loss_only=False)
  return labelled["status"].astype(str).to_numpy()


# What `lrjax.outcomes.member_status` reads besides ``diverged`` and ``final_val_acc``.
RULE_COLUMNS = ("lr", "first_train_loss", "final_train_loss", "final_val_loss")
TRAIN_LOSS_COLUMNS = ("first_train_loss", "final_train_loss")


def _current_status(status: pd.Series) -> bool:
  """Whether a status column was written by the current rule: it has a ``slow`` label.

  A column of only ``trained``/``failed``/``diverged`` may come from an older lrjax,
  whose ``failed`` included members that learned slowly.
  """
  return bool((status.astype(str) == "slow").any())


def with_status(members: pd.DataFrame, num_classes: int | None = None,
                num_val: int | None = None, loss_only: bool = True,
                thresholds: Mapping[str, float] | None = None
                ) -> tuple[pd.DataFrame, str]:
  """The members table with a ``status`` column, and where the labels came from.

  * A ``status`` column with a ``slow`` label (this rule wrote it) is kept.
  * A ``status`` column without one (an older lrjax wrote only ``trained``, ``failed``
    and ``diverged``, or no member was slow) is derived again by
    `lrjax.outcomes.member_status` when ``num_classes`` and ``num_val`` are known and
    the table has the columns the rule reads (`RULE_COLUMNS`); otherwise it is kept.
    With the same thresholds the rule gives a current column back unchanged.
  * Without a ``status`` column, the labels come from `lrjax.outcomes.member_status`
    where the table has `RULE_COLUMNS`: with ``num_classes`` and ``num_val`` the
    whole rule; without them (if ``loss_only``) all but its accuracy criteria.
  * Otherwise only the ``diverged`` flag is known: ``diverged`` or ``trained``.

  Args:
    members: the members table.
    num_classes: classes of the dataset (sets chance accuracy), if known.
    num_val: validation examples behind ``final_val_acc``, if known.
    loss_only: without ``num_classes``/``num_val``, whether to derive the labels
      without the accuracy criteria (else fall back to the ``diverged`` flag).
    thresholds: keyword arguments of `lrjax.outcomes.member_status` (``loss_ratio``,
      ``failed_acc_factor``, ``slow_fraction``); default its defaults.

  Returns:
    ``(members with status, source)``, ``source`` a short phrase for the report.

  Example:
    >>> t = pd.DataFrame({"lr": [0.001, 0.1, 1.0], "diverged": [False, False, True],
    ...                   "first_train_loss": 2.3, "final_train_loss": [2.0, 0.3, np.nan],
    ...                   "final_val_loss": [2.0, 0.4, np.nan],
    ...                   "final_val_acc": [0.6, 0.9, np.nan]})
    >>> m, source = with_status(t.assign(status=["failed", "trained", "diverged"]), 10, 250)
    >>> m["status"].tolist()
    ['slow', 'trained', 'diverged']
    >>> source.split(":")[0]
    'derived again (older status column)'
  """
  has_status = "status" in members.columns
  if has_status and _current_status(members["status"]):
    return members, "status column"
  if "diverged" not in members.columns:
    members = members.assign(diverged=False)
  known = num_classes is not None and num_val is not None and "final_val_acc" in members
  derivable = all(c in members.columns for c in RULE_COLUMNS)
  if derivable and (known or (loss_only and not has_status)):
    table = members if known else members.assign(final_val_acc=np.nan)
    status = outcomes.member_status(table, num_classes=int(num_classes) if known else 2,
                                    num_val=int(num_val) if known else 1,
                                    **dict(thresholds or {}))
    rule = ("failed at chance, without a training-loss fall, or under 2x chance above "
            "the cell optimum; slow below it" if known else
            "failed without a training-loss fall; slow below the cell optimum "
            "(chance accuracy unknown)")
    source = f"derived again (older status column): {rule}" if has_status else \
        f"derived: {rule}"
    return members.assign(status=status.to_numpy()), source
  if has_status:
    return members, "status column (older rule, kept: num_classes/num_val unknown)"
  diverged = members["diverged"].fillna(False).astype(bool).to_numpy()
  why = ("num_classes/num_val unknown" if derivable
         else f"no {'/'.join(c for c in RULE_COLUMNS if c not in members.columns)} column")
  return (members.assign(status=np.where(diverged, "diverged", "trained")),
          f"diverged flag only ({why})")


def trained_mask(members: pd.DataFrame) -> np.ndarray:
  """Whether each member trained to convergence: status ``"trained"`` (`status_labels`).

  Example:
    >>> trained_mask(pd.DataFrame({"status": ["trained", "slow", "failed"]})).tolist()
    [True, False, False]
  """
  return status_labels(members) == "trained"


def usable_mask(members: pd.DataFrame) -> np.ndarray:
  """Whether each member counts for the fits (best LR, ...): ``trained`` or ``slow``.

  A slow member learned; its metric at a small LR is a real, if unconverged,
  measurement of that LR. The same members as
  `lrjax.analysis.stability.stable_mask`, under the fits' name.

  Example:
    >>> usable_mask(pd.DataFrame({"status": ["trained", "slow", "failed", "diverged"]})
    ...             ).tolist()
    [True, True, False, False]
  """
  return np.isin(status_labels(members), outcomes.LEARNED)


def not_diverged_mask(members: pd.DataFrame) -> np.ndarray:
  """Whether each member did not diverge: trained, slow or failed (`status_labels`).

  Example:
    >>> not_diverged_mask(pd.DataFrame({"status": ["trained", "failed", "diverged"]})).tolist()
    [True, True, False]
  """
  return status_labels(members) != "diverged"


# ------------------------------------------------------------------------ intervals


# Student-t 0.975 quantiles for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
         2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074,
         2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964


def _t975(df: int) -> float:
  if df <= len(_T975):
    return _T975[df - 1]
  z = _Z975  # Cornish-Fisher expansion; accurate to 1e-3 beyond 30 df.
  return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def small_sample_factor(n_seeds: int) -> float:
  """How much a seed-bootstrap interval is widened for having only n_seeds seeds.

  A bootstrap over n seeds sees a spread sqrt((n-1)/n) too small and uses normal
  instead of Student-t quantiles; for a mean over seeds, widening the percentile
  interval about its median by ``t_{n-1} sqrt(n/(n-1)) / z`` gives back exactly the
  t interval. Without it a 4-seed bootstrap covers about 75%, not 95%.

  Example:
    >>> [round(small_sample_factor(n), 2) for n in (3, 4, 10, 100)]
    [2.69, 1.87, 1.22, 1.02]
  """
  if n_seeds < 2:
    return float("nan")
  return _t975(n_seeds - 1) * math.sqrt(n_seeds / (n_seeds - 1)) / _Z975


def interval(reps: np.ndarray, n_seeds, allowed: np.ndarray | bool = True
             ) -> tuple[np.ndarray, np.ndarray]:
  """95% seed-bootstrap interval per column of (R, K) replicates.

  The percentile interval (outer order statistics, no interpolation, so an infinite
  replicate gives an infinite bound rather than NaN), widened about the replicates'
  median by `small_sample_factor` of the column's number of seeds. Columns with too
  few non-NaN replicates (under half), fewer than 2 seeds, or ``allowed`` False get
  NaN.

  Args:
    reps: (R, K) bootstrap replicates of K estimates.
    n_seeds: seeds behind each estimate (scalar or (K,)).
    allowed: per column, whether to compute an interval at all.

  Returns:
    ``(lo, hi)``, each of shape (K,).

  Example:
    >>> reps = np.array([[1.0], [2.0], [3.0]])
    >>> lo, hi = interval(reps, n_seeds=100)
    >>> float(lo[0]) < 1.0 and float(hi[0]) > 3.0   # widened a little about 2
    True
  """
  reps = np.asarray(reps, float)
  k = reps.shape[1]
  lo = np.full(k, np.nan)
  hi = np.full(k, np.nan)
  allowed = np.broadcast_to(np.asarray(allowed, bool), (k,))
  n_seeds = np.broadcast_to(np.asarray(n_seeds), (k,))
  if reps.shape[0] == 0:
    return lo, hi
  # Sorting NaN last lets every column use order statistics of its non-NaN values.
  srt = np.sort(reps, axis=0)
  n_ok = (~np.isnan(reps)).sum(0)
  for j in range(k):
    n = int(n_ok[j])
    if not allowed[j] or n_seeds[j] < 2 or n == 0 or n < _MIN_FINITE_FRACTION * reps.shape[0]:
      continue
    col = srt[:n, j]
    l = col[int(math.floor(CI[0] * (n - 1)))]
    h = col[int(math.ceil(CI[1] * (n - 1)))]
    m = col[int(math.floor(0.5 * (n - 1)))]
    f = small_sample_factor(int(n_seeds[j]))
    lo[j], hi[j] = (m - f * (m - l), m + f * (h - m)) if np.isfinite(m) else (l, h)
  return lo, hi


def seed_counts(n_seeds: int, n_boot: int, rng_seed: int) -> np.ndarray:
  """(n_boot, n_seeds) multiplicities of each seed in each bootstrap replicate.

  Deterministic in (n_seeds, n_boot, rng_seed), which is what makes replicates from
  separate calls joint.

  Example:
    >>> c = seed_counts(3, 4, rng_seed=0)
    >>> c.shape, c.sum(1).tolist()
    ((4, 3), [3.0, 3.0, 3.0, 3.0])
  """
  rng = np.random.default_rng(rng_seed)
  if n_seeds == 0 or n_boot == 0:
    return np.zeros((n_boot, n_seeds))
  return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot).astype(float)


# --------------------------------------------------------------------------- text


def fmt(x) -> str:
  """A number in 3 significant digits; ``∞`` for +inf; ``n/a`` for NaN or None.

  Example:
    >>> fmt(0.012345), fmt(float("inf")), fmt(float("nan"))
    ('0.0123', '∞', 'n/a')
  """
  if x is None or not np.isfinite(x):
    return "∞" if x is not None and x == np.inf else "n/a"
  return f"{x:.3g}"


def group_label(columns: Sequence[str], values: Sequence) -> str:
  """``"aug 0.5, optimizer adam"``: a group's columns and values for a sentence.

  Example:
    >>> group_label(["aug", "optimizer"], [0.5, "adam"])
    'aug 0.5, optimizer adam'
  """
  return ", ".join(f"{c} {fmt(v) if isinstance(v, float) else v}"
                   for c, v in zip(columns, values))


def interval_text(x: float, lo: float, hi: float, fn=lambda v: v) -> str:
  """``"0.5 [0.42, 0.58]"``, or ``"0.5 (no interval)"`` when the bounds are NaN.

  ``fn`` maps all three first (e.g. ``np.exp`` for a log ratio).

  Example:
    >>> interval_text(0.5, 0.42, 0.58), interval_text(0.5, np.nan, np.nan)
    ('0.5 [0.42, 0.58]', '0.5 (no interval)')
  """
  if np.isfinite(lo) or lo == np.inf:
    return f"{fmt(fn(x))} [{fmt(fn(lo))}, {fmt(fn(hi))}]"
  return f"{fmt(fn(x))} (no interval)"
