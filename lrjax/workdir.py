"""Run directories: refusing to overwrite, writing results atomically, the ``.partial`` dir.

A run directory is written into a temporary sibling that is renamed into place at
the end, so a failed run leaves nothing half-written; it gets the usual permissions
(``0o777`` less the umask), not ``mkdtemp``'s private ``0o700``. Checkpoints, the
TensorBoard logs (``tb/``) and ``PartialTables``' snapshot of the tables so far
(``lrjax report WORKDIR.partial``) live in ``<workdir>.partial`` until the run
directory exists.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import tempfile
import warnings
from typing import Sequence

import ml_collections
import numpy as np
import pandas as pd

from lrjax.analysis import failure, report
from lrjax.engine import GridResult, devices
from lrjax.errors import ConfigError
from lrjax.metric_writers import MetricWriter
from lrjax.outcomes import member_status, status_arguments


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


def is_finished_run(workdir: str) -> bool:
  """Whether ``workdir`` holds a finished run (its ``members.parquet`` and
  ``config.json``).

  Example:
    >>> is_finished_run("/nonexistent")
    False
  """
  return all(os.path.isfile(os.path.join(workdir, n))
             for n in ("members.parquet", "config.json"))


def _exchange(a: str, b: str) -> bool:
  """Swaps two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
  kernel, the filesystem or the C library cannot."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = libc.renameat2
  except (OSError, AttributeError):
    return False
  at_fdcwd, rename_exchange = -100, 2
  return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_dir(new: str, target: str) -> None:
  """Puts directory ``new`` in the place of ``target`` (which may not exist) and deletes
  the old ``target``.

  The two are exchanged atomically where Linux allows it, so at every instant
  ``target`` is either the old directory or the new one, even across a crash;
  elsewhere ``target`` is moved aside first and the move undone if the rename fails.

  Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> old, new = os.path.join(root, "run"), os.path.join(root, "tmp")
    >>> os.makedirs(old); os.makedirs(new)
    >>> open(os.path.join(new, "x"), "w").close()
    >>> replace_dir(new, old)
    >>> os.listdir(old), os.path.exists(new)
    (['x'], False)
  """
  if not os.path.isdir(target):
    os.replace(new, target)
    return
  if _exchange(new, target):
    shutil.rmtree(new)  # `new` now holds the old directory
    return
  aside = tempfile.mkdtemp(prefix=".lrjax-old-", dir=os.path.dirname(os.path.abspath(target)))
  os.rmdir(aside)
  os.replace(target, aside)
  try:
    os.replace(new, target)
  except BaseException:
    os.replace(aside, target)
    raise
  shutil.rmtree(aside, ignore_errors=True)


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def write_results(result: GridResult, config: dict, workdir: str,
                  tb_dir: str | Sequence[str] | None = None) -> list[str]:
  """Writes config.json, members/history tables, summary, figures and report.

  Writes into a temporary sibling directory that replaces ``workdir`` at the end
  (``replace_dir``: an existing ``workdir`` stays whole until then); the directory
  gets ``0o777`` less the umask (as ``mkdir`` would give it). A ``tb_dir``
  (TensorBoard logs written while training), or several merged, is copied in as
  ``tb/``.

  Example:
    >>> import tempfile
    >>> from lrjax.analysis.synthetic import synthetic_run
    >>> run = synthetic_run(lrs=(0.01, 0.1), batch_sizes=(32,), seeds=(0,))
    >>> d = os.path.join(tempfile.mkdtemp(), "run")
    >>> _ = write_results(GridResult(run.members, run.history, None, {}), run.config, d)
    >>> oct(os.stat(d).st_mode & 0o777) == oct(0o777 & ~_umask())
    True
  """
  with _rebuilt(workdir) as tmp:
    for logs in [tb_dir] if isinstance(tb_dir, str) else (tb_dir or ()):
      if os.path.isdir(logs):
        shutil.copytree(logs, os.path.join(tmp, "tb"), dirs_exist_ok=True)
    _write_config(tmp, config)
    result.members.to_parquet(os.path.join(tmp, "members.parquet"), index=False)
    result.members.to_csv(os.path.join(tmp, "members.csv"), index=False)
    result.history.to_parquet(os.path.join(tmp, "history.parquet"), index=False)
    with open(os.path.join(tmp, "run_info.json"), "w") as f:
      json.dump(plain(result.info), f, indent=2)
  return sorted(os.path.join(workdir, n) for n in os.listdir(workdir))


def rewrite_config(workdir: str, config: dict) -> None:
  """Replaces a finished run's ``config.json`` and rebuilds its summary, figures and
  report from it, atomically: a copy is rebuilt and swapped in (``replace_dir``).

  Example:
    >>> import tempfile
    >>> from lrjax.analysis.synthetic import synthetic_run
    >>> run = synthetic_run(lrs=(0.01, 0.1), batch_sizes=(32,), seeds=(0,))
    >>> d = os.path.join(tempfile.mkdtemp(), "run")
    >>> _ = write_results(GridResult(run.members, run.history, None, {}), run.config, d)
    >>> rewrite_config(d, {**run.config, "note": "x"})
    >>> json.load(open(os.path.join(d, "config.json")))["note"]
    'x'
  """
  with _rebuilt(workdir) as tmp:
    for name in os.listdir(workdir):
      src = os.path.join(workdir, name)
      (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(tmp, name))
    _write_config(tmp, config)


@contextlib.contextmanager
def _rebuilt(workdir: str):
  """A temporary sibling of ``workdir`` to fill; on success its report is drawn and it
  replaces ``workdir`` (``replace_dir``), on any failure it is deleted."""
  parent = os.path.dirname(os.path.abspath(workdir)) or "."
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".lrjax-", dir=parent)
  try:
    os.chmod(tmp, 0o777 & ~_umask())
    yield tmp
    _draw_report(tmp, workdir)
    replace_dir(tmp, workdir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _draw_report(directory: str, workdir: str) -> None:
  """The summary, figures and report; an analysis that raises leaves the tables whole and
  a report that says what failed (``failure.write_failure_report``). The operating
  system's failures (a full disk) are not the analysis's: they raise."""
  try:
    report.write_report(directory)
  except OSError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    failure.write_failure_report(directory, e)
    warnings.warn(f"lrjax: the analysis of {workdir} failed in {failure.failed_step(e)} "
                  f"({type(e).__name__}: {e}); the tables are written, and report.html "
                  f"says what failed. `lrjax report {workdir}` draws it again.",
                  stacklevel=3)


def _write_config(directory: str, config: dict) -> None:
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)


def partial_dir(workdir: str) -> str:
  """Where a run's checkpoints live until it finishes: ``<workdir>.partial``."""
  return os.path.abspath(workdir).rstrip(os.sep) + ".partial"


class PartialTables(MetricWriter):
  """Keeps ``<workdir>.partial`` reportable while a run trains: after each checkpoint,
  ``members.parquet`` and ``history.parquet`` of what has been evaluated so far (beside
  the ``config.json`` the run already saved there), so ``lrjax report
  WORKDIR.partial`` works mid-run.

  Members not evaluated yet are left out. A member's ``final_*`` columns hold its
  latest evaluation; ``test_*`` are NaN (tested at the end); ``first_train_loss`` is
  NaN, so ``status`` is judged by chance accuracy only until the run ends.
  """

  def __init__(self, directory: str):
    self.directory = directory
    # One frame per written evaluation of a chunk (columns, not per-member dicts: a grid
    # of 16,384 members writes 16,384 rows at each evaluation).
    self._hist: list[pd.DataFrame] = []
    self._rows: list[pd.DataFrame] = []
    self._status_args: dict = {}
    self._dirty = False

  def start(self, run) -> None:
    self._status_args = dict(num_classes=run.dataset.num_classes,
                             num_val=len(run.dataset.validation),
                             **status_arguments(run.settings))

  def write(self, members, examples_seen, metrics, replayed=False) -> None:
    n = len(members)
    evaluation = {"member": members["member"].to_numpy().astype(np.int64),
                  "examples_seen": np.full(n, int(examples_seen), np.int64)}
    for name in metrics:
      if name != "diverged":
        evaluation[name] = np.asarray(metrics[name]).reshape(n)
    evaluation["diverged"] = (np.asarray(metrics["diverged"], bool).reshape(n)
                              if "diverged" in metrics else np.zeros(n, bool))
    self._hist.append(pd.DataFrame(evaluation))
    self._rows.append(members.reset_index(drop=True))
    self._dirty = True

  def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(members, history)`` of what has been evaluated so far."""
    # A replayed evaluation (a resumed run) writes rows already here: the last counts.
    history = pd.concat(self._hist, ignore_index=True).drop_duplicates(
        ["member", "examples_seen"], keep="last").sort_values(
        ["member", "examples_seen"], kind="stable").reset_index(drop=True)
    rows = pd.concat(self._rows, ignore_index=True).drop_duplicates("member", keep="last")
    self._hist, self._rows = [history], [rows]  # compacted: one frame each from here
    by_member = history.groupby("member", sort=True)
    last = by_member.last()
    members = rows.set_index("member").loc[last.index].reset_index()
    members["diverged"] = by_member["diverged"].any().to_numpy()
    members["diverged_at"] = np.nan
    members["updates"] = last["updates"].to_numpy().astype(np.int64)
    members["final_val_loss"] = last["val_loss"].to_numpy()
    members["final_val_acc"] = last["val_acc"].to_numpy()
    members["best_val_loss"] = by_member["val_loss"].min().to_numpy()
    members["best_val_acc"] = by_member["val_acc"].max().to_numpy()
    members["test_loss"] = np.nan
    members["test_acc"] = np.nan
    members["first_train_loss"] = np.float32(np.nan)
    members["final_train_loss"] = last["train_loss"].to_numpy()
    members["status"] = member_status(members, **self._status_args)
    return members, history.drop(columns="diverged")

  def flush(self) -> None:
    if not self._dirty or not self._hist:
      return
    members, history = self.tables()
    for name, df in (("members.parquet", members), ("history.parquet", history)):
      path = os.path.join(self.directory, name)
      df.to_parquet(path + ".tmp", index=False)
      os.replace(path + ".tmp", path)
    self._dirty = False


@contextlib.contextmanager
def locked(workdir: str):
  """Holds ``<workdir>.lock`` (an exclusive ``flock``) while a run of ``workdir`` lives.

  A second run of the same workdir, resumed or not, is refused while the first is
  alive; the kernel drops the lock when a process dies, so a crashed run never
  blocks its ``--resume``.

  Raises:
    ConfigError: another live process holds the lock (its pid named).

  Example:
    >>> import tempfile
    >>> d = os.path.join(tempfile.mkdtemp(), "run")
    >>> with locked(d):
    ...   os.path.exists(d + ".lock")
    True
  """
  path = os.path.abspath(workdir).rstrip(os.sep) + ".lock"
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
    os.close(fd)
    raise ConfigError(f"--workdir: {workdir} is in use by another lrjax run (pid {holder}); "
                      f"wait for it to finish, or stop it and pass --resume.") from None
  try:
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    yield path
  finally:
    with contextlib.suppress(OSError):
      os.unlink(path)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextlib.contextmanager
def locked_by_first_process(workdir: str):
  """``locked(workdir)`` for a run of one process or several (``jax.distributed``).

  Process 0 alone takes the lock, for the whole run; every process learns whether it
  got it, so a refused run stops on all its processes alike. Not one lock per
  process: ``flock`` excludes processes of the same run on one host from each other
  (and, on a shared filesystem that honours it, across hosts too), and only process 0
  writes the run directory.

  Raises:
    ConfigError: another live run holds the lock.

  Example:
    >>> import tempfile
    >>> d = os.path.join(tempfile.mkdtemp(), "run")
    >>> with locked_by_first_process(d):
    ...   os.path.exists(d + ".lock")
    True
  """
  with contextlib.ExitStack() as stack:
    error = None
    if devices.is_first_process():
      try:
        stack.enter_context(locked(workdir))
      except ConfigError as e:
        error = e
    if devices.agree_any(error is not None)[0]:
      raise error or ConfigError(
          f"--workdir: {workdir} is in use by another lrjax run (process 0 could not lock "
          f"it); wait for it to finish, or stop it and pass --resume.")
    yield os.path.abspath(workdir).rstrip(os.sep) + ".lock"
