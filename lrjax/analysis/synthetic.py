"""A fake run with a known optimum, for demos, docs and tests of the analysis."""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import pandas as pd

from lrjax.analysis import tables


def synthetic_run(lrs: Sequence[float] = tuple(0.01 * 2.0 ** k for k in range(-3, 6)),
                  batch_sizes: Sequence[int] = (32, 64, 128, 256),
                  augs: Sequence[float] = (0.0, 0.5), seeds: Sequence[int] = (0, 1),
                  exponent: float = 1.0, base_lr: float = 0.01, base_batch: int = 32,
                  aug_shift: float = 0.0, diverge_above: float = 8.0,
                  n_evals: int = 8, extra_axes: dict | None = None) -> tables.RunTables:
  """A fake run whose best LR is ``base_lr * (B / base_batch)**exponent * 2**(aug_shift*aug)``.

  Accuracy falls off quadratically in log LR around that optimum (plus a per-seed
  offset that never moves the argmax); LRs above ``diverge_above`` times the optimum
  diverge halfway through training.

  Args:
    lrs, batch_sizes, augs, seeds: the grid.
    exponent: the LR-batch scaling exponent (1 linear, 0.5 sqrt).
    base_lr, base_batch: the best LR at ``base_batch``.
    aug_shift: log2 shift of the best LR per unit of aug strength.
    diverge_above: the divergence threshold, as a multiple of the best LR.
    n_evals: evaluations per member in the history.
    extra_axes: more axes, name -> values (they do not change the metrics).

  Returns:
    A `lrjax.tables.RunTables` with ``run_dir`` ``""``.

  Example:
    >>> run = synthetic_run(lrs=(0.01, 0.02), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
    >>> len(run.members), int(run.members["diverged"].sum())
    (2, 0)
  """
  extra_axes = dict(extra_axes or {})
  axes = {"lr": list(lrs), "batch_size": list(batch_sizes), "aug": list(augs),
          "seed": list(seeds), **{k: list(v) for k, v in extra_axes.items()}}
  grid = pd.MultiIndex.from_product(list(axes.values()), names=list(axes)).to_frame(
      index=False)
  grid.insert(0, "member", np.arange(len(grid)))
  opt = (base_lr * (grid["batch_size"] / base_batch) ** exponent
         * 2.0 ** (aug_shift * grid["aug"]))
  dist = np.log2(grid["lr"] / opt)
  acc = 0.97 - 0.02 * dist ** 2 - 0.002 * grid["seed"] - 0.01 * grid["aug"]
  acc = acc.clip(0.1, 1.0)
  loss = -np.log(acc.clip(1e-3))
  diverged = (grid["lr"] > diverge_above * opt).to_numpy()
  total = 10 * 1000  # examples
  m = grid.assign(
      diverged=diverged, diverged_at=np.where(diverged, total / 2, np.nan),
      final_val_loss=loss.where(~diverged), final_val_acc=acc.where(~diverged),
      best_val_loss=(loss * 0.98).where(~diverged),
      best_val_acc=(acc + 0.002).clip(upper=1).where(~diverged),
      test_loss=(loss * 1.02).where(~diverged), test_acc=(acc - 0.003).where(~diverged))
  t = np.linspace(0, 1, n_evals)
  rows = []
  for r, d in zip(m.itertuples(), diverged):
    lr_speed = 3.0 * min(r.lr / (base_lr * (r.batch_size / base_batch) ** exponent), 4.0)
    final = -np.log(0.3) if d else r.final_val_loss
    curve = final + (np.log(10) - final) * np.exp(-lr_speed * t * 3)
    vacc = np.exp(-curve)
    if d:  # explode, then NaN after divergence
      curve = np.where(t < 0.5, curve * (1 + 4 * t), np.nan)
      vacc = np.where(t < 0.5, 0.1, np.nan)
    for k, tk in enumerate(t):
      rows.append((r.member, tk * total, int(tk * total / r.batch_size),
                   r.lr * (1 - 0.5 * tk), curve[k] * 1.05, curve[k], vacc[k]))
  history = pd.DataFrame(rows, columns=["member", "examples_seen", "updates", "lr_now",
                                        "train_loss", "val_loss", "val_acc"])
  config = {"dataset": "synthetic", "model": "none", "optimizer": "sgd",
            "schedule": "constant", "epochs": 10,
            "grid": {k: list(v) for k, v in axes.items()}}
  return tables.RunTables(config=config, members=m, history=history, run_dir="")


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
