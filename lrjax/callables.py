"""User functions in settings and configs: ``"package.module:function"`` strings, labels.

A setting that takes a function (an optimizer factory, a schedule, a loss) takes it as the
function itself in Python, or, in config files and on the command line, as the
string ``"package.module:function"`` naming it (the ``entry_points`` convention).
:func:`import_callable` imports such a string; :func:`label` gives any of them the readable
name that tables, summaries and ``config.json`` store.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from typing import Any, Callable

from lrjax.errors import ConfigError


def is_import_path(value: Any) -> bool:
  """Whether ``value`` is a ``"package.module:function"`` string.

  Example:
    >>> is_import_path("optax:adamw"), is_import_path("adamw"), is_import_path(len)
    (True, False, False)
  """
  return isinstance(value, str) and ":" in value


def import_callable(field: str, reference: str, expects: str = "a function") -> Callable:
  """Imports the callable a ``"package.module:function"`` string names.

  ``function`` may be dotted (``"pkg.mod:Class.method"``). Modules are found on the
  Python path and, last, in the current directory.

  Args:
    field: the setting, named in errors (e.g. ``"optimizer"``).
    reference: ``"package.module:function"``.
    expects: what the function should be, for the error message.

  Raises:
    ConfigError: the module does not import, lacks the attribute, or it is not callable.

  Example:
    >>> import optax
    >>> import_callable("optimizer", "optax:adamw") is optax.adamw
    True
    >>> import_callable("optimizer", "optax:nope", "an optimizer factory")
    Traceback (most recent call last):
    ...
    lrjax.errors.ConfigError: optimizer: module 'optax' has no attribute 'nope' \
('optax:nope'); name an existing function, "package.module:function", that is an \
optimizer factory.
  """
  module_name, _, attr = reference.partition(":")
  fix = f'name an existing function, "package.module:function", that is {expects}.'
  if not module_name or not attr:
    raise ConfigError(f"{field}: '{reference}' is not \"package.module:function\"; {fix}")
  # The directory the command runs from is searched last, as ``python -m`` does (a
  # console script such as ``lrjax`` does not put it on the path).
  if os.getcwd() not in sys.path and "" not in sys.path:
    sys.path.append(os.getcwd())
  try:
    obj = importlib.import_module(module_name)
  except ImportError as e:
    raise ConfigError(f"{field}: cannot import module '{module_name}' of '{reference}' "
                      f"({type(e).__name__}: {e}); check it is on the Python path (an "
                      f"installed package, or run from the directory holding it); "
                      f"{fix}") from None
  for part in attr.split("."):
    if not hasattr(obj, part):
      raise ConfigError(f"{field}: module '{module_name}' has no attribute '{attr}' "
                        f"('{reference}'); {fix}")
    obj = getattr(obj, part)
  if not callable(obj):
    raise ConfigError(f"{field}: '{reference}' is a {type(obj).__name__}, not a function; "
                      f"{fix}")
  return obj


def parameters(field: str, fn: Callable, reference: Any, wrap_as: str) -> list:
  """``fn``'s parameters (``inspect.Parameter``); a ConfigError naming ``field`` when
  they cannot be read (some builtins), suggesting a def of the form ``wrap_as``.

  Example:
    >>> [p.name for p in parameters("schedule", lambda step, lr: lr, "f", "(step, lr)")]
    ['step', 'lr']
  """
  try:
    return list(inspect.signature(fn).parameters.values())
  except (TypeError, ValueError):
    raise ConfigError(f"{field}: cannot read the arguments of {label(reference)}; "
                      f"wrap it in a def {wrap_as}.") from None


def keyword_hparams(params: list) -> tuple[dict[str, Any], tuple[str, ...], bool]:
  """A function's hyperparameters from its keyword parameters: ``(defaults, required,
  any_keyword)``, the last True when it takes ``**kwargs``.

  Example:
    >>> def f(lr, momentum, eps=1e-8, **rest): ...
    >>> keyword_hparams(parameters("optimizer", f, f, "")[1:])
    ({'eps': 1e-08}, ('momentum',), True)
  """
  defaults, required, any_keyword = {}, [], False
  for p in params:
    if p.kind == inspect.Parameter.VAR_KEYWORD:
      any_keyword = True
    elif p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
      if p.default is inspect.Parameter.empty:
        required.append(p.name)
      else:
        defaults[p.name] = p.default
  return defaults, tuple(required), any_keyword


def label(value: Any) -> str:
  """A readable name of a setting that may be a function.

  Strings (catalog names, ``"package.module:function"``) are their own label; a
  function is ``module:qualname`` (its ``__name__`` when it has no module).

  Example:
    >>> label("adam"), label("optax:adamw"), label(is_import_path)
    ('adam', 'optax:adamw', 'lrjax.callables:is_import_path')
  """
  if isinstance(value, str):
    return value
  if isinstance(value, functools.partial):
    return f"partial({label(value.func)})"
  name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
  if name is None:
    return type(value).__name__
  module = getattr(value, "__module__", None)
  return f"{module}:{name}" if module else name


def json_default(value: Any) -> str:
  """``json.dump``'s ``default``: functions as their :func:`label`.

  Example:
    >>> import json
    >>> json.dumps({"optimizer": is_import_path}, default=json_default)
    '{"optimizer": "lrjax.callables:is_import_path"}'
  """
  if callable(value):
    return label(value)
  raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
