#!/usr/bin/env python3
"""One entry point for a fresh clone: sets up .venv on first use, then runs a task.

  python3 dev.py run    # the main experiment on the built-in digits -> runs/<timestamp>/
  python3 dev.py test   # the default test suite

Needs only python3 (3.11+). The environment is created in .venv and re-installed
when pyproject.toml changes. Extra arguments are passed on (to `lrjax run` or pytest).
"""

import hashlib
import os
import subprocess
import sys
import time
import venv

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
BIN = os.path.join(VENV, "Scripts" if os.name == "nt" else "bin")
PY = os.path.join(BIN, "python")
STAMP = os.path.join(VENV, ".lrjax-installed")


def ensure_env() -> None:
  if sys.version_info < (3, 11):
    sys.exit(f"lrjax needs Python >= 3.11; this is {sys.version.split()[0]}.")
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    want = hashlib.sha256(f.read()).hexdigest()
  if os.path.exists(STAMP) and open(STAMP).read() == want and os.path.exists(PY):
    return
  if not os.path.exists(PY):
    print(f"dev.py: creating {VENV}", flush=True)
    venv.create(VENV, with_pip=True)
  print("dev.py: installing lrjax and its dependencies (first run takes a few minutes)",
        flush=True)
  pip = [PY, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
  subprocess.check_call(pip + ["-e", f"{ROOT}[test]"])
  with open(STAMP, "w") as f:
    f.write(want)


def main(argv: list[str]) -> int:
  if not argv or argv[0] not in ("run", "test"):
    print(__doc__)
    return 2
  ensure_env()
  task, rest = argv[0], argv[1:]
  if task == "run":
    workdir = os.path.join("runs", "lr_batch_aug-" + time.strftime("%Y%m%d-%H%M%S"))
    cmd = [os.path.join(BIN, "lrjax"), "run", "experiments/lr_batch_aug.py",
           "--workdir", workdir, *rest]
  else:
    cmd = [PY, "-m", "pytest", *rest]
  print("dev.py: " + " ".join(cmd), flush=True)
  return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
