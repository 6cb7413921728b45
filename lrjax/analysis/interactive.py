"""The interactive part of ``report.html``: Vega-Lite charts and a members table, inline.

Charts are built with Altair (Vega-Lite specs as JSON) and drawn in the browser by
vega-embed. The page must open offline, from a file, with no server: the specs are
embedded as JSON and the vega / vega-lite / vega-embed JavaScript is inlined as one
bundle made by ``vl-convert-python`` (which ships the libraries; no network). The
bundle (~0.9 MB) is made once per machine and cached on disk, since making it takes a
second or two.

The members table is plain HTML with a few lines of inline JavaScript: a text filter
and click-to-sort column headers.
"""
from __future__ import annotations

import functools
import html
import json
import os
import re
import tempfile
from typing import Sequence

import numpy as np
import pandas as pd

from lrjax import outcomes
from lrjax.analysis import stats

# Points drawn in the curves chart at most; longer histories are thinned per member
# (first and last evaluation kept) so the page stays light.
MAX_CURVE_POINTS = 12_000
# Members table columns after the grid axes, when present.
MEMBER_RESULT_COLUMNS = ("status", "final_val_loss", "final_val_acc", "best_val_loss",
                         "best_val_acc", "test_loss", "test_acc", "updates",
                         "diverged_at")


def _vl_version() -> str:
  import altair as alt
  return alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]  # "v6.4.1" -> "6.4"


def _cache_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "lrjax")


# Bumped when _escape_bundle changes (names the cache file).
_BUNDLE_REV = "r2"


def _escape_bundle(js: str) -> str:
  """The bundle made safe and quiet to inline in a page.

  A literal "</script" would end the tag early; the HTML tags vega-embed's tooltip
  builds in string literals ("<h2>", "<img", "<table>") are written "\\x3c..." so
  the page's markup outside scripts is all there is to find when searching for tags.
  """
  js = js.replace("</script", "<\\/script")
  return re.sub(r"([\"'`])<(/?(?:img|h[1-6]|table|tr|td|th|figure)\b)", r"\1\\x3c\2", js)


@functools.lru_cache(maxsize=None)
def javascript_bundle() -> str:
  """vega + vega-lite + vega-embed as one script (window.vegaEmbed), safe to inline.

  Made by ``vl_convert.javascript_bundle`` (offline) for Altair's Vega-Lite version,
  cached in memory and under ``$XDG_CACHE_HOME/lrjax`` (``~/.cache/lrjax``).
  """
  import vl_convert as vlc
  version = _vl_version()
  if version not in vlc.get_vegalite_versions():  # an Altair newer than vl-convert
    version = None  # vl-convert's latest
  path = os.path.join(_cache_dir(), f"vega-bundle-{_BUNDLE_REV}-vlc{vlc.__version__}-"
                      f"vl{version or 'latest'}.js")
  try:
    with open(path, encoding="utf-8") as f:
      js = f.read()
    if js:
      return js
  except OSError:
    pass
  js = _escape_bundle(vlc.javascript_bundle(vl_version=version))
  try:  # best effort; a read-only home only costs the time next run
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(js)
    os.replace(tmp, path)
  except OSError:
    pass
  return js


def _status(members: pd.DataFrame) -> np.ndarray:
  """Each member's status (`lrjax.analysis.stats.status_labels`)."""
  return stats.status_labels(members)


def _curve_scale(df: pd.DataFrame, metric: str, positive: bool):
  """The curves' y scale: log for a positive loss, its top at 3x the largest first
  evaluation (diverging members' losses, up to 1e3 and more, would squash the curves
  that matter into a strip; those are pinned to the top edge: clamped)."""
  import altair as alt  # pylint: disable=import-outside-toplevel  (the report's alone)
  if not (positive and "loss" in metric):
    return alt.Scale(zero=False)
  first = df.sort_values("examples_seen").groupby("member")[metric].first()
  top = float(min(df[metric].max(), 3.0 * first.max()))
  return alt.Scale(type="log", domain=[float(df[metric].min()), top], clamp=True)


def _panel_label(df: pd.DataFrame, axes: Sequence[str]) -> pd.Series:
  """"aug=0.5" (plus any extra axes) per row: one heatmap panel each."""
  cols = [a for a in axes if a in df.columns]
  if not cols:
    return pd.Series("all", index=df.index)
  return df[cols].astype(str).apply(
      lambda r: ", ".join(f"{c}={v}" for c, v in zip(cols, r)), axis=1)


def _records(df: pd.DataFrame) -> list[dict]:
  """JSON-safe records (NaN and inf become null), fast: through pandas' JSON writer."""
  df = df.replace([np.inf, -np.inf], np.nan)
  return json.loads(df.to_json(orient="records", double_precision=6))


def _with_data(chart, name: str, df: pd.DataFrame) -> dict:
  """The chart's spec with ``df`` as its named dataset.

  The data go in after Altair made the spec: Altair validates and walks inline values
  record by record, seconds for a few thousand points.
  """
  spec = chart.to_dict(validate=False)
  spec.setdefault("datasets", {})[name] = _records(df)
  return spec


# Cell marks of the heatmap, by the statuses of its seeds: (text, text colour).
# Diverged and failed cells are grey (dark, light) behind their mark; slow cells keep
# their colour under an orange "slow".
CELL_MARKS = {"diverged": ("×", "white"), "failed": ("failed", "#333333"),
              "slow": ("slow", "#e66101")}


def _cell_outcomes(cells: pd.DataFrame) -> np.ndarray:
  """Per heatmap cell: ``"diverged"`` (every seed), ``"failed"`` (no seed learned,
  some failed), ``"slow"`` (some seed slow) or ``""``."""
  learned = cells["trained"] + cells["slow"]
  return np.select([cells["diverged"] >= cells["seeds"],
                    (learned == 0) & (cells["failed"] > 0), cells["slow"] > 0],
                   ["diverged", "failed", "slow"], "")


def heatmap_spec(members: pd.DataFrame, axes: Sequence[str],
                 metric: str = "final_val_loss") -> dict:
  """Vega-Lite spec: ``metric`` (mean over seeds) over LR × batch size, a panel per aug.

  Extra grid axes (schedule, ...) get their own panels. The mean is over the seeds
  that did not diverge; hover shows mean, standard deviation over seeds and the
  member status counts (`lrjax.outcomes`). Cells where every seed diverged are dark
  grey and marked "×"; cells where no seed learned (trained or slow) but some failed
  are light grey and marked "failed"; cells with slow seeds (learned, far from
  converged) keep their colour and are marked "slow" in orange (`CELL_MARKS`).
  """
  import altair as alt
  df = members.copy()
  df["status"] = _status(df)
  df.loc[df["status"] == "diverged", metric] = np.nan
  panel_axes = [a for a in axes if a not in ("lr", "batch_size", "seed")]
  keys = ["lr", "batch_size", *panel_axes]
  g = df.groupby(keys, sort=True, dropna=False)
  cells = g[metric].agg(["mean", "std", "count"]).reset_index()
  counts = (df.groupby([*keys, "status"], dropna=False).size().unstack(fill_value=0)
            .reindex(columns=list(outcomes.STATUSES), fill_value=0)
            .reset_index())
  cells = cells.merge(counts, on=keys)
  cells["seeds"] = cells[list(outcomes.STATUSES)].sum(axis=1)
  cells["panel"] = _panel_label(cells, panel_axes)
  cells["outcome"] = _cell_outcomes(cells)
  cells["mark"] = cells["outcome"].map(lambda o: CELL_MARKS[o][0] if o else "")
  cells = cells.rename(columns={"count": "n_values"})
  tooltip = [alt.Tooltip("lr:Q", format=".4g"), alt.Tooltip("batch_size:O"),
             *[alt.Tooltip(f"{a}:N") for a in panel_axes],
             alt.Tooltip("mean:Q", title=f"{metric} mean", format=".4g"),
             alt.Tooltip("std:Q", title="std over seeds", format=".3g"),
             alt.Tooltip("seeds:Q"), *[alt.Tooltip(f"{s}:Q") for s in outcomes.STATUSES]]
  x = alt.X("lr:O", title="learning rate", axis=alt.Axis(format=".3~g", labelAngle=-45))
  y = alt.Y("batch_size:O", title="batch size", sort="descending")
  base = alt.Chart().encode(x=x, y=y, tooltip=tooltip)
  empty = base.mark_rect().encode(color=alt.condition(
      "datum.outcome == 'diverged'", alt.value("#5a5a5a"), alt.value("#cfcfcf")))
  filled = base.mark_rect().encode(
      color=alt.Color("mean:Q", title=f"{metric} (mean)",
                      scale=alt.Scale(scheme="viridis", reverse="loss" in metric))
  ).transform_filter("datum.outcome != 'failed'")
  text = base.mark_text(fontSize=10, fontWeight="bold").encode(
      text="mark:N",
      color=alt.Color("outcome:N", legend=None, scale=alt.Scale(
          domain=list(CELL_MARKS), range=[c for _, c in CELL_MARKS.values()])))
  n_panels = cells["panel"].nunique()
  chart = alt.layer(empty, filled, text, data=alt.Data(name="cells")).properties(
      width=min(420, 34 * cells["lr"].nunique() + 40),
      height=min(300, 30 * cells["batch_size"].nunique() + 20),
  ).facet(facet=alt.Facet("panel:N", title=None), columns=min(3, n_panels))
  return _with_data(chart, "cells", cells)


def _thin(history: pd.DataFrame, max_points: int) -> pd.DataFrame:
  """At most ``max_points`` rows: every k-th evaluation per member, last kept."""
  n_members = max(1, history["member"].nunique())
  per_member = max(2, max_points // n_members)
  pos = history.groupby("member").cumcount()
  size = history.groupby("member")["member"].transform("size")
  step = np.maximum(1, np.ceil(size / per_member)).astype(int)
  keep = (pos % step == 0) | (pos == size - 1)
  return history[keep]


def curves_spec(history: pd.DataFrame, members: pd.DataFrame, axes: Sequence[str],
                metric: str = "val_loss", max_points: int = MAX_CURVE_POINTS) -> dict:
  """Vega-Lite spec: ``metric`` vs examples seen, one line per member.

  A panel per (aug, batch size); colour by LR (click the legend to keep one LR);
  hovering a point shows the member's hyperparameters, status and value, and
  highlights its line. Non-finite values (after divergence) are left out; histories
  longer than ``max_points`` in all are thinned evenly per member.
  """
  import altair as alt
  hp = [a for a in axes if a in members.columns]
  m = members[["member", *hp]].copy()
  m["status"] = _status(members)
  h = history[["member", "examples_seen", metric]]
  h = h[np.isfinite(h[metric].to_numpy(float))]
  h = _thin(h.sort_values(["member", "examples_seen"], kind="stable"), max_points)
  df = h.merge(m, on="member", how="left")
  extra = [a for a in hp if a not in ("lr", "batch_size", "aug", "seed")]
  tooltip = [alt.Tooltip("member:N"), alt.Tooltip("lr:Q", format=".4g"),
             *[alt.Tooltip(f"{a}:N") for a in hp if a != "lr"],
             alt.Tooltip("status:N"), alt.Tooltip("examples_seen:Q", format=","),
             alt.Tooltip(f"{metric}:Q", format=".4g")]
  pick_lr = alt.selection_point(fields=["lr"], bind="legend", name="pick_lr")
  # Not nearest=True: its Voronoi layer catches the pointer and its tooltip shows only
  # the encoded fields; invisible, large points take the hover instead.
  hover = alt.selection_point(fields=["member"], on="pointerover", clear="pointerout",
                              empty=False, name="hover")
  positive = bool((df[metric] > 0).all()) and len(df) > 0
  base = alt.Chart().encode(
      x=alt.X("examples_seen:Q", title="examples seen"),
      y=alt.Y(f"{metric}:Q", title=metric, scale=_curve_scale(df, metric, positive)),
      color=alt.Color("lr:O", title="LR", scale=alt.Scale(scheme="viridis"),
                      legend=alt.Legend(format=".3~g")),
      detail="member:N")
  lines = base.mark_line().encode(
      opacity=alt.condition(pick_lr, alt.value(0.85), alt.value(0.06)),
      strokeWidth=alt.condition(hover, alt.value(3.0), alt.value(1.2)),
      strokeDash=(alt.StrokeDash("status:N", title="status",
                                 scale=alt.Scale(domain=list(outcomes.STATUSES),
                                                 range=[[1, 0], [8, 2, 2, 2], [2, 2],
                                                        [6, 3]]))
                  if df["status"].nunique() > 1 else alt.value([1, 0])),
  ).add_params(pick_lr)
  points = base.mark_point(size=70, filled=True).encode(
      opacity=alt.condition(hover, alt.value(1.0), alt.value(0.0)),
      tooltip=tooltip).add_params(hover)
  row = "aug" if "aug" in df and df["aug"].nunique() > 1 else None
  if extra:  # one row per (aug, extra axes) combination
    df["row"] = _panel_label(df, [a for a in ("aug", *extra) if a in df])
    row = "row"
  n_bs = df["batch_size"].nunique() if "batch_size" in df else 1
  layered = alt.layer(lines, points, data=alt.Data(name="curves")).properties(
      width=max(180, min(320, 900 // max(1, n_bs))), height=180)
  facet = {"column": alt.Column("batch_size:O", title="batch size")}
  if row:  # rows labelled "aug=0.5" (a bare value stood beside the axis title)
    facet["row"] = alt.Row(f"{row}:N", title=None, header=alt.Header(
        labelExpr="'aug=' + datum.value" if row == "aug" else "datum.value"))
  return _with_data(layered.facet(**facet), "curves", df)


def _cell(v) -> tuple[str, str]:
  """(display text, sort key) of a table cell."""
  if v is None or (isinstance(v, float) and not np.isfinite(v)):
    return "", ""
  if isinstance(v, (float, np.floating)):
    return f"{v:.4g}", repr(float(v))
  if isinstance(v, (bool, np.bool_)):
    return str(bool(v)), str(int(v))
  if isinstance(v, (int, np.integer)):
    return str(v), str(int(v))
  return str(v), str(v)


def members_table_html(members: pd.DataFrame, axes: Sequence[str],
                       table_id: str = "members-table") -> str:
  """The members table with a text filter and sortable columns (inline JS, no library)."""
  cols = ["member", *[a for a in axes if a in members.columns],
          *[c for c in MEMBER_RESULT_COLUMNS if c in members.columns]]
  df = members[cols].copy()
  if "status" not in df:
    df.insert(len([c for c in cols if c in ("member", *axes)]), "status", _status(members))
  head = "".join(f"<th data-col='{i}' title='click to sort'>{html.escape(str(c))}</th>"
                 for i, c in enumerate(df.columns))
  rows = []
  for rec in df.itertuples(index=False):
    cells = []
    for v in rec:
      text, key = _cell(v)
      cells.append(f"<td data-v='{html.escape(key, quote=True)}'>{html.escape(text)}</td>")
    rows.append("<tr>" + "".join(cells) + "</tr>")
  tid = html.escape(table_id)
  return (
      f"<div class='members'><input type='search' id='{tid}-filter' "
      f"placeholder='filter rows, e.g. diverged or 0.02 (all words must match)' size='50'>"
      f" <span id='{tid}-count' class='note'></span>"
      f"<div class='scroll'><table id='{tid}' class='sortable'><thead><tr>{head}</tr></thead>"
      f"<tbody>{''.join(rows)}</tbody></table></div></div>"
      f"<script>{_TABLE_JS.replace('__ID__', json.dumps(table_id))}</script>")


_TABLE_JS = r"""
(function(){
  const table = document.getElementById(__ID__);
  const input = document.getElementById(__ID__ + "-filter");
  const count = document.getElementById(__ID__ + "-count");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const text = rows.map(r => r.textContent.toLowerCase() + " " +
      Array.from(r.cells).map(c => c.textContent.toLowerCase()).join(" "));
  function filter(){
    const words = input.value.toLowerCase().split(/\s+/).filter(w => w);
    let shown = 0;
    rows.forEach((r, i) => {
      const ok = words.every(w => text[i].includes(w));
      r.style.display = ok ? "" : "none"; shown += ok;
    });
    count.textContent = shown + " of " + rows.length + " members";
  }
  input.addEventListener("input", filter);
  let sortCol = -1, asc = true;
  table.tHead.querySelectorAll("th").forEach(th => th.addEventListener("click", () => {
    const c = +th.dataset.col;
    asc = (c === sortCol) ? !asc : true; sortCol = c;
    const key = r => r.cells[c].dataset.v;
    const sorted = rows.slice().sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === "" || y === "") return (x === "") - (y === "");  // blanks last
      const nx = Number(x), ny = Number(y);
      const d = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? d : -d;
    });
    sorted.forEach(r => body.appendChild(r));
    table.tHead.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
  }));
  filter();
})();
"""

_EMBED_JS = r"""
document.querySelectorAll("script.vl-spec").forEach(function(s){
  const el = document.getElementById(s.dataset.target);
  vegaEmbed(el, JSON.parse(s.textContent), {actions: false, renderer: "canvas"})
    .then(function(r){ (window.lrjaxViews = window.lrjaxViews || {})[el.id] = r.view;
                       el.dataset.rendered = "1"; })
    .catch(function(e){
      el.dataset.rendered = "error";
      el.textContent = "could not draw this chart: " + e;
      console.error(e);
    });
});
"""


def _json_script(spec: dict) -> str:
  # JSON inside <script>: escape "</" so no string can close the tag.
  return json.dumps(spec, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def charts_html(charts: Sequence[tuple[str, str, dict]]) -> str:
  """Containers and inline JSON specs for ``(id, caption, spec)`` charts (see `scripts_html`)."""
  parts = []
  for cid, caption, spec in charts:
    cid = html.escape(cid)
    parts.append(f"<figure class='vl'><div id='{cid}' class='vl-chart'></div>"
                 f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                 f"<script type='application/json' class='vl-spec' data-target='{cid}'>"
                 f"{_json_script(spec)}</script>")
  return "\n".join(parts)


def scripts_html() -> str:
  """The inlined vega bundle and the script drawing every chart of `charts_html`.

  Goes at the end of the page's body, after all chart containers.
  """
  return f"<script>{javascript_bundle()}</script>\n<script>{_EMBED_JS}</script>"
