"""The run report: figures, ``summary.json`` and a self-contained ``report.html``.

`write_report` is what ``lrjax report RUN_DIR`` calls; it only reads the tables the
engine wrote, so it can be rerun any time (e.g. after changing the metric).
"""
from __future__ import annotations

import base64
import html
import json
import os
from typing import Sequence

import numpy as np
import pandas as pd

from lrjax.analysis import plots, tables

HEATMAP_METRICS = {"heatmap_val_acc.png": "final_val_acc",
                   "heatmap_val_loss.png": "final_val_loss"}
CURVE_METRICS = {"curves_val_loss.png": "val_loss", "curves_val_acc.png": "val_acc"}
SCALING_FIGURE = "best_lr_vs_batch.png"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
.warn{color:#a33}figcaption{font-size:.8em;color:#555}
"""


def _table_html(df: pd.DataFrame) -> str:
  if df.empty:
    return "<p><em>(empty)</em></p>"
  fmt = {c: (lambda v: "" if pd.isna(v) else f"{v:.4g}")
         for c in df.columns if pd.api.types.is_float_dtype(df[c])}
  return df.to_html(index=False, formatters=fmt, na_rep="", border=0, escape=True)


def _figure_html(run_dir: str, name: str, caption: str) -> str:
  with open(os.path.join(run_dir, name), "rb") as f:
    data = base64.b64encode(f.read()).decode("ascii")
  # Embedded so the HTML is self-contained; the link points at the file beside it.
  return (f'<figure><a href="{html.escape(name)}"><img alt="{html.escape(name)}" '
          f'src="data:image/png;base64,{data}"></a><figcaption>{html.escape(caption)}'
          f' (<a href="{html.escape(name)}">{html.escape(name)}</a>)</figcaption></figure>')


def write_report(run_dir: str, metric: str = "final_val_acc") -> list[str]:
  """Regenerates the figures, ``summary.json`` and ``report.html`` of a run directory.

  Args:
    run_dir: a directory written by ``lrjax run`` (``config.json``,
      ``members.parquet``, ``history.parquet``).
    metric: the members column that ranks LRs and members.

  Returns:
    The paths written: the PNGs, ``summary.json`` and ``report.html`` (last).

  Raises:
    lrjax.errors.ConfigError: the directory is incomplete or the metric unknown.

  Example:
    >>> import tempfile
    >>> from lrjax.analysis.synthetic import save_run, synthetic_run
    >>> d = save_run(synthetic_run(lrs=(0.01, 0.1), batch_sizes=(32,), seeds=(0,)),
    ...              tempfile.mkdtemp())
    >>> [os.path.basename(p) for p in write_report(d)][-2:]
    ['summary.json', 'report.html']
  """
  run = tables.load_run(run_dir)
  members, history = run.members, run.history
  axes = tables.grid_axes(members, run.config)
  summary = tables.summarize(run, metric)
  table = tables.best_lr_table(members, metric, axes=axes)
  fit = tables.fit_lr_batch_scaling(table)
  boundary = tables.divergence_boundary(members)
  written, figures = [], []
  for name, m in HEATMAP_METRICS.items():
    if m in members.columns:
      written.append(plots.heatmaps(members, m, os.path.join(run_dir, name), axes))
      figures.append((name, f"{m}: LR x batch size, one panel per aug strength"))
  for name, m in CURVE_METRICS.items():
    if m in history.columns and not history.empty:
      written.append(plots.training_curves(history, members, os.path.join(run_dir, name), m))
      figures.append((name, f"{m} vs examples seen, coloured by LR"))
  written.append(plots.best_lr_vs_batch(table, fit, os.path.join(run_dir, SCALING_FIGURE)))
  figures.append((SCALING_FIGURE, "best LR vs batch size with linear and sqrt rules"))
  for axis in axes[len([a for a in tables.CORE_AXES if a in members.columns]):]:
    name = f"by_{axis}_{metric}.png"  # extra axes (schedule, momentum, ...) compared directly
    written.append(plots.metric_vs_lr_by_axis(members, axis, metric,
                                              os.path.join(run_dir, name)))
    figures.append((name, f"{metric} vs LR, one line per {axis} (mean over seeds)"))

  summary_path = os.path.join(run_dir, "summary.json")
  with open(summary_path, "w") as f:
    json.dump(summary, f, indent=2)
  written.append(summary_path)

  best = summary["best_member"]
  headline = pd.DataFrame([
      ("members", summary["n_members"]), ("diverged", summary["n_diverged"]),
      ("ranked by", metric),
      ("best member", "none (all diverged)" if best is None else
       ", ".join(f"{a}={best[a]}" for a in axes)),
      *[(c, f"{best[c]:.4g}" if isinstance(best.get(c), float) else "")
        for c in tables.METRIC_COLUMNS if best is not None and c in best],
      *[(f"axis {a}", ", ".join(f"{v:g}" if isinstance(v, (int, float)) else str(v)
                                for v in vals)) for a, vals in summary["axes"].items()],
  ], columns=["", "value"])
  config = run.config
  title = f"lrjax report: {config.get('dataset', '?')} / {config.get('model', '?')} / " \
          f"{config.get('optimizer', '?')}"
  parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>"
           f"{html.escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>",
           "<h2>Summary</h2>", _table_html(headline)]
  if summary["warnings"]:
    parts.append("<ul>" + "".join(f"<li class='warn'>{html.escape(w)}</li>"
                                  for w in summary["warnings"]) + "</ul>")
  parts += [f"<h2>Best LR per batch size and aug ({html.escape(metric)}, mean over "
            "seeds; lr_lo..lr_hi: LRs within 1% of the best)</h2>", _table_html(table),
            "<h2>LR-batch scaling fit: log(best LR) = slope &middot; log(batch size) + "
            "c (linear rule: slope 1; sqrt rule: slope 0.5)</h2>", _table_html(fit),
            "<h2>Divergence boundary (smallest LR where any member diverged)</h2>",
            _table_html(boundary),
            "<h2>Augmentation effect (best LR relative to the weakest aug)</h2>",
            _table_html(tables.aug_effect(table)), "<h2>Figures</h2>"]
  parts += [_figure_html(run_dir, name, cap) for name, cap in figures]
  parts += ["<h2>Config</h2>",
            f"<pre>{html.escape(json.dumps(config, indent=2, default=str))}</pre>"]
  info_path = os.path.join(run_dir, "run_info.json")
  if os.path.exists(info_path):  # timings and layout, written by the engine
    with open(info_path) as f:
      parts += ["<h2>Run info</h2>", f"<pre>{html.escape(f.read())}</pre>"]
  parts += [
            "</body></html>"]
  report_path = os.path.join(run_dir, "report.html")
  with open(report_path, "w") as f:
    f.write("\n".join(parts))
  written.append(report_path)
  return written
