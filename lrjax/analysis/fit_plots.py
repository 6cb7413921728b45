"""Figures of the estimates: best LR vs batch size, steps to target, noise scale.

Each draws tables the estimators return (`lrjax.analysis.optima`,
`lrjax.analysis.critical_batch`, `lrjax.analysis.noise_scale`) with their intervals;
like `lrjax.analysis.plots` they use `matplotlib.figure.Figure` directly and write one
PNG each.
"""
from __future__ import annotations


import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from lrjax.analysis.plots import plain_log_labels, save_figure


def _palette(n: int):
  cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
  return lambda k: cmap(k if n <= 10 else k / max(n - 1, 1))


def _panels(table: pd.DataFrame, first_stat: str) -> list[tuple[str, pd.DataFrame]]:
  """Splits a table by its extra axes (the columns before ``first_stat`` other than
  batch_size and aug): one panel per combination."""
  extra = [c for c in table.columns[:list(table.columns).index(first_stat)]
           if c not in ("batch_size", "aug")]
  if not extra:
    return [("", table)]
  return [(", ".join(f"{c} {v}" for c, v in zip(extra, key if isinstance(key, tuple)
                                                  else (key,))), g)
          for key, g in table.groupby(extra, sort=True, dropna=False)]


def _interval_bars(ax, x, lo, hi, color) -> None:
  """Vertical bars from lo to hi with caps (an interval need not contain its estimate)."""
  ax.vlines(x, lo, hi, color=color, alpha=0.7, linewidth=1.2)
  ax.plot(np.r_[x, x], np.r_[lo, hi], "_", color=color, alpha=0.7, ms=7, mew=1.2)


def _empty(ax, text: str) -> None:
  ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11,
          color="0.3")
  ax.set_xticks([])
  ax.set_yticks([])


def _group_columns(table: pd.DataFrame, first_stat: str) -> list[str]:
  cols = list(table.columns)
  return cols[:cols.index(first_stat)] if first_stat in cols else []


def _match(df: pd.DataFrame, row: pd.Series, cols) -> pd.DataFrame:
  keep = np.ones(len(df), bool)
  for c in cols:
    if c in df.columns:
      keep &= (df[c] == row[c]).to_numpy()
  return df[keep]


def best_lr_vs_batch(best: pd.DataFrame, scaling: pd.DataFrame, band: pd.DataFrame,
                     path: str = "best_lr_vs_batch.png") -> str:
  """Log-log best LR vs batch size per aug, with intervals, the fit and reference rules.

  Points are `lrjax.analysis.optima.best_lr` estimates with their 95% intervals as
  bars; hollow points are optima at the edge of the LR grid (bounds, left out of the
  fit). The fitted line and its band come from `optima.scaling_band`; its legend
  entry gives the exponent with interval and verdict. The dashed and dotted grey
  lines are the linear (slope 1) and square-root (slope 1/2) rules, through the
  first batch size's best LR. One panel per setting of any extra axes.

  Args:
    best: `optima.best_lr` output.
    scaling: `optima.scaling_exponent` output.
    band: `optima.scaling_band` output.
    path: the PNG to write.

  Returns:
    ``path``.

  Example:
    >>> import os, tempfile
    >>> from lrjax.analysis import optima, synthetic
    >>> t = synthetic.synthetic_members(batch_sizes=(32, 64, 128))
    >>> p = best_lr_vs_batch(optima.best_lr(t, n_boot=50), optima.scaling_exponent(t, n_boot=50),
    ...                      optima.scaling_band(t, n_boot=50), tempfile.mktemp(suffix=".png"))
    >>> os.path.getsize(p) > 1000
    True
  """
  panels = _panels(best, "best_lr")
  fig = Figure(figsize=(min(5.6 * len(panels) + 0.8, 28), 4.6), layout="constrained")
  axs = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
  bss = np.sort(best["batch_size"].unique())
  augs = np.sort(best["aug"].unique())
  color_of = _palette(len(augs))
  for ax, (title, table) in zip(axs, panels):
    ax.set_xlabel("batch size")
    ax.set_ylabel("best learning rate")
    ax.set_title(f"best LR vs batch size{': ' + title if title else ''}", fontsize=10)
    ok = table[np.isfinite(table["best_lr"].to_numpy(float))]
    if ok.empty:
      _empty(ax, "no usable LR:\nno best LR to plot")
      continue
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ys = [ok["best_lr"].to_numpy(float)]
    for k, aug in enumerate(augs):
      g = ok[ok["aug"] == aug].sort_values("batch_size")
      if g.empty:
        continue
      # Nudge each aug sideways a little so coinciding points stay visible.
      nudge = 2.0 ** (0.05 * (k - (len(augs) - 1) / 2))
      ys += _plot_best_lrs(ax, g, nudge, color_of(k), scaling, band)
    _reference_rules(ax, ok, bss)
    if ok["edge"].astype(bool).any():
      ax.plot([], [], "o", mfc="white", mec="0.3", label="at grid edge (a bound; not fitted)")
    _finish_best_lr_axes(ax, bss, np.concatenate(ys))
  return save_figure(fig, path)


def _finish_best_lr_axes(ax, bss: np.ndarray, ys: np.ndarray) -> None:
  """Ticks at the batch sizes, a y range holding every value in ``ys``, the legend."""
  ax.set_xlim(bss[0] / 1.5, bss[-1] * 1.5)
  ax.set_xticks(bss, [str(int(b)) for b in bss])
  ax.xaxis.set_minor_locator(ticker.NullLocator())
  v = ys[np.isfinite(ys) & (ys > 0)]
  ax.set_ylim(v.min() / 1.8, v.max() * 1.8)  # explicit, so a single point gets a range
  plain_log_labels(ax.yaxis)
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=7, loc="best")


def _plot_best_lrs(ax, g: pd.DataFrame, nudge: float, color, scaling: pd.DataFrame,
                   band: pd.DataFrame) -> list[np.ndarray]:
  """One aug level's best LRs with interval bars and its fitted line; returns the bounds
  drawn (for the y range)."""
  y = g["best_lr"].to_numpy(float)
  x = g["batch_size"].to_numpy(float) * nudge
  lo, hi = g["best_lr_lo"].to_numpy(float), g["best_lr_hi"].to_numpy(float)
  has = np.isfinite(lo) & np.isfinite(hi)
  drawn = []
  if has.any():
    _interval_bars(ax, x[has], lo[has], hi[has], color)
    drawn = [lo[has], hi[has]]
  label = f"aug {g['aug'].iloc[0]:g}" + _scaling_line(ax, g.iloc[0], scaling, band, color)
  edge = g["edge"].to_numpy(bool)
  ax.plot(x[~edge], y[~edge], "o", color=color, ms=7, label=label)
  ax.plot(x[edge], y[edge], "o", mfc="white", mec=color, mew=1.8, ms=7,
          label=None if (~edge).any() else label)
  return drawn


def _scaling_line(ax, row: pd.Series, scaling: pd.DataFrame, band: pd.DataFrame,
                  color) -> str:
  """Draws the fitted line and band of ``row``'s group; returns its legend text."""
  fit = _match(scaling, row, _group_columns(scaling, "alpha"))
  if not (len(fit) and np.isfinite(fit["alpha"].iloc[0])):
    return ": no fit (need ≥ 2 interior optima)"
  f = fit.iloc[0]
  ci = (f" [{f['alpha_lo']:.2f}, {f['alpha_hi']:.2f}]" if np.isfinite(f["alpha_lo"])
        else " (no interval)")
  line = _match(band, f, _group_columns(scaling, "alpha"))
  line = line.sort_values("batch_size")
  ax.plot(line["batch_size"], line["lr"], color=color, lw=1.5)
  if np.isfinite(line["lr_lo"].to_numpy(float)).any():
    ax.fill_between(line["batch_size"], line["lr_lo"], line["lr_hi"], color=color,
                    alpha=0.15, linewidth=0)
  return f": α = {f['alpha']:.2f}{ci}, {f['verdict']}"


def _reference_rules(ax, ok: pd.DataFrame, bss: np.ndarray) -> None:
  """The linear and sqrt rules through the smallest batch size's (geometric mean) best LR."""
  if len(bss) > 1:
    b0 = ok[ok["batch_size"] == ok["batch_size"].min()]
    y0 = float(np.exp(np.mean(np.log(b0["best_lr"].to_numpy(float)))))
    x0 = float(b0["batch_size"].iloc[0])
    xs = np.geomspace(bss[0], bss[-1], 50)
    ax.plot(xs, y0 * xs / x0, ls="--", color="0.45", lw=1, label="linear rule (slope 1)")
    ax.plot(xs, y0 * np.sqrt(xs / x0), ls=":", color="0.45", lw=1.3,
            label="sqrt rule (slope 1/2)")
  else:
    ax.text(0.5, 0.04, "one batch size: no scaling fit", ha="center",
            transform=ax.transAxes, fontsize=8, color="0.4")


def steps_to_target(best_steps: pd.DataFrame, critical: pd.DataFrame,
                    target: float | None, path: str = "steps_to_target.png",
                    metric: str = "val_loss") -> str:
  """Fewest steps to a target vs batch size per aug, with the fitted B_crit curve.

  Points are `lrjax.analysis.critical_batch.best_steps_per_batch` estimates with
  their 95% intervals; the line is ``S = S_min (1 + B_crit / B)`` from
  `critical_batch.fit_critical_batch`, where it could be fitted. One panel per
  setting of any extra axes.

  Args:
    best_steps: `critical_batch.best_steps_per_batch` output.
    critical: `critical_batch.fit_critical_batch` output.
    target: the target level for the title; None when each group has its own (then
      taken from ``best_steps["target"]`` into the legend).
    path: the PNG to write.
    metric: the history column of the target.

  Returns:
    ``path``.

  Example:
    >>> import os, tempfile
    >>> b = np.array([16, 32, 64, 128])
    >>> s = pd.DataFrame({"lr": 0.1, "batch_size": b, "aug": 0.0, "seed": 0,
    ...                   "steps": 1000 * (1 + 100 / b)})
    >>> from lrjax.analysis import critical_batch as cb
    >>> p = steps_to_target(cb.best_steps_per_batch(s, n_boot=0),
    ...                     cb.fit_critical_batch(s, n_boot=0), 1.0,
    ...                     tempfile.mktemp(suffix=".png"))
    >>> os.path.getsize(p) > 1000
    True
  """
  panels = _panels(best_steps, "best_steps")
  fig = Figure(figsize=(min(5.4 * len(panels) + 0.8, 28), 4.4), layout="constrained")
  axs = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
  augs = np.sort(best_steps["aug"].unique())
  bss = np.sort(best_steps["batch_size"].unique())
  color_of = _palette(len(augs))
  for ax, (title, table) in zip(axs, panels):
    level = f" ≤ {target:.3g}" if target is not None else " target"
    ax.set_title(f"steps to {metric}{level}{': ' + title if title else ''}", fontsize=10)
    ax.set_xlabel("batch size")
    ax.set_ylabel("steps (updates), best LR")
    ok = table[np.isfinite(table["best_steps"].to_numpy(float))]
    if ok.empty:
      _empty(ax, "no batch size reaches the target")
      continue
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    for k, aug in enumerate(augs):
      g = ok[ok["aug"] == aug].sort_values("batch_size")
      if not g.empty:
        _plot_best_steps(ax, g, color_of(k), critical, target is None, bss)
    ax.set_xticks(bss, [str(int(b)) for b in bss])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    plain_log_labels(ax.yaxis)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best", title="S = S_min (1 + B_crit / B)", title_fontsize=7)
  return save_figure(fig, path)


def _plot_best_steps(ax, g: pd.DataFrame, color, critical: pd.DataFrame,
                     own_target: bool, bss: np.ndarray) -> None:
  """One aug level's best steps with interval bars and its fitted B_crit curve.

  ``own_target``: the group has its own target, named in the legend.
  """
  x, y = g["batch_size"].to_numpy(float), g["best_steps"].to_numpy(float)
  lo, hi = g["best_steps_lo"].to_numpy(float), g["best_steps_hi"].to_numpy(float)
  has = np.isfinite(lo) & np.isfinite(hi)
  if has.any():
    _interval_bars(ax, x[has], lo[has], hi[has], color)
  label = f"aug {g['aug'].iloc[0]:g}"
  if own_target and "target" in g.columns:
    label += f" (≤ {g['target'].iloc[0]:.3g})"
  fit = _match(critical, g.iloc[0], _group_columns(critical, "b_crit"))
  if len(fit) and np.isfinite(fit["b_crit"].iloc[0]):
    f = fit.iloc[0]
    ci = (f" [{f['b_crit_lo']:.3g}, {f['b_crit_hi']:.3g}]"
          if np.isfinite(f["b_crit_lo"]) or f["b_crit_lo"] == np.inf else "")
    label += f": B_crit ≈ {f['b_crit']:.3g}{ci}"
    xs = np.geomspace(bss[0], bss[-1], 60)
    ax.plot(xs, f["s_min"] * (1 + f["b_crit"] / xs), color=color, lw=1.4)
  else:
    label += ": B_crit not settled"
  ax.plot(x, y, "o", color=color, ms=6, label=label)


def noise_scale(curve: pd.DataFrame, path: str = "noise_scale.png") -> str:
  """The gradient noise scale over training per aug: median over members, quartile band.

  Args:
    curve: `lrjax.analysis.noise_scale.noise_scale_curve` output (by ``aug``).
    path: the PNG to write.

  Returns:
    ``path``.

  Example:
    >>> import os, tempfile
    >>> c = pd.DataFrame({"aug": 0.0, "examples_seen": [10, 20], "median": [5.0, 9.0],
    ...                   "q25": [4.0, 8.0], "q75": [6.0, 10.0], "n_members": 3})
    >>> os.path.getsize(noise_scale(c, tempfile.mktemp(suffix=".png"))) > 1000
    True
  """
  fig = Figure(figsize=(6.2, 4.2), layout="constrained")
  ax = fig.subplots()
  ax.set_xlabel("examples seen")
  ax.set_ylabel("noise scale B_simple")
  ax.set_title("gradient noise scale during training (median over trained members, "
               "band: quartiles)", fontsize=9)
  ok = curve[np.isfinite(curve["median"].to_numpy(float))]
  if ok.empty:
    _empty(ax, "no finite noise scale")
    return save_figure(fig, path)
  positive = (ok["q25"] > 0).all()
  if positive:
    ax.set_yscale("log")
  augs = np.sort(ok["aug"].unique())
  color_of = _palette(len(augs))
  for k, aug in enumerate(augs):
    g = ok[ok["aug"] == aug].sort_values("examples_seen")
    ax.fill_between(g["examples_seen"], g["q25"], g["q75"], color=color_of(k), alpha=0.2,
                    linewidth=0)
    ax.plot(g["examples_seen"], g["median"], color=color_of(k), lw=1.5,
            marker="o" if len(g) <= 15 else None, ms=3, label=f"aug {aug:g}")
  ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
  if positive:
    plain_log_labels(ax.yaxis)
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=8)
  return save_figure(fig, path)


__all__ = ["best_lr_vs_batch", "noise_scale", "steps_to_target"]
