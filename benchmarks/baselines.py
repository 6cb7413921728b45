"""The alternatives ``lrjax bench`` measures lrjax against, and the machine's limits.

Each baseline trains the same members as lrjax on the same work: same initial
weights, same example stream, same batches, same loss, ``optax.sgd(lr,
momentum=0.9)``. They are written the way a skilled user would write them (one
compilation, donated buffers, data resident on the device), so a ratio against
them says something. Each returns an ``Outcome`` (final params, train seconds,
compile seconds, a note); final params have a leading member axis (N, ...).

The JAX baselines call the model through ``lrjax.models.train_logits`` with its
mutable state (BatchNorm's ``batch_stats``, threaded through every step as lrjax
does) and the compute dtype lrjax uses: with ``Work.dtype="bfloat16"`` the
parameters and inputs are cast to bfloat16 for the forward and backward pass,
while the weights, gradients and optimizer state stay float32 (master weights),
the logits and loss are float32 and the state keeps its float32 dtype.

Timings exclude compilation: every JAX baseline is compiled with
``.lower(...).compile()`` first, and the timer stops after
``jax.block_until_ready``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax.models import ModelAdapter, train_logits

MOMENTUM = 0.9


class Work(NamedTuple):
  """One (model, dtype, batch) workload shared by every case.

  Attributes:
    apply: ``(params, x) -> logits``.
    init_params: the initial params of every member (seed 0: shared).
    lrs: float32 (N,) learning rates.
    xs: float32 (steps, B, H, W, C) batches in [0, 1], on the device.
    ys: float32 (steps, B, classes) one-hot labels, on the device.
    labels: int32 (steps, B) labels (host), for torch.
    model: the model's adapter, for its training-mode call and state; None:
      ``apply`` alone (a stateless model).
    init_state: the initial mutable state of every member (``{}``: none).
    dtype: compute dtype, ``"float32"`` or ``"bfloat16"`` (weights stay float32).
  """

  apply: Callable[[Any, jax.Array], jax.Array]
  init_params: Any
  lrs: np.ndarray
  xs: jax.Array
  ys: jax.Array
  labels: np.ndarray
  model: ModelAdapter | None = None
  init_state: Any = None
  dtype: str = "float32"


class Outcome(NamedTuple):
  """What a case returns: final params (N, ...), seconds, and a note for the table."""

  params: Any
  train_s: float
  compile_s: float
  note: str = ""


def cast(tree, dtype):
  """Floating leaves of ``tree`` in ``dtype``: the working copy of mixed precision.

  Example:
    >>> cast({"w": jnp.ones(2), "n": jnp.int32(3)}, "bfloat16")["w"].dtype
    dtype(bfloat16)
  """
  dtype = jnp.dtype(dtype)
  if dtype == jnp.float32:
    return tree
  return jax.tree.map(
      lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def stateless(apply) -> ModelAdapter:
  """``apply`` as an adapter with no state: what the baselines call for ``Work.model=None``."""
  return ModelAdapter("apply", None, apply)


def _model(w: Work) -> ModelAdapter:
  return stateless(w.apply) if w.model is None else w.model


def model_loss(model, dtype, params, state, x, y):
  """One member's training loss (float32) and new state, computed in ``dtype``.

  The dropout key is fixed: the benchmark's models draw none.
  """
  p, xc = cast((params, x), dtype)
  logits, new_state = train_logits(model, p, state, xc, jax.random.key(0))
  new_state = jax.tree.map(lambda n, o: n.astype(o.dtype), new_state, state)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), y).mean(), new_state


def model_step(model, dtype, params, opt_state, state, x, y, opt):
  """One SGD-momentum step of one member: the unit every baseline repeats.

  Returns ``(params, opt_state, state)``; gradients are taken with respect to the
  float32 weights.
  """
  grads, state = jax.grad(lambda p: model_loss(model, dtype, p, state, x, y),
                          has_aux=True)(params)
  updates, opt_state = opt.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, state


def model_scan(model, dtype, params, opt_state, state, lr, xs, ys):
  """All steps of one member as one ``lax.scan`` (``lr`` traced: compiled once);
  returns ``(params, opt_state, state)``."""
  opt = optax.sgd(lr, momentum=MOMENTUM)

  def body(carry, batch):
    return model_step(model, dtype, *carry, *batch, opt), None

  return jax.lax.scan(body, (params, opt_state, state), (xs, ys))[0]


def loss_fn(apply, params, x, y):
  return optax.softmax_cross_entropy(apply(params, x), y).mean()


def train_step(apply, params, opt_state, x, y, opt):
  """``model_step`` of a stateless float32 model: ``(params, opt_state)``."""
  return model_step(stateless(apply), "float32", params, opt_state, {}, x, y, opt)[:2]


def train_scan(apply, params, opt_state, lr, xs, ys):
  """``model_scan`` of a stateless float32 model: ``(params, opt_state)``."""
  return model_scan(stateless(apply), "float32", params, opt_state, {}, lr, xs, ys)[:2]


def _copies(tree, n):
  """``n`` independent device copies of a pytree (donation consumes them).

  Made with ``device_put`` from host arrays: no eager op, so nothing to compile.
  """
  host = jax.device_get(tree)
  return [jax.tree.map(lambda a: jax.device_put(np.array(a)), host) for _ in range(n)]


def _stack(trees):
  return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *trees)


def _member_states(w: Work, opt_init):
  """Fresh ``(params, opt_state, state)`` device copies for each member."""
  n = len(w.lrs)
  return [(p, opt_init(p), s) for p, s in zip(_copies(w.init_params, n),
                                              _copies(w.init_state or {}, n))]


def sequential_scans(w: Work):
  """Case 2: the N members one after another, each one compiled ``lax.scan``."""
  model, dtype = _model(w), w.dtype
  fn = jax.jit(lambda p, o, s, lr, xs, ys: model_scan(model, dtype, p, o, s, lr, xs, ys),
               donate_argnums=(0, 1, 2))
  states = _member_states(w, jax.jit(optax.sgd(0.1, momentum=MOMENTUM).init))
  lrs = [jax.device_put(np.float32(lr)) for lr in w.lrs]
  t0 = time.perf_counter()
  compiled = fn.lower(*states[0], lrs[0], w.xs, w.ys).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  outs = [compiled(p, o, s, lr, w.xs, w.ys)[0] for (p, o, s), lr in zip(states, lrs)]
  jax.block_until_ready(outs)
  train_s = time.perf_counter() - t0
  return Outcome(_stack(outs), train_s, compile_s)


def python_loop(w: Work):
  """Case 3: the Flax/Optax habit: one jitted step, a Python loop over batches.

  ``optax.inject_hyperparams`` puts the LR in the optimizer state, so one
  compiled step serves every member; batches are device arrays split up front.
  """
  model, dtype = _model(w), w.dtype
  opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=MOMENTUM)
  step = jax.jit(lambda p, o, s, x, y: model_step(model, dtype, p, o, s, x, y, opt),
                 donate_argnums=(0, 1, 2))
  # One device array per batch, made once, so the loop does nothing but step.
  batches = [(jax.device_put(x), jax.device_put(y))
             for x, y in zip(np.asarray(w.xs), np.asarray(w.ys))]
  opt_init = jax.jit(opt.init)
  states = _member_states(w, opt_init)
  for (_, o, _), lr in zip(states, w.lrs):
    o.hyperparams["learning_rate"] = jax.device_put(np.float32(lr))
  t0 = time.perf_counter()
  compiled = step.lower(*states[0], *batches[0]).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  outs = []
  for p, o, s in states:
    for x, y in batches:
      p, o, s = compiled(p, o, s, x, y)
    outs.append(p)
  jax.block_until_ready(outs)
  train_s = time.perf_counter() - t0
  return Outcome(_stack(outs), train_s, compile_s)


def vmapped_scan_fn(apply, model: ModelAdapter | None = None, dtype: str = "float32"):
  """``jit(vmap(lax.scan))``: ``(params, opt_state, state, lrs, xs, ys)`` with
  member-stacked state and LRs, the batches shared; the state buffers are donated.

  With only ``apply`` (a stateless float32 model) the function takes and returns no
  model state: ``(params, opt_state, lrs, xs, ys) -> (params, opt_state)``.
  """
  if model is None and dtype == "float32":
    return jax.jit(jax.vmap(lambda p, o, lr, xs, ys: train_scan(apply, p, o, lr, xs, ys),
                            in_axes=(0, 0, 0, None, None)), donate_argnums=(0, 1))
  model = model or stateless(apply)
  return jax.jit(jax.vmap(lambda p, o, s, lr, xs, ys: model_scan(model, dtype, p, o, s, lr, xs,
                                                                 ys),
                          in_axes=(0, 0, 0, 0, None, None)), donate_argnums=(0, 1, 2))


def vmapped_scan(w: Work):
  """Case 4: a hand-written ``jit(vmap(lax.scan))`` over the N members (input shared)."""
  n = len(w.lrs)
  fn = vmapped_scan_fn(w.apply, _model(w), w.dtype)
  repeat = lambda tree: jax.tree.map(
      lambda a: jax.device_put(np.repeat(np.asarray(a)[None], n, 0)), jax.device_get(tree))
  params, state = repeat(w.init_params), repeat(w.init_state or {})
  opt_state = jax.jit(jax.vmap(optax.sgd(0.1, momentum=MOMENTUM).init))(params)
  lrs = jax.device_put(np.asarray(w.lrs, np.float32))
  t0 = time.perf_counter()
  compiled = fn.lower(params, opt_state, state, lrs, w.xs, w.ys).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  out = compiled(params, opt_state, state, lrs, w.xs, w.ys)[0]
  jax.block_until_ready(out)
  train_s = time.perf_counter() - t0
  return Outcome(jax.device_get(out), train_s, compile_s)


# -- torch.func ensemble (optional) ----------------------------------------------------


def torch_available() -> bool:
  try:
    import torch  # noqa: F401, PLC0415
  except ImportError:
    return False
  return True


def _torch_module(params):
  """A torch twin of lrjax's built-in MLP or CNN, with the Flax weights copied in."""
  import torch  # noqa: PLC0415
  from torch import nn  # noqa: PLC0415

  class MeanHW(nn.Module):
    def forward(self, x):
      return x.mean(dim=(-2, -1))

  names = sorted(params, key=lambda s: (s.split("_")[0], int(s.split("_")[1])))
  t = lambda a: torch.from_numpy(np.array(a, np.float32))
  layers = []
  convs = [k for k in names if k.startswith("Conv_")]
  denses = [k for k in names if k.startswith("Dense_")]
  if convs:  # NCHW input; Flax's SAME padding, made explicit (stride 2 pads (0, 1)).
    for i, k in enumerate(convs):
      kernel = np.asarray(params[k]["kernel"])  # HWIO
      stride = 1 if i == 0 else 2
      conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[:2], stride=stride)
      conv.weight.data = t(kernel.transpose(3, 2, 0, 1))
      conv.bias.data = t(params[k]["bias"])
      layers += [nn.ZeroPad2d((1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1)), conv, nn.ReLU()]
    layers.append(MeanHW())
  else:
    layers.append(nn.Flatten())  # inputs arrive NHWC-flattened, as Flax flattens them
  for i, k in enumerate(denses):
    kernel = np.asarray(params[k]["kernel"])
    lin = nn.Linear(*kernel.shape)
    lin.weight.data = t(kernel.T)
    lin.bias.data = t(params[k]["bias"])
    layers.append(lin)
    if i < len(denses) - 1:
      layers.append(nn.ReLU())
  return nn.Sequential(*layers)


def torch_func_ensemble(w: Work):
  """Case 5: ``stack_module_state`` + ``vmap(grad(functional_call))``, momentum SGD by hand.

  Params are returned in Flax layout (kernels transposed back) so they can be
  compared with the JAX cases.
  """
  import copy  # noqa: PLC0415

  import torch  # noqa: PLC0415
  from torch.func import functional_call, grad, stack_module_state, vmap  # noqa: PLC0415

  n = len(w.lrs)
  module = _torch_module(w.init_params)
  is_cnn = any(k.startswith("Conv_") for k in w.init_params)
  xs = np.array(w.xs)  # writable: torch.from_numpy warns on read-only arrays
  xs = xs.transpose(0, 1, 4, 2, 3) if is_cnn else xs.reshape(xs.shape[:2] + (-1,))
  xs = torch.from_numpy(np.ascontiguousarray(xs))
  ys = torch.from_numpy(np.asarray(w.labels, np.int64))
  base = copy.deepcopy(module).to("meta")

  def member_loss(p, x, y):
    return torch.nn.functional.cross_entropy(functional_call(base, (p,), (x,)), y)

  grads_fn = vmap(grad(member_loss), in_dims=(0, None, None))

  def fresh():
    params, _ = stack_module_state([module] * n)
    params = {k: v.detach().clone() for k, v in params.items()}
    bufs = {k: torch.zeros_like(v) for k, v in params.items()}
    return params, bufs

  lr = torch.from_numpy(np.asarray(w.lrs, np.float32))
  lr_of = {}

  def run(params, bufs, steps):
    for s in range(steps):
      g = grads_fn(params, xs[s], ys[s])
      with torch.no_grad():
        for k, p in params.items():
          if k not in lr_of:
            lr_of[k] = lr.view((n,) + (1,) * (p.dim() - 1))
          bufs[k].mul_(MOMENTUM).add_(g[k])  # optax trace: m = g + mu * m
          p.sub_(lr_of[k] * bufs[k])

  # The thread count a user would tune: torch's default OpenMP pool can collapse on a
  # shared, oversubscribed CPU, so time a few steps with each candidate, keep the best.
  t0 = time.perf_counter()
  run(*fresh(), 1)  # torch's one-time costs, reported as "compile"
  compile_s = time.perf_counter() - t0
  default_threads = torch.get_num_threads()
  trials = {}
  for threads in sorted({1, default_threads}):
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    run(*fresh(), min(3, xs.shape[0]))
    trials[threads] = time.perf_counter() - t0
  threads = min(trials, key=trials.get)
  torch.set_num_threads(threads)
  params, bufs = fresh()
  t0 = time.perf_counter()
  run(params, bufs, xs.shape[0])
  train_s = time.perf_counter() - t0
  torch.set_num_threads(default_threads)
  return Outcome(_torch_to_flax(params, w.init_params), train_s, compile_s,
                 f"torch {threads} thread(s)")


def _torch_to_flax(tparams, like):
  """Stacked torch params (``"{i}.weight"``) back into the Flax tree of ``like``."""
  weights = [v.numpy() for k, v in tparams.items() if k.endswith("weight")]
  biases = [v.numpy() for k, v in tparams.items() if k.endswith("bias")]
  names = sorted(like, key=lambda s: (s.split("_")[0] != "Conv", int(s.split("_")[1])))
  out = {}
  for k, wt, b in zip(names, weights, biases):
    kernel = wt.transpose(0, 3, 4, 2, 1) if k.startswith("Conv_") else wt.transpose(0, 2, 1)
    out[k] = {"kernel": kernel, "bias": b}
  return out


# -- the machine's limits --------------------------------------------------------------


def _best_time(fn, *args, repeats=5):
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def machine_limits() -> dict[str, float]:
  """Peak float32 matmul FLOP/s and memory bandwidth, measured now, on device 0.

  Matmul: a large square ``jnp.dot`` (2n^3 FLOPs). Bandwidth: copying a large
  array into a donated buffer (read once, written once: 2 x size bytes).
  """
  gpu = jax.devices()[0].platform != "cpu"
  n = 8192 if gpu else 2048
  a = jax.device_put(np.random.default_rng(0).standard_normal((n, n), np.float32))
  dot = jax.jit(jnp.dot)
  t_dot = _best_time(dot, a, a)
  size = (1 << 28) if gpu else (1 << 24)  # float32 elements: 1 GiB / 64 MiB
  src = jax.device_put(np.ones((size,), np.float32))
  copy = jax.jit(lambda dst, src: dst.at[:].set(src), donate_argnums=(0,))
  dst = copy(jax.device_put(np.zeros((size,), np.float32)), src)
  best = float("inf")
  for _ in range(10):
    t0 = time.perf_counter()
    dst = jax.block_until_ready(copy(dst, src))
    best = min(best, time.perf_counter() - t0)
  return {"peak_flops": 2 * n**3 / t_dot, "peak_bytes_per_s": 2 * size * 4 / best,
          "matmul_n": n, "copy_bytes": size * 4}


def matmul_peak(dtype: str) -> float:
  """Peak matmul FLOP/s in ``dtype`` (e.g. ``"bfloat16"``), measured now, on device 0:
  a large square ``jnp.dot`` (2n^3 FLOPs), as in ``machine_limits``."""
  n = 8192 if jax.devices()[0].platform != "cpu" else 1024
  a = jax.device_put(np.random.default_rng(0).standard_normal((n, n), np.float32))
  a = jax.jit(lambda v: v.astype(dtype))(a)
  return 2 * n**3 / _best_time(jax.jit(jnp.dot), a, a)
