"""Segment checkpoints of a grid run, so ``lrjax run --resume`` continues after a crash.

A checkpoint is one ``.npz`` per chunk: the leaves of the training state and of the
metrics recorded so far, plus how many segments are done. The tree structure is
not stored: the engine re-creates it (``program.init``) and the leaves are poured
back in, so no pickling. Plain numpy rather than orbax: the state is a handful of
host arrays written from one process, and orbax is not otherwise a dependency.
"""

from __future__ import annotations

import os

import jax
import numpy as np


def chunk_path(directory: str, chunk: int) -> str:
  return os.path.join(directory, f"chunk{chunk:04d}.npz")


def save(path: str, state, metrics: list, segments_done: int) -> None:
  """Writes ``(state, metrics)`` atomically (temp file + rename).

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
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, segments_done=np.int64(segments_done), **arrays)
  os.replace(tmp, path)


def load(path: str, state_like, metrics_like):
  """Reads a checkpoint into the structures of ``state_like`` and one segment's metrics.

  Returns:
    ``(state, metrics list, segments_done)``.
  """
  with np.load(path) as f:
    done = int(f["segments_done"])
    state_def = jax.tree.structure(state_like)
    state = jax.tree.unflatten(state_def, [f[f"s{i}"] for i in range(state_def.num_leaves)])
    metric_def = jax.tree.structure(metrics_like)
    if done == 0:
      return state, [], 0
    stacked = jax.tree.unflatten(metric_def,
                                 [f[f"m{i}"] for i in range(metric_def.num_leaves)])
  metrics = [jax.tree.map(lambda a, k=k: a[k], stacked) for k in range(done)]
  return state, metrics, done
