"""A 4,096-member grid with no chunk setting: memory-aware chunking sizes it.

64 learning rates x 4 batch sizes x 16 seeds of an MLP (hidden 256-256) on the
built-in digits, momentum SGD, one CPU device per core. ``max_memory`` is left at
0, so ``lrjax.engine.memory.plan_chunks`` picks the chunk size from the compiled
program's footprint and the free memory. Prints the wall time, the process's peak
resident set, the chunks chosen and the estimated against the compiled bytes.

Two epochs: one epoch of the 4,096 members is 5.3 M member-examples, about 140 s
on the 2-core reference machine with nothing else running (256 members trained an
epoch in 8.8 s), so the run takes about 5 minutes alone, and 10-15 on a machine
shared with other work; the memory footprint does not depend on the epochs.

  python benchmarks/studies/large_grid.py               # the measured run
  python benchmarks/studies/large_grid.py --seeds 1 --epochs 0.2   # a quick look
  python benchmarks/studies/large_grid.py --max-memory 2000000000  # forces chunks
"""

import argparse
import resource
import sys
import time

import numpy as np

from lrjax.engine import use_cpu_cores

GIB = 1 << 30


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=16, help="seeds (input groups)")
  parser.add_argument("--lrs", type=int, default=64, help="learning rates")
  parser.add_argument("--epochs", type=float, default=2.0)
  parser.add_argument("--max-memory", type=int, default=0, help="bytes; 0 = automatic")
  args = parser.parse_args(argv)
  use_cpu_cores()
  from lrjax import data, grid, models  # pylint: disable=import-outside-toplevel
  from lrjax.engine import TrainSettings, train_grid  # pylint: disable=import-outside-toplevel

  table = grid.make_grid({"lr": tuple(np.geomspace(1e-3, 1.0, args.lrs)),
                          "batch_size": (32, 64, 128, 256),
                          "seed": tuple(range(args.seeds))})
  model = models.get_model("mlp", 10, hidden=(256, 256))
  settings = TrainSettings(epochs=args.epochs, max_memory=args.max_memory)
  t0 = time.perf_counter()
  result = train_grid(model, data.load("digits"), table, settings, progress=True)
  wall = time.perf_counter() - t0
  info = result.info
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
  gib = lambda b: "-" if b is None else f"{b / GIB:.2f} GiB"
  members = result.members
  print(f"members {len(members)}  epochs {args.epochs}  devices {info['member_devices']}")
  print(f"wall {wall:.1f} s  (compile {info['compile_seconds']:.1f} s, "
        f"train {info['train_seconds']:.1f} s)")
  print(f"peak RSS {gib(peak)}")
  print(f"chunks {info['num_chunks']}  groups per chunk {info['groups_per_chunk']} "
        f"of {info['num_groups']} ({info['inner_size']} members each)")
  print(f"budget {gib(info['memory_budget'])}  estimated per chunk "
        f"{gib(info['memory_estimate'])}  compiled per chunk {gib(info['memory_compiled'])}")
  print(f"diverged {int(members.diverged.sum())}  best val_acc "
        f"{members.best_val_acc.max():.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
