"""Experiment config files and their ``--config.KEY=VALUE`` overrides -> a checked config.

A config file is a Python file with ``get_config(arg)`` (``file.py[:arg]``), as in
Flax's examples and big_vision; overrides are parsed by absl/ml_collections
``config_flags``. Every problem becomes one ``ConfigError`` paragraph naming the
key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys

import ml_collections
from absl import flags
from ml_collections import config_flags

from lrjax import models, optimizers
from lrjax.analysis import analysis_settings
from lrjax.errors import ConfigError
from lrjax.optimizers import OPTIMIZERS

EXAMPLE_CONFIG = "experiments/lr_batch_aug.py"

# Config fields whose keys are open: a command-line override may add a key to them
# (a new grid axis, a new model/optimizer/schedule argument). Other keys must exist.
OPEN_FIELDS = ("grid", "model_kwargs", "optimizer_kwargs", "schedule_kwargs")


def one_line(text: str) -> str:
  """An exception's message as one line (no newlines, no doubled spaces)."""
  return " ".join(str(text).split())


def _exception_text(e: BaseException) -> str:
  """An exception's own message, without the quoting KeyError adds."""
  if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
    return one_line(e.args[0])
  return one_line(e)


def _load_get_config(spec: str):
  """Calls ``get_config([arg])`` of the file named by ``file.py[:arg]``; returns the config."""
  path, _, arg = spec.partition(":")
  arg = arg if ":" in spec else None
  if os.path.isdir(path):
    raise ConfigError(f"CONFIG_FILE: {path} is a directory; give an experiment file, e.g. "
                      f"{EXAMPLE_CONFIG}.")
  if not os.path.isfile(path):
    raise ConfigError(f"CONFIG_FILE: {path} does not exist. Give an experiment file, e.g. "
                      f"{EXAMPLE_CONFIG}.")
  name = "lrjax_config_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
  loader = importlib.machinery.SourceFileLoader(name, path)
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
  try:
    loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f"CONFIG_FILE: {path} is not a Python config file ({e.msg}, line "
                      f"{e.lineno}); give an experiment file, e.g. {EXAMPLE_CONFIG}."
                      ) from None
  except ValueError as e:  # e.g. null bytes: a binary file
    raise ConfigError(f"CONFIG_FILE: {path} is not a Python config file ("
                      f"{_exception_text(e)}).") from None
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"CONFIG_FILE: importing {path} failed: {type(e).__name__}: "
                      f"{_exception_text(e)}.") from None
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ConfigError(f"CONFIG_FILE: {path} defines no get_config(); an experiment file "
                      f"returns its config from get_config(), see {EXAMPLE_CONFIG}.")
  if arg is not None:
    try:
      inspect.signature(get_config).bind(arg)
    except TypeError:
      raise ConfigError(f"CONFIG_FILE: get_config() in {path} takes no argument; drop "
                        f"':{arg}'.") from None
    except ValueError:  # no signature: let the call decide
      pass
  try:
    config = get_config(arg) if arg is not None else get_config()
  except (ConfigError, ValueError) as e:
    raise ConfigError(f"CONFIG_FILE: {path}: {_exception_text(e)}") from None
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"CONFIG_FILE: get_config() in {path} failed: {type(e).__name__}: "
                      f"{_exception_text(e)}.") from None
  if isinstance(config, dict):
    config = ml_collections.ConfigDict(config)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"CONFIG_FILE: get_config() in {path} returned "
                      f"{type(config).__name__}, not an ml_collections.ConfigDict; start "
                      f"from lrjax.experiment.default_config().")
  return config


def _normalize_overrides(overrides: list[str]) -> list[str]:
  """``--config.KEY VALUE`` pairs joined into ``--config.KEY=VALUE``; anything else refused."""
  out, i = [], 0
  while i < len(overrides):
    o = overrides[i]
    if not o.startswith("--config."):
      raise ConfigError(f"{o}: not an option of this command. Overrides look like "
                        f"--config.grid.lr=\"(0.01,0.1)\"; see --help.")
    if ("=" not in o and i + 1 < len(overrides)
        and not overrides[i + 1].startswith("--config.")):
      o, i = f"{o}={overrides[i + 1]}", i + 1
    out.append(o)
    i += 1
  return out


def _override_key(override: str) -> str:
  """``--config.KEY=VALUE`` -> ``KEY``."""
  return override.split("=", 1)[0][len("--config."):]


def _last_wins(overrides: list[str]) -> list[str]:
  """Each key's last ``--config.KEY=VALUE`` only, as absl treats a repeated flag.

  config_flags parses a tuple-valued key given twice as one multi-valued flag and
  appends the values (``--config.grid.seed="(0,)" --config.grid.seed="(1,2)"`` would
  be ``(0, 1, 2)``); dropping the earlier occurrences makes every key last-wins.

  Example:
    >>> _last_wins(["--config.grid.seed=(0,)", "--config.epochs=2",
    ...             "--config.grid.seed=(1,2)"])
    ['--config.epochs=2', '--config.grid.seed=(1,2)']
  """
  keys = [_override_key(o) for o in overrides]
  last = {k: i for i, k in enumerate(keys)}
  return [o for i, o in enumerate(overrides) if last[keys[i]] == i]


def _check_override_path(config, key: str) -> None:
  """Refuses ``--config.KEY`` unless KEY exists or is a new key of an open field."""
  parts = key.split(".")
  node = config
  for i, part in enumerate(parts):
    here = ".".join(parts[:i])
    if not isinstance(node, ml_collections.ConfigDict):
      raise ConfigError(f"--config.{key}: {here} is a single value, not a group of keys; "
                        f"set it with --config.{here}=VALUE.")
    if part in node:
      node = node[part]
      continue
    if parts[0] in OPEN_FIELDS and i == len(parts) - 1 and i >= 1:
      return  # a new grid axis or *_kwargs key
    if i >= 1 and parts[0] in OPEN_FIELDS:
      inner = ".".join(parts[i + 1:])
      raise ConfigError(f"--config.{key}: {here}.{part} does not exist yet; give it as a "
                        f"dict: --config.{here}.{part}=\"{{'{inner}': VALUE}}\".")
    close = difflib.get_close_matches(part, [str(k) for k in node.keys()], n=1)
    where = f" in {here}" if here else ""
    hint = (f"did you mean {'.'.join([*parts[:i], close[0]])}?" if close else
            "the fields are those of lrjax.experiment.DEFAULTS (the README's config table).")
    raise ConfigError(f"--config.{key}: no such config key{where}; {hint}")


def _get_path(config, key: str):
  """The config's value at a dotted key, or None where it does not exist yet."""
  node = config
  for part in key.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return None
    node = node[part]
  return node


def _flag_error_message(message: str, overrides: list[str], before: dict) -> str:
  """absl's ``flag --config.KEY=VALUE: why`` as ``--config.KEY: why`` and the fix."""
  for o in overrides:
    if message.startswith(f"flag {o}: "):
      flag, _, value = o.partition("=")
      why = message[len(f"flag {o}: "):].rstrip(".")
      old = before.get(flag[len("--config."):])
      if isinstance(old, ml_collections.ConfigDict):
        return (f"{flag}: {value} is not a dict; write e.g. {flag}=\"{{'name': 1.0}}\" "
                f"(\"{{}}\" for none).")
      if isinstance(old, (tuple, list)):
        return f"{flag}: {why}. Sequences are tuples: {flag}=\"(v1,v2)\"."
      if isinstance(old, bool):
        return f"{flag}: {value} is neither true nor false; write {flag}=true or =false."
      return f"{flag}: {why}."
  return message


def _known_optimizer(name) -> bool:
  try:
    optimizers.check_optimizer(name)
  except ConfigError:
    return False
  return True


def _hparam_names(name) -> list[str]:
  return sorted(optimizers.optimizer_hparams(name)) + list(optimizers.required_hparams(name))


def _reconcile_optimizer_kwargs(config, overridden: set[str], file_optimizer, prog: str
                                ) -> None:
  """``optimizer_kwargs`` after ``--config.optimizer`` changed the optimizer.

  Overriding only the optimizer drops the file's ``optimizer_kwargs`` the new one does
  not take (a note on stderr says which); overriding ``optimizer_kwargs`` too keeps a
  mismatch an error that says what to pass.
  """
  kwargs_overridden = any(k == "optimizer_kwargs" or k.startswith("optimizer_kwargs.")
                          for k in overridden)
  if "optimizer" not in overridden and not kwargs_overridden:
    return
  name = config.get("optimizer")
  kwargs = config.get("optimizer_kwargs")
  grid = config.get("grid")
  if (not _known_optimizer(name) or not isinstance(kwargs, ml_collections.ConfigDict)
      or (isinstance(grid, ml_collections.ConfigDict) and "optimizer" in grid)):
    return  # an unknown optimizer or a grid.optimizer axis: resolve() checks those
  takes = [k for k in kwargs.keys() if optimizers.accepts_hparam(name, k)]
  extra = sorted(k for k in kwargs.keys() if k not in takes)
  if not extra:
    return
  kept = {k: v for k, v in kwargs.to_dict().items() if k in takes}
  if kwargs_overridden:
    raise ConfigError(
        f"optimizer_kwargs: {extra} are not hyperparameters of '{name}' (it takes "
        f"{_hparam_names(name) or 'only the learning rate'}). Replace the whole dict: "
        f"--config.optimizer_kwargs=\"{kept!r}\".")
  if file_optimizer in OPTIMIZERS and set(extra) <= set(OPTIMIZERS[file_optimizer][1]):
    why = f"belong to '{file_optimizer}', not '{name}'"
  else:
    why = f"are not hyperparameters of '{name}'"
  print(f"{prog}: note: optimizer_kwargs {extra} {why}; dropped.", file=sys.stderr)
  config.optimizer_kwargs = ml_collections.ConfigDict(kept)


def _model_fields(name) -> list[str] | None:
  """The fields a built-in model takes in ``model_kwargs`` (None: not a built-in)."""
  cls = models.BUILTIN_MODELS.get(name) if isinstance(name, str) else None
  if cls is None:
    return None
  return [f.name for f in dataclasses.fields(cls)
          if f.name not in ("parent", "name", "num_classes")]


def _reconcile_model_kwargs(config, overridden: set[str], file_model, prog: str) -> None:
  """``model_kwargs`` after ``--config.model`` changed the model: the file's fields the
  new model does not have are dropped, with a note (``hidden`` of the MLP is no field
  of the CNN). Overriding ``model_kwargs`` too keeps a mismatch the model's error."""
  if "model" not in overridden or any(k == "model_kwargs" or k.startswith("model_kwargs.")
                                      for k in overridden):
    return
  fields, kwargs = _model_fields(config.get("model")), config.get("model_kwargs")
  if fields is None or not isinstance(kwargs, ml_collections.ConfigDict):
    return
  extra = sorted(k for k in kwargs.keys() if k not in fields)
  if not extra:
    return
  owner = (f"belong to '{file_model}', not '{config.model}'"
           if set(extra) <= set(_model_fields(file_model) or ())
           else f"are not fields of '{config.model}'")
  print(f"{prog}: note: model_kwargs {extra} {owner} (it takes {fields}); dropped.",
        file=sys.stderr)
  config.model_kwargs = ml_collections.ConfigDict(
      {k: v for k, v in kwargs.to_dict().items() if k in fields})


def _grid_axes(config) -> dict:
  """The config's grid as axis -> values (one value as a 1-tuple)."""
  grid = config.get("grid")
  if not isinstance(grid, ml_collections.ConfigDict):
    return {}
  return {k: tuple(v) if isinstance(v, (tuple, list)) else (v,) for k, v in grid.items()}


def _reconcile_questions(config, keys: set[str], file_grid: dict, prog: str) -> None:
  """Drops the file's primary questions that grid overrides left unanswerable, with a
  note (``--config.grid.aug="(0.0,)"`` on an experiment that asks ``aug_effect``).

  Questions the file's own grid cannot ask, and questions given on the command line,
  are left for `lrjax.analysis.analysis_settings.resolve_settings` to refuse.
  """
  analysis = config.get("analysis")
  questions = analysis.get("questions") if isinstance(analysis, ml_collections.ConfigDict) \
      else None
  if (not isinstance(questions, (tuple, list)) or not any(k.startswith("grid.") for k in keys)
      or any(k == "analysis" or k.startswith("analysis.questions") for k in keys)):
    return
  grid = _grid_axes(config)
  lost = [q for q in analysis_settings.unanswerable(questions, grid)
          if q not in analysis_settings.unanswerable(questions, file_grid)]
  if not lost:
    return
  why = "; ".join(f"{q!r} needs {k}+ values on grid.{axis}, which now has "
                  f"{list(grid.get(axis, ()))}" for q, (axis, k) in
                  ((q, analysis_settings.question_need(q)) for q in lost))
  kept = tuple(q for q in questions if q not in lost)
  print(f"{prog}: note: analysis.questions: {why}; dropped"
        + ("" if kept else " (no primary question left: every finding is exploratory)")
        + ".", file=sys.stderr)
  with config.analysis.ignore_type():
    config.analysis.questions = kept


def load_config(spec: str, overrides: list[str], prog: str = "lrjax"):
  """Loads ``file.py[:arg]`` and applies ``--config.KEY=VALUE`` overrides.

  The file's ``get_config([arg])`` builds the config; the overrides are parsed by
  ml_collections ``config_flags``. Unknown keys are refused, except new keys under
  ``grid``, ``model_kwargs``, ``optimizer_kwargs`` and ``schedule_kwargs``. When
  ``--config.optimizer`` is overridden but ``optimizer_kwargs`` is not, the file's
  ``optimizer_kwargs`` the new optimizer does not take are dropped (with a note), and
  so are the file's ``analysis.questions`` that grid overrides leave without the
  values they compare. A key given twice takes its last value, as with absl flags;
  a grid axis given one value is a one-value axis (``--config.grid.lr=0.1`` is
  ``(0.1,)``).

  Raises:
    ConfigError: naming the file or the override and the fix.

  Example:
    >>> c = load_config("experiments/lr_batch_aug.py:runlocal",
    ...                 ["--config.epochs=1", "--config.grid.momentum=(0.5,0.9)"])
    >>> c.epochs, c.grid.momentum
    (1.0, (0.5, 0.9))
  """
  return apply_overrides(_load_get_config(spec), overrides, prog)


def apply_overrides(config, overrides: list[str], prog: str = "lrjax",
                    reconcile: bool = True):
  """``--config.KEY=VALUE`` overrides applied to a config (``load_config`` without the
  file): the same parsing and checks, and with ``reconcile`` the same reconciliations
  (``lrjax extend`` adds the values it is given to the run's, so it needs none).

  Example:
    >>> c = ml_collections.ConfigDict({"epochs": 1.0, "grid": {"lr": (0.1,)}})
    >>> apply_overrides(c, ["--config.grid.lr=(0.3,1.0)"]).grid.lr
    (0.3, 1.0)
  """
  file_optimizer, file_model = config.get("optimizer"), config.get("model")
  file_grid = _grid_axes(config)
  overrides = _last_wins(_normalize_overrides(overrides))
  keys = [_override_key(o) for o in overrides]
  for key in keys:
    _check_override_path(config, key)
  axis_keys = [k for k in keys if k.startswith("grid.") and k.count(".") == 1]
  for key in axis_keys:  # an axis the file gives as a list or one value: a tuple, so
    value = config.grid.get(key[5:])  # that config_flags parses the override as one
    if value is not None and not isinstance(value, (tuple, ml_collections.ConfigDict)):
      with config.grid.unlocked():  # deleted first: a list field would keep a list
        del config.grid[key[5:]]
        config.grid[key[5:]] = tuple(value) if isinstance(value, list) else (value,)
  before = {k: _get_path(config, k) for k in keys}
  argv = ["lrjax", *overrides]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_dict("config", config, flag_values=fv, lock_config=False,
                                  accept_new_attributes=True, sys_argv=argv)
  try:
    fv(argv)
  except flags.Error as e:
    raise ConfigError(_flag_error_message(one_line(e), overrides, before)) from None
  except (TypeError, ValueError, KeyError, AttributeError) as e:
    raise ConfigError(f"--config: {_exception_text(e)}") from None
  config = fv.config
  for key in axis_keys:  # an axis given one value: a one-value axis
    axis = key[5:]
    if not isinstance(config.grid[axis], (tuple, list)):
      with config.grid.ignore_type():
        config.grid[axis] = (config.grid[axis],)
  if reconcile:
    _reconcile_model_kwargs(config, set(keys), file_model, prog)
    _reconcile_optimizer_kwargs(config, set(keys), file_optimizer, prog)
    _reconcile_questions(config, set(keys), file_grid, prog)
  return config


