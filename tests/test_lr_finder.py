"""The LR range test: smoothing, suggestions, the classic and vectorised tests."""
import numpy as np

from lrjax import data, lr_finder, models


def test_smooth_matches_bias_corrected_ema_when_loss_steps():
  losses = np.array([4.0, 2.0, 1.0])
  beta = 0.9
  expected, avg = [], 0.0
  for i, v in enumerate(losses):
    avg = beta * avg + (1 - beta) * v
    expected.append(avg / (1 - beta ** (i + 1)))
  np.testing.assert_allclose(lr_finder.smooth(losses, beta), expected)


def test_suggestions_find_steepest_drop_when_curve_is_synthetic():
  lrs = np.geomspace(1e-5, 1.0, 101)
  # Loss falls fastest around lr = 1e-2 (a logistic in log lr), then blows up past 0.3.
  x = np.log10(lrs)
  loss = 2.0 - 1.5 / (1 + np.exp(-4 * (x + 2))) + np.where(lrs > 0.3, 50 * (lrs - 0.3), 0)
  s = lr_finder.suggestions(lrs, loss)
  assert 5e-3 < s["steepest"] < 2e-2
  assert s["minimum_div_10"] < 0.05
  assert 1e-3 < s["valley"] < 0.3


def test_range_test_stops_when_loss_diverges_and_suggests_within_range():
  out = lr_finder.range_test(models.get_model("mlp", 10, hidden=(32,)), data.load("digits"),
                             optimizer="momentum", num_steps=80, start_lr=1e-4, end_lr=100.0,
                             seeds=(0, 1))
  assert len(out["lr"]) < 80  # LR 100 with momentum diverges before the end
  for value in out["suggestions"].values():
    assert 1e-4 <= value <= 100.0


def test_suggest_grid_is_centred_log_spaced_when_called():
  values = lr_finder.suggest_grid(0.03, num=5, decades=2.0)
  np.testing.assert_allclose(values[2], 0.03, rtol=1e-5)
  np.testing.assert_allclose(np.diff(np.log10(values)), 0.5, rtol=1e-4)
