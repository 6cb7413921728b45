"""What to add to a run so that its open primary questions can close: the proposal rules.

`propose` reads a run's analysis (`lrjax.analysis.summary.analyze`: the primary
decisions and the estimates behind them) and returns `Addition`s, each the members one
rule adds for one question in one cell, with the reason in words. The rules, in the
order they are tried:

1. ``edge``: a best LR at the grid's edge (its largest or smallest LR) gets the next LR
   beyond it, stepping by the grid's own ratio there (the ratio of the cell's two
   outermost LRs on that side).
2. ``stability_edge``: a best LR next to an LR where not every seed trained gets the
   log-midpoint between the two (widening the grid would show nothing new), until the
   two are within ``sqrt(lr_width)``: then the optimum is the stability limit.
3. ``interior``: an interior optimum whose interval is wider than ``lr_width`` (as a
   ratio hi/lo) gets the log-midpoints between it and its grid neighbours (halving the
   log-spacing), while that spacing is wider than the interval needs. A cell with
   fewer than 3 seeds goes to rule 6 instead: its interval is the t quantile's.
4. ``stability``: a stability limit bracketed by a stable and a failing LR further apart
   than the analysis's ``lr_equivalence_factor`` is bisected in log-LR; a limit above
   the grid's largest LR (below its smallest) gets the next LR out.
5. ``larger_batch``: a critical batch size that is extrapolated or not identifiable,
   or an LR-batch exponent on fewer than 3 batch sizes, gets the batch size twice the
   largest, at the LRs of the largest batch size scaled by 2 and one step beyond, up to
   the training split's size (else: "dataset too small").
6. ``seeds``: a decision whose interval holds both alternatives (its cells' optima
   interior) gets seeds in every cell that question uses, in blocks that bring each
   to twice the fewest any has, up to ``max_seeds``; all cells draw from one pool of
   seed numbers, so they stay balanced and paired. An arm comparison
   (``arms:AXIS``, each arm at its best LR) uses the arm's and the reference's
   best-LR cells in the group it holds fixed; rules 1-3 act on them first too.

Only primary questions get members (nothing that cannot change a verdict), one
addition per question and cell per wave; a question whose rule cannot act says why
(`Open`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from lrjax.analysis.stats import fmt, group_label
from lrjax.analysis.verdicts import best_lr_edges
from lrjax.errors import ConfigError

# Seeds a cell needs before finer LRs can narrow its best LR's interval.
MIN_SEEDS_TO_REFINE = 3
# Verdicts that close a primary decision.
OPEN_VERDICTS = ("not settled", "at an edge", "no usable LR", "not computed")


@dataclasses.dataclass(frozen=True)
class SettleSettings:
  """How ``lrjax settle`` spends its budget.

  Attributes:
    budget_member_epochs: member-epochs the waves may add (None: as many as the
      starting run trained, so settling at most doubles its compute).
    budget_s: wall seconds the waves may take (None: 3600).
    max_seeds: seeds a cell may reach.
    max_waves: waves at most; fixed up front, so the primary family's looks are too
      (``analysis.looks`` = ``max_waves + 1``).
    lr_width: an interior best LR is precise enough when its interval's hi/lo is at
      most this.

  Example:
    >>> SettleSettings(max_seeds=8).max_waves
    4
  """
  budget_member_epochs: float | None = None
  budget_s: float | None = None
  max_seeds: int = 8
  max_waves: int = 4
  lr_width: float = 4.0

  def __post_init__(self):
    checks = (("budget_member_epochs", self.budget_member_epochs, 0, True),
              ("budget_s", self.budget_s, 0, True), ("max_seeds", self.max_seeds, 0, False),
              ("max_waves", self.max_waves, 0, False), ("lr_width", self.lr_width, 1, False))
    for name, value, low, optional in checks:
      if value is None and optional:
        continue
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
          math.isfinite(value) and value > low or (value == low and name == "max_waves")):
        raise ConfigError(f"--{name.replace('_', '-')}: a number > {low}; got {value!r}.")


class Addition(NamedTuple):
  """Members one rule adds for one question in one cell."""
  rule: str
  question: str
  cell: str
  why: str
  points: pd.DataFrame


class Open(NamedTuple):
  """A primary question's cell that no rule can help, and why."""
  question: str
  cell: str
  why: str


def _cell_rows(members: pd.DataFrame, axes: list[str], cols, values) -> pd.DataFrame:
  mask = np.ones(len(members), bool)
  for c, v in zip(cols, values):
    mask &= (members[c] == v).to_numpy()
  return members.loc[mask, axes]


def _at_lrs(rows: pd.DataFrame, lrs) -> pd.DataFrame:
  """One member per seed (and every other axis but lr) of a cell, at each of ``lrs``."""
  base = rows.drop(columns="lr").drop_duplicates()
  return base.merge(pd.DataFrame({"lr": list(lrs)}), how="cross")[list(rows.columns)]


def _new(rows: pd.DataFrame, members: pd.DataFrame, axes) -> pd.DataFrame:
  """``rows`` the run does not have yet."""
  merged = rows.merge(members[axes].drop_duplicates(), how="left", indicator=True)
  return merged[merged["_merge"] == "left_only"].drop(columns="_merge")


def _lr_rules(est, axes, primary_cells, settings) -> tuple[list[Addition], set]:
  """Rules 1-3 on every cell a primary LR question uses; also the cells they left alone
  because their optimum is interior and precise."""
  edges = best_lr_edges(est)
  cols = list(edges.columns[:list(edges.columns).index("best_lr")])
  out, fine = [], set()
  for _, r in edges.iterrows():
    key = tuple(r[c] for c in cols)
    if key not in primary_cells:
      continue
    rows = _cell_rows(est.members, axes, cols, key)
    lrs = np.sort(rows["lr"].unique())
    cell, kind, best = group_label(cols, key), str(r["edge_kind"]), float(r["grid_best_lr"])
    if not np.isfinite(best) or len(lrs) < 2:
      continue
    if "grid_high" in kind:
      step = lrs[-1] / lrs[-2]
      out.append(Addition("edge", "best_lr", cell, f"best LR {fmt(best)} is the grid's "
                          f"largest: add {fmt(best * step)} (×{fmt(step)})",
                          _at_lrs(rows, [best * step])))
    elif "grid_low" in kind:
      step = lrs[1] / lrs[0]
      out.append(Addition("edge", "best_lr", cell, f"best LR {fmt(best)} is the grid's "
                          f"smallest: add {fmt(best / step)} (÷{fmt(step)})",
                          _at_lrs(rows, [best / step])))
    elif kind:
      beside = float(r["beside"])
      if max(beside / best, best / beside) <= math.sqrt(settings.lr_width):
        fine.add(key)  # the optimum is the stability limit, found to within the setting
        continue
      mid = math.sqrt(best * beside)
      out.append(Addition("stability_edge", "best_lr", cell, f"best LR {fmt(best)} is next "
                          f"to {fmt(beside)}, where not every seed trained: add "
                          f"{fmt(mid)} between them", _at_lrs(rows, [mid])))
    else:
      lo, hi = float(r["best_lr_lo"]), float(r["best_lr_hi"])
      width = hi / lo if lo > 0 and np.isfinite(hi) else math.nan
      spacing = max(float(r["above"]) / best, best / float(r["below"]))
      # With fewer than 3 seeds the interval is the t quantile's (t(1) = 12.7), not
      # the LR spacing's: seeds come first (rule 6).
      if (int(r["n_seeds"]) >= MIN_SEEDS_TO_REFINE and width > settings.lr_width
          and spacing > math.sqrt(settings.lr_width)):
        mids = [math.sqrt(best * float(r[s])) for s in ("below", "above")]
        out.append(Addition("interior", "best_lr", cell, f"best LR {fmt(best)} has an "
                            f"interval ×{fmt(width)} wide (want ≤ ×{fmt(settings.lr_width)}):"
                            f" add {fmt(mids[0])} and {fmt(mids[1])}", _at_lrs(rows, mids)))
      else:
        fine.add(key)
  return out, fine


def _stability_rule(est, axes, factor: float) -> list[Addition]:
  """Rule 4: a stability limit bracketed wider than ``factor`` is bisected in log-LR;
  one above the grid's largest LR (or below its smallest) gets the next LR out."""
  t = est.max_stable
  if t is None or t.empty:
    return []
  cols = list(t.columns[:list(t.columns).index("max_stable_lr")])
  out = []
  for _, r in t.iterrows():
    key = tuple(r[c] for c in cols)
    rows = _cell_rows(est.members, axes, cols, key)
    lrs = np.sort(rows["lr"].unique())
    limit, nxt = float(r["max_stable_lr"]), float(r["next_lr"])
    if np.isfinite(limit) and np.isfinite(nxt):
      if nxt / limit <= factor:
        continue
      lr, why = math.sqrt(limit * nxt), (f"stability limit between {fmt(limit)} (stable) "
                                         f"and {fmt(nxt)} (failing)")
    elif np.isfinite(limit) and len(lrs) > 1:
      lr, why = lrs[-1] * lrs[-1] / lrs[-2], f"stable up to the grid's largest LR {fmt(limit)}"
    elif len(lrs) > 1:
      lr, why = lrs[0] * lrs[0] / lrs[1], f"no LR stable down to {fmt(lrs[0])}"
    else:
      continue
    out.append(Addition("stability", "max_stable_lr", group_label(cols, key),
                        f"{why}: add {fmt(lr)}", _at_lrs(rows, [lr])))
  return out


def _larger_batch(est, axes, num_train: int, question: str, why: str
                  ) -> tuple[list[Addition], list[Open]]:
  """A batch size twice the largest, at the largest's LRs scaled by 2 and one step
  beyond (linear scaling's guess, with room above), while the dataset allows."""
  members = est.members
  largest = int(members["batch_size"].max())
  new = 2 * largest
  if new > num_train:
    return [], [Open(question, "", f"dataset too small: the next batch size, {new}, is past "
                     f"the training split's {num_train} examples")]
  rows = members.loc[members["batch_size"] == largest, axes]
  lrs = np.sort(rows["lr"].unique())
  step = lrs[-1] / lrs[-2] if len(lrs) > 1 else 2.0
  scaled = sorted({*(2 * lrs), 2 * lrs[-1] * step})
  points = _at_lrs(rows, scaled).assign(batch_size=new)
  return [Addition("larger_batch", question, f"batch_size {new}", f"{why}: add batch size "
                   f"{new} at LRs {fmt(scaled[0])}-{fmt(scaled[-1])}", points)], []


def _b_crit_rule(est, axes, num_train: int) -> tuple[list[Addition], list[Open]]:
  """Rule 5: B_crit extrapolated or not identifiable: a larger batch size."""
  largest = int(est.members["batch_size"].max())
  return _larger_batch(est, axes, num_train, "b_crit",
                       f"B_crit is not identified within batch sizes up to {largest}")


def _scaling_rule(est, axes, num_train: int) -> tuple[list[Addition], list[Open]]:
  """The exponent needs 3 batch sizes with interior optima: a larger batch size when
  the grid has fewer than 3."""
  sizes = est.members["batch_size"].nunique()
  if sizes >= 3:
    return [], []
  return _larger_batch(est, axes, num_train, "scaling",
                       f"the LR-batch exponent needs 3 batch sizes, the grid has {sizes}")


def _seed_rule(est, axes, decision, cells, settings) -> tuple[list[Addition], list[Open]]:
  """Rule 6: every cell a question uses gets the seeds that bring it to twice the
  fewest any of them has (up to ``max_seeds``), from one pool of seed numbers, so the
  cells stay balanced and share their seeds (paired)."""
  members = est.members
  rows = [_cell_rows(members, axes, cols, key) for cols, key in cells]
  have = min(int(r["seed"].nunique()) for r in rows)
  if have >= settings.max_seeds:
    need = decision.get("settle") or "more seeds"
    return [], [Open(decision["question"], decision["cell"],
                     f"max_seeds ({settings.max_seeds}) reached; would need {need}")]
  pool = sorted(int(s) for s in members["seed"].unique())
  pool += list(range(pool[-1] + 1, pool[-1] + 1 + settings.max_seeds))
  wanted = pool[:min(settings.max_seeds, 2 * have)]
  parts = []
  for r in rows:
    base = r.drop(columns="seed").drop_duplicates()
    missing = [s for s in wanted if s not in set(r["seed"].tolist())]
    if missing:
      parts.append(base.merge(pd.DataFrame({"seed": missing}), how="cross")[axes])
  points = pd.concat(parts, ignore_index=True)
  return [Addition("seeds", decision["question"], decision["cell"],
                   f"its interval holds both answers with {have} seeds: bring its "
                   f"{len(rows)} cell{'s' if len(rows) > 1 else ''} to {len(wanted)} seeds",
                   points)], []


# Each LR question's estimate table in `Estimates`, and the column its cells end before.
_QUESTION_TABLES = {"best_lr": ("best_lr", "best_lr"), "scaling": ("scaling", "alpha"),
                    "aug_effect": ("aug_pooled", "reference_aug"),
                    "max_stable_lr": ("max_stable", "max_stable_lr")}
LR_QUESTIONS = ("best_lr", "scaling", "aug_effect")


def is_open(decision: dict) -> bool:
  """Whether a primary decision is still open: no verdict at family-wise 95%, or a
  stability limit known only as a bound or between grid LRs too far apart (the
  analysis says "LRs between them would narrow it").

  Example:
    >>> is_open({"verdict": "not settled"}), is_open({"verdict": "linear"})
    (True, False)
  """
  verdict, words = decision["verdict"], decision.get("words", "")
  if decision.get("question") == "max_stable_lr":
    return verdict != "bracketed" or "would narrow it" in words
  if decision.get("question") == "b_crit":  # lrjax.analysis.critical_batch's verdicts
    return verdict != "estimated" or words.startswith(("not identifiable", "extrapolated"))
  return verdict in OPEN_VERDICTS


def _arm_cells(decision: dict, keys: list[tuple], cols: list[str],
               comparisons: list[dict]) -> list[tuple]:
  """The best-LR cells of an arm comparison (``arms:AXIS``): the arm's and the
  reference's, in the group the comparison holds fixed."""
  axis = decision["question"].split(":", 1)[1]
  if axis not in cols:
    return []
  others = [c for c in cols if c != axis]
  for comp in comparisons:
    if comp.get("axis") != axis or not decision["cell"].endswith(" at " + comp["cell"]):
      continue
    arm_text = decision["cell"][:-len(" at " + comp["cell"])]
    if arm_text != group_label(["x"], [comp["arm"]])[2:]:
      continue
    arms = {comp["arm"], comp["reference"]}
    return [k for k in keys if k[cols.index(axis)] in arms and group_label(
        others, [k[cols.index(c)] for c in others]) == comp["cell"]]
  return []


def cells_of(decision: dict, est, comparisons: list[dict] = ()) -> list[tuple]:
  """The best-LR cells (``est.best_lr`` keys) a decision rests on (an arm comparison's
  from its record in ``comparisons``, the summary's).

  Example:
    >>> from lrjax.analysis.synthetic import synthetic_members
    >>> from lrjax.analysis.verdicts import estimate
    >>> e = estimate(synthetic_members(batch_sizes=(64, 128)), n_boot=0)
    >>> cells_of({"question": "scaling", "cell": "aug 0"}, e)
    [(64, 0.0), (128, 0.0)]
  """
  cols = list(est.best_lr.columns[:list(est.best_lr.columns).index("best_lr")])
  keys = [tuple(r[c] for c in cols) for _, r in est.best_lr.iterrows()]
  if decision["question"].startswith("arms:"):
    return _arm_cells(decision, keys, cols, list(comparisons))
  name, before = _QUESTION_TABLES.get(decision["question"], (None, None))
  table = getattr(est, name, None) if name else None
  if table is None or table.empty:
    return []
  tcols = list(table.columns[:list(table.columns).index(before)])
  for _, r in table.iterrows():
    if group_label(tcols, [r[c] for c in tcols]) != decision["cell"]:
      continue
    want = {c: {r[c]} for c in tcols if c in cols}
    if decision["question"] == "aug_effect":
      want["aug"] = {r["aug"], r["reference_aug"]}
    return [k for k in keys if all(k[cols.index(c)] in v for c, v in want.items())]
  return []


def propose(summary: dict, est, axes: list[str], num_train: int,
            settings: SettleSettings, settled: set = frozenset()
            ) -> tuple[list[Addition], list[Open]]:
  """One wave's additions for a run's open primary questions, by the module's rules.

  Args:
    summary: the run's ``summary.json`` (its ``decisions``).
    est: the `lrjax.analysis.verdicts.Estimates` behind it.
    axes: the grid columns of the members table.
    num_train: the training split's size (the largest batch size there can be).
    settings: `SettleSettings`.
    settled: ``(question, cell)`` pairs settled at an earlier wave; they get nothing.

  Returns:
    ``(additions, open)``: what to add, and the open cells no rule can help.
  """
  primary = [d for d in summary["decisions"] if d["role"] == "primary"
             and (d["question"], d["cell"]) not in settled]
  open_ds = [d for d in primary if is_open(d)]
  questions = {d["question"] for d in open_ds}
  comparisons = summary.get("comparisons") or []
  cells_by = {(d["question"], d["cell"]): cells_of(d, est, comparisons) for d in open_ds}
  lr_cells = {k for d in open_ds if _seeded(d) for k in cells_by[(d["question"], d["cell"])]}
  additions, fine = _lr_rules(est, axes, lr_cells, settings)
  opens: list[Open] = []
  if "max_stable_lr" in questions:
    factor = float(summary.get("analysis", {}).get("lr_equivalence_factor", 2.0))
    additions += _stability_rule(est, axes, factor)
  for question, rule in (("b_crit", _b_crit_rule), ("scaling", _scaling_rule)):
    if question in questions:
      found, why = rule(est, axes, num_train)
      additions += found
      opens += why
  cols = list(est.best_lr.columns[:list(est.best_lr.columns).index("best_lr")])
  for d in open_ds:
    cells = cells_by[(d["question"], d["cell"])]
    if not _seeded(d) or not cells or not set(cells) <= fine:
      continue  # an LR rule acts on its cells first (more seeds cannot move an edge)
    found, why = _seed_rule(est, axes, d, [(cols, k) for k in cells], settings)
    additions += found
    opens += why
  return _without_repeats(additions, est.members, axes), opens


def _seeded(decision: dict) -> bool:
  """Whether a decision rests on best-LR cells that the LR and seed rules can refine:
  the LR questions and the arm comparisons (each arm at its best LR)."""
  return decision["question"] in LR_QUESTIONS or decision["question"].startswith("arms:")


def _without_repeats(additions: list[Addition], members, axes) -> list[Addition]:
  """Each addition keeps only members neither the run nor an earlier addition has."""
  seen = members[axes].drop_duplicates()
  out = []
  for a in additions:
    points = _new(a.points.astype(seen.dtypes.to_dict()), seen, axes)
    if points.empty:
      continue
    out.append(a._replace(points=points.reset_index(drop=True)))
    seen = pd.concat([seen, points], ignore_index=True)
  return out
