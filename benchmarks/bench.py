"""``lrjax bench``: lrjax's grid against the ways people train N models today.

For each model, compute dtype, grid size N and batch size, everything in one
process, on the devices JAX sees, with equal work (same initial weights and model
state, example stream, batches, steps, loss and ``optax.sgd(lr, momentum=0.9)``):

1. ``lrjax``: ``lrjax.train_grid``, the engine the CLI uses, with one
   validation pass at the end (included in its time; the baselines skip it);
2. ``scans``: the N members one after another, each one compiled ``lax.scan``;
3. ``python_loop``: one jitted step (``optax.inject_hyperparams``), a Python loop;
4. ``vmap_scan``: a hand-written ``jit(vmap(lax.scan))`` over the N members;
5. ``torch_func``: a ``torch.func`` ensemble, when torch is installed (float32 MLP
   and CNN only);

and the machine's limits (peak matmul FLOP/s and copy bandwidth), measured on the
spot. The baselines live in ``baselines.py`` beside this file; they call the model
through ``lrjax.models.train_logits`` with its state (BatchNorm statistics) and
the compute dtype, as lrjax does.

Models: ``mlp`` (256-256), ``cnn`` (32-64 channels) and ``resnet20`` (ResNet-20 with
BatchNorm, stage widths 16/32/64 times ``width``: 0.5 unless ``--model-kwargs``
sets it), on the built-in 8x8 digits. ``--dtypes float32,bfloat16`` times both
compute dtypes (bfloat16: ``TrainSettings(dtype="bfloat16")`` for lrjax, the same
cast of parameters and inputs with float32 master weights in the baselines).

From the repository root, ``python benchmarks/bench.py --quick`` (or ``lrjax bench
--quick`` from anywhere in a source checkout) is a smoke run; ``--help`` lists the
options. The report is printed as a Markdown table and written as JSON (``--json``,
rewritten after every cell, with ``"complete": false`` until the end).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
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
from bench_support import (COMPILE_TIME_GOAL_S, CPU_SPEEDUP_GOALS, Budget, Row,  # noqa: E402, F401
                           cell_key, efficiency, format_brief, format_table, memory_source,
                           peak_memory, rate_against, reset_peak_memory, targets)

CASES = ("lrjax", "scans", "python_loop", "vmap_scan", "torch_func")
BASELINES = CASES[1:]
DTYPES = ("float32", "bfloat16")
RTOL = ATOL = 1e-4
# bfloat16 members round differently once XLA fuses their ops differently (one
# member vs a vmapped grid), and the differences grow over the steps.
TOLERANCE = {"float32": RTOL, "bfloat16": 2e-2}
# Model settings unless --model-kwargs names the model: the ResNet at half width
# (8/16/32 channels) keeps its compile and train times within a short check.
DEFAULT_MODEL_KWARGS = {"resnet20": {"width": 0.5}}


# -- measuring helpers -----------------------------------------------------------------


def step_cost(model, dtype, params, state, x, y) -> tuple[float, float, str]:
  """FLOPs and bytes of one member's training step, from XLA's cost analysis.

  Falls back to the analytic 6 x params x examples (exact for an MLP's matmuls)
  when the backend reports no FLOPs; then bytes are the params, gradients and
  momentum read and written once per step.
  """
  opt = optax.sgd(0.1, momentum=baselines.MOMENTUM)
  fn = jax.jit(lambda p, o, s, x, y: baselines.model_step(model, dtype, p, o, s, x, y, opt))
  try:
    cost = fn.lower(params, opt.init(params), state, x, y).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if cost and cost.get("flops", 0) > 0:
      return float(cost["flops"]), float(cost.get("bytes accessed", 0.0)), "xla cost_analysis"
  except Exception:  # noqa: BLE001 - cost analysis is best effort on some backends
    pass
  n_params = sum(a.size for a in jax.tree.leaves(params))
  return 6.0 * n_params * x.shape[0], 4.0 * 6 * n_params, "analytic 6*params*examples"


def model_kwargs_for(name: str, model_kwargs: dict | None) -> dict:
  """The settings of model ``name``: ``DEFAULT_MODEL_KWARGS`` updated by
  ``model_kwargs``, either per model (``{"resnet20": {"width": 1}}``) or, when its
  keys are not model names, for every model (``{"hidden": (32,)}``)."""
  given = model_kwargs or {}
  if given and set(given) <= set(models.BUILTIN_MODELS):
    given = given.get(name, {})
  return {**DEFAULT_MODEL_KWARGS.get(name, {}), **given}


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


def _work(adapter, ds, table, batch, examples, dtype):
  """The baselines' workload: the engine's initial weights and state for seed 0, and
  its example stream cut into ``examples // batch`` batches."""
  steps = examples // batch
  order = data.example_order(0, len(ds.train), examples)[:steps * batch].reshape(steps, batch)
  labels = ds.train.labels[order].astype(np.int32)
  # Host-side preparation and one jitted init: eager JAX ops would each compile.
  def init():
    key, sample = jax.random.fold_in(jax.random.key(0), 0), jnp.zeros((1,) + ds.image_shape)
    return adapter.init(key, sample), models.initial_state(adapter, key, sample)
  init_params, init_state = jax.jit(init)()
  return baselines.Work(
      apply=adapter.apply, init_params=init_params, lrs=table["lr"].to_numpy(np.float32),
      xs=jax.device_put(ds.train.images[order].astype(np.float32) / np.float32(255.0)),
      ys=jax.device_put(np.eye(ds.num_classes, dtype=np.float32)[labels]), labels=labels,
      model=adapter, init_state=init_state, dtype=dtype)


def bench_cell(model_name: str, ds: data.Dataset, n: int, batch: int, epochs: float,
               cases: Sequence[str], limits: dict, model_kwargs: dict | None = None,
               log: Callable[[str], None] = print, repeats: int = 1, dtype: str = "float32",
               budget: Budget | None = None, costs: dict | None = None
               ) -> tuple[list[Row], dict]:
  """Measures every case of one (model, dtype, N, batch) cell; returns rows and a summary.

  With ``repeats`` > 1 the cases run in interleaved rounds and each reports its
  fastest round (every round's time is kept in ``train_s_rounds``). A case the
  ``budget`` rules out, or that fails on the device (e.g. out of memory), is listed
  in the summary's ``skipped`` with the reason. ``costs`` keeps each (model, dtype,
  batch)'s step cost across cells (it does not depend on N).
  """
  adapter = models.get_model(model_name, ds.num_classes, **model_kwargs_for(model_name,
                                                                            model_kwargs))
  table = lrjax.make_grid({"lr": lrjax.log_space(1e-3, 0.3, n), "batch_size": (batch,),
                           "seed": (0,)})
  # One evaluation, at the end (eval_every = the whole run): the baselines evaluate
  # nothing, and a per-epoch pass would charge lrjax for work they skip.
  settings = lrjax.TrainSettings(optimizer="momentum", epochs=epochs, dtype=dtype,
                                 eval_every=max(1, int(round(epochs * len(ds.train)))))
  examples = plan(table, len(ds.train), settings).examples_per_member
  steps = examples // batch
  key = cell_key(model_name, dtype, n, batch)
  summary = {"model": model_name, "dtype": dtype, "members": n, "batch": batch, "steps": steps,
             "examples_per_member": examples, "tolerance": TOLERANCE[dtype]}
  ruled_out = {c: budget.reason(key, c) for c in cases} if budget is not None else {}
  if ruled_out and all(ruled_out.values()):  # nothing to run: skip the set-up too
    for case, reason in ruled_out.items():
      log(f"  {model_name} {dtype} N={n} B={batch} {case:12s} skipped: {reason}")
    return [], {**summary, "skipped": ruled_out}
  work = _work(adapter, ds, table, batch, examples, dtype)
  costs = {} if costs is None else costs
  if (model_name, dtype, batch) not in costs:
    costs[(model_name, dtype, batch)] = step_cost(adapter, dtype, work.init_params,
                                                  work.init_state, work.xs[0], work.ys[0])
  flops, nbytes, flops_source = costs[(model_name, dtype, batch)]
  total_flops, total_bytes = flops * steps * n, nbytes * steps * n

  runners = {
      "lrjax": lambda: _lrjax_case(adapter, ds, table, settings, examples),
      "scans": lambda: baselines.sequential_scans(work),
      "python_loop": lambda: baselines.python_loop(work),
      "vmap_scan": lambda: baselines.vmapped_scan(work),
      "torch_func": lambda: baselines.torch_func_ensemble(work),
  }
  skipped = {}
  if "torch_func" in cases:
    if not baselines.torch_available():
      skipped["torch_func"] = "torch is not installed"
    elif jax.tree.leaves(work.init_state) or dtype != "float32" or model_name not in (
        "mlp", "cnn"):
      skipped["torch_func"] = "its torch twin is the float32 MLP and CNN only"
  for case, reason in skipped.items():
    log(f"  {model_name} {dtype} N={n} B={batch} {case:12s} skipped: {reason}")
  # Rounds interleave the cases (lrjax, scans, ..., lrjax, scans, ...), so a slow
  # spell of a shared machine hits every case alike; each case keeps its fastest round.
  measured, params, diverged = {}, {}, np.zeros(n, bool)
  rounds = {c: [] for c in cases}
  for r in range(repeats):
    for case in cases:
      if case in skipped or (r > 0 and case not in measured):
        continue
      reason = budget.reason(key, case) if budget is not None and r == 0 else None
      if reason is not None:
        skipped[case] = reason
        log(f"  {model_name} {dtype} N={n} B={batch} {case:12s} skipped: {reason}")
        continue
      own = reset_peak_memory()
      before = peak_memory()
      t0 = time.perf_counter()
      try:
        out = runners[case]()
      except jax.errors.JaxRuntimeError as e:  # out of memory, most likely
        why = f"failed: {str(e).strip().splitlines()[0][:200]}"
        log(f"  {model_name} {dtype} N={n} B={batch} {case:12s} {why}")
        if r == 0:  # a later round's failure leaves the case its earlier rounds
          skipped[case] = why
        continue
      wall_s = time.perf_counter() - t0
      peak = peak_memory()
      if case == "lrjax":
        out, diverged = out
      rounds[case].append(out.train_s)
      if r == 0:
        params[case] = out.params
        if budget is not None:
          budget.record(key, case, wall_s, out.train_s)
      if r == 0 or out.train_s < measured[case][0]:
        measured[case] = (out.train_s, out.compile_s, peak, wall_s, out.note,
                          own or peak > before)
      log(f"  {model_name} {dtype} N={n} B={batch} {case:12s} train {out.train_s:8.3f} s  "
          f"compile {out.compile_s:6.2f} s  {out.note}"
          + (f"  (round {r + 1}/{repeats})" if repeats > 1 else ""))

  # Results equal: every case against the plain practice (case 3; without it, case 2,
  # the same per-member program), on a couple of members lrjax did not mark diverged.
  check = [i for i in sorted({0, n // 2}) if not diverged[i]]
  reference = next((c for c in ("python_loop", "scans") if c in params), None)
  ref = params.get(reference)
  lrjax_s = measured.get("lrjax", (np.nan,))[0]
  tol = TOLERANCE[dtype]
  rows = []
  for case, (train_s, compile_s, peak, wall_s, note, own) in measured.items():
    diff = close = None
    if ref is not None and case != reference and check:
      pairs = [(np.asarray(a)[check], np.asarray(b)[check])
               for a, b in zip(jax.tree.leaves(params[case]), jax.tree.leaves(ref))]
      diff = float(max(np.max(np.abs(a - b)) for a, b in pairs))
      close = bool(all(np.allclose(a, b, rtol=tol, atol=tol) for a, b in pairs))
    roofline, flop_efficiency = efficiency(total_flops, total_bytes, train_s, limits, dtype)
    rows.append(Row(
        model=model_name, members=n, batch=batch, case=case, steps=steps, train_s=train_s,
        compile_s=compile_s, wall_s=wall_s, member_steps_per_s=n * steps / train_s,
        examples_per_s=n * steps * batch / train_s, model_flops_per_s=total_flops / train_s,
        peak_memory_bytes=peak, roofline=roofline, flop_efficiency=flop_efficiency,
        speedup_of_lrjax=train_s / lrjax_s, max_abs_diff=diff, allclose=close, note=note,
        train_s_rounds=rounds[case], dtype=dtype, peak_memory_own=own))

  summary.update(flops_per_member_step=flops, bytes_per_member_step=nbytes,
                 flops_source=flops_source, members_checked=check, reference=reference,
                 skipped=skipped)
  base = {c: measured[c][0] for c in BASELINES if c in measured}
  if "lrjax" in measured and base:
    best = min(base, key=base.get)
    # Per round: lrjax against the best baseline of that same round.
    done = min(len(rounds[c]) for c in ["lrjax", *base])
    per_round = [min(rounds[c][r] for c in base) / rounds["lrjax"][r] for r in range(done)]
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
              log: Callable[[str], None] = print, repeats: int = 1,
              dtypes: Sequence[str] = ("float32",), budget_s: float | None = None,
              on_progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
  """Runs every cell and returns the JSON-ready report (rows, summaries, machine).

  Args:
    models_: built-in model names (``mlp``, ``cnn``, ``resnet20``, ...).
    members: grid sizes N.
    batches: batch sizes; each cell's grid has one batch size.
    epochs: training length; lrjax rounds it to whole evaluation segments, and
      the baselines train exactly as many steps.
    cases: names from ``CASES``.
    model_kwargs: passed to ``lrjax.models.get_model`` over ``DEFAULT_MODEL_KWARGS``:
      for every model (``{"hidden": (32,)}``) or per model name
      (``{"resnet20": {"width": 0.25}}``).
    dataset: a dataset name for ``lrjax.data.load``.
    limits: machine limits (``peak_flops``, ``peak_bytes_per_s``); measured when None.
    log: progress lines.
    repeats: interleaved rounds per cell; each case reports its fastest round.
    dtypes: compute dtypes of ``DTYPES``; weights stay float32.
    budget_s: seconds for all cells; each model's cells then run smallest N first,
      and a case whose estimate (``bench_support.Budget``) exceeds the time left is
      skipped (listed in the report's ``skipped``).
    on_progress: called with the report so far after every cell (``complete`` False).

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
  if not dtypes or set(dtypes) - set(DTYPES):
    raise lrjax.ConfigError(f"dtypes: some of {list(DTYPES)}; got {list(dtypes)}.")
  ds = data.load(dataset)
  measure = limits is None
  limits = limits or baselines.machine_limits()
  if measure and "bfloat16" in dtypes:
    limits["peak_flops_bfloat16"] = baselines.matmul_peak("bfloat16")
  log(f"machine: {limits['peak_flops'] / 1e9:,.1f} GFLOP/s matmul, "
      f"{limits['peak_bytes_per_s'] / 1e9:,.1f} GB/s copy on {jax.devices()[0]}")
  cells = [(m, d, n, b) for m in models_ for d in dtypes for n in members for b in batches]
  if budget_s is not None:  # per model, smallest N first (both dtypes at each N): the
    # budget trims the largest grids of the models listed last
    cells.sort(key=lambda c: (models_.index(c[0]), c[2], dtypes.index(c[1])))
  budget = None if budget_s is None else Budget(budget_s)
  rows, summaries, costs = [], [], {}
  report = {
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "jax_version": jax.__version__, "platform": platform.platform(),
      "cpu_count": os.cpu_count(), "devices": [str(d) for d in jax.devices()],
      "dataset": dataset, "epochs": epochs, "model_kwargs": model_kwargs or {},
      "model_kwargs_by_model": {m: model_kwargs_for(m, model_kwargs) for m in models_},
      "dtypes": list(dtypes), "budget_s": budget_s,
      "machine_limits": limits, "memory_source": memory_source(),
      "timing": "train seconds exclude compilation; lrjax's include one validation "
                "pass at the end, the baselines' do not"
                + (f"; fastest of {repeats} interleaved rounds per case" if repeats > 1 else ""),
      "repeats": repeats, "complete": False,
  }

  def fill():
    report.update(rows=[dataclasses.asdict(r) for r in rows], summary=summaries,
                  targets=targets(summaries),
                  skipped=[{"model": s["model"], "dtype": s["dtype"], "members": s["members"],
                            "batch": s["batch"], "case": c, "reason": why}
                           for s in summaries for c, why in s["skipped"].items()])
    return report

  for model_name, dtype, n, batch in cells:
    r, s = bench_cell(model_name, ds, n, batch, epochs, cases, limits, model_kwargs, log,
                      repeats, dtype, budget, costs)
    rows += r
    summaries.append(s)
    if on_progress is not None:
      on_progress(fill())
  if measure:
    # Measured again at the end: on a shared machine one measurement can catch a slow
    # spell, and efficiencies against a peak that is too low would exceed 100%.
    again = baselines.machine_limits()
    if "peak_flops_bfloat16" in limits:
      again["peak_flops_bfloat16"] = baselines.matmul_peak("bfloat16")
    limits.update({k: max(v, again[k]) for k, v in limits.items()})
    log(f"machine, best of start and end: {limits['peak_flops'] / 1e9:,.1f} GFLOP/s, "
        f"{limits['peak_bytes_per_s'] / 1e9:,.1f} GB/s")
    rate_against(rows, summaries, limits)
  report["complete"] = True
  return fill()


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
  parser.add_argument(
      "--models", default="mlp,cnn",
      help="comma-separated: mlp (256-256), cnn (32-64 channels), resnet20 (ResNet-20 with "
           "BatchNorm, stage widths 16/32/64 x width; width 0.5 unless --model-kwargs sets "
           "it), on the 8x8 digits")
  parser.add_argument("--dtypes", default="float32",
                      help="comma-separated compute dtypes: float32,bfloat16 (weights and "
                           "optimizer state stay float32 in every case)")
  parser.add_argument("--model-kwargs", default="",
                      help='JSON: model settings, per model (\'{"resnet20": {"width": 1}}\') '
                           'or for every model (\'{"hidden": [32]}\')')
  parser.add_argument("--members", default="1,8,64,256", help="grid sizes N")
  parser.add_argument("--batch", default="32,128", help="batch sizes")
  parser.add_argument("--epochs", type=float, default=10.0,
                      help="epochs of the training split (rates are per example/step)")
  parser.add_argument("--cases", default="all",
                      help=f"'all' or comma-separated names/numbers of {list(CASES)}")
  parser.add_argument("--dataset", default="digits")
  parser.add_argument("--json", default="bench.json",
                      help="where to write the report (rewritten after every cell)")
  parser.add_argument("--repeats", type=int, default=1,
                      help="interleaved rounds per cell; each case keeps its fastest")
  parser.add_argument("--budget-s", type=float, default=None,
                      help="seconds for all cells: smallest N first, and a case whose "
                           "estimate (its time at a smaller N, scaled) exceeds the time "
                           "left is skipped and listed")
  parser.add_argument("--quick", action="store_true", help="smoke run: N=1,8, 1 epoch, mlp")
  args = parser.parse_args(argv)
  if args.quick:
    args.models, args.members, args.epochs = "mlp", "1,8", 1.0
  log = lambda s: print(s, file=sys.stderr, flush=True)
  command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])

  def write(report):
    if args.json:
      report["command"] = command
      with open(args.json, "w") as f:
        json.dump(report, f, indent=1, default=float)

  try:
    # One CPU device per core, as the `lrjax` command sets up; before any JAX
    # computation (a no-op once JAX has started). LRJAX_CPU_DEVICES=1 to compare.
    lrjax.use_cpu_cores()
    t0 = time.perf_counter()
    model_kwargs = json.loads(args.model_kwargs) if args.model_kwargs else None
    report = run_bench(args.models.split(","), _ints(args.members), _ints(args.batch),
                       args.epochs, _cases(args.cases), model_kwargs=model_kwargs,
                       dataset=args.dataset, log=log, repeats=args.repeats,
                       dtypes=args.dtypes.split(","), budget_s=args.budget_s,
                       on_progress=write)
  except (lrjax.ConfigError, ValueError) as e:
    print(f"{prog}: {e}", file=sys.stderr)
    return 2
  report["command"] = command
  report["wall_seconds"] = time.perf_counter() - t0
  print(format_table(report))
  if args.json:
    write(report)
    print(f"\nwrote {args.json}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
