"""The probe behind ``lrjax.engine.devices`` and the CPU vmap width (benchmarks/NOTES.md).

A hand-written 64-256-256-10 MLP with momentum SGD on random data, no lrjax code,
so it isolates what XLA:CPU does with N members:

  scans: N members one after another, each one compiled ``lax.scan`` (1 device);
  grid:  N members split over D CPU devices (``shard_map``), each device running
         ``lax.map`` over slices of W members, vmapped within a slice.

Prints ms per member-step and the process's CPU utilisation. XLA flags come from
the environment, e.g. XLA_FLAGS=--xla_cpu_use_onednn=true. From the repository root:

  python benchmarks/studies/cpu_parallel_study.py --mode scans --batch 32
  python benchmarks/studies/cpu_parallel_study.py --mode grid --devices 2 --width 1 --batch 32
"""
import argparse
import resource
import time

import jax


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--mode", choices=["scans", "grid"], default="grid")
  ap.add_argument("--members", type=int, default=64)
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--steps", type=int, default=40)
  ap.add_argument("--devices", type=int, default=2)
  ap.add_argument("--width", type=int, default=1)
  args = ap.parse_args()
  jax.config.update("jax_num_cpu_devices", args.devices)
  import jax.numpy as jnp  # noqa: PLC0415 - after the device count is set
  import numpy as np  # noqa: PLC0415
  import optax  # noqa: PLC0415
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: PLC0415

  n, b, steps, w = args.members, args.batch, args.steps, args.width
  sizes = [64, 256, 256, 10]
  key = jax.random.key(0)
  keys = jax.random.split(key, 3)
  p0 = [(jax.random.normal(keys[i], (sizes[i], sizes[i + 1])) / np.sqrt(sizes[i]),
         jnp.zeros(sizes[i + 1])) for i in range(3)]
  xs = jax.random.normal(key, (steps, b, 64))
  ys = jax.random.randint(key, (steps, b), 0, 10)

  def loss(p, x, y):
    h = x
    for i, (kernel, bias) in enumerate(p):
      h = h @ kernel + bias
      h = jax.nn.relu(h) if i < 2 else h
    return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()

  def step(p, m, lr, x, y):
    g = jax.grad(loss)(p, x, y)
    m = jax.tree.map(lambda m, g: 0.9 * m + g, m, g)
    return jax.tree.map(lambda p, m: p - lr * m, p, m), m

  def one_member(p, m, lr):
    return jax.lax.scan(lambda c, xy: (step(*c, lr, *xy), None), (p, m), (xs, ys))[0]

  lrs = jnp.logspace(-3, -0.5, n)
  if args.mode == "scans":
    f = jax.jit(one_member)
    m0 = jax.tree.map(jnp.zeros_like, p0)
    run = lambda: [f(p0, m0, lr) for lr in lrs]
  else:
    def slice_(a):
      p, m, lr = a
      if w == 1:  # one member, no member axis (as the engine's width-1 slices)
        p, m, lr = jax.tree.map(lambda v: v[0], (p, m, lr))
        out = jax.lax.scan(lambda c, xy: (step(*c, lr, *xy), None), (p, m), (xs, ys))[0]
        return jax.tree.map(lambda v: v[None], out)
      vstep = jax.vmap(step, in_axes=(0, 0, 0, None, None))
      return jax.lax.scan(lambda c, xy: (vstep(*c, lr, *xy), None), (p, m), (xs, ys))[0]

    def local(p, m, lr):
      k = lr.shape[0]
      r = lambda a: a.reshape((k // w, w) + a.shape[1:])
      out = jax.lax.map(slice_, jax.tree.map(r, (p, m, lr)))
      return jax.tree.map(lambda a: a.reshape((k,) + a.shape[2:]), out)

    mesh = Mesh(np.array(jax.devices()), ("m",))
    f = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("m"), out_specs=P("m")))
    stacked = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), p0)
    args_ = jax.device_put((stacked, jax.tree.map(jnp.zeros_like, stacked), lrs),
                           NamedSharding(mesh, P("m")))
    run = lambda: f(*args_)
  jax.block_until_ready(run())  # compile and first execution
  r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  jax.block_until_ready(run())
  dt = time.perf_counter() - t0
  r1 = resource.getrusage(resource.RUSAGE_SELF)
  cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
  where = "1 device" if args.mode == "scans" else f"{args.devices} devices, width {w}"
  print(f"{args.mode} N={n} B={b} ({where}): {dt * 1e3 / (n * steps):.3f} ms/member-step, "
        f"CPU utilisation {cpu / dt:.2f} cores")


if __name__ == "__main__":
  main()
