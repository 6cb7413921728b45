"""The optimizer catalog: Optax optimizers by name, with array-valued hyperparameters.

The engine builds each member's optimizer *inside* ``jax.vmap`` from that
member's hyperparameters, which are traced scalars there; so every numeric
hyperparameter (learning rate, momentum, b1, b2, eps, weight decay) can be a
grid axis. The optimizers themselves are Optax's.
"""

from __future__ import annotations

from typing import Any, Callable

import optax

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


def optimizer_hparams(name: str) -> dict[str, Any]:
  """The numeric hyperparameters of an optimizer (besides the LR) and their defaults.

  Example:
    >>> optimizer_hparams("adam")
    {'b1': 0.9, 'b2': 0.999, 'eps': 1e-08}
  """
  check_optimizer(name)
  return dict(OPTIMIZERS[name][1])


def check_optimizer(name: str) -> None:
  if name not in OPTIMIZERS:
    raise ConfigError(f"optimizer: unknown optimizer '{name}'. Use one of "
                      f"{sorted(OPTIMIZERS)}.")


def make_optimizer(name: str, learning_rate, **hparams) -> optax.GradientTransformation:
  """Builds an Optax optimizer by name; hyperparameters may be traced scalars.

  Args:
    name: one of ``OPTIMIZERS``.
    learning_rate: a scalar or an Optax schedule ``count -> lr``.
    **hparams: overrides of ``optimizer_hparams(name)``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> @jax.vmap
    ... def one_step(lr, momentum):
    ...   opt = make_optimizer("momentum", lr, momentum=momentum)
    ...   params = jnp.ones(3)
    ...   updates, _ = opt.update(params, opt.init(params), params)
    ...   return updates
    >>> one_step(jnp.array([0.1, 1.0]), jnp.array([0.9, 0.0])).shape
    (2, 3)
  """
  check_optimizer(name)
  factory, defaults = OPTIMIZERS[name]
  unknown = sorted(set(hparams) - set(defaults))
  if unknown:
    raise ConfigError(f"optimizer_kwargs/grid: {unknown} are not hyperparameters of "
                      f"'{name}'; it takes {sorted(defaults) or 'only the learning rate'}.")
  hparams = {**defaults, **hparams}
  if any(callable(v) for v in hparams.values()):  # e.g. a cycled momentum: count -> value
    return optax.inject_hyperparams(factory)(learning_rate, **hparams)
  return factory(learning_rate, **hparams)


def momentum_name(optimizer: str) -> str | None:
  """The hyperparameter torch's ``cycle_momentum`` cycles: momentum, or Adam's b1.

  Example:
    >>> momentum_name("adam"), momentum_name("nesterov"), momentum_name("sgd")
    ('b1', 'momentum', None)
  """
  names = optimizer_hparams(optimizer)
  return "b1" if "b1" in names else ("momentum" if "momentum" in names else None)
