"""One member's model calls inside the program: mixed precision, ghost batches, metrics.

Kept apart from ``program`` (which lays members out and steps them) because these
are per-member and shape-agnostic: the program vmaps them.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from lrjax import data
from lrjax.models.adapters import ModelAdapter, eval_logits, train_logits


def cast(tree, dtype):
  """Floating leaves of ``tree`` in ``dtype`` (the working copy of mixed precision).

  Example:
    >>> cast({"w": jnp.ones(2), "n": jnp.int32(3)}, jnp.bfloat16)["w"].dtype
    dtype(bfloat16)
  """
  if dtype == jnp.float32:
    return tree
  return jax.tree.map(
      lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def mean_state(states, old):
  """New model state from per-ghost-batch states (leading axis): float leaves averaged
  (one running-average update with the ghost batches' mean statistics), others the
  last; each in ``old``'s dtype.

  Example:
    >>> mean_state({"m": jnp.array([1.0, 3.0])}, {"m": jnp.float32(0)})["m"].tolist()
    2.0
  """
  return jax.tree.map(
      lambda new, o: (jnp.mean(new, 0) if jnp.issubdtype(new.dtype, jnp.floating)
                      else new[-1]).astype(o.dtype), states, old)


def train_forward(model: ModelAdapter, params, model_state, x, rng, dtype, bn_batch: int):
  """One member's training-mode logits (float32) and its model's new state.

  Mixed precision: parameters and inputs are cast to ``dtype`` for the forward and
  backward pass; gradients, weights and optimizer state stay float32. A model with
  state (BatchNorm) normalises over ghost batches of ``bn_batch`` examples when set
  (each with its own dropout key ``fold_in(rng, j)``), and its running averages take
  one update per call, with the ghost batches' mean statistics.

  Example:
    >>> from lrjax import models
    >>> m = models.get_model("mlp", 10, hidden=(8,))
    >>> x = jnp.zeros((4, 8, 8, 1))
    >>> logits, state = train_forward(m, m.init(jax.random.key(0), x), {}, x,
    ...                               jax.random.key(1), jnp.bfloat16, 0)
    >>> logits.dtype, state
    (dtype('float32'), {})
  """
  p, x = cast((params, x), dtype)
  if not jax.tree.leaves(model_state) or not bn_batch or bn_batch >= x.shape[0]:
    logits, new_state = train_logits(model, p, model_state, x, rng)
    new_state = jax.tree.map(lambda n, o: n.astype(o.dtype), new_state, model_state)
    return logits.astype(jnp.float32), new_state
  n = x.shape[0] // bn_batch
  ghost = lambda xg, j: train_logits(model, p, model_state, xg, jax.random.fold_in(rng, j))
  logits, states = jax.vmap(ghost)(x.reshape((n, bn_batch) + x.shape[1:]), jnp.arange(n))
  return (logits.reshape((n * bn_batch,) + logits.shape[2:]).astype(jnp.float32),
          mean_state(states, model_state))


def split_sums(model: ModelAdapter, params, model_state, batches, dtype, num_classes: int,
               loss: Callable | None, metrics: Mapping[str, Callable]) -> dict:
  """One member's summed loss, number correct and metrics over a (padded) split.

  Args:
    batches: ``(images, labels, weights)`` with a leading batch axis; weights are 0
      on padding.
    loss: ``(logits, one-hot labels) -> per-example``, or None for the
      cross-entropy on integer labels.
    metrics: name -> per-example function of (logits, one-hot labels).

  Returns:
    ``{"loss", "acc", <metrics>}`` sums (evaluation mode: running averages, no dropout).
  """
  names = ("loss", "acc") + tuple(metrics)
  p = cast(params, dtype)

  def batch_sums(carry, batch):
    x, y, w = batch
    logits = eval_logits(model, p, model_state,
                         cast(data.to_float(x), dtype)).astype(jnp.float32)
    one_hot = jax.nn.one_hot(y, num_classes, dtype=jnp.float32)
    per_example = {
        "loss": (optax.softmax_cross_entropy_with_integer_labels(logits, y) if loss is None
                 else loss(logits, one_hot)),
        "acc": (jnp.argmax(logits, -1) == y).astype(jnp.float32),
        **{n: fn(logits, one_hot).astype(jnp.float32) for n, fn in metrics.items()}}
    return {n: carry[n] + jnp.sum(per_example[n] * w) for n in names}, None

  zero = {n: jnp.zeros((), jnp.float32) for n in names}
  return jax.lax.scan(batch_sums, zero, batches)[0]
