"""Planted steps-to-target tables and histories for the critical-batch tests."""
import math

import numpy as np
import pandas as pd


def synthetic_steps(*, batch_sizes=(16, 32, 64, 128, 256, 512, 1024), seeds=(0, 1, 2, 3),
                    b_crit=200.0, s_min=1000.0, sigma=0.05, augs=(0.0,), rng_seed=0):
  """Per-member steps to target planted on S = S_min (1 + B_crit / B).

  Off-optimum LRs need more steps (a factor 1 + 0.5 log(lr/lr_opt)^2), and each
  member's steps carry multiplicative seed noise exp(sigma * N(0, 1)).
  """
  rng = np.random.default_rng(rng_seed)
  rows = []
  for aug in augs:
    for b in batch_sizes:
      lr_opt = 0.01 * (b / batch_sizes[0]) ** 0.5
      for k in range(-3, 4):
        lr = lr_opt * 2.0 ** (k / 2)
        for s in seeds:
          steps = (s_min * (1 + b_crit / b) * (1 + 0.5 * math.log(lr / lr_opt) ** 2)
                   * math.exp(sigma * rng.normal()))
          rows.append(dict(lr=lr, batch_size=b, aug=aug, seed=s, steps=steps))
  return pd.DataFrame(rows)


def history_for(members, need, every=10, horizon=200):
  """val_loss = need / step: the target 1.0 is first reached at step >= need."""
  steps = np.arange(every, horizon + 1, every)
  rep = lambda col: np.repeat(np.asarray(col), len(steps))
  step = np.tile(steps, len(members))
  return pd.DataFrame({"member": rep(members["member"]), "updates": step,
                       "examples_seen": step * rep(members["batch_size"]),
                       "val_loss": rep(need) / step, "val_acc": 0.5})
