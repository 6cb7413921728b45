"""Figures and numbers for docs/RESULTS.md, from the studies' run directories.

Run the studies first, each into runs/studies/<name> (each experiment's docstring
has its command), e.g.

  for s in lr_batch_aug aug_lr linear_scaling_warmup critical_batch increase_batch \
           adam_sqrt_scaling optimizers schedules; do
    lrjax run experiments/$s.py --workdir runs/studies/$s --no-progress; done

then

  .venv/bin/python scripts/make_results.py [--runs runs/studies] [--out docs/results]

It copies each study's key figures from its report into docs/results/, draws the
best validation loss per arm over the LR grid, and prints every number RESULTS.md
quotes. Every number with an interval comes from lrjax's own analysis: each arm's best
LR and its seed-mean metric with a t interval (`lrjax.analysis.comparisons.best_lrs`)
and the paired arm-vs-reference differences with their verdicts
(`lrjax.analysis.comparisons.compare_arms`, the run's own analysis settings); this
script only selects, prints and draws them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrjax import analysis
from lrjax.analysis import comparisons, inference
from lrjax.analysis import summary as summary_lib


def load(runs: str, name: str):
  """A study's run directory: its path, members (with status), history, summary, run."""
  d = os.path.join(runs, name)
  run = analysis.load_run(d)
  members, _ = analysis.analysis_members(run)
  with open(os.path.join(d, "summary.json")) as f:
    summary = json.load(f)
  return d, members, run.history, summary, run


def arms(members: pd.DataFrame, by: list[str], metric: str = "final_val_loss") -> pd.DataFrame:
  """Per arm (``by``): the best grid LR, and the seed-mean metric there with its 95% t
  interval (``best``, ``lo``, ``hi``), from `comparisons.best_lrs`."""
  table = comparisons.best_lrs(members, metric, by)
  return table.rename(columns={"mean": "best"})[[*by, "best", "lo", "hi", "n", "best_lr",
                                                 "edge"]]


def differences(run, members: pd.DataFrame) -> pd.DataFrame:
  """Every arm against its reference, paired over seeds, with lrjax's verdicts."""
  settings = summary_lib.run_settings(run, members)
  return comparisons.compare_arms(members, settings, config=run.config)[
      ["axis", "arm", "reference", "cell", "metric", "arm_lr", "reference_lr", "mean", "lo",
       "hi", "n", "p", "text"]]


def paired_arms(members: pd.DataFrame, arm: dict, reference: dict, metric: str,
                margin: float) -> dict:
  """``arm − reference`` for two settings that differ in more than one axis, each at its
  best LR, paired over seeds: lrjax's own `comparisons.best_lrs`, `seed_values`,
  `inference.paired_difference` and `equivalence`."""
  cols = list(arm)
  best = comparisons.best_lrs(members, metric, cols).set_index(cols)
  values = [comparisons.seed_values(members, metric, where,
                                    float(best.loc[tuple(where.values()), "best_lr"]))
            for where in (arm, reference)]
  seeds = values[0].index.intersection(values[1].index)
  d = inference.paired_difference(values[0][seeds].to_numpy(), values[1][seeds].to_numpy())
  eq = inference.equivalence(d, margin)
  return {"metric": metric, "mean": d.mean, "lo": d.lo, "hi": d.hi, "n": d.n,
          "verdict": comparisons.verdict_text(eq.verdict, d.mean, d.lo, d.hi, margin)}


def _errorbar_figure(table, x, series, path, xlabel, ylabel, title, logx=True):
  fig = Figure(figsize=(6.4, 4.2), layout="constrained")
  ax = fig.add_subplot()
  for i, (name, sub) in enumerate(table.groupby(series, sort=False)):
    sub = sub.sort_values(x)
    ax.errorbar(sub[x] * (1 + 0.03 * i), sub["best"],
                yerr=[sub["best"] - sub["lo"], sub["hi"] - sub["best"]],
                marker="o", capsize=3, label=str(name))
  if logx:
    ax.set_xscale("log", base=2)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=7)
  fig.savefig(path, dpi=110)
  return path


def copy_figures(runs: str, out: str):
  picks = {
      "lr_batch_aug": ["heatmap_val_loss.png", "best_lr_vs_batch.png", "noise_scale.png"],
      "aug_lr": ["heatmap_val_loss.png", "noise_scale.png"],
      "critical_batch": ["steps_to_target.png", "noise_scale.png", "best_lr_vs_batch.png"],
      "adam_sqrt_scaling": ["best_lr_vs_batch.png"],
      "schedules": ["curves_val_loss.png"],
  }
  for study, names in picks.items():
    for n in names:
      src = os.path.join(runs, study, n)
      if os.path.exists(src):
        shutil.copy(src, os.path.join(out, f"{study}_{n}"))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--runs", default="runs/studies")
  parser.add_argument("--out", default="docs/results")
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  copy_figures(args.runs, args.out)
  pd.set_option("display.width", 160)

  def show(title, table):
    print(f"\n## {title}\n{table.to_string(index=False, float_format=lambda v: f'{v:.4g}')}")

  for study in ("lr_batch_aug", "aug_lr", "linear_scaling_warmup", "critical_batch",
                "increase_batch", "adam_sqrt_scaling", "optimizers", "schedules"):
    if not os.path.exists(os.path.join(args.runs, study, "summary.json")):
      print(f"\n## {study}: not run")
      continue
    d, members, history, summary, run = load(args.runs, study)
    info = json.load(open(os.path.join(d, "run_info.json")))
    seconds = sum(r.get("train_seconds", 0) + r.get("compile_seconds", 0)
                  for r in info.get("runs", [info]))
    print(f"\n# {study}: {len(members)} members, compile+train {seconds:.0f} s")
    for line in summary["findings"]:
      print("-", line)
    diffs = differences(run, members)
    if not diffs.empty:
      show("arm - reference, paired over seeds, each arm at its best LR", diffs)
      for line in comparisons.disagreements(comparisons.compare_arms(
          members, summary_lib.run_settings(run, members), config=run.config)):
        print("-", line)
    if study == "aug_lr":
      for metric in ("final_val_loss", "best_val_loss"):
        pooled = analysis.aug_effect_pooled(members, metric=metric, n_boot=1000)
        show(f"aug effect pooled ({metric})", pooled)
      best = analysis.best_lr(members, metric="final_val_loss", n_boot=1000)
      show("best LR per (batch, aug)", best)
      table = best.rename(columns={"best_lr": "best", "best_lr_lo": "lo", "best_lr_hi": "hi"})
      _errorbar_figure(table, "aug", "batch_size",
                       os.path.join(args.out, "aug_lr_best_lr_vs_aug.png"),
                       "augmentation strength", "best LR (final val loss)",
                       "MNIST-1D MLP: best LR vs augmentation (95% seed intervals)", False)
      fig_ax = arms(members, ["batch_size", "aug"])
      show("best final val loss per (batch, aug)", fig_ax)
    if study == "linear_scaling_warmup":
      t = arms(members, ["batch_size", "lr_scaling", "warmup_fraction"])
      show("best final val loss per (B, rule, warmup)", t)
      t["arm"] = [f"scaling {s:g}, warmup {w:g}" for s, w in zip(t.lr_scaling,
                                                                  t.warmup_fraction)]
      _errorbar_figure(t, "batch_size", "arm",
                       os.path.join(args.out, "linear_scaling_warmup.png"), "batch size",
                       "best final val loss", "LR scaling rule × warmup at 30 epochs")
    if study == "increase_batch":
      margin = summary_lib.run_settings(run, members).equivalence_margin
      for metric in ("final_val_loss", "best_val_loss"):
        r = paired_arms(members, {"schedule": "constant", "batch_growth": 2},
                        {"schedule": "multistep", "batch_growth": 1}, metric, margin)
        print(f"- batch increase − LR decay ({metric}, paired over {r['n']} seeds): "
              f"{r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}] — {r['verdict']}")
      t = arms(members, ["schedule", "batch_growth"])
      upd = members.groupby(["schedule", "batch_growth"]).updates.median().reset_index()
      show("best final val loss per arm", t.merge(upd, on=["schedule", "batch_growth"]))
      fig = Figure(figsize=(6.4, 4.2), layout="constrained")
      ax = fig.add_subplot()
      h = history.merge(members[["member", "schedule", "batch_growth", "lr", "seed"]],
                        on="member")
      for row in t.itertuples():
        sub = h[(h.schedule == row.schedule) & (h.batch_growth == row.batch_growth)
                & (h.lr == row.best_lr)]
        curve = sub.groupby("examples_seen").val_loss.agg(["mean", "min", "max"])
        line = ax.plot(curve.index, curve["mean"],
                       label=f"{row.schedule}, growth {row.batch_growth} (lr {row.best_lr:g})")
        ax.fill_between(curve.index, curve["min"], curve["max"], alpha=0.2,
                        color=line[0].get_color())
      ax.set_xlabel("examples seen")
      ax.set_ylabel("validation loss")
      ax.set_ylim(top=float(h.val_loss.quantile(0.9)))
      ax.set_title(f"LR decay vs batch increase (mean and range over "
                   f"{members['seed'].nunique()} seeds)", fontsize=10)
      ax.legend(fontsize=7)
      fig.savefig(os.path.join(args.out, "increase_batch_curves.png"), dpi=110)
    if study == "optimizers":
      margin = summary_lib.run_settings(run, members).equivalence_margin
      for arm in ("momentum", "nesterov", "adam", "adamw", "nadam", "rmsprop"):
        r = paired_arms(members, {"optimizer": arm, "batch_size": 32},
                        {"optimizer": "sgd", "batch_size": 32}, "final_val_acc", margin)
        print(f"- {arm} − sgd at batch 32 (final_val_acc, each at its best LR, paired over "
              f"{r['n']} seeds): {r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}] — "
              f"{r['verdict']}")
      t = arms(members, ["optimizer", "batch_size"])
      acc = arms(members, ["optimizer", "batch_size"], metric="final_val_acc")
      fit = members[members.status == "trained"].merge(
          t[["optimizer", "batch_size", "best_lr"]].rename(columns={"best_lr": "lr"}),
          on=["optimizer", "batch_size", "lr"]).groupby(["optimizer", "batch_size"])[
              ["final_train_loss", "final_val_loss", "best_val_loss"]].mean().reset_index()
      fit["gap"] = fit.final_val_loss - fit.final_train_loss
      show("best final val loss per (optimizer, B)", t)
      show("best final val acc per (optimizer, B)", acc)
      show("at the best LR: train loss, val loss, gap", fit)
      steps = analysis.steps_to_target(history, members, target=1.0)
      if "optimizer" not in steps:
        steps = steps.merge(members[["member", "optimizer"]], on="member")
      per = steps.groupby(["optimizer", "batch_size", "lr"]).examples.agg(
          lambda s: s.mean() if s.notna().all() else np.nan).groupby(
              ["optimizer", "batch_size"]).min().reset_index()
      show("examples to val loss 1.0 (best LR, mean over seeds)", per)
      _errorbar_figure(t.assign(batch=t.batch_size.astype(str)), "batch_size", "optimizer",
                       os.path.join(args.out, "optimizers.png"), "batch size",
                       "best final val loss", "Optimizers: best final val loss over LR")
    if study == "schedules":
      t = arms(members, ["schedule"])
      show("best final val loss per schedule", t)
      margin = summary_lib.run_settings(run, members).equivalence_margin
      for arm in ("cyclic", "onecycle"):
        for metric in ("final_val_loss", "best_val_loss"):
          r = paired_arms(members, {"schedule": arm}, {"schedule": "cosine"}, metric, margin)
          print(f"- {arm} − cosine ({metric}, paired over {r['n']} seeds): "
                f"{r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}] — {r['verdict']}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
