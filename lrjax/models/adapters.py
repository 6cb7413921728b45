"""Adapters that let the engine train any Flax model (linen or NNX).

The engine sees a model only as a ``ModelAdapter``: pure functions it can vmap over
members. A model has trainable ``params`` and, optionally, a mutable *state*
(linen's non-``params`` collections such as BatchNorm's ``batch_stats``, or NNX's
``BatchStat`` variables) and RNG streams (dropout). Training calls
``train_logits(model, params, state, x, rng)``, which returns the logits and the
updated state; evaluation calls ``eval_logits(model, params, state, x)`` (running
averages, no dropout).
"""

from __future__ import annotations

import inspect
import zlib
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx


class ModelAdapter(NamedTuple):
  """A model as pure functions the engine can vmap.

  Only ``name``, ``init`` and ``apply`` are required (a stateless model without
  randomness); the other three describe mutable state and train/eval modes.

  Attributes:
    name: shown in results.
    init: ``(key, x) -> params`` (a pytree of arrays).
    apply: ``(params, x) -> logits`` in evaluation mode; ``x`` is float NHWC
      (uint8 images scaled to [0, 1]). A model with state needs it:
      ``eval_logits`` (from_nnx's ``apply`` uses the state it was built with).
    init_state: ``(key, x) -> state``, the mutable non-trainable variables
      (e.g. ``{"batch_stats": ...}``); None: no state.
    apply_train: ``(params, state, x, rng) -> (logits, new_state)`` in training
      mode (batch statistics, dropout drawn from ``rng``); None: ``apply``.
    apply_eval: ``(params, state, x) -> logits`` in evaluation mode (running
      averages, no dropout); None: ``apply``.
  """

  name: str
  init: Callable[[jax.Array, jax.Array], Any]
  apply: Callable[[Any, jax.Array], jax.Array]
  init_state: Callable[[jax.Array, jax.Array], Any] | None = None
  apply_train: Callable[[Any, Any, jax.Array, jax.Array], tuple[jax.Array, Any]] | None = None
  apply_eval: Callable[[Any, Any, jax.Array], jax.Array] | None = None


def initial_state(model: ModelAdapter, key, x):
  """The model's initial mutable state (``{}`` for a stateless model).

  Example:
    >>> import jax.numpy as jnp
    >>> from lrjax.models import MLP
    >>> initial_state(from_linen(MLP(hidden=(8,))), jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    {}
  """
  return {} if model.init_state is None else model.init_state(key, x)


def train_logits(model: ModelAdapter, params, state, x, rng):
  """Training-mode logits and the updated state (batch statistics, dropout from ``rng``).

  Example:
    >>> import jax.numpy as jnp
    >>> from lrjax.models import MLP
    >>> m = from_linen(MLP(hidden=(8,)))
    >>> x = jnp.zeros((2, 8, 8, 1))
    >>> logits, state = train_logits(m, m.init(jax.random.key(0), x), {}, x, jax.random.key(1))
    >>> logits.shape, state
    ((2, 10), {})
  """
  if model.apply_train is None:
    return model.apply(params, x), state
  return model.apply_train(params, state, x, rng)


def eval_logits(model: ModelAdapter, params, state, x):
  """Evaluation-mode logits (running averages, no dropout).

  Example:
    >>> import jax.numpy as jnp
    >>> from lrjax.models import MLP
    >>> m = from_linen(MLP(hidden=(8,)))
    >>> x = jnp.zeros((2, 8, 8, 1))
    >>> eval_logits(m, m.init(jax.random.key(0), x), {}, x).shape
    (2, 10)
  """
  if model.apply_eval is None:
    return model.apply(params, x)
  return model.apply_eval(params, state, x)


def _stream_keys(rng, streams: Sequence[str]) -> dict:
  """One key per RNG stream: ``dropout`` gets ``rng`` itself, others a fold of it."""
  return {s: rng if s == "dropout" else jax.random.fold_in(rng, zlib.crc32(s.encode()) >> 1)
          for s in streams}


def _mode_keyword(module: nn.Module) -> str | None:
  """The keyword by which ``module.__call__`` takes its mode: ``train`` or
  ``deterministic`` (Flax's two conventions), or None."""
  names = inspect.signature(type(module).__call__).parameters
  return next((n for n in ("train", "training", "deterministic") if n in names), None)


def from_linen(module: nn.Module, name: str | None = None,
               rng_streams: Sequence[str] = ("dropout",)) -> ModelAdapter:
  """Adapts a ``flax.linen`` Module, including mutable collections and dropout.

  Collections besides ``params`` (BatchNorm's ``batch_stats``, ...) become the
  member's state, updated at every training call. The module's mode keyword,
  ``train`` (True while training) or ``deterministic`` (False while training), is
  passed when ``__call__`` has one.

  Args:
    module: a linen Module mapping NHWC float images to logits.
    name: label for results; default the class name.
    rng_streams: RNG streams the module draws from while training
      (``self.make_rng``); each gets a key derived from the member's seed and step.

  Example:
    >>> import jax.numpy as jnp
    >>> from lrjax.models import MLP
    >>> adapter = from_linen(MLP(num_classes=10, hidden=(32,)))
    >>> x = jnp.zeros((4, 8, 8, 1))
    >>> params = adapter.init(jax.random.key(0), x)
    >>> adapter.apply(params, x).shape
    (4, 10)
  """
  mode = _mode_keyword(module)

  def mode_kwargs(train: bool) -> dict:
    if mode is None:
      return {}
    return {mode: (not train) if mode == "deterministic" else train}

  def variables(key, x):
    return module.init(key, x, **mode_kwargs(False))

  def init(key, x):
    return variables(key, x)["params"]

  def init_state(key, x):
    return {k: v for k, v in variables(key, x).items() if k != "params"}

  def apply(params, x):
    return module.apply({"params": params}, x, **mode_kwargs(False))

  def apply_train(params, state, x, rng):
    rngs = _stream_keys(rng, rng_streams)
    if not state:
      return module.apply({"params": params}, x, rngs=rngs, **mode_kwargs(True)), state
    logits, new = module.apply({"params": params, **state}, x, rngs=rngs,
                               mutable=list(state), **mode_kwargs(True))
    return logits, {k: new[k] for k in state}

  def apply_eval(params, state, x):
    return module.apply({"params": params, **state}, x, **mode_kwargs(False))

  return ModelAdapter(name or type(module).__name__, init, apply, init_state, apply_train,
                      apply_eval)


def _fresh(tree):
  """New ``nnx.Variable`` objects for ``tree``'s values, made at the current trace level
  (a module merged from variables of an outer trace cannot update them in place, as
  BatchNorm does while training)."""
  return jax.tree.map(lambda v: v.replace(v.get_value()), tree,
                      is_leaf=lambda v: isinstance(v, nnx.Variable))


def _nnx_builder(factory, name: str | None):
  """``(template, build, label)`` of ``from_nnx``'s factory: a Module to read the
  structure from, ``key -> Module`` for each seed, and the results label."""
  if isinstance(factory, nnx.Module):
    return factory, lambda key: factory, name or type(factory).__name__
  return (factory(nnx.Rngs(0)), lambda key: factory(nnx.Rngs(key)),
          name or getattr(factory, "__name__", "nnx_model"))


def _reseeded(rest, streams, rng):
  """A module's RNG state ``rest`` with each stream of ``streams`` restarted from a key
  of ``rng``, built inside the trace (``nnx.reseed`` on merged constants would mutate
  variables of another trace level)."""
  keys = _stream_keys(rng, streams)

  def leaf(v):
    if isinstance(v, nnx.RngKey) and v.tag in keys:
      return v.replace(keys[v.tag])
    if isinstance(v, nnx.RngCount) and v.tag in keys:
      return v.replace(jnp.zeros_like(v.get_value()))
    return v.replace(v.get_value())

  return jax.tree.map(leaf, rest, is_leaf=lambda v: isinstance(v, nnx.Variable))


def from_nnx(factory: Callable[[nnx.Rngs], nnx.Module] | nnx.Module,
             name: str | None = None) -> ModelAdapter:
  """Adapts a ``flax.nnx`` Module through ``nnx.split``/``nnx.merge``.

  ``nnx.Param`` variables are trained; ``nnx.BatchStat`` variables (BatchNorm's
  running averages) are the member's state. Training calls ``module.train()``
  and reseeds the module's RNG streams (e.g. ``dropout``) from the member's seed
  and step; evaluation calls ``module.eval()``.

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
    ...     self.bn = nnx.BatchNorm(10, rngs=rngs)
    ...   def __call__(self, x):
    ...     return self.bn(self.dense(x.reshape(x.shape[:-3] + (-1,))))
    >>> adapter = from_nnx(Net)
    >>> x = jnp.ones((4, 8, 8, 1))
    >>> key = jax.random.key(0)
    >>> params, state = adapter.init(key, x), initial_state(adapter, key, x)
    >>> logits, new_state = train_logits(adapter, params, state, x, jax.random.key(1))
    >>> logits.shape, list(new_state["bn"])
    ((4, 10), ['mean', 'var'])
  """
  template, build, label = _nnx_builder(factory, name)
  graphdef, _, _, rest = nnx.split(template, nnx.Param, nnx.BatchStat, ...)
  streams = sorted({v.tag for v in jax.tree.leaves(
      rest, is_leaf=lambda v: isinstance(v, nnx.RngKey)) if isinstance(v, nnx.RngKey)}
                   - {"params"})

  def split(key):
    _, params, stats, _ = nnx.split(build(key), nnx.Param, nnx.BatchStat, ...)
    return params, stats

  def init(key, x):
    del x
    return split(key)[0]

  def init_state(key, x):
    del x
    return split(key)[1]

  def merged(params, state):
    return nnx.merge(graphdef, params, state, rest)

  template_stats = nnx.split(template, nnx.Param, nnx.BatchStat, ...)[2]

  def apply(params, x):
    return apply_eval(params, template_stats, x)

  def apply_train(params, state, x, rng):
    module = nnx.merge(graphdef, params, _fresh(state),
                       _reseeded(rest, streams, rng) if streams else rest)
    module.train()
    logits = module(x)
    return logits, nnx.split(module, nnx.Param, nnx.BatchStat, ...)[2]

  def apply_eval(params, state, x):
    module = merged(params, state)
    module.eval()
    return module(x)

  return ModelAdapter(label, init, apply, init_state, apply_train, apply_eval)
