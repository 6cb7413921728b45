"""Run directories: refusing to overwrite, writing results atomically, the ``.partial`` dir.

A run directory is written into a temporary sibling that is renamed into place at
the end, so a failed run leaves nothing half-written. Checkpoints live in
``<workdir>.partial`` until the run directory exists.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import ml_collections
import numpy as np

from lrjax.analysis import report
from lrjax.engine import GridResult
from lrjax.errors import ConfigError


def plain(value):
  """ConfigDict / tuples / numpy scalars -> JSON-able Python values.

  Example:
    >>> plain({"lr": (0.1, np.float32(0.5))})
    {'lr': [0.1, 0.5]}
  """
  if isinstance(value, (ml_collections.ConfigDict, dict)):
    return {k: plain(v) for k, v in dict(value).items()}
  if isinstance(value, (tuple, list)):
    return [plain(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def check_workdir(workdir: str, overwrite: bool = False) -> None:
  """Refuses to overwrite an existing non-empty workdir unless asked."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir: {workdir} exists and is not a directory; choose another.")
  if os.path.isdir(workdir) and os.listdir(workdir) and not overwrite:
    raise ConfigError(f"--workdir: {workdir} already holds files; lrjax does not overwrite "
                      f"a run silently. Choose a new --workdir, or pass --overwrite to "
                      f"replace it.")


def write_results(result: GridResult, config: dict, workdir: str) -> list[str]:
  """Writes config.json, members/history tables, summary, figures and report.

  Writes into a temporary sibling directory and renames it into place at the end.
  """
  parent = os.path.dirname(os.path.abspath(workdir)) or "."
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".lrjax-", dir=parent)
  try:
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(config, f, indent=2, sort_keys=True)
    result.members.to_parquet(os.path.join(tmp, "members.parquet"), index=False)
    result.members.to_csv(os.path.join(tmp, "members.csv"), index=False)
    result.history.to_parquet(os.path.join(tmp, "history.parquet"), index=False)
    with open(os.path.join(tmp, "run_info.json"), "w") as f:
      json.dump(plain(result.info), f, indent=2)
    report.write_report(tmp)
    if os.path.isdir(workdir):
      shutil.rmtree(workdir)
    os.replace(tmp, workdir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return sorted(os.path.join(workdir, n) for n in os.listdir(workdir))


def partial_dir(workdir: str) -> str:
  """Where a run's checkpoints live until it finishes: ``<workdir>.partial``."""
  return os.path.abspath(workdir).rstrip(os.sep) + ".partial"
