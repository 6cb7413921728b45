"""Adapters that let the engine train any Flax model (linen or NNX).

The engine sees a model only as a ``ModelAdapter``: ``init(key, x) -> params``
and ``apply(params, x) -> logits``, both pure, so they vmap over members.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
from flax import nnx

from lrjax.errors import ConfigError


class ModelAdapter(NamedTuple):
  """A model as two pure functions the engine can vmap.

  Attributes:
    name: shown in results.
    init: ``(key, x) -> params`` (a pytree of arrays).
    apply: ``(params, x) -> logits``; ``x`` is float32 NHWC in [0, 1].
  """

  name: str
  init: Callable[[jax.Array, jax.Array], Any]
  apply: Callable[[Any, jax.Array], jax.Array]


def from_linen(module: nn.Module, name: str | None = None) -> ModelAdapter:
  """Adapts a ``flax.linen`` Module (params collection only).

  Args:
    module: a linen Module mapping NHWC float images to logits.
    name: label for results; default the class name.

  Raises:
    ConfigError: at init, if the module has collections besides ``params``
      (e.g. BatchNorm's ``batch_stats``), which the engine does not thread.

  Example:
    >>> import jax.numpy as jnp
    >>> from lrjax.models import MLP
    >>> adapter = from_linen(MLP(num_classes=10, hidden=(32,)))
    >>> x = jnp.zeros((4, 8, 8, 1))
    >>> params = adapter.init(jax.random.key(0), x)
    >>> adapter.apply(params, x).shape
    (4, 10)
  """

  def init(key, x):
    variables = module.init(key, x)
    extra = sorted(set(variables) - {"params"})
    if extra:
      raise ConfigError(
          f"model: {type(module).__name__} has variable collections {extra} besides "
          f"'params' (e.g. BatchNorm statistics). lrjax trains by micro-batch "
          f"accumulation, where batch statistics would not match the member's batch; "
          f"use a model without them (e.g. LayerNorm/GroupNorm instead of BatchNorm).")
    return variables["params"]

  def apply(params, x):
    return module.apply({"params": params}, x)

  return ModelAdapter(name or type(module).__name__, init, apply)


def from_nnx(factory: Callable[[nnx.Rngs], nnx.Module], name: str | None = None) -> ModelAdapter:
  """Adapts a ``flax.nnx`` Module through ``nnx.split``/``nnx.merge``.

  Args:
    factory: ``rngs -> Module`` (e.g. the Module class or a lambda), called with
      each seed's ``nnx.Rngs`` so members with different seeds get different
      initial weights. An already-built Module is accepted too; then every seed
      starts from its weights.
    name: label for results; default the class name.

  Example:
    >>> import jax.numpy as jnp
    >>> class Net(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.dense = nnx.Linear(64, 10, rngs=rngs)
    ...   def __call__(self, x):
    ...     return self.dense(x.reshape(x.shape[:-3] + (-1,)))
    >>> adapter = from_nnx(Net)
    >>> x = jnp.zeros((4, 8, 8, 1))
    >>> adapter.apply(adapter.init(jax.random.key(0), x), x).shape
    (4, 10)
  """
  if isinstance(factory, nnx.Module):
    built = factory
    graphdef, state = nnx.split(built, nnx.Param)
    init = lambda key, x: state
    label = name or type(built).__name__
  else:
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: factory(nnx.Rngs(0))), nnx.Param)

    def init(key, x):
      del x
      return nnx.split(factory(nnx.Rngs(key)), nnx.Param)[1]

    label = name or getattr(factory, "__name__", "nnx_model")

  def apply(params, x):
    return nnx.merge(graphdef, params)(x)

  return ModelAdapter(label, init, apply)
