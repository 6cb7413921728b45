"""Configs -> runs: per-optimizer kwargs of a ``grid.optimizer`` axis, and ``find_lr``'s
files."""
import json

import jax
import optax
import pytest

from lrjax import experiment
from lrjax.analysis import analysis_settings
from lrjax.errors import ConfigError
from lrjax.engine import train
from plain_training import plain_train
from tree_helpers import assert_trees_allclose


def _two_optimizers(optimizer_kwargs):
  c = experiment.default_config()
  c.model_kwargs = {"hidden": (16,)}
  c.epochs, c.eval_every = 1.0, 640
  c.grid.lr, c.grid.batch_size = (0.05,), (32,)
  c.grid.optimizer = ("momentum", "nesterov")
  c.optimizer_kwargs = optimizer_kwargs
  return c


def _kwargs_per_run(optimizer_kwargs):
  return {r.settings.optimizer: dict(r.settings.optimizer_kwargs)
          for r in experiment.resolve_runs(_two_optimizers(optimizer_kwargs))}


def test_hyperparameter_named_like_an_optimizer_goes_to_every_optimizer():
  assert _kwargs_per_run({"momentum": 0.95}) == {"momentum": {"momentum": 0.95},
                                                  "nesterov": {"momentum": 0.95}}


@pytest.mark.parametrize("kwargs, expected", [
    ({"momentum": {"momentum": 0.8}, "nesterov": {"momentum": 0.7}},
     {"momentum": {"momentum": 0.8}, "nesterov": {"momentum": 0.7}}),
    ({"momentum": {"momentum": 0.8}, "adam": {"b2": 0.99}},  # adam: not on the axis
     {"momentum": {"momentum": 0.8}, "nesterov": {}}),
])
def test_kwargs_keyed_by_optimizer_go_to_their_optimizer(kwargs, expected):
  assert _kwargs_per_run(kwargs) == expected


def test_hyperparameter_named_like_an_optimizer_trains_every_optimizer_with_it():
  for run in experiment.resolve_runs(_two_optimizers({"momentum": 0.95})):
    result = train(run, progress=False)
    nesterov = run.settings.optimizer == "nesterov"
    expected = plain_train(run.model, run.dataset,
                           optax.sgd(0.05, momentum=0.95, nesterov=nesterov), 32, 0,
                           result.info["examples_per_member"])
    assert_trees_allclose(jax.tree.map(lambda a: a[0], result.params), expected,
                          rtol=1e-4, atol=1e-5)


def test_find_lr_writes_summary_with_its_keys_when_config_augments(tmp_path):
  c = experiment.default_config()
  c.model_kwargs = {"hidden": (16,)}
  c.grid.batch_size, c.grid.aug = (64,), (0.0, 1.0)
  summary = experiment.find_lr(c, str(tmp_path / "find"))
  with open(tmp_path / "find" / "lr_find.json") as f:
    assert json.load(f) == json.loads(json.dumps(summary))
  assert sorted(summary) == ["optimizer", "per_batch_size", "recommendation",
                             "recommended_lr", "schedule", "suggested_grid_lr"]
  (entry,) = summary["per_batch_size"]
  assert list(entry) == ["batch_size", "range_test", "vectorised_best_lr",
                         "vectorised_best_lr_by_aug", "smallest_unstable_lr",
                         "largest_too_slow_lr", "recommended_lr"]
  assert summary["recommended_lr"] == {64: entry["vectorised_best_lr"]}
  assert sorted(entry["range_test"]) == ["minimum_div_10", "steepest", "valley"]
  assert set(entry["vectorised_best_lr_by_aug"]) <= {0.0, 1.0}
  for name in ("lr_find.png", "lr_find_bs64.png", "lr_find.csv"):
    assert (tmp_path / "find" / name).exists()


def _with_analysis(**analysis):
  c = experiment.default_config().to_dict()
  c["dataset"] = "no-such-dataset"  # the analysis is checked before any data is loaded
  c["grid"] = {"lr": (0.01, 0.1), "batch_size": (32, 64, 128), "aug": (0.0,), "seed": (0,),
               "schedule": ("constant", "cosine")}
  c["analysis"] = {**c["analysis"], **analysis}
  return c


@pytest.mark.parametrize("analysis, field", [
    ({"equivalence_margin": "big"}, "analysis.equivalence_margin"),
    ({"equivalence_margin": 0.0}, "analysis.equivalence_margin"),
    ({"equivalence_margin": -0.1}, "analysis.equivalence_margin"),
    ({"lr_equivalence_factor": 1.0}, "analysis.lr_equivalence_factor"),
    ({"questions": "best_lr"}, "analysis.questions"),
    ({"questions": ("best_lr", "fastest")}, "analysis.questions"),
    ({"questions": ("arms:optimizer",)}, "analysis.questions"),
    ({"questions": ("aug_effect",)}, "analysis.questions"),  # one aug level
    ({"questions": ("scaling", "scaling")}, "analysis.questions"),
    ({"reference": {"optimizer": "adam"}}, "analysis.reference"),
    ({"reference": {"schedule": "onecycle"}}, "analysis.reference.schedule"),
    ({"reference": ["schedule"]}, "analysis.reference"),
    ({"margin": 0.1}, "analysis: unknown keys ['margin']"),
])
def test_bad_analysis_settings_raise_config_error_naming_the_field(analysis, field):
  with pytest.raises(ConfigError) as e:
    experiment.resolve_runs(_with_analysis(**analysis))
  assert str(e.value).startswith(field)


def test_analysis_settings_default_to_questions_from_the_grid_and_are_in_the_config():
  assert experiment.config_to_dict(experiment.default_config())["analysis"] == {
      "equivalence_margin": 0.02, "lr_equivalence_factor": 2.0, "reference": {},
      "questions": None}
  c = _with_analysis()
  settings = analysis_settings.resolve_settings(c["analysis"], c["grid"])
  assert settings.questions == ("scaling", "arms:schedule")
  c = _with_analysis(questions=("arms:schedule",), reference={"schedule": "cosine"})
  with pytest.raises(ConfigError, match="no-such-dataset"):  # past the analysis check
    experiment.resolve_runs(c)
