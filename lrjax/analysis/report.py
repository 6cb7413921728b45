"""The run report: figures, ``summary.json`` and a self-contained ``report.html``.

`write_report` is what ``lrjax report RUN_DIR`` calls and what every run calls at its
end; it only reads the tables the engine wrote, so it can be rerun any time (e.g.
after changing the metric). The page opens with the findings (each verdict with its
interval, or why the run does not settle it); then, when the grid has a schedule,
optimizer or other extra axis, the comparison along it; then the interactive view
(`lrjax.analysis.interactive`: heatmap and curves with hover, drawn offline by an
inlined vega-embed); then the static figures; then the tables, led by a sortable,
filterable members table. Sections with nothing to show are left out.
"""
from __future__ import annotations

import base64
import html
import json
import os

import numpy as np
import pandas as pd

from lrjax.analysis import fit_plots, interactive, plots, settle_report, tables
from lrjax.analysis import summary as summary_lib
from lrjax.grid import CORE_AXES

HEATMAP_METRICS = {"heatmap_val_acc.png": "final_val_acc",
                   "heatmap_val_loss.png": "final_val_loss"}
CURVE_METRICS = {"curves_val_loss.png": "val_loss", "curves_val_acc.png": "val_acc",
                 "curves_train_loss.png": "train_loss"}
SCALING_FIGURE = "best_lr_vs_batch.png"
STEPS_FIGURE = "steps_to_target.png"
NOISE_FIGURE = "noise_scale.png"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
.warn{color:#a33}figcaption{font-size:.8em;color:#555}
#findings p{margin:.35em 0;line-height:1.45}.note{font-size:.85em;color:#555}
.subtitle{color:#555;margin-top:-.6em}.members .scroll{max-height:32em;overflow:auto}
.members input{margin:.4em 0;padding:.2em .4em}
table.sortable th{cursor:pointer;position:sticky;top:0}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
figure.vl{margin:.6em 0}.vl-chart{overflow-x:auto;max-width:100%}
table.waves td.left{text-align:left;vertical-align:top}table.waves ul{margin:0;padding-left:1.1em}
.interrupted{border-left:6px solid #d68910;background:#fef5e7;padding:.5em 1em}
.table-scroll{max-width:100%;overflow-x:auto}pre{max-width:100%;overflow-x:auto}
"""
# Extra axes whose comparison leads the report (after the findings), in this order;
# other extra axes follow them.
LEADING_AXES = ("optimizer", "schedule")
# Config keys naming what a run trained, shown in the title unless they are axes.
TITLE_KEYS = ("dataset", "model", "optimizer")


def _table_html(df: pd.DataFrame | None) -> str:
  if df is None or df.empty:
    return "<p><em>(empty)</em></p>"
  fmt = {c: (lambda v: "" if pd.isna(v) else f"{v:.4g}")
         for c in df.columns if pd.api.types.is_float_dtype(df[c])}
  # A wide table scrolls inside its own box: the page stays within the window.
  return ("<div class='table-scroll'>"
          + df.to_html(index=False, formatters=fmt, na_rep="", border=0, escape=True)
          + "</div>")


def _figure_html(run_dir: str, name: str, caption: str) -> str:
  with open(os.path.join(run_dir, name), "rb") as f:
    data = base64.b64encode(f.read()).decode("ascii")
  # Embedded so the HTML is self-contained; the link points at the file beside it.
  return (f'<figure><a href="{html.escape(name)}"><img alt="{html.escape(name)}" '
          f'src="data:image/png;base64,{data}"></a><figcaption>{html.escape(caption)}'
          f' (<a href="{html.escape(name)}">{html.escape(name)}</a>)</figcaption></figure>')


def _ratio_columns(df: pd.DataFrame | None) -> pd.DataFrame | None:
  """Aug-effect tables with log ratios shown as ratios (×)."""
  if df is None:
    return None
  out = df.copy()
  for name in ("d_log_best_lr", "d_log_max_stable_lr"):
    for suffix in ("", "_lo", "_hi"):
      col = name + suffix
      if col in out:
        out[col.replace("d_log_", "ratio_")] = np.exp(out.pop(col).astype(float))
  return out


def write_report(run_dir: str, metric: str = summary_lib.DEFAULT_METRIC,
                 n_boot: int = 1000) -> list[str]:
  """Regenerates the figures, ``summary.json`` and ``report.html`` of a run directory.

  Args:
    run_dir: a directory written by ``lrjax run`` (``config.json``,
      ``members.parquet``, ``history.parquet``).
    metric: the members column that ranks LRs (mean over seeds; default
      ``final_val_loss``).
    n_boot: bootstrap replicates behind every interval.

  Returns:
    The paths written: the PNGs, ``summary.json`` and ``report.html`` (last).

  Raises:
    lrjax.errors.ConfigError: the directory is incomplete or the metric unknown.

  Example:
    >>> import tempfile
    >>> from lrjax.analysis.synthetic import save_run, synthetic_run
    >>> d = save_run(synthetic_run(lrs=(0.01, 0.1), batch_sizes=(32,), seeds=(0,)),
    ...              tempfile.mkdtemp())
    >>> [os.path.basename(p) for p in write_report(d, n_boot=0)][-2:]
    ['summary.json', 'report.html']
  """
  run = tables.load_run(run_dir)
  summary, est = summary_lib.analyze(run, metric, n_boot)
  axes = tables.grid_axes(est.members, run.config)
  varied = _varied_axes(est.members, axes)
  drawn = [*_result_figures(run, est.members, axes),
           *_estimate_figures(run_dir, est, metric),
           *_axis_figures(run_dir, est.members, metric, axes, varied)]
  written = [path for path, _, _ in drawn]
  figures = [(os.path.basename(path), caption, section) for path, caption, section in drawn]
  summary_path = os.path.join(run_dir, "summary.json")
  with open(summary_path, "w") as f:
    json.dump(summary, f, indent=2, allow_nan=False)
  written.append(summary_path)
  report_path = os.path.join(run_dir, "report.html")
  with open(report_path, "w") as f:
    f.write(_html(run, summary, est, figures, metric, axes, varied))
  written.append(report_path)
  return written


# A drawn figure: (path, caption, report section: "figures", "axis:<name>" or "hidden").
_Drawn = tuple[str, str, str]


def _result_figures(run: tables.RunTables, members: pd.DataFrame, axes) -> list[_Drawn]:
  """Heatmaps of the members' metrics and training curves from the history."""
  out = []
  for name, m in HEATMAP_METRICS.items():
    if m in members.columns:
      out.append((plots.heatmaps(members, m, os.path.join(run.run_dir, name), axes),
                  f"{m}: LR x batch size, one panel per aug strength; mean (± std) over "
                  "seeds; diverged and failed cells marked", "figures"))
  history = run.history
  for name, m in CURVE_METRICS.items():
    if m in history.columns and not history.empty:
      out.append((plots.training_curves(history, members, os.path.join(run.run_dir, name), m),
                  f"{m} vs examples seen per setting, coloured by LR; band: range over seeds",
                  "figures"))
  return out


def _estimate_figures(run_dir: str, est, metric: str) -> list[_Drawn]:
  """Best LR vs batch size, steps to target and the noise scale, where computed."""
  # Written always (the file list is stable), shown only when there is a slope to see.
  out = [(fit_plots.best_lr_vs_batch(est.best_lr, est.scaling, est.scaling_band,
                                     os.path.join(run_dir, SCALING_FIGURE)),
          f"best LR ({metric}, mean over seeds) vs batch size with 95% intervals, the "
          "fitted exponent with its band, and the linear and sqrt rules",
          "figures" if est.members["batch_size"].nunique() > 1 else "hidden")]
  if est.best_steps is not None and np.isfinite(est.best_steps["best_steps"]).any():
    out.append((fit_plots.steps_to_target(est.best_steps, est.critical_batch, est.target,
                                          os.path.join(run_dir, STEPS_FIGURE)),
                "fewest steps to the target per batch size (best LR), with S = S_min (1 + "
                "B_crit / B)", "figures"))
  if est.noise_curve is not None:
    out.append((fit_plots.noise_scale(est.noise_curve, os.path.join(run_dir, NOISE_FIGURE)),
                "gradient noise scale over training per aug strength", "figures"))
  return out


def _axis_figures(run_dir: str, members: pd.DataFrame, metric: str, axes,
                  varied: list[str]) -> list[_Drawn]:
  """``metric`` vs LR along each extra axis (schedule, momentum, ...)."""
  if metric not in members.columns:
    return []
  core = [a for a in CORE_AXES if a in members.columns]
  out = []
  for axis in axes[len(core):]:
    name = f"by_{axis}_{metric}.png"
    out.append((plots.metric_vs_lr_by_axis(members, axis, metric, os.path.join(run_dir, name)),
                f"{metric} vs LR, one line per {axis} (mean over seeds); a panel per "
                "(aug, batch size)", f"axis:{axis}" if axis in varied else "figures"))
  return out


def _varied_axes(members: pd.DataFrame, axes) -> list[str]:
  """Grid axes with two or more values, but seed: extra axes first, by LEADING_AXES."""
  core = [a for a in CORE_AXES if a in members.columns]
  extra = sorted(axes[len(core):], key=lambda a: (LEADING_AXES.index(a)
                                                   if a in LEADING_AXES else
                                                   len(LEADING_AXES)))
  return [a for a in (*extra, *core) if a != "seed" and a in members.columns
          and members[a].nunique(dropna=False) > 1]


def _title(config: dict, axes, varied: list[str]) -> tuple[str, str]:
  """("dataset / model / schedule × lr", "fixed: optimizer sgd, ...") for the page head."""
  fixed = [str(config[k]) for k in TITLE_KEYS
           if k not in axes and config.get(k) not in (None, "")]
  title = " / ".join([*fixed, " × ".join(varied) or "one setting"])
  return f"lrjax report: {title}", ("varied: " + (", ".join(varied) or "nothing"))


def _interactive_html(run, members: pd.DataFrame, axes, metric: str,
                      scripts: list[str]) -> str:
  """The interactive section (heatmap and curves), or a note saying why it is missing.

  Appends the scripts that draw it to ``scripts``.
  """
  charts = []
  try:
    loss = "final_val_loss" if "final_val_loss" in members.columns else metric
    charts.append(("vl-heatmap", f"{loss}, mean over the seeds that did not diverge, over "
                   "LR × batch size, a panel per aug strength (and extra axes); hover a "
                   "cell for mean, spread over seeds and member status counts; grey ×: "
                   "every seed diverged", interactive.heatmap_spec(members, axes, loss)))
    if not run.history.empty and "val_loss" in run.history.columns:
      charts.append(("vl-curves", "val_loss vs examples seen, one line per member, "
                     "coloured by LR (click a legend entry to keep one LR, shift-click for "
                     "more); hover a point for the member's hyperparameters",
                     interactive.curves_spec(run.history, members, axes, "val_loss")))
    body = interactive.charts_html(charts)
    scripts.append(interactive.scripts_html())  # at the end of the page
  except Exception as e:  # the static figures and tables still tell the whole story
    return (f"<p class='warn'>The interactive view could not be made here "
            f"({html.escape(type(e).__name__)}: {html.escape(str(e))}); the figures "
            "below hold the same data.</p>")
  return body


def _html(run: tables.RunTables, summary: dict, est, figures, metric: str,
          axes=None, varied=None) -> str:
  """The page: findings, extra-axis comparisons, interactive view, figures, tables."""
  members = est.members
  axes = list(axes if axes is not None else tables.grid_axes(members, run.config))
  varied = list(varied if varied is not None else _varied_axes(members, axes))
  title, subtitle = _title(run.config, axes, varied)
  scripts: list[str] = []
  parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>"
           f"{html.escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>",
           f"<p class='subtitle'>{html.escape(subtitle)}; {summary['n_members']} "
           f"members</p>",
           *_interrupted_html(run),
           *_headline_html(summary), *_findings_html(summary, metric),
           *settle_report.settle_html(run.config if isinstance(run.config, dict) else {})]
  # What the experiment varied besides LR, batch size and aug leads: the paired arm
  # comparisons (summary.json's numbers), then the figures.
  for axis in varied:
    figs = [(n, c) for n, c, sec in figures if sec == f"axis:{axis}"]
    table = _comparisons_html(summary, axis)
    if figs or table:
      parts.append(f"<section id='by-{html.escape(axis)}'><h2>{html.escape(axis.capitalize())}"
                   f" comparison</h2>")
      parts += table
      parts += [_figure_html(run.run_dir, n, c) for n, c in figs]
      parts.append("</section>")
  parts += ["<section id='interactive'><h2>Interactive view</h2>",
            _interactive_html(run, members, axes, metric, scripts),
            "<p class='note'><a href='#members'>Members table</a> (filter, sort) "
            "below, with the other tables.</p></section>"]
  static = [(n, c) for n, c, sec in figures if sec == "figures"]
  if static:
    parts.append("<section id='figures'><h2>Figures</h2>")
    parts += [_figure_html(run.run_dir, n, c) for n, c in static]
    parts.append("</section>")
  parts += ["<h2>Tables</h2><h3>Run</h3>", _table_html(_headline(summary, metric)),
            "<h3 id='members'>Members (type to filter; click a column to sort)</h3>",
            interactive.members_table_html(members, axes), *_estimate_tables_html(est, metric),
            *_decisions_html(summary), "<h2>Config</h2>",
            f"<pre>{html.escape(json.dumps(run.config, indent=2, default=str))}</pre>"]
  info_path = os.path.join(run.run_dir, "run_info.json")
  if os.path.exists(info_path):  # timings and layout, written by the engine
    with open(info_path) as f:
      parts += ["<h2>Run info</h2>", f"<pre>{html.escape(f.read())}</pre>"]
  parts += [*scripts, "</body></html>"]
  return "\n".join(parts)


# The working directories of a run still training or stopped: ``lrjax run``'s and
# ``lrjax extend``'s (``workdir.partial_dir``, ``extend.extension_dir``).
UNFINISHED_SUFFIXES = (".partial", ".extend")


def _interrupted_html(run: tables.RunTables) -> list[str]:
  """A banner on the report of an unfinished run: what it holds so far, and how to go on."""
  name = os.path.basename(os.path.normpath(run.run_dir))
  if not name.endswith(UNFINISHED_SUFFIXES):
    return []
  history = run.history if isinstance(run.history, pd.DataFrame) else None
  upto = (f", each evaluated up to {int(history['examples_seen'].max()):,} examples"
          if history is not None and len(history) else "")
  go_on = ("`lrjax run CONFIG --workdir DIR --resume`" if name.endswith(".partial")
           else "`lrjax extend DIR --resume`")
  return [f"<div class='interrupted' id='interrupted'><p><b>Unfinished run.</b> This is "
          f"{html.escape(name)}: the tables of a run that is still training or was "
          f"stopped, with {len(run.members)} members so far{upto}. Members not evaluated "
          f"yet are missing, test metrics are empty, and every verdict may change. "
          f"{html.escape(go_on)} finishes it.</p></div>"]


def _headline_html(summary: dict) -> list[str]:
  """The headline section: the best configuration and the answer to each primary
  question (``summary["headline"]``)."""
  sentences = (summary.get("headline") or {}).get("sentences") or []
  if not sentences:
    return []
  return ["<section id='headline'><h2>Headline</h2>",
          *[f"<p>{html.escape(s)}</p>" for s in sentences], "</section>"]


# The parts of the findings after the headline, with their headings.
FINDINGS_PARTS = (("primary", "Primary questions"), ("exploratory", "Exploratory"),
                  ("notes", "Notes"))


def _findings_html(summary: dict, metric: str) -> list[str]:
  """The findings section: the sentences by part (primary, exploratory, notes; the
  headline is the section above), how intervals were made, the warnings."""
  parts = ["<section id='findings'><h2>Findings</h2>"]
  sections = summary.get("findings_sections")
  if sections:
    for key, heading in FINDINGS_PARTS:
      if sections.get(key):
        parts.append(f"<h3>{heading}</h3>")
        parts += [f"<p>{html.escape(s)}</p>" for s in sections[key]]
  else:
    parts += [f"<p>{html.escape(s)}</p>" for s in summary["findings"]]
  parts.append(f"<p class='note'>Best LRs minimise/maximise the mean over seeds of "
               f"{html.escape(metric)}; intervals are 95% seed-bootstrap intervals "
               f"({summary['n_boot']} replicates); member status: "
               f"{html.escape(summary['status_source'])}.</p>")
  if summary["warnings"]:
    parts.append("<ul>" + "".join(f"<li class='warn'>{html.escape(w)}</li>"
                                  for w in summary["warnings"]) + "</ul>")
  parts.append("</section>")
  return parts


def _headline(summary: dict, metric: str) -> pd.DataFrame:
  """The run at a glance: member counts, seeds, the best single member, the axes."""
  counts = summary["status_counts"]
  best = summary["best_member"]
  return pd.DataFrame([
      ("members", summary["n_members"]), ("trained", counts["trained"]),
      ("slow", counts.get("slow", 0)), ("failed", counts["failed"]),
      ("diverged", counts["diverged"]),
      ("seeds", summary["n_seeds"]), ("ranked by", metric),
      ("best single member (one seed; not an estimate)",
       "none (all diverged)" if best is None and counts["diverged"] == summary["n_members"]
       else "none (no member learned)" if best is None else
       ", ".join(f"{a}={best[a]}" for a in summary["axes"])),
      *[(f"axis {a}", ", ".join(f"{v:g}" if isinstance(v, (int, float)) else str(v)
                                for v in vals)) for a, vals in summary["axes"].items()],
  ], columns=["", "value"])


def _estimate_tables_html(est, metric: str) -> list[str]:
  """A heading and a table per estimate that was computed."""
  parts = [f"<h3>Best LR per cell ({html.escape(metric)}, mean over seeds; refined "
           "between grid points; edge: the optimum is at the grid's edge, a bound)</h3>",
           _table_html(est.best_lr)]
  if est.members["batch_size"].nunique() > 1:  # one batch size: no slope to fit
    parts += ["<h3>LR-batch scaling: best LR ∝ batch size<sup>α</sup> (linear rule: "
              "α = 1; sqrt rule: α = 0.5)</h3>", _table_html(est.scaling)]
  parts += ["<h3>Max stable LR (per seed, the limit lies between its largest stable LR "
            "and the next grid LR; geometric mean over seeds with a 95% interval from the "
            "seeds and the grid's resolution; bracket_lo–bracket_hi: the grid LRs around "
            "it; an interval open at 0 or inf: seeds censored beyond the grid)</h3>",
            _table_html(est.max_stable)]
  if est.aug_pooled is not None:
    parts += [f"<h3>Augmentation effect vs aug {est.reference_aug:g}, mean over batch "
              "sizes (ratios of LRs, difference of the metric)</h3>",
              _table_html(_ratio_columns(est.aug_pooled)),
              "<h3>Augmentation effect per batch size</h3>",
              _table_html(_ratio_columns(est.aug_effect))]
  if est.best_steps is not None:
    level = (f"≤ {est.target:.4g}" if est.target is not None
             else "target (one per aug group: the hardest level all its batch sizes reach)")
    parts += [f"<h3>Steps to val_loss {level}; best LR per cell</h3>",
              _table_html(est.best_steps), "<h3>Critical batch size</h3>",
              _table_html(est.critical_batch)]
  if est.noise_summary is not None:
    parts += ["<h3>Gradient noise scale (median over training of the per-evaluation "
              "median; spread over training)</h3>", _table_html(est.noise_summary)]
  if est.noise_at_target is not None:
    parts += ["<h3>Gradient noise scale at equal progress (best-LR members where "
              "they first reach the target; 95% interval over seeds)</h3>",
              _table_html(est.noise_at_target)]
    if est.noise_effect is not None and not est.noise_effect.empty:
      parts += ["<h3>Augmentation effect on the noise scale (ratio to the reference, "
                "paired by seed)</h3>", _table_html(est.noise_effect)]
  return parts


# The columns of an arm comparison shown in the report, in this order.
COMPARISON_COLUMNS = ("metric", "cell", "arm", "reference", "arm_lr", "reference_lr",
                      "arm_mean", "reference_mean", "mean", "lo", "hi", "n", "p",
                      "p_equivalence", "text")


def _comparisons_html(summary: dict, axis: str) -> list[str]:
  """The arm comparisons along ``axis`` as a table (empty when there are none)."""
  rows = [r for r in summary.get("comparisons") or [] if r["axis"] == axis]
  if not rows:
    return []
  df = pd.DataFrame(rows)[list(COMPARISON_COLUMNS)].rename(columns={"text": "verdict"})
  for col in ("mean", "lo", "hi", "arm_lr", "reference_lr", "arm_mean", "reference_mean",
              "p", "p_equivalence"):
    df[col] = df[col].astype(float)
  margin = rows[0]["margin"]
  return [f"<h3>{html.escape(axis)}: each arm − the reference arm, paired over shared "
          f"seeds, each arm at its best grid LR (mean, lo, hi: 95% t interval; verdict: "
          f"equivalent within ±{margin:g} by two one-sided tests, different when the "
          "interval excludes 0, else not settled)</h3>", _table_html(df)]


# The columns of a decision shown in the report, in this order.
DECISION_COLUMNS = ("question", "cell", "metric", "estimate", "lo", "hi", "level", "n_seeds",
                    "p", "p_holm", "verdict", "settle")


def _decisions_html(summary: dict) -> list[str]:
  """Every question's decisions: the primary family (Holm), exploratory and checks."""
  rows = summary.get("decisions") or []
  if not rows:
    return []
  df = pd.DataFrame(rows)
  parts = []
  for role, heading in (("primary", "Primary decisions (one family: Holm-corrected, "
                         "family-wise 95%; intervals at the simultaneous level)"),
                        ("exploratory", "Exploratory decisions (95%, uncorrected)"),
                        ("check", "Checks on the companion metric (95%, uncorrected)")):
    sub = df[df["role"] == role]
    if not sub.empty:
      sub = sub[list(DECISION_COLUMNS)].copy()
      for col in ("estimate", "lo", "hi", "level", "p", "p_holm"):
        sub[col] = sub[col].astype(float)
      parts += [f"<h3>{heading}</h3>", _table_html(sub)]
  return parts
