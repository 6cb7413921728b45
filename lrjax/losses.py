"""Training losses and extra evaluation metrics, by name or as callables.

A loss is ``(logits, labels) -> per-example loss`` with ``labels`` soft class
probabilities (one-hot, smoothed, or mixed by mixup/cutmix), so any loss that
takes soft labels works with label mixing. A metric has the same signature and
is averaged over the validation and test splits.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax.numpy as jnp
import optax

from lrjax import callables
from lrjax.errors import ConfigError

LOSSES: dict[str, Callable] = {
    "cross_entropy": optax.softmax_cross_entropy,
}
DEFAULT_LOSS = "cross_entropy"


def resolve_loss(spec: Any) -> Callable:
  """The loss for ``spec``: a name of ``LOSSES``, ``"package.module:function"``, or
  a callable ``(logits, labels) -> per-example loss``.

  Raises:
    ConfigError: an unknown name or a bad import path, naming ``loss``.

  Example:
    >>> import jax.numpy as jnp
    >>> loss = resolve_loss("cross_entropy")
    >>> [round(float(v), 4) for v in loss(jnp.zeros((2, 4)), jnp.eye(4)[:2])]
    [1.3863, 1.3863]
  """
  if callable(spec):
    return spec
  if callables.is_import_path(spec):
    return callables.import_callable("loss", spec)
  if spec not in LOSSES:
    raise ConfigError(f"loss: unknown loss {spec!r}. Use one of {sorted(LOSSES)}, "
                      f"'package.module:function', or a callable (logits, labels) -> "
                      f"per-example loss.")
  return LOSSES[spec]


def resolve_metrics(spec: Mapping[str, Any] | None) -> dict[str, Callable]:
  """Extra metrics: name -> callable ``(logits, labels) -> per-example value``.

  Values may be callables, ``"package.module:function"`` strings or loss names.

  Example:
    >>> sorted(resolve_metrics({"xent": "optax:softmax_cross_entropy"}))
    ['xent']
  """
  out = {}
  for name, fn in dict(spec or {}).items():
    if not isinstance(name, str) or not name.isidentifier():
      raise ConfigError(f"metrics: metric names must be identifiers (they become the "
                        f"columns val_<name>, test_<name>); got {name!r}.")
    if name in ("loss", "acc"):
      raise ConfigError(f"metrics: '{name}' is always reported (val_{name}); choose "
                        f"another name.")
    out[name] = fn if callable(fn) else (
        callables.import_callable(f"metrics.{name}", fn) if callables.is_import_path(fn)
        else resolve_loss(fn))
  return out


def top_k_accuracy(k: int) -> Callable:
  """A metric: 1 where the label is among the ``k`` largest logits.

  Example:
    >>> import jax.numpy as jnp
    >>> top_k_accuracy(2)(jnp.array([[3.0, 2.0, 1.0]]), jnp.array([[0.0, 1.0, 0.0]])).tolist()
    [1.0]
  """

  def metric(logits, labels):
    label = jnp.argmax(labels, -1)
    rank = jnp.sum(logits > jnp.take_along_axis(logits, label[..., None], -1), -1)
    return (rank < k).astype(jnp.float32)

  metric.__name__ = f"top_{k}_accuracy"
  return metric
