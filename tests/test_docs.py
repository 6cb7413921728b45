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


def _shell_params(slow):
  for param in _blocks("bash"):
    block = param.values[0]
    for j, command in enumerate(_commands(block)):
      if any(command.startswith(p) for p in SKIPPED):
        continue
      is_bench = command.startswith(("lrjax bench", "python benchmarks/bench.py"))
      if is_bench != slow:
        continue
      if "--config.dataset=mnist " in command + " " or "--resume" in command:
        continue  # catalog data needs the network; --resume needs an interrupted run
      yield pytest.param(command, id=f"{param.id}-{j}")


def _check_shell(command, tmp_path):
  (tmp_path / "runs").mkdir(exist_ok=True)
  out = _run(_adapt(command, tmp_path), ROOT)
  assert out.returncode == 0, f"{command}\n{out.stderr[-3000:]}"


def test_documented_commands_cover_resume_and_catalog_data_elsewhere():
  # The two kinds not run above are exercised by tests of their own.
  text = (ROOT / "tests" / "test_cli.py").read_text() + (ROOT / "tests" /
                                                         "test_data.py").read_text()
  assert "--resume" in text and "mock_data" in text


@pytest.mark.parametrize("command", list(_shell_params(slow=False)))
def test_shell_command_runs_from_the_repository(command, tmp_path):
  _check_shell(command, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("command", [p for p in _shell_params(slow=True)
                                     if "--quick" in p.values[0] or "--help" in p.values[0]])
def test_benchmark_command_runs_from_the_repository(command, tmp_path):
  _check_shell(command, tmp_path)
