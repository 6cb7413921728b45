"""The gradient noise scale, measured on the accumulation the engine already does.

McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training", Appendix A):
with gradients over batches of two sizes, ``b`` and ``B``, the squared norms give
unbiased estimates of ``|G|^2`` and ``tr(Sigma)``; the simple noise scale is
``B_simple = tr(Sigma) / |G|^2``, from the two averaged separately. A member with
batch ``B = k * b`` computes ``k`` micro-batch gradients and their mean for every
update, so each completed batch gives one estimate of each.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lrjax.engine.state import MemberState


def sq_norm(tree):
  """Squared L2 norm of one member's pytree.

  Example:
    >>> float(sq_norm({"w": jnp.array([3.0, 4.0]), "b": jnp.array(1.0)}))
    26.0
  """
  return sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(tree))


def two_batch_noise(small_sq_mean, big_sq, b_small, b_big):
  """McCandlish et al. 2018 (App. A): unbiased |G|^2 and tr(Sigma) from two batch sizes.

  Args:
    small_sq_mean: mean squared norm of gradients over batches of ``b_small``.
    big_sq: squared norm of the gradient over a batch of ``b_big``.
    b_small, b_big: the two batch sizes (``b_big > b_small``).

  Returns:
    ``(g2, trace)``; the simple noise scale is ``trace / g2`` (average the two
    separately over many batches before dividing).

  Example:
    >>> g2, tr = two_batch_noise(5.0, 2.0, 1.0, 4.0)
    >>> float(g2), float(tr)
    (1.0, 4.0)
  """
  g2 = (b_big * big_sq - b_small * small_sq_mean) / (b_big - b_small)
  trace = (small_sq_mean - big_sq) / (1.0 / b_small - 1.0 / b_big)
  return g2, trace


def accumulate(sums: dict, grads, grad_acc, k, done, b: float) -> dict:
  """One member's noise-scale sums after one tick of a block with ``k > 1``.

  Args:
    sums: ``small_sq`` (this batch's sum of micro-batch gradient squared norms),
      ``noise_trace`` and ``noise_g2`` (the segment's sums of estimates), as in
      ``MemberState``.
    grads: this tick's micro-batch gradient (batch ``b``).
    grad_acc: the sum so far of the member's current batch, this tick's included.
    k: the member's accumulation factor.
    done: the batch completed and the member has not diverged: the two-batch
      estimates join the segment's sums.
    b: examples per micro-batch.

  Returns:
    The new ``sums``.

  Example:
    >>> zero = jnp.float32(0)
    >>> g = {"w": jnp.array([1.0, 1.0])}
    >>> out = accumulate({"small_sq": zero, "noise_trace": zero, "noise_g2": zero}, g,
    ...                  {"w": jnp.array([2.0, 2.0])}, 2, jnp.bool_(True), 1.0)
    >>> float(out["small_sq"])
    2.0
  """
  kf = jnp.asarray(k, jnp.float32)
  small_sq = sums["small_sq"] + sq_norm(grads)
  g2, trace = two_batch_noise(small_sq / kf, sq_norm(grad_acc) / kf ** 2,
                              b, b * jnp.maximum(kf, 2.0))
  use = done & (kf > 1)  # ragged blocks may hold k = 1 members: no second batch size
  return dict(small_sq=small_sq,
              noise_trace=sums["noise_trace"] + jnp.where(use, trace, 0.0),
              noise_g2=sums["noise_g2"] + jnp.where(use, g2, 0.0))


def segment_noise_scale(s: MemberState):
  """B_simple = tr(Sigma) / |G|^2 from a segment's sums; NaN where not measured."""
  if s.noise_g2 is None:
    return jnp.full(s.updates.shape, jnp.nan, jnp.float32)
  ok = (s.noise_g2 > 0) & ~s.diverged
  return jnp.where(ok, s.noise_trace / jnp.where(ok, s.noise_g2, 1.0), jnp.nan)
