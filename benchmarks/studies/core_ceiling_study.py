"""How far one-stream-per-core can take lrjax past the `scans` baseline on this CPU.

lrjax's CPU speed-up comes from running one independent stream of members per
core, while a user's `scans` loop runs one member at a time with XLA's threads
splitting each op. So, if lrjax trains a member as fast per core as a plain
compiled scan does on one core ("per-core parity"), its ratio to `scans` on C
cores is at most

    ceiling = C * t(scans, all cores) / t(scans, one core)

This script measures the three inputs, each in its own process (CPU affinity and
the device count are per process), alternating the variants over rounds:

* `scans` on one core (`taskset -c 0`, one CPU device);
* `scans` with XLA's defaults on all cores (one CPU device, as in `lrjax bench`);
* lrjax and `scans` side by side on one core (parity check), interleaved in one
  `lrjax bench` process.

From the repository root:

  python benchmarks/studies/core_ceiling_study.py --model mlp --batch 32 --members 16 --rounds 2
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench.py")


def bench(args, cases: str, one_core: bool) -> dict[str, float]:
  """Fastest train seconds per case from one `benchmarks/bench.py` process."""
  with tempfile.TemporaryDirectory() as out:
    path = os.path.join(out, "bench.json")
    cmd = [sys.executable, BENCH, "--models", args.model, "--members", str(args.members),
           "--batch", str(args.batch), "--epochs", str(args.epochs), "--repeats", "2",
           "--cases", cases, "--json", path]
    if one_core:
      cmd = ["taskset", "-c", "0"] + cmd
    env = {**os.environ, "LRJAX_CPU_DEVICES": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    with open(path) as f:
      rows = json.load(f)["rows"]
  return {r["case"]: r["train_s"] for r in rows}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--model", default="mlp")
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--members", type=int, default=16)
  ap.add_argument("--epochs", type=float, default=2.0)
  ap.add_argument("--rounds", type=int, default=2)
  args = ap.parse_args()
  cores = len(os.sched_getaffinity(0))
  one, many, parity = [], [], []
  for r in range(args.rounds):
    one.append(bench(args, "scans", one_core=True)["scans"])
    many.append(bench(args, "scans", one_core=False)["scans"])
    both = bench(args, "lrjax,scans", one_core=True)
    parity.append(both["scans"] / both["lrjax"])
    print(f"round {r + 1}: scans one core {one[-1]:.3f} s, all {cores} cores {many[-1]:.3f} s; "
          f"one core: scans / lrjax {parity[-1]:.2f}", flush=True)
  ratio = [cores * m / o for m, o in zip(many, one)]
  print(f"{args.model} B={args.batch} N={args.members}: scans one core {min(one):.3f} s, "
        f"{cores} cores {min(many):.3f} s (threads speed it up "
        f"{min(one) / min(many):.2f}x); per-core parity ceiling for lrjax / scans = "
        f"{cores} x {min(many):.3f} / {min(one):.3f} = {cores * min(many) / min(one):.2f} "
        f"(per round {', '.join(f'{x:.2f}' for x in ratio)}); on one core lrjax runs at "
        f"{np.median(parity):.2f}x scans' speed (per round "
        f"{', '.join(f'{x:.2f}' for x in parity)})")


if __name__ == "__main__":
  main()
