"""Tests for lrjax.analysis.interactive: the report's Vega-Lite charts and members table."""
import time

from lrjax.analysis import interactive, synthetic, tables


def test_curves_spec_thinned_and_fast_with_360_members():
  run = synthetic.synthetic_run(lrs=tuple(0.01 * 2.0 ** k for k in range(-3, 7)),
                                batch_sizes=(32, 64, 128, 256), augs=(0.0, 0.5, 1.0),
                                seeds=(0, 1, 2), noise=0.003, n_evals=20,
                                status_columns=True)
  assert len(run.members) == 360
  interactive.javascript_bundle()  # made once per machine (cached on disk)
  members = tables.with_default_axes(run.members)
  axes = tables.grid_axes(members, run.config)
  start = time.perf_counter()
  heat = interactive.heatmap_spec(members, axes)
  curves = interactive.curves_spec(run.history, members, axes)
  page = interactive.charts_html([("a", "", heat), ("b", "", curves)])
  table = interactive.members_table_html(members, axes)
  assert time.perf_counter() - start < 3.0
  assert len(page) > 500_000 and table.count("<tr>") == 361
  n = len(curves["datasets"]["curves"])
  assert 0 < n <= len(run.history)
  small = interactive.curves_spec(run.history, members, axes, max_points=2000)
  points = small["datasets"]["curves"]
  assert len(points) <= 2000 + 360  # every member keeps its last evaluation
  assert len({p["member"] for p in points}) == len({p["member"] for p in
                                                    curves["datasets"]["curves"]})
