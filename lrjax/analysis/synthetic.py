"""Fake runs and members tables with a known answer, for demos, docs and tests of the analysis."""
from __future__ import annotations

import json
import math
import os
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from lrjax import outcomes
from lrjax.analysis import tables

NUM_CLASSES = 10
NUM_VAL = 1000
_EXAMPLES = 10 * 1000  # examples each fake member trains on


def synthetic_run(lrs: Sequence[float] = tuple(0.01 * 2.0 ** k for k in range(-3, 6)),
                  batch_sizes: Sequence[int] = (32, 64, 128, 256),
                  augs: Sequence[float] = (0.0, 0.5), seeds: Sequence[int] = (0, 1),
                  exponent: float = 1.0, base_lr: float = 0.01, base_batch: int = 32,
                  aug_shift: float = 0.0, diverge_above: float = 8.0,
                  n_evals: int = 8, extra_axes: dict | None = None, *,
                  noise: float = 0.0, fail_below: float = 0.0,
                  status_columns: bool = False, train_loss_columns: bool = False,
                  noise_scale: float | None = None, b_crit: float = 128.0,
                  s_min: float = 10.0, rng_seed: int = 0) -> tables.RunTables:
  """A fake run whose best LR is ``base_lr * (B / base_batch)**exponent * 2**(aug_shift*aug)``.

  Accuracy falls off quadratically in log2 LR around that optimum, minus a per-seed
  offset that never moves the argmax and ``noise`` (standard deviation) per member;
  the loss is ``-log(accuracy)``. LRs above ``diverge_above`` times the optimum
  diverge halfway through training; LRs below ``fail_below`` times it do not learn
  (chance accuracy 1/10, training loss flat).

  The validation loss of a member at batch size B with log2 distance d from its
  optimal LR approaches its final value as ``exp(-3 p)``, with progress ``p =
  updates / (s_min (1 + b_crit / B) (1 + d**2 / 2))``: at the best LR the steps to
  any target follow McCandlish et al.'s ``S = S_min (1 + B_crit / B)``.

  The many parameters are deliberate: each plants one property of the fake run and
  has a default, so a test or example names only what it plants.

  Args:
    lrs, batch_sizes, augs, seeds: the grid.
    exponent: the LR-batch scaling exponent (1 linear, 0.5 sqrt).
    base_lr, base_batch: the best LR at ``base_batch``.
    aug_shift: log2 shift of the best LR per unit of aug strength.
    diverge_above: the divergence threshold, as a multiple of the best LR.
    n_evals: evaluations per member in the history.
    extra_axes: more axes, name -> values (they do not change the metrics).
    noise: standard deviation of per-member accuracy noise.
    fail_below: LRs below this multiple of the best LR fail (0: none).
    status_columns: add ``status``, ``first_train_loss`` and ``final_train_loss`` as
      the engine writes them (status by `lrjax.outcomes.member_status`).
    train_loss_columns: add only ``first_train_loss`` and ``final_train_loss``.
    noise_scale: when given, a history column ``noise_scale`` starting at this value
      and growing 3× over training (× (1 + aug)), NaN once a member diverged.
    b_crit, s_min: the planted critical batch size and minimal steps (in updates).
    rng_seed: seed of ``noise``.

  Returns:
    A `lrjax.analysis.tables.RunTables` with ``run_dir`` ``""``; its config has
    ``num_classes`` and ``num_val``.

  Example:
    >>> run = synthetic_run(lrs=(0.01, 0.02), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
    >>> len(run.members), int(run.members["diverged"].sum())
    (2, 0)
    >>> run = synthetic_run(lrs=(0.001, 0.01), batch_sizes=(32,), augs=(0.0,), seeds=(0,),
    ...                     fail_below=0.5, status_columns=True)
    >>> run.members["status"].tolist()
    ['failed', 'trained']
  """
  rng = np.random.default_rng(rng_seed)
  extra_axes = dict(extra_axes or {})
  axes = {"lr": list(lrs), "batch_size": list(batch_sizes), "aug": list(augs),
          "seed": list(seeds), **{k: list(v) for k, v in extra_axes.items()}}
  grid = pd.MultiIndex.from_product(list(axes.values()), names=list(axes)).to_frame(
      index=False)
  grid.insert(0, "member", np.arange(len(grid)))
  opt = (base_lr * (grid["batch_size"] / base_batch) ** exponent
         * 2.0 ** (aug_shift * grid["aug"]))
  dist = np.log2(grid["lr"] / opt)
  chance = 1.0 / NUM_CLASSES
  acc = (0.97 - 0.02 * dist ** 2 - 0.002 * grid["seed"] - 0.01 * grid["aug"]
         + noise * rng.normal(size=len(grid)))
  failed = (grid["lr"] < fail_below * opt).to_numpy()
  acc = acc.clip(chance, 1.0).where(~failed, chance)
  loss = -np.log(acc.clip(1e-3))
  diverged = (grid["lr"] > diverge_above * opt).to_numpy()
  m = grid.assign(
      diverged=diverged, diverged_at=np.where(diverged, _EXAMPLES / 2, np.nan),
      final_val_loss=loss.where(~diverged), final_val_acc=acc.where(~diverged),
      best_val_loss=(loss * 0.98).where(~diverged),
      best_val_acc=(acc + 0.002).clip(upper=1).where(~diverged),
      test_loss=(loss * 1.02).where(~diverged), test_acc=(acc - 0.003).where(~diverged))
  history = _planted_history(m, failed, dist.to_numpy(),
                             _Dynamics(n_evals, b_crit, s_min, noise_scale), rng)
  if status_columns or train_loss_columns:
    last = history.groupby("member")["train_loss"].last()
    m["first_train_loss"] = math.log(NUM_CLASSES) * 1.05
    m["final_train_loss"] = last.reindex(m["member"]).to_numpy()
  if status_columns:
    m["status"] = outcomes.member_status(m, num_classes=NUM_CLASSES, num_val=NUM_VAL)
  config = {"dataset": "synthetic", "model": "none", "optimizer": "sgd",
            "schedule": "constant", "epochs": 10, "num_classes": NUM_CLASSES,
            "num_val": NUM_VAL, "grid": {k: list(v) for k, v in axes.items()}}
  return tables.RunTables(config=config, members=m, history=history, run_dir="")


class _Dynamics(NamedTuple):
  """How a planted member's history evolves (see `synthetic_run`)."""
  n_evals: int
  b_crit: float
  s_min: float
  noise_scale: float | None


def _planted_history(m: pd.DataFrame, failed: np.ndarray, dist: np.ndarray,
                     dyn: _Dynamics, rng: np.random.Generator) -> pd.DataFrame:
  """The history of each member of ``m``; ``dist``: log2 distance of its LR from the best."""
  t = np.linspace(0, 1, dyn.n_evals + 1)[1:]
  init = math.log(NUM_CLASSES)
  chance = 1.0 / NUM_CLASSES
  rows = []
  for r, f, dd in zip(m.itertuples(), failed, dist):
    d = r.diverged
    updates = np.floor(t * _EXAMPLES / r.batch_size)
    need = dyn.s_min * (1 + dyn.b_crit / r.batch_size) * (1 + 0.5 * dd ** 2)
    final = init if f else (-math.log(0.3) if d else r.final_val_loss)
    curve = final + (init - final) * np.exp(-3 * updates / need)
    vacc = np.exp(-curve) if not f else np.full(len(t), chance)
    if d:  # explode, then NaN after divergence
      curve = np.where(t < 0.5, curve * (1 + 4 * t), np.nan)
      vacc = np.where(t < 0.5, chance, np.nan)
    ns = np.full(len(t), np.nan)
    if dyn.noise_scale is not None:
      ns = (dyn.noise_scale * (1 + 2 * t) * (1 + r.aug)
            * np.exp(0.1 * rng.normal(size=len(t))))
      ns = np.where(np.isfinite(curve), ns, np.nan)
    for k, tk in enumerate(t):
      rows.append((r.member, tk * _EXAMPLES, int(updates[k]), r.lr * (1 - 0.5 * tk),
                   curve[k] * 1.05, curve[k], vacc[k], ns[k]))
  history = pd.DataFrame(rows, columns=["member", "examples_seen", "updates", "lr_now",
                                        "train_loss", "val_loss", "val_acc", "noise_scale"])
  return history.drop(columns=["noise_scale"]) if dyn.noise_scale is None else history


def save_run(run: tables.RunTables, run_dir: str) -> str:
  """Writes a `Run`'s tables as the engine does (``config.json``, parquet files).

  Example:
    >>> import tempfile
    >>> d = save_run(synthetic_run(seeds=(0,)), tempfile.mkdtemp())
    >>> sorted(os.listdir(d))
    ['config.json', 'history.parquet', 'members.parquet']
  """
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, "config.json"), "w") as f:
    json.dump(tables.jsonable(run.config), f, indent=2)
  run.members.to_parquet(os.path.join(run_dir, "members.parquet"), index=False)
  run.history.to_parquet(os.path.join(run_dir, "history.parquet"), index=False)
  return run_dir


def synthetic_members(*, batch_sizes: Sequence[int] = (32, 64, 128, 256, 512),
                      lrs: Sequence[float] | None = None, augs: Sequence[float] = (0.0,),
                      seeds: Sequence[int] = (0, 1, 2), exponent: float = 0.5,
                      lr_ref: float = 0.01, aug_lr_factor: float = 1.0,
                      noise: float = 0.01, seed_noise: float = 0.02, base: float = 0.3,
                      diverge_factor: float | None = None,
                      rng_seed: int = 0) -> pd.DataFrame:
  """A members table with a planted optimum, for tests and examples of the estimators.

  The optimum is ``lr_opt = lr_ref * (B / batch_sizes[0]) ** exponent *
  aug_lr_factor ** aug`` and ``final_val_loss = (log lr − log lr_opt)**2 + base +
  seed_noise * η_seed + noise * ε_member``. Members with ``lr > diverge_factor *
  lr_opt`` diverge (NaN metrics). The default LR grid is log2-spaced in quarter
  octaves from lr_opt/8 to 8·lr_opt over all cells.

  Every parameter is keyword-only with a default and plants one property of the
  table (the grid, the optimum, the noise, divergence), so a caller names only what
  it plants.

  Example:
    >>> synthetic_members(batch_sizes=(64,), lrs=(0.01,), seeds=(0,)).columns.tolist()[:6]
    ['member', 'lr', 'batch_size', 'aug', 'seed', 'diverged']
  """
  rng = np.random.default_rng(rng_seed)
  b0 = batch_sizes[0]

  def lr_opt(b, aug):
    return lr_ref * (np.asarray(b, float) / b0) ** exponent * aug_lr_factor ** np.asarray(aug)

  if lrs is None:
    opts = [lr_opt(b, a) for b in batch_sizes for a in augs]
    k_lo = math.floor(4 * math.log2(min(opts) / 8))
    k_hi = math.ceil(4 * math.log2(max(opts) * 8))
    lrs = 2.0 ** (np.arange(k_lo, k_hi + 1) / 4)
  grid = pd.MultiIndex.from_product([list(lrs), list(batch_sizes), list(augs), list(seeds)],
                                    names=["lr", "batch_size", "aug", "seed"]).to_frame(index=False)
  seed_offset = dict(zip(seeds, rng.normal(size=len(seeds))))
  opt = lr_opt(grid["batch_size"], grid["aug"])
  loss = ((np.log(grid["lr"]) - np.log(opt)) ** 2 + base
          + seed_noise * grid["seed"].map(seed_offset).to_numpy()
          + noise * rng.normal(size=len(grid)))
  diverged = (grid["lr"] > diverge_factor * opt).to_numpy() if diverge_factor else \
      np.zeros(len(grid), bool)
  loss = np.where(diverged, np.nan, loss)
  acc = np.clip(0.95 - 0.2 * (loss - base), 0.1, 1.0)
  return pd.DataFrame({
      "member": np.arange(len(grid)), "lr": grid["lr"], "batch_size": grid["batch_size"],
      "aug": grid["aug"].astype(float), "seed": grid["seed"], "diverged": diverged,
      "final_val_loss": loss, "final_val_acc": acc,
      "best_val_loss": loss, "best_val_acc": acc,
      "first_train_loss": np.log(10.0), "final_train_loss": 0.9 * loss,
      "updates": 1000,
  })
