"""The vmapped, scanned training program: a whole grid of members in one compiled step.

How it works (docs/DESIGN.md):

* Members step in lockstep over *ticks*. Each tick feeds every member the same
  number ``b`` of examples (the micro-batch). A member with batch size ``B = k*b``
  sums its gradients over ``k`` ticks and applies one optimizer update (a masked
  update, as ``optax.MultiSteps`` does), so every member sees the same examples
  budget and one program holds every batch size.
* Two vmap levels: the outer axis runs over *input groups* (members sharing
  ``seed`` and augmentation settings get identical inputs), the inner axis over the
  optimizer hyperparameters with the input unbatched -- the first layer becomes
  one wide matmul instead of many small ones.
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

import math
from typing import Mapping

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

  On CPU one member at a time (then every matmul is a plain one): measured on
  the 2-core CPU, 64 MLP members over 2 CPU devices, ms per member-step at
  widths 1/2/4/8 were 0.26/0.27/0.32/0.37 (batch 32) and 0.80/0.86/0.92/0.99
  (batch 128) (benchmarks/NOTES.md). Accelerators want the whole grid at once.
  The trainer measures widths 1 and 2 instead when a CPU grid has enough members
  (``lrjax.autotune``), since which wins depends on the model.
  """
  return 1 if jax.default_backend() == "cpu" else 1 << 30


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

  # -- one tick ----------------------------------------------------------------------------
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

  def _train_forward(self, params, model_state, x, rng):
    return forward.train_forward(self.model, params, model_state, x, rng, self.dtype,
                                 self.settings.bn_batch)

  def _losses_and_grads(self, params, model_state, x, y, rng, alpha=None, single=False):
    """Per-member losses, new model states and gradients; (G, I) members, inputs
    (G, ...) and dropout keys (G,) shared by the I members of a group.

    ``alpha``: per-member label smoothing (the ``label_smoothing`` grid axis), or
    None for ``settings.label_smoothing``. ``single``: one member, no member axes.
    Returns ``((loss, new_model_state), grads)``.
    """
    if alpha is None and self.settings.label_smoothing:  # static: 0 compiles plain labels
      y = optax.smooth_labels(y, self.settings.label_smoothing)

    def member_loss(p, s, x_m, y_m, r, a):
      logits, new_s = self._train_forward(p, s, x_m, r)
      if a is not None:
        y_m = optax.smooth_labels(y_m, a)
      return self.loss(logits, y_m).mean(), new_s

    value_and_grad = jax.value_and_grad(member_loss, has_aux=True)
    if single:
      return value_and_grad(params, model_state, x, y, rng, alpha)
    a_axis = None if alpha is None else 0

    def group(params_g, state_g, x_g, y_g, rng_g, alpha_g):  # x shared: wide first layer
      return jax.vmap(value_and_grad, in_axes=(0, 0, None, None, None, a_axis))(
          params_g, state_g, x_g, y_g, rng_g, alpha_g)

    return jax.vmap(group, in_axes=(0, 0, 0, 0, 0, a_axis))(params, model_state, x, y, rng,
                                                           alpha)

  def _apply(self, params, opt_state, grads, hp, scale, ok=None, single=False):
    """One optimizer step for every member.

    With ``ok``, members where it is False keep their state (the ragged-grid path).
    Without it every member steps: a per-member select over all parameters and
    optimizer state measured ~40% of a CPU tick, so blocks with a static ``k`` do
    not mask; a diverged member keeps computing, but its weights are no longer
    reported (its ``updates`` stop counting and its metrics are NaN).
    """

    def member(p, o, g, h, sc, do):
      opt, _ = self._member_optimizer(h, sc)
      upd, new_o = opt.update(g, o, p)
      new_p = optax.apply_updates(p, upd)
      if do is None:
        return new_p, new_o
      keep = lambda new, old: jnp.where(do, new, old)
      return jax.tree.map(keep, new_p, p), jax.tree.map(keep, new_o, o)

    members = member if single else jax.vmap(jax.vmap(member))
    return members(params, opt_state, grads, hp, scale, ok)

  def _block_tick(self, state: MemberState, t, loss, grads, hp, block: Block,
                  single: bool = False, model_state=None) -> MemberState:
    first_loss = jnp.where(t == 0, loss, state.first_loss)
    bad = ~jnp.isfinite(loss) | (loss > self.settings.divergence_factor * first_loss)
    diverged = state.diverged | bad
    diverged_at = jnp.where(bad & ~state.diverged, t * self.plan.micro_batch,
                            state.diverged_at)
    scale = None if state.plateau is None else state.plateau.scale
    if block.k == 1:  # every tick is a whole batch: no accumulator, no branch
      apply = ~diverged
      params, opt_state = self._apply(state.params, state.opt_state, grads, hp, scale,
                                      single=single)
      grad_acc = None
    else:
      k = self._k_now(hp, t) if block.k is None else block.k
      grad_acc = jax.tree.map(jnp.add, state.grad_acc, grads)
      complete = (t + 1) % k == 0
      apply = complete & ~diverged

      def update(operand):
        params, opt_state, acc = operand
        mean = lambda a: a / k.reshape(k.shape + (1,) * (a.ndim - k.ndim)).astype(a.dtype) \
            if block.k is None else a / block.k
        return self._apply(params, opt_state, jax.tree.map(mean, acc), hp, scale,
                           apply if block.k is None else None, single)

      # A real branch (the cond sits outside the vmaps): skip the optimizer on ticks
      # where no member of the block completes its batch.
      params, opt_state = jax.lax.cond(jnp.any(complete), update, lambda o: (o[0], o[1]),
                                       (state.params, state.opt_state, grad_acc))
      noise = {}
      if state.small_sq is not None:
        noise = self._noise_step(state, grads, grad_acc, k, complete & ~diverged, single)
      if block.k is None:
        zero_done = lambda a: jnp.where(
            complete.reshape(complete.shape + (1,) * (a.ndim - complete.ndim)),
            jnp.zeros_like(a), a)
      else:
        zero_done = lambda a: jnp.where(complete, jnp.zeros_like(a), a)
      grad_acc = jax.tree.map(zero_done, grad_acc)
      if noise:
        noise["small_sq"] = jnp.where(complete, 0.0, noise["small_sq"])
      state = state._replace(**noise)
    return state._replace(
        params=params, opt_state=opt_state, grad_acc=grad_acc, model_state=model_state,
        updates=state.updates + apply.astype(jnp.int32), diverged=diverged,
        diverged_at=diverged_at, first_loss=first_loss,
        loss_sum=state.loss_sum + jnp.where(diverged, 0.0, loss))

  def _k_now(self, hp, t):
    """The member's accumulation factor at tick ``t``: ``k`` times its growth factor per
    batch-size growth point passed (``batch_growth_at``)."""
    if not self.plan.growth_ticks:
      return hp["k"]
    phase = sum((t >= g).astype(jnp.int32) for g in self.plan.growth_ticks)
    return hp["k"] * hp["growth"] ** phase

  def _noise_step(self, state: MemberState, grads, grad_acc, k, done, single: bool) -> dict:
    """The noise-scale sums after this tick (``noise.accumulate``)."""
    b = float(self.plan.micro_batch * self.settings.multiplicity)
    return noise.accumulate(state, grads, grad_acc, k, done, b, single)

  def _inputs(self, t, c: Constants):
    """Every input group's micro-batch at tick ``t``: x (G, b*M, H, W, C), y (G, b*M, K)."""
    return jax.vmap(self._group_inputs, in_axes=(None, None, 0, 0, 0))(
        t, c, c.seed_index, c.aug_keys, c.aug_mags)

  def _block_scan(self, state: MemberState, hp, block: Block, ticks, c: Constants,
                  inputs=None, group=None, single=False):
    """Scans one block (or one slice of its members) over a segment's ticks.

    ``inputs``: the segment's precomputed (x, y) per tick for every group, or None
    to build them at each tick. ``group``: when the slice holds members of one
    input group only (leading axes (1, width)), that group's index. ``single``:
    the slice is one member of ``group`` with no member axes at all.
    """
    keep = not single  # a (1, ...) group axis for the vmapped path
    one = lambda a: jax.lax.dynamic_index_in_dim(a, group, axis=0, keepdims=keep)

    def tick(s, t_xy):
      t, xy = t_xy
      if xy is not None:
        x, y = xy if group is None else jax.tree.map(one, xy)
      elif group is None:
        x, y = self._inputs(t, c)
      else:
        x, y = self._group_inputs(t, c, c.seed_index[group], c.aug_keys[group],
                                  jax.tree.map(lambda m: m[group], c.aug_mags))
        x, y = (x, y) if single else (x[None], y[None])
      # Dropout keys: from the seed and the tick, common to the members of a group.
      fold = lambda key: jax.random.fold_in(key, t)
      rng = jax.vmap(fold)(c.dropout_keys) if group is None else fold(c.dropout_keys[group])
      rng = rng if group is None or single else rng[None]
      (loss, model_state), grads = self._losses_and_grads(
          s.params, s.model_state, x, y, rng, hp.get("label_smoothing"), single)
      recorded = loss if self.settings.record_tick_loss else None
      return self._block_tick(s, t, loss, grads, hp, block, single, model_state), recorded

    return jax.lax.scan(tick, state, (ticks, inputs))

  def map_width(self, size: int, num_groups: int) -> tuple[int, bool]:
    """How ``lax.map`` slices a block of ``num_groups x size`` members: ``(width, per_group)``.

    ``size`` is the block's inner size on this device (under ``shard_map`` with
    the inner axis split, a share of the block). All members at once when there
    are several and they fit in ``vmap_width`` (``width == size``, ``per_group``
    False); otherwise slices of ``width`` inner members of a single group
    (``per_group`` True), ``width`` the largest divisor of ``size`` that is at
    most ``vmap_width``.
    """
    target = self.vmap_width
    if 1 < num_groups * size <= target:
      return size, False
    # A lone member takes the per-group path too (``single``: no member axes), so it
    # compiles to the same step as one member of a larger grid's slices.
    fits = [w for w in range(1, size + 1) if size % w == 0 and w <= target]
    return max(fits, default=1), True

  def _block_segment(self, state: MemberState, hp, block: Block, ticks, c: Constants,
                     inputs=None):
    """A block's segment: ``lax.map`` over slices of its members, each scanned over ticks.

    Training one member at a time is fastest on CPU (see ``default_vmap_width``):
    a slice then holds one group's members only, and reads that group's inputs.
    """
    groups, size = state.updates.shape
    width, per_group = self.map_width(size, groups)
    if not per_group:
      state, losses = self._block_scan(state, hp, block, ticks, c, inputs)
      return state, None if losses is None else jnp.moveaxis(losses, 0, -1)
    n = size // width
    single = width == 1  # no member axes at all: size-1 vmaps measured ~8% slower on CPU
    # (G, I, ...) -> (G * n, 1, width, ...), or (G * I, ...) when single:
    # slice j holds group j // n.
    lead = (groups * n,) if single else (groups * n, 1, width)
    split = lambda a: a.reshape(lead + a.shape[2:])
    merge = lambda a: a.reshape((groups, size) + a.shape[len(lead):])
    group_of = jnp.repeat(jnp.arange(groups, dtype=jnp.int32), n)
    out, losses = jax.lax.map(
        lambda sh: self._block_scan(sh[0], sh[1], block, ticks, c, inputs, group=sh[2],
                                    single=single),
        (jax.tree.map(split, state), jax.tree.map(split, hp), group_of))
    if losses is not None:  # (slices, T[, 1, width]) -> (G, I, T)
      losses = losses if single else jnp.moveaxis(losses, 1, -1)
      losses = losses.reshape((groups, size, -1))
    return jax.tree.map(merge, out), losses

  # -- evaluation ----------------------------------------------------------------------
  def _evaluate(self, variables, images, labels, weights):
    """Summed loss, number correct and extra metrics of every member on a (padded) split.

    ``variables`` is a tuple over blocks of ``(params, model_state)``; returns a dict
    ``{"loss", "acc", <metrics>}`` of per-block tuples of (G, I_block) sums (the
    host divides: ``per_example``). Members go through ``lax.map`` in slices of
    ``vmap_width`` like training: one 64-wide vmap spent 20% of a CPU run's time on
    6% of its FLOPs (batched matmuls).
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
    step plateau schedules; returns (states, per-block metrics), where ``val_loss``
    and ``val_acc`` are sums over the split (the host divides, ``mean_metrics``)."""
    t0 = segment_index * self.plan.ticks_per_segment
    ticks = t0 + jnp.arange(self.plan.ticks_per_segment, dtype=jnp.int32)
    inputs = None
    if self._precompute_inputs(states, c):  # build each tick's inputs once, not per slice
      inputs = jax.lax.map(lambda t: self._inputs(t, c), ticks)
    trained = [self._block_segment(state, hp, block, ticks, c, inputs)
               for state, hp, block in zip(states, c.hparams, self.blocks)]
    states = tuple(s for s, _ in trained)
    val = self._evaluate(tuple((s.params, s.model_state) for s in states), c.eval_images,
                         c.eval_labels, c.eval_weights)  # per-block sums
    val_loss = val["loss"]
    if self.spec.plateau is not None:  # torch ReduceLROnPlateau.step(val_loss), per member
      examples = jnp.sum(c.eval_weights)
      states = tuple(self._plateau_step(s, hp, loss / examples)
                     for s, hp, loss in zip(states, c.hparams, val_loss))
    lr_of = lambda h, u, sc: self._member_optimizer(h, sc)[1](u)
    nan = jnp.float32(jnp.nan)
    per_block = []
    for i, (hp, s) in enumerate(zip(c.hparams, states)):
      bad = s.diverged
      lr_now = jax.vmap(jax.vmap(lr_of))(hp, s.updates,
                                        None if s.plateau is None else s.plateau.scale)
      per_block.append({
          "updates": s.updates,
          "lr_now": lr_now.astype(jnp.float32),
          "train_loss": jnp.where(bad, nan, s.loss_sum / self.plan.ticks_per_segment),
          **{f"val_{n}": jnp.where(bad, nan, v[i]) for n, v in val.items()},
          "noise_scale": noise.segment_noise_scale(s),
          "diverged": bad,
          **({} if trained[i][1] is None else {"tick_loss": trained[i][1]}),
      })
    states = tuple(s._replace(loss_sum=jnp.zeros_like(s.loss_sum),
                              **({} if s.noise_g2 is None else dict(
                                  noise_trace=jnp.zeros_like(s.noise_trace),
                                  noise_g2=jnp.zeros_like(s.noise_g2))))
                   for s in states)
    return states, tuple(per_block)
