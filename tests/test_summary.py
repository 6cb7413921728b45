"""Tests for lrjax.analysis.summary: summary.json from a run's tables."""
import json

import numpy as np
import pandas as pd
import pytest

from lrjax.analysis import optima, stability, summary, tables
from lrjax.analysis.synthetic import synthetic_run

LRS = tuple(0.01 * 2.0 ** k for k in range(-2, 7))
N_BOOT = 200


def test_summarize_json_serialisable():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0, 1.0), aug_shift=1.0)
  s = summary.summarize(run, n_boot=N_BOOT)
  json.dumps(s, allow_nan=False)
  assert s["n_members"] == len(run.members)
  assert s["n_diverged"] == int(run.members["diverged"].sum())
  assert s["best_member"]["lr"] in (0.01, 0.02, 0.04)
  assert set(s["axes"]) == {"lr", "batch_size", "aug", "seed"}
  ratios = {(r["batch_size"], r["aug"]): np.exp(r["d_log_best_lr"]) for r in s["aug_effect"]}
  assert ratios[(32, 1.0)] == pytest.approx(2.0)


def test_summarize_reports_estimates_with_intervals_and_findings():
  run = synthetic_run(lrs=tuple(0.01 * 2.0 ** (k / 2) for k in range(-6, 13)),
                      batch_sizes=(32, 64, 128, 256), augs=(0.0, 1.0), seeds=(0, 1, 2),
                      noise=0.003, noise_scale=40.0, n_evals=20, status_columns=True)
  s = summary.summarize(run, n_boot=N_BOOT)
  json.dumps(s, allow_nan=False)
  assert s["metric"] == "final_val_loss" and s["status_source"] == "status column"
  assert sum(s["status_counts"].values()) == s["n_members"]
  assert all({"best_lr_lo", "best_lr_hi", "edge"} <= set(r) for r in s["best_lr"])
  assert [r["aug"] for r in s["scaling"]] == [0.0, 1.0]
  assert all(r["verdict"] == "linear" and r["alpha_lo"] <= 1 <= r["alpha_hi"]
             for r in s["scaling"])
  assert len(s["max_stable_lr"]) == 8 and len(s["aug_effect_pooled"]) == 1
  assert len(s["steps_to_target"]["critical_batch"]) == 2
  assert [r["aug"] for r in s["noise_scale"]] == [0.0, 1.0]
  assert any(f.startswith("Best LR vs batch size at aug 0: exponent") for f in s["findings"])


def test_summarize_not_settled_with_two_batch_sizes():
  # Two points always fit a line: they cannot tell linear from sqrt scaling.
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0, 1.0), seeds=(0, 1, 2),
                      noise=0.003)
  s = summary.summarize(run, n_boot=N_BOOT)
  assert [r["verdict"] for r in s["scaling"]] == ["not settled", "not settled"]
  assert all("only 2 of 2 batch sizes" in r["reason"] for r in s["scaling"])


def test_summarize_derives_status_from_train_losses_when_column_absent():
  run = synthetic_run(lrs=(0.001, 0.01, 0.02), batch_sizes=(32,), augs=(0.0,),
                      seeds=(0,), fail_below=0.5, train_loss_columns=True)
  assert "status" not in run.members
  s = summary.summarize(run, n_boot=0)
  assert s["status_counts"] == {"trained": 2, "failed": 1, "diverged": 0}
  assert s["status_source"].startswith("derived: training loss fell < 10% or accuracy")
  assert s["max_stable_lr"][0]["max_stable_lr"] == 0.02
  assert s["best_lr"][0]["grid_best_lr"] == 0.01 and s["best_lr"][0]["edge"]


def test_summarize_all_diverged_warns():
  run = synthetic_run(lrs=(1.0,), batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                      diverge_above=0.5)
  s = summary.summarize(run, n_boot=N_BOOT)
  json.dumps(s, allow_nan=False)
  assert s["best_member"] is None and s["n_diverged"] == 1
  assert any("diverged" in w for w in s["warnings"])


def test_summarize_reads_engine_table_without_aug_and_seed_columns():
  # As the engine writes it for a grid of lr x batch_size only, with `updates`; the
  # estimators on the way to summary.json fill in aug and seed.
  m = pd.DataFrame({"member": range(4), "batch_size": [32, 32, 64, 64],
                    "lr": [0.1, 1.0, 0.1, 1.0], "diverged": [False, True, False, False],
                    "diverged_at": [np.nan, 64.0, np.nan, np.nan],
                    "updates": [40, 2, 20, 20],
                    "final_val_acc": np.float32([0.9, np.nan, 0.8, 0.85])})
  assert tables.grid_axes(tables.with_default_axes(m)) == [
      "lr", "batch_size", "aug", "seed"]
  table = optima.best_lr(m, metric="final_val_acc", n_boot=0)
  assert table["best_lr"].tolist() == [0.1, 1.0] and (table["aug"] == 0.0).all()
  b = stability.max_stable_lr(m)
  assert b["next_lr"].tolist()[0] == 1.0
  s = summary.summarize(tables.RunTables({"grid": {"lr": [0.1, 1.0]}}, m, pd.DataFrame(), ""),
                        metric="final_val_acc", n_boot=0)
  assert s["best_member"]["lr"] == 0.1 and s["n_diverged"] == 1
