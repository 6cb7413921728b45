"""Figures of the raw results: metric heatmaps, training curves with seed bands, extra axes.

Figures are built on `matplotlib.figure.Figure` directly (never ``pyplot``), so no
global figure state leaks and no backend is switched: ``savefig`` renders with Agg.
Each function writes one PNG and returns its path. Figures of the estimates (best LR
vs batch size, steps to target, noise scale) are in `lrjax.analysis.fit_plots`.
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import cm, colors, ticker
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from lrjax.analysis import optima, stats, tables

DPI = 110
_ANNOTATE_MAX_CELLS = 96  # per panel; beyond this numbers become unreadable
# Cell marks: diverged dark with '//', failed grey with '..', slow (learned, far from
# converged: `lrjax.outcomes`) keeps its colour under an orange '--'.
DIVERGED_STYLE = dict(facecolor="0.28", edgecolor="0.05", hatch="//")
FAILED_STYLE = dict(facecolor="0.82", edgecolor="0.45", hatch="..")
SLOW_STYLE = dict(facecolor="none", edgecolor="#e66101", hatch="--")


def format_lr(x: float) -> str:
  """Short LR label: ``0.1``..``30`` plainly, ``1e-3``/``3.2e-4`` style otherwise.

  Example:
    >>> [format_lr(x) for x in (0.001, 0.0032, 0.1, 3.0, 1000.0)]
    ['1e-3', '3.2e-3', '0.1', '3', '1e3']
  """
  if not np.isfinite(x) or x <= 0:
    return f"{x:g}"
  if 0.1 <= x < 100:
    return f"{x:.2g}"
  e = math.floor(math.log10(x))
  m = round(x / 10 ** e, 1)
  if m >= 10:
    m, e = m / 10, e + 1
  return f"{m:g}e{e}"


def save_figure(fig: Figure, path: str) -> str:
  """Writes ``fig`` as a PNG at `DPI` to ``path``, creating its directory; returns ``path``.

  Example:
    >>> import tempfile
    >>> fig = Figure(figsize=(2, 1))
    >>> _ = fig.subplots().plot([0, 1], [0, 1])
    >>> p = save_figure(fig, os.path.join(tempfile.mkdtemp(), "new", "line.png"))
    >>> os.path.basename(p), os.path.getsize(p) > 500
    ('line.png', True)
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=DPI)
  return path


def _metric_style(metric: str, values: np.ndarray):
  """Colormap (bright = better) and norm shared by all panels."""
  minimise = stats.metric_mode(metric) == "min"
  cmap = matplotlib.colormaps["viridis_r" if minimise else "viridis"]
  finite = values[np.isfinite(values)]
  if finite.size == 0:
    return cmap, colors.Normalize(0.0, 1.0)
  lo, hi = float(finite.min()), float(finite.max())
  if minimise and lo > 0 and hi / lo > 20:
    return cmap, colors.LogNorm(lo, hi)  # losses near divergence dwarf the good ones
  if hi == lo:  # one value: a small band around it, so its colour is mid-scale
    pad = 0.05 * (abs(lo) or 1.0)
    lo, hi = lo - pad, hi + pad
  return cmap, colors.Normalize(lo, hi)


def _best_grid_lr(members: pd.DataFrame, metric: str) -> pd.DataFrame:
  """Per (batch_size, aug): the grid LR with the best mean over seeds (no bootstrap).

  With extra axes, the setting with the best mean wins.
  """
  try:
    best = optima.best_lr(members, metric, n_boot=0)
  except Exception:  # noqa: BLE001 - an outline is a courtesy, never a failure
    return pd.DataFrame(columns=["batch_size", "aug", "grid_best_lr"])
  best = best[np.isfinite(best["best_metric"].to_numpy(float))]
  ascending = stats.metric_mode(metric) == "min"
  best = best.sort_values("best_metric", ascending=ascending, kind="stable")
  return best.groupby(["batch_size", "aug"], sort=True).head(1)


def heatmaps(members: pd.DataFrame, metric: str = "final_val_acc",
             path: str = "heatmap_val_acc.png",
             axes: Sequence[str] | None = None) -> str:
  """Heatmap of a metric over LR (x) by batch size (y), one panel per aug strength.

  A cell is the mean over seeds (best over any extra grid axes, as in
  `lrjax.analysis.tables.lr_cells`), annotated with ``mean ± std`` over seeds when
  there are two or more. Cells where every seed diverged are dark, hatched ``//``
  and marked "×"; cells where no seed learned (trained or slow) but some failed are
  grey, hatched ``..``; cells where only some seeds diverged or failed keep the
  survivors' colour under a thin hatch of the same kind. Cells with slow seeds
  (learned, far from converged: too small an LR, `lrjax.outcomes`) keep their colour
  under an orange ``--`` hatch. The best LR of each row (mean over seeds of
  ``metric``) is outlined in red. Member status comes from `stats.status_labels`.

  Args:
    members: the members table.
    metric: a members metric column.
    path: the PNG to write.
    axes: all grid axes; detected when None.

  Returns:
    ``path``.

  Example:
    >>> import tempfile
    >>> df = pd.DataFrame({"lr": [0.01, 0.1, 1.0], "batch_size": 32, "aug": 0.0,
    ...                    "seed": 0, "diverged": [False, False, True],
    ...                    "final_val_acc": [0.8, 0.9, np.nan]})
    >>> p = heatmaps(df, "final_val_acc", tempfile.mktemp(suffix=".png"))
    >>> os.path.getsize(p) > 1000
    True
  """
  members = tables.with_default_axes(members)
  cells = tables.lr_cells(members, metric, ("batch_size", "aug"), axes)
  best = _best_grid_lr(members, metric)
  lrs = np.sort(members["lr"].unique())
  bss = np.sort(members["batch_size"].unique())
  augs = np.sort(members["aug"].unique())
  n_seeds = members["seed"].nunique() if "seed" in members else 1
  cmap, norm = _metric_style(metric, cells["value"].to_numpy(float))
  style = _HeatmapStyle(lrs, bss, cmap, norm,
                        annotate=len(lrs) * len(bss) <= _ANNOTATE_MAX_CELLS,
                        with_spread=n_seeds >= 2)
  fig, axs = _heatmap_figure(style, len(augs))
  seen = set()
  for ax, aug in zip(axs, augs):
    seen |= _draw_cells(ax, cells[cells["aug"] == aug], style)
    _outline_best(ax, best[best["aug"] == aug], style)
    _label_panel(ax, aug, style)
  axs[0].set_ylabel("batch size")
  fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axs),
               label=metric.replace("_", " "), shrink=0.9)
  spread = ", ± std over seeds" if style.with_spread else ""
  fig.suptitle(f"{metric.replace('_', ' ')} (mean over {n_seeds} seed"
               f"{'s' if n_seeds != 1 else ''}{spread})", fontsize=10)
  _heatmap_legend(fig, seen)
  return save_figure(fig, path)


class _HeatmapStyle(NamedTuple):
  """What every panel of `heatmaps` shares."""
  lrs: np.ndarray       # sorted LRs: the columns
  bss: np.ndarray       # sorted batch sizes: the rows
  cmap: colors.Colormap
  norm: colors.Normalize
  annotate: bool        # write each cell's value (few enough cells to read them)
  with_spread: bool     # two or more seeds: the value has a ± std


def _heatmap_figure(style: _HeatmapStyle, n_augs: int):
  """The figure and its row of ``n_augs`` panels, sized to the cells they hold."""
  cell_w = 0.75 if style.with_spread else 0.55
  panel_w = cell_w * len(style.lrs) + 1.2
  panel_h = (0.5 if style.with_spread else 0.42) * len(style.bss) + 1.3
  fig = Figure(figsize=(min(max(panel_w * n_augs + 1.4, 5.5), 28),
                        max(panel_h, 2.6) + 0.7),
               layout="constrained")
  return fig, np.atleast_1d(fig.subplots(1, n_augs, sharey=True, squeeze=False)[0])


def _draw_cells(ax, cells: pd.DataFrame, style: _HeatmapStyle) -> set[str]:
  """Draws one panel's `lrjax.analysis.tables.lr_cells`; returns the marks it used."""
  at = lambda r: (int(np.searchsorted(style.bss, r.batch_size)),
                  int(np.searchsorted(style.lrs, r.lr)))
  grid = np.full((len(style.bss), len(style.lrs)), np.nan)
  for r in cells.itertuples():
    if _n_learned(r) > 0 or r.n_failed == 0:  # cells where none learned are drawn grey
      grid[at(r)] = r.value
  ax.imshow(np.ma.masked_invalid(grid), cmap=style.cmap, norm=style.norm, origin="lower",
            aspect="auto", interpolation="nearest")
  seen = set()
  for r in cells.itertuples():
    seen |= _mark_cell(ax, r, *at(r), style)
  return seen


def _n_learned(r) -> int:
  return int(r.n_trained) + int(r.n_slow)


def _mark_cell(ax, r, i: int, j: int, style: _HeatmapStyle) -> set[str]:
  """Marks cell (row i, column j) by the status of its seeds, or writes its value."""
  rect = lambda **kw: ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, linewidth=0, **kw))
  if r.n_diverged >= r.n:
    rect(**DIVERGED_STYLE)
    ax.text(j, i, "×", ha="center", va="center", fontsize=13, color="white",
            fontweight="bold")
    return {"diverged"}
  if _n_learned(r) == 0 and r.n_failed > 0:
    rect(**FAILED_STYLE)
    ax.text(j, i, "failed", ha="center", va="center", fontsize=6.5, color="0.2")
    return {"failed"}
  seen = set()
  if r.n_diverged:
    rect(facecolor="none", edgecolor=DIVERGED_STYLE["edgecolor"], hatch="//")
    seen.add("some diverged")
  if r.n_failed:
    rect(facecolor="none", edgecolor=FAILED_STYLE["edgecolor"], hatch="..")
    seen.add("some failed")
  if r.n_slow:
    rect(**SLOW_STYLE)
    seen.add("slow")
  if style.annotate and np.isfinite(r.value):
    rgba = style.cmap(style.norm(r.value))
    dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
    text = f"{r.value:.3g}"
    if style.with_spread and np.isfinite(r.std):
      text += f"\n±{r.std:.1g}"
    ax.text(j, i, text, ha="center", va="center", fontsize=6.5, linespacing=1.0,
            color="white" if dark else "black")
  return seen


def _outline_best(ax, best: pd.DataFrame, style: _HeatmapStyle) -> None:
  """Outlines in red the best grid LR of each row (`_best_grid_lr`)."""
  for r in best.itertuples():
    i = int(np.searchsorted(style.bss, r.batch_size))
    j = int(np.searchsorted(style.lrs, r.grid_best_lr))
    ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fill=False, edgecolor="red",
                           linewidth=2.0))


def _label_panel(ax, aug: float, style: _HeatmapStyle) -> None:
  lrs, bss = style.lrs, style.bss
  ax.set_xlim(-.5, len(lrs) - .5)
  ax.set_ylim(-.5, len(bss) - .5)
  ax.set_xticks(range(len(lrs)), [format_lr(x) for x in lrs],
                rotation=45 if len(lrs) > 5 else 0)
  ax.set_yticks(range(len(bss)), [f"{int(b)}" for b in bss])
  ax.set_xlabel("learning rate")
  ax.set_title(f"aug = {aug:g}")


def _heatmap_legend(fig: Figure, seen: set[str]) -> None:
  """The legend: the best-LR outline and each cell mark used (``seen``)."""
  handles = [Patch(fill=False, edgecolor="red", linewidth=2,
                   label="best LR per row (mean over seeds)")]
  if "diverged" in seen:
    handles.append(Patch(**DIVERGED_STYLE, label="× diverged (all seeds)"))
  if "failed" in seen:
    handles.append(Patch(**FAILED_STYLE, label="failed: did not learn (no seed learned)"))
  if "slow" in seen:
    handles.append(Patch(**{**SLOW_STYLE, "facecolor": "white"},
                         label="slow seeds: learned, far from converged (LR too small)"))
  if "some diverged" in seen:
    handles.append(Patch(facecolor="white", edgecolor=DIVERGED_STYLE["edgecolor"],
                         hatch="//", label="some seeds diverged"))
  if "some failed" in seen:
    handles.append(Patch(facecolor="white", edgecolor=FAILED_STYLE["edgecolor"],
                         hatch="..", label="some seeds failed"))
  fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3),
             fontsize=8, frameon=False)


def plain_log_labels(axis) -> None:
  """Labels a log axis ``0.5, 2, 3`` rather than ``5x10^-1`` (`format_lr`); minor labels too.

  Minor ticks are labelled as far as room allows: all of them over less than 0.8
  decades, 2 and 5 up to 2.5 decades, none beyond.

  Args:
    axis: a matplotlib ``Axis`` on a log scale (``ax.xaxis`` or ``ax.yaxis``).

  Example:
    >>> ax = Figure().subplots()
    >>> ax.set_yscale("log")
    >>> _ = ax.set_ylim(0.01, 1.0)
    >>> plain_log_labels(ax.yaxis)
    >>> ax.yaxis.get_major_formatter()(0.5, 0)
    '0.5'
  """
  fmt = ticker.FuncFormatter(lambda v, _: format_lr(v))
  axis.set_major_formatter(fmt)
  lo, hi = axis.get_view_interval()
  span = np.log10(hi / lo) if lo > 0 and hi > 0 else 3.0
  # Label minor ticks only as far as room allows: all of them, 2 and 5, or none.
  keep = (range(2, 10) if span < 0.8 else (2, 5) if span < 2.5 else ())

  def minor(v, _):
    mantissa = round(v / 10 ** math.floor(math.log10(v) + 1e-9)) if v > 0 else 0
    return format_lr(v) if mantissa in keep else ""
  axis.set_minor_formatter(ticker.FuncFormatter(minor))
  if span >= 0.8:  # fewer minor ticks: cheaper to lay out and less clutter
    axis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0) if span < 4 else ()))


def _setting_columns(members: pd.DataFrame) -> list[str]:
  """The axes that define one hyperparameter setting: every grid axis but seed."""
  return ["lr", "batch_size", "aug", *stats.extra_axes(members)]


def seed_bands(history: pd.DataFrame, members: pd.DataFrame, metric: str) -> pd.DataFrame:
  """Per hyperparameter setting and evaluation: mean, min and max of a metric over seeds.

  Non-finite values (after a divergence) are left out; ``n`` counts the seeds with a
  finite value, ``n_seeds`` the setting's seeds, ``diverged`` / ``failed`` whether any
  seed diverged / failed (status column, else the ``diverged`` flag).

  Args:
    history: the history table.
    members: the members table.
    metric: a history column.

  Returns:
    One row per (setting, ``examples_seen``): the setting columns, ``mean``, ``lo``,
    ``hi``, ``n``, ``n_seeds``, ``diverged``, ``failed``.

  Example:
    >>> m = pd.DataFrame({"member": [0, 1], "lr": 0.1, "batch_size": 32, "seed": [0, 1],
    ...                   "diverged": False})
    >>> h = pd.DataFrame({"member": [0, 1], "examples_seen": 64, "val_loss": [1.0, 2.0]})
    >>> seed_bands(h, m, "val_loss")[["mean", "lo", "hi", "n"]].values.tolist()
    [[1.5, 1.0, 2.0, 2.0]]
  """
  members = tables.with_default_axes(members)
  setting = _setting_columns(members)
  status = stats.status_labels(members)
  info = members[["member", *setting]].assign(_div=status == "diverged",
                                              _fail=status == "failed")
  df = history[["member", "examples_seen", metric]].merge(info, on="member", how="inner")
  df = df.assign(_v=df[metric].where(np.isfinite(df[metric].to_numpy(float))).astype(float))
  g = df.groupby([*setting, "examples_seen"], sort=True, dropna=False)
  out = g["_v"].agg(mean="mean", lo="min", hi="max", n="count").reset_index()
  per_setting = info.groupby(setting, dropna=False).agg(n_seeds=("member", "size"),
                                                        diverged=("_div", "any"),
                                                        failed=("_fail", "any"))
  out["n"] = out["n"].astype(float)
  return out.merge(per_setting.reset_index(), on=setting, how="left")


def training_curves(history: pd.DataFrame, members: pd.DataFrame,
                    path: str = "curves_val_loss.png", metric: str = "val_loss") -> str:
  """A history metric vs examples seen: a row per aug, a column per batch size.

  One line per hyperparameter setting (every grid axis but seed): the mean over
  seeds, with a band from the lowest to the highest seed when there are several.
  Lines are coloured by LR on a log colour scale; settings where some seed diverged
  are dashed and end with an "×" at their last finite evaluation; settings where
  some seed failed (did not learn) are dotted.

  Args:
    history: the history table.
    members: the members table (for each member's hyperparameters).
    path: the PNG to write.
    metric: a history column, e.g. ``"val_loss"``, ``"val_acc"``, ``"train_loss"``.

  Returns:
    ``path``.

  Example:
    >>> import tempfile
    >>> m = pd.DataFrame({"member": [0, 1], "lr": [0.1, 1.0], "batch_size": 32,
    ...                   "aug": 0.0, "diverged": [False, True]})
    >>> h = pd.DataFrame({"member": [0, 0, 1, 1], "examples_seen": [0, 100] * 2,
    ...                   "val_loss": [2.3, 0.5, 2.3, np.nan]})
    >>> os.path.getsize(training_curves(h, m, tempfile.mktemp(suffix=".png"))) > 1000
    True
  """
  members = tables.with_default_axes(members)
  bands = seed_bands(history, members, metric)
  n_seeds = int(members["seed"].nunique())
  setting = _setting_columns(members)
  bss, augs = np.sort(members["batch_size"].unique()), np.sort(members["aug"].unique())
  lrs = np.sort(members["lr"].unique())
  lr_norm = (colors.LogNorm(lrs[0], lrs[-1]) if len(lrs) > 1 and lrs[0] > 0
             else colors.Normalize(lrs[0] * 0.5, lrs[0] * 1.5 + 1e-12))
  cmap = matplotlib.colormaps["viridis"]  # the interactive curves' LR scale too
  fig = Figure(figsize=(min(3.3 * len(bss) + 1.5, 28), 2.6 * len(augs) + 1.0),
               layout="constrained")
  axs = fig.subplots(len(augs), len(bss), sharex=True, sharey=True, squeeze=False)
  finite = bands["mean"].to_numpy(float)
  finite = finite[np.isfinite(finite)]
  log_y = "loss" in metric and finite.size > 0 and finite.min() > 0
  panel = {(a, b): (ia, ib) for ia, a in enumerate(augs) for ib, b in enumerate(bss)}
  _draw_curves(axs, bands, setting, panel, lambda lr: cmap(lr_norm(lr)), n_seeds)
  x_max = float(bands["examples_seen"].max()) if len(bands) else 1.0
  _label_curve_panels(axs, panel, metric, log_y, x_max)
  _curves_y_range(axs[0, 0], bands, setting, metric, finite, log_y)
  _lr_colorbar(fig, axs, cm.ScalarMappable(norm=lr_norm, cmap=cmap), lrs)
  over = (f"mean over {n_seeds} seeds, band: lowest to highest seed" if n_seeds > 1
          else "one seed")
  fig.suptitle(f"{metric.replace('_', ' ')} during training ({over})", fontsize=10)
  _curves_legend(fig, bands, n_seeds)
  return save_figure(fig, path)


def _draw_curves(axs, bands: pd.DataFrame, setting: list[str], panel: dict, color_of,
                 n_seeds: int) -> None:
  """One line per setting in its (aug, batch size) panel, with its band over seeds."""
  n_evals = bands.groupby(setting, dropna=False).size().max() if len(bands) else 0
  marker = "o" if n_evals <= 15 else None  # few evaluations: mark every point
  polys = {p: ([], []) for p in panel.values()}  # one PolyCollection per panel: fast
  for key, g in bands.groupby(setting, sort=False, dropna=False):
    r = dict(zip(setting, key))
    where = panel[(r["aug"], r["batch_size"])]
    color = color_of(r["lr"])
    band = _seed_band(g) if n_seeds > 1 else None
    if band is not None:
      polys[where][0].append(band)
      polys[where][1].append(color)
    _plot_setting(axs[where], g, color, marker)
  for (a, b), (verts, face) in polys.items():
    if verts:
      axs[a, b].add_collection(PolyCollection(verts, facecolors=face, alpha=0.18,
                                              linewidths=0), autolim=False)


def _seed_band(g: pd.DataFrame) -> np.ndarray | None:
  """The polygon from the lowest to the highest seed of one setting; None if too short."""
  x = g["examples_seen"].to_numpy(float)
  lo, hi = g["lo"].to_numpy(float), g["hi"].to_numpy(float)
  both = np.isfinite(lo) & np.isfinite(hi)
  if both.sum() < 2:
    return None
  return np.r_[np.c_[x[both], lo[both]], np.c_[x[both], hi[both]][::-1]]


def _plot_setting(ax, g: pd.DataFrame, color, marker: str | None) -> None:
  """The mean line of one setting: dashed with a final × if a seed diverged, dotted if
  one failed."""
  diverged = bool(g["diverged"].iloc[0])
  failed = bool(g["failed"].iloc[0]) and not diverged
  x = g["examples_seen"].to_numpy(float)
  y = g["mean"].to_numpy(float)
  ax.plot(x, y, color=color, lw=1.2, alpha=0.9,
          ls="--" if diverged else ":" if failed else "-", marker=marker, ms=3)
  ok = np.isfinite(y)
  if diverged and ok.any():
    ax.plot(x[ok][-1], y[ok][-1], marker="x", ms=7, mew=2, color=color, ls="none")


def _label_curve_panels(axs, panel: dict, metric: str, log_y: bool, x_max: float) -> None:
  for (aug, bs), (a, b) in panel.items():
    ax = axs[a, b]
    ax.set_title(f"batch {int(bs)}, aug {aug:g}", fontsize=9)
    ax.grid(alpha=0.3, which="both" if log_y else "major")
    ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
    ax.set_xlim(0, x_max * 1.03)
    if a == axs.shape[0] - 1:
      ax.set_xlabel("examples seen")
    if b == 0:
      ax.set_ylabel(metric.replace("_", " "))


def _curves_y_range(ax, bands: pd.DataFrame, setting: list[str], metric: str,
                    finite: np.ndarray, log_y: bool) -> None:
  """The shared y axis: log for positive losses (clipped above), [0, 1] for fractions."""
  if log_y:
    ax.set_yscale("log")
    # Clip exploding losses of diverging members: up to 2x the worst starting loss.
    first = bands.sort_values("examples_seen").groupby(setting, dropna=False)["mean"].first()
    first = first[np.isfinite(first)]
    top = 2.0 * float(first.max()) if not first.empty else float(finite.max())
    ax.set_ylim(float(finite.min()) * 0.8, max(top, float(finite.min()) * 1.5))
    plain_log_labels(ax.yaxis)
  elif "loss" not in metric and finite.size and finite.min() >= 0 and finite.max() <= 1:
    ax.set_ylim(0, 1.02)


def _lr_colorbar(fig: Figure, axs, mappable: cm.ScalarMappable, lrs: np.ndarray) -> None:
  """The LR colour scale, ticked at the grid's LRs (at most ~8 of them)."""
  cbar = fig.colorbar(mappable, ax=axs.ravel().tolist(), label="learning rate",
                      shrink=min(0.9, 0.3 + 0.2 * axs.shape[0]))
  shown = lrs[::max(1, math.ceil(len(lrs) / 8))]
  cbar.ax.yaxis.set_minor_locator(ticker.NullLocator())
  cbar.set_ticks(shown, labels=[format_lr(x) for x in shown])


def _curves_legend(fig: Figure, bands: pd.DataFrame, n_seeds: int) -> None:
  handles = [Line2D([], [], color="0.3", label="every seed stable"),
             Line2D([], [], color="0.3", ls="--", marker="x",
                    label="some seed diverged (× = last finite mean)")]
  if bands["failed"].any():
    handles.append(Line2D([], [], color="0.3", ls=":", label="some seed failed (did not learn)"))
  if n_seeds > 1:
    handles.append(Patch(color="0.3", alpha=0.18, label="seed range"))
  fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
             frameon=False)


def metric_vs_lr_by_axis(members: pd.DataFrame, axis: str, metric: str = "final_val_acc",
                         path: str | None = None) -> str:
  """``metric`` vs LR, one line per value of an extra grid axis (e.g. ``schedule``).

  Mean over seeds; one panel per (aug, batch size). Diverged members count as
  missing, so a line stops where its LR diverged.

  Example:
    >>> import tempfile, os
    >>> df = pd.DataFrame({"lr": [0.1, 1.0] * 2, "batch_size": 32, "aug": 0.0, "seed": 0,
    ...                    "schedule": ["cosine"] * 2 + ["constant"] * 2,
    ...                    "diverged": False, "final_val_acc": [0.9, 0.8, 0.85, 0.5]})
    >>> p = metric_vs_lr_by_axis(df, "schedule", path=os.path.join(tempfile.mkdtemp(), "a.png"))
    >>> os.path.exists(p)
    True
  """
  path = path or f"by_{axis}_{metric}.png"
  df = members.copy()
  df.loc[df["diverged"].astype(bool), metric] = np.nan
  augs = sorted(df["aug"].unique()) if "aug" in df else [None]
  batches = sorted(df["batch_size"].unique())
  fig = Figure(figsize=(4.2 * len(batches), 3.4 * len(augs)), layout="constrained")
  axs = fig.subplots(len(augs), len(batches), squeeze=False)
  for r, aug in enumerate(augs):
    for c, batch in enumerate(batches):
      ax = axs[r][c]
      cell = df[(df["batch_size"] == batch) & ((df["aug"] == aug) if aug is not None else True)]
      for i, (value, rows) in enumerate(cell.groupby(axis, sort=True)):
        curve = rows.groupby("lr")[metric].mean()
        ax.plot(curve.index, curve.values, "o-", color=f"C{i % 10}", label=str(value), ms=4)
      ax.set_xscale("log")
      plain_log_labels(ax.xaxis)
      ax.set_xlabel("learning rate")
      ax.set_ylabel(metric.replace("_", " "))
      ax.set_title(f"batch {batch}" + (f", aug {aug:g}" if aug is not None else ""))
      ax.grid(alpha=0.3)
  axs[0][0].legend(title=axis, fontsize=8)
  return save_figure(fig, path)
