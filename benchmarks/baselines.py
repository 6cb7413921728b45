"""The alternatives ``lrjax bench`` measures lrjax against, and the machine's limits.

Each baseline trains the same members as lrjax on the same work: same initial
weights, same example stream, same batches, same loss, ``optax.sgd(lr,
momentum=0.9)``. They are written the way a skilled user would write them (one
compilation, donated buffers, data resident on the device), so a ratio against
them says something. Each returns an ``Outcome`` (final params, train seconds,
compile seconds, a note); final params have a leading member axis (N, ...).

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

MOMENTUM = 0.9


class Work(NamedTuple):
  """One (model, batch) workload shared by every case.

  Attributes:
    apply: ``(params, x) -> logits``.
    init_params: the initial params of every member (seed 0: shared).
    lrs: float32 (N,) learning rates.
    xs: float32 (steps, B, H, W, C) batches in [0, 1], on the device.
    ys: float32 (steps, B, classes) one-hot labels, on the device.
    labels: int32 (steps, B) labels (host), for torch.
  """

  apply: Callable[[Any, jax.Array], jax.Array]
  init_params: Any
  lrs: np.ndarray
  xs: jax.Array
  ys: jax.Array
  labels: np.ndarray


class Outcome(NamedTuple):
  """What a case returns: final params (N, ...), seconds, and a note for the table."""

  params: Any
  train_s: float
  compile_s: float
  note: str = ""


def loss_fn(apply, params, x, y):
  return optax.softmax_cross_entropy(apply(params, x), y).mean()


def train_step(apply, params, opt_state, x, y, opt):
  """One SGD-momentum step of one member: the unit every baseline repeats."""
  grads = jax.grad(lambda p: loss_fn(apply, p, x, y))(params)
  updates, opt_state = opt.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def train_scan(apply, params, opt_state, lr, xs, ys):
  """All steps of one member as one ``lax.scan`` (``lr`` traced: compiled once)."""
  opt = optax.sgd(lr, momentum=MOMENTUM)

  def body(carry, batch):
    return train_step(apply, *carry, *batch, opt), None

  (params, opt_state), _ = jax.lax.scan(body, (params, opt_state), (xs, ys))
  return params, opt_state


def _copies(tree, n):
  """``n`` independent device copies of a pytree (donation consumes them).

  Made with ``device_put`` from host arrays: no eager op, so nothing to compile.
  """
  host = jax.device_get(tree)
  return [jax.tree.map(lambda a: jax.device_put(np.array(a)), host) for _ in range(n)]


def _stack(trees):
  return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *trees)


def sequential_scans(w: Work):
  """Case 2: the N members one after another, each one compiled ``lax.scan``."""
  fn = jax.jit(lambda p, o, lr, xs, ys: train_scan(w.apply, p, o, lr, xs, ys),
               donate_argnums=(0, 1))
  opt_init = jax.jit(optax.sgd(0.1, momentum=MOMENTUM).init)
  states = [(p, opt_init(p)) for p in _copies(w.init_params, len(w.lrs))]
  lrs = [jax.device_put(np.float32(lr)) for lr in w.lrs]
  t0 = time.perf_counter()
  compiled = fn.lower(*states[0], lrs[0], w.xs, w.ys).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  outs = [compiled(p, o, lr, w.xs, w.ys)[0] for (p, o), lr in zip(states, lrs)]
  jax.block_until_ready(outs)
  train_s = time.perf_counter() - t0
  return Outcome(_stack(outs), train_s, compile_s)


def python_loop(w: Work):
  """Case 3: the Flax/Optax habit: one jitted step, a Python loop over batches.

  ``optax.inject_hyperparams`` puts the LR in the optimizer state, so one
  compiled step serves every member; batches are device arrays split up front.
  """
  opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=MOMENTUM)
  step = jax.jit(lambda p, o, x, y: train_step(w.apply, p, o, x, y, opt),
                 donate_argnums=(0, 1))
  # One device array per batch, made once, so the loop does nothing but step.
  batches = [(jax.device_put(x), jax.device_put(y))
             for x, y in zip(np.asarray(w.xs), np.asarray(w.ys))]
  opt_init = jax.jit(opt.init)

  def member_state(p, lr):
    o = opt_init(p)
    o.hyperparams["learning_rate"] = jax.device_put(np.float32(lr))
    return p, o

  states = [member_state(p, lr) for p, lr in zip(_copies(w.init_params, len(w.lrs)), w.lrs)]
  t0 = time.perf_counter()
  compiled = step.lower(*states[0], *batches[0]).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  outs = []
  for p, o in states:
    for x, y in batches:
      p, o = compiled(p, o, x, y)
    outs.append(p)
  jax.block_until_ready(outs)
  train_s = time.perf_counter() - t0
  return Outcome(_stack(outs), train_s, compile_s)


def vmapped_scan_fn(apply):
  """``jit(vmap(lax.scan))``: ``(params, opt_state, lrs, xs, ys)`` with member-stacked
  state and LRs, the batches shared; the state buffers are donated."""
  return jax.jit(jax.vmap(lambda p, o, lr, xs, ys: train_scan(apply, p, o, lr, xs, ys),
                          in_axes=(0, 0, 0, None, None)), donate_argnums=(0, 1))


def vmapped_scan(w: Work):
  """Case 4: a hand-written ``jit(vmap(lax.scan))`` over the N members (input shared)."""
  n = len(w.lrs)
  fn = vmapped_scan_fn(w.apply)
  params = jax.tree.map(lambda a: jax.device_put(np.repeat(np.asarray(a)[None], n, 0)),
                        w.init_params)
  opt_state = jax.jit(jax.vmap(optax.sgd(0.1, momentum=MOMENTUM).init))(params)
  lrs = jax.device_put(np.asarray(w.lrs, np.float32))
  t0 = time.perf_counter()
  compiled = fn.lower(params, opt_state, lrs, w.xs, w.ys).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  out = compiled(params, opt_state, lrs, w.xs, w.ys)[0]
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
