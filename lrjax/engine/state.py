"""The engine's state and inputs: per-block member state, per-chunk constants, metrics."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np


class MemberState(NamedTuple):
  """Training state of one Block; every leaf has leading (group, inner) member axes."""

  params: Any
  opt_state: Any
  grad_acc: Any  # None when the block's k is 1
  updates: jax.Array  # applied optimizer updates
  diverged: jax.Array  # bool
  diverged_at: jax.Array  # examples seen when divergence was detected; -1 if never
  first_loss: jax.Array  # the loss at tick 0, reference for "exploding"
  loss_sum: jax.Array  # training loss summed over the current segment
  plateau: Any = None  # ReduceLROnPlateauState per member, when the plateau family is used
  # Gradient noise scale (McCandlish et al. 2018, App. A), for blocks with k > 1:
  small_sq: Any = None  # sum of the micro-batch gradients' squared norms in this batch
  noise_trace: Any = None  # segment sum of tr(Sigma) estimates, one per completed batch
  noise_g2: Any = None  # segment sum of |G|^2 estimates
  model_state: Any = None  # the model's mutable variables (e.g. batch_stats); {} if none


class Constants(NamedTuple):
  """Per-chunk arrays the compiled program reads (arguments, not baked constants)."""

  train_images: jax.Array  # uint8 (N, H, W, C)
  train_labels: jax.Array  # int32 (N,)
  eval_images: jax.Array  # uint8 (M, H, W, C), padded to a multiple of eval_batch
  eval_labels: jax.Array  # int32 (M,)
  eval_weights: jax.Array  # f32 (M,): 0 on padding
  order: jax.Array  # int32 (S, total_examples): example stream per distinct seed
  seed_index: jax.Array  # int32 (G,): row of `order` for each group
  aug_keys: jax.Array  # key (G,)
  aug_mags: dict  # name -> f32 (G,)
  hparams: tuple  # per Block: name -> (G, I_block): lr, k, total_updates, opt/schedule hparams
  dropout_keys: Any = None  # key (G,): each group's dropout stream (folded with the tick)


# Largest precomputed segment of augmented inputs (float32) kept in memory.
INPUT_CACHE_BYTES = 256 << 20


# What each segment reports per member, in this order; the program builds its metrics
# from this list (``segment_metrics``) and checks that it computed exactly these.
SEGMENT_METRICS = ("updates", "lr_now", "train_loss", "val_loss", "val_acc", "noise_scale",
                   "diverged")


def segment_metrics(settings) -> tuple[str, ...]:
  """``SEGMENT_METRICS`` plus ``val_<name>`` for each of ``settings.metrics``.

  Example:
    >>> from lrjax.engine.settings import TrainSettings
    >>> segment_metrics(TrainSettings(metrics={"xent": "cross_entropy"}))[-1]
    'val_xent'
  """
  extra = ("tick_loss",) if settings.record_tick_loss else ()
  return SEGMENT_METRICS + tuple(f"val_{n}" for n in settings.metrics) + extra


def per_example(total, num_examples: int) -> np.ndarray:
  """Host side: sums from ``Program.evaluate`` -> means over a split (float32).

  Example:
    >>> per_example(np.float32([3.0, 1.0]), 4)
    array([0.75, 0.25], dtype=float32)
  """
  return np.asarray(total, np.float32) / np.float32(num_examples)


def mean_metrics(metrics: dict, num_examples: int) -> dict:
  """Host side: a segment's ``val_*`` sums -> means over the split.

  Example:
    >>> mean_metrics({"val_loss": np.float32([3.0]), "val_acc": np.float32([1.0])}, 4)
    {'val_loss': array([0.75], dtype=float32), 'val_acc': array([0.25], dtype=float32)}
  """
  return {k: per_example(v, num_examples) if k.startswith("val_") else v
          for k, v in metrics.items()}
