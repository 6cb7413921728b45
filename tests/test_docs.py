"""The README and docs/*.md are executable truth: every Python block and every command runs.

Python blocks run as written, each in a fresh interpreter. Shell commands run from
the repository root with two changes, both visible below: run directories and
output files go to a temporary directory, and an experiment given without an
argument runs its ``:runlocal`` version (the full studies take minutes; their
configs differ from ``:runlocal`` only in sizes). Commands that need what a test
machine lacks are listed in ``SKIPPED`` with the reason.
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = pathlib.Path(sys.executable).parent

# Command prefixes not run here, and why.
SKIPPED = {
    "python3 dev.py": "the Quickstart itself: CI runs `dev.py test`; `dev.py run` is the "
                      "main job, whose :runlocal version runs below",
    "pip install": "installs packages (needs the network)",
    "source ": "shell set-up, not a command",
}


def _blocks(lang):
  for doc in DOCS:
    text = doc.read_text()
    for i, match in enumerate(re.finditer(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)):
      yield pytest.param(match.group(1), id=f"{doc.name}-{lang}{i}")


def _commands(block):
  """Shell lines of a block, continuation lines joined, trailing comments dropped."""
  lines = block.replace("\\\n", " ").splitlines()
  return [re.sub(r"\s+#.*$", "", line).strip() for line in lines
          if line.strip() and not line.strip().startswith("#")]


def _adapt(command, tmp):
  command = re.sub(r"(experiments/\w+\.py)(?=\s)", r"\1:runlocal", command)
  command = command.replace(":runlocal:runlocal", ":runlocal")
  command = re.sub(r"(?<![\w/])runs/", f"{tmp}/runs/", command)
  return re.sub(r"--out (\S+)", lambda m: f"--out {tmp}/{m.group(1)}", command)


def _run(command, cwd, timeout=600):
  env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
  return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)


@pytest.mark.parametrize("code", list(_blocks("python")))
def test_python_block_runs_as_written(code, tmp_path):
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]


def _runnable(command, slow):
  if any(command.startswith(p) for p in SKIPPED):
    return False
  if "--config.dataset=mnist " in command + " " or "--resume" in command:
    return False  # catalog data needs the network; --resume needs an interrupted run
  is_bench = command.startswith(("lrjax bench", "python benchmarks/bench.py"))
  if is_bench and "--quick" not in command and "--help" not in command:
    return False  # a full benchmark takes minutes to hours
  return is_bench == slow


def _shell_params(slow):
  """One case per block: its commands run in order, sharing one temporary directory
  (``lrjax report runs/tiny`` reads what the ``lrjax run`` before it wrote)."""
  for param in _blocks("bash"):
    commands = [c for c in _commands(param.values[0]) if _runnable(c, slow)]
    if commands:
      yield pytest.param(commands, id=param.id)


def _check_shell(commands, tmp_path):
  (tmp_path / "runs").mkdir(exist_ok=True)
  for command in commands:
    out = _run(_adapt(command, tmp_path), ROOT)
    assert out.returncode == 0, f"{command}\n{out.stderr[-3000:]}"


def test_documented_commands_cover_resume_and_catalog_data_elsewhere():
  # The two kinds not run above are exercised by tests of their own.
  text = (ROOT / "tests" / "test_cli.py").read_text() + (ROOT / "tests" /
                                                         "test_data.py").read_text()
  assert "--resume" in text and "mock_data" in text


# Slow: each command is a fresh process (JAX's import, a compile, a report), about 40 s a
# block and 6 minutes in all; the default suite drives the same commands in-process
# (tests/test_cli.py, test_extend.py, test_settle.py, test_multiprocess.py).
@pytest.mark.slow
@pytest.mark.parametrize("commands", list(_shell_params(slow=False)))
def test_shell_commands_run_from_the_repository(commands, tmp_path):
  _check_shell(commands, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("commands", list(_shell_params(slow=True)))
def test_benchmark_commands_run_from_the_repository(commands, tmp_path):
  _check_shell(commands, tmp_path)
