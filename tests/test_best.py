"""The best member of a grid: chosen among the members that learned, saved and read back."""
import jax
import numpy as np
import pytest

import lrjax
from lrjax import experiment
from lrjax.errors import ConfigError

DIGITS = lrjax.load("digits")


@pytest.fixture(scope="module")
def result():
  table = lrjax.make_grid({"lr": (0.01, 0.1, 50.0), "batch_size": (32,), "seed": (0, 1)})
  return lrjax.train_grid(lrjax.get_model("mlp", 10, hidden=(16,)), DIGITS, table,
                          lrjax.TrainSettings(epochs=2), progress=False)


def test_best_is_the_learned_member_with_lowest_final_val_loss(result):
  members = result.members
  learned = members[members["status"].isin(["trained", "slow"])]
  assert members["diverged"].any()  # LR 50 diverges, and is never the best
  best = result.best
  assert best.member == int(learned.loc[learned["final_val_loss"].idxmin(), "member"])
  assert best.hyperparameters["lr"] != 50.0
  assert best.metrics["final_val_loss"] == pytest.approx(learned["final_val_loss"].min())
  position = members.index[members["member"] == best.member][0]
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[position], b),
               result.params, best.params)


def test_best_by_accuracy_takes_the_highest(result):
  members = result.members[result.members["status"].isin(["trained", "slow"])]
  best = lrjax.best_member(result, "final_val_acc")
  assert best.metrics["final_val_acc"] == members["final_val_acc"].max()


def test_saved_best_reads_back_equal(result, tmp_path):
  saved = lrjax.save_best(result, str(tmp_path / "best"))
  loaded = lrjax.load_params(str(tmp_path / "best"))
  assert (loaded.member, loaded.hyperparameters, loaded.metrics) == (
      saved.member, saved.hyperparameters, saved.metrics)
  jax.tree.map(np.testing.assert_array_equal, saved.params, loaded.params)


def test_load_params_of_a_directory_without_a_saved_best_names_the_fix(tmp_path):
  with pytest.raises(ConfigError, match=r"holds no saved best member .*lrjax.save_best"):
    lrjax.load_params(str(tmp_path))


def test_no_member_learned_is_a_config_error():
  table = lrjax.make_grid({"lr": (50.0,), "batch_size": (32,)})
  diverged = lrjax.train_grid(lrjax.get_model("mlp", 10, hidden=(8,)), DIGITS, table,
                              lrjax.TrainSettings(epochs=1), progress=False)
  with pytest.raises(ConfigError, match="no member learned"):
    _ = diverged.best


def test_train_and_evaluate_result_has_summary_and_best_over_several_optimizers(tmp_path):
  config = experiment.default_config()
  config.model_kwargs = {"hidden": (16,)}
  config.optimizer_kwargs = {}
  config.grid.lr, config.grid.batch_size = (0.01, 0.1), (32,)
  config.grid.optimizer = ("sgd", "adam")
  config.epochs = 1
  result = lrjax.train_and_evaluate(config, str(tmp_path / "run"), progress=False,
                                    writers=())
  assert result.summary["n_members"] == 4 and result.summary["headline"]["sentences"]
  best = result.best
  row = result.members.set_index("member").loc[best.member]
  assert best.hyperparameters["optimizer"] == row["optimizer"]
  assert best.metrics["final_val_loss"] == row["final_val_loss"]
