"""Tests for lrjax.analysis.stability: max stable LR and the augmentation effect."""
import math

import numpy as np
import pandas as pd
import pytest

from lrjax.analysis import inference, sentences, stability
from lrjax.analysis.synthetic import synthetic_members, synthetic_run
from lrjax.errors import ConfigError
from benchmark_helpers import load_benchmark

N_BOOT = 300
STATUS = {"t": "trained", "s": "slow", "f": "failed", "d": "diverged"}


def _planted(lrs, per_seed, batch_size=32, aug=0.0):
  """Members of one cell: ``per_seed[s]`` spells seed s's status at each LR (t/s/f/d)."""
  rows = [{"lr": lr, "batch_size": batch_size, "aug": aug, "seed": s, "status": STATUS[c],
           "diverged": c == "d", "final_val_loss": np.nan if c == "d" else 0.3 + lr}
          for s, codes in enumerate(per_seed) for lr, c in zip(lrs, codes)]
  return pd.DataFrame(rows).assign(member=lambda d: np.arange(len(d)))


def _flagged(t):
  """``t`` without training losses, so that its ``diverged`` flag alone sets the status."""
  return t.drop(columns=["first_train_loss", "final_train_loss"])


# ------------------------------------------------------------------ max stable LR


def test_stable_mask_counts_slow_as_stable():
  m = pd.DataFrame({"status": ["trained", "slow", "failed", "diverged"]})
  assert stability.stable_mask(m).tolist() == [True, True, False, False]
  # Without a status column: the diverged flag.
  assert stability.stable_mask(pd.DataFrame({"diverged": [False, True]})).tolist() == [
      True, False]


def test_stability_brackets_per_seed():
  m = _planted((0.01, 0.02, 0.04, 0.08), ["tttd", "ttdd", "dddd", "tttt"])
  b = stability.stability_brackets(m)
  assert b["seed"].tolist() == [0, 1, 2, 3]
  assert b["stable_lr"].tolist() == [0.04, 0.02, 0.0, 0.08]
  assert b["unstable_lr"].tolist() == [0.08, 0.04, 0.01, math.inf]


def test_max_stable_lr_is_geometric_mean_of_seed_brackets_with_mixed_status():
  lrs = (0.01, 0.02, 0.04, 0.08)
  t = synthetic_members(batch_sizes=(64,), lrs=lrs, seeds=(0, 1, 2), lr_ref=0.02,
                        diverge_factor=3.0)  # 0.08 diverges on every seed
  t.loc[(t["lr"] == 0.04) & (t["seed"] == 1), "diverged"] = True
  r = stability.max_stable_lr(_flagged(t)).iloc[0]
  # Seeds 0 and 2 lie in [0.04, 0.08], seed 1 in [0.02, 0.04].
  lower, upper = np.log([0.04, 0.02, 0.04]), np.log([0.08, 0.04, 0.08])
  want = inference.censored_mean(lower, upper)
  assert r["max_stable_lr"] == pytest.approx(math.exp(want.estimate))
  assert r["max_stable_lr"] == pytest.approx(0.02 * math.sqrt(2) * 2 ** (2 / 3))
  assert r["max_stable_lr_lo"] == pytest.approx(math.exp(want.lo))
  assert r["max_stable_lr_hi"] == pytest.approx(math.exp(want.hi))
  assert r["max_stable_lr_lo"] < r["max_stable_lr"] < r["max_stable_lr_hi"]
  assert (r["bracket_lo"], r["bracket_hi"], r["next_lr"]) == (0.04, 0.08, 0.08)
  assert r["next_status"] == "diverged 3/3"
  assert (r["n_seeds"], r["n_censored_above"], r["n_censored_below"], r["note"]) == (
      3, 0, 0, "")


def test_max_stable_lr_issue_example_one_seed_fails_below_the_others():
  # Seed 2 fails at 0.2; seeds 0 and 1 train there and diverge at 0.4. The old
  # estimator said 0.1 [0.1, 0.645]: on its own lower bound, one-sided.
  lrs = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
  r = stability.max_stable_lr(_planted(lrs, ["ttttdd", "ttttdd", "tttfdd"])).iloc[0]
  d = math.log(2)
  mid = np.log([0.2, 0.2, 0.1]) + d / 2
  sd = float(np.std(mid, ddof=1))
  half = d / 2 + inference.t_quantile(0.95, 2) * sd / math.sqrt(3)
  assert r["max_stable_lr"] == pytest.approx(math.exp(mid.mean()))  # 0.224
  assert r["max_stable_lr_lo"] == pytest.approx(math.exp(mid.mean() - half))  # 0.0587
  assert r["max_stable_lr_hi"] == pytest.approx(math.exp(mid.mean() + half))  # 0.858
  assert r["max_stable_lr_lo"] < 0.1 < r["bracket_lo"] == 0.2 < r["max_stable_lr"]
  assert r["max_stable_lr"] < r["bracket_hi"] == 0.4 < r["max_stable_lr_hi"]
  # The upper end stays within 1.25 grid steps of 0.4, where every seed is unstable.
  assert r["max_stable_lr_hi"] < 0.4 * 2 ** 1.25
  assert r["next_status"] == "diverged 3/3"


def test_max_stable_lr_interval_straddles_the_bracket_when_seeds_agree():
  lrs = tuple(0.01 * 2.0 ** k for k in range(6))
  for n_seeds in (3, 5, 10):
    r = stability.max_stable_lr(_planted(lrs, ["tttddd"] * n_seeds)).iloc[0]
    assert r["max_stable_lr"] == pytest.approx(0.04 * math.sqrt(2))
    assert (r["bracket_lo"], r["bracket_hi"]) == (0.04, 0.08)
    assert r["max_stable_lr_lo"] <= 0.04 and r["max_stable_lr_hi"] >= 0.08
  # Three seeds: the rounding counted as uniform noise of the bracket's width.
  r = stability.max_stable_lr(_planted(lrs, ["tttddd"] * 3)).iloc[0]
  half = inference.t_quantile(0.95, 2) * math.log(2) / math.sqrt(12 * 3)
  assert r["max_stable_lr_hi"] == pytest.approx(0.04 * math.sqrt(2) * math.exp(half))


def test_max_stable_lr_one_seed_is_its_bracket():
  r = stability.max_stable_lr(_planted((0.01, 0.02, 0.04), ["ttd"])).iloc[0]
  assert r["max_stable_lr"] == pytest.approx(0.02 * math.sqrt(2))
  assert (r["max_stable_lr_lo"], r["max_stable_lr_hi"]) == (0.02, 0.04)
  assert r["note"] == "one seed: no interval"


def test_max_stable_lr_censored_above_when_grid_never_diverges():
  t = synthetic_members(batch_sizes=(64,), lrs=(0.01, 0.02), seeds=(0, 1))
  r = stability.max_stable_lr(_flagged(t)).iloc[0]
  assert r["max_stable_lr"] == 0.02 and r["max_stable_lr_lo"] == 0.02
  assert r["max_stable_lr_hi"] == math.inf and r["n_censored_above"] == 2
  assert r["bracket_lo"] == 0.02 and np.isnan(r["bracket_hi"])
  assert np.isnan(r["next_lr"]) and r["next_status"] == ""
  assert r["note"] == ("limit above the grid's largest LR 0.02 for 2 of 2 seeds: a lower "
                       "bound only")


def test_max_stable_lr_nan_when_nothing_is_stable():
  t = synthetic_members(batch_sizes=(64,), lrs=(0.01, 0.02), seeds=(0, 1), diverge_factor=0.5)
  r = stability.max_stable_lr(_flagged(t)).iloc[0]
  assert np.isnan(r["max_stable_lr"]) and r["next_lr"] == 0.01
  assert r["next_status"] == "diverged 2/2"
  assert (r["max_stable_lr_lo"], r["max_stable_lr_hi"]) == (0.0, 0.01)
  assert np.isnan(r["bracket_lo"]) and r["bracket_hi"] == 0.01
  assert r["n_censored_below"] == 2 and "upper bound only" in r["note"]


def test_max_stable_lr_failed_member_is_not_stable():
  t = synthetic_members(batch_sizes=(64,), lrs=(0.01, 0.02, 0.04), seeds=(0, 1))
  status = np.where((t["lr"] == 0.04) & (t["seed"] == 0), "failed", "trained")
  r = stability.max_stable_lr(t.assign(status=status)).iloc[0]
  # Seed 0 in [0.02, 0.04]; seed 1 stable at the top, 0.04 standing in for its limit.
  assert r["max_stable_lr"] == pytest.approx(math.sqrt(0.02 * math.sqrt(2) * 0.04))
  assert r["n_censored_above"] == 1 and r["max_stable_lr_hi"] == math.inf
  assert r["max_stable_lr_lo"] < 0.02
  assert r["next_lr"] == 0.04 and r["next_status"] == "trained 1/2, failed 1/2"


def test_max_stable_lr_slow_member_is_stable():
  r = stability.max_stable_lr(_planted((0.01, 0.02, 0.04), ["ssd", "tsd"])).iloc[0]
  assert r["max_stable_lr"] == pytest.approx(0.02 * math.sqrt(2))
  assert r["next_status"] == "diverged 2/2"


def test_max_stable_lr_per_batch_size_below_planted_divergence():
  run = synthetic_run(lrs=tuple(0.01 * 2.0 ** k for k in range(-2, 7)),
                      batch_sizes=(32, 64, 128, 256), augs=(0.0,), seeds=(0, 1),
                      diverge_above=8.0)
  b = stability.max_stable_lr(run.members)
  # Diverges above 8x the optimum 0.01 * B/32: first diverging LR is 16x the optimum.
  np.testing.assert_allclose(b["bracket_lo"], [0.08, 0.16, 0.32, 0.64])
  np.testing.assert_allclose(b["bracket_hi"], [0.16, 0.32, 0.64, np.nan])
  np.testing.assert_allclose(b["next_lr"], [0.16, 0.32, 0.64, np.nan])
  np.testing.assert_allclose(b["max_stable_lr"], [0.08 * 2 ** 0.5, 0.16 * 2 ** 0.5,
                                                  0.32 * 2 ** 0.5, 0.64])
  assert b["n_censored_above"].tolist() == [0, 0, 0, 2]
  assert b["next_status"].tolist() == ["diverged 2/2"] * 3 + [""]


def test_max_stable_lr_ignores_instability_below_a_stable_lr():
  # A seed diverged at the smallest LR, yet every seed trained at the larger one: each
  # seed's bracket starts at its largest stable LR.
  m = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "batch_size": 32, "aug": 0.0,
                    "seed": [0, 1, 0, 1], "diverged": [False, True, False, False]})
  row = stability.max_stable_lr(m).iloc[0]
  assert row["max_stable_lr"] == 1.0 and np.isnan(row["next_lr"])


def test_max_stable_lr_per_cell_of_extra_axes():
  lrs = (0.01, 0.02, 0.04)
  m = pd.concat([_planted(lrs, ["ttd"] * 2).assign(optimizer="sgd"),
                 _planted(lrs, ["tdd"] * 2).assign(optimizer="adam")], ignore_index=True)
  r = stability.max_stable_lr(m.assign(member=np.arange(len(m))))
  assert r["optimizer"].tolist() == ["adam", "sgd"]
  assert r["bracket_lo"].tolist() == [0.01, 0.02]


def test_planted_coverage_few_replications():
  cov = load_benchmark("coverage_stability")
  for grid in cov.GRIDS.values():
    c = cov.coverage(grid, 3, 0.3, 40, "failed+slow", rng_seed=1)
    assert c.coverage >= 0.9 and c.two_sided == 1.0


@pytest.mark.slow
def test_planted_coverage_stability_200_replications():
  cov = load_benchmark("coverage_stability")
  table = cov.coverage_table(200)
  assert len(table) == 2 * 2 * 4 * 3
  assert cov.failures(table).empty, cov.markdown(cov.failures(table))
  required = table[table["seeds"].isin((3, 5))]
  assert (required["coverage"] >= 0.9).all()
  assert (table["two_sided"].dropna() == 1.0).all()


# ------------------------------------------------------------------ aug effect


def _aug_table(factor):
  return synthetic_members(batch_sizes=(32, 64, 128, 256), augs=(0.0, 1.0),
                           aug_lr_factor=factor, seeds=(0, 1, 2), diverge_factor=4.0)


def test_aug_effect_higher_when_optimum_doubles():
  r = stability.aug_effect(_aug_table(2.0), n_boot=N_BOOT)
  assert (r["verdict"] == "higher").all()
  assert ((r["d_log_best_lr_lo"] <= math.log(2)) & (math.log(2) <= r["d_log_best_lr_hi"])).all()
  # Divergence is planted at 4 x the optimum, so the max stable LR doubles too.
  np.testing.assert_allclose(r["d_log_max_stable_lr"], math.log(2))
  assert (r["max_stable_verdict"] == "higher").all()


def test_aug_effect_pooled_higher_when_optimum_doubles():
  r = stability.aug_effect_pooled(_aug_table(2.0), n_boot=N_BOOT).iloc[0]
  assert r["aug"] == 1.0 and r["n_batch_sizes"] == 4
  assert r["d_log_best_lr_lo"] <= math.log(2) <= r["d_log_best_lr_hi"]
  assert r["verdict"] == "higher" and r["max_stable_verdict"] == "higher"


def test_aug_effect_pooled_not_settled_without_effect():
  r = stability.aug_effect_pooled(_aug_table(1.0), n_boot=N_BOOT).iloc[0]
  assert r["d_log_best_lr_lo"] <= 0 <= r["d_log_best_lr_hi"]
  assert r["verdict"] == "not settled"
  # Same divergence point at both aug levels: the max stable LR does not move.
  assert r["d_log_max_stable_lr"] == 0 and r["max_stable_verdict"] == "not settled"


def test_aug_effect_lower_when_optimum_halves():
  r = stability.aug_effect_pooled(_aug_table(0.5), n_boot=N_BOOT).iloc[0]
  assert r["verdict"] == "lower"


def test_aug_effect_not_settled_at_grid_edge():
  t = synthetic_members(batch_sizes=(64,), augs=(0.0, 1.0), aug_lr_factor=2.0,
                        lrs=2.0 ** np.arange(-9, -6.2, 0.25), seeds=(0, 1, 2))
  r = stability.aug_effect(t, n_boot=50).iloc[0]  # aug 1's optimum (0.02) is above the grid
  assert r["verdict"] == "not settled" and "edge" in r["reason"]


def _paired_stability_table():
  """Batch 32: aug 1 is stable two grid steps further than aug 0 on every seed; batch
  64: aug 1 is stable to the top of the grid; batch 128: both are."""
  lrs = tuple(0.01 * 2.0 ** k for k in range(8))
  ref, top = ["tttddddd", "ttttdddd", "tttttddd"], ["tttttttt"] * 3
  parts = [_planted(lrs, ref, 32, 0.0), _planted(lrs, ["tttttddd", "ttttttdd", "tttttttd"],
                                                 32, 1.0),
           _planted(lrs, ref, 64, 0.0), _planted(lrs, top, 64, 1.0),
           _planted(lrs, top, 128, 0.0), _planted(lrs, top, 128, 1.0)]
  m = pd.concat(parts, ignore_index=True)
  return m.assign(member=np.arange(len(m)))


def test_aug_effect_max_stable_lr_paired_by_seed():
  r = stability.aug_effect(_paired_stability_table(), n_boot=50).set_index("batch_size")
  # Each seed's difference lies in [1, 3] grid steps (log 2 each).
  want = inference.censored_mean(np.log([2.0] * 3), np.log([8.0] * 3))
  assert r.loc[32, "d_log_max_stable_lr"] == pytest.approx(math.log(4))
  assert r.loc[32, "d_log_max_stable_lr_lo"] == pytest.approx(want.lo)
  assert r.loc[32, "d_log_max_stable_lr_hi"] == pytest.approx(want.hi)
  assert 0 < r.loc[32, "d_log_max_stable_lr_lo"] < math.log(2)
  assert r.loc[32, "max_stable_verdict"] == "higher"
  # Aug 1 stable to the top: a lower bound, still above 0.
  assert r.loc[64, "d_log_max_stable_lr_hi"] == math.inf
  assert r.loc[64, "d_log_max_stable_lr_lo"] > 0 and r.loc[64, "max_stable_verdict"] == "higher"
  assert "one-sided: 3 of 3 seeds" in r.loc[64, "max_stable_reason"]
  # Both stable to the top: nothing to compare.
  assert np.isnan(r.loc[128, "d_log_max_stable_lr"])
  assert r.loc[128, "max_stable_verdict"] == "not settled"
  assert "both levels are stable up to the top" in r.loc[128, "max_stable_reason"]


def test_aug_effect_pooled_max_stable_lr_averages_seed_brackets():
  r = stability.aug_effect_pooled(_paired_stability_table(), n_boot=50).iloc[0]
  assert r["n_log_max_stable_lr"] == 2  # batch 128 is left out
  # Per seed, the mean over batch 32 and 64 of the difference brackets; 64 is open above.
  lower = (np.log([2.0] * 3) + np.log([16.0, 8.0, 4.0])) / 2
  want = inference.censored_mean(lower, np.full(3, np.inf))
  assert r["d_log_max_stable_lr"] == pytest.approx(want.estimate)
  assert r["d_log_max_stable_lr_lo"] == pytest.approx(want.lo)
  assert r["d_log_max_stable_lr_hi"] == math.inf and r["max_stable_verdict"] == "higher"


def test_aug_effect_max_stable_lr_one_seed_not_settled():
  lrs = tuple(0.01 * 2.0 ** k for k in range(6))
  m = pd.concat([_planted(lrs, ["ttdddd"], 32, 0.0), _planted(lrs, ["ttttdd"], 32, 1.0)],
                ignore_index=True)
  r = stability.aug_effect(m.assign(member=np.arange(len(m))), n_boot=20).iloc[0]
  # The seed's difference lies in [1, 3] grid steps: its bracket, but no verdict.
  assert r["d_log_max_stable_lr_lo"] == pytest.approx(math.log(2))
  assert r["d_log_max_stable_lr_hi"] == pytest.approx(math.log(8))
  assert r["max_stable_verdict"] == "not settled"
  assert r["max_stable_reason"] == "one seed: no interval"


def test_aug_effect_rejects_missing_reference():
  with pytest.raises(ConfigError, match="reference_aug"):
    stability.aug_effect(_aug_table(2.0), reference_aug=0.3, n_boot=10)


# ------------------------------------------------------------------ sentences


def test_findings_state_max_stable_lr_interval_bracket_and_censoring():
  text = sentences.findings(_paired_stability_table(), n_boot=50)
  stable = [s for s in text if s.startswith("Max stable LR at aug")]
  assert len(stable) == 2
  r = stability.max_stable_lr(_paired_stability_table()).iloc[0]
  cell = (f"batch 32: {r['max_stable_lr']:.3g} [{r['max_stable_lr_lo']:.3g}, "
          f"{r['max_stable_lr_hi']:.3g}], between grid LRs 0.08 and 0.16")
  assert cell in stable[0]
  assert ("batch 128: 1.28 [1.28, ∞], at the grid's largest LR 1.28; above the grid's "
          "largest LR for 3 of 3 seeds: a lower bound only") in stable[0]
  aug = [s for s in text if s.startswith("Aug 1 vs 0")]
  assert len(aug) == 1 and "max stable LR ×4 [" in aug[0]
  assert "(paired by seed, over 2 batch sizes; one-sided" in aug[0] and ", ∞]" in aug[0]
  assert "— higher; best" in aug[0]


def test_findings_max_stable_lr_one_seed_and_nothing_stable():
  lrs = (0.01, 0.02, 0.04)
  m = pd.concat([_planted(lrs, ["ttd"], 32), _planted(lrs, ["ddd"], 64)], ignore_index=True)
  text = sentences.findings(m.assign(member=np.arange(len(m))), n_boot=0)
  stable = [s for s in text if s.startswith("Max stable LR")]
  assert len(stable) == 1
  assert "batch 32: 0.0283 (one seed: no interval), between grid LRs 0.02 and 0.04" in stable[0]
  assert "batch 64: below the grid's smallest LR 0.01 (no seed is stable" in stable[0]
