"""Optimizers: Optax's, by catalog name or from any factory, with array-valued hyperparameters.

The engine builds each member's optimizer *inside* ``jax.vmap`` from that
member's hyperparameters, which are traced scalars there; so every numeric
hyperparameter (learning rate, momentum, b1, b2, eps, weight decay, a clipping
norm) can be a grid axis. An optimizer is a name of :data:`OPTIMIZERS` (a
shortcut), a factory ``(learning_rate, **hparams) -> optax.GradientTransformation``
whose keywords are its hyperparameters (``optax.adamw`` is one), or, in configs,
the string ``"package.module:function"`` naming such a factory.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Union

import optax

from lrjax import callables
from lrjax.errors import ConfigError

# name -> (factory(learning_rate, **hparams), default hparams). The defaults are
# Optax's, except momentum 0.9 for the momentum methods.
OPTIMIZERS: dict[str, tuple[Callable[..., optax.GradientTransformation], dict[str, Any]]] = {
    "sgd": (lambda learning_rate: optax.sgd(learning_rate), {}),
    "momentum": (lambda learning_rate, momentum: optax.sgd(learning_rate, momentum=momentum),
                 {"momentum": 0.9}),
    "nesterov": (lambda learning_rate, momentum: optax.sgd(
        learning_rate, momentum=momentum, nesterov=True), {"momentum": 0.9}),
    "adam": (optax.adam, {"b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    "adamw": (optax.adamw, {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4}),
    "nadam": (optax.nadam, {"b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    "rmsprop": (optax.rmsprop, {"decay": 0.9, "eps": 1e-8, "momentum": 0.0}),
}


# What ``TrainSettings.optimizer`` holds: a catalog name, "package.module:function",
# or a factory (learning_rate, **hparams) -> optax.GradientTransformation.
Optimizer = Union[str, Callable[..., optax.GradientTransformation]]
_FACTORY = "a factory (learning_rate, **hparams) -> optax.GradientTransformation"


def _signature(opt: Optimizer) -> tuple[Callable, dict[str, Any], tuple[str, ...], bool]:
  """``(factory, defaults, required, any_keyword)`` of an optimizer; raises ConfigError."""
  if isinstance(opt, str) and not callables.is_import_path(opt):
    if opt not in OPTIMIZERS:
      raise ConfigError(f"optimizer: unknown optimizer '{opt}'. Use one of "
                        f"{sorted(OPTIMIZERS)}, \"package.module:function\" naming "
                        f"{_FACTORY}, or such a factory.")
    factory, defaults = OPTIMIZERS[opt]
    return factory, dict(defaults), (), False
  factory = (callables.import_callable("optimizer", opt, _FACTORY) if isinstance(opt, str)
             else opt)
  if not callable(factory):
    raise ConfigError(f"optimizer: must be a name of {sorted(OPTIMIZERS)}, "
                      f"\"package.module:function\", or {_FACTORY}; got {factory!r}.")
  params = callables.parameters("optimizer", factory, opt, "(learning_rate, **hparams)")
  positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                inspect.Parameter.VAR_POSITIONAL)
  if not params or params[0].kind not in positional:
    raise ConfigError(f"optimizer: {callables.label(opt)} must take the learning rate as "
                      f"its first positional argument: {_FACTORY}.")
  return (factory, *callables.keyword_hparams(params[1:]))


def optimizer_hparams(opt: Optimizer) -> dict[str, Any]:
  """The hyperparameters of an optimizer (besides the LR) that have defaults, and those.

  For a factory, its keyword arguments with defaults; arguments without one are
  :func:`required_hparams`.

  Example:
    >>> optimizer_hparams("adam")
    {'b1': 0.9, 'b2': 0.999, 'eps': 1e-08}
    >>> optimizer_hparams(lambda learning_rate, clip, wd=1e-4: None)
    {'wd': 0.0001}
  """
  return _signature(opt)[1]


def required_hparams(opt: Optimizer) -> tuple[str, ...]:
  """A factory's hyperparameters without a default: each must be given, in
  ``optimizer_kwargs`` or as a grid axis (none for catalog names).

  Example:
    >>> required_hparams(lambda learning_rate, clip, wd=1e-4: None)
    ('clip',)
  """
  return _signature(opt)[2]


def accepts_hparam(opt: Optimizer, name: str) -> bool:
  """Whether ``name`` is a hyperparameter of ``opt`` (any name, for a ``**kwargs`` factory).

  Example:
    >>> accepts_hparam("sgd", "momentum"), accepts_hparam("momentum", "momentum")
    (False, True)
  """
  _, defaults, required, any_keyword = _signature(opt)
  return any_keyword or name in defaults or name in required


def check_optimizer(opt: Optimizer) -> None:
  """Raises ``ConfigError`` unless ``opt`` is a catalog name, an importable
  ``"package.module:function"`` or a callable taking the learning rate first.

  Example:
    >>> check_optimizer("optax:adamw")
    >>> check_optimizer("adagradx")
    Traceback (most recent call last):
    ...
    lrjax.errors.ConfigError: optimizer: unknown optimizer 'adagradx'. Use one of \
['adam', 'adamw', 'momentum', 'nadam', 'nesterov', 'rmsprop', 'sgd'], \
"package.module:function" naming a factory (learning_rate, **hparams) -> \
optax.GradientTransformation, or such a factory.
  """
  _signature(opt)


def make_optimizer(opt: Optimizer, learning_rate, **hparams) -> optax.GradientTransformation:
  """Builds an Optax optimizer; hyperparameters may be traced scalars.

  Args:
    opt: a name of ``OPTIMIZERS``, a factory ``(learning_rate, **hparams) ->
      optax.GradientTransformation``, or ``"package.module:function"`` naming one.
    learning_rate: a scalar or an Optax schedule ``count -> lr``.
    **hparams: overrides of ``optimizer_hparams(opt)``; a factory's arguments
      without default (``required_hparams``) must be among them.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> @jax.vmap
    ... def one_step(lr, momentum):
    ...   opt = make_optimizer("momentum", lr, momentum=momentum)
    ...   params = jnp.ones(3)
    ...   updates, _ = opt.update(params, opt.init(params), params)
    ...   return updates
    >>> one_step(jnp.array([0.1, 1.0]), jnp.array([0.9, 0.0])).shape
    (2, 3)
    >>> clipped = lambda learning_rate, clip: optax.chain(
    ...     optax.clip_by_global_norm(clip), optax.sgd(learning_rate))
    >>> opt = make_optimizer(clipped, 1.0, clip=jnp.float32(0.5))
    >>> params = jnp.array([3.0, 4.0])
    >>> opt.update(params, opt.init(params))[0].tolist()
    [-0.30000001192092896, -0.4000000059604645]
  """
  factory, defaults, required, any_keyword = _signature(opt)
  unknown = [] if any_keyword else sorted(set(hparams) - set(defaults) - set(required))
  if unknown:
    takes = sorted(defaults) + list(required)
    raise ConfigError(f"optimizer_kwargs/grid: {unknown} are not hyperparameters of "
                      f"'{callables.label(opt)}'; it takes {takes or 'only the learning rate'}.")
  missing = [n for n in required if n not in hparams]
  if missing:
    raise ConfigError(missing_hparams_message(opt, missing))
  hparams = {**defaults, **hparams}
  if isinstance(opt, str) and opt in OPTIMIZERS and any(callable(v) for v in hparams.values()):
    # e.g. a cycled momentum: count -> value
    return optax.inject_hyperparams(factory)(learning_rate, **hparams)
  return factory(learning_rate, **hparams)


def missing_hparams_message(opt: Optimizer, missing) -> str:
  """The error for factory hyperparameters that have no default and were not given."""
  first = list(missing)[0]
  return (f"optimizer: {list(missing)} of '{callables.label(opt)}' have no default; give "
          f"them in optimizer_kwargs (e.g. optimizer_kwargs={{'{first}': 1.0}}) or as grid "
          f"axes (e.g. grid.{first}=(0.5, 1.0)).")


def momentum_name(opt: Optimizer) -> str | None:
  """The hyperparameter torch's ``cycle_momentum`` cycles: momentum, or Adam's b1.

  None for factories: lrjax does not know which of their arguments is a momentum.

  Example:
    >>> momentum_name("adam"), momentum_name("nesterov"), momentum_name("sgd")
    ('b1', 'momentum', None)
    >>> momentum_name("optax:adam") is None
    True
  """
  if not (isinstance(opt, str) and opt in OPTIMIZERS):
    check_optimizer(opt)
    return None
  names = optimizer_hparams(opt)
  return "b1" if "b1" in names else ("momentum" if "momentum" in names else None)
