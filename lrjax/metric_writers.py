"""Live metrics while a grid trains: TensorBoard (tensorboardX) and, optionally, W&B.

``lrjax.engine.train(run, writers=[...])`` hands every writer the host-side metrics
of each evaluation (the trainer already fetches them) as it goes:

* ``start(run)``: once, before the first segment (the ``Run`` names the members).
* ``write(members, examples_seen, metrics, replayed=False)``: after each
  evaluation, ``members`` the rows of ``run.table`` that were evaluated and
  ``metrics`` a dict of per-member arrays in that order (``val_loss``, ``val_acc``,
  ``train_loss``, ``lr_now``, ``noise_scale``, ``diverged``, ``updates``).
  ``replayed`` marks evaluations read back from a checkpoint when a run resumes.
* ``flush()``: after each checkpoint (and when training stops, even by an error).
* ``finish(members)``: the final members table (hyperparameters and results).

The caller closes writers (``close()``); one writer may serve several ``train``
calls (the runs of a ``grid.optimizer`` axis).

Example:
  >>> import tempfile
  >>> from lrjax import grid
  >>> t = grid.make_grid({"lr": (0.1,), "batch_size": (32,), "aug": (0.5,), "seed": (1,)})
  >>> member_run_name(t.to_dict("records")[0])
  'member0000_lr0.1_bs32_aug0.5_seed1'
"""

from __future__ import annotations

import functools
import math
import os
import re
import socket
import struct
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import crc32c
from tensorboardX.proto import event_pb2, summary_pb2
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionStartInfo
from tensorboardX.summary import hparams

from lrjax import outcomes
from lrjax.errors import ConfigError

# The per-member scalars written at every evaluation.
SCALARS = ("val_loss", "val_acc", "train_loss", "lr_now", "noise_scale")
# Final results written once per member, beside the HParams session.
FINAL_SCALARS = ("test_loss", "test_acc", "best_val_loss", "best_val_acc")
# The member's status (`lrjax.outcomes`) as the HParams metric ``status``: the
# dashboard's metrics are numbers (a string hparam is fixed when the session starts,
# before the status is known), so 0 trained, 1 slow, 2 failed, 3 diverged.
STATUS_CODES = {s: i for i, s in enumerate(outcomes.STATUSES)}
_SHORT = {"batch_size": "bs"}
_FIRST = ("lr", "batch_size", "aug", "seed")  # then the grid's other columns


class MetricWriter:
  """The interface ``train`` calls; every method is a no-op here."""

  def start(self, run) -> None:
    pass

  def write(self, members: pd.DataFrame, examples_seen: int, metrics: dict,
            replayed: bool = False) -> None:
    pass

  def flush(self) -> None:
    pass

  def finish(self, members: pd.DataFrame) -> None:
    pass

  def close(self) -> None:
    pass


def hyperparameters(row: Mapping[str, Any]) -> dict[str, Any]:
  """A member row's hyperparameters as plain Python values (``member`` left out).

  Example:
    >>> hyperparameters({"member": 3, "lr": np.float64(0.1), "batch_size": 32})
    {'lr': 0.1, 'batch_size': 32}
  """
  out = {}
  keys = list(row.keys())
  names = [n for n in _FIRST if n in keys]
  names += [n for n in keys if n not in _FIRST and n != "member"]
  for name in names:
    value = row[name]
    if isinstance(value, np.generic):
      value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
      value = str(value)
    out[str(name)] = value
  return out


def member_run_name(row: Mapping[str, Any]) -> str:
  """The TensorBoard run (subdirectory) of one member: its number and hyperparameters."""
  parts = [f"member{int(row['member']):04d}"]
  for name, value in hyperparameters(row).items():
    text = f"{value:g}" if isinstance(value, float) else str(value)
    parts.append(f"{_SHORT.get(name, name)}{text}")
  return re.sub(r"[^A-Za-z0-9._=+-]", "-", "_".join(parts))


@functools.lru_cache(maxsize=2)  # two summaries, whatever the number of members
def session_end(failed: bool):
  """The HParams ``session_end_info`` summary: status failure or success.

  Example:
    >>> from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
    >>> v = session_end(True).value[0]
    >>> HParamsPluginData.FromString(v.metadata.plugin_data.content).session_end_info.status
    2
  """
  from tensorboardX.proto.api_pb2 import Status
  from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
  from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
  _, _, summary = hparams({}, {})  # tensorboardX's tag and plugin name; status success
  info = SessionEndInfo(status=Status.Value("STATUS_FAILURE" if failed else
                                            "STATUS_SUCCESS"))
  content = HParamsPluginData(session_end_info=info, version=0).SerializeToString()
  value = summary.value[0]
  metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
      plugin_name=value.metadata.plugin_data.plugin_name, content=content))
  return Summary(value=[Summary.Value(tag=value.tag, metadata=metadata)])


def _member_status(row: Mapping[str, Any]) -> str | None:
  """A final members row's status: its ``status``, else from the ``diverged`` flag."""
  if isinstance(row.get("status"), str):
    return row["status"]
  if "diverged" in row:
    return "diverged" if bool(row["diverged"]) else None
  return None


def session_start(hparams_of_member: Mapping[str, Any]):
  """The HParams ``session_start_info`` summary of one member, as tensorboardX's
  ``hparams`` builds it (strings, booleans and numbers; None left out), without
  rebuilding the experiment summary for every member.

  Example:
    >>> from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
    >>> v = session_start({"lr": 0.1, "optimizer": "adam"}).value[0]
    >>> info = HParamsPluginData.FromString(v.metadata.plugin_data.content)
    >>> info.session_start_info.hparams["lr"].number_value, v.tag
    (0.1, '_hparams_/session_start_info')
  """
  info = SessionStartInfo()
  for name, value in hparams_of_member.items():
    if value is None:
      continue
    if isinstance(value, str):
      info.hparams[name].string_value = value
    elif isinstance(value, bool):
      info.hparams[name].bool_value = value
    elif isinstance(value, (int, float)):
      info.hparams[name].number_value = float(value)
  content = HParamsPluginData(session_start_info=info, version=0).SerializeToString()
  metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
      plugin_name="hparams", content=content))
  return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
      tag="_hparams_/session_start_info", metadata=metadata)])


def _masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC32C (tensorboardX's ``masked_crc32c``), on the native CRC."""
  crc = crc32c.crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _framed(data: bytes) -> bytes:
  """One TFRecord, the framing of TensorBoard event files: length, its masked CRC32C,
  the data, the data's masked CRC32C."""
  header = struct.pack("<Q", len(data))
  return b"".join((header, struct.pack("<I", _masked_crc32c(header)), data,
                   struct.pack("<I", _masked_crc32c(data))))


def _open_event_file(path: str):
  """Opens an event file to append to (one place, so that tests can count open files)."""
  return open(path, "ab")


class TensorBoardWriter(MetricWriter):
  """One TensorBoard run per member under ``logdir``, plus the HParams table.

  Each member's run (``member0007_lr0.1_bs32_aug0.5_seed1``) holds its scalars
  (``SCALARS``, step = examples seen by that member) and an HParams session with its
  hyperparameters; ``logdir`` itself holds the HParams experiment (hyperparameter
  and metric names), so TensorBoard's HParams dashboard lists the grid with the
  latest (finally, the final) metrics. At the end each member gets the metric
  ``status`` (`STATUS_CODES`: 0 trained, 1 slow, 2 failed, 3 diverged) and its
  session ends with status failure when it failed or diverged, success otherwise.

  Open files and threads are bounded, whatever the grid's size: events are kept as
  encoded records in memory, and every ``flush_secs`` (checked at each evaluation),
  at each ``flush()`` and at ``close()`` they are appended, in the caller's thread,
  to each member's event file, one file open at a time. (tensorboardX's
  ``SummaryWriter`` keeps a file, a queue and a thread per run: a 16,384-member grid
  ran out of file descriptors.) A member's evaluation is one event with all its
  scalars.
  """

  def __init__(self, logdir: str, flush_secs: float = 30.0, clock=time.monotonic):
    self.logdir = logdir
    self.flush_secs = float(flush_secs)
    self._clock = clock
    self._last_flush = clock()
    self._pending: dict[str, list[bytes]] = {}  # run directory -> encoded records
    self._files: dict[str, str] = {}  # run directory -> its event file, once created
    self._last_step: dict[int, int] = {}  # member -> examples seen at its last evaluation
    self._run_dirs: dict[int, str] = {}  # member -> its run directory

  def _add(self, run_dir: str, summary, step: int | None = None,
           wall_time: float | None = None) -> None:
    event = event_pb2.Event(wall_time=time.time() if wall_time is None else wall_time,
                            summary=summary)
    if step is not None:
      event.step = int(step)
    self._pending.setdefault(run_dir, []).append(_framed(event.SerializeToString()))

  def start(self, run) -> None:
    metric_names = {name: 0.0 for name in SCALARS + FINAL_SCALARS + ("status",)}
    now = time.time()
    for row in run.table.to_dict("records"):
      values = hyperparameters(row)
      if self.logdir not in self._files and self.logdir not in self._pending:
        experiment, _, _ = hparams(values, metric_names)  # the grid's names, once
        self._add(self.logdir, experiment, wall_time=now)
      self._add(self._run_dir(row), session_start(values), wall_time=now)

  def _run_dir(self, row: Mapping[str, Any]) -> str:
    """A member's run directory, named once from its grid row (the final members
    row has result columns too, which must not rename it)."""
    member = int(row["member"])
    if member not in self._run_dirs:
      self._run_dirs[member] = os.path.join(self.logdir, member_run_name(row))
    return self._run_dirs[member]

  def write(self, members, examples_seen, metrics, replayed=False) -> None:
    step = int(examples_seen)
    ids = members["member"].to_numpy().astype(int).tolist()  # no row dicts: N is large
    self._last_step.update(dict.fromkeys(ids, step))
    if replayed:  # already written before the run was interrupted
      return
    columns = [(name, np.asarray(metrics[name], np.float64).tolist())
               for name in SCALARS if name in metrics]
    now, value = time.time(), summary_pb2.Summary.Value
    for j, member in enumerate(ids):
      values = [value(tag=name, simple_value=column[j])
                for name, column in columns if math.isfinite(column[j])]
      if values:  # a diverged member's curves stop there
        run_dir = self._run_dirs.get(member) or self._run_dir(members.iloc[j].to_dict())
        self._add(run_dir, summary_pb2.Summary(value=values), step, now)
    if self._clock() - self._last_flush >= self.flush_secs:
      self.flush()

  def finish(self, members: pd.DataFrame) -> None:
    now = time.time()
    for row in members.to_dict("records"):
      run_dir, step = self._run_dir(row), self._last_step.get(int(row["member"]))
      values = [summary_pb2.Summary.Value(tag=name, simple_value=float(row[name]))
                for name in FINAL_SCALARS if name in row and np.isfinite(float(row[name]))]
      status = _member_status(row)
      if status in STATUS_CODES:
        values.append(summary_pb2.Summary.Value(tag="status",
                                                simple_value=float(STATUS_CODES[status])))
      if values:
        self._add(run_dir, summary_pb2.Summary(value=values), step, now)
      self._add(run_dir, session_end(status in ("failed", "diverged")), wall_time=now)

  def flush(self) -> None:
    for run_dir, records in self._pending.items():
      path = self._files.get(run_dir)
      if path is None:  # a new event file starts with its version record
        try:
          os.mkdir(run_dir)  # the logdir exists (made first); a member's run dir is new
        except FileExistsError:
          pass
        except FileNotFoundError:
          os.makedirs(run_dir, exist_ok=True)
        path = os.path.join(run_dir, f"events.out.tfevents.{time.time():.6f}."
                                     f"{socket.gethostname()}.{os.getpid()}")
        self._files[run_dir] = path
        version = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        records = [_framed(version.SerializeToString()), *records]
      with _open_event_file(path) as f:
        f.write(b"".join(records))
    self._pending = {}
    self._last_flush = self._clock()

  def close(self) -> None:
    self.flush()
    self._files = {}


# The most members whose curves the W&B writer logs one by one; above it, every k-th.
WANDB_MEMBER_CURVES = 64


class WandbWriter(MetricWriter):
  """One Weights & Biases run for the grid (needs ``pip install lrjax[wandb]``).

  At each evaluation (step ``examples_seen``) it logs the grid's spread of each scalar
  (``grid/val_loss_min``, ``_median``, ``_max``; ``grid/diverged_fraction``) and the
  curves of at most ``WANDB_MEMBER_CURVES`` members one by one
  (``member0007_lr0.1_bs32.../val_loss``): all of them in a small grid, every k-th in
  a larger one, said in the run's config (``curves_of``) and on stderr. At the end
  it logs the final members table (every member) as a ``wandb.Table``. So what it
  sends per step is bounded whatever the grid's size. ``init_kwargs`` go to
  ``wandb.init`` (``project``, ``name``, ``mode``, ...).
  """

  def __init__(self, **init_kwargs):
    self.init_kwargs = init_kwargs
    self._run = None
    self._step = 0
    self._every = 1

  def start(self, run) -> None:
    if self._run is None:
      import wandb  # optional dependency: imported only when asked for
      n = int(len(run.table))
      self._every = max(1, math.ceil(n / WANDB_MEMBER_CURVES))
      curves = ("every member" if self._every == 1 else
                f"every {self._every}th member ({math.ceil(n / self._every)} of {n})")
      if self._every > 1:
        print(f"lrjax: W&B logs the curves of {curves}; the members table has all.",
              file=sys.stderr)
      config = {"members": n, "curves_of": curves,
                "grid": {c: sorted(map(_plain, run.table[c].unique()), key=str)
                         for c in run.table.columns if c != "member"}}
      self._run = wandb.init(**{"config": config, **self.init_kwargs})

  def write(self, members, examples_seen, metrics, replayed=False) -> None:
    if replayed or self._run is None:
      return
    logged = {"examples_seen": int(examples_seen)}
    for m in SCALARS:
      if m in metrics:
        finite = np.asarray(metrics[m], np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size:
          logged.update({f"grid/{m}_min": float(finite.min()),
                         f"grid/{m}_median": float(np.median(finite)),
                         f"grid/{m}_max": float(finite.max())})
    if "diverged" in metrics:
      logged["grid/diverged_fraction"] = float(np.mean(metrics["diverged"]))
    numbers = members["member"].to_numpy()
    for j in np.flatnonzero(numbers % self._every == 0):
      name = member_run_name(members.iloc[j])
      for m in SCALARS:
        if m in metrics:
          logged[f"{name}/{m}"] = float(metrics[m][j])
    self._run.log(logged, step=self._step)
    self._step += 1

  def finish(self, members: pd.DataFrame) -> None:
    if self._run is None:
      return
    import wandb
    self._run.log({"members": wandb.Table(dataframe=members.astype(
        {c: str for c in members.columns if members[c].dtype == object}))}, step=self._step)
    self._step += 1

  def close(self) -> None:
    if self._run is not None:
      self._run.finish()
      self._run = None


def _plain(value):
  return value.item() if isinstance(value, np.generic) else value


def make_writers(names: Sequence[str | MetricWriter], logdir: str,
                 run_name: str = "") -> list[MetricWriter]:
  """Writers from names (``"tensorboard"``: ``TensorBoardWriter(logdir)``,
  ``"wandb"``: ``WandbWriter(name=run_name)``) or ready ``MetricWriter`` objects.

  Example:
    >>> [type(w).__name__ for w in make_writers(["tensorboard", "wandb"], "/tmp/tb")]
    ['TensorBoardWriter', 'WandbWriter']
  """
  out = []
  for w in names:
    if w == "tensorboard":
      out.append(TensorBoardWriter(logdir))
    elif w == "wandb":
      out.append(WandbWriter(project="lrjax", **({"name": run_name} if run_name else {})))
    elif isinstance(w, MetricWriter) or hasattr(w, "write"):
      out.append(w)
    else:
      raise ConfigError(f"writers: unknown writer {w!r}; use 'tensorboard', 'wandb' or a "
                        f"lrjax.metric_writers.MetricWriter.")
  return out
