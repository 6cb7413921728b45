"""Tests for lrjax.analysis.stats: columns, member status and interval helpers."""
import math

import numpy as np
import pandas as pd
import pytest

from lrjax import outcomes
from lrjax.analysis import stability, stats
from lrjax.analysis.synthetic import synthetic_members
from lrjax.errors import ConfigError


def test_metric_mode_min_for_losses_max_otherwise():
  assert stats.metric_mode("final_val_loss") == "min"
  assert stats.metric_mode("test_acc") == "max"


def test_extra_axes_ignores_result_bookkeeping_and_constant_columns():
  t = synthetic_members(batch_sizes=(32, 64), seeds=(0, 1)).assign(
      optimizer=lambda d: np.where(d["seed"] == 0, "sgd", "adam"), momentum=0.9,
      status="trained", lr_now=0.1, test_acc=0.5, diverged_at=np.nan)
  assert stats.extra_axes(t) == ["optimizer"]


# ------------------------------------------------------------------ member status


def _status_table(**overrides):
  base = dict(lr=0.1, batch_size=32, diverged=False, first_train_loss=2.3,
              final_train_loss=0.5, final_val_loss=0.6, final_val_acc=0.8)
  return pd.DataFrame([{**base, **overrides}])


def test_member_status_failed_at_chance_accuracy():
  t = _status_table(final_val_acc=0.1)
  assert outcomes.member_status(t, num_classes=10, num_val=1000).tolist() == ["failed"]


def test_member_status_trained_just_outside_chance_band():
  se = math.sqrt(0.1 * 0.9 / 1000)
  t = _status_table(final_val_acc=0.1 + 2.5 * se)
  assert outcomes.member_status(t, num_classes=10, num_val=1000).tolist() == ["trained"]


def test_member_status_failed_when_train_loss_did_not_fall():
  t = _status_table(final_train_loss=2.3)
  assert outcomes.member_status(t, num_classes=10, num_val=1000).tolist() == ["failed"]


def test_member_status_slow_not_failed_when_train_loss_fell_only_5_percent():
  # Below the optimum (LR 0.1), with 60% accuracy: it learned, slowly.
  t = pd.concat([_status_table(lr=0.001, final_train_loss=0.95 * 2.3, final_val_acc=0.6,
                               final_val_loss=1.8), _status_table()])
  assert outcomes.member_status(t, num_classes=10, num_val=1000).tolist() == [
      "slow", "trained"]


def test_member_status_diverged_when_flagged():
  t = _status_table(diverged=True, final_train_loss=np.nan, final_val_acc=np.nan)
  assert outcomes.member_status(t, num_classes=10, num_val=1000).tolist() == ["diverged"]


def test_member_status_rejects_bad_arguments():
  with pytest.raises(ConfigError, match="num_classes"):
    outcomes.member_status(_status_table(), num_classes=1, num_val=100)
  with pytest.raises(ConfigError, match="num_val"):
    outcomes.member_status(_status_table(), num_classes=10, num_val=0)


def test_with_status_keeps_current_status_column():
  t = pd.concat([_status_table(final_val_acc=0.1), _status_table()]).assign(
      status=["slow", "trained"])
  m, source = stats.with_status(t, num_classes=10, num_val=1000)
  assert m["status"].tolist() == ["slow", "trained"] and source == "status column"


def test_with_status_derives_older_status_column_again_when_sizes_known():
  # An older lrjax wrote "failed" for a slow member and "trained" at chance.
  t = pd.concat([_status_table(lr=0.001, final_train_loss=2.1, final_val_acc=0.6,
                               final_val_loss=1.8),
                 _status_table(), _status_table(lr=1.0, final_val_acc=0.1,
                                                final_val_loss=2.3)]).assign(
      status=["failed", "trained", "trained"])
  m, source = stats.with_status(t, 10, 1000)
  assert m["status"].tolist() == ["slow", "trained", "failed"]
  assert source.startswith("derived again (older status column)") and "chance" in source
  # Without the dataset sizes the written column is kept: its chance labels are known.
  m, source = stats.with_status(t)
  assert m["status"].tolist() == ["failed", "trained", "trained"]
  assert source.startswith("status column (older rule")
  assert stats.status_labels(t, 10, 1000).tolist() == ["slow", "trained", "failed"]


def test_with_status_applies_chance_criterion_when_sizes_known():
  t = _status_table(final_val_acc=0.1)
  assert stats.with_status(t, 10, 1000)[0]["status"].tolist() == ["failed"]
  # Without the dataset sizes only the training-loss criteria apply.
  m, source = stats.with_status(t)
  assert m["status"].tolist() == ["trained"] and "chance accuracy unknown" in source


def test_with_status_falls_back_to_diverged_flag_without_train_losses():
  t = pd.DataFrame({"diverged": [False, True], "final_val_acc": [0.1, np.nan]})
  m, source = stats.with_status(t, 10, 1000)
  assert m["status"].tolist() == ["trained", "diverged"] and source.startswith("diverged flag")


def test_with_status_uses_diverged_flag_when_loss_only_disallowed():
  t = _status_table(final_train_loss=2.3)
  assert stats.with_status(t, loss_only=False)[0]["status"].tolist() == ["trained"]
  assert stats.with_status(t)[0]["status"].tolist() == ["failed"]


def test_with_status_passes_thresholds_to_the_rule():
  t = pd.concat([_status_table(lr=0.01, final_train_loss=1.2, final_val_loss=1.0),
                 _status_table()])
  assert stats.with_status(t, 10, 1000)[0]["status"].tolist() == ["trained", "trained"]
  m, _ = stats.with_status(t, 10, 1000, thresholds={"slow_fraction": 0.7})
  assert m["status"].tolist() == ["slow", "trained"]


def test_status_labels_derive_without_a_status_column_when_sizes_known():
  t = pd.concat([_status_table(lr=0.001, final_train_loss=2.1, final_val_acc=0.6,
                               final_val_loss=1.8), _status_table()])
  assert stats.status_labels(t, 10, 1000).tolist() == ["slow", "trained"]
  # Without them, as the estimators read such a table: the diverged flag.
  assert stats.status_labels(t).tolist() == ["trained", "trained"]


def test_masks_count_slow_members_as_stable_and_usable():
  t = pd.DataFrame({"status": list(outcomes.STATUSES)})
  assert stats.trained_mask(t).tolist() == [True, False, False, False]
  assert stats.usable_mask(t).tolist() == [True, True, False, False]
  assert stability.stable_mask(t).tolist() == [True, True, False, False]
  assert stats.not_diverged_mask(t).tolist() == [True, True, True, False]


def test_best_lr_counts_slow_members_as_usable():
  from lrjax.analysis import optima
  t = pd.DataFrame({"lr": [0.001, 0.01, 0.1] * 2, "batch_size": 32, "seed": [0] * 3 + [1] * 3,
                    "final_val_loss": [1.0, 0.5, 0.7] * 2,
                    "status": ["slow", "trained", "trained"] * 2})
  (row,) = optima.best_lr(t, n_boot=0).to_dict("records")
  # With LR 0.001 usable, 0.01 is an interior optimum, not the grid's lower edge.
  assert row["n_usable_lrs"] == 3 and row["grid_best_lr"] == 0.01 and not row["edge"]


# ------------------------------------------------------------------ intervals


def test_small_sample_factor_gives_t_interval_for_a_mean():
  n = 4
  assert stats.small_sample_factor(n) * 1.959964 == pytest.approx(
      3.182 * math.sqrt(n / (n - 1)), rel=1e-3)
  assert math.isnan(stats.small_sample_factor(1))


def test_interval_matches_numpy_percentiles_when_many_seeds():
  reps = np.random.default_rng(0).normal(size=(1000, 3))
  reps[:10, 1] = np.nan
  lo, hi = stats.interval(reps, n_seeds=10_000)
  for j in range(3):
    col = reps[:, j][~np.isnan(reps[:, j])]
    med = np.quantile(col, 0.5, method="lower")
    f = stats.small_sample_factor(10_000)
    assert lo[j] == pytest.approx(med - f * (med - np.quantile(col, 0.025, method="lower")))
    assert hi[j] == pytest.approx(med + f * (np.quantile(col, 0.975, method="higher") - med))


def test_interval_nan_when_most_replicates_nan_or_one_seed():
  reps = np.full((10, 2), np.nan)
  reps[:3, 0] = 1.0
  reps[:, 1] = 1.0
  lo, hi = stats.interval(reps, n_seeds=np.array([5, 1]))
  assert np.isnan(lo).all() and np.isnan(hi).all()


def test_interval_infinite_bound_when_replicates_infinite():
  reps = np.r_[np.ones(90), np.full(10, np.inf)][:, None]
  lo, hi = stats.interval(reps, n_seeds=5)
  assert lo[0] == 1.0 and hi[0] == np.inf


def test_seed_counts_same_draws_for_same_arguments():
  np.testing.assert_array_equal(stats.seed_counts(4, 50, 7), stats.seed_counts(4, 50, 7))
  assert not np.array_equal(stats.seed_counts(4, 50, 7), stats.seed_counts(4, 50, 8))
