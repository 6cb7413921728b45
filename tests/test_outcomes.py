"""Tests for lrjax.outcomes: each member's status against its cell's optimum."""
import os
import time

import numpy as np
import pandas as pd
import pytest

from lrjax import outcomes
from lrjax.analysis import stability, stats
from lrjax.errors import ConfigError

# The main job's finished members (digits: 10 classes, 250 validation examples), with
# the columns the rule reads, the status the older rule wrote and ``half_val_acc``
# (validation accuracy at half the budget, from its history).
MAIN_JOB = os.path.join(os.path.dirname(__file__), "data", "main_job_members.parquet")
NUM_CLASSES, NUM_VAL = 10, 250
CHANCE = 1 / NUM_CLASSES


@pytest.fixture(scope="module")
def main_job():
  members = pd.read_parquet(MAIN_JOB)
  best = outcomes.cell_best_lr(members)
  status = outcomes.member_status(members, num_classes=NUM_CLASSES, num_val=NUM_VAL)
  return members.assign(best_lr=best, new_status=status)


def _status(rows, **kwargs):
  """member_status of planted rows (dicts), with every input column defaulted."""
  base = dict(lr=0.1, batch_size=32, aug=0.0, seed=0, diverged=False,
              first_train_loss=2.3, final_train_loss=0.3, final_val_loss=0.3,
              final_val_acc=0.9)
  table = pd.DataFrame([{**base, **r} for r in rows])
  kwargs = {"num_classes": NUM_CLASSES, "num_val": 1000, **kwargs}
  return outcomes.member_status(table, **kwargs).tolist()


# ----------------------------------------------------------------- the main job


def test_main_job_counts_slow_members_apart_from_failed(main_job):
  assert main_job["status"].value_counts().to_dict() == {
      "trained": 305, "failed": 47, "diverged": 8}  # the older rule
  assert outcomes.status_counts(main_job["new_status"]) == {
      "trained": 255, "slow": 70, "failed": 27, "diverged": 8}


def test_main_job_no_member_at_or_above_twice_chance_failed(main_job):
  learned = main_job["final_val_acc"] >= 2 * CHANCE
  assert learned.sum() > 300
  assert not (main_job.loc[learned, "new_status"] == "failed").any()
  # The older rule failed 20 of them, at up to 73% accuracy.
  old = main_job[learned & (main_job["status"] == "failed")]
  assert len(old) == 20 and old["final_val_acc"].max() > 0.7


def test_main_job_low_lr_members_with_rising_accuracy_learned(main_job):
  low = main_job[main_job["lr"] <= main_job["best_lr"]]
  rising = low[low["final_val_acc"] > low["half_val_acc"]]
  assert len(rising) > 200
  assert set(rising["new_status"]) == {"slow", "trained"}
  # Slow members sit below the optimum, never at it.
  slow = main_job[main_job["new_status"] == "slow"]
  assert (slow["lr"] < slow["best_lr"]).all()


def test_main_job_high_lr_members_near_chance_not_stable(main_job):
  near_chance = ((main_job["lr"] > main_job["best_lr"])
                 & (main_job["final_val_acc"] < 2 * CHANCE))
  assert near_chance.sum() >= 20
  table = main_job.drop(columns="status").assign(status=main_job["new_status"])
  assert not stability.stable_mask(table)[near_chance.to_numpy()].any()
  # Every failed member is above its cell's optimum.
  failed = main_job[main_job["new_status"] == "failed"]
  assert (failed["lr"] > failed["best_lr"]).all()


def test_main_job_old_status_column_derived_again(main_job):
  table = pd.read_parquet(MAIN_JOB)
  derived, source = stats.with_status(table, NUM_CLASSES, NUM_VAL)
  assert derived["status"].tolist() == main_job["new_status"].tolist()
  assert source.startswith("derived again (older status column)")
  np.testing.assert_array_equal(stats.status_labels(table, NUM_CLASSES, NUM_VAL),
                                main_job["new_status"])
  # A current column (it has slow members) is kept as it is.
  kept, source = stats.with_status(derived, NUM_CLASSES, NUM_VAL)
  assert kept is derived and source == "status column"


def test_main_job_cell_optima(main_job):
  best = main_job.groupby(["batch_size", "aug"])["best_lr"].agg(["min", "max"])
  assert (best["min"] == best["max"]).all()  # one optimum per cell
  assert best.loc[(32, 0.0), "min"] == 0.1 and best.loc[(256, 1.0), "min"] == 0.25


# ---------------------------------------------------------------- planted: each branch


def test_diverged_flag_wins():
  assert _status([{"diverged": True}, {"diverged": True, "final_val_acc": np.nan,
                                       "final_train_loss": np.nan}]) == ["diverged"] * 2


def test_failed_at_or_below_chance_on_either_side():
  rows = [{"lr": 0.01, "final_val_acc": 0.1, "final_train_loss": 1.0,
           "final_val_loss": 0.5},
          {"lr": 0.1},
          {"lr": 1.0, "final_val_acc": 0.05, "final_val_loss": 2.0}]
  assert _status(rows) == ["failed", "trained", "failed"]


def test_failed_when_training_loss_not_below_its_first():
  rows = [{"lr": 0.01, "final_val_acc": 0.5, "final_train_loss": 2.3,
           "final_val_loss": 1.5}, {"lr": 0.1}]
  assert _status(rows) == ["failed", "trained"]
  # loss_ratio moves the bar: a 5% fall is "no fall" at 0.9.
  rows[0]["final_train_loss"] = 0.95 * 2.3
  assert _status(rows) == ["slow", "trained"]
  assert _status(rows, loss_ratio=0.9) == ["failed", "trained"]


def test_under_twice_chance_fails_only_above_the_optimum():
  rows = [{"lr": 0.01, "final_val_acc": 0.15, "final_train_loss": 2.0,
           "final_val_loss": 1.9},
          {"lr": 0.1},
          {"lr": 1.0, "final_val_acc": 0.15, "final_train_loss": 2.0,
           "final_val_loss": 1.9},
          {"lr": 3.0, "final_val_acc": 0.25, "final_train_loss": 1.9,
           "final_val_loss": 1.8}]
  assert _status(rows) == ["slow", "trained", "failed", "trained"]
  assert _status(rows, failed_acc_factor=3.0) == ["slow", "trained", "failed", "failed"]


def test_slow_below_optimum_with_under_half_its_loss_fall():
  # The optimum's loss fell by 2.0; 0.9 (45%) is slow, 1.1 (55%) is not.
  rows = [{"lr": 0.001, "final_train_loss": 1.4, "final_val_loss": 1.0},
          {"lr": 0.01, "final_train_loss": 1.2, "final_val_loss": 0.8},
          {"lr": 0.1}]
  assert _status(rows) == ["slow", "trained", "trained"]
  assert _status(rows, slow_fraction=0.6) == ["slow", "slow", "trained"]
  assert _status(rows, slow_fraction=0.0) == ["trained"] * 3


def test_slow_compares_with_the_same_seed_at_the_optimum():
  # Seed 0's optimum fell by 2.0, seed 1's by 1.0 (mean 1.5); both low members fell
  # by 0.9: slow against seed 0's, not against seed 1's.
  rows = [{"lr": 0.01, "seed": s, "final_train_loss": 1.4, "final_val_loss": 1.0}
          for s in (0, 1)]
  rows += [{"lr": 0.1, "seed": 0, "final_train_loss": 0.3},
           {"lr": 0.1, "seed": 1, "final_train_loss": 1.3}]
  assert _status(rows) == ["slow", "trained", "trained", "trained"]
  # A seed absent at the optimum compares with the mean over its seeds (1.5).
  rows[1]["seed"] = 2
  assert _status(rows) == ["slow", "trained", "trained", "trained"]
  rows[1]["final_train_loss"] = 1.6  # fell by 0.7 < 0.75
  assert _status(rows) == ["slow", "slow", "trained", "trained"]


def test_never_slow_at_or_above_the_optimum():
  rows = [{"lr": 0.1, "seed": 0}, {"lr": 0.1, "seed": 1, "final_train_loss": 2.0,
                                   "final_val_acc": 0.6, "final_val_loss": 1.0},
          {"lr": 1.0, "final_train_loss": 2.0, "final_val_acc": 0.6, "final_val_loss": 1.5}]
  assert _status(rows) == ["trained", "trained", "trained"]


def test_a_cell_with_one_lr_has_no_high_side():
  assert _status([{"final_val_acc": 0.15}]) == ["trained"]


def test_optimum_is_per_cell_and_ignores_diverged_members():
  rows = [{"lr": lr, "batch_size": bs, "final_val_acc": 0.15, "final_val_loss": 2.0}
          for bs, lr in ((32, 0.01), (64, 1.0))]
  rows += [{"lr": 0.1, "batch_size": 32, "final_val_loss": 0.2},
           {"lr": 0.1, "batch_size": 64, "final_val_loss": 0.2},
           # A diverged member with a low recorded loss is no optimum.
           {"lr": 3.0, "batch_size": 64, "diverged": True, "final_val_loss": 0.01}]
  assert _status(rows) == ["trained", "failed", "trained", "trained", "diverged"]
  # An extra grid axis splits cells too: member 0 is alone in its cell.
  table = pd.DataFrame(rows).assign(momentum=[0.0, 0.0, 0.9, 0.0, 0.0])
  assert outcomes.cell_columns(table) == ["batch_size", "aug", "momentum"]
  assert outcomes.cell_best_lr(table).tolist() == [0.01, 0.1, 0.1, 0.1, 0.1]


def test_optimum_is_the_lowest_seed_mean_validation_loss():
  # LR 0.1 has the lowest single loss (0.1) but the higher mean (0.55 vs 0.3).
  rows = [{"lr": 0.1, "seed": 0, "final_val_loss": 0.1},
          {"lr": 0.1, "seed": 1, "final_val_loss": 1.0},
          {"lr": 0.01, "seed": 0, "final_val_loss": 0.3},
          {"lr": 0.01, "seed": 1, "final_val_loss": 0.3}]
  assert outcomes.cell_best_lr(pd.DataFrame(rows)).tolist() == [0.01] * 4


def test_nan_inputs_turn_off_their_criteria():
  # No first training loss (a partial table): no loss criterion, none slow.
  rows = [{"lr": 0.001, "first_train_loss": np.nan, "final_train_loss": 2.3,
           "final_val_acc": 0.5, "final_val_loss": 1.5}, {"lr": 0.1, "first_train_loss": np.nan}]
  assert _status(rows) == ["trained", "trained"]
  # No accuracy: no chance criterion (the loss one still applies).
  rows = [{"final_val_acc": np.nan}, {"lr": 1.0, "final_val_acc": np.nan,
                                      "final_train_loss": 2.4, "final_val_loss": 2.0}]
  assert _status(rows) == ["trained", "failed"]
  # No finite validation loss in the cell: no optimum, no high side, none slow.
  rows = [{"lr": lr, "final_val_loss": np.nan, "final_val_acc": 0.15,
           "final_train_loss": t} for lr, t in ((0.01, 2.0), (1.0, 0.3))]
  assert _status(rows) == ["trained", "trained"]
  assert outcomes.cell_best_lr(pd.DataFrame(rows)).isna().all()


def test_at_chance_band_uses_two_standard_errors_of_num_val():
  se = np.sqrt(0.1 * 0.9 / 1000)
  assert _status([{"final_val_acc": 0.1 + 1.9 * se}]) == ["failed"]
  assert _status([{"final_val_acc": 0.1 + 2.5 * se}]) == ["trained"]


def test_failed_accuracy_bar_capped_below_one_for_two_classes():
  assert outcomes.failed_acc_threshold(2) == 0.75
  rows = [{"lr": 0.1, "final_val_acc": 0.95}, {"lr": 1.0, "final_val_acc": 0.8,
                                                "final_val_loss": 0.5}]
  assert _status(rows, num_classes=2) == ["trained", "trained"]


def test_status_keeps_the_index_and_needs_seed_batch_size_aug_only_if_present():
  table = pd.DataFrame({"lr": [0.001, 0.1], "diverged": False, "first_train_loss": 2.3,
                        "final_train_loss": [2.0, 0.3], "final_val_loss": [1.5, 0.3],
                        "final_val_acc": [0.6, 0.9]}, index=[7, 3])
  status = outcomes.member_status(table, num_classes=10, num_val=250)
  assert status.index.tolist() == [7, 3] and status.tolist() == ["slow", "trained"]


def test_bad_arguments_and_missing_columns_raise():
  with pytest.raises(ConfigError, match="slow_fraction"):
    _status([{}], slow_fraction=1.5)
  with pytest.raises(ConfigError, match="failed_acc_factor"):
    _status([{}], failed_acc_factor=0.5)
  with pytest.raises(ConfigError, match="loss_ratio"):
    _status([{}], loss_ratio=0.0)
  with pytest.raises(ConfigError, match="final_val_loss"):
    outcomes.member_status(pd.DataFrame({"lr": [0.1], "diverged": False,
                                         "first_train_loss": 2.3, "final_train_loss": 0.3,
                                         "final_val_acc": 0.9}), num_classes=10, num_val=9)


def test_vectorised_over_16k_members(main_job):
  table = pd.read_parquet(MAIN_JOB)
  big = pd.concat([table.assign(momentum=k) for k in range(46)], ignore_index=True)
  start = time.perf_counter()
  status = outcomes.member_status(big, num_classes=NUM_CLASSES, num_val=NUM_VAL)
  assert time.perf_counter() - start < 1.0
  assert len(big) > 16_384
  assert status.tolist() == main_job["new_status"].tolist() * 46


def test_status_settings_map_train_settings_fields_to_member_status_arguments():
  import dataclasses
  import inspect

  from lrjax.engine import TrainSettings
  fields = {f.name for f in dataclasses.fields(TrainSettings)}
  assert set(outcomes.STATUS_SETTINGS) <= fields
  params = inspect.signature(outcomes.member_status).parameters
  assert all(params[arg].kind is inspect.Parameter.KEYWORD_ONLY
             for arg in outcomes.STATUS_SETTINGS.values())
  settings = TrainSettings(failed_loss_ratio=0.9, failed_acc_factor=1.5, slow_fraction=0.3)
  assert outcomes.status_arguments(settings) == {
      "loss_ratio": 0.9, "failed_acc_factor": 1.5, "slow_fraction": 0.3}
