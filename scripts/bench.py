"""Benchmark lrjax's grid against the alternatives (issue 5); see ``lrjax.bench``.

  python scripts/bench.py --quick
  python scripts/bench.py --models mlp --members 1,8,64 --batch 32,128 --epochs 2
"""
import sys

from lrjax.bench import main

if __name__ == "__main__":
  sys.exit(main())
