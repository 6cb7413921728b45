"""The members and history tables of a trained grid, from the engine's (G, I) arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrjax import grid as grid_lib
from lrjax.engine.run import Run
from lrjax.engine.state import segment_metrics
from lrjax.outcomes import member_status, status_arguments


def result_tables(run: Run, hist, tests, final_state) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Builds the members and history DataFrames.

  Args:
    run: the run.
    hist: per segment, a dict of (G, I) metric arrays (``state.segment_metrics``).
    tests: ``{"loss", "acc", <metrics>}`` (G, I) arrays on the test split.
    final_state: ``(diverged, diverged_at, updates, first_loss)`` (G, I) arrays.
  """
  lay, the_plan, table = run.layout, run.plan, run.table
  per_member = lambda a: grid_lib.from_slots(np.asarray(a), lay)
  n_seg = the_plan.num_segments
  rows = []
  # final state has "diverged"; tick losses are not history (GridResult.tick_loss)
  metric_names = tuple(n for n in segment_metrics(run.settings)
                       if n not in ("diverged", "tick_loss"))
  stacked = {n: np.stack([per_member(hist[s][n]) for s in range(n_seg)], 1)
             for n in metric_names}
  for s in range(n_seg):
    frame = pd.DataFrame({"member": table["member"].to_numpy(),
                          "examples_seen": np.int64((s + 1) * the_plan.examples_per_segment)})
    for n in metric_names:
      frame[n] = stacked[n][:, s]
    rows.append(frame)
  history = pd.concat(rows, ignore_index=True).sort_values(
      ["member", "examples_seen"], kind="stable").reset_index(drop=True)

  diverged, diverged_at, updates, first_loss = (per_member(a) for a in final_state)
  members = table.copy()
  members["diverged"] = diverged.astype(bool)
  members["diverged_at"] = np.where(diverged, diverged_at.astype(float), np.nan)
  members["updates"] = updates.astype(np.int64)
  members["final_val_loss"] = stacked["val_loss"][:, -1]
  members["final_val_acc"] = stacked["val_acc"][:, -1]
  with np.errstate(all="ignore"):
    val_loss = np.where(np.isnan(stacked["val_loss"]), np.inf, stacked["val_loss"])
    val_acc = np.where(np.isnan(stacked["val_acc"]), -np.inf, stacked["val_acc"])
    members["best_val_loss"] = np.where(np.isfinite(val_loss.min(1)), val_loss.min(1), np.nan)
    members["best_val_acc"] = np.where(np.isfinite(val_acc.max(1)), val_acc.max(1), np.nan)
  test_loss, test_acc = per_member(tests["loss"]), per_member(tests["acc"])
  members["test_loss"] = np.where(diverged, np.nan, test_loss)
  members["test_acc"] = np.where(diverged, np.nan, test_acc)
  for name in tests:
    if name not in ("loss", "acc"):  # extra metrics (settings.metrics)
      members[f"final_val_{name}"] = stacked[f"val_{name}"][:, -1]
      members[f"test_{name}"] = np.where(diverged, np.nan, per_member(tests[name]))
  members["first_train_loss"] = first_loss.astype(np.float32)
  members["final_train_loss"] = stacked["train_loss"][:, -1]
  members["status"] = member_status(members, num_classes=run.dataset.num_classes,
                                    num_val=len(run.dataset.validation),
                                    **status_arguments(run.settings))
  return members, history


def tick_losses(run: Run, hist) -> np.ndarray | None:
  """Every member's training loss at every tick, (N, ticks) in member order, or None
  when the run did not record them (``settings.record_tick_loss``)."""
  if not run.settings.record_tick_loss:
    return None
  return np.concatenate([grid_lib.from_slots(np.asarray(h["tick_loss"]), run.layout)
                         for h in hist], axis=1).astype(np.float32)
