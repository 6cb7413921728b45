"""Tests for lrjax.plots: every figure renders a valid PNG on awkward grids too."""
import numpy as np
import pytest
from matplotlib import image

from lrjax import analysis
from lrjax.analysis import plots
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
  table = analysis.best_lr_table(members)
  fit = analysis.fit_lr_batch_scaling(table)
  return [
      plots.heatmaps(members, "final_val_acc", str(tmp_path / "heatmap_val_acc.png")),
      plots.heatmaps(members, "final_val_loss", str(tmp_path / "heatmap_val_loss.png")),
      *[plots.training_curves(history, members, str(tmp_path / f"c_{m}.png"), m)
        for m in curve_metrics],
      plots.best_lr_vs_batch(table, fit, str(tmp_path / "best.png")),
  ]


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


def test_format_lr_labels():
  assert [plots.format_lr(x) for x in (1e-4, 0.00025, 0.01, 0.1, 0.5, 1.0, 300.0)] == [
      "1e-4", "2.5e-4", "1e-2", "0.1", "0.5", "1", "3e2"]
