"""``lrjax settle``: waves of analysis, proposal and extension until the primary
questions are settled or the budget is spent.

Each wave analyses the run (`lrjax.analysis.summary.analyze`), asks the rules
(`lrjax.settle.rules.propose`) what would close its open primary decisions, keeps
what the budget affords, and adds it with one `lrjax.extend.extend_run`. Every wave
is recorded in ``config.json`` (``extensions[i]["wave"]``: what it added and why, its
member-epochs and seconds, the primary verdicts before it), and the run's
``settle`` record says why it stopped and what is still open; the report's "How this
was settled" section shows both.

Why stopping leaves the printed intervals valid:

* The primary family and its number of looks are fixed before the first wave:
  ``analysis.questions`` by the config, ``analysis.looks = max_waves + 1`` by
  settle (a finished run's looks so far plus ``max_waves``, when it settles an
  existing run, so a run settled again keeps counting). Every look runs Holm at family-wise ``5% / looks`` with intervals at the
  matching Bonferroni level, so by the union bound the chance that any look shows a
  false primary verdict is at most 5%, however the waves stopped.
* Seeds are added in blocks (doubling), never one at a time until an interval
  happens to exclude a value.
* LRs and batch sizes are chosen from the estimates, but they are design points:
  each interval is still computed over seeds at the LRs that trained.
* A verdict, once reached, is kept as the answer only while later data agree; a
  verdict that flips is reported as flipped, with the wave that flipped it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import pandas as pd

from lrjax import data as data_lib
from lrjax import experiment, extend
from lrjax.analysis import summary as summary_lib
from lrjax.analysis import tables
from lrjax.errors import ConfigError
from lrjax.settle.rules import Addition, Open, SettleSettings, is_open, propose
from lrjax.workdir import rewrite_config

DEFAULT_BUDGET_S = 3600.0


def _primary_verdicts(summary: dict) -> list[dict]:
  return [{"question": d["question"], "cell": d["cell"], "verdict": d["verdict"],
           "words": d["words"], "estimate": d["estimate"], "lo": d["lo"], "hi": d["hi"]}
          for d in summary["decisions"] if d["role"] == "primary"]


def _member_epochs(members: pd.DataFrame, config: dict) -> float:
  return float(len(members)) * float(config.get("epochs", 1.0))


def _afford(additions: list[Addition], left_epochs: float, epochs: float,
            left_s: float, s_per_epoch: float) -> tuple[list[Addition], bool]:
  """The additions the budget affords, in rule order; whether any was cut.

  A block of seeds that does not fit shrinks to the most seeds that do (the block's
  size then follows the budget, never the data)."""
  kept, cut = [], False
  for a in additions:
    for candidate in _shrinking(a):
      cost = len(candidate.points) * epochs
      if cost <= left_epochs and cost * s_per_epoch <= left_s:
        kept.append(candidate)
        left_epochs -= cost
        left_s -= cost * s_per_epoch
        cut = cut or candidate is not a
        break
    else:
      cut = True
  return kept, cut


def _shrinking(a: Addition):
  """``a``, then (seeds only) ``a`` with fewer of its new seeds, down to one."""
  yield a
  if a.rule != "seeds":
    return
  seeds = sorted(a.points["seed"].unique())
  for k in range(len(seeds) - 1, 0, -1):
    yield a._replace(points=a.points[a.points["seed"].isin(seeds[:k])],
                     why=f"{a.why} (budget: {k} of its {len(seeds)} new seeds)")


@dataclasses.dataclass
class _Budget:
  member_epochs: float
  seconds: float
  spent_epochs: float = 0.0
  spent_s: float = 0.0


def _start(config, workdir: str, settings: SettleSettings, progress: bool) -> None:
  """Trains the starting run of ``config`` (with its looks fixed) into ``workdir``."""
  config = experiment.config_to_dict(config)
  analysis = config.get("analysis") or {}
  config["analysis"] = {**analysis, "looks": int(analysis.get("looks", 1)) + settings.max_waves}
  experiment.train_and_evaluate(config, workdir, progress=progress)


def _fix_looks(workdir: str, settings: SettleSettings) -> None:
  """An existing run: its family's looks grow by the waves planned. Every look it had
  counts (one for a plain run, all of an earlier settle's planned looks), so settling
  a run again never resets the error rate it has spent."""
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  analysis = config.get("analysis") or {}
  config["analysis"] = {**analysis, "looks": int(analysis.get("looks", 1)) + settings.max_waves}
  rewrite_config(workdir, config)


def settle_run(workdir: str, settings: SettleSettings = SettleSettings(), config=None, *,
               progress: bool = True, n_boot: int = 1000) -> dict:
  """Runs waves on ``workdir`` until its primary questions are settled or the budget is
  spent; starts the run from ``config`` first when given.

  Returns:
    The ``settle`` record written into ``config.json``: ``waves``, ``stopped`` (why),
    ``open`` (the decisions still open, each with its reason), ``budget``.

  Raises:
    ConfigError: bad input, before anything trains.

  Example:
    >>> import tempfile
    >>> c = experiment.default_config()
    >>> c.model_kwargs, c.epochs = {"hidden": (16,)}, 1.0
    >>> c.grid.lr, c.grid.batch_size = (0.03, 0.1), (32,)
    >>> c.analysis.questions = ("best_lr",)
    >>> run = os.path.join(tempfile.mkdtemp(), "run")
    >>> record = settle_run(run, SettleSettings(max_waves=0), c, progress=False, n_boot=100)
    >>> record["stopped"], record["open"][0]["question"]
    ('max_waves (0) reached', 'best_lr')
  """
  if config is not None:
    _start(config, workdir, settings, progress)
  else:
    extend.read_run(workdir)  # refuses a directory that holds no finished run
    _fix_looks(workdir, settings)
  saved, members, _, info = extend.read_run(workdir)
  epochs = float(saved.get("epochs", 1.0))
  start_epochs = _member_epochs(members, saved)
  budget = _Budget(settings.budget_member_epochs or start_epochs,
                   settings.budget_s if settings.budget_s is not None else DEFAULT_BUDGET_S)
  # Until a wave has been timed, the starting run's seconds per member-epoch.
  s_per_epoch = float(info.get("train_seconds", 0.0) + info.get("compile_seconds", 0.0)
                      ) / start_epochs
  outcome = _waves(workdir, settings, budget, epochs, s_per_epoch, progress, n_boot)
  record = {"waves": outcome["waves"], "stopped": outcome["stopped"],
            "flips": outcome["flips"],
            "open": _open_reasons(outcome["summary"], outcome["opens"], outcome["stopped"]),
            "budget": {"member_epochs": budget.member_epochs, "seconds": budget.seconds,
                       "spent_member_epochs": budget.spent_epochs,
                       "spent_s": round(budget.spent_s, 1),
                       "start_member_epochs": start_epochs},
            "settings": dataclasses.asdict(settings), "verdicts": outcome["verdicts"]}
  _write_record(workdir, record)
  return record


def _waves(workdir, settings, budget, epochs, s_per_epoch, progress, n_boot) -> dict:
  """The loop: look, stop or propose, afford, extend; returns how it ended."""
  first_verdicts: dict[tuple, str] = {}
  flips: list[dict] = []
  waves, stopped, opens = 0, "", []
  while True:
    summary, est, axes, num_train = _analyse(workdir, n_boot)
    verdicts = _primary_verdicts(summary)
    flips += _flips(verdicts, first_verdicts, waves)
    if not any(is_open(v) for v in verdicts):
      stopped = "every primary question settled"
      break
    settled = {k for k, v in first_verdicts.items() if v}
    additions, opens = propose(summary, est, axes, num_train, settings, settled)
    if waves >= settings.max_waves:
      stopped = f"max_waves ({settings.max_waves}) reached"
      break
    if not additions:
      stopped = "no rule can add members that would change an open verdict"
      break
    kept, cut = _afford(additions, budget.member_epochs - budget.spent_epochs, epochs,
                        budget.seconds - budget.spent_s, s_per_epoch)
    if not kept:
      stopped = "budget spent"
      break
    seconds = _wave(workdir, kept, verdicts, waves + 1, epochs, progress, cut)
    waves += 1
    cost = sum(len(a.points) for a in kept) * epochs
    budget.spent_epochs += cost
    budget.spent_s += seconds
    s_per_epoch = seconds / cost
  return {"waves": waves, "stopped": stopped, "flips": flips, "opens": opens,
          "summary": summary, "verdicts": verdicts}


def _analyse(workdir: str, n_boot: int):
  """The run's summary, estimates, grid columns and training-split size."""
  run = tables.load_run(workdir)
  summary, est = summary_lib.analyze(run, n_boot=n_boot)
  axes = extend.axis_columns(run.config)
  dataset = data_lib.get_dataset(run.config["dataset"], run.config.get("data_dir") or None)
  return summary, est, axes, len(dataset.train)


def _flips(verdicts: list[dict], first: dict, wave: int) -> list[dict]:
  """Records each decision's first verdict; returns those that changed since."""
  out = []
  for v in verdicts:
    key = (v["question"], v["cell"])
    if is_open(v):
      if first.get(key):
        out.append({"question": v["question"], "cell": v["cell"], "wave": wave,
                    "was": first[key], "now": v["verdict"]})
        first[key] = ""
      continue
    if key in first and first[key] and first[key] != v["verdict"]:
      out.append({"question": v["question"], "cell": v["cell"], "wave": wave,
                  "was": first[key], "now": v["verdict"]})
    first[key] = v["verdict"]
  return out


def _wave(workdir, additions, verdicts, number, epochs, progress, cut: bool) -> float:
  """One extension with the additions; records the wave; returns its seconds."""
  points = pd.concat([a.points for a in additions], ignore_index=True)
  note = {"number": number, "verdicts_before": verdicts, "budget_cut": cut,
          "added": [{"rule": a.rule, "question": a.question, "cell": a.cell, "why": a.why,
                     "members": len(a.points)} for a in additions],
          "member_epochs": len(points) * epochs}
  t0 = time.perf_counter()
  extend.extend_run(workdir, points=points, progress=progress, wave=note)
  return time.perf_counter() - t0


def _open_reasons(summary: dict, opens: list[Open], stopped: str) -> list[dict]:
  """Each open primary decision with why it is still open."""
  by_cell = {(o.question, o.cell): o.why for o in opens}
  by_question = {o.question: o.why for o in opens if not o.cell}
  out = []
  for d in summary["decisions"]:
    if d["role"] != "primary" or not is_open(d):
      continue
    why = by_cell.get((d["question"], d["cell"])) or by_question.get(d["question"])
    if not why:
      why = stopped + (f"; would be settled by {d['settle']}" if d.get("settle") else "")
    out.append({"question": d["question"], "cell": d["cell"], "verdict": d["verdict"],
                "why": why})
  return out


def _write_record(workdir: str, record: dict) -> None:
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  config["settle"] = record
  rewrite_config(workdir, config)


def check_budget_args(member_epochs, seconds) -> None:
  """Refuses non-positive budgets (before anything trains)."""
  for name, value in (("--budget-member-epochs", member_epochs), ("--budget-s", seconds)):
    if value is not None and not value > 0:
      raise ConfigError(f"{name}: a positive number; got {value!r}.")
