"""The best member of a grid and its weights: ``best_member``, ``save_best``, ``load_params``.

As Keras Tuner's ``get_best_hyperparameters`` and ``get_best_models`` give the winner of a
search, ``GridResult.best`` gives the winner of a grid: the member that learned (status
trained or slow) with the best value of a metric (lowest ``final_val_loss`` by default),
its hyperparameters, its metrics and its final parameters. This is one seed's member,
not an estimate: the run's ``summary.json`` says how sure the best configuration is.
``save_best`` writes it with orbax (the parameters and model state as a checkpoint,
the rest as JSON beside them); ``load_params`` reads them back.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np

from lrjax.errors import ConfigError
from lrjax.metric_writers import hyperparameters
from lrjax.outcomes import LEARNED

BEST_FILE = "best.json"  # beside the orbax checkpoint directory ``params``
METRIC_COLUMNS = ("final_val_loss", "final_val_acc", "best_val_loss", "best_val_acc",
                  "test_loss", "test_acc", "final_train_loss", "status")


@dataclasses.dataclass(frozen=True)
class BestMember:
  """The best member of a grid.

  Attributes:
    member: its number in the members table.
    hyperparameters: its grid values (lr, batch_size, aug, seed, ...).
    metrics: its final, best and test metrics and status.
    params: its final parameters (one member's tree, no member axis).
    model_state: its final mutable variables (BatchNorm statistics); ``{}`` or None
      for stateless models.
  """

  member: int
  hyperparameters: dict
  metrics: dict
  params: Any
  model_state: Any = None


def best_member(result, metric: str = "final_val_loss") -> BestMember:
  """The member that learned with the best ``metric`` (``GridResult.best``).

  Raises:
    ConfigError: the metric is no members column, no member learned, or the result
      holds no parameters (a table read back from a run directory).

  Example:
    >>> import lrjax
    >>> table = lrjax.make_grid({"lr": (0.03, 0.3), "batch_size": (32,)})
    >>> result = lrjax.train_grid(lrjax.get_model("mlp", 10, hidden=(8,)),
    ...                           lrjax.load("digits"), table,
    ...                           lrjax.TrainSettings(epochs=1), progress=False)
    >>> sorted(result.best.hyperparameters)
    ['aug', 'batch_size', 'lr', 'seed']
  """
  members = result.members.reset_index(drop=True)
  if metric not in members.columns:
    raise ConfigError(f"metric: {metric!r} is not a members column; use one of "
                      f"{[c for c in members.columns if c.startswith(('final_', 'best_'))]}.")
  learned = members["status"].isin(LEARNED) if "status" in members else ~members["diverged"]
  ok = members[learned & members[metric].notna()]
  if ok.empty:
    raise ConfigError("best: no member learned (every one diverged or failed); there is "
                      "no best member to give. Lower the LRs (grid.lr).")
  position = int(ok[metric].idxmax() if metric.endswith("_acc") else ok[metric].idxmin())
  row = members.iloc[position]
  params, state = _member_trees(result, position, int(row["member"]))
  return BestMember(member=int(row["member"]),
                    hyperparameters=hyperparameters(row.drop(
                        [c for c in members.columns if c in METRIC_COLUMNS or
                         c.startswith(("final_", "best_", "test_", "diverged", "updates",
                                       "first_"))]).to_dict()),
                    metrics={c: _plain_value(row[c]) for c in METRIC_COLUMNS if c in row},
                    params=params, model_state=state)


def _member_trees(result, position: int, member: int):
  """The member's parameters and model state: row ``position`` of each leaf (a run of
  several optimizers holds one tree per run, with the members each trained)."""
  params, state = result.params, result.model_state
  if params is None:
    raise ConfigError("best: this result holds no parameters (tables read back from a "
                      "run directory); train with lrjax.train_grid or "
                      "lrjax.train_and_evaluate to get them.")
  if isinstance(params, list):  # experiment.concatenate: one tree per optimizer
    for run_params, run_members in zip(params, result.info["run_members"]):
      if member in run_members:
        index = run_members.index(member)
        return jax.tree.map(lambda a: np.asarray(a[index]), run_params), None
  take = lambda tree: jax.tree.map(lambda a: np.asarray(a[position]), tree)
  return take(params), (take(state) if state else state)


def _plain_value(v):
  if isinstance(v, (np.generic,)):
    return v.item()
  return v


def save_best(result, path: str, metric: str = "final_val_loss") -> BestMember:
  """Writes the best member (``best_member``) to the directory ``path``: its parameters
  and model state as an orbax checkpoint (``path/params``), its number,
  hyperparameters and metrics as ``path/best.json``.

  Example:
    >>> import lrjax, tempfile
    >>> table = lrjax.make_grid({"lr": (0.03, 0.3), "batch_size": (32,)})
    >>> result = lrjax.train_grid(lrjax.get_model("mlp", 10, hidden=(8,)),
    ...                           lrjax.load("digits"), table,
    ...                           lrjax.TrainSettings(epochs=1), progress=False)
    >>> best = save_best(result, tempfile.mkdtemp() + "/best")
    >>> best.hyperparameters["batch_size"]
    32
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  best = best_member(result, metric)
  path = os.path.abspath(path)
  os.makedirs(path, exist_ok=True)
  tree = {"params": best.params, "model_state": best.model_state or {}}
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(path, "params"), tree, force=True)
  with open(os.path.join(path, BEST_FILE), "w") as f:
    json.dump({"member": best.member, "metric": metric,
               "hyperparameters": best.hyperparameters, "metrics": best.metrics},
              f, indent=2, default=str)
  return best


def load_params(path: str) -> BestMember:
  """Reads what ``save_best`` wrote: a ``BestMember`` with the parameters as numpy
  arrays, ready for ``model.apply``.

  Example:
    >>> import lrjax, tempfile
    >>> table = lrjax.make_grid({"lr": (0.03, 0.3), "batch_size": (32,)})
    >>> result = lrjax.train_grid(lrjax.get_model("mlp", 10, hidden=(8,)),
    ...                           lrjax.load("digits"), table,
    ...                           lrjax.TrainSettings(epochs=1), progress=False)
    >>> d = tempfile.mkdtemp() + "/best"
    >>> _ = save_best(result, d)
    >>> load_params(d).member == result.best.member
    True
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  path = os.path.abspath(path)
  meta_path = os.path.join(path, BEST_FILE)
  if not os.path.exists(meta_path):
    raise ConfigError(f"path: {path} holds no saved best member ({BEST_FILE} missing); "
                      f"write one with lrjax.save_best(result, path).")
  with open(meta_path) as f:
    meta = json.load(f)
  with ocp.StandardCheckpointer() as checkpointer:
    tree = checkpointer.restore(os.path.join(path, "params"))
  return BestMember(member=meta["member"], hyperparameters=meta["hyperparameters"],
                    metrics=meta["metrics"], params=tree["params"],
                    model_state=tree.get("model_state") or {})


def summary_of(workdir: str) -> dict | None:
  """A written run's ``summary.json``, or None when there is none."""
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)

