"""The ``lrjax`` command line: ``run``, ``extend``, ``settle``, ``find``, ``report``,
``prepare``, ``augment-preview``, ``bench``. The one command-line layer: everything
else is a library function.

Commands, their options and ``--help`` are argparse's; the ``--config.KEY=VALUE``
overrides that ``run`` and ``find`` pass through are parsed by absl/ml_collections
``config_flags`` (the syntax ml_collections users know: tuples, nested keys, dicts).

Bad input exits with status 2 and a one-paragraph message (no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shlex
import sys
import textwrap


import pandas as pd

from lrjax import data, experiment, extend, settle
from lrjax.analysis import report
from lrjax.analysis import summary as summary_lib
from lrjax.augment import preview
from lrjax.engine import checkpoint, devices
from lrjax.errors import ConfigError, RunNotWritten, describe
from lrjax.config_files import load_config, one_line
from lrjax.workdir import check_workdir, partial_dir



OVERRIDES_HELP = """\
config overrides (after CONFIG_FILE; quote values for the shell):
  --config.epochs=5                     numbers and names as they are
  --config.grid.lr="(0.01,0.1,1.0)"     sequences are tuples; one: "(0.1,)"
  --config.grid.lr=0.1                  one value is a one-value axis, (0.1,)
  --config.grid.momentum="(0.5,0.9)"    nested keys with dots; new axes too
  --config.optimizer_kwargs.b2=0.99     one key of a dict-valued field, or
  --config.optimizer_kwargs="{'b2': 0.99}"   the whole dict ("{}" empties it)
  --config.model_kwargs="{'hidden': (64, 64)}"
  --config.optimizer=mypkg.opts:clipped_adam   a factory (learning_rate, **hparams)
  --config.schedule=mypkg.lrs:halving   a function (step, peak_lr, total_updates,
                                        **hparams) -> lr; docs/MODELS.md
  New keys are accepted under grid, model_kwargs, optimizer_kwargs and
  schedule_kwargs; other unknown keys are refused (README: config fields).
  A key given twice takes its last value. Each axis value once: a value given
  twice (or two equal in float32) is refused.
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
  extend           add members (seeds, LRs, batch sizes, ...) to a finished run
  settle           waves of extensions until the primary questions are settled
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

EXTEND_EXAMPLES = """
examples:
  lrjax extend runs/tiny --config.grid.seed="(3,4)"
  lrjax extend runs/tiny --config.grid.lr="(3.0,)" --config.grid.batch_size="(16,)"
  lrjax extend runs/tiny --points new_members.csv
  lrjax extend runs/tiny --resume
"""

SETTLE_EXAMPLES = """
examples:
  lrjax settle experiments/lr_batch_aug.py --workdir runs/settled
  lrjax settle runs/tiny --budget-member-epochs 200 --max-seeds 6
"""

FIND_EXAMPLES = """
examples:
  lrjax find experiments/lr_batch_aug.py:runlocal --workdir runs/find
  lrjax find experiments/lr_batch_aug.py --workdir runs/find \\
      --config.optimizer=adam
  lrjax find experiments/lr_batch_aug.py --workdir runs/find --start-lr 1e-4 --end-lr 3
"""


def _print_headline(summary_path: str) -> None:
  """The run's answer first: the headline of its ``summary.json``, wrapped (nothing
  when the run wrote none)."""
  if not os.path.exists(summary_path):
    return
  with open(summary_path) as f:
    lines = summary_lib.headline_lines(json.load(f))
  if lines:
    print("\n" + "\n".join(textwrap.fill(l, width=100, subsequent_indent="  ")
                            for l in lines))


def _run(args, overrides) -> int:
  config = load_config(args.config, overrides, prog="lrjax run")
  try:
    experiment.train_and_evaluate(config, args.workdir, overwrite=args.overwrite,
                                  progress=not args.no_progress, resume=args.resume)
  except (ConfigError, RunNotWritten):
    devices.leave_processes()  # every process raised these together: leave together
    raise
  first = devices.is_first_process()
  devices.leave_processes()  # every process, now: the run is written
  if not first:  # process 0 wrote the run directory and says so
    return 0
  workdir = os.path.abspath(args.workdir)
  _print_headline(os.path.join(workdir, "summary.json"))
  print(f"\nResults in {workdir}:\n"
        f"  report:   {os.path.join(workdir, 'report.html')}\n"
        f"  figures:  {os.path.join(workdir, '*.png')}\n"
        f"  tables:   members.parquet/.csv, history.parquet, summary.json")
  return 0


def _extend(args, overrides) -> int:
  saved = extend.read_run(args.workdir)[0]
  values = extend.values_from_overrides(saved, overrides) if overrides else None
  points = None
  if args.points:
    if not os.path.isfile(args.points):
      raise ConfigError(f"--points: {args.points} does not exist; give a CSV with one row "
                        f"per new member and a column per axis of the run.")
    points = pd.read_csv(args.points)
  result = extend.extend_run(args.workdir, values, points, resume=args.resume,
                             progress=not args.no_progress)
  workdir = os.path.abspath(args.workdir)
  added = json.load(open(os.path.join(workdir, "config.json")))["extensions"][-1]["added"]
  print(f"\nAdded {added} members; the run has {len(result.members)}.")
  _print_headline(os.path.join(workdir, "summary.json"))
  print(f"\nResults in {workdir}:\n  report:   {os.path.join(workdir, 'report.html')}")
  return 0


def _settle(args, overrides) -> int:
  settings = settle.SettleSettings(
      budget_member_epochs=args.budget_member_epochs, budget_s=args.budget_s,
      max_seeds=args.max_seeds, max_waves=args.max_waves)
  if args.workdir:
    config = load_config(args.target, overrides, prog="lrjax settle")
    workdir = args.workdir
    check_workdir(workdir)
  else:
    if overrides:
      raise ConfigError("settle WORKDIR: the run's config is fixed; --config overrides go "
                        "with `lrjax settle CONFIG --workdir DIR`.")
    config, workdir = None, args.target
  record = settle.settle_run(workdir, settings, config, progress=not args.no_progress)
  workdir = os.path.abspath(workdir)
  print(f"\nSettle: {record['waves']} waves, stopped: {record['stopped']}; "
        f"{record['budget']['spent_member_epochs']:g} of "
        f"{record['budget']['member_epochs']:g} member-epochs spent.")
  for o in record["open"]:
    print(f"  open: {o['question']} at {o['cell']}: {o['why']}")
  _print_headline(os.path.join(workdir, "summary.json"))
  print(f"\nResults in {workdir}:\n  report:   {os.path.join(workdir, 'report.html')}")
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
  summary = experiment.find_lr(config, args.workdir, overwrite=args.overwrite,
                               start_lr=args.start_lr, end_lr=args.end_lr)
  print(json.dumps(summary, indent=2))
  for s in summary["per_batch_size"]:
    lr = s["recommended_lr"]
    by_aug = ", ".join(f"aug {a:g}: {v:.3g}" for a, v in
                       sorted(s["vectorised_best_lr_by_aug"].items()))
    print(f"batch {s['batch_size']}: use LR {lr:.3g} ({by_aug})" if lr is not None else
          f"batch {s['batch_size']}: no LR trained stably")
    print("  alternatives (range test): " + ", ".join(
        f"{rule} {v:.3g}" for rule, v in s["range_test"].items()))
  print(textwrap.fill(summary["recommendation"], width=100))
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


def _add_run(sub) -> None:
  """The ``run`` subcommand: train a grid and write its run directory."""
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
  several = run.add_argument_group(
      "several processes (README: Several GPUs and hosts)",
      "A cluster JAX detects (SLURM, Open MPI, TPU pods) is joined by itself; elsewhere\n"
      "give all three, each process its own --process-id. Process 0 writes DIR.")
  several.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                       help="address of process 0, the same for every process")
  several.add_argument("--num-processes", metavar="P", type=int, default=None,
                       help="how many processes the run has")
  several.add_argument("--process-id", metavar="I", type=int, default=None,
                       help="this process's index, 0 to P-1")
  run.set_defaults(func=_run)


def _add_find(sub) -> None:
  """The ``find`` subcommand: the LR range test."""
  find = sub.add_parser(
      "find",
      formatter_class=_formatter,
      usage="%(prog)s [options] CONFIG_FILE[:ARG] [--config.KEY=VALUE ...]",
      description="LR range test (and its vectorised variant) for an experiment's model, "
                  "data and\noptimizer; writes lr_find.png/.json/.csv, recommends one LR "
                  "per batch size and\nsuggests grid.lr.\n\n"
                  "The recommendation is the vectorised test's best stable LR: 9 fixed LRs "
                  "around the\nrange test's valley, trained for one epoch as one grid, "
                  "judged by validation loss.\nThe range test's rules (valley, steepest, "
                  "minimum/10) are printed as alternatives.\nDo not trust either as the "
                  "answer: both are one-epoch proxies; on the main job they\nmissed the "
                  "settled optimum by x2 to x16 (docs/RESULTS.md). Settle the suggested "
                  "grid.",
      epilog=OVERRIDES_HELP + FIND_EXAMPLES)
  find.add_argument("config", metavar="CONFIG_FILE[:ARG]",
                    help="experiment file [: argument of its get_config]")
  find.add_argument("--workdir", metavar="DIR", required=True,
                    help="the directory to write (required)")
  find.add_argument("--overwrite", action="store_true",
                    help="replace an existing non-empty DIR")
  find.add_argument("--start-lr", metavar="LR", type=float, default=1e-6,
                    help="the range test's first LR (default 1e-06)")
  find.add_argument("--end-lr", metavar="LR", type=float, default=10.0,
                    help="the range test's last LR (default 10)")
  find.set_defaults(func=_find)


def _add_extend(sub) -> None:
  """The ``extend`` subcommand: add members to a finished run."""
  ext = sub.add_parser(
      "extend",
      formatter_class=_formatter,
      usage="%(prog)s [options] WORKDIR [--config.grid.AXIS=VALUES ...]",
      description="Add members to a finished run: values of its grid axes (seeds, LRs, batch "
                  "sizes,\n...) or explicit points. Only the new members train; the run's "
                  "rows stay as they\nwere, and its tables, figures, summary.json and "
                  "report.html are rebuilt over the\nunion. Every field but the grid keeps "
                  "its value.",
      epilog=EXTEND_EXAMPLES)
  ext.add_argument("workdir", metavar="WORKDIR", help="a directory written by `lrjax run`")
  ext.add_argument("--points", metavar="CSV", default="",
                   help="a CSV of members to add, one row each, a column per axis")
  ext.add_argument("--resume", action="store_true",
                   help="continue an interrupted extension (WORKDIR.extend)")
  ext.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  ext.set_defaults(func=_extend)


def _add_settle(sub) -> None:
  """The ``settle`` subcommand: waves of extensions until the primary questions settle."""
  st = sub.add_parser(
      "settle",
      formatter_class=_formatter,
      usage="%(prog)s [options] (CONFIG_FILE[:ARG] --workdir DIR | WORKDIR) "
            "[--config.KEY=VALUE ...]",
      description="Train an experiment (or take a finished run), then run waves: analyse, "
                  "propose the\nmembers that would settle its open primary questions "
                  "(README: Settling a run), and\nadd them with `lrjax extend`, until "
                  "every primary question is settled or the budget\nis spent.",
      epilog=SETTLE_EXAMPLES)
  st.add_argument("target", metavar="CONFIG_FILE[:ARG] | WORKDIR",
                  help="an experiment file (with --workdir), or a finished run")
  st.add_argument("--workdir", metavar="DIR", default="",
                  help="the run directory to create from CONFIG_FILE")
  st.add_argument("--budget-member-epochs", metavar="N", type=float, default=None,
                  help="member-epochs the waves may add (default: the starting run's)")
  st.add_argument("--budget-s", metavar="S", type=float, default=None,
                  help="seconds the waves may take (default 3600)")
  st.add_argument("--max-seeds", metavar="K", type=int, default=8,
                  help="seeds a cell may reach (default 8)")
  st.add_argument("--max-waves", metavar="W", type=int, default=4,
                  help="waves at most, fixed up front (default 4)")
  st.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  st.set_defaults(func=_settle)


def _add_report(sub) -> None:
  """The ``report`` subcommand: a run directory's report, again."""
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


def _add_augment_preview(sub) -> None:
  """The ``augment-preview`` subcommand: a PNG of augmented examples."""
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


def _add_prepare(sub) -> None:
  """The ``prepare`` subcommand: build a TFDS dataset."""
  prep = sub.add_parser(
      "prepare",
      formatter_class=_formatter,
      description="Build a TFDS dataset as array_record (catalog datasets need TensorFlow "
                  "and a\nnetwork connection once; digits and mnist1d are built in).")
  prep.add_argument("name", metavar="NAME", help="TFDS catalog name, e.g. mnist")
  prep.add_argument("--data_dir", metavar="DIR", default=None,
                    help="TFDS data directory (default $TFDS_DATA_DIR)")
  prep.set_defaults(func=_prepare)


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
  for add in (_add_run, _add_extend, _add_settle, _add_find, _add_report, _add_augment_preview, _add_prepare):
    add(sub)
  # bench parses its own options (and --help): benchmarks/bench.py in a source checkout.
  bench = sub.add_parser("bench", add_help=False)
  bench.set_defaults(func=_bench)
  return parser


def main(argv: list[str] | None = None) -> int:
  """Entry point of the ``lrjax`` command."""
  argv = sys.argv[1:] if argv is None else argv
  parser = build_parser()
  args, rest = parser.parse_known_args(argv)
  if rest and args.command not in ("run", "extend", "settle", "find", "bench"):
    parser.error(f"unrecognized arguments: {' '.join(rest)}")
  try:
    if args.command == "run":  # joins a multi-process run, if any, before anything else
      devices.join_processes(args.coordinator, args.num_processes, args.process_id)
    if args.command in ("run", "extend", "settle", "find", "bench"):  # before any JAX work
      devices.use_cpu_cores()
    return args.func(args, rest)
  except ConfigError as e:
    _print_paragraph(f"lrjax {args.command}: error: {one_line(e)}")
    return 2
  except RunNotWritten as e:
    _print_paragraph(f"lrjax {args.command}: error: {e}")
    return 2
  except OSError as e:  # the operating system's: a full disk, open files, permissions
    _print_paragraph(f"lrjax {args.command}: error: {describe(e)}{_resume_hint(args)}")
    return 2
  except checkpoint.Interrupted as e:  # SIGTERM / SIGINT: checkpoint saved at a segment end
    hint = "; resume with --resume" if args.command in ("run", "extend") else ""
    print(f"lrjax {args.command}: {e}{hint}", file=sys.stderr)
    return e.exit_code
  except KeyboardInterrupt:
    print("lrjax: interrupted", file=sys.stderr)
    return 130


def _print_paragraph(text: str) -> None:
  print(textwrap.fill(text, width=100, break_on_hyphens=False, break_long_words=False),
        file=sys.stderr)


def _resume_hint(args) -> str:
  """For a failure while training: where its last checkpoint is, and how to go on."""
  workdir = getattr(args, "workdir", None)
  if args.command not in ("run", "extend") or not workdir:
    return ""
  partial = (partial_dir if args.command == "run" else extend.extension_dir)(workdir)
  if not os.path.isdir(partial):
    return " Nothing was written."
  return (f" The checkpoints saved so far are in {partial}: once the cause is fixed, rerun "
          f"the same command with --resume to go on from there.")


if __name__ == "__main__":
  sys.exit(main())
