"""The learning-rate range test, classic and vectorised, both trained by the engine.

* ``range_test``: the classic test (Smith 2017; fastai ``lr_find``,
  torch-lr-finder): train one model while the LR grows exponentially from
  ``start_lr`` to ``end_lr`` (``exponential_ramp``), record the training loss of
  every step, smooth it with a bias-corrected exponential moving average (beta
  0.98), and stop once the smoothed loss passes ``diverge_factor`` times its
  minimum. Suggestions: ``steepest`` (most negative slope of smoothed loss vs log
  LR), ``minimum / 10`` and fastai's ``valley``. The test is a grid (one member per
  replicate seed) trained by ``lrjax.engine.train_grid`` with the run's own settings
  (loss, label smoothing, dtype, ghost BatchNorm, augmentation, optimizer), the
  schedule replaced by the ramp; the losses are the engine's per-tick losses
  (``TrainSettings.record_tick_loss``), so the curve is the objective a run trains.
* ``vectorised_test``: many fixed-LR copies trained for a short budget as one
  lrjax grid; suggests the LR with the lowest validation loss among the stable
  members (status ``trained`` or ``slow``, ``lrjax.outcomes``) and reports the
  smallest unstable LR (failed above its cell's optimum, or diverged) and the
  largest LR too slow to learn in the budget (slow, or failed at or below the optimum).

``batch_size_test`` runs both for one batch size of a resolved ``Run`` and
``summarise`` turns them into ``lr_find.json`` (what ``lrjax find`` writes);
``suggest_grid`` turns a suggestion into log-spaced LRs centred on it, ready for
``--config.grid.lr``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrjax import augment
from lrjax import callables
from lrjax import grid as grid_lib
from lrjax import outcomes
from lrjax.data import Dataset
from lrjax.engine import Run, TrainSettings, train_grid
from lrjax.errors import ConfigError
from lrjax.models import ModelAdapter

# The test's own members: the ramp sets the LR, its arguments the batch size and seeds.
_TEST_COLUMNS = ("member", "lr", "batch_size", "seed")
# The engine marks a member diverged past divergence_factor x its first loss; the range
# test reads the raw curve to its own stop rule, so only a non-finite loss counts.
_NO_DIVERGENCE_FACTOR = float(np.finfo(np.float32).max)


def smooth(losses: np.ndarray, beta: float = 0.98) -> np.ndarray:
  """Bias-corrected exponential moving average, as fastai and torch-lr-finder use.

  Example:
    >>> smooth(np.array([1.0, 1.0, 1.0])).round(6).tolist()
    [1.0, 1.0, 1.0]
  """
  avg, out = 0.0, np.empty(len(losses))
  for i, loss in enumerate(losses):
    avg = beta * avg + (1 - beta) * loss
    out[i] = avg / (1 - beta ** (i + 1))
  return out


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
  """fastai's ``valley``: the longest decreasing run of the loss, 2/3 of the way down.

  Example:
    >>> lrs = np.geomspace(1e-4, 1, 9)
    >>> float(valley(lrs, np.array([5, 4, 3, 2, 1, 0.5, 2, 9, 30.0]))) < 0.1
    True
  """
  n = len(losses)
  if n < 2:
    return float(lrs[0])
  run = np.ones(n, dtype=int)  # longest decreasing subsequence ending at i
  prev = -np.ones(n, dtype=int)
  for i in range(1, n):
    for j in range(i):
      if losses[j] > losses[i] and run[j] + 1 > run[i]:
        run[i], prev[i] = run[j] + 1, j
  end = int(np.argmax(run))
  start = end
  while prev[start] >= 0:
    start = prev[start]
  idx = start + int(round((end - start) * 2 / 3))
  return float(lrs[idx])


def suggestions(lrs: np.ndarray, smoothed: np.ndarray) -> dict[str, float]:
  """Steepest descent, minimum/10 and valley LRs from a smoothed loss curve.

  Example:
    >>> lrs = np.geomspace(1e-4, 1, 9)
    >>> out = suggestions(lrs, np.array([5, 4, 3, 2, 1, 0.5, 2, 9, 30.0]))
    >>> sorted(out), round(out["minimum_div_10"], 6)
    (['minimum_div_10', 'steepest', 'valley'], 0.003162)
  """
  finite = np.isfinite(smoothed)
  lrs, smoothed = lrs[finite], smoothed[finite]
  if len(lrs) < 3:
    raise ConfigError("find: the loss diverged within the first steps; lower the ramp's "
                      "start, e.g. lrjax.lr_finder.range_test(..., start_lr=1e-7).")
  slope = np.gradient(smoothed, np.log(lrs))
  return {
      "steepest": float(lrs[int(np.argmin(slope))]),
      "minimum_div_10": float(lrs[int(np.argmin(smoothed))] / 10.0),
      "valley": valley(lrs, smoothed),
  }


def exponential_ramp(step, peak_lr, total_updates, end_lr=10.0):
  """The range test's schedule: ``peak_lr`` (the start) to ``end_lr`` exponentially.

  ``lr_t = start * (end_lr / start) ** (t / (total_updates - 1))``: the first update
  at ``start``, the last at ``end_lr``. A custom schedule for the engine (``(step,
  peak_lr, total_updates, **hparams)``, docs/SCHEDULES.md), the member's ``lr`` its
  start.

  Example:
    >>> [round(float(exponential_ramp(t, 1e-4, 5, end_lr=1.0)), 6) for t in range(5)]
    [0.0001, 0.001, 0.01, 0.1, 1.0]
  """
  return peak_lr * (end_lr / peak_lr) ** (step / (total_updates - 1))


def ramp_settings(settings: TrainSettings, batch_size: int, num_steps: int, end_lr: float,
                  num_train: int, num_members: int) -> TrainSettings:
  """``settings`` for a range test: the ramp as the schedule, ``num_steps`` steps.

  Everything that shapes the objective (loss, label smoothing, dtype, ghost
  BatchNorm, augmentation, optimizer) stays; the schedule and its warmup become
  ``exponential_ramp`` to ``end_lr``; the budget is ``num_steps`` batches of
  ``batch_size`` with one evaluation, at the end; one micro-batch is one step (so a
  tick's loss is a step's); no LR scaling or batch growth; the engine records every
  tick's loss and marks only non-finite losses diverged; one chunk of
  ``num_members``.

  Example:
    >>> s = ramp_settings(TrainSettings(label_smoothing=0.1), 32, 100, 10.0, 1600, 1)
    >>> s.label_smoothing, s.epochs, s.eval_every, s.record_tick_loss
    (0.1, 2.0, 3200, True)
  """
  examples = num_steps * batch_size
  return dataclasses.replace(
      settings, schedule=exponential_ramp, schedule_kwargs={"end_lr": float(end_lr)},
      epochs=examples / num_train, eval_every=examples, micro_batch=0, lr_scaling=0.0,
      batch_growth_at=(), divergence_factor=_NO_DIVERGENCE_FACTOR, record_tick_loss=True,
      measure_noise_scale=False, max_members_per_chunk=num_members)


def _with_policy(settings: TrainSettings, table: pd.DataFrame,
                 dataset: Dataset) -> TrainSettings:
  """``settings`` with the dataset's augmentation policy when a member augments and
  none is set."""
  augments = (table["aug"] != 0).any() or any(c.startswith("aug_") for c in table.columns)
  if settings.augment_policy is not None or not augments:
    return settings
  policy = augment.policy_for_dataset(dataset)
  return dataclasses.replace(settings, augment_policy=policy)


def _test_settings(settings: TrainSettings | None, optimizer,
                   optimizer_kwargs) -> TrainSettings:
  """``settings`` (default ``TrainSettings()``) with ``optimizer`` and its kwargs when
  given; a new optimizer takes only the kwargs given with it."""
  settings = settings or TrainSettings()
  if optimizer is not None:
    return dataclasses.replace(settings, optimizer=optimizer,
                               optimizer_kwargs=dict(optimizer_kwargs or {}))
  if optimizer_kwargs is not None:
    return dataclasses.replace(settings, optimizer_kwargs=dict(optimizer_kwargs))
  return settings


def _check_ramp(dataset: Dataset, batch_size: int, start_lr: float, end_lr: float,
                num_steps: int, hparams: Mapping[str, Any]) -> None:
  if not (0 < start_lr < end_lr) or not np.isfinite(end_lr):
    raise ConfigError(f"find: need 0 < start_lr < end_lr; got {start_lr}, {end_lr}.")
  if num_steps < 5:
    raise ConfigError(f"find: num_steps must be >= 5; got {num_steps}.")
  if not 0 < batch_size <= len(dataset.train):
    raise ConfigError(f"find: batch_size must be in [1, {len(dataset.train)}]; got {batch_size}.")
  own = sorted(set(hparams) & set(_TEST_COLUMNS))
  if own:
    raise ConfigError(f"find: hparams {own} are the range test's own arguments (start_lr, "
                      f"batch_size, seeds); give the other grid columns only.")


def _truncate(lrs: np.ndarray, losses: np.ndarray, diverge_factor: float,
              beta: float) -> dict[str, Any]:
  """The curve up to the first step whose smoothed loss is non-finite or past
  ``diverge_factor`` times the best so far, with its suggestions."""
  smoothed = smooth(np.where(np.isfinite(losses), losses, np.inf), beta)
  best = np.minimum.accumulate(smoothed)
  stop = np.nonzero(~np.isfinite(smoothed) | (smoothed > diverge_factor * best))[0]
  end = int(stop[0]) if stop.size else len(losses)
  lrs, losses, smoothed = lrs[:end], losses[:end], smoothed[:end]
  return {"lr": lrs, "loss": losses, "smoothed": smoothed,
          "suggestions": suggestions(lrs, smoothed)}


def range_test(model: ModelAdapter, dataset: Dataset, *, optimizer: Any = None,
               optimizer_kwargs: Mapping[str, Any] | None = None, batch_size: int = 32,
               start_lr: float = 1e-6, end_lr: float = 10.0, num_steps: int = 200,
               seeds: Sequence[int] = (0,), diverge_factor: float = 4.0,
               beta: float = 0.98, settings: TrainSettings | None = None,
               hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The classic exponential LR range test (Smith 2017), trained by the engine.

  One grid member per seed, all in one program (``lrjax.engine.train_grid``), with
  ``settings`` as a run would train them except the schedule (``ramp_settings``).

  The keyword arguments are those of the usual ``lr_find`` (fastai,
  pytorch-lr-finder: start and end LR, steps, divergence threshold, smoothing), so a
  user names only the ones they change; the run's own settings travel as one
  ``settings``.

  Args:
    model: a ``ModelAdapter``.
    dataset: from ``lrjax.data.load``.
    optimizer, optimizer_kwargs: as in experiment configs (a catalog name or a
      factory, and its arguments); None: those of ``settings`` (``"momentum"`` by
      default). A new ``optimizer`` takes only the ``optimizer_kwargs`` given with it.
    batch_size: examples per step.
    start_lr, end_lr, num_steps: the exponential ramp
      ``lr_t = start_lr * (end_lr / start_lr) ** (t / (num_steps - 1))``.
    seeds: replicate runs (their losses are averaged before smoothing).
    diverge_factor: stop when the smoothed loss exceeds this times its minimum.
    beta: smoothing factor.
    settings: the run's ``TrainSettings`` (loss, ``label_smoothing``, ``dtype``,
      ``bn_batch``, ``multiplicity``, ``augment_policy``, ...); default
      ``TrainSettings()``.
    hparams: other grid columns every member takes, e.g. ``{"aug": 0.5}``,
      ``{"label_smoothing": 0.1}`` or an optimizer hyperparameter (nonzero ``aug``
      without ``settings.augment_policy`` uses ``lrjax.augment.policy_for_dataset``).

  Returns:
    ``{"lr", "loss", "smoothed"}`` arrays up to the stopping step, and
    ``"suggestions"``. ``loss[t]`` is the mean over seeds of step ``t``'s training
    loss, before the update at ``lr[t]``.

  References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.

  Example:
    >>> from lrjax import data, models
    >>> out = range_test(models.get_model("mlp", 10, hidden=(32,)), data.load("digits"),
    ...                  num_steps=60, start_lr=1e-4, end_lr=10.0)
    >>> sorted(out["suggestions"])
    ['minimum_div_10', 'steepest', 'valley']
  """
  hparams = dict(hparams or {})
  _check_ramp(dataset, batch_size, start_lr, end_lr, num_steps, hparams)
  table = grid_lib.make_grid(members=[
      {**hparams, "lr": float(start_lr), "batch_size": batch_size, "seed": int(s)}
      for s in seeds])
  settings = ramp_settings(_test_settings(settings, optimizer, optimizer_kwargs),
                           batch_size, num_steps, end_lr, len(dataset.train), len(table))
  result = train_grid(model, dataset, table, _with_policy(settings, table, dataset),
                      progress=False)
  losses = result.tick_loss.astype(np.float64).mean(0)
  lrs = exponential_ramp(np.arange(num_steps, dtype=np.float64), float(start_lr),
                         num_steps, end_lr)
  return _truncate(lrs, losses, diverge_factor, beta)


def vectorised_test(model: ModelAdapter, dataset: Dataset, *, lrs: Sequence[float],
                    batch_size: int = 32, epochs: float = 1.0,
                    rows: Sequence[Mapping[str, Any]] | None = None,
                    settings: TrainSettings | None = None, **overrides) -> dict[str, Any]:
  """Trains every row at every fixed LR of ``lrs`` for a short budget, as one grid.

  A member is stable when its status is ``"trained"`` or ``"slow"``
  (``lrjax.outcomes``: neither diverged nor failed to learn); the suggestions read
  stable members only. Against its cell's optimum (``outcomes.cell_best_lr``: every
  row but its seed is a cell), a member is unstable when it diverged, or failed above
  the optimum; it is too slow when it is slow, or failed at or below the optimum (an
  LR too small to learn anything in the budget).

  Args:
    model, dataset: as ``range_test``'s.
    lrs: the learning rates.
    batch_size: every member's batch size.
    epochs: the budget.
    rows: member settings, each trained at every LR: grid columns other than ``lr``
      and ``batch_size`` (``seed``, ``aug``, a schedule or optimizer axis, ...);
      default one row of seed 0, no augmentation.
    settings: the run's ``TrainSettings`` (default ``TrainSettings()``); ``epochs`` and
      ``overrides`` (TrainSettings fields) replace its fields.

  Returns:
    ``{"members": DataFrame, "best_lr", "best_lr_by_aug": {aug: lr},
    "smallest_unstable_lr", "largest_too_slow_lr"}``: the stable LR with the lowest
    final validation loss (NaN when no member is stable), the same per augmentation
    strength, the smallest LR of an unstable member and the largest LR of a too slow
    one (`stability_limits`).

  Example:
    >>> from lrjax import data, models
    >>> out = vectorised_test(models.get_model("mlp", 10, hidden=(32,)), data.load("digits"),
    ...                       lrs=(0.01, 0.1, 1.0), epochs=1)
    >>> out["best_lr"] in (0.01, 0.1, 1.0)
    True
  """
  rows = [dict(r) for r in (rows or [{}])]
  table = grid_lib.make_grid(members=[
      {**{k: v for k, v in r.items() if k not in ("member", "lr")},
       "lr": float(lr), "batch_size": batch_size} for r in rows for lr in lrs])
  settings = dataclasses.replace(settings or TrainSettings(), epochs=epochs, **overrides)
  members = train_grid(model, dataset, table, _with_policy(settings, table, dataset),
                       progress=False).members
  stable = members[members.status.isin(outcomes.LEARNED)]
  lowest = lambda m: float(m.loc[m.final_val_loss.idxmin(), "lr"])
  return {"members": members,
          "best_lr": lowest(stable) if len(stable) else float("nan"),
          "best_lr_by_aug": {float(a): lowest(g) for a, g in stable.groupby("aug")},
          **stability_limits(members)}


def stability_limits(members: pd.DataFrame) -> dict[str, float | None]:
  """The smallest unstable and the largest too slow LR of a members table.

  Against each member's cell optimum (``lrjax.outcomes.cell_best_lr``): unstable is
  diverged, or failed above the optimum; too slow is slow, or failed at or below the
  optimum (it learned nothing: too small an LR, not too large).

  Args:
    members: a members table with ``status`` (``lrjax.outcomes.STATUSES``), ``lr``,
      ``final_val_loss`` and the cell columns.

  Returns:
    ``{"smallest_unstable_lr", "largest_too_slow_lr"}``, each None when no member is.

  Example:
    >>> t = pd.DataFrame({"lr": [1e-4, 1e-3, 1e-2, 1e-1, 1.0], "batch_size": 32,
    ...                   "final_val_loss": [2.3, 1.0, 0.3, 1.5, 2.3], "diverged": False,
    ...                   "status": ["failed", "slow", "trained", "trained", "failed"]})
    >>> stability_limits(t)
    {'smallest_unstable_lr': 1.0, 'largest_too_slow_lr': 0.001}
  """
  status, lr = members["status"].astype(str), members["lr"].astype(float)
  above = (lr > outcomes.cell_best_lr(members)).to_numpy()
  failed = (status == "failed").to_numpy()
  unstable = lr[(status == "diverged").to_numpy() | (failed & above)]
  too_slow = lr[(status == "slow").to_numpy() | (failed & ~above)]
  return {"smallest_unstable_lr": float(unstable.min()) if len(unstable) else None,
          "largest_too_slow_lr": float(too_slow.max()) if len(too_slow) else None}


def _ramp_hparams(run: Run, row: Mapping[str, Any]) -> dict[str, Any]:
  """The columns of a member ``row`` that shape the range test's objective:
  augmentation, label smoothing and optimizer hyperparameters (not the schedule's,
  which the ramp replaces)."""
  keep = lambda c: (c in run.opt_cols or c in ("aug", "label_smoothing")
                    or c.startswith("aug_"))
  return {c: v for c, v in row.items() if keep(c)}


def batch_size_test(run: Run, batch_size: int, start_lr: float = 1e-6,
                    end_lr: float = 10.0) -> dict[str, Any]:
  """Both tests for one batch size of a resolved ``Run`` (``lrjax.experiment.resolve``).

  The range test trains the run's first member at ``batch_size`` and its first seed
  (its augmentation, label smoothing and optimizer axis values, the run's settings);
  its ``valley`` centres 9 LRs over 4 decades, which the vectorised test trains for
  one epoch with every row of the run at that batch size and seed (every
  augmentation strength, schedule and other axis value).

  Returns:
    ``{"batch_size", "range_test": range_test(...), "vectorised": vectorised_test(...)}``.

  Example:
    >>> from lrjax import experiment
    >>> c = experiment.default_config()
    >>> c.model_kwargs, c.grid.aug = {"hidden": (16,)}, (0.0, 1.0)
    >>> out = batch_size_test(experiment.resolve(c), 32)
    >>> sorted(out["vectorised"]["members"].aug.unique().tolist())
    [0.0, 1.0]
  """
  table = run.table
  seed = int(table.seed.min())
  at = table[(table.batch_size == batch_size) & (table.seed == seed)]
  rows = at.drop(columns=["member", "lr"]).drop_duplicates().to_dict("records")
  classic = range_test(run.model, run.dataset, batch_size=batch_size, seeds=(seed,),
                       settings=run.settings, hparams=_ramp_hparams(run, rows[0]),
                       start_lr=start_lr, end_lr=end_lr)
  lrs = suggest_grid(classic["suggestions"]["valley"], 9, 4.0)
  vectorised = vectorised_test(run.model, run.dataset, lrs=lrs, batch_size=batch_size,
                               rows=rows, settings=run.settings, eval_every=0,
                               max_members_per_chunk=0)
  return {"batch_size": batch_size, "range_test": classic, "vectorised": vectorised}


def summarise(settings: TrainSettings, tests: Sequence[Mapping[str, Any]]) -> dict:
  """``lr_find.json``: each batch size's suggestions, and a grid of LRs covering them.

  The grid is 7 log-spaced LRs centred on the geometric mean of the batch sizes'
  vectorised best LRs, spanning 2 decades plus their spread.

  Raises:
    ConfigError: no batch size has a stable LR.

  Example:
    >>> t = {"batch_size": 32, "range_test": {"suggestions": {"valley": 0.01}},
    ...      "vectorised": {"best_lr": 0.1, "best_lr_by_aug": {0.0: 0.1},
    ...                     "smallest_unstable_lr": None, "largest_too_slow_lr": None}}
    >>> out = summarise(TrainSettings(), [t])
    >>> out["suggested_grid_lr"][3], out["recommended_lr"]
    (0.1, {32: 0.1})
  """
  per_batch = [{"batch_size": t["batch_size"], "range_test": t["range_test"]["suggestions"],
                "vectorised_best_lr": t["vectorised"]["best_lr"],
                "vectorised_best_lr_by_aug": t["vectorised"]["best_lr_by_aug"],
                "smallest_unstable_lr": t["vectorised"]["smallest_unstable_lr"],
                "largest_too_slow_lr": t["vectorised"]["largest_too_slow_lr"]}
               for t in tests]
  bests = [p["vectorised_best_lr"] for p in per_batch if math.isfinite(p["vectorised_best_lr"])]
  if not bests:
    raise ConfigError("find: every LR failed or diverged at every batch size; lower the "
                      "LR range (lrjax.lr_finder.range_test(start_lr=...)) or check the "
                      "optimizer.")
  centre = math.exp(sum(math.log(b) for b in bests) / len(bests))
  spread = math.log10(max(bests) / min(bests))
  for p in per_batch:  # one LR to use: the vectorised test's best stable LR
    p["recommended_lr"] = p["vectorised_best_lr"] if math.isfinite(
        p["vectorised_best_lr"]) else None
  return {"optimizer": callables.label(settings.optimizer),
          "schedule": callables.label(settings.schedule),
          "per_batch_size": per_batch,
          "recommended_lr": {int(p["batch_size"]): p["recommended_lr"] for p in per_batch},
          "recommendation": RECOMMENDATION,
          "suggested_grid_lr": list(suggest_grid(centre, 7, 2.0 + spread))}


# Why the vectorised test's LR is the one recommended (docs/RESULTS.md, "Does the LR range
# test find the best LR?": on the main job it is ×2.1 off the settled optimum on average,
# the range test's valley ×8.4, its steepest point ×16, minimum/10 ×2.3).
RECOMMENDATION = ("recommended_lr is the vectorised one-epoch test's best stable LR: "
                  "fixed LRs trained as a grid, each judged by its validation loss. The "
                  "range test's valley, steepest and minimum/10 read one ramp and pointed "
                  "2-16 times too low on the main job. Both are one-epoch proxies: settle "
                  "suggested_grid_lr (lrjax settle) for the LR of the full budget.")


def curve_table(tests: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
  """``lr_find.csv``: every batch size's range-test curve, one row per step.

  Example:
    >>> t = {"batch_size": 32, "range_test": {"lr": np.array([0.1, 1.0]),
    ...      "loss": np.array([2.0, 1.0]), "smoothed": np.array([2.0, 1.5])}}
    >>> curve_table([t]).columns.tolist()
    ['batch_size', 'lr', 'loss', 'smoothed']
  """
  return pd.concat([pd.DataFrame({"batch_size": t["batch_size"], "lr": t["range_test"]["lr"],
                                  "loss": t["range_test"]["loss"],
                                  "smoothed": t["range_test"]["smoothed"]})
                    for t in tests], ignore_index=True)


def suggest_grid(center: float, num: int = 7, decades: float = 2.0) -> tuple[float, ...]:
  """Log-spaced LRs centred on ``center``, spanning ``decades`` decades in all.

  Example:
    >>> suggest_grid(0.1, num=3, decades=2)
    (0.01, 0.1, 1.0)
  """
  half = 10 ** (decades / 2)
  return grid_lib.log_space(center / half, center * half, num)


def plot(classic: dict, vectorised: dict | None, path: str) -> str:
  """Loss vs LR (log x) with the suggestions marked; writes a PNG.

  ``vectorised`` (a ``vectorised_test`` result, or None) adds each LR's lowest final
  validation loss over its members.

  Example:
    >>> import tempfile
    >>> lrs = np.geomspace(1e-3, 1, 20)
    >>> curve = {"lr": lrs, "loss": 2 - lrs, "smoothed": 2 - lrs,
    ...          "suggestions": suggestions(lrs, 2 - lrs)}
    >>> plot(curve, None, tempfile.mkdtemp() + "/f.png").endswith("f.png")
    True
  """
  fig = Figure(figsize=(7, 4.5), layout="constrained")
  ax = fig.add_subplot()
  ax.plot(classic["lr"], classic["loss"], color="0.75", lw=0.8, label="training loss")
  ax.plot(classic["lr"], classic["smoothed"], color="C0", label="smoothed (range test)")
  for (name, lr), color in zip(classic["suggestions"].items(), ("C1", "C2", "C3")):
    ax.axvline(lr, color=color, ls="--", label=f"{name}: {lr:.3g}")
  if vectorised is not None:
    m = vectorised["members"].groupby("lr", as_index=False).final_val_loss.min()
    ax.plot(m.lr, m.final_val_loss, "o-", color="C4", label="vectorised: val loss after budget")
  ax.set_xscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("loss")
  ax.set_title("LR range test")
  finite = classic["smoothed"][np.isfinite(classic["smoothed"])]
  if finite.size:
    ax.set_ylim(0, float(np.max(finite[: max(1, len(finite) // 10)]) * 1.5))
  ax.legend(fontsize=8)
  fig.savefig(path, dpi=120)
  return path
