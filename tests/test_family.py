"""Tests for lrjax.analysis.family: Holm's step-down over the primary decisions and
their simultaneous intervals."""
import math

import numpy as np
import pytest

from lrjax.analysis import family, inference
from lrjax.analysis.family import Decision, family_table


def _decision(p, claim="linear", cell="aug 0"):
  return Decision("scaling", cell, "final_val_loss", "exponent", 1.0, 0.9, 1.1, 3, p,
                  claim, claim)


def test_holm_rejects_in_order_of_p_and_counts_untestable_decisions():
  items = [(_decision(0.04, cell="a"), "primary"), (_decision(0.001, cell="b"), "primary"),
           (_decision(0.012, cell="c"), "primary"),
           (_decision(math.nan, "not settled", cell="d"), "primary"),
           (_decision(0.0001, cell="e"), "exploratory")]
  t = family.family_table(items).set_index("cell")
  # Family of 4 (the untestable one counts, the exploratory one does not): steps
  # 4 x 0.001, 3 x 0.012, 2 x 0.04.
  assert t.loc["b", "p_holm"] == pytest.approx(0.004)
  assert t.loc["c", "p_holm"] == pytest.approx(0.036)
  assert t.loc["a", "p_holm"] == pytest.approx(0.08)
  assert np.isnan(t.loc["d", "p_holm"]) and not t.loc["d", "rejected"]
  assert t.loc[["b", "c", "a"], "verdict"].tolist() == ["linear", "linear", "not settled"]
  assert t.loc["a", "claim"] == "linear"  # alone at 95% it was
  assert (t.loc[["a", "b", "c", "d"], "level"] == inference.simultaneous_level(4)).all()
  assert t.loc["e", "level"] == 0.95 and t.loc["e", "verdict"] == "linear"
  assert np.isnan(t.loc["e", "p_holm"])
  assert "Holm-adjusted p 0.08" in t.loc["a", "sentence"]
  assert "not settled at family-wise 95% (alone at 95%: linear)" in t.loc["a", "sentence"]


def test_primary_intervals_are_at_the_simultaneous_level():
  t = family.family_table([(_decision(0.001, cell=str(i)), "primary") for i in range(5)])
  lo, hi = inference.rescale_interval(1.0, 0.9, 1.1, inference.simultaneous_level(5), 2)
  assert t["lo"].tolist() == pytest.approx([lo] * 5) and t["hi"].tolist() == pytest.approx(
      [hi] * 5)
  assert hi - lo > 0.2


def test_family_splits_error_rate_over_looks_when_looks_given():
  d = Decision("scaling", "aug 0", "m", "exponent", 1.0, 0.9, 1.1, 5, 0.03, "linear",
               "linear")
  once = family_table([(d, "primary")])
  twice = family_table([(d, "primary")], looks=2)
  assert once["verdict"].tolist() == ["linear"]  # p 0.03 < 0.05
  assert twice["verdict"].tolist() == ["not settled"]  # p 0.03 > 0.05 / 2
  assert float(twice["level"][0]) == pytest.approx(0.975)
  assert float(twice["hi"][0]) > float(once["hi"][0])  # the wider simultaneous interval
