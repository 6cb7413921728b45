"""The LR range test: smoothing, suggestions, the classic and vectorised tests.

The range test trains through the engine, so its losses are checked against
``plain_step_losses``, a plain Optax loop under the same exponential ramp, data order
and initial weights, with the objective under test.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from lrjax import data, lr_finder, models
from lrjax.engine import TrainSettings
from plain_training import plain_step_losses


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
  assert sorted(out["suggestions"]) == ["minimum_div_10", "steepest", "valley"]
  for value in out["suggestions"].values():
    assert 1e-4 <= value <= 100.0


def test_suggest_grid_is_centred_log_spaced_when_called():
  values = lr_finder.suggest_grid(0.03, num=5, decades=2.0)
  np.testing.assert_allclose(values[2], 0.03, rtol=1e-5)
  np.testing.assert_allclose(np.diff(np.log10(values)), 0.5, rtol=1e-4)


# -- the range test trains through the engine: the run's objective, not plain CE --------

NUM_STEPS, START_LR, END_LR = 40, 1e-3, 1.0


def brier(logits, labels):
  """A custom training loss: the Brier score of the softmax."""
  return jnp.sum((jax.nn.softmax(logits) - labels) ** 2, axis=-1)


class BatchNormNet(nn.Module):
  """Dense -> BatchNorm -> ReLU -> Dense: a model with state."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[:-3] + (-1,))
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(16)(x)))
    return nn.Dense(10)(x)


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


@pytest.fixture(scope="module")
def mlp():
  return models.get_model("mlp", 10, hidden=(32,))


def _ramp(count):
  return START_LR * (END_LR / START_LR) ** (count / (NUM_STEPS - 1))


def _engine_losses(mlp, digits, **kwargs):
  out = lr_finder.range_test(mlp, digits, num_steps=NUM_STEPS, start_lr=START_LR,
                             end_lr=END_LR, diverge_factor=1e9, **kwargs)
  assert len(out["loss"]) == NUM_STEPS  # the ramp stays stable to its end
  return out["loss"]


def _plain_losses(mlp, digits, optimizer=None, **kwargs):
  optimizer = optimizer or optax.sgd(_ramp, momentum=0.9)
  return np.asarray(plain_step_losses(mlp, digits, optimizer, 32, 0, NUM_STEPS, **kwargs))


def test_range_test_ramp_is_exponential_from_start_to_end_lr(mlp, digits):
  out = lr_finder.range_test(mlp, digits, num_steps=NUM_STEPS, start_lr=START_LR,
                             end_lr=END_LR, diverge_factor=1e9)
  np.testing.assert_allclose(out["lr"], _ramp(np.arange(NUM_STEPS)), rtol=1e-6)
  assert len(out["lr"]) == len(out["loss"]) == len(out["smoothed"])


def test_range_test_trains_label_smoothed_loss_when_settings_smooth(mlp, digits):
  losses = _engine_losses(mlp, digits, settings=TrainSettings(label_smoothing=0.3))
  np.testing.assert_allclose(losses, _plain_losses(mlp, digits, label_smoothing=0.3),
                             rtol=1e-4)
  assert not np.allclose(losses, _plain_losses(mlp, digits), rtol=1e-2)


def test_range_test_trains_custom_loss_when_settings_give_a_callable(mlp, digits):
  losses = _engine_losses(mlp, digits, settings=TrainSettings(loss=brier))
  np.testing.assert_allclose(losses, _plain_losses(mlp, digits, loss=brier), rtol=1e-4)
  assert not np.allclose(losses, _plain_losses(mlp, digits), rtol=1e-2)


def test_range_test_trains_optimizer_factory_with_its_kwargs(mlp, digits):
  losses = _engine_losses(mlp, digits, optimizer="optax:adamw",
                          optimizer_kwargs={"weight_decay": 0.5, "b1": 0.8})
  reference = optax.adamw(_ramp, weight_decay=0.5, b1=0.8)
  np.testing.assert_allclose(losses, _plain_losses(mlp, digits, reference), rtol=1e-4)


def test_range_test_computes_in_bfloat16_when_dtype_is_bfloat16(mlp, digits):
  losses = _engine_losses(mlp, digits, settings=TrainSettings(dtype="bfloat16"))
  f32 = _plain_losses(mlp, digits)
  assert not np.allclose(losses, f32, rtol=1e-4)
  np.testing.assert_allclose(losses[:5], f32[:5], rtol=0.05)  # the same run, rounded


def test_range_test_augments_inputs_when_hparams_give_aug(mlp, digits):
  losses = _engine_losses(mlp, digits, hparams={"aug": 1.0})
  assert not np.allclose(losses, _plain_losses(mlp, digits), rtol=1e-3)


def test_range_test_normalises_ghost_batches_when_bn_batch_is_set(digits):
  adapter = models.from_linen(BatchNormNet())
  out = lr_finder.range_test(adapter, digits, num_steps=8, start_lr=1e-4, end_lr=1e-2,
                             settings=TrainSettings(bn_batch=8), diverge_factor=1e9)
  key = jax.random.fold_in(jax.random.key(0), 0)
  sample = jnp.zeros((1,) + digits.image_shape, jnp.float32)
  params, state = adapter.init(key, sample), models.initial_state(adapter, key, sample)
  idx = data.example_order(0, len(digits.train), 8 * 32)[:32]
  x = data.to_float(jnp.asarray(digits.train.images[idx]))
  y = jax.nn.one_hot(digits.train.labels[idx], 10)
  rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 3), 0)

  def first_loss(ghost):
    logits = jnp.concatenate([
        models.train_logits(adapter, params, state, x[j:j + ghost], rng)[0]
        for j in range(0, 32, ghost)])
    return float(optax.softmax_cross_entropy(logits, y).mean())

  np.testing.assert_allclose(out["loss"][0], first_loss(8), rtol=1e-5)
  assert abs(first_loss(8) - first_loss(32)) > 1e-4


def test_vectorised_test_tells_too_slow_lrs_from_unstable_ones(mlp, digits):
  out = lr_finder.vectorised_test(mlp, digits, lrs=(1e-6, 0.1, 1e3), epochs=1,
                                  rows=[{"aug": 0.0}, {"aug": 1.0}], failed_loss_ratio=1.0)
  status = dict(zip(zip(out["members"].aug, out["members"].lr), out["members"].status))
  # 1e-6 learns (next to) nothing in the budget: too slow, below the optimum.
  assert status[(0.0, 1e-6)] in ("slow", "failed") and status[(0.0, 1e3)] == "diverged"
  assert status[(0.0, 0.1)] == "trained"
  assert out["best_lr"] == 0.1
  assert out["best_lr_by_aug"] == {a: 0.1 for a in (0.0, 1.0) if status[(a, 0.1)] == "trained"}
  assert out["smallest_unstable_lr"] == 1e3
  assert out["largest_too_slow_lr"] == 1e-6


def test_stability_limits_count_failed_members_by_their_side_of_the_optimum():
  t = pd.DataFrame({"lr": [1e-4, 1e-3, 1e-2, 1e-1, 1.0] * 2, "batch_size": 32,
                    "aug": [0.0] * 5 + [1.0] * 5, "diverged": False,
                    "final_val_loss": [2.3, 1.0, 0.3, 1.5, 2.3, 2.3, 1.5, 1.0, 0.3, 2.3],
                    "status": ["failed", "slow", "trained", "trained", "failed",
                               "failed", "failed", "slow", "trained", "trained"]})
  # aug 1's optimum is 0.1: its failed 1e-3 is too slow; aug 0's failed 1.0 unstable.
  assert lr_finder.stability_limits(t) == {"smallest_unstable_lr": 1.0,
                                           "largest_too_slow_lr": 0.01}
  t.loc[8, ["status", "final_val_loss"]] = ["diverged", np.nan]
  t.loc[7, "status"] = "trained"
  # A diverged member is unstable on either side; aug 1's optimum moves to 0.01.
  assert lr_finder.stability_limits(t) == {"smallest_unstable_lr": 0.1,
                                           "largest_too_slow_lr": 0.001}


def test_find_ramps_from_the_given_start_and_end_lr_and_recommends_one_lr(monkeypatch,
                                                                          tmp_path, capsys):
  from lrjax import experiment

  seen = {}

  def range_test(*args, **kwargs):
    seen.update(start=kwargs["start_lr"], end=kwargs["end_lr"])
    lrs = np.geomspace(kwargs["start_lr"], kwargs["end_lr"], 20)
    return {"lr": lrs, "loss": 2 - lrs, "smoothed": 2 - lrs,
            "suggestions": {"valley": 0.01, "steepest": 0.02, "minimum/10": 0.03}}

  def vectorised_test(*args, lrs, **kwargs):
    members = pd.DataFrame({"lr": list(lrs), "final_val_loss": np.linspace(1, 2, len(lrs))})
    return {"members": members, "best_lr": 0.05, "best_lr_by_aug": {0.0: 0.05},
            "smallest_unstable_lr": 0.5, "largest_too_slow_lr": 1e-4}

  monkeypatch.setattr(lr_finder, "range_test", range_test)
  monkeypatch.setattr(lr_finder, "vectorised_test", vectorised_test)
  config = experiment.default_config()
  config.grid.batch_size = (32,)
  out = experiment.find_lr(config, str(tmp_path / "find"), start_lr=1e-4, end_lr=3.0)
  assert seen == {"start": 1e-4, "end": 3.0}
  assert out["recommended_lr"] == {32: 0.05}
  assert out["per_batch_size"][0]["recommended_lr"] == 0.05
  assert "vectorised one-epoch test" in out["recommendation"]

  from lrjax import cli
  assert cli.main(["find", "experiments/lr_batch_aug.py:runlocal", "--workdir",
                   str(tmp_path / "cli"), "--start-lr", "1e-4", "--end-lr", "1",
                   "--config.grid.batch_size=(32,)"]) == 0
  assert seen == {"start": 1e-4, "end": 1.0}
  printed = capsys.readouterr().out
  assert "batch 32: use LR 0.05 (aug 0: 0.05)" in printed
  assert "alternatives (range test): valley 0.01, steepest 0.02, minimum/10 0.03" in printed
  assert "Next: lrjax run experiments/lr_batch_aug.py:runlocal" in printed


@pytest.mark.parametrize("start, end", [(0.0, 1.0), (1.0, 0.1), (1e-6, float("inf"))])
def test_find_refuses_a_ramp_that_does_not_rise_before_anything_trains(tmp_path, start, end):
  from lrjax import experiment
  from lrjax.errors import ConfigError

  with pytest.raises(ConfigError, match=r"--start-lr, --end-lr: the ramp needs 0 < start_lr"):
    experiment.find_lr(experiment.default_config(), str(tmp_path / "find"),
                       start_lr=start, end_lr=end)
  assert not (tmp_path / "find").exists()
