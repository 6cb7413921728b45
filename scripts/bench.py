"""Benchmark lrjax's grid against the alternatives (issue 5); see ``lrjax.bench``.

  python scripts/bench.py --quick
  python scripts/bench.py --models mlp --members 1,8,64 --batch 32,128 --epochs 2
"""
import sys

from lrjax import parallel
from lrjax.bench import main

if __name__ == "__main__":
  parallel.use_cpu_cores()  # as the `lrjax` command does; LRJAX_CPU_DEVICES=1 to compare
  sys.exit(main())
