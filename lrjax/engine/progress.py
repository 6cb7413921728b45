"""What a training run shows while it trains: a "compiling" line, then progress.

On a terminal a tqdm bar over member-examples (rate and ETA exclude compiling;
members alive, failed, slow and diverged; best validation accuracy and loss so far);
otherwise one plain line per evaluation, for logs.

"failed" and "slow" are `lrjax.outcomes.member_status` applied to the chunk's
members as they stand at the evaluation, with the chunk's first evaluation's training
loss in place of the first step's (the run's tables use the first step's; at the
first evaluation only the accuracy criteria apply): a hint of what the final tables
will say, not the final word.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lrjax import outcomes
from lrjax.engine.run import Run


class Progress:
  """What the user sees while training: nothing (``enabled=False``), or a compile line
  then a tqdm bar over member-examples (a TTY), or one plain line per evaluation (logs).

  Rate and ETA count training only: the bar starts once the program is compiled.
  """

  def __init__(self, run: Run, num_chunks: int, enabled: bool, stream=None):
    self.run, self.num_chunks = run, num_chunks
    self.stream = sys.stderr if stream is None else stream
    isatty = getattr(self.stream, "isatty", None)
    self.mode = ("off" if not enabled else
                 "bar" if isatty is not None and isatty() else "lines")
    self.seg_examples = run.plan.examples_per_segment
    self.total_segments = num_chunks * run.plan.num_segments
    self.bar = None
    self.t0 = None  # start of training (after compiling)
    self.trained = 0  # member-examples trained in this process (not resumed ones)
    self.done = 0  # member-examples done, resumed ones included
    self.diverged_before = 0  # diverged members of finished chunks
    self.diverged_now = 0  # diverged members of the current chunk
    self.best_acc, self.best_loss = -np.inf, np.inf
    self.first_train_loss = None  # per member of the current chunk, at its first evaluation

  @property
  def enabled(self) -> bool:
    return self.mode != "off"

  def _print(self, text: str, end: str = "\n") -> None:
    if self.bar is not None:
      self.bar.write(text, file=self.stream, end=end)
    else:
      print(text, file=self.stream, end=end, flush=True)

  def compiling(self) -> None:
    if self.enabled:
      self._print(f"compiling {self.run.num_members} members ...", end="")

  def compiled(self, seconds: float) -> None:
    """Ends the compile line; training (its rate and ETA) starts now."""
    if self.enabled:
      self._print(f" {seconds:.1f} s")
      self._start()

  def _start(self) -> None:
    if self.t0 is not None:
      return
    self.t0 = time.perf_counter()
    if self.mode == "bar":
      self.bar = tqdm(total=self.run.num_members * self.run.plan.num_segments
                      * self.seg_examples, unit="ex", unit_scale=True, dynamic_ncols=True,
                      desc=f"{self.run.num_members} members", file=self.stream)

  def skip(self, members: int, segments: int) -> None:
    """Segments a resumed chunk had done: counted as done, not in the rate."""
    self._start()
    n = members * segments * self.seg_examples
    self.done += n
    if self.bar is not None and n:
      self.bar.n += n
      self.bar.initial += n
      self.bar.last_print_n = self.bar.n
      self.bar.refresh()

  def end_chunk(self) -> None:
    self.diverged_before += self.diverged_now
    self.diverged_now = 0
    self.first_train_loss = None

  def status_now(self, members: pd.DataFrame, host_metrics) -> dict[str, int]:
    """The chunk's members by `lrjax.outcomes` status as they stand now."""
    get = lambda k: np.asarray(host_metrics.get(k, np.full(len(members), np.nan)),
                               np.float64)
    train_loss = get("train_loss")
    first = self.first_train_loss
    if first is None or len(first) != len(members):
      # The chunk's first evaluation: no earlier loss to compare with, so the loss
      # criteria are not applied yet (NaN inputs are skipped by the rule).
      self.first_train_loss, first = train_loss, np.full(len(members), np.nan)
    now = members.assign(
        diverged=np.asarray(host_metrics["diverged"], bool),
        first_train_loss=first, final_train_loss=train_loss,
        final_val_loss=get("val_loss"), final_val_acc=get("val_acc"))
    status = outcomes.member_status(
        now, num_classes=self.run.dataset.num_classes,
        num_val=len(self.run.dataset.validation),
        **outcomes.status_arguments(self.run.settings))
    return outcomes.status_counts(status)

  def step(self, chunk_i: int, segment_i: int, members: pd.DataFrame,
           host_metrics) -> None:
    """After evaluation ``segment_i`` (from 0) of chunk ``chunk_i``: ``members`` the
    chunk's members table, ``host_metrics`` their metrics (val means)."""
    if not self.enabled:
      return
    self._start()
    n = len(members) * self.seg_examples
    self.trained += n
    self.done += n
    counts = self.status_now(members, host_metrics)
    self.diverged_now = counts["diverged"]
    alive = ~np.asarray(host_metrics["diverged"], bool)
    with np.errstate(all="ignore"):
      acc = np.asarray(host_metrics["val_acc"], np.float64)[alive]
      loss = np.asarray(host_metrics["val_loss"], np.float64)[alive]
      if np.isfinite(acc).any():
        self.best_acc = max(self.best_acc, float(np.nanmax(acc[np.isfinite(acc)])))
      if np.isfinite(loss).any():
        self.best_loss = min(self.best_loss, float(np.min(loss[np.isfinite(loss)])))
    n_div = self.diverged_before + self.diverged_now
    alive_text = (f"alive {self.run.num_members - n_div}/{self.run.num_members}  "
                  f"failed {counts['failed']}  slow {counts['slow']}")
    best = (f"best val_acc {self.best_acc:.3f}  val_loss {self.best_loss:.3f}"
            if np.isfinite(self.best_acc) else "best val_acc -  val_loss -")
    if self.bar is not None:
      self.bar.set_postfix_str(
          (f"chunk {chunk_i + 1}/{self.num_chunks}, " if self.num_chunks > 1 else "") +
          f"{alive_text.replace('  ', ', ')}, diverged {n_div}, {best.replace('  ', ', ')}",
          refresh=False)
      self.bar.update(n)
      return
    rate = self.trained / max(time.perf_counter() - self.t0, 1e-9)
    eval_i = chunk_i * self.run.plan.num_segments + segment_i + 1
    chunk = f"  chunk {chunk_i + 1}/{self.num_chunks}" if self.num_chunks > 1 else ""
    self._print(f"eval {eval_i}/{self.total_segments}{chunk}  examples "
                f"{(segment_i + 1) * self.seg_examples:,}  {alive_text}  {best}  "
                f"{rate:,.0f} ex/s")

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
      self.bar = None
