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


def test_heatmap_marks_failed_slow_and_diverged_cells_apart():
  import numpy as np
  import pandas as pd
  # Per LR, two seeds: slow+trained, trained, failed+failed, diverged+diverged, and
  # failed+trained (still learned: no mark).
  status = ["slow", "trained", "trained", "trained", "failed", "failed", "diverged",
            "diverged", "failed", "trained"]
  members = pd.DataFrame({"member": range(10), "lr": np.repeat([1e-3, 1e-2, 1e-1, 1.0, 3.0], 2),
                          "batch_size": 32, "aug": 0.0, "seed": [0, 1] * 5,
                          "diverged": [s == "diverged" for s in status], "status": status,
                          "final_val_loss": [1.0, 0.5, 0.3, 0.3, 2.3, 2.3, np.nan, np.nan,
                                             2.3, 0.9]})
  spec = interactive.heatmap_spec(members, ["lr", "batch_size", "aug", "seed"])
  cells = pd.DataFrame(spec["datasets"]["cells"]).set_index("lr")
  assert cells["outcome"].to_dict() == {1e-3: "slow", 1e-2: "", 1e-1: "failed",
                                        1.0: "diverged", 3.0: ""}
  assert cells["mark"].to_dict() == {1e-3: "slow", 1e-2: "", 1e-1: "failed", 1.0: "×",
                                     3.0: ""}
  assert cells.loc[1e-3, ["trained", "slow", "failed", "diverged"]].tolist() == [1, 1, 0, 0]
  layers = spec["spec"]["layer"]
  # Failed cells are not coloured by their (real) mean: the grey beneath shows.
  assert layers[1]["transform"] == [{"filter": "datum.outcome != 'failed'"}]
  text_colour = layers[2]["encoding"]["color"]["scale"]
  assert text_colour["domain"] == ["diverged", "failed", "slow"]
  assert len(set(text_colour["range"])) == 3
  tips = {t["field"] for t in layers[0]["encoding"]["tooltip"]}
  assert {"trained", "slow", "failed", "diverged"} <= tips
