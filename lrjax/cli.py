"""The ``lrjax`` command line: ``run``, ``find``, ``report``, ``prepare``, ``augment-preview``,
``bench``. The one command-line layer: everything else is a library function.

Bad input exits with status 2 and a one-paragraph message (no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import textwrap

from absl import flags
from ml_collections import config_flags

from lrjax import data, experiment
from lrjax.analysis import report
from lrjax.augment import preview
from lrjax.engine import devices
from lrjax.errors import ConfigError

USAGE = """\
lrjax run CONFIG_FILE[:ARG] --workdir DIR [--resume] [--overwrite] [--no-progress] [--config.KEY=VALUE ...]
lrjax report RUN_DIR
lrjax augment-preview --dataset NAME [--strengths 0,0.5,1,1.5,2] [--out PATH]
lrjax find CONFIG_FILE[:ARG] --workdir DIR [--overwrite] [--config.KEY=VALUE ...]
lrjax prepare NAME [--data_dir DIR]
lrjax bench [benchmarks/bench.py options]   (from a source checkout)"""


def load_config(spec: str, overrides: list[str]):
  """Loads ``file.py[:arg]`` with ml_collections and applies ``--config.x=v`` overrides.

  Example:
    >>> c = load_config("experiments/lr_batch_aug.py:runlocal", ["--config.epochs=1"])
    >>> c.epochs
    1.0
  """
  path = spec.split(":", 1)[0]
  if not os.path.isfile(path):
    raise ConfigError(f"CONFIG_FILE: {path} does not exist. Give an experiment file, e.g. "
                      f"experiments/lr_batch_aug.py.")
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    raise ConfigError(f"unknown options {bad}. Overrides look like --config.grid.lr=\"(0.01,0.1)\".")
  argv = ["lrjax", f"--config={spec}", *overrides]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", default=None, flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  try:
    fv(argv)
  except AttributeError as e:
    raise ConfigError(f"--config: no such config key {e}. Run `python -c \"import runpy; "
                      f"print(runpy.run_path('{path}')['get_config']())\"` to list the keys."
                      ) from None
  except flags.Error as e:
    raise ConfigError(f"--config: {e}. Sequences are tuples: "
                      f"--config.grid.lr=\"(0.01,0.1)\".") from None
  config = fv.config
  if config is None or type(config).__name__ == "_ErrorConfig":
    raise ConfigError(f"CONFIG_FILE: could not load {spec}; it must define get_config().")
  return config


def _run(args, overrides) -> int:
  config = load_config(args.config, overrides)
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
  for path in report.write_report(args.run_dir):
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
  config = load_config(args.config, overrides)
  summary = experiment.find_lr(config, args.workdir, overwrite=args.overwrite)
  print(json.dumps(summary, indent=2))
  grid_lrs = summary["suggested_grid_lr"]
  print(f"\nNext: lrjax run {args.config} --workdir runs/NAME "
        f"--config.grid.lr=\"({','.join(f'{v:g}' for v in grid_lrs)})\"")
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="lrjax", usage=USAGE, description=(
      "Train whole grids of learning rate x batch size x augmentation as one vmapped "
      "JAX program."))
  sub = parser.add_subparsers(dest="command", required=True)
  run = sub.add_parser("run", help="train an experiment's grid into a run directory")
  run.add_argument("config", help="experiment file, e.g. experiments/lr_batch_aug.py[:runlocal]")
  run.add_argument("--workdir", required=True)
  run.add_argument("--overwrite", action="store_true", help="replace an existing workdir")
  run.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from WORKDIR.partial")
  run.add_argument("--no-progress", action="store_true")
  run.set_defaults(func=_run)
  rep = sub.add_parser("report", help="regenerate figures, summary and report from tables")
  rep.add_argument("run_dir")
  rep.set_defaults(func=_report)
  prev = sub.add_parser("augment-preview", help="PNG of images at several strengths")
  prev.add_argument("--dataset", default="digits")
  prev.add_argument("--strengths", default="0,0.5,1,1.5,2")
  prev.add_argument("--out", default="")
  prev.add_argument("--data_dir", default=None)
  prev.set_defaults(func=_augment_preview)
  bench = sub.add_parser("bench", help="benchmark lrjax against the alternatives",
                         add_help=False)
  bench.set_defaults(func=_bench)
  find = sub.add_parser("find", help="learning-rate range test")
  find.add_argument("config")
  find.add_argument("--workdir", required=True)
  find.add_argument("--overwrite", action="store_true")
  find.set_defaults(func=_find)
  prep = sub.add_parser("prepare", help="build a TFDS dataset as array_record (needs "
                        "TensorFlow and a network connection for catalog datasets)")
  prep.add_argument("name")
  prep.add_argument("--data_dir", default=None)
  prep.set_defaults(func=_prepare)
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
    print(textwrap.fill(f"lrjax {args.command}: error: {e}", width=100), file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("lrjax: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
