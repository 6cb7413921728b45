"""Segment checkpoints of a grid run, so ``lrjax run --resume`` continues after a crash
or a preemption (SIGTERM / SIGINT: ``catch_signals``).

A checkpoint is one ``.npz`` per chunk: the leaves of the training state and of the
metrics recorded so far, how many segments are done, and a manifest (shape, dtype and
SHA-256 of every array). The tree structure is not stored: the engine re-creates it
(``program.init``) and the leaves are poured back in, so no pickling. A save is
atomic (temp file, fsync, rename) and a file that does not match its manifest is
reported (``ConfigError``), never loaded.

Plain numpy rather than orbax: the state is a handful of host arrays written from one
process, and an orbax ``PyTreeCheckpointer`` save costs ~40 ms against ~1 ms here,
more than the training of a small run's segment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import zipfile

import jax
import numpy as np

from lrjax.errors import ConfigError

SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}


class Interrupted(KeyboardInterrupt):
  """Training stopped at a segment's end on SIGTERM / SIGINT, its checkpoint saved.

  Attributes:
    signum: the signal; ``exit_code`` is ``128 + signum`` (143 SIGTERM, 130 SIGINT).
    done, total: evaluations done and planned (all chunks of the run).
  """

  def __init__(self, signum: int, done: int = 0, total: int = 0):
    super().__init__(signum, done, total)
    self.signum, self.done, self.total = signum, done, total

  @property
  def exit_code(self) -> int:
    return 128 + self.signum

  def __str__(self) -> str:
    name = SIGNAL_NAMES.get(self.signum, f"signal {self.signum}")
    if not self.total:  # a second signal: stopped at once, the last checkpoint stands
      return f"interrupted by {name} (a second time: at once, from the last checkpoint)"
    return f"interrupted by {name} after evaluation {self.done}/{self.total}"


class StopRequest:
  """Set by ``catch_signals``'s handlers; the trainer looks at it after each segment."""

  def __init__(self):
    self.signum: int | None = None

  @property
  def requested(self) -> bool:
    return self.signum is not None


@contextlib.contextmanager
def catch_signals():
  """While inside, SIGTERM and SIGINT ask training to stop at the next segment's end.

  Yields a ``StopRequest``. A second signal stops at once (``Interrupted``, nothing
  saved). Outside the main thread nothing is installed (Python allows handlers only
  there) and the request is never set. The previous handlers are restored on exit.

  Example:
    >>> with catch_signals() as stop:
    ...   os.kill(os.getpid(), signal.SIGTERM)
    ...   stop.signum == signal.SIGTERM
    True
    >>> signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    True
  """
  stop = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield stop
    return

  def handler(signum, frame):
    if stop.requested:
      raise Interrupted(signum)
    stop.signum = signum

  previous = {s: signal.signal(s, handler) for s in SIGNAL_NAMES}
  try:
    yield stop
  finally:
    for s, h in previous.items():
      signal.signal(s, h if h is not None else signal.SIG_DFL)


def chunk_path(directory: str, chunk: int) -> str:
  return os.path.join(directory, f"chunk{chunk:04d}.npz")


def _digest(a: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def save(path: str, state, metrics: list, segments_done: int) -> None:
  """Writes ``(state, metrics)`` atomically (temp file, fsync, rename) with a manifest.

  Example:
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "c.npz")
    >>> save(p, {"w": np.ones(2)}, [{"loss": np.zeros(2)}], 1)
    >>> load(p, {"w": np.zeros(2)}, {"loss": np.zeros(2)})[2]
    1
  """
  stacked = jax.tree.map(lambda *xs: np.stack(xs), *metrics) if metrics else None
  leaves = jax.tree.leaves(jax.device_get(state))
  metric_leaves = [] if stacked is None else jax.tree.leaves(stacked)
  arrays = {f"s{i}": np.asarray(a) for i, a in enumerate(leaves)}
  arrays.update({f"m{i}": np.asarray(a) for i, a in enumerate(metric_leaves)})
  arrays["segments_done"] = np.int64(segments_done)
  manifest = {k: [list(a.shape), a.dtype.str, _digest(a)] for k, a in arrays.items()}
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    np.savez(f, manifest=np.array(json.dumps(manifest, sort_keys=True)), **arrays)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  with contextlib.suppress(OSError):  # make the rename itself durable
    fd = os.open(directory, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def _corrupt(path: str, why: str) -> ConfigError:
  partial = os.path.dirname(os.path.abspath(path))
  return ConfigError(f"checkpoint {path} is corrupt or incomplete ({why}); it was not "
                     f"loaded. Delete it to redo that chunk, or delete {partial} (and "
                     f"drop --resume) to start over.")


def _read(path: str) -> dict:
  """All arrays of a checkpoint, checked against its manifest."""
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
    raise _corrupt(path, f"unreadable: {type(e).__name__}: {e}") from None
  try:
    manifest = json.loads(str(arrays.pop("manifest")))
  except (KeyError, ValueError):
    raise _corrupt(path, "no manifest") from None
  if sorted(manifest) != sorted(arrays):
    raise _corrupt(path, "arrays differ from its manifest")
  for k, (shape, dtype, digest) in manifest.items():
    a = arrays[k]
    if list(a.shape) != shape or a.dtype.str != dtype or _digest(a) != digest:
      raise _corrupt(path, f"array {k} does not match its checksum")
  return arrays


def load(path: str, state_like, metrics_like):
  """Reads a checkpoint into the structures of ``state_like`` and one segment's metrics.

  Raises ``ConfigError`` (naming the file) if it is truncated, garbled or does not fit
  ``state_like``.

  Returns:
    ``(state, metrics list, segments_done)``.

  Example:
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "c.npz")
    >>> save(p, {"w": np.ones(2)}, [], 0)
    >>> with open(p, "r+b") as f:
    ...   _ = f.truncate(os.path.getsize(p) // 2)
    >>> load(p, {"w": np.zeros(2)}, {})
    Traceback (most recent call last):
    ...
    lrjax.errors.ConfigError: checkpoint ... is corrupt or incomplete ...
  """
  f = _read(path)
  done = int(f["segments_done"])
  state_def = jax.tree.structure(state_like)
  state_leaves = [f.get(f"s{i}") for i in range(state_def.num_leaves)]
  like = jax.tree.leaves(state_like)
  if any(a is None or np.shape(a) != np.shape(b) for a, b in zip(state_leaves, like)):
    raise _corrupt(path, "its state does not fit this run")
  state = jax.tree.unflatten(state_def, state_leaves)
  if done == 0:
    return state, [], 0
  metric_def = jax.tree.structure(metrics_like)
  metric_leaves = [f.get(f"m{i}") for i in range(metric_def.num_leaves)]
  if any(a is None or len(a) != done for a in metric_leaves):
    raise _corrupt(path, "its metrics do not fit this run")
  stacked = jax.tree.unflatten(metric_def, metric_leaves)
  metrics = [jax.tree.map(lambda a, k=k: a[k], stacked) for k in range(done)]
  return state, metrics, done
