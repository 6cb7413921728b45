"""Tests for lrjax.analysis.summary: summary.json from a run's tables."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from lrjax.analysis import critical_batch, optima, stability, summary, tables
from lrjax.analysis.synthetic import synthetic_run
from lrjax.errors import ConfigError

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
  crit = s["steps_to_target"]["critical_batch"]
  # Per aug: the hardest target every batch size reaches, and two easier ones.
  assert [r["aug"] for r in crit if r["target_rank"] == 0] == [0.0, 1.0] and len(crit) == 6
  assert all(r["target"] > h["target"] for r in crit for h in crit
             if r["aug"] == h["aug"] and r["target_rank"] > h["target_rank"])
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
  assert s["status_counts"] == {"trained": 2, "slow": 0, "failed": 1, "diverged": 0}
  assert s["status_source"].startswith("derived: failed at chance, without a training-loss "
                                       "fall, or under 2x chance above the cell optimum")
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


def test_summary_leads_with_headline_of_best_configuration_and_primary_answers():
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64, 128), augs=(0.0, 1.0), seeds=(0, 1, 2),
                      noise=0.003, aug_shift=1.0)
  s = summary.summarize(run, n_boot=N_BOOT)
  json.dumps(s, allow_nan=False)
  head = s["headline"]
  best = head["best"]
  assert best["setting"]["lr"] in LRS and best["metric"] == "final_val_loss"
  for name in ("final_val_loss", "best_val_loss", "test_loss", "test_acc"):
    v = best["metrics"][name]
    assert v["n"] == 3 and v["lo"] < v["mean"] < v["hi"]
  lines = summary.headline_lines(s)
  assert lines == head["sentences"] and lines[0].startswith("Best configuration")
  assert head["family"]["questions"] == ["scaling", "aug_effect"]  # from the grid
  assert lines[1].startswith("LR–batch-size exponent") and lines[2].startswith(
      "Augmentation effect on the best LR")
  assert "Holm-corrected, family-wise 95%" in lines[-1]
  assert s["findings"][:len(lines)] == lines
  parts = s["findings_sections"]
  # The sections in order, each sentence once (the family's statement ends the headline
  # and opens the primary part).
  assert s["findings"] == list(dict.fromkeys(
      x for k in ("headline", "primary", "exploratory", "notes") for x in parts[k]))
  assert len(set(s["findings"])) == len(s["findings"])
  assert parts["exploratory"][0].startswith("The findings below are exploratory")
  assert parts["notes"][0].startswith("Of 162 members")
  primary = [d for d in s["decisions"] if d["role"] == "primary"]
  assert len(primary) == head["family"]["size"] == 3
  assert all(d["level"] == pytest.approx(1 - 0.05 / 3) for d in primary)
  assert {d["role"] for d in s["decisions"]} == {"primary", "exploratory", "check"}


def test_summary_reads_analysis_settings_from_config_and_defaults_without_them():
  run = synthetic_run(lrs=LRS, batch_sizes=(32,), augs=(0.0,), seeds=(0, 1, 2),
                      extra_axes={"schedule": ("constant", "cosine")})
  s = summary.summarize(run, n_boot=0)
  assert s["analysis"]["questions"] == ["arms:schedule"]
  assert s["analysis"]["equivalence_margin"] == 0.02
  assert s["analysis"]["companion_metric"] == "best_val_loss"
  assert {r["reference"] for r in s["comparisons"]} == {"constant"}
  config = {**run.config, "analysis": {"equivalence_margin": 0.05, "questions": ["best_lr"],
                                       "reference": {"schedule": "cosine"}}}
  s = summary.summarize(run._replace(config=config), n_boot=0)
  assert s["analysis"]["questions"] == ["best_lr"]
  assert {r["reference"] for r in s["comparisons"]} == {"cosine"}
  assert {r["margin"] for r in s["comparisons"]} == {0.05}
  bad = {**run.config, "analysis": {"questions": ["arms:optimizer"]}}
  with pytest.raises(ConfigError, match="analysis.questions"):
    summary.summarize(run._replace(config=bad), n_boot=0)


def test_warnings_advise_refining_at_a_stability_edge_and_widening_at_the_grid_edge():
  # Batch 32: LRs above 0.01 diverge (stability edge at 0.01, the next LR 0.02 fails);
  # batch 64: the grid stops at 0.02, below its optimum 0.04 (grid edge).
  run = synthetic_run(lrs=(0.0025, 0.005, 0.01, 0.02), batch_sizes=(32, 64), augs=(0.0,),
                      seeds=(0, 1), exponent=2.0, diverge_above=1.5)
  s = summary.summarize(run, n_boot=0)
  (stable,) = [w for w in s["warnings"] if w.startswith("batch_size=32")]
  (grid,) = [w for w in s["warnings"] if w.startswith("batch_size=64")]
  assert "refine grid.lr between 0.01 and 0.02" in stable and "widen grid.lr" not in stable
  assert "widen grid.lr above 0.02" in grid


@pytest.mark.parametrize("b_crit, keep", [(128.0, 1.0), (128.0, 0.25), (1e7, 1.0),
                                          (1e7, 0.25)])
def test_summary_prints_no_b_crit_outside_the_identifiable_range(b_crit, keep):
  """A finished run and a partial one (its history cut at a quarter, as a
  ``.partial`` directory holds it) never state an unidentifiable B_crit."""
  run = synthetic_run(batch_sizes=(32, 64, 128, 256), augs=(0.0,), seeds=(0, 1, 2),
                      noise=0.003, n_evals=20, b_crit=b_crit)
  h = run.history
  run = run._replace(history=h[h["examples_seen"] <= keep * h["examples_seen"].max()])
  s = summary.summarize(run, n_boot=N_BOOT)
  lo_lim, hi_lim = critical_batch.identifiable_range((32, 64, 128, 256))
  rows = s["steps_to_target"].get("critical_batch", [])
  for r in rows:
    assert r["b_crit"] is None or lo_lim <= r["b_crit"] <= hi_lim, r
  for sentence in s["findings"]:
    for number in re.findall(r"B_crit ≈ ([0-9.e+]+)", sentence):
      assert lo_lim <= float(number) <= hi_lim, sentence
  if b_crit > hi_lim and keep == 1.0:
    assert rows and all(r["verdict"] == "not identifiable" for r in rows)
