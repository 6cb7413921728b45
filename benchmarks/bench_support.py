"""The parts of ``bench.py`` that do not train: its rows, the time budget, the goals
and the tables.

Kept beside ``bench.py`` (imported with this folder on ``sys.path``, as ``bench.py``
imports ``baselines``).
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from typing import Any

import jax
import numpy as np

# The goals each report is checked against (its "targets" list), besides "never
# slower than vmap_scan". On CPU at N = 64: the least speed-up of lrjax over the
# best of cases 2-5, by batch size.
CPU_SPEEDUP_GOALS = {32: 2.0, 128: 1.5}
# Every cell: the longest acceptable lrjax compile time (width probe included).
COMPILE_TIME_GOAL_S = 15.0


@dataclasses.dataclass
class Row:
  """One measured case of one (model, dtype, N, batch) cell."""

  model: str
  members: int
  batch: int
  case: str
  steps: int  # optimizer steps per member
  train_s: float
  compile_s: float
  wall_s: float  # the whole case, set-up included (lrjax: all of train_grid)
  member_steps_per_s: float
  examples_per_s: float  # throughput: member-examples per second
  model_flops_per_s: float
  peak_memory_bytes: float
  roofline: float  # max(FLOPs / peak FLOP/s, bytes / peak bandwidth) / measured time
  flop_efficiency: float  # FLOPs / peak FLOP/s / measured time
  speedup_of_lrjax: float  # this case's time / lrjax's time (> 1: lrjax is faster)
  max_abs_diff: float | None  # vs the reference (python_loop, else scans), checked members
  allclose: bool | None
  note: str = ""
  train_s_rounds: list[float] = dataclasses.field(default_factory=list)  # every round's time
  dtype: str = "float32"  # compute dtype (weights stay float32)
  # True: the case raised the memory high-water mark, so peak_memory_bytes is its own
  # peak; False: its peak is at most that (an accelerator's mark never goes down).
  peak_memory_own: bool = True


# -- peak memory -----------------------------------------------------------------------


def memory_source() -> str:
  """What ``peak_memory`` reads on this machine, for the report."""
  if jax.devices()[0].memory_stats():
    return ("device memory_stats()['peak_bytes_in_use'] (high-water mark since start; "
            "'(<=)': the case did not raise it)")
  if os.path.exists("/proc/self/clear_refs"):
    return "process VmHWM (peak resident set, reset before each case)"
  return "process ru_maxrss via resource.getrusage (high-water mark since start)"


def reset_peak_memory() -> bool:
  """Resets the process's peak resident set; True when it could (Linux >= 4.0)."""
  if jax.devices()[0].memory_stats():
    return False  # the device's own high-water mark does not reset
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def peak_memory() -> float:
  """Peak bytes: the device's high-water mark, else the process's peak resident set."""
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


def cell_key(model: str, dtype: str, members: int, batch: int) -> tuple:
  return (model, dtype, members, batch)


class Budget:
  """Skips a case whose estimated time exceeds what is left of ``seconds``.

  The estimate scales the case's last measurement at a smaller N of the same model,
  dtype and batch: its set-up and compile seconds as they were, its train seconds
  times the ratio of N (linear: pessimistic for vmapped cases). A case never
  measured at a smaller N always runs. ``seconds=None``: no budget.

  Example:
    >>> b = Budget(100.0)
    >>> b.record(("resnet20", "float32", 64, 128), "scans", wall_s=30.0, train_s=20.0)
    >>> b.reason(("resnet20", "float32", 1024, 128), "scans").split(" (")[0]
    'estimated 330 s'
    >>> b.reason(("resnet20", "float32", 256, 128), "lrjax") is None
    True
  """

  def __init__(self, seconds: float | None):
    self.seconds = seconds
    self.start = time.perf_counter()
    self.seen: dict[tuple, tuple[int, float, float]] = {}

  def left(self) -> float:
    return float("inf") if self.seconds is None else (
        self.seconds - (time.perf_counter() - self.start))

  def estimate(self, key: tuple, case: str) -> float | None:
    model, dtype, n, batch = key
    seen = self.seen.get((model, dtype, batch, case))
    if seen is None or seen[0] >= n:
      return None
    n0, wall_s, train_s = seen
    return (wall_s - train_s) + train_s * n / n0

  def reason(self, key: tuple, case: str) -> str | None:
    """Why ``case`` of cell ``key`` is skipped, or None to run it."""
    if self.seconds is None:
      return None
    est, left = self.estimate(key, case), self.left()
    if left <= 0:
      return f"budget of {self.seconds:.0f} s spent"
    if est is not None and est > left:
      n0 = self.seen[(key[0], key[1], key[3], case)][0]
      return f"estimated {est:.0f} s (from N={n0}) > {left:.0f} s left of the budget"
    return None

  def record(self, key: tuple, case: str, wall_s: float, train_s: float) -> None:
    model, dtype, n, batch = key
    self.seen[(model, dtype, batch, case)] = (n, wall_s, train_s)


def efficiency(flops: float, nbytes: float, seconds: float, limits: dict,
               dtype: str = "float32") -> tuple[float, float]:
  """``(roofline, flop_efficiency)``: max(FLOPs / peak, bytes / bandwidth) / time, and
  the FLOP term alone; the peak is the ``dtype``'s matmul peak where measured
  (``peak_flops_<dtype>``), else the float32 one."""
  compute = flops / limits.get(f"peak_flops_{dtype}", limits["peak_flops"])
  return max(compute, nbytes / limits["peak_bytes_per_s"]) / seconds, compute / seconds


def rate_against(rows: list[Row], summaries: list[dict], limits: dict) -> None:
  """Recomputes each row's roofline and FLOP efficiency against ``limits``."""
  per_cell = {cell_key(s["model"], s["dtype"], s["members"], s["batch"]): s
              for s in summaries}
  for r in rows:
    s = per_cell[cell_key(r.model, r.dtype, r.members, r.batch)]
    r.roofline, r.flop_efficiency = efficiency(
        s["flops_per_member_step"] * r.steps * r.members,
        s["bytes_per_member_step"] * r.steps * r.members, r.train_s, limits, r.dtype)


def _label(s: dict) -> str:
  dtype = "" if s.get("dtype", "float32") == "float32" else f" {s['dtype']}"
  return f"{s['model']}{dtype} N={s['members']} B={s['batch']}"


def targets(summaries: list[dict]) -> list[dict]:
  """The goals (``CPU_SPEEDUP_GOALS``, never slower than ``vmap_scan``,
  ``COMPILE_TIME_GOAL_S``), checked where the run has the cells they name."""
  out = []
  cpu = jax.devices()[0].platform == "cpu"
  for s in summaries:
    if "speedup_vs_best" not in s:
      continue
    if cpu and s["members"] == 64 and s["batch"] in CPU_SPEEDUP_GOALS:
      need = CPU_SPEEDUP_GOALS[s["batch"]]
      out.append({"target": f"{_label(s)}: >= {need}x best of 2-5",
                  "value": s["speedup_vs_best"], "met": s["speedup_vs_best"] >= need})
    if not np.isnan(s["speedup_vs_vmap_scan"]):
      out.append({"target": f"{_label(s)}: not slower than vmap_scan",
                  "value": s["speedup_vs_vmap_scan"], "met": s["speedup_vs_vmap_scan"] >= 1.0})
    out.append({"target": f"{_label(s)}: compile <= {COMPILE_TIME_GOAL_S:g} s",
                "value": s["lrjax_compile_s"], "met": s["lrjax_compile_s"] <= COMPILE_TIME_GOAL_S})
  return out


def format_table(report: dict[str, Any]) -> str:
  """The report as a Markdown table, then one summary line per cell."""
  lim = report["machine_limits"]
  bf16 = (f", {lim['peak_flops_bfloat16'] / 1e9:,.1f} GFLOP/s bf16 matmul"
          if "peak_flops_bfloat16" in lim else "")
  lines = [
      f"Machine: {report['devices'][0]}, {report['cpu_count']} cores; measured peak "
      f"{lim['peak_flops'] / 1e9:,.1f} GFLOP/s (f32 matmul n={lim['matmul_n']}){bf16}, "
      f"{lim['peak_bytes_per_s'] / 1e9:,.1f} GB/s (copy into a donated buffer).",
      f"Peak memory: {report['memory_source']}. Timing: {report['timing']}.",
      "",
      "| model | N | B | case | dtype | steps/member | train s | compile s | member-steps/s "
      "| examples/s | model GFLOP/s | roofline | FLOP eff. | peak MB | case time / lrjax "
      "| vs python_loop (else scans) | note |",
      "|---|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
  ]
  for r in report["rows"]:
    close = ("—" if r["allclose"] is None else
             f"{'allclose' if r['allclose'] else 'DIFFERS'} ({r['max_abs_diff']:.1e})")
    peak = f"{r['peak_memory_bytes'] / 2**20:,.0f}" + ("" if r.get("peak_memory_own", True)
                                                        else " (<=)")
    lines.append(
        f"| {r['model']} | {r['members']} | {r['batch']} | {r['case']} "
        f"| {r.get('dtype', 'float32')} | {r['steps']} "
        f"| {r['train_s']:.3f} | {r['compile_s']:.2f} | {r['member_steps_per_s']:,.0f} "
        f"| {r['examples_per_s']:,.0f} | {r['model_flops_per_s'] / 1e9:.2f} "
        f"| {100 * r['roofline']:.1f}% | {100 * r['flop_efficiency']:.1f}% "
        f"| {peak} | {r['speedup_of_lrjax']:.2f} | {close} | {r['note']} |")
  lines.append("")
  for s in report["summary"]:
    if "speedup_vs_best" in s:
      lines.append(
          f"- {_label(s)}: best baseline {s['best_baseline']}; "
          f"lrjax {s['speedup_vs_best']:.2f}x its speed, {s['speedup_vs_vmap_scan']:.2f}x "
          f"vmap_scan's; compile {s['lrjax_compile_s']:.2f} s; FLOPs from {s['flops_source']} "
          f"({s['flops_per_member_step'] / 1e6:.2f} MFLOP/member-step)"
          + (f"; per round {', '.join(f'{v:.2f}x' for v in s['speedup_vs_best_rounds'])}"
             if len(s["speedup_vs_best_rounds"]) > 1 else "") + ".")
  for s in report.get("skipped", []):
    lines.append(f"- skipped {_label(s)} {s['case']}: {s['reason']}")
  for t in report["targets"]:
    lines.append(f"- target {t['target']}: {t['value']:.2f} -> {'met' if t['met'] else 'NOT met'}")
  return "\n".join(lines)


def format_brief(report: dict[str, Any]) -> str:
  """One line per measured case: model, dtype, N, batch, case, seconds, throughput,
  lrjax's speed-up over the case, peak memory; then the skipped cases."""
  lines = ["| model | dtype | N | B | case | train s | examples/s | case time / lrjax "
           "| peak MB |", "|---|---|--:|--:|---|--:|--:|--:|--:|"]
  for r in report["rows"]:
    lines.append(f"| {r['model']} | {r.get('dtype', 'float32')} | {r['members']} "
                 f"| {r['batch']} | {r['case']} | {r['train_s']:.3f} "
                 f"| {r['examples_per_s']:,.0f} | {r['speedup_of_lrjax']:.2f} "
                 f"| {r['peak_memory_bytes'] / 2**20:,.0f} |")
  lines += [f"- skipped {_label(s)} {s['case']}: {s['reason']}"
            for s in report.get("skipped", [])]
  return "\n".join(lines)
