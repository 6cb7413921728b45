"""Tests for lrjax.analysis.plots and fit_plots: every figure renders a valid PNG, on awkward
grids too."""
import numpy as np
import pytest
from matplotlib import image

from lrjax import analysis
from lrjax.analysis import fit_plots, plots
from lrjax.analysis.synthetic import synthetic_run

LRS = tuple(0.01 * 2.0 ** k for k in range(-2, 5))


def _assert_png(path, min_w=300, min_h=150):
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  img = image.imread(path)
  h, w = img.shape[:2]
  assert w >= min_w and h >= min_h, (w, h)
  assert w <= 4000 and h <= 4000, (w, h)
  assert img[..., :3].std() > 0.01  # not a blank canvas


def _all_figures(run, tmp_path, curve_metrics=("val_loss", "val_acc")):
  members, history = run.members, run.history
  e = analysis.estimate(members, history, n_boot=50)
  paths = [
      plots.heatmaps(members, "final_val_acc", str(tmp_path / "heatmap_val_acc.png")),
      plots.heatmaps(members, "final_val_loss", str(tmp_path / "heatmap_val_loss.png")),
      *[plots.training_curves(history, members, str(tmp_path / f"c_{m}.png"), m)
        for m in curve_metrics],
      fit_plots.best_lr_vs_batch(e.best_lr, e.scaling, e.scaling_band,
                                 str(tmp_path / "best.png")),
  ]
  if e.best_steps is not None:
    paths.append(fit_plots.steps_to_target(e.best_steps, e.critical_batch, e.target,
                                           str(tmp_path / "steps.png")))
  return paths


# Only the full-grid report test draws val_acc curves too: same code path, and figures
# cost ~0.5 s each on a small CPU.
def test_figures_written_partial_divergence_extra_axis(tmp_path):
  run = synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0, 1.0), seeds=(0, 1),
                      extra_axes={"momentum": (0.0, 0.9)})
  m = run.members.copy()
  flip = (m["seed"] == 1) & (m["lr"] == LRS[3])  # some seeds of one LR diverge
  m.loc[flip, "diverged"] = True
  m.loc[flip, "final_val_acc"] = np.nan
  assert m["diverged"].any() and not m["diverged"].all()
  for path in _all_figures(run._replace(members=m), tmp_path, ("val_loss",)):
    _assert_png(path)


@pytest.mark.parametrize("diverge_above", [1e-3, 1e9], ids=["all_diverged", "none_diverged"])
def test_figures_written_divergence_extremes(tmp_path, diverge_above):
  run = synthetic_run(lrs=LRS[:3], batch_sizes=(32, 64), augs=(0.0,), seeds=(0,),
                      diverge_above=diverge_above)
  assert run.members["diverged"].all() == (diverge_above < 1)
  assert run.members["diverged"].any() == (diverge_above < 1)
  for path in _all_figures(run, tmp_path, ("val_loss",)):
    _assert_png(path)


def test_figures_written_single_value_axes(tmp_path):
  run = synthetic_run(lrs=(0.01,), batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  for path in _all_figures(run, tmp_path, ("val_acc",)):
    _assert_png(path, min_w=200)


def test_heatmap_leaves_no_pyplot_figures(tmp_path):
  import matplotlib.pyplot as plt  # only to check that plots never registers figures
  before = plt.get_fignums()
  run = synthetic_run(lrs=LRS[:3], batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  plots.heatmaps(run.members, "final_val_acc", str(tmp_path / "h.png"))
  assert plt.get_fignums() == before


def test_heatmap_marks_failed_and_diverged_cells_differently(tmp_path):
  # LR 0.0025 is at chance (failed) and LR 0.32 diverges, on every seed.
  run = synthetic_run(lrs=(0.0025, 0.01, 0.04, 0.32), batch_sizes=(32,), augs=(0.0,),
                      seeds=(0, 1), fail_below=0.5, diverge_above=8.0, status_columns=True)
  status = run.members.groupby("lr")["status"].agg(set)
  assert status[0.0025] == {"failed"} and status[0.32] == {"diverged"}
  path = plots.heatmaps(run.members, "final_val_acc", str(tmp_path / "h.png"))
  img = image.imread(path)[..., :3]
  # Pixel colours along the middle row of the single panel: the failed cell is light
  # grey and the diverged cell dark grey, with their hatches.
  from matplotlib.colors import to_rgb
  light, dark = np.array(to_rgb(plots.FAILED_STYLE["facecolor"])), \
      np.array(to_rgb(plots.DIVERGED_STYLE["facecolor"]))
  flat = img.reshape(-1, 3)
  assert (np.abs(flat - light).max(1) < 0.02).sum() > 200
  assert (np.abs(flat - dark).max(1) < 0.02).sum() > 200
  cells = analysis.lr_cells(run.members, "final_val_acc")
  assert cells.set_index("lr")["n_failed"].to_dict() == {0.0025: 2, 0.01: 0, 0.04: 0, 0.32: 0}


def _orange_pixels(path):
  from matplotlib.colors import to_rgb
  flat = image.imread(path)[..., :3].reshape(-1, 3)
  return int((np.abs(flat - np.array(to_rgb(plots.SLOW_STYLE["edgecolor"]))).max(1)
              < 0.08).sum())


def test_heatmap_marks_slow_cells_apart_from_failed_ones(tmp_path):
  import pandas as pd
  # LR 0.001: slow on both seeds; 0.003: one slow, one trained; 1.0: failed.
  status = ["slow", "slow", "slow", "trained", "trained", "trained", "failed", "failed"]
  members = pd.DataFrame({"member": range(8), "lr": np.repeat([0.001, 0.003, 0.1, 1.0], 2),
                          "batch_size": 32, "aug": 0.0, "seed": [0, 1] * 4,
                          "diverged": False, "status": status,
                          "final_val_acc": [0.6, 0.62, 0.85, 0.8, 0.95, 0.96, 0.1, 0.12]})
  path = plots.heatmaps(members, "final_val_acc", str(tmp_path / "h.png"))
  cells = analysis.lr_cells(members, "final_val_acc").set_index("lr")
  # The slow cells keep their values (and colours), under the orange hatch.
  assert cells.loc[0.001, "value"] == pytest.approx(0.61)
  assert _orange_pixels(path) > 200
  img = image.imread(path)[..., :3].reshape(-1, 3)
  from matplotlib.colors import to_rgb
  light = np.array(to_rgb(plots.FAILED_STYLE["facecolor"]))
  assert (np.abs(img - light).max(1) < 0.02).sum() > 200  # the failed cell, grey
  no_slow = members.assign(status=["trained"] * 6 + ["failed"] * 2)
  assert _orange_pixels(plots.heatmaps(no_slow, "final_val_acc", str(tmp_path / "n.png"))) \
      < _orange_pixels(path) / 10


def test_seed_bands_span_seeds_per_setting():
  run = synthetic_run(lrs=(0.01,), batch_sizes=(32,), augs=(0.0,), seeds=(0, 1, 2),
                      noise=0.01, n_evals=4)
  bands = plots.seed_bands(run.history, run.members, "val_loss")
  assert len(bands) == 4 and (bands["n"] == 3).all()
  last = run.history.groupby("member")["val_loss"].last()
  row = bands.iloc[-1]
  assert (row["lo"], row["hi"]) == (last.min(), last.max())
  assert row["mean"] == pytest.approx(last.mean())


def test_noise_scale_and_train_loss_figures_written(tmp_path):
  run = synthetic_run(lrs=LRS[:4], batch_sizes=(32, 64), augs=(0.0, 1.0), seeds=(0, 1),
                      noise_scale=30.0)
  curve = analysis.noise_scale_curve(run.history, run.members)
  _assert_png(fit_plots.noise_scale(curve, str(tmp_path / "ns.png")))
  _assert_png(plots.training_curves(run.history, run.members, str(tmp_path / "tl.png"),
                                    "train_loss"))


def test_format_lr_labels():
  assert [plots.format_lr(x) for x in (1e-4, 0.00025, 0.01, 0.1, 0.5, 1.0, 300.0)] == [
      "1e-4", "2.5e-4", "1e-2", "0.1", "0.5", "1", "3e2"]
