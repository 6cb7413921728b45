"""The vmapped, scanned training program: a whole grid of members in one compiled step.

How it works (docs/DESIGN.md):

* Members step in lockstep over *ticks*. Each tick feeds every member the same
  number ``b`` of examples (the micro-batch). A member with batch size ``B = k*b``
  sums its gradients over ``k`` ticks and applies one optimizer update (a masked
  update, as ``optax.MultiSteps`` does), so every member sees the same examples
  budget and one program holds every batch size.
* A member's step is written once, for one member without any member axis
  (``_member_grads``, ``_member_step``, ``noise.accumulate``); ``over_members``
  puts the vmaps around it. Two vmap levels: the outer axis runs over *input
  groups* (members sharing ``seed`` and augmentation settings get identical
  inputs), the inner axis over the optimizer hyperparameters with the input
  unbatched -- the first layer becomes one wide matmul instead of many small ones.
  A slice of one member applies no vmap at all.
* Data lives on the device as uint8; batches are gathers by index.
* A member whose loss goes non-finite, or past ``divergence_factor`` times its
  first loss, is marked diverged (with the examples it had seen); from then on its
  updates stop counting and its metrics are NaN. Nothing crosses between members.
* Inner members are sorted by batch size into ``Block``s of equal ``k``: a block
  with ``k == 1`` updates every tick with no accumulator, others take a real
  branch every ``k`` ticks (no masked optimizer work on the ticks in between).
* ``lax.scan`` over the ticks of a segment (one evaluation period) inside one
  jitted function, compiled once per grid chunk and reused for every segment.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from lrjax import augment
from lrjax import data
from lrjax import losses
from lrjax import optimizers
from lrjax import transforms
from lrjax.engine.devices import Partition
from lrjax.engine.plan import Block
from lrjax.engine import forward
from lrjax.engine import noise
from lrjax.engine.run import Run
from lrjax.engine.state import INPUT_CACHE_BYTES, Constants, MemberState, segment_metrics
from lrjax.models.adapters import initial_state


def default_vmap_width() -> int:
  """Members vmapped side by side per ``lax.map`` step, by backend.

  On CPU one member at a time: every matmul is then a plain one, which XLA:CPU runs
  faster than batched ones (benchmarks/NOTES.md). Accelerators want the whole grid
  at once. When a CPU grid has enough members, the trainer measures widths 1 and 2
  instead (``lrjax.engine.autotune``), since which wins depends on the model.

  Example:
    >>> default_vmap_width() if jax.default_backend() == "cpu" else 1
    1
  """
  return 1 if jax.default_backend() == "cpu" else 1 << 30


@dataclasses.dataclass(frozen=True)
class Slice:
  """The members one scan trains, and their axes.

  Attributes:
    group: the one input group all of them belong to (a traced index), or None for
      every group's members.
    batched: whether they have (group, member) axes, the leading axes of every leaf
      of their state and hyperparameters; False for one member with none.
  """

  group: Any = None
  batched: bool = True


def over_members(fn: Callable, batched: bool, shared: tuple[int, ...] = ()) -> Callable:
  """``fn``, written for one member, applied to every member of a slice.

  Without member axes (``batched`` False) that is ``fn`` itself. Otherwise ``fn`` is
  vmapped over the input groups (outer) and over each group's members (inner).
  Arguments at positions ``shared`` belong to the input group (its micro-batch, its
  dropout key) and stay unbatched in the inner vmap, so a group's members read one
  input and their first layers become one wide matmul. Scalar leaves (a block's
  static ``k``, whether this tick completes its batches) are common to every member.

  Example:
    >>> add = over_members(lambda w, x: w + x, True, shared=(1,))
    >>> add(jnp.zeros((2, 3, 4)), jnp.ones((2, 4))).shape  # (groups, members, ...)
    (2, 3, 4)
    >>> over_members(jnp.add, False) is jnp.add  # one member: no vmap at all
    True
  """
  if not batched:
    return fn

  def each(*args):
    axes = [jax.tree.map(lambda a: None if jnp.ndim(a) == 0 else 0, a) for a in args]
    inner = [None if i in shared else ax for i, ax in enumerate(axes)]
    return jax.vmap(jax.vmap(fn, in_axes=tuple(inner)), in_axes=tuple(axes))(*args)

  return each


def _restart(grad_acc, sums: dict, complete):
  """One member's gradient sum (and noise ``small_sq`` sum, if measured) after a tick:
  zero where its batch completed, so the next batch starts a new sum."""
  grad_acc = jax.tree.map(lambda a: jnp.where(complete, jnp.zeros_like(a), a), grad_acc)
  if sums:
    sums = {**sums, "small_sq": jnp.where(complete, 0.0, sums["small_sq"])}
  return grad_acc, sums


class Program:
  """The compiled pieces for one grid layout: init, segment, evaluate.

  Built once per run; ``segment`` is compiled once and reused for every segment
  and every chunk (chunks have equal shapes). State, hyperparameters and metrics
  are tuples with one entry per ``Block``.
  """

  def __init__(self, run: Run, partition: Partition | None = None,
               vmap_width: int | None = None):
    """Args:
      run: the resolved run (``lrjax.engine.build_run``).
      partition: how members are split over devices (None: one device).
      vmap_width: members side by side per ``lax.map`` step; default the run's
        ``settings.vmap_width``, or the backend's (``default_vmap_width``) if 0.
    """
    self.model = run.model
    self.partition = partition
    self.num_classes = run.dataset.num_classes
    self.settings = run.settings
    self.plan = run.plan
    self.opt_cols = run.opt_cols
    self.spec = run.schedule
    self.blocks = run.blocks
    self.vmap_width = vmap_width or run.settings.vmap_width or default_vmap_width()
    self.loss = losses.resolve_loss(run.settings.loss)
    # The default loss evaluates with integer labels (as it always has); others take
    # one-hot labels.
    self.integer_eval_loss = run.settings.loss == losses.DEFAULT_LOSS
    self.metric_fns = losses.resolve_metrics(run.settings.metrics)
    self.metric_names = segment_metrics(run.settings)
    self.dtype = jnp.dtype(run.settings.dtype)
    self.init = jax.jit(self._init)
    self.segment = jax.jit(self._segment, donate_argnums=(0,))
    self.evaluate = jax.jit(self._evaluate)

  # -- one member's optimizer, built from its (traced) hyperparameters ------------------
  def _member_optimizer(self, hp: Mapping[str, jax.Array], lr_scale=None):
    """The member's optimizer and LR schedule (times its plateau scale, if any)."""
    base = self.spec.schedule(hp)
    schedule = base if lr_scale is None else (lambda count: base(count) * lr_scale)
    name = self.settings.optimizer
    opt_hp = {**optimizers.optimizer_hparams(name), **dict(self.settings.optimizer_kwargs),
              **{c: hp[c] for c in self.opt_cols}}
    mom = optimizers.momentum_name(name)
    cycled = None if mom is None else self.spec.momentum(hp, opt_hp[mom])
    if cycled is not None:  # torch's cycle_momentum: momentum (or b1) follows the LR cycle
      opt_hp[mom] = cycled
    return optimizers.make_optimizer(name, schedule, **opt_hp), schedule

  # -- init ------------------------------------------------------------------------------
  def _init(self, init_keys, sample_x, hparams):
    group_params = jax.vmap(self.model.init, in_axes=(0, None))(init_keys, sample_x)
    group_model_state = jax.vmap(lambda k: initial_state(self.model, k, sample_x))(init_keys)
    states = []
    for block, hp in zip(self.blocks, hparams):
      inner = block.stop - block.start
      per_member = lambda tree: jax.tree.map(
          lambda p: jnp.broadcast_to(p[:, None], (p.shape[0], inner) + p.shape[1:]), tree)
      params = per_member(group_params)
      opt_init = lambda p, h: self._member_optimizer(h)[0].init(p)
      opt_state = jax.vmap(jax.vmap(opt_init))(params, hp)
      shape = (init_keys.shape[0], inner)
      states.append(MemberState(
          params=params, opt_state=opt_state,
          grad_acc=None if block.k == 1 else jax.tree.map(jnp.zeros_like, params),
          updates=jnp.zeros(shape, jnp.int32), diverged=jnp.zeros(shape, bool),
          diverged_at=jnp.full(shape, -1, jnp.int32),
          first_loss=jnp.zeros(shape, jnp.float32), loss_sum=jnp.zeros(shape, jnp.float32),
          plateau=None if self.spec.plateau is None else jax.tree.map(
              lambda a: jnp.broadcast_to(a, shape),
              transforms.plateau_init(self.spec.plateau.get("mode", "min"))),
          model_state=per_member(group_model_state),
          **(dict(small_sq=jnp.zeros(shape, jnp.float32),
                  noise_trace=jnp.zeros(shape, jnp.float32),
                  noise_g2=jnp.zeros(shape, jnp.float32))
             if self._measures_noise(block) else {})))
    return tuple(states)

  def _measures_noise(self, block: Block) -> bool:
    """Blocks whose members accumulate (k > 1) measure the gradient noise scale."""
    return self.settings.measure_noise_scale and block.k != 1

  # -- a tick's inputs -------------------------------------------------------------------
  def _group_inputs(self, t, c: Constants, seed_index, aug_key, mags):
    """One input group's (possibly augmented) micro-batch at tick ``t``."""
    b = self.plan.micro_batch
    idx = jax.lax.dynamic_slice(c.order, (seed_index, t * b), (1, b))[0]
    x = data.to_float(c.train_images[idx])
    y = jax.nn.one_hot(c.train_labels[idx], self.num_classes, dtype=jnp.float32)
    policy = self.settings.augment_policy
    if policy is not None:
      x, y = augment.augment_batch(jax.random.fold_in(aug_key, t), x, y, mags, policy,
                                   self.settings.multiplicity)
    return x, y

  def inputs(self, t, c: Constants):
    """Every input group's micro-batch at tick ``t``: ``(x, y)``, x (G, b*M, H, W, C) float32
    and y (G, b*M, K) soft labels, for ``M`` = ``settings.multiplicity``."""
    return jax.vmap(self._group_inputs, in_axes=(None, None, 0, 0, 0))(
        t, c, c.seed_index, c.aug_keys, c.aug_mags)

  def _slice_inputs(self, t, c: Constants, cached, members: Slice):
    """The micro-batch ``(x, y)`` and dropout key of the slice's input group(s) at tick
    ``t``, with a leading group axis unless the slice has no member axes.

    ``cached``: this tick's ``inputs`` when the segment built them up front, or None.
    Dropout keys come from the seed and the tick, common to a group's members.
    """
    fold = lambda key: jax.random.fold_in(key, t)
    g = members.group
    if g is None:  # every group
      x, y = self.inputs(t, c) if cached is None else cached
      return x, y, jax.vmap(fold)(c.dropout_keys)
    if cached is None:
      x, y = self._group_inputs(t, c, c.seed_index[g], c.aug_keys[g],
                                jax.tree.map(lambda m: m[g], c.aug_mags))
      x, y = (x[None], y[None]) if members.batched else (x, y)
    else:
      x, y = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(
          a, g, axis=0, keepdims=members.batched), cached)
    rng = fold(c.dropout_keys[g])
    return x, y, rng[None] if members.batched else rng

  # -- one member: loss and gradients, optimizer step (the slice vmaps them) --------------
  def _member_grads(self, params, model_state, x, y, rng, alpha):
    """One member's ``((loss, new model state), gradients)`` on a micro-batch.

    ``alpha``: the member's label smoothing (the ``label_smoothing`` grid axis), or
    None (``settings.label_smoothing`` is then already in ``y``).
    """
    def loss_fn(p, s, x_m, y_m, r, a):
      logits, new_s = forward.train_forward(self.model, p, s, x_m, r, self.dtype,
                                            self.settings.bn_batch)
      if a is not None:
        y_m = optax.smooth_labels(y_m, a)
      return self.loss(logits, y_m).mean(), new_s

    return jax.value_and_grad(loss_fn, has_aux=True)(params, model_state, x, y, rng, alpha)

  def _member_step(self, params, opt_state, grads, hp, lr_scale, keep=None, k=None):
    """One member's optimizer step: ``(params, opt_state)`` after it.

    ``k``: the gradients are a sum over ``k`` micro-batches (their mean is applied),
    or None for one micro-batch's. ``keep``: on the ragged path, whether the member
    steps now (its batch is complete and it has not diverged); otherwise it keeps its
    state. None: it steps. Blocks with a static ``k`` do not mask: a per-member select
    over all parameters and optimizer state is costly on CPU (benchmarks/NOTES.md);
    a diverged member keeps computing, but its ``updates`` stop counting and its
    metrics are NaN.
    """
    if k is not None:
      grads = jax.tree.map(lambda a: a / jnp.asarray(k, a.dtype), grads)
    opt, _ = self._member_optimizer(hp, lr_scale)
    upd, new_o = opt.update(grads, opt_state, params)
    new_p = optax.apply_updates(params, upd)
    if keep is None:
      return new_p, new_o
    kept = lambda new, old: jnp.where(keep, new, old)
    return jax.tree.map(kept, new_p, params), jax.tree.map(kept, new_o, opt_state)

  # -- one tick of a slice ---------------------------------------------------------------
  def _tick(self, state: MemberState, t, batch, hp, block: Block, members: Slice):
    """One tick of a slice's members: gradients on the micro-batch, divergence checks,
    and the optimizer step (every tick for ``k == 1``, else ``_accumulate``).

    Returns ``(state, loss)``.
    """
    x, y, rng = batch
    each = functools.partial(over_members, batched=members.batched)
    alpha = hp.get("label_smoothing")
    if alpha is None and self.settings.label_smoothing:  # static: 0 compiles plain labels
      y = optax.smooth_labels(y, self.settings.label_smoothing)
    (loss, model_state), grads = each(self._member_grads, shared=(2, 3, 4))(
        state.params, state.model_state, x, y, rng, alpha)
    first_loss = jnp.where(t == 0, loss, state.first_loss)
    bad = ~jnp.isfinite(loss) | (loss > self.settings.divergence_factor * first_loss)
    diverged = state.diverged | bad
    state = state._replace(
        model_state=model_state, diverged=diverged, first_loss=first_loss,
        diverged_at=jnp.where(bad & ~state.diverged, t * self.plan.micro_batch,
                              state.diverged_at),
        loss_sum=state.loss_sum + jnp.where(diverged, 0.0, loss))
    scale = None if state.plateau is None else state.plateau.scale
    if block.k == 1:  # every tick is a whole batch: no accumulator, no branch
      applied = ~diverged & self._within_budget(state, hp)
      keep = applied if self.plan.update_budget else None
      params, opt_state = each(self._member_step)(state.params, state.opt_state, grads,
                                                   hp, scale, keep)
      state = state._replace(params=params, opt_state=opt_state)
    else:
      state, applied = self._accumulate(state, t, grads, hp, block, each)
    return state._replace(updates=state.updates + applied.astype(jnp.int32)), loss

  def _accumulate(self, state: MemberState, t, grads, hp, block: Block, each):
    """A tick of members with ``k > 1``: they sum their gradients, and those whose batch
    completes step on the mean, add their noise-scale estimates and start a new sum.

    ``each``: ``over_members`` for the slice. Returns ``(state, applied)``, where
    ``applied`` marks the members that took an optimizer step.
    """
    k = self._k_now(hp, t) if block.k is None else block.k  # per member, or static
    grad_acc = jax.tree.map(jnp.add, state.grad_acc, grads)
    complete = (t + 1) % k == 0
    applied = complete & ~state.diverged & self._within_budget(state, hp)
    keep = applied if block.k is None or self.plan.update_budget else None
    scale = None if state.plateau is None else state.plateau.scale
    step = lambda o: each(self._member_step)(o[0], o[1], o[2], hp, scale, keep, k)
    # A real branch (the cond sits outside the vmaps): skip the optimizer on ticks
    # where no member of the block completes its batch.
    params, opt_state = jax.lax.cond(jnp.any(complete), step, lambda o: (o[0], o[1]),
                                     (state.params, state.opt_state, grad_acc))
    sums = {}
    if state.small_sq is not None:
      # Distinct examples per micro-batch: the M augmented copies of one example are
      # correlated, not M independent draws (`lrjax.analysis.noise_scale`).
      b = float(self.plan.micro_batch)
      sums = each(functools.partial(noise.accumulate, b=b))(
          {"small_sq": state.small_sq, "noise_trace": state.noise_trace,
           "noise_g2": state.noise_g2}, grads, grad_acc, k, applied)
    grad_acc, sums = each(_restart)(grad_acc, sums, complete)
    return state._replace(params=params, opt_state=opt_state, grad_acc=grad_acc,
                          **sums), applied

  def _within_budget(self, state: MemberState, hp):
    """``budget="updates"``: whether the member still has updates to take (a member
    that is done keeps its state, masked, while the others finish); else True."""
    if not self.plan.update_budget:
      return jnp.bool_(True)
    return state.updates < hp["total_updates"]

  def _k_now(self, hp, t):
    """The member's accumulation factor at tick ``t``: ``k`` times its growth factor per
    batch-size growth point passed (``batch_growth_at``)."""
    if not self.settings.batch_growth_at:
      return hp["k"]
    if self.plan.update_budget:  # equal updates: each member grows at its own tick
      points = [hp[f"growth_tick_{p}"] for p in range(len(self.settings.batch_growth_at))]
    else:
      points = self.plan.growth_ticks
    phase = sum((t >= g).astype(jnp.int32) for g in points)
    return hp["k"] * hp["growth"] ** phase

  # -- a block's segment: lax.map over slices, each scanned over the ticks ----------------
  def _block_scan(self, state: MemberState, hp, block: Block, ticks, c: Constants,
                  cached, members: Slice):
    """Scans one slice of a block over a segment's ticks; returns ``(state, losses)``,
    losses per tick when ``settings.record_tick_loss`` (else None).

    ``cached``: the segment's precomputed ``inputs`` for every tick, or None to
    build them at each tick.
    """
    def tick(s, t_xy):
      t, xy = t_xy
      batch = self._slice_inputs(t, c, xy, members)
      s, loss = self._tick(s, t, batch, hp, block, members)
      return s, loss if self.settings.record_tick_loss else None

    return jax.lax.scan(tick, state, (ticks, cached))

  def map_width(self, size: int, num_groups: int) -> tuple[int, bool]:
    """How ``lax.map`` slices a block of ``num_groups x size`` members: ``(width, per_group)``.

    ``size`` is the block's inner size on this device (under ``shard_map`` with
    the inner axis split, a share of the block). All members at once when there
    are several and they fit in ``vmap_width`` (``width == size``, ``per_group``
    False); otherwise slices of ``width`` inner members of a single group
    (``per_group`` True), ``width`` the largest divisor of ``size`` that is at
    most ``vmap_width``.

    Example:
      >>> from lrjax import data, grid, models
      >>> from lrjax.engine import build_run
      >>> run = build_run(models.get_model("mlp", 10), data.load("digits"),
      ...                 grid.make_grid({"lr": (0.1, 0.2), "batch_size": (32,)}))
      >>> Program(run, vmap_width=2).map_width(4, 3), Program(run, vmap_width=16).map_width(4, 3)
      ((2, True), (4, False))
    """
    target = self.vmap_width
    if 1 < num_groups * size <= target:
      return size, False
    # A lone member takes the per-group path too (no member axes), so it compiles to
    # the same step as one member of a larger grid's slices.
    fits = [w for w in range(1, size + 1) if size % w == 0 and w <= target]
    return max(fits, default=1), True

  def block_segment(self, state: MemberState, hp, block: Block, ticks, c: Constants,
                    cached=None):
    """A block's training over ``ticks``: ``lax.map`` over slices of its members, each
    scanned over the ticks (``map_width``).

    A slice of one group's members reads that group's inputs; a slice of one member
    has no member axes at all (size-1 vmaps are slower on CPU, benchmarks/NOTES.md).

    Args:
      state: the block's ``MemberState``, leaves (G, I, ...) (this device's share).
      hp: the block's hyperparameters, name -> (G, I).
      block: the ``Block``.
      ticks: the ticks to train, int32 (T,).
      c: the chunk's ``Constants``.
      cached: ``inputs`` for every tick, stacked (T, G, ...), or None to build them
        per tick.

    Returns:
      ``(state, losses)``: losses (G, I, T) per tick with ``settings.record_tick_loss``,
      else None.
    """
    groups, size = state.updates.shape
    width, per_group = self.map_width(size, groups)
    if not per_group:
      state, losses = self._block_scan(state, hp, block, ticks, c, cached, Slice())
      return state, None if losses is None else jnp.moveaxis(losses, 0, -1)
    n = size // width
    batched = width > 1
    # (G, I, ...) -> (G * n, 1, width, ...), or (G * I, ...) without member axes:
    # slice j holds group j // n.
    lead = (groups * n, 1, width) if batched else (groups * n,)
    split = lambda a: a.reshape(lead + a.shape[2:])
    merge = lambda a: a.reshape((groups, size) + a.shape[len(lead):])
    group_of = jnp.repeat(jnp.arange(groups, dtype=jnp.int32), n)
    out, losses = jax.lax.map(
        lambda sh: self._block_scan(sh[0], sh[1], block, ticks, c, cached,
                                    Slice(sh[2], batched)),
        (jax.tree.map(split, state), jax.tree.map(split, hp), group_of))
    if losses is not None:  # (slices, T[, 1, width]) -> (G, I, T)
      losses = jnp.moveaxis(losses, 1, -1) if batched else losses
      losses = losses.reshape((groups, size, -1))
    return jax.tree.map(merge, out), losses

  # -- evaluation ----------------------------------------------------------------------
  def _evaluate(self, variables, images, labels, weights):
    """Summed loss, number correct and extra metrics of every member on a (padded) split.

    ``variables`` is a tuple over blocks of ``(params, model_state)``; returns a dict
    ``{"loss", "acc", <metrics>}`` of per-block tuples of (G, I_block) sums (the
    host divides: ``per_example``). Members go through ``lax.map`` in slices of
    ``vmap_width`` like training: a whole-grid vmap of the evaluation is slow on CPU
    (batched matmuls, benchmarks/NOTES.md).
    """
    # Splits are padded to a multiple of min(eval_batch, real size).
    n_batches = images.shape[0] // min(self.settings.eval_batch, images.shape[0])
    batches = (images.reshape((n_batches, -1) + images.shape[1:]),
               labels.reshape((n_batches, -1)), weights.reshape((n_batches, -1)))

    names = ("loss", "acc") + tuple(self.metric_fns)
    member = lambda v: forward.split_sums(
        self.model, v[0], v[1], batches, self.dtype, self.num_classes,
        None if self.integer_eval_loss else self.loss, self.metric_fns)
    width = self.vmap_width
    sums = {n: [] for n in names}
    for v in variables:
      lead = jax.tree.leaves(v[0])[0].shape[:2]
      flat = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), v)
      out = jax.lax.map(member, flat, batch_size=min(width, math.prod(lead)))
      for n in names:
        sums[n].append(out[n].reshape(lead))
    # Sums, not means: the host divides (``per_example``), so a member's reported
    # metrics do not depend on how XLA compiled the division for this grid's shape.
    return {n: tuple(v) for n, v in sums.items()}

  def _precompute_inputs(self, states, c: Constants) -> bool:
    """Whether to build a segment's inputs up front: when several scans would each
    rebuild them (more than one block or ``lax.map`` slice) and they fit in
    ``INPUT_CACHE_BYTES``."""
    groups = c.seed_index.shape[0]
    scans = 0
    for s in states:
      size = s.updates.shape[1]  # this device's share of the block
      width, per_group = self.map_width(size, groups)
      scans += groups * size // width if per_group else 1
    per_tick = (groups * self.plan.micro_batch * self.settings.multiplicity *
                (math.prod(c.train_images.shape[1:]) + self.num_classes) * 4)
    return scans > 1 and per_tick * self.plan.ticks_per_segment <= INPUT_CACHE_BYTES

  def _plateau_step(self, state: MemberState, hp, val_loss) -> MemberState:
    static = {k: v for k, v in self.spec.plateau.items() if k != "factor"}
    step = lambda st, v, h: transforms.plateau_step(
        st, v, factor=self.spec.plateau_factor(h), **static)
    return state._replace(plateau=jax.vmap(jax.vmap(step))(state.plateau, val_loss, hp))

  # -- one segment: scan over ticks, then evaluate ---------------------------------------
  def _segment(self, states, segment_index, c: Constants):
    """Trains every block over one segment and evaluates; returns (states, metrics).

    With a ``partition``, each device runs ``_local_segment`` on its share of the
    members (``shard_map``); metrics come back per block and are joined here, so
    the member order is the same on any number of devices.
    """
    local = self._local_segment
    if self.partition is not None:
      member, group, none = (self.partition.members, self.partition.groups,
                             jax.sharding.PartitionSpec())
      specs = Constants(train_images=none, train_labels=none, eval_images=none,
                        eval_labels=none, eval_weights=none, order=none,
                        seed_index=group, aug_keys=group, aug_mags=group, hparams=member,
                        dropout_keys=group)
      local = jax.shard_map(local, mesh=self.partition.mesh, in_specs=(member, none, specs),
                            out_specs=(member, member), check_vma=False)
    states, per_block = local(states, segment_index, c)
    metrics = {name: jnp.concatenate([m[name] for m in per_block], axis=1)
               for name in self.metric_names}
    return states, metrics

  def _local_segment(self, states, segment_index, c: Constants):
    """One device's share: train each block over the segment's ticks, evaluate,
    step plateau schedules; returns (states, per-block metrics), where the ``val_*``
    metrics are sums over the split (the host divides, ``mean_metrics``)."""
    t0 = segment_index * self.plan.ticks_per_segment
    ticks = t0 + jnp.arange(self.plan.ticks_per_segment, dtype=jnp.int32)
    cached = None
    if self._precompute_inputs(states, c):  # build each tick's inputs once, not per slice
      cached = jax.lax.map(lambda t: self.inputs(t, c), ticks)
    trained = [self.block_segment(state, hp, block, ticks, c, cached)
               for state, hp, block in zip(states, c.hparams, self.blocks)]
    states = tuple(s for s, _ in trained)
    val = self._evaluate(tuple((s.params, s.model_state) for s in states), c.eval_images,
                         c.eval_labels, c.eval_weights)  # per-block sums
    if self.spec.plateau is not None:  # torch ReduceLROnPlateau.step(val_loss), per member
      examples = jnp.sum(c.eval_weights)
      states = tuple(self._plateau_step(s, hp, loss / examples)
                     for s, hp, loss in zip(states, c.hparams, val["loss"]))
    per_block = tuple(
        self._block_metrics(s, hp, {n: v[i] for n, v in val.items()}, trained[i][1])
        for i, (hp, s) in enumerate(zip(c.hparams, states)))
    states = tuple(s._replace(loss_sum=jnp.zeros_like(s.loss_sum),
                              **({} if s.noise_g2 is None else dict(
                                  noise_trace=jnp.zeros_like(s.noise_trace),
                                  noise_g2=jnp.zeros_like(s.noise_g2))))
                   for s in states)
    return states, per_block

  def _block_metrics(self, s: MemberState, hp, val: dict, tick_losses) -> dict:
    """One block's segment metrics, keyed and ordered as ``metric_names``
    (``state.segment_metrics``): NaN for diverged members, except ``updates``,
    ``lr_now`` and ``tick_loss``."""
    bad = s.diverged
    nan = jnp.float32(jnp.nan)
    lr_of = lambda h, u, sc: self._member_optimizer(h, sc)[1](u)
    lr_now = jax.vmap(jax.vmap(lr_of))(hp, s.updates,
                                      None if s.plateau is None else s.plateau.scale)
    values = {
        "updates": s.updates,
        "lr_now": lr_now.astype(jnp.float32),
        "train_loss": jnp.where(bad, nan, s.loss_sum / self.plan.ticks_per_segment),
        **{f"val_{n}": jnp.where(bad, nan, v) for n, v in val.items()},
        "noise_scale": noise.segment_noise_scale(s),
        "diverged": bad,
        **({} if tick_losses is None else {"tick_loss": tick_losses}),
    }
    if set(values) != set(self.metric_names):  # at trace time: the two lists agree
      raise AssertionError(f"segment metrics {sorted(values)} are not "
                           f"state.segment_metrics {sorted(self.metric_names)}")
    return {name: values[name] for name in self.metric_names}
