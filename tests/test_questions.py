"""Tests for lrjax.analysis.questions (decisions, the primary family) and
lrjax.analysis.headline."""
import numpy as np
import pandas as pd
import pytest

from lrjax.analysis import comparisons, headline, questions, verdicts
from lrjax.analysis.analysis_settings import AnalysisSettings
from lrjax.analysis.synthetic import synthetic_members

BATCHES = (32, 64, 128, 256)
LRS = tuple(2.0 ** (k / 4) * 0.001 for k in range(0, 48))


def _schedule_members(offset, noise, seeds=(0, 1, 2)):
  rng = np.random.default_rng(0)
  rows = []
  for arm, shift in (("constant", 0.0), ("cosine", offset)):
    for lr in (0.01, 0.02, 0.04):
      for seed in seeds:
        loss = 0.5 + 0.1 * np.log2(lr / 0.02) ** 2 + 0.1 * seed + shift + noise * rng.normal()
        rows.append({"lr": lr, "batch_size": 64, "seed": seed, "schedule": arm,
                     "status": "trained", "final_val_loss": loss, "best_val_loss": loss})
  return pd.DataFrame(rows).assign(member=lambda t: np.arange(len(t)), diverged=False)


def test_arms_question_is_the_primary_family_and_unsettled_answers_say_what_settles():
  m = _schedule_members(offset=0.01, noise=0.02)
  settings = AnalysisSettings(questions=("arms:schedule",))
  e = verdicts.estimate(m, n_boot=100)
  arms = comparisons.compare_arms(m, settings)
  a = questions.answer(e, settings, arms, verdicts.with_metric(e, "best_val_loss"))
  primary = a.table[a.table["role"] == "primary"]
  assert a.family["size"] == 1 and primary["question"].tolist() == ["arms:schedule"]
  assert primary["verdict"].tolist() == ["not settled"]
  assert re_seeds(primary["settle"].iloc[0]) > 3
  head = headline.headline(a, headline.best_configuration(m, e.metric), e, arms)
  assert head[0].startswith("Best configuration (final_val_loss")
  assert "schedule against constant" in head[1] and "not settled" in head[1]
  assert f"; ~{re_seeds(head[1])} seeds (now 3) would settle it" in head[1]
  assert "1 decisions, Holm-corrected, family-wise 95%" in head[-1]
  assert set(a.table["role"]) == {"primary", "exploratory", "check"}


def re_seeds(text):
  import re
  return int(re.search(r"~(\d+) seeds", text).group(1))


def test_best_lr_at_stability_edge_advises_refining_not_widening():
  t = synthetic_members(batch_sizes=(64,), lrs=(0.0025, 0.005, 0.01, 0.02), seeds=(0, 1, 2),
                        diverge_factor=1.5)
  e = verdicts.estimate(t, n_boot=50)
  (d,) = questions.decisions(e, "best_lr", AnalysisSettings())
  assert d.claim == "at an edge" and np.isnan(d.p)
  assert "refine grid.lr between 0.01 and 0.02" in d.words and "widen" not in d.words.replace(
      "widening it would not help", "")


def test_scaling_with_two_batch_sizes_names_batch_sizes_beyond_the_grid():
  t = synthetic_members(batch_sizes=(64, 128), seeds=(0, 1, 2))
  e = verdicts.estimate(t, n_boot=100)
  a = questions.answer(e, AnalysisSettings(questions=("scaling",)))
  (row,) = a.table[a.table["role"] == "primary"].to_dict("records")
  assert row["verdict"] == "not settled" and "batch sizes beyond 128" in row["settle"]


def test_companion_metric_disagreement_is_said_under_its_question():
  final = synthetic_members(batch_sizes=BATCHES, lrs=LRS, exponent=0.5, noise=0.0)
  best = synthetic_members(batch_sizes=BATCHES, lrs=LRS, exponent=1.0, noise=0.0)
  m = final.assign(best_val_loss=best["final_val_loss"])
  e = verdicts.estimate(m, n_boot=100)
  a = questions.answer(e, AnalysisSettings(questions=("scaling",)), None,
                       verdicts.with_metric(e, "best_val_loss"))
  text = a.primary["scaling"]
  assert any("consistent with square-root scaling" in s for s in text)
  (note,) = [s for s in text if "disagree" in s]
  assert note.startswith("scaling at aug 0: final_val_loss and best_val_loss disagree")
  assert "(sqrt," in note and "vs linear," in note


def test_aug_effect_sign_convention_in_words():
  t = synthetic_members(batch_sizes=(64, 256), augs=(0.0, 1.0), aug_lr_factor=2.0,
                        seeds=(0, 1, 2), noise=0.002)
  e = verdicts.estimate(t, n_boot=200)
  (d,) = questions.decisions(e, "aug_effect", AnalysisSettings(lr_equivalence_factor=1.2))
  assert d.claim == "raised" and d.words == "augmentation raised the best LR"
  assert d.estimate == pytest.approx(2.0, rel=0.1) and d.ratio
