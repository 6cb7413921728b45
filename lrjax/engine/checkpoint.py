"""Segment checkpoints of a grid run, so ``lrjax run --resume`` continues after a crash
or a preemption (SIGTERM / SIGINT: ``catch_signals``).

A chunk's checkpoint is an orbax ``CheckpointManager`` directory (``chunk0000/``) that
keeps its newest save only, one step per save, numbered by the segments done. A step
holds two orbax items committed together: ``arrays`` and ``manifest`` (JSON: the
segments done, per leaf its key path, shape, dtype and byte offset, and the SHA-256 of
each piece). The host leaves of the training state and of the metrics so far are
packed into one byte buffer saved as 32 MiB uint8 pieces (OCDBT/Zarr via TensorStore,
uncompressed): orbax spends about 1 ms per array, over 2 s for a state of 2000 leaves
(``benchmarks/studies/checkpoint_study.py``). Arrays spread over several processes are
saved as themselves, each process writing its shards (no SHA-256 for them: no process
holds them whole). The tree structure is not
pickled: the engine re-creates it (``program.init``), the manifest's key paths, shapes
and dtypes must match it, and the leaves are poured back in.

Why orbax: with several processes (``jax.distributed``) every process calls ``save``
and ``load`` together and orbax coordinates them (barriers, each process writing its
own shards, process 0 writing metadata and committing), which a per-process ``.npz``
cannot do. A save is atomic: orbax writes into ``<step>.orbax-checkpoint-tmp-*`` and
renames it into place once complete (the older step is deleted only afterwards), and
``save`` returns once that is done and fsynced. TensorStore does not checksum array
data (a flipped byte loads silently), hence the SHA-256 manifest, written in the same
commit. A checkpoint that is partial, garbled, or does not fit the run is reported
(``ConfigError``, naming it and the fix), never loaded. PRNG key arrays are stored as
their key data; ``None`` leaves (absent optional state) are kept by the structure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
from concurrent import futures

import jax
import jax.numpy as jnp
import numpy as np

from lrjax.errors import ConfigError

FORMAT = "lrjax-orbax-1"  # the manifest's "format"; another one is refused
# Files orbax writes into every step it commits (the last one, just before the rename).
ALIGN = 64  # bytes: each leaf's slot in the packed buffer starts at a multiple
PIECE_BYTES = 32 << 20  # the packed buffer goes to orbax in arrays of this size (parallel writes)
COMMITTED = ("_CHECKPOINT_METADATA", "commit_success.txt")
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
  """The checkpoint directory of grid chunk ``chunk`` in ``directory``.

  Example:
    >>> chunk_path("run.partial", 3)
    'run.partial/chunk0003'
  """
  return os.path.join(directory, f"chunk{chunk:04d}")


def _orbax():
  """``orbax.checkpoint``, imported on first use: its import is slow, and runs without a
  checkpoint directory never need it."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  return ocp


def _manager(path: str, saving: bool):
  """The orbax manager of one chunk: synchronous saves, the newest step kept."""
  ocp = _orbax()
  options = ocp.CheckpointManagerOptions(
      max_to_keep=1, create=saving, cleanup_tmp_directories=saving,
      enable_async_checkpointing=False)
  types = ocp.type_handlers  # the buffer is fresh and the save synchronous: no copy of it
  registry = types.create_type_handler_registry(
      (np.ndarray, types.NumpyHandler(deepcopy_host_arrays=False)),
      (jax.Array, types.get_type_handler(jax.Array)))
  handlers = {"arrays": ocp.PyTreeCheckpointHandler(  # floats barely compress
      use_compression=False, type_handler_registry=registry),
              "manifest": ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(os.path.abspath(path), options=options,
                               item_handlers=handlers)


def _is_key(x) -> bool:
  return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _spread(x) -> bool:
  """Whether ``x`` is an array over several processes (saved shard by shard)."""
  return isinstance(x, jax.Array) and not x.is_fully_addressable


def _leaves(tree) -> list[tuple[str, object, str | None]]:
  """``(key path, array, PRNG impl or None)`` per leaf; ``None`` leaves are none.

  Arrays spread over several processes stay ``jax.Array`` (orbax writes each process's
  shards); the rest come to the host. Key arrays become their key data.
  """
  out = []
  for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    impl = None
    if _is_key(x):
      impl, x = str(jax.random.key_impl(x)), jax.random.key_data(x)
    if not _spread(x):
      x = np.asarray(jax.device_get(x))
    out.append((jax.tree_util.keystr(p), x, impl))
  return out


def _bytes(a: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _digests(chunks: list[np.ndarray]) -> list[str]:
  """SHA-256 of each byte array, in threads (hashlib frees the GIL)."""
  with futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
    return list(pool.map(lambda b: hashlib.sha256(b).hexdigest(), chunks))


def _pack(groups: dict) -> tuple[dict, np.ndarray, dict]:
  """Host leaves -> one byte buffer (``ALIGN``-aligned slots) and per-group entries.

  Returns ``(entries, buffer, sharded)``: an entry per leaf (key path, shape, dtype, PRNG
  impl, byte offset ``at``: None for the multi-process arrays of ``sharded``).
  """
  entries, slots, sharded, size = {}, [], {}, 0
  for g, leaves in groups.items():
    entries[g] = []
    for i, (p, a, impl) in enumerate(leaves):
      e = {"path": p, "shape": list(a.shape), "dtype": jnp.dtype(a.dtype).name,
           "key": impl, "at": None}
      if isinstance(a, np.ndarray):
        e["at"], b = size, _bytes(a)
        slots.append((e, b))
        size += -(-b.size // ALIGN) * ALIGN
      else:
        sharded[f"{g}{i:05d}"] = a
      entries[g].append(e)
  buffer = np.zeros(size, np.uint8)
  for e, b in slots:
    buffer[e["at"]:e["at"] + b.size] = b
  return entries, buffer, sharded


def _fsync(root: str) -> None:
  """Makes a committed step durable: its files, its directories, the rename into place."""
  for dirpath, _, files in os.walk(root):
    for name in [*files, "."]:
      with contextlib.suppress(OSError):
        fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
        try:
          os.fsync(fd)
        finally:
          os.close(fd)
  with contextlib.suppress(OSError):
    fd = os.open(os.path.dirname(root), os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def save(path: str, state, metrics: list, segments_done: int) -> None:
  """Saves ``(state, metrics)`` atomically as step ``segments_done`` of ``path``.

  Every process calls it (orbax coordinates them; process 0 commits). It returns once
  the step is committed and fsynced; the previous step is then deleted.

  Args:
    path: the chunk's checkpoint directory (``chunk_path``).
    state: any pytree of arrays; ``None`` leaves and PRNG key arrays are fine.
    metrics: one pytree per segment done, all of one structure.
    segments_done: the step; larger than any already in ``path``.

  Example:
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "chunk0000")
    >>> save(p, {"w": np.ones(2), "b": None}, [{"loss": np.zeros(2)}], 1)
    >>> load(p, {"w": np.zeros(2), "b": None}, {"loss": 0})[2]
    1
  """
  stacked = jax.tree.map(lambda *xs: np.stack(xs), *metrics) if metrics else {}
  entries, buffer, sharded = _pack({"state": _leaves(state), "metrics": _leaves(stacked)})
  pieces = {f"p{i // PIECE_BYTES:04d}": buffer[i:i + PIECE_BYTES]
            for i in range(0, buffer.size, PIECE_BYTES)}
  digests = _digests(list(pieces.values()))
  manifest = {"format": FORMAT, "segments_done": int(segments_done),
              "pieces": [{"bytes": b.size, "sha256": d}
                         for b, d in zip(pieces.values(), digests)], **entries}
  arrays = {k: v for k, v in (("packed", pieces), ("sharded", sharded)) if v}
  ocp = _orbax()
  items = {"manifest": ocp.args.JsonSave(manifest)}
  if arrays:
    items["arrays"] = ocp.args.PyTreeSave(arrays)
  with _manager(path, saving=True) as manager:
    latest = manager.latest_step()
    if latest is not None and latest >= segments_done:
      raise ValueError(f"checkpoint {path} already holds step {latest}; a save must "
                       f"be of more segments than {latest}, not {segments_done}.")
    if not manager.save(int(segments_done), args=ocp.args.Composite(**items)):
      raise RuntimeError(f"orbax did not save step {segments_done} of {path}")
    manager.wait_until_finished()
  if jax.process_index() == 0:
    _fsync(os.path.join(path, str(int(segments_done))))


def _corrupt(path: str, why: str) -> ConfigError:
  partial = os.path.dirname(os.path.abspath(path))
  return ConfigError(f"checkpoint {path} is corrupt or incomplete ({why}); it was not "
                     f"loaded. Delete it to redo that chunk, or delete {partial} (and "
                     f"drop --resume) to start over.")


def _open(path: str):
  """``(manager, newest committed step, its manifest)``; the caller closes the manager."""
  if not os.path.isdir(path):
    raise _corrupt(path, "not a checkpoint directory")
  manager = _manager(path, saving=False)
  try:
    step = manager.latest_step()
    if step is None:
      raise _corrupt(path, "no save in it was completed; an interrupted save leaves "
                           "only *.orbax-checkpoint-tmp-* behind")
    for name in COMMITTED:
      if not os.path.isfile(os.path.join(path, str(step), name)):
        raise _corrupt(path, f"step {step} lacks {name}")
    ocp = _orbax()
    try:
      manifest = manager.restore(step, args=ocp.args.Composite(
          manifest=ocp.args.JsonRestore()))["manifest"]
    except Exception as e:  # orbax / TensorStore / JSON: all mean unreadable
      raise _corrupt(path, f"unreadable manifest: {type(e).__name__}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
      raise _corrupt(path, "no lrjax manifest")
    if manifest.get("segments_done") != step:
      raise _corrupt(path, f"step {step} holds a manifest of another step")
    return manager, step, manifest
  except BaseException:
    manager.close()
    raise


def _read(path: str) -> dict:
  """The manifest of the newest committed step (``segments_done``, per-leaf entries).

  Example:
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "chunk0000")
    >>> save(p, {"w": np.ones(2)}, [], 0)
    >>> _read(p)["state"][0]["path"], _read(p)["segments_done"]
    ("['w']", 0)
  """
  manager, _, manifest = _open(path)
  manager.close()
  return manifest


def _fits(entries: list[dict], like, what: str, path: str) -> None:
  """Refuses a checkpoint whose leaves are not those of ``like`` (None: any shape)."""
  want = []
  for p, x in jax.tree_util.tree_flatten_with_path(like)[0]:
    impl = str(jax.random.key_impl(x)) if _is_key(x) else None
    spec = jax.eval_shape(jax.random.key_data, x) if impl else x
    shape = dtype = None
    if hasattr(spec, "shape") and hasattr(spec, "dtype"):
      shape, dtype = list(spec.shape), np.dtype(spec.dtype).name
    want.append((jax.tree_util.keystr(p), shape, dtype, impl))
  got = [(e["path"], e["shape"], e["dtype"], e["key"]) for e in entries]
  if [w[0] for w in want] != [g[0] for g in got]:
    raise _corrupt(path, f"its {what} has other leaves than this run's")
  for w, g in zip(want, got):
    if w[3] != g[3] or any(a is not None and a != b for a, b in zip(w[1:3], g[1:3])):
      raise _corrupt(path, f"its {what} does not fit this run: {g[0]} is {g[1]} "
                           f"{g[3] or g[2]}, this run's {w[1]} {w[3] or w[2]}")


def _restore(manager, step: int, manifest: dict, path: str) -> dict:
  """Every group's arrays (host numpy), each checked against its manifest entry."""
  ocp = _orbax()
  as_np = ocp.RestoreArgs(restore_type=np.ndarray)
  wanted = {"packed": {f"p{i:04d}": as_np for i in range(len(manifest["pieces"]))},
            "sharded": {f"{g}{i:05d}": as_np for g in ("state", "metrics")
                        for i, e in enumerate(manifest[g]) if e["at"] is None}}
  wanted = {k: v for k, v in wanted.items() if v}
  arrays = {}
  if wanted:
    try:
      arrays = manager.restore(step, args=ocp.args.Composite(
          arrays=ocp.args.PyTreeRestore(restore_args=wanted)))["arrays"]
    except Exception as e:  # orbax / TensorStore: missing, truncated or garbled files
      raise _corrupt(path, f"unreadable arrays: {type(e).__name__}: {str(e)[:300]}") from None
  pieces = [arrays.get("packed", {}).get(f"p{i:04d}") for i in range(len(manifest["pieces"]))]
  if any(not isinstance(b, np.ndarray) or b.dtype != np.uint8 or b.shape != (p["bytes"],)
         for b, p in zip(pieces, manifest["pieces"])):
    raise _corrupt(path, "its packed arrays differ from its manifest")
  for i, (b, d) in enumerate(zip(manifest["pieces"], _digests(pieces))):
    if d != b["sha256"]:
      raise _corrupt(path, f"array data p{i:04d} does not match its checksum")
  buffer = np.concatenate(pieces) if len(pieces) > 1 else (
      pieces[0] if pieces else np.zeros(0, np.uint8))
  out = {}
  for g in ("state", "metrics"):
    out[g] = []
    for i, e in enumerate(manifest[g]):
      dtype = jnp.dtype(e["dtype"])
      if e["at"] is None:
        a = arrays.get("sharded", {}).get(f"{g}{i:05d}")
      else:
        raw = buffer[e["at"]:e["at"] + int(np.prod(e["shape"])) * dtype.itemsize]
        a = raw.view(dtype).reshape(e["shape"]) if raw.size % dtype.itemsize == 0 else None
      if (not isinstance(a, np.ndarray) or list(a.shape) != e["shape"]
          or a.dtype != dtype):
        raise _corrupt(path, f"array {e['path']} of its {g} differs from its manifest")
      out[g].append(a if e["key"] is None else jax.random.wrap_key_data(a, impl=e["key"]))
  return out


def load(path: str, state_like, metrics_like):
  """Reads a checkpoint into the structures of ``state_like`` and one segment's metrics.

  Every process calls it. Arrays come back as host numpy arrays (PRNG keys as key
  arrays), for the caller to place. ``state_like`` supplies the tree: its key paths,
  shapes and dtypes must match the checkpoint's; of ``metrics_like`` only the key
  paths count.

  Raises:
    ConfigError: naming ``path`` and the fix, if it is partial (no completed save),
      garbled (a file missing, truncated or changed: SHA-256 of the packed data), or not
      fitting ``state_like`` / ``metrics_like`` (another grid, model or optimizer).

  Returns:
    ``(state, metrics list, segments_done)``.

  Example:
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "chunk0000")
    >>> save(p, {"w": np.ones(2)}, [], 0)
    >>> load(p, {"w": np.zeros(3)}, {})
    Traceback (most recent call last):
    ...
    lrjax.errors.ConfigError: checkpoint ... is corrupt or incomplete ...
  """
  manager, step, manifest = _open(path)
  try:
    try:
      _fits(manifest["state"], state_like, "state", path)
      done = step
      if done:
        _fits(manifest["metrics"], metrics_like, "metrics", path)
        if any(e["shape"][:1] != [done] for e in manifest["metrics"]):
          raise _corrupt(path, "its metrics do not cover its segments")
      arrays = _restore(manager, step, manifest, path)
    except ConfigError:
      raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError):
      raise _corrupt(path, "a malformed manifest") from None
  finally:
    manager.close()
  state = jax.tree.unflatten(jax.tree.structure(state_like), arrays["state"])
  if not done:
    return state, [], 0
  stacked = jax.tree.unflatten(jax.tree.structure(metrics_like), arrays["metrics"])
  metrics = [jax.tree.map(lambda a, k=k: a[k], stacked) for k in range(done)]
  return state, metrics, done
