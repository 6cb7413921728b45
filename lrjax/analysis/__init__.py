"""From a run's tables to answers: fits, figures and the HTML report.

Everything here reads the tables the engine writes (``members.parquet``,
``history.parquet``, ``config.json``); nothing imports the engine.
"""

from lrjax.analysis import plots, report, synthetic, tables
from lrjax.analysis.report import write_report
from lrjax.analysis.synthetic import save_run, synthetic_run
from lrjax.analysis.tables import (
    CORE_AXES, METRIC_COLUMNS, RunTables, aug_effect, best_lr_table, divergence_boundary,
    fit_lr_batch_scaling, grid_axes, jsonable, load_run, lr_cells, metric_mode, summarize,
    with_default_axes)

__all__ = [
    "CORE_AXES", "METRIC_COLUMNS", "RunTables", "aug_effect", "best_lr_table",
    "divergence_boundary", "fit_lr_batch_scaling", "grid_axes", "jsonable", "load_run",
    "lr_cells", "metric_mode", "plots", "report", "save_run", "summarize", "synthetic",
    "synthetic_run", "tables", "with_default_axes", "write_report",
]
