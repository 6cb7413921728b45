"""The learning-rate range test, classic and vectorised.

* ``range_test``: the classic test (Smith 2017; fastai ``lr_find``,
  torch-lr-finder): train one model while the LR grows exponentially from
  ``start_lr`` to ``end_lr``, record the training loss of every step, smooth it
  with a bias-corrected exponential moving average (beta 0.98), and stop once the
  smoothed loss passes ``diverge_factor`` times its minimum. Suggestions:
  ``steepest`` (most negative slope of smoothed loss vs log LR), ``minimum / 10``
  and fastai's ``valley``. Every replicate seed runs in the same vmapped program.
* ``vectorised_test``: many fixed-LR copies trained for a short budget as one
  lrjax grid; suggests the LR with the lowest validation loss and reports the
  smallest LR that diverged.

``suggest_grid`` turns a suggestion into log-spaced LRs centred on it, ready for
``--config.grid.lr``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

from lrjax import data
from lrjax import grid as grid_lib
from lrjax import models
from lrjax import optimizers
from lrjax.data import Dataset, example_order
from lrjax.engine import TrainSettings, train_grid
from lrjax.errors import ConfigError
from lrjax.models import ModelAdapter


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
  """Steepest descent, minimum/10 and valley LRs from a smoothed loss curve."""
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


def range_test(model: ModelAdapter, dataset: Dataset, *, optimizer: str = "momentum",
               optimizer_kwargs: dict | None = None, batch_size: int = 32,
               start_lr: float = 1e-6, end_lr: float = 10.0, num_steps: int = 200,
               seeds: tuple[int, ...] = (0,), diverge_factor: float = 4.0,
               beta: float = 0.98) -> dict[str, Any]:
  """The classic exponential LR range test (Smith 2017), one vmapped run per seed.

  Args:
    model: a ``ModelAdapter``.
    dataset: from ``lrjax.data.load``.
    optimizer, optimizer_kwargs: as in experiment configs.
    batch_size: examples per step.
    start_lr, end_lr, num_steps: the exponential ramp
      ``lr_t = start_lr * (end_lr / start_lr) ** (t / (num_steps - 1))``.
    seeds: replicate runs (their losses are averaged before smoothing).
    diverge_factor: stop when the smoothed loss exceeds this times its minimum.
    beta: smoothing factor.

  Returns:
    ``{"lr", "loss", "smoothed"}`` arrays up to the stopping step, and
    ``"suggestions"``.

  References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.

  Example:
    >>> from lrjax import data, models
    >>> out = range_test(models.get_model("mlp", 10, hidden=(32,)), data.load("digits"),
    ...                  num_steps=60, start_lr=1e-4, end_lr=10.0)
    >>> sorted(out["suggestions"])
    ['minimum_div_10', 'steepest', 'valley']
  """
  if not (0 < start_lr < end_lr) or not np.isfinite(end_lr):
    raise ConfigError(f"find: need 0 < start_lr < end_lr; got {start_lr}, {end_lr}.")
  if num_steps < 5:
    raise ConfigError(f"find: num_steps must be >= 5; got {num_steps}.")
  if not 0 < batch_size <= len(dataset.train):
    raise ConfigError(f"find: batch_size must be in [1, {len(dataset.train)}]; got {batch_size}.")
  schedule = optax.exponential_decay(start_lr, transition_steps=num_steps - 1,
                                     decay_rate=end_lr / start_lr)
  opt = optimizers.make_optimizer(optimizer, schedule, **(optimizer_kwargs or {}))
  n = num_steps * batch_size
  orders = jnp.asarray(np.stack([example_order(s, len(dataset.train), n) for s in seeds]))
  images = jnp.asarray(dataset.train.images)
  labels = jnp.asarray(dataset.train.labels)
  sample = jnp.zeros((1,) + dataset.image_shape, jnp.float32)

  @jax.jit
  def run(seed_keys, orders):
    def one(key, order):
      params = model.init(jax.random.fold_in(key, 0), sample)
      model_state = models.initial_state(model, jax.random.fold_in(key, 0), sample)
      dropout_key = jax.random.fold_in(key, 3)

      def step(carry, t):
        params, model_state, state = carry
        idx = jax.lax.dynamic_slice(order, (t * batch_size,), (batch_size,))
        x = data.to_float(images[idx])
        y = jax.nn.one_hot(labels[idx], dataset.num_classes)

        def loss_fn(p):
          logits, new_state = models.train_logits(model, p, model_state, x,
                                                  jax.random.fold_in(dropout_key, t))
          return optax.softmax_cross_entropy(logits, y).mean(), new_state

        (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), model_state, state), loss

      _, losses = jax.lax.scan(step, (params, model_state, opt.init(params)),
                               jnp.arange(num_steps))
      return losses

    return jax.vmap(one)(seed_keys, orders)

  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  losses = np.asarray(run(keys, orders)).mean(0)
  lrs = np.asarray(jax.vmap(schedule)(jnp.arange(num_steps)))
  smoothed = smooth(np.where(np.isfinite(losses), losses, np.inf), beta)
  best = np.minimum.accumulate(smoothed)
  stop = np.nonzero(~np.isfinite(smoothed) | (smoothed > diverge_factor * best))[0]
  end = int(stop[0]) if stop.size else num_steps
  lrs, losses, smoothed = lrs[:end], losses[:end], smoothed[:end]
  return {"lr": lrs, "loss": losses, "smoothed": smoothed,
          "suggestions": suggestions(lrs, smoothed)}


def vectorised_test(model: ModelAdapter, dataset: Dataset, *, lrs, batch_size: int = 32,
                    epochs: float = 1.0, **settings) -> dict[str, Any]:
  """Trains one fixed-LR copy per value of ``lrs`` for a short budget, as one grid.

  Returns:
    ``{"members": DataFrame, "best_lr": float, "smallest_diverged_lr": float | None}``.

  Example:
    >>> from lrjax import data, models
    >>> out = vectorised_test(models.get_model("mlp", 10, hidden=(32,)), data.load("digits"),
    ...                       lrs=(0.01, 0.1, 1.0), epochs=1)
    >>> out["best_lr"] in (0.01, 0.1, 1.0)
    True
  """
  table = grid_lib.make_grid({"lr": tuple(float(v) for v in lrs), "batch_size": (batch_size,)})
  result = train_grid(model, dataset, table, TrainSettings(epochs=epochs, **settings),
                      progress=False)
  members = result.members
  ok = members[~members.diverged & members.final_val_loss.notna()]
  if ok.empty:
    raise ConfigError("find: every LR diverged; lower the LR range.")
  best = float(ok.loc[ok.final_val_loss.idxmin(), "lr"])
  bad = members[members.diverged]
  return {"members": members, "best_lr": best,
          "smallest_diverged_lr": float(bad.lr.min()) if len(bad) else None}


def suggest_grid(center: float, num: int = 7, decades: float = 2.0) -> tuple[float, ...]:
  """Log-spaced LRs centred on ``center``, spanning ``decades`` decades in all.

  Example:
    >>> suggest_grid(0.1, num=3, decades=2)
    (0.01, 0.1, 1.0)
  """
  half = 10 ** (decades / 2)
  return grid_lib.log_space(center / half, center * half, num)


def plot(classic: dict, vectorised: dict | None, path: str) -> str:
  """Loss vs LR (log x) with the suggestions marked; writes a PNG."""
  fig = Figure(figsize=(7, 4.5), layout="constrained")
  ax = fig.add_subplot()
  ax.plot(classic["lr"], classic["loss"], color="0.75", lw=0.8, label="training loss")
  ax.plot(classic["lr"], classic["smoothed"], color="C0", label="smoothed (range test)")
  for (name, lr), color in zip(classic["suggestions"].items(), ("C1", "C2", "C3")):
    ax.axvline(lr, color=color, ls="--", label=f"{name}: {lr:.3g}")
  if vectorised is not None:
    m = vectorised["members"]
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
