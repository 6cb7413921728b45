"""Tests for lrjax.report: the run report regenerates figures, summary and HTML."""
import json
import os

import pytest

from lrjax.analysis import report, synthetic
from lrjax.errors import ConfigError

LRS = tuple(0.01 * 2.0 ** k for k in range(-2, 4))


def test_write_report_writes_all_files(tmp_path):
  run = synthetic.synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0, 1.0),
                             seeds=(0,))
  run_dir = synthetic.save_run(run, str(tmp_path))
  written = report.write_report(run_dir)
  names = [os.path.basename(p) for p in written]
  figures = [*report.HEATMAP_METRICS, *report.CURVE_METRICS, report.SCALING_FIGURE]
  assert names == figures + ["summary.json", "report.html"]
  for p in written:
    assert os.path.getsize(p) > 500, p
  html = (tmp_path / "report.html").read_text()
  for name in figures:
    assert f'href="{name}"' in html and f'alt="{name}"' in html
  assert html.count("data:image/png;base64,") == len(figures)
  for heading in ("Best LR", "scaling fit", "Divergence boundary", "Config"):
    assert heading in html
  summary = json.loads((tmp_path / "summary.json").read_text())
  slopes = [row["slope"] for row in summary["scaling_fit"]]
  assert slopes == pytest.approx([1.0, 1.0], abs=1e-6)


def test_write_report_all_diverged(tmp_path):
  run = synthetic.synthetic_run(lrs=LRS[:2], batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                             diverge_above=1e-3)
  written = report.write_report(synthetic.save_run(run, str(tmp_path)))
  html = (tmp_path / "report.html").read_text()
  assert "none (all diverged)" in html and "every member diverged" in html
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["best_member"] is None and len(written) == 7


def test_write_report_loss_metric(tmp_path):
  run = synthetic.synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0,), seeds=(0,))
  report.write_report(synthetic.save_run(run, str(tmp_path)), metric="final_val_loss")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["metric"] == "final_val_loss"
  assert [r["best_lr"] for r in summary["best_lr"]] == pytest.approx([0.01, 0.02])


def test_write_report_missing_history_raises(tmp_path):
  run = synthetic.synthetic_run(lrs=LRS[:2], batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  synthetic.save_run(run, str(tmp_path))
  os.remove(tmp_path / "history.parquet")
  with pytest.raises(ConfigError, match="history.parquet"):
    report.write_report(str(tmp_path))


def test_report_draws_extra_axis_figure_when_grid_has_schedule_axis(tmp_path):
  run = synthetic.synthetic_run(lrs=(0.01, 0.1), batch_sizes=(32,), seeds=(0,),
                             extra_axes={"schedule": ("cosine", "constant")})
  run_dir = synthetic.save_run(run, str(tmp_path))
  written = [os.path.basename(p) for p in report.write_report(run_dir)]
  assert "by_schedule_final_val_acc.png" in written
  assert "by_schedule_final_val_acc.png" in (tmp_path / "report.html").read_text()
