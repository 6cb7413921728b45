"""The ``lrjax`` command line: ``run``, ``find``, ``report``, ``prepare``, ``augment-preview``,
``bench``. The one command-line layer: everything else is a library function.

Commands, their options and ``--help`` are argparse's; the ``--config.KEY=VALUE``
overrides that ``run`` and ``find`` pass through are parsed by absl/ml_collections
``config_flags`` (the syntax ml_collections users know: tuples, nested keys, dicts).

Bad input exits with status 2 and a one-paragraph message (no traceback).
"""

from __future__ import annotations

import argparse
import difflib
import importlib.machinery
import importlib.util
import inspect
import json
import os
import re
import runpy
import shlex
import sys
import textwrap

import ml_collections
from absl import flags
from ml_collections import config_flags

from lrjax import data, experiment
from lrjax.analysis import report
from lrjax.analysis import summary as summary_lib
from lrjax.augment import preview
from lrjax.engine import checkpoint, devices
from lrjax.errors import ConfigError
from lrjax.optimizers import OPTIMIZERS

EXAMPLE_CONFIG = "experiments/lr_batch_aug.py"

# Config fields whose keys are open: a command-line override may add a key to them
# (a new grid axis, a new model/optimizer/schedule argument). Other keys must exist.
OPEN_FIELDS = ("grid", "model_kwargs", "optimizer_kwargs", "schedule_kwargs")

OVERRIDES_HELP = """\
config overrides (after CONFIG_FILE; quote values for the shell):
  --config.epochs=5                     numbers and names as they are
  --config.grid.lr="(0.01,0.1,1.0)"     sequences are tuples; one: "(0.1,)"
  --config.grid.momentum="(0.5,0.9)"    nested keys with dots; new axes too
  --config.optimizer_kwargs.b2=0.99     one key of a dict-valued field, or
  --config.optimizer_kwargs="{'b2': 0.99}"   the whole dict ("{}" empties it)
  --config.model_kwargs="{'hidden': (64, 64)}"
  New keys are accepted under grid, model_kwargs, optimizer_kwargs and
  schedule_kwargs; other unknown keys are refused (README: config fields).
  --config.optimizer alone drops the file's optimizer_kwargs the new optimizer
  does not take (with a note); override both to choose them yourself.
  CONFIG_FILE:ARG passes ARG to the file's get_config(ARG), e.g.
  experiments/lr_batch_aug.py:runlocal, a seconds-long smoke-test version.
"""

RUN_EXAMPLES = """
examples:
  lrjax run experiments/lr_batch_aug.py:runlocal --workdir runs/tiny
  lrjax run experiments/lr_batch_aug.py --workdir runs/mine \\
      --config.optimizer=adam --config.grid.lr="(0.0003,0.001,0.003)"
  lrjax run experiments/lr_batch_aug.py --workdir runs/mine --resume
"""

COMMANDS_HELP = """\
commands:
  run              train an experiment's grid into a run directory
  find             learning-rate range test; suggests grid.lr
  report           redraw figures, summary.json and report.html of a run
  augment-preview  PNG of images at several augmentation strengths
  prepare          build a TFDS dataset as array_record
  bench            benchmark lrjax against the alternatives (source checkout)

`lrjax COMMAND --help` shows a command's options; `run` and `find` also
take --config.KEY=VALUE overrides of the experiment's config.

quick start:
  lrjax run experiments/lr_batch_aug.py:runlocal --workdir runs/tiny
  lrjax report runs/tiny
"""

FIND_EXAMPLES = """
examples:
  lrjax find experiments/lr_batch_aug.py:runlocal --workdir runs/find
  lrjax find experiments/lr_batch_aug.py --workdir runs/find \\
      --config.optimizer=adam
"""


def _one_line(text: str) -> str:
  """An exception's message as one line (no newlines, no doubled spaces)."""
  return " ".join(str(text).split())


def _exception_text(e: BaseException) -> str:
  """An exception's own message, without the quoting KeyError adds."""
  if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
    return _one_line(e.args[0])
  return _one_line(e)


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
  if (name not in OPTIMIZERS or not isinstance(kwargs, ml_collections.ConfigDict)
      or (isinstance(grid, ml_collections.ConfigDict) and "optimizer" in grid)):
    return  # an unknown optimizer or a grid.optimizer axis: resolve() checks those
  takes = OPTIMIZERS[name][1]
  extra = sorted(k for k in kwargs.keys() if k not in takes)
  if not extra:
    return
  kept = {k: v for k, v in kwargs.to_dict().items() if k in takes}
  if kwargs_overridden:
    raise ConfigError(
        f"optimizer_kwargs: {extra} are not hyperparameters of '{name}' (it takes "
        f"{sorted(takes) or 'only the learning rate'}). Replace the whole dict: "
        f"--config.optimizer_kwargs=\"{kept!r}\".")
  if file_optimizer in OPTIMIZERS and set(extra) <= set(OPTIMIZERS[file_optimizer][1]):
    why = f"belong to '{file_optimizer}', not '{name}'"
  else:
    why = f"are not hyperparameters of '{name}'"
  print(f"{prog}: note: optimizer_kwargs {extra} {why}; dropped.", file=sys.stderr)
  config.optimizer_kwargs = ml_collections.ConfigDict(kept)


def load_config(spec: str, overrides: list[str], prog: str = "lrjax"):
  """Loads ``file.py[:arg]`` and applies ``--config.KEY=VALUE`` overrides.

  The file's ``get_config([arg])`` builds the config; the overrides are parsed by
  ml_collections ``config_flags``. Unknown keys are refused, except new keys under
  ``grid``, ``model_kwargs``, ``optimizer_kwargs`` and ``schedule_kwargs``. When
  ``--config.optimizer`` is overridden but ``optimizer_kwargs`` is not, the file's
  ``optimizer_kwargs`` the new optimizer does not take are dropped (with a note).

  Raises:
    ConfigError: naming the file or the override and the fix.

  Example:
    >>> c = load_config("experiments/lr_batch_aug.py:runlocal",
    ...                 ["--config.epochs=1", "--config.grid.momentum=(0.5,0.9)"])
    >>> c.epochs, c.grid.momentum
    (1.0, (0.5, 0.9))
  """
  config = _load_get_config(spec)
  file_optimizer = config.get("optimizer")
  overrides = _normalize_overrides(overrides)
  keys = [o.split("=", 1)[0][len("--config."):] for o in overrides]
  for key in keys:
    _check_override_path(config, key)
  new_axes = {k for k in keys if k.startswith("grid.") and k[5:] not in config.grid}
  before = {k: _get_path(config, k) for k in keys}
  argv = ["lrjax", *overrides]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_dict("config", config, flag_values=fv, lock_config=False,
                                  accept_new_attributes=True, sys_argv=argv)
  try:
    fv(argv)
  except flags.Error as e:
    raise ConfigError(_flag_error_message(_one_line(e), overrides, before)) from None
  except (TypeError, ValueError, KeyError, AttributeError) as e:
    raise ConfigError(f"--config: {_exception_text(e)}") from None
  config = fv.config
  for key in new_axes:  # a new axis given one value: a one-value axis
    axis = key[5:]
    if not isinstance(config.grid[axis], (tuple, list)):
      with config.grid.ignore_type():
        config.grid[axis] = (config.grid[axis],)
  _reconcile_optimizer_kwargs(config, set(keys), file_optimizer, prog)
  return config


def _run(args, overrides) -> int:
  config = load_config(args.config, overrides, prog="lrjax run")
  experiment.train_and_evaluate(config, args.workdir, overwrite=args.overwrite,
                                progress=not args.no_progress, resume=args.resume)
  workdir = os.path.abspath(args.workdir)
  print(f"\nResults in {workdir}:\n"
        f"  report:   {os.path.join(workdir, 'report.html')}\n"
        f"  figures:  {os.path.join(workdir, '*.png')}\n"
        f"  tables:   members.parquet/.csv, history.parquet, summary.json")
  return 0


def _report(args, overrides) -> int:
  del overrides
  if not os.path.isdir(args.run_dir):
    raise ConfigError(f"RUN_DIR: {args.run_dir} is not a directory; give a run directory "
                      f"written by `lrjax run`.")
  try:
    paths = report.write_report(args.run_dir, metric=args.metric)
  except ConfigError as e:
    message = str(e)
    raise ConfigError(f"--{message}" if message.startswith("metric ") else message) from None
  for path in paths:
    print(path)
  return 0


def _augment_preview(args, overrides) -> int:
  del overrides
  try:
    strengths = [float(s) for s in args.strengths.split(",")]
  except ValueError:
    raise ConfigError(f"--strengths: comma-separated numbers, e.g. 0,0.5,1,2; got "
                      f"{args.strengths!r}.") from None
  if any(s < 0 for s in strengths):
    raise ConfigError(f"--strengths: must be >= 0; got {strengths}.")
  out = args.out or f"augment_preview_{args.dataset}.png"
  print(preview.write_preview(args.dataset, strengths, out, data_dir=args.data_dir))
  return 0


def _prepare(args, overrides) -> int:
  del overrides
  data.prepare(args.name, args.data_dir)
  print(f"prepared {args.name} in {args.data_dir or data.default_data_dir()}")
  return 0


# The benchmark harness lives beside the package in a source checkout, not in the wheel.
BENCH_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "benchmarks", "bench.py")


def _bench(args, overrides) -> int:
  del args
  if not os.path.isfile(BENCH_SCRIPT):
    raise ConfigError(f"bench: {BENCH_SCRIPT} not found; the benchmarks ship with the "
                      f"source checkout (git clone), not the installed package.")
  sys.argv = [BENCH_SCRIPT, *overrides]
  try:
    runpy.run_path(BENCH_SCRIPT, run_name="__main__")
  except SystemExit as e:
    return int(e.code or 0)
  return 0


def _find(args, overrides) -> int:
  config = load_config(args.config, overrides, prog="lrjax find")
  summary = experiment.find_lr(config, args.workdir, overwrite=args.overwrite)
  print(json.dumps(summary, indent=2))
  for s in summary["per_batch_size"]:
    print(f"batch {s['batch_size']}: best LR {s['vectorised_best_lr']:.3g} "
          f"(range test valley {s['range_test']['valley']:.3g})")
  grid_lrs = summary["suggested_grid_lr"]
  # The user's overrides stay, except the LR axis the suggestion replaces.
  kept = [o for o in overrides if not o.startswith("--config.grid.lr")]
  quoted = " ".join(shlex.quote(o) for o in kept)
  print(f"\nNext: lrjax run {shlex.quote(args.config)} --workdir runs/NAME "
        f"{quoted + ' ' if quoted else ''}"
        f"--config.grid.lr=\"({','.join(f'{v:g}' for v in grid_lrs)})\"")
  return 0


def _formatter(prog: str) -> argparse.HelpFormatter:
  """Option help on the option's line; descriptions and epilogs kept as written."""
  return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
  """The ``lrjax`` argument parser: one subcommand per library entry point.

  ``run`` and ``find`` take ``--config.KEY=VALUE`` overrides besides their options;
  ``main`` hands those to ``load_config``.

  Example:
    >>> sorted(build_parser().parse_args(["report", "runs/x"]).__dict__)
    ['command', 'func', 'metric', 'run_dir']
  """
  parser = argparse.ArgumentParser(
      prog="lrjax", formatter_class=_formatter,
      description="Train whole grids of learning rate x batch size x augmentation as\n"
                  "one vmapped JAX program.",
      epilog=COMMANDS_HELP)
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                              help="one of the commands below")

  run = sub.add_parser(
      "run",
      formatter_class=_formatter,
      usage="%(prog)s [options] CONFIG_FILE[:ARG] [--config.KEY=VALUE ...]",
      description="Train an experiment's grid (one vmapped program) and write the run "
                  "directory:\ntables, figures, summary.json and report.html.",
      epilog=OVERRIDES_HELP + RUN_EXAMPLES)
  run.add_argument("config", metavar="CONFIG_FILE[:ARG]",
                   help="experiment file [: argument of its get_config]")
  run.add_argument("--workdir", metavar="DIR", required=True,
                   help="the run directory to write (required)")
  run.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty DIR")
  run.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from DIR.partial")
  run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  run.set_defaults(func=_run)

  find = sub.add_parser(
      "find",
      formatter_class=_formatter,
      usage="%(prog)s [options] CONFIG_FILE[:ARG] [--config.KEY=VALUE ...]",
      description="LR range test (and its vectorised variant) for an experiment's model, "
                  "data and\noptimizer; writes lr_find.png/.json/.csv and suggests grid.lr.",
      epilog=OVERRIDES_HELP + FIND_EXAMPLES)
  find.add_argument("config", metavar="CONFIG_FILE[:ARG]",
                    help="experiment file [: argument of its get_config]")
  find.add_argument("--workdir", metavar="DIR", required=True,
                    help="the directory to write (required)")
  find.add_argument("--overwrite", action="store_true",
                    help="replace an existing non-empty DIR")
  find.set_defaults(func=_find)

  rep = sub.add_parser(
      "report",
      formatter_class=_formatter,
      description="Regenerate the figures, summary.json and report.html of a run\n"
                  "directory from its tables.",
      epilog="example:\n  lrjax report runs/tiny --metric final_val_acc")
  rep.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `lrjax run`")
  rep.add_argument("--metric", metavar="NAME", default=summary_lib.DEFAULT_METRIC,
                   help=f"members column that ranks LRs (default "
                        f"{summary_lib.DEFAULT_METRIC})")
  rep.set_defaults(func=_report)

  prev = sub.add_parser(
      "augment-preview",
      formatter_class=_formatter,
      description="Write a PNG of a dataset's images augmented at several strengths.")
  prev.add_argument("--dataset", metavar="NAME", default="digits",
                    help="dataset name (default digits)")
  prev.add_argument("--strengths", metavar="LIST", default="0,0.5,1,1.5,2",
                    help="comma-separated strengths (default 0,0.5,1,1.5,2)")
  prev.add_argument("--out", metavar="PATH", default="",
                    help="PNG path (default augment_preview_NAME.png)")
  prev.add_argument("--data_dir", metavar="DIR", default=None,
                    help="TFDS data directory")
  prev.set_defaults(func=_augment_preview)

  prep = sub.add_parser(
      "prepare",
      formatter_class=_formatter,
      description="Build a TFDS dataset as array_record (catalog datasets need TensorFlow "
                  "and a\nnetwork connection once; digits and mnist1d are built in).")
  prep.add_argument("name", metavar="NAME", help="TFDS catalog name, e.g. mnist")
  prep.add_argument("--data_dir", metavar="DIR", default=None,
                    help="TFDS data directory (default $TFDS_DATA_DIR)")
  prep.set_defaults(func=_prepare)

  # bench parses its own options (and --help): benchmarks/bench.py in a source checkout.
  bench = sub.add_parser("bench", add_help=False)
  bench.set_defaults(func=_bench)
  return parser


def main(argv: list[str] | None = None) -> int:
  """Entry point of the ``lrjax`` command."""
  argv = sys.argv[1:] if argv is None else argv
  parser = build_parser()
  args, rest = parser.parse_known_args(argv)
  if rest and args.command not in ("run", "find", "bench"):
    parser.error(f"unrecognized arguments: {' '.join(rest)}")
  try:
    if args.command in ("run", "find", "bench"):  # before any JAX computation
      devices.use_cpu_cores()
    return args.func(args, rest)
  except ConfigError as e:
    print(textwrap.fill(f"lrjax {args.command}: error: {_one_line(e)}", width=100,
                        break_on_hyphens=False, break_long_words=False), file=sys.stderr)
    return 2
  except checkpoint.Interrupted as e:  # SIGTERM / SIGINT: checkpoint saved at a segment end
    hint = "; resume with --resume" if args.command == "run" else ""
    print(f"lrjax {args.command}: {e}{hint}", file=sys.stderr)
    return e.exit_code
  except KeyboardInterrupt:
    print("lrjax: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
