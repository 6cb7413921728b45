"""Tests for lrjax.analysis.comparisons: arms against the reference arm, paired over seeds."""
import numpy as np
import pandas as pd
import pytest

from lrjax.analysis import comparisons, inference
from lrjax.analysis.analysis_settings import AnalysisSettings

LRS = (0.01, 0.02, 0.04, 0.08)
SEEDS = (0, 1, 2, 3, 4)


def _arms_table(offsets, *, seed_spread=0.2, noise=0.0, best_lr=None, rng_seed=0):
  """Members of a ``schedule`` axis: loss = quadratic in log2 LR around each arm's best
  LR + a large per-seed offset shared by every arm + the arm's planted offset."""
  rng = np.random.default_rng(rng_seed)
  best_lr = best_lr or {}
  seed_offset = dict(zip(SEEDS, seed_spread * rng.normal(size=len(SEEDS))))
  rows = []
  for arm, offset in offsets.items():
    for lr in LRS:
      for seed in SEEDS:
        d = np.log2(lr / best_lr.get(arm, 0.02))
        loss = 0.5 + 0.05 * d ** 2 + seed_offset[seed] + offset + noise * rng.normal()
        rows.append({"lr": lr, "batch_size": 64, "aug": 0.0, "seed": seed,
                     "schedule": arm, "status": "trained", "diverged": False,
                     "final_val_loss": loss, "best_val_loss": loss - 0.01})
  return pd.DataFrame(rows).assign(member=lambda t: np.arange(len(t)))


def _row(table, arm, metric="final_val_loss"):
  (row,) = table[(table["arm"] == arm) & (table["metric"] == metric)].to_dict("records")
  return row


def test_planted_difference_is_paired_and_found_different():
  # The seeds' spread (0.2) dwarfs the planted +0.05: unpaired intervals of the two arms
  # overlap, the paired difference does not.
  t = comparisons.compare_arms(_arms_table({"constant": 0.0, "cosine": 0.05}, noise=0.002))
  r = _row(t, "cosine")
  assert r["reference"] == "constant" and r["n"] == len(SEEDS)
  assert r["mean"] == pytest.approx(0.05, abs=0.003) and 0 < r["lo"] < r["hi"] < 0.06
  assert r["verdict"] == "different" and r["text"].startswith("different: +0.05")
  ref = inference.mean_interval(
      comparisons.seed_values(_arms_table({"constant": 0.0}), "final_val_loss",
                              {"schedule": "constant"}, 0.02))
  assert ref[2] - ref[1] > 0.1  # each arm alone: an interval wider than the effect


def test_equivalent_when_arms_agree_within_margin():
  t = comparisons.compare_arms(_arms_table({"constant": 0.0, "cosine": 0.001}, noise=0.002),
                               AnalysisSettings(equivalence_margin=0.02))
  r = _row(t, "cosine")
  assert r["verdict"] == "equivalent" and r["text"] == "equivalent within ±0.02"
  assert r["p_equivalence"] < 0.05 and r["margin"] == 0.02


def test_not_settled_when_noise_is_as_large_as_the_margin():
  t = comparisons.compare_arms(_arms_table({"constant": 0.0, "cosine": 0.01}, noise=0.05,
                                           rng_seed=3))
  r = _row(t, "cosine")
  assert r["verdict"] == "not settled" and r["lo"] < 0 < r["hi"]
  assert r["text"].startswith("not settled: ")


def test_each_arm_compared_at_its_own_best_lr_and_reference_from_settings():
  members = _arms_table({"constant": 0.0, "cosine": 0.0, "onecycle": 0.03},
                        best_lr={"cosine": 0.04}, noise=0.001)
  t = comparisons.compare_arms(members, AnalysisSettings(reference={"schedule": "cosine"}))
  assert set(t["reference"]) == {"cosine"} and set(t["arm"]) == {"constant", "onecycle"}
  r = _row(t, "constant")
  assert (r["arm_lr"], r["reference_lr"]) == (0.02, 0.04)
  assert r["verdict"] == "equivalent"
  assert _row(t, "onecycle")["verdict"] == "different"
  # Both metrics, the same rows.
  assert sorted(set(t["metric"])) == ["best_val_loss", "final_val_loss"]
  assert _row(t, "onecycle", "best_val_loss")["mean"] == pytest.approx(
      _row(t, "onecycle")["mean"])


def test_pairs_only_seeds_both_arms_have():
  members = _arms_table({"constant": 0.0, "cosine": 0.05}, noise=0.002)
  members = members[~((members["schedule"] == "constant") & (members["seed"] == 4))]
  r = _row(comparisons.compare_arms(members), "cosine")
  assert r["n"] == len(SEEDS) - 1 and r["verdict"] == "different"


def test_arm_whose_seed_fails_above_the_smallest_lr_sits_at_both_edges():
  members = _arms_table({"constant": 0.0, "cosine": 0.05}, noise=0.002)
  bad = (members["schedule"] == "cosine") & (members["seed"] == 4) & (members["lr"] > 0.01)
  members.loc[bad, "status"] = "diverged"
  members.loc[bad, ["final_val_loss", "best_val_loss"]] = np.nan
  r = _row(comparisons.compare_arms(members), "cosine")
  # 0.01 is the only LR where every seed of cosine trained: the grid's smallest, and
  # the next LR up fails.
  assert r["arm_lr"] == 0.01 and r["arm_edge"] == "stability_high,grid_low"
  assert r["n"] == len(SEEDS)


def test_difference_matches_inference_paired_difference():
  members = _arms_table({"constant": 0.0, "cosine": 0.03}, noise=0.01)
  r = _row(comparisons.compare_arms(members), "cosine")
  a = comparisons.seed_values(members, "final_val_loss", {"schedule": "cosine"}, 0.02)
  b = comparisons.seed_values(members, "final_val_loss", {"schedule": "constant"}, 0.02)
  d = inference.paired_difference(a.to_numpy(), b.to_numpy())
  assert (r["mean"], r["lo"], r["hi"], r["p"]) == pytest.approx((d.mean, d.lo, d.hi,
                                                                  d.p_value))


def test_best_lrs_tells_stability_edge_from_grid_edge():
  m = pd.DataFrame({"lr": [0.1, 0.3, 1.0] * 2, "batch_size": [32] * 3 + [64] * 3,
                    "seed": 0, "status": ["trained", "trained", "diverged"] + ["trained"] * 3,
                    "final_val_loss": [0.5, 0.4, np.nan, 0.6, 0.5, 0.45]})
  t = comparisons.best_lrs(m, "final_val_loss", ["batch_size"])
  assert t[["best_lr", "edge"]].values.tolist() == [[0.3, "stability_high"],
                                                    [1.0, "grid_high"]]
  assert t["beside"].tolist()[0] == 1.0 and np.isnan(t["beside"].tolist()[1])


def test_disagreement_between_final_and_best_validation_loss_is_said():
  members = _arms_table({"constant": 0.0, "cosine": 0.05}, noise=0.002)
  cosine = members["schedule"] == "cosine"
  members.loc[cosine, "best_val_loss"] = members.loc[cosine, "best_val_loss"] - 0.05
  t = comparisons.compare_arms(members)
  (sentence,) = comparisons.disagreements(t)
  assert "final_val_loss and best_val_loss disagree" in sentence
  assert "different: +0.05" in sentence and "equivalent within ±0.02" in sentence


def test_no_rows_without_a_non_core_axis():
  members = _arms_table({"constant": 0.0})
  assert comparisons.compare_arms(members).empty
