"""Figures for a run: metric heatmaps, training curves and best LR vs batch size.

Figures are built on `matplotlib.figure.Figure` directly (never ``pyplot``), so no
global figure state leaks and no backend is switched: ``savefig`` renders with Agg.
Each function writes one PNG and returns its path.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import cm, colors, ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from lrjax.analysis import tables

DPI = 110
_ANNOTATE_MAX_CELLS = 96  # per panel; beyond this numbers become unreadable


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


def _save(fig: Figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=DPI)
  return path


def _metric_style(metric: str, values: np.ndarray):
  """Colormap (bright = better) and norm shared by all panels."""
  minimise = tables.metric_mode(metric) == "min"
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


def heatmaps(members: pd.DataFrame, metric: str = "final_val_acc",
             path: str = "heatmap_val_acc.png",
             axes: Sequence[str] | None = None) -> str:
  """Heatmap of a metric over LR (x) by batch size (y), one panel per aug strength.

  Cells are means over seeds (best over any extra grid axes, as in
  `lrjax.analysis.lr_cells`). Cells where every seed diverged are grey, hatched and
  marked "×"; cells where some seeds diverged are hatched over their survivors' mean;
  the best stable LR of each row is outlined in red.

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
  best = tables.best_lr_table(members, metric, ("batch_size", "aug"), axes=axes)
  lrs = np.sort(members["lr"].unique())
  bss = np.sort(members["batch_size"].unique())
  augs = np.sort(members["aug"].unique())
  n_seeds = members["seed"].nunique() if "seed" in members else 1
  cmap, norm = _metric_style(metric, cells["value"].to_numpy(float))
  annotate = len(lrs) * len(bss) <= _ANNOTATE_MAX_CELLS
  panel_w, panel_h = 0.55 * len(lrs) + 1.2, 0.42 * len(bss) + 1.3
  fig = Figure(figsize=(min(max(panel_w * len(augs) + 1.4, 5.5), 28),
                        max(panel_h, 2.6) + 0.5),
               layout="constrained")
  axs = np.atleast_1d(fig.subplots(1, len(augs), sharey=True, squeeze=False)[0])
  for ax, aug in zip(axs, augs):
    sub = cells[cells["aug"] == aug]
    grid = np.full((len(bss), len(lrs)), np.nan)
    state = np.zeros((len(bss), len(lrs)), int)  # 0 ok, 1 partial, 2 all diverged, 3 absent
    state[:] = 3
    for _, r in sub.iterrows():
      i, j = int(np.searchsorted(bss, r["batch_size"])), int(np.searchsorted(lrs, r["lr"]))
      grid[i, j] = r["value"]
      state[i, j] = 0 if r["stable"] else (2 if r["n_diverged"] >= r["n"] else 1)
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, origin="lower",
              aspect="auto", interpolation="nearest")
    for i in range(len(bss)):
      for j in range(len(lrs)):
        if state[i, j] == 2:
          ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, facecolor="0.82",
                                 edgecolor="0.45", hatch="///", linewidth=0))
          ax.text(j, i, "×", ha="center", va="center", fontsize=13, color="0.15",
                  fontweight="bold")
        elif state[i, j] == 1:
          ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, facecolor="none",
                                 edgecolor="0.6", hatch="///", linewidth=0))
        if annotate and state[i, j] in (0, 1) and np.isfinite(grid[i, j]):
          rgba = cmap(norm(grid[i, j]))
          dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
          ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=7.5,
                  color="white" if dark else "black")
    for _, r in best[best["aug"] == aug].iterrows():
      if np.isfinite(r["best_lr"]):
        i, j = int(np.searchsorted(bss, r["batch_size"])), int(np.searchsorted(lrs, r["best_lr"]))
        ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fill=False, edgecolor="red",
                               linewidth=2.0))
    ax.set_xticks(range(len(lrs)), [format_lr(x) for x in lrs],
                  rotation=45 if len(lrs) > 5 else 0)
    ax.set_yticks(range(len(bss)), [f"{int(b)}" for b in bss])
    ax.set_xlabel("learning rate")
    ax.set_title(f"aug = {aug:g}")
  axs[0].set_ylabel("batch size")
  fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axs),
               label=metric.replace("_", " "), shrink=0.9)
  fig.suptitle(f"{metric.replace('_', ' ')} (mean over {n_seeds} seed"
               f"{'s' if n_seeds != 1 else ''})", fontsize=10)
  fig.legend(handles=[
      Patch(fill=False, edgecolor="red", linewidth=2, label="best stable LR per row"),
      Patch(facecolor="0.82", edgecolor="0.45", hatch="///", label="× all seeds diverged"),
      Patch(facecolor="white", edgecolor="0.6", hatch="///", label="some seeds diverged"),
  ], loc="outside lower center", ncol=3, fontsize=8, frameon=False)
  return _save(fig, path)


def _plain_log_labels(axis) -> None:
  """Labels a log axis ``0.5, 2, 3`` rather than ``5x10^-1``; minor labels too."""
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


def training_curves(history: pd.DataFrame, members: pd.DataFrame,
                    path: str = "curves_val_loss.png", metric: str = "val_loss") -> str:
  """A history metric vs examples seen: a row per aug, a column per batch size.

  Lines are coloured by LR on a log colour scale; diverged members are dashed and end
  with an "×" at their last finite evaluation.

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
  info = members[["member", "lr", "batch_size", "aug", "diverged"]].assign(
      diverged_at=members["diverged_at"] if "diverged_at" in members else np.nan)
  df = history[["member", "examples_seen", metric]].merge(info, on="member", how="inner")
  bss, augs = np.sort(members["batch_size"].unique()), np.sort(members["aug"].unique())
  lrs = np.sort(members["lr"].unique())
  lr_norm = (colors.LogNorm(lrs[0], lrs[-1]) if len(lrs) > 1 and lrs[0] > 0
             else colors.Normalize(lrs[0] * 0.5, lrs[0] * 1.5 + 1e-12))
  cmap = matplotlib.colormaps["plasma"]
  fig = Figure(figsize=(min(3.3 * len(bss) + 1.5, 28), 2.6 * len(augs) + 1.0),
               layout="constrained")
  axs = fig.subplots(len(augs), len(bss), sharex=True, sharey=True, squeeze=False)
  values = df[metric].to_numpy(float)
  finite = values[np.isfinite(values)]
  is_loss = "loss" in metric
  log_y = is_loss and finite.size > 0 and finite.min() > 0
  # With few evaluations, lines are too short to see: mark every point.
  marker = "o" if len(df) == 0 or df.groupby("member").size().max() <= 15 else None
  x_max = float(df["examples_seen"].max()) if len(df) else 1.0
  for (a, aug), (b, bs) in ((x, y) for x in enumerate(augs) for y in enumerate(bss)):
    ax = axs[a, b]
    sub = df[(df["aug"] == aug) & (df["batch_size"] == bs)]
    for _, g in sub.groupby("member", sort=False):
      g = g.sort_values("examples_seen")
      diverged = bool(g["diverged"].iloc[0])
      color = cmap(lr_norm(g["lr"].iloc[0]))
      ax.plot(g["examples_seen"], g[metric], color=color, lw=1.2, alpha=0.85,
              ls="--" if diverged else "-", marker=marker, ms=3)
      last = g[np.isfinite(g[metric].to_numpy(float))].tail(1)
      if diverged and not last.empty:
        ax.plot(last["examples_seen"], last[metric], marker="x", ms=7, mew=2,
                color=color, ls="none")
      elif diverged and np.isfinite(g["diverged_at"].iloc[0]):
        # Diverged before its first evaluation: mark where, on the top edge.
        ax.plot(g["diverged_at"].iloc[0], 1.0, marker="x", ms=7, mew=2, color=color,
                transform=ax.get_xaxis_transform(), clip_on=False, ls="none")
    ax.set_title(f"batch {int(bs)}, aug {aug:g}", fontsize=9)
    ax.grid(alpha=0.3, which="both" if log_y else "major")
    ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
    ax.set_xlim(0, x_max * 1.03)
    if a == len(augs) - 1:
      ax.set_xlabel("examples seen")
    if b == 0:
      ax.set_ylabel(metric.replace("_", " "))
  if log_y:
    axs[0, 0].set_yscale("log")
    # Clip exploding losses of diverging members: up to 2x the worst starting loss.
    first = df.sort_values("examples_seen").groupby("member")[metric].first()
    first = first[np.isfinite(first)]
    top = 2.0 * float(first.max()) if not first.empty else float(finite.max())
    axs[0, 0].set_ylim(float(finite.min()) * 0.8, max(top, float(finite.min()) * 1.5))
    _plain_log_labels(axs[0, 0].yaxis)
  elif not is_loss and finite.size and finite.min() >= 0 and finite.max() <= 1:
    axs[0, 0].set_ylim(0, 1.02)
  cbar = fig.colorbar(cm.ScalarMappable(norm=lr_norm, cmap=cmap),
                      ax=axs.ravel().tolist(), label="learning rate",
                      shrink=min(0.9, 0.3 + 0.2 * len(augs)))
  # Tick the LRs actually in the grid (at most ~8 of them), nothing in between.
  shown = lrs[::max(1, math.ceil(len(lrs) / 8))]
  cbar.ax.yaxis.set_minor_locator(ticker.NullLocator())
  cbar.set_ticks(shown, labels=[format_lr(x) for x in shown])
  fig.suptitle(f"{metric.replace('_', ' ')} during training", fontsize=10)
  fig.legend(handles=[Line2D([], [], color="0.3", label="stable"),
                      Line2D([], [], color="0.3", ls="--", marker="x",
                             label="diverged (× = last finite eval)")],
             loc="outside lower center", ncol=2, fontsize=8, frameon=False)
  return _save(fig, path)


def best_lr_vs_batch(best_lrs: pd.DataFrame, fit: pd.DataFrame,
                     path: str = "best_lr_vs_batch.png") -> str:
  """Log-log best LR vs batch size per aug, with fitted and reference scaling lines.

  Error bars span the near-best LRs (``lr_lo``..``lr_hi``); hollow markers are best
  LRs at the edge of the LR grid (the true optimum may lie beyond). The reference
  lines (linear rule, slope 1; square-root rule, slope 1/2) start from the geometric
  mean best LR at the smallest batch size.

  Args:
    best_lrs: `lrjax.analysis.best_lr_table` output.
    fit: `lrjax.analysis.fit_lr_batch_scaling` output.
    path: the PNG to write.

  Returns:
    ``path``.

  Example:
    >>> import tempfile
    >>> t = pd.DataFrame({"batch_size": [32, 64, 128], "aug": 0.0,
    ...                   "best_lr": [0.01, 0.02, 0.04]})
    >>> fit = tables.fit_lr_batch_scaling(t)
    >>> os.path.getsize(best_lr_vs_batch(t, fit, tempfile.mktemp(suffix=".png"))) > 1000
    True
  """
  fig = Figure(figsize=(6.2, 4.4), layout="constrained")
  ax = fig.subplots()
  ok = best_lrs[np.isfinite(best_lrs["best_lr"].to_numpy(float))
                & (best_lrs["best_lr"] > 0)]
  bss = np.sort(best_lrs["batch_size"].unique())
  ax.set_xlabel("batch size")
  ax.set_ylabel("best learning rate")
  ax.set_title("best LR vs batch size", fontsize=10)
  if ok.empty:
    ax.text(0.5, 0.5, "no stable members:\nno best LR to plot", ha="center",
            va="center", transform=ax.transAxes, fontsize=11, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  augs = np.sort(ok["aug"].unique())
  palette = matplotlib.colormaps["tab10" if len(augs) <= 10 else "viridis"]
  fits = fit.set_index("aug") if "aug" in fit.columns else pd.DataFrame()
  xs = np.geomspace(bss[0], bss[-1], 50) if len(bss) > 1 else bss.astype(float)
  for k, aug in enumerate(augs):
    color = palette(k if len(augs) <= 10 else k / max(len(augs) - 1, 1))
    g = ok[ok["aug"] == aug].sort_values("batch_size")
    y = g["best_lr"].to_numpy(float)
    # Nudge each aug sideways a little so coinciding points stay visible.
    x = g["batch_size"].to_numpy(float) * 2.0 ** (0.05 * (k - (len(augs) - 1) / 2))
    if {"lr_lo", "lr_hi"} <= set(g.columns):
      yerr = np.vstack([y - g["lr_lo"].to_numpy(float), g["lr_hi"].to_numpy(float) - y])
      ax.errorbar(x, y, yerr=np.nan_to_num(yerr), fmt="none", ecolor=color, alpha=0.5,
                  capsize=3)
    edge = (g["edge"] != "").to_numpy() if "edge" in g.columns else np.zeros(len(g), bool)
    label = f"aug {aug:g}"
    if aug in fits.index and np.isfinite(fits.loc[aug, "slope"]):
      f = fits.loc[aug]
      se = f"±{f['slope_se']:.2f}" if np.isfinite(f["slope_se"]) else ""
      label += f": slope {f['slope']:.2f}{se}"
      ax.plot(xs, np.exp(f["intercept"]) * xs ** f["slope"], color=color, lw=1.5)
    ax.plot(x[~edge], y[~edge], "o", color=color, ms=7, label=label)
    ax.plot(x[edge], y[edge], "o", mfc="white", mec=color, mew=1.8, ms=7,
            label=None if (~edge).any() else label)
  ref_ends = []
  if len(bss) > 1:
    b0 = ok[ok["batch_size"] == ok["batch_size"].min()]
    y0 = float(np.exp(np.mean(np.log(b0["best_lr"].to_numpy(float)))))
    x0 = float(b0["batch_size"].iloc[0])
    ax.plot(xs, y0 * xs / x0, ls="--", color="0.45", lw=1, label="linear rule (slope 1)")
    ax.plot(xs, y0 * np.sqrt(xs / x0), ls=":", color="0.45", lw=1.3,
            label="sqrt rule (slope 1/2)")
    ref_ends = [y0 * xs[-1] / x0, y0 * xs[0] / x0]
  else:
    ax.text(0.5, 0.04, "one batch size: no scaling fit", ha="center",
            transform=ax.transAxes, fontsize=8, color="0.4")
  if ok["edge"].ne("").any() if "edge" in ok.columns else False:
    ax.plot([], [], "o", mfc="white", mec="0.3", label="best LR at grid edge")
  ax.set_xlim(bss[0] / 1.5, bss[-1] * 1.5)
  ax.set_xticks(bss, [str(int(b)) for b in bss])
  ax.xaxis.set_minor_locator(ticker.NullLocator())
  lrs = ok[["best_lr", "lr_lo", "lr_hi"] if "lr_lo" in ok else ["best_lr"]].to_numpy(float)
  lo, hi = np.nanmin(lrs), np.nanmax(lrs)
  # Show the reference lines' ends too, unless they run far off the data.
  lo, hi = min([lo, *ref_ends, lo]), max([hi, *ref_ends])
  lo, hi = max(lo, np.nanmin(lrs) / 30), min(hi, np.nanmax(lrs) * 30)
  ax.set_ylim(lo / 1.6, hi * 1.6)  # explicit, so a single point still gets a range
  _plain_log_labels(ax.yaxis)
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=8, loc="best")
  return _save(fig, path)


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
      _plain_log_labels(ax.xaxis)
      ax.set_xlabel("learning rate")
      ax.set_ylabel(metric.replace("_", " "))
      ax.set_title(f"batch {batch}" + (f", aug {aug:g}" if aug is not None else ""))
      ax.grid(alpha=0.3)
  axs[0][0].legend(title=axis, fontsize=8)
  return _save(fig, path)
