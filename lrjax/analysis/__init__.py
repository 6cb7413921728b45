"""From a run's tables to answers: estimates with intervals, figures and the HTML report.

Everything here reads the tables the engine writes (``members.parquet``,
``history.parquet``, ``config.json``); nothing imports the engine.

Modules, one idea each:
  * ``tables``: loading a run directory, grid axes, cell means.
  * ``stats``: shared conventions (cells, member status, seed-bootstrap intervals).
  * ``cube``: members as (cell, lr, seed) arrays; the best LR per bootstrap replicate.
  * ``optima``: best LR per cell and the LR-batch scaling exponent.
  * ``stability``: max stable LR and the effect of augmentation.
  * ``critical_batch``: steps to a target and the critical batch size.
  * ``noise_scale``: the gradient noise scale, its spread over training and per aug
    at equal progress.
  * ``inference``: small-sample inference over seeds (grid-censored means, paired
    differences, equivalence, Holm, p-values from intervals).
  * ``analysis_settings``: the config's ``analysis`` field (margins, references,
    primary questions).
  * ``comparisons``: each arm of a non-core axis against its reference, paired by seed.
  * ``verdicts``: every estimate at once, and the advice at an LR edge.
  * ``sentences``: the estimates as sentences (``findings``), ranked.
  * ``questions``, ``family``, ``headline``: the questions as decisions, the primary
    family Holm-corrected, and the headline.
  * ``summary``: ``summary.json``.
  * ``plots``, ``fit_plots``, ``report``: figures of the results and of the
    estimates, and ``report.html``.
  * ``synthetic``: tables with planted answers.
"""

from lrjax.analysis import (analysis_settings, comparisons, critical_batch, cube, family,
                            fit_plots, headline, inference, noise_scale, optima, plots,
                            questions, report, sentences, stability, stats, summary,
                            synthetic, tables)
from lrjax.analysis.analysis_settings import AnalysisSettings
from lrjax.analysis.comparisons import compare_arms
from lrjax.analysis.critical_batch import (BestStepsFit, best_steps_fit, best_steps_per_batch,
                                           critical_batch_from_fit, default_target,
                                           fit_critical_batch, steps_to_target)
from lrjax.analysis.sentences import findings, findings_from
from lrjax.analysis.verdicts import Estimates, estimate
from lrjax.analysis.noise_scale import (NoiseScale, exact_noise_scale, noise_scale_curve,
                                        noise_scale_aug_effect, noise_scale_at_target,
                                        noise_scale_estimate, noise_scale_from_running,
                                        noise_scale_per_seed, noise_scale_summary)
from lrjax.analysis.optima import (BestLrFit, ScalingFit, best_lr, best_lr_fit,
                                   best_lr_replicates, scaling_band, scaling_exponent,
                                   scaling_fit)
from lrjax.analysis.report import write_report
from lrjax.analysis.stability import (AugEffectFit, aug_effect, aug_effect_fit,
                                      aug_effect_pooled, max_stable_lr)
from lrjax.analysis.stats import (cell_columns, extra_axes, small_sample_factor,
                                  status_labels, with_status)
from lrjax.analysis.summary import analyze, summarize
from lrjax.analysis.synthetic import save_run, synthetic_members, synthetic_run
from lrjax.analysis.tables import (
    METRIC_COLUMNS, RunTables, analysis_members, dataset_sizes, grid_axes, jsonable,
    load_run, lr_cells, metric_mode, with_default_axes)
from lrjax.grid import CORE_AXES
from lrjax.outcomes import member_status

__all__ = [
    "AnalysisSettings", "analysis_settings", "compare_arms", "comparisons", "family",
    "headline", "inference", "noise_scale_aug_effect", "noise_scale_at_target",
    "noise_scale_per_seed", "questions", "sentences",
    "AugEffectFit", "BestLrFit", "BestStepsFit", "CORE_AXES", "Estimates",
    "METRIC_COLUMNS", "NoiseScale", "RunTables", "ScalingFit", "analysis_members",
    "analyze", "aug_effect", "aug_effect_fit", "aug_effect_pooled", "best_lr",
    "best_lr_fit", "best_lr_replicates", "best_steps_fit", "best_steps_per_batch",
    "cell_columns", "critical_batch", "critical_batch_from_fit", "cube",
    "dataset_sizes", "default_target", "estimate", "exact_noise_scale", "extra_axes",
    "findings", "findings_from", "fit_critical_batch", "fit_plots", "grid_axes",
    "jsonable", "load_run", "lr_cells", "max_stable_lr", "member_status", "metric_mode",
    "noise_scale", "noise_scale_curve", "noise_scale_estimate",
    "noise_scale_from_running", "noise_scale_summary", "optima", "plots", "report",
    "save_run", "scaling_band", "scaling_exponent", "scaling_fit",
    "small_sample_factor", "stability", "stats", "status_labels", "steps_to_target",
    "summarize", "summary", "synthetic", "synthetic_members", "synthetic_run", "tables",
    "with_default_axes", "with_status", "write_report",
]
