"""Tests for lrjax.analysis.verdicts: all estimates at once and their sentences."""
import doctest
import importlib

import numpy as np

from lrjax.analysis import (critical_batch, cube, noise_scale, optima, stability, stats,
                            synthetic)
from lrjax.analysis import verdicts as verdicts_module
from lrjax.analysis.sentences import findings, findings_from
from lrjax.analysis.verdicts import estimate
from lrjax.analysis.synthetic import synthetic_members, synthetic_run
from steps_helpers import history_for, synthetic_steps

BATCHES = (16, 32, 64, 128, 256, 512)
N_BOOT = 300


def test_findings_state_sqrt_verdict_with_interval():
  t = synthetic_members(batch_sizes=BATCHES, augs=(0.0, 1.0), aug_lr_factor=2.0,
                        seeds=(0, 1, 2), diverge_factor=4.0)
  text = findings(t, n_boot=N_BOOT)
  scaling = [s for s in text if s.startswith("Best LR vs batch size")]
  assert len(scaling) == 2 and all("consistent with square-root scaling" in s and "[" in s
                                   for s in scaling)
  aug = [s for s in text if s.startswith("Aug 1")]
  assert len(aug) == 1 and "max stable LR ×2 [1.56, 2.56] (paired by seed, over 6 batch sizes) — higher" in aug[0]
  ratio = float(aug[0].split("best LR ×")[1].split()[0])
  assert 1.8 < ratio < 2.2 and "— higher; max stable" in aug[0]
  assert any("only 3 seeds" in s for s in text)


def test_findings_say_not_settled_with_one_seed():
  t = synthetic_members(batch_sizes=BATCHES, seeds=(0,))
  text = findings(t, n_boot=N_BOOT)
  assert any("no intervals" in s for s in text)
  assert any("point estimates only" in s for s in text)
  assert all("not settled" in s for s in text if s.startswith("Best LR"))


def test_findings_report_status_and_critical_batch():
  planted = synthetic_steps(batch_sizes=(16, 32, 64, 128, 256), seeds=(0, 1, 2), sigma=0.02)
  m = planted.assign(member=np.arange(len(planted)), diverged=False,
                     final_val_loss=0.5 + np.log(planted["steps"]) / 10,
                     first_train_loss=2.3, final_train_loss=0.5, final_val_acc=0.8)
  h = history_for(m, planted["steps"].to_numpy(), every=10, horizon=25000)
  h = h.assign(noise_scale=100.0)
  text = findings(m, h, num_classes=10, num_val=1000, target=1.0, n_boot=100)
  assert text[0].startswith(f"Of {len(m)} members, {len(m)} trained")
  crit = [s for s in text if s.startswith("Critical batch size")]
  assert len(crit) == 1 and "B_crit ≈" in crit[0]
  assert any("noise scale" in s and "first reaches val_loss 1: 100 [100, 100]" in s
             for s in text), text


def test_findings_name_grid_edge_cells():
  lrs = 2.0 ** np.arange(-14, -9, 0.25)  # below every planted optimum
  text = findings(synthetic_members(batch_sizes=(32, 64, 128), lrs=lrs), n_boot=50)
  edge = [s for s in text if s.startswith("Grid edge")]
  assert len(edge) == 1 and "in 3 of 3 cells" in edge[0] and "widen grid.lr" in edge[0]


def test_findings_count_failed_members_from_status_column():
  run = synthetic_run(batch_sizes=(32, 64, 128), seeds=(0, 1), fail_below=0.3,
                      status_columns=True)
  n = run.members["status"].value_counts()
  text = findings(run.members, run.history, n_boot=50)
  assert text[0] == (f"Of {len(run.members)} members, {n['trained']} trained, "
                     f"{n.get('slow', 0)} slow (learned, far from converged), "
                     f"{n['failed']} failed and {n['diverged']} diverged; trained and slow "
                     "members count as stable, and the estimates use both.")


def test_estimate_shares_best_lr_with_scaling_and_aug_effect():
  t = synthetic_members(batch_sizes=(32, 64, 128), augs=(0.0, 1.0), aug_lr_factor=2.0)
  e = estimate(t, n_boot=100, rng_seed=4)
  pd_best = optima.best_lr(t, n_boot=100, rng_seed=4)
  assert e.best_lr.equals(pd_best)
  assert e.scaling.equals(optima.scaling_exponent(t, n_boot=100, rng_seed=4))
  assert e.aug_pooled.equals(stability.aug_effect_pooled(t, n_boot=100, rng_seed=4))
  assert e.reference_aug == 0.0 and e.best_steps is None and e.noise_summary is None
  assert findings_from(e) == findings(t, n_boot=100, rng_seed=4)


def test_estimate_steps_and_noise_scale_from_synthetic_run_history():
  run = synthetic_run(batch_sizes=(32, 64, 128, 256), seeds=(0, 1, 2), n_evals=40,
                      noise_scale=50.0, noise=0.002)
  e = estimate(run.members, run.history, n_boot=100)
  # Each aug level gets its own target (aug 0.5 ends at a higher loss), reached by
  # every batch size.
  assert e.target is None and e.best_steps["best_steps"].notna().all()
  targets = e.best_steps.groupby("aug")["target"].first()
  assert targets[0.5] > targets[0.0]
  # Per aug, the hardest target and two easier ones.
  assert len(e.critical_batch) == 6 and len(e.noise_summary) == 2
  assert (e.critical_batch.groupby("aug").size() == 3).all()
  assert e.critical_batch["b_crit"].notna().all()
  assert e.noise_summary["noise_scale"].between(50, 150 * 1.5).all()


# ------------------------------------------------------------------ docs


def test_docstring_examples_pass():
  modules = (stats, cube, optima, stability, critical_batch, noise_scale,
             importlib.import_module("lrjax.analysis.verdicts"),
             importlib.import_module("lrjax.analysis.sentences"), synthetic)
  results = [doctest.testmod(m, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
             for m in modules]
  assert sum(r.attempted for r in results) > 20 and sum(r.failed for r in results) == 0


def test_findings_advise_refining_below_failing_lrs_not_widening_the_grid():
  # The optimum (0.04) lies above LRs that diverge (> 1.5 x 0.01 at batch 64): the best
  # usable LR sits just below failing ones, a stability edge, not a grid edge.
  t = synthetic_members(batch_sizes=(64,), lrs=(0.0025, 0.005, 0.01, 0.02, 0.04),
                        seeds=(0, 1, 2), diverge_factor=1.5)
  text = findings(t, n_boot=50)
  (edge,) = [s for s in text if s.startswith(("Stability edge", "Grid edge"))]
  assert edge.startswith("Stability edge: in 1 of 1 cells")
  assert "refine grid.lr between 0.01 and 0.02" in edge and "widen grid.lr" not in edge
  # The same optimum beyond a grid that ends at 0.01: widen.
  text = findings(synthetic_members(batch_sizes=(64,), lrs=(0.0025, 0.005, 0.01),
                                    lr_ref=0.04, seeds=(0, 1, 2)), n_boot=50)
  (edge,) = [s for s in text if s.startswith(("Stability edge", "Grid edge"))]
  assert edge.startswith("Grid edge") and "widen grid.lr above 0.01" in edge


def test_edge_advice_names_both_sides_when_one_lr_trained():
  assert verdicts_module.edge_advice("stability_high,grid_low", 0.01, 0.02) == (
      "the next LR up, 0.02, fails: refine grid.lr between 0.01 and 0.02 (widening it "
      "would not help); 0.01 is the grid's smallest LR: widen grid.lr below 0.01")


def test_findings_code_says_match_or_no_effect_only_through_equivalence():
  # "match", "no effect", "indistinguishable" are claims of equivalence: only the
  # equivalence test (comparisons, questions) may make them, in its own words.
  import pathlib
  import re
  root = pathlib.Path(verdicts_module.__file__).parent
  words = re.compile(r"\b(match(es|ed)?|no effect|indistinguishable|same as)\b", re.I)
  for name in ("verdicts.py", "sentences.py", "questions.py", "family.py", "headline.py",
               "comparisons.py", "summary.py", "report.py"):
    hits = [line for line in (root / name).read_text().splitlines() if words.search(line)]
    assert not hits, (name, hits)


def test_with_metric_redoes_best_lr_on_the_other_metric():
  t = synthetic_members(batch_sizes=(64, 128, 256))
  t = t.assign(best_val_loss=t["final_val_loss"].where(t["lr"] > 0.02, t["final_val_loss"] + 1))
  e = estimate(t, n_boot=50)
  other = verdicts_module.with_metric(e, "best_val_loss")
  assert other.metric == "best_val_loss" and other.max_stable is e.max_stable
  assert (other.best_lr["grid_best_lr"] > 0.02).all()
  assert (e.best_lr["grid_best_lr"] <= 0.02).any()
