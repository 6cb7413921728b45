"""``lrjax bench``: lrjax's grid against the ways people train N models today.

For each model, grid size N and batch size, everything in one process, on the
devices JAX sees, with equal work (same initial weights, example stream, batches,
steps, loss and ``optax.sgd(lr, momentum=0.9)``):

1. ``lrjax``: ``lrjax.train_grid``, the engine the CLI uses, with one
   validation pass at the end (included in its time; the baselines skip it);
2. ``scans``: the N members one after another, each one compiled ``lax.scan``;
3. ``python_loop``: one jitted step (``optax.inject_hyperparams``), a Python loop;
4. ``vmap_scan``: a hand-written ``jit(vmap(lax.scan))`` over the N members;
5. ``torch_func``: a ``torch.func`` ensemble, when torch is installed;

and the machine's limits (peak matmul FLOP/s and copy bandwidth), measured on the
spot. The baselines live in ``baselines.py`` beside this file.

From the repository root, ``python benchmarks/bench.py --quick`` (or ``lrjax bench
--quick`` from anywhere in a source checkout) is a smoke run; ``--help`` lists the
options. The report is printed as a Markdown table and written as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrjax
from lrjax import data, models
from lrjax.engine import plan

# Run as a script (``python benchmarks/bench.py``, ``lrjax bench``) or imported with
# this folder on sys.path (tests): either way ``baselines`` is the module beside this one.
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
  sys.path.insert(0, HERE)
import baselines  # noqa: E402

CASES = ("lrjax", "scans", "python_loop", "vmap_scan", "torch_func")
BASELINES = CASES[1:]
RTOL = ATOL = 1e-4
# The goals each report is checked against (its "targets" list), besides "never
# slower than vmap_scan". On CPU at N = 64: the least speed-up of lrjax over the
# best of cases 2-5, by batch size.
CPU_SPEEDUP_GOALS = {32: 2.0, 128: 1.5}
# Every cell: the longest acceptable lrjax compile time (width probe included).
COMPILE_TIME_GOAL_S = 15.0


@dataclasses.dataclass
class Row:
  """One measured case of one (model, N, batch) cell."""

  model: str
  members: int
  batch: int
  case: str
  steps: int  # optimizer steps per member
  train_s: float
  compile_s: float
  wall_s: float  # the whole case, set-up included (lrjax: all of train_grid)
  member_steps_per_s: float
  examples_per_s: float
  model_flops_per_s: float
  peak_memory_bytes: float
  roofline: float  # max(FLOPs / peak FLOP/s, bytes / peak bandwidth) / measured time
  flop_efficiency: float  # FLOPs / peak FLOP/s / measured time
  speedup_of_lrjax: float  # this case's time / lrjax's time (> 1: lrjax is faster)
  max_abs_diff: float | None  # vs python_loop on the checked members
  allclose: bool | None
  note: str = ""
  train_s_rounds: list[float] = dataclasses.field(default_factory=list)  # every round's time


# -- measuring helpers -----------------------------------------------------------------


def _memory_source() -> str:
  if jax.devices()[0].memory_stats():
    return "device memory_stats()['peak_bytes_in_use'] (high-water mark since start)"
  if os.path.exists("/proc/self/clear_refs"):
    return "process VmHWM (peak resident set, reset before each case)"
  return "process ru_maxrss via resource.getrusage (high-water mark since start)"


def _reset_peak_memory() -> None:
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")  # resets VmHWM (Linux >= 4.0)
  except OSError:
    pass


def _peak_memory() -> float:
  stats = jax.devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    return float(stats["peak_bytes_in_use"])
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return float(line.split()[1]) * 1024
  except OSError:
    pass
  return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def step_cost(apply, params, x, y) -> tuple[float, float, str]:
  """FLOPs and bytes of one member's training step, from XLA's cost analysis.

  Falls back to the analytic 6 x params x examples (exact for an MLP's matmuls)
  when the backend reports no FLOPs; then bytes are the params, gradients and
  momentum read and written once per step.
  """
  opt = optax.sgd(0.1, momentum=baselines.MOMENTUM)
  fn = jax.jit(lambda p, o, x, y: baselines.train_step(apply, p, o, x, y, opt))
  try:
    cost = fn.lower(params, opt.init(params), x, y).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if cost and cost.get("flops", 0) > 0:
      return float(cost["flops"]), float(cost.get("bytes accessed", 0.0)), "xla cost_analysis"
  except Exception:  # noqa: BLE001 - cost analysis is best effort on some backends
    pass
  n_params = sum(a.size for a in jax.tree.leaves(params))
  return 6.0 * n_params * x.shape[0], 4.0 * 6 * n_params, "analytic 6*params*examples"


# -- one cell ---------------------------------------------------------------------------


def _lrjax_case(adapter, ds, table, settings, expected_examples):
  res = lrjax.train_grid(adapter, ds, table, settings, progress=False)
  if res.info["examples_per_member"] != expected_examples:
    raise RuntimeError(f"lrjax trained {res.info['examples_per_member']} examples per member, "
                       f"the baselines {expected_examples}: the comparison would be unequal.")
  diverged = res.members["diverged"].to_numpy()
  info = res.info
  notes = [f"{info['member_devices']} devices ({info['split_axis']} split)"
           if info["member_devices"] > 1 else "1 device"]
  if info["vmap_width"] is not None:  # chosen by the width probe (lrjax.engine.autotune)
    notes.append(f"lax.map width {info['vmap_width']} (measured)")
  notes += [f"{diverged.sum()} diverged"] if diverged.any() else []
  note = "; ".join(notes)
  return baselines.Outcome(res.params, res.info["train_seconds"], res.info["compile_seconds"],
                           note), diverged


def bench_cell(model_name: str, ds: data.Dataset, n: int, batch: int, epochs: float,
               cases: Sequence[str], limits: dict, model_kwargs: dict | None = None,
               log: Callable[[str], None] = print, repeats: int = 1) -> tuple[list[Row], dict]:
  """Measures every case of one (model, N, batch) cell; returns rows and a summary.

  With ``repeats`` > 1 the cases run in interleaved rounds and each reports its
  fastest round (every round's time is kept in ``train_s_rounds``).
  """
  adapter = models.get_model(model_name, ds.num_classes, **(model_kwargs or {}))
  table = lrjax.make_grid({"lr": lrjax.log_space(1e-3, 0.3, n), "batch_size": (batch,),
                           "seed": (0,)})
  # One evaluation, at the end (eval_every = the whole run): the baselines evaluate
  # nothing, and a per-epoch pass would charge lrjax for work they skip.
  settings = lrjax.TrainSettings(optimizer="momentum", epochs=epochs,
                                 eval_every=max(1, int(round(epochs * len(ds.train)))))
  examples = plan(table, len(ds.train), settings).examples_per_member
  steps = examples // batch
  order = data.example_order(0, len(ds.train), examples)[:steps * batch].reshape(steps, batch)
  labels = ds.train.labels[order].astype(np.int32)
  # Host-side preparation and one jitted init: eager JAX ops would each compile.
  init = jax.jit(lambda: adapter.init(jax.random.fold_in(jax.random.key(0), 0),
                                      jnp.zeros((1,) + ds.image_shape, jnp.float32)))
  work = baselines.Work(
      apply=adapter.apply, init_params=init(), lrs=table["lr"].to_numpy(np.float32),
      xs=jax.device_put(ds.train.images[order].astype(np.float32) / np.float32(255.0)),
      ys=jax.device_put(np.eye(ds.num_classes, dtype=np.float32)[labels]), labels=labels)
  flops, nbytes, flops_source = step_cost(adapter.apply, work.init_params, work.xs[0],
                                          work.ys[0])
  total_flops, total_bytes = flops * steps * n, nbytes * steps * n

  runners = {
      "lrjax": lambda: _lrjax_case(adapter, ds, table, settings, examples),
      "scans": lambda: baselines.sequential_scans(work),
      "python_loop": lambda: baselines.python_loop(work),
      "vmap_scan": lambda: baselines.vmapped_scan(work),
      "torch_func": lambda: baselines.torch_func_ensemble(work),
  }
  if "torch_func" in cases and not baselines.torch_available():
    log("  torch_func: skipped (torch is not installed)")
    cases = [c for c in cases if c != "torch_func"]
  # Rounds interleave the cases (lrjax, scans, ..., lrjax, scans, ...), so a slow
  # spell of a shared machine hits every case alike; each case keeps its fastest round.
  measured, params, diverged, rounds = {}, {}, np.zeros(n, bool), {c: [] for c in cases}
  for r in range(repeats):
    for case in cases:
      _reset_peak_memory()
      t0 = time.perf_counter()
      out = runners[case]()
      wall_s = time.perf_counter() - t0
      if case == "lrjax":
        out, diverged = out
      rounds[case].append(out.train_s)
      if r == 0:
        params[case] = out.params
      if r == 0 or out.train_s < measured[case][0]:
        measured[case] = (out.train_s, out.compile_s, _peak_memory(), wall_s, out.note)
      log(f"  {model_name} N={n} B={batch} {case:12s} train {out.train_s:8.3f} s  "
          f"compile {out.compile_s:6.2f} s  {out.note}"
          + (f"  (round {r + 1}/{repeats})" if repeats > 1 else ""))

  # Results equal: every case against the plain practice (case 3), on a couple of
  # members that lrjax did not mark diverged.
  check = [i for i in sorted({0, n // 2}) if not diverged[i]]
  ref = params.get("python_loop")
  lrjax_s = measured.get("lrjax", (np.nan,))[0]
  rows = []
  for case, (train_s, compile_s, peak, wall_s, note) in measured.items():
    diff = close = None
    if ref is not None and case != "python_loop" and check:
      pairs = [(np.asarray(a)[check], np.asarray(b)[check])
               for a, b in zip(jax.tree.leaves(params[case]), jax.tree.leaves(ref))]
      diff = float(max(np.max(np.abs(a - b)) for a, b in pairs))
      close = bool(all(np.allclose(a, b, rtol=RTOL, atol=ATOL) for a, b in pairs))
    roofline, flop_efficiency = _efficiency(total_flops, total_bytes, train_s, limits)
    rows.append(Row(
        model=model_name, members=n, batch=batch, case=case, steps=steps, train_s=train_s,
        compile_s=compile_s, wall_s=wall_s, member_steps_per_s=n * steps / train_s,
        examples_per_s=n * steps * batch / train_s, model_flops_per_s=total_flops / train_s,
        peak_memory_bytes=peak, roofline=roofline, flop_efficiency=flop_efficiency,
        speedup_of_lrjax=train_s / lrjax_s, max_abs_diff=diff, allclose=close, note=note,
        train_s_rounds=rounds[case]))

  summary = {"model": model_name, "members": n, "batch": batch, "steps": steps,
             "examples_per_member": examples, "flops_per_member_step": flops,
             "bytes_per_member_step": nbytes, "flops_source": flops_source,
             "members_checked": check}
  base = {c: measured[c][0] for c in BASELINES if c in measured}
  if "lrjax" in measured and base:
    best = min(base, key=base.get)
    # Per round: lrjax against the best baseline of that same round.
    per_round = [min(rounds[c][r] for c in base) / rounds["lrjax"][r] for r in range(repeats)]
    summary.update(best_baseline=best, speedup_vs_best=base[best] / lrjax_s,
                   speedup_vs_best_rounds=per_round,
                   speedup_vs_vmap_scan=base.get("vmap_scan", np.nan) / lrjax_s,
                   lrjax_compile_s=measured["lrjax"][1],
                   lrjax_allclose=next((r.allclose for r in rows if r.case == "lrjax"), None))
  return rows, summary


# -- the whole benchmark ---------------------------------------------------------------


def run_bench(models_: Sequence[str] = ("mlp", "cnn"), members: Sequence[int] = (1, 8, 64, 256),
              batches: Sequence[int] = (32, 128), epochs: float = 10.0,
              cases: Sequence[str] = CASES, model_kwargs: dict | None = None,
              dataset: str = "digits", limits: dict | None = None,
              log: Callable[[str], None] = print, repeats: int = 1) -> dict[str, Any]:
  """Runs every cell and returns the JSON-ready report (rows, summaries, machine).

  Args:
    models_: built-in model names.
    members: grid sizes N.
    batches: batch sizes; each cell's grid has one batch size.
    epochs: training length; lrjax rounds it to whole evaluation segments, and
      the baselines train exactly as many steps.
    cases: names from ``CASES``.
    model_kwargs: passed to ``lrjax.models.get_model`` (e.g. ``hidden=(32,)``).
    dataset: a dataset name for ``lrjax.data.load``.
    limits: machine limits (``peak_flops``, ``peak_bytes_per_s``); measured when None.
    log: progress lines.
    repeats: interleaved rounds per cell; each case reports its fastest round.

  Example:
    >>> report = run_bench(["mlp"], [2], [32], epochs=1, model_kwargs={"hidden": (32,)},
    ...                    log=lambda s: None)  # doctest: +SKIP
    >>> sorted({r["case"] for r in report["rows"]})  # doctest: +SKIP
    ['lrjax', 'python_loop', 'scans', 'torch_func', 'vmap_scan']
  """
  if repeats < 1:
    raise lrjax.ConfigError(f"repeats: at least 1 round per cell; got {repeats}.")
  unknown = sorted(set(cases) - set(CASES))
  if unknown:
    raise lrjax.ConfigError(f"cases: unknown {unknown}; use 'all' or some of {list(CASES)} "
                      f"(or their numbers 1-5).")
  ds = data.load(dataset)
  measure = limits is None
  limits = limits or baselines.machine_limits()
  log(f"machine: {limits['peak_flops'] / 1e9:,.1f} GFLOP/s matmul, "
      f"{limits['peak_bytes_per_s'] / 1e9:,.1f} GB/s copy on {jax.devices()[0]}")
  rows, summaries = [], []
  for model_name in models_:
    for n in members:
      for batch in batches:
        r, s = bench_cell(model_name, ds, n, batch, epochs, cases, limits, model_kwargs, log,
                          repeats)
        rows += r
        summaries.append(s)
  if measure:
    # Measured again at the end: on a shared machine one measurement can catch a slow
    # spell, and efficiencies against a peak that is too low would exceed 100%.
    again = baselines.machine_limits()
    limits = {k: max(v, again[k]) for k, v in limits.items()}
    log(f"machine, best of start and end: {limits['peak_flops'] / 1e9:,.1f} GFLOP/s, "
        f"{limits['peak_bytes_per_s'] / 1e9:,.1f} GB/s")
    _rate_against(rows, summaries, limits)
  return {
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "jax_version": jax.__version__, "platform": platform.platform(),
      "cpu_count": os.cpu_count(), "devices": [str(d) for d in jax.devices()],
      "dataset": dataset, "epochs": epochs, "model_kwargs": model_kwargs or {},
      "machine_limits": limits, "memory_source": _memory_source(),
      "timing": "train seconds exclude compilation; lrjax's include one validation "
                "pass at the end, the baselines' do not"
                + (f"; fastest of {repeats} interleaved rounds per case" if repeats > 1 else ""),
      "repeats": repeats,
      "rows": [dataclasses.asdict(r) for r in rows], "summary": summaries,
      "targets": _targets(summaries),
  }


def _efficiency(flops: float, nbytes: float, seconds: float, limits: dict) -> tuple[float, float]:
  """``(roofline, flop_efficiency)``: max(FLOPs / peak, bytes / bandwidth) / time, and
  the FLOP term alone."""
  compute = flops / limits["peak_flops"]
  return max(compute, nbytes / limits["peak_bytes_per_s"]) / seconds, compute / seconds


def _rate_against(rows: list[Row], summaries: list[dict], limits: dict) -> None:
  """Recomputes each row's roofline and FLOP efficiency against ``limits``."""
  per_cell = {(s["model"], s["members"], s["batch"]): s for s in summaries}
  for r in rows:
    s = per_cell[(r.model, r.members, r.batch)]
    r.roofline, r.flop_efficiency = _efficiency(
        s["flops_per_member_step"] * r.steps * r.members,
        s["bytes_per_member_step"] * r.steps * r.members, r.train_s, limits)


def _targets(summaries: list[dict]) -> list[dict]:
  """The goals (``CPU_SPEEDUP_GOALS``, never slower than ``vmap_scan``,
  ``COMPILE_TIME_GOAL_S``), checked where the run has the cells they name."""
  out = []
  cpu = jax.devices()[0].platform == "cpu"
  for s in summaries:
    if "speedup_vs_best" not in s:
      continue
    if cpu and s["members"] == 64 and s["batch"] in CPU_SPEEDUP_GOALS:
      need = CPU_SPEEDUP_GOALS[s["batch"]]
      out.append({"target": f"{s['model']} N=64 B={s['batch']}: >= {need}x best of 2-5",
                  "value": s["speedup_vs_best"], "met": s["speedup_vs_best"] >= need})
    if not np.isnan(s["speedup_vs_vmap_scan"]):
      out.append({"target": f"{s['model']} N={s['members']} B={s['batch']}: not slower than "
                            f"vmap_scan", "value": s["speedup_vs_vmap_scan"],
                  "met": s["speedup_vs_vmap_scan"] >= 1.0})
    out.append({"target": f"{s['model']} N={s['members']} B={s['batch']}: compile <= "
                          f"{COMPILE_TIME_GOAL_S:g} s", "value": s["lrjax_compile_s"],
                "met": s["lrjax_compile_s"] <= COMPILE_TIME_GOAL_S})
  return out


def format_table(report: dict[str, Any]) -> str:
  """The report as a Markdown table, then one summary line per cell."""
  lim = report["machine_limits"]
  lines = [
      f"Machine: {report['devices'][0]}, {report['cpu_count']} cores; measured peak "
      f"{lim['peak_flops'] / 1e9:,.1f} GFLOP/s (f32 matmul n={lim['matmul_n']}), "
      f"{lim['peak_bytes_per_s'] / 1e9:,.1f} GB/s (copy into a donated buffer).",
      f"Peak memory: {report['memory_source']}. Timing: {report['timing']}.",
      "",
      "| model | N | B | case | steps/member | train s | compile s | member-steps/s "
      "| examples/s | model GFLOP/s | roofline | FLOP eff. | peak MB | case time / lrjax "
      "| vs python_loop | note |",
      "|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
  ]
  for r in report["rows"]:
    close = ("—" if r["allclose"] is None else
             f"{'allclose' if r['allclose'] else 'DIFFERS'} ({r['max_abs_diff']:.1e})")
    lines.append(
        f"| {r['model']} | {r['members']} | {r['batch']} | {r['case']} | {r['steps']} "
        f"| {r['train_s']:.3f} | {r['compile_s']:.2f} | {r['member_steps_per_s']:,.0f} "
        f"| {r['examples_per_s']:,.0f} | {r['model_flops_per_s'] / 1e9:.2f} "
        f"| {100 * r['roofline']:.1f}% | {100 * r['flop_efficiency']:.1f}% "
        f"| {r['peak_memory_bytes'] / 2**20:,.0f} | {r['speedup_of_lrjax']:.2f} | {close} "
        f"| {r['note']} |")
  lines.append("")
  for s in report["summary"]:
    if "speedup_vs_best" in s:
      lines.append(
          f"- {s['model']} N={s['members']} B={s['batch']}: best baseline {s['best_baseline']}; "
          f"lrjax {s['speedup_vs_best']:.2f}x its speed, {s['speedup_vs_vmap_scan']:.2f}x "
          f"vmap_scan's; compile {s['lrjax_compile_s']:.2f} s; FLOPs from {s['flops_source']} "
          f"({s['flops_per_member_step'] / 1e6:.2f} MFLOP/member-step)"
          + (f"; per round {', '.join(f'{v:.2f}x' for v in s['speedup_vs_best_rounds'])}"
             if len(s["speedup_vs_best_rounds"]) > 1 else "") + ".")
  for t in report["targets"]:
    lines.append(f"- target {t['target']}: {t['value']:.2f} -> {'met' if t['met'] else 'NOT met'}")
  return "\n".join(lines)


def _ints(text: str) -> list[int]:
  return [int(v) for v in text.split(",") if v]


def _cases(text: str) -> list[str]:
  if text == "all":
    return list(CASES)
  out = []
  for v in text.split(","):
    out.append(CASES[int(v) - 1] if v.isdigit() and 1 <= int(v) <= len(CASES) else v)
  return out


def _invoked_as() -> str:
  """How this run was started, for the report's ``command`` and ``--help``."""
  return "lrjax bench" if "lrjax.cli" in sys.modules else "python benchmarks/bench.py"


def main(argv: Sequence[str] | None = None) -> int:
  """``python benchmarks/bench.py [options]`` / ``lrjax bench [options]``."""
  prog = _invoked_as()
  parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp,cnn")
  parser.add_argument("--members", default="1,8,64,256", help="grid sizes N")
  parser.add_argument("--batch", default="32,128", help="batch sizes")
  parser.add_argument("--epochs", type=float, default=10.0,
                      help="epochs of the training split (rates are per example/step)")
  parser.add_argument("--cases", default="all",
                      help=f"'all' or comma-separated names/numbers of {list(CASES)}")
  parser.add_argument("--dataset", default="digits")
  parser.add_argument("--json", default="bench.json", help="where to write the report")
  parser.add_argument("--repeats", type=int, default=1,
                      help="interleaved rounds per cell; each case keeps its fastest")
  parser.add_argument("--quick", action="store_true", help="smoke run: N=1,8, 1 epoch, mlp")
  args = parser.parse_args(argv)
  if args.quick:
    args.models, args.members, args.epochs = "mlp", "1,8", 1.0
  log = lambda s: print(s, file=sys.stderr, flush=True)
  try:
    # One CPU device per core, as the `lrjax` command sets up; before any JAX
    # computation (a no-op once JAX has started). LRJAX_CPU_DEVICES=1 to compare.
    lrjax.use_cpu_cores()
    t0 = time.perf_counter()
    report = run_bench(args.models.split(","), _ints(args.members), _ints(args.batch),
                       args.epochs, _cases(args.cases), dataset=args.dataset, log=log,
                       repeats=args.repeats)
  except (lrjax.ConfigError, ValueError) as e:
    print(f"{prog}: {e}", file=sys.stderr)
    return 2
  report["command"] = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
  report["wall_seconds"] = time.perf_counter() - t0
  print(format_table(report))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1, default=float)
    print(f"\nwrote {args.json}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
