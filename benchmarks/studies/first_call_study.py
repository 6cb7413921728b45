"""What a fresh executable's first call costs: lrjax's segment against `jit(vmap(scan))`.

At N = 1 a benchmark cell trains for 40-90 ms, so costs paid once per compiled
program decide it. This script trains one member for ``--segments`` epochs, one
evaluation per epoch (so the segment program is called once per epoch), and times
every call of lrjax's compiled segment (blocking on each). It does the same for
the benchmark's `vmap_scan` baseline: a fresh ``jit(vmap(lax.scan))`` over one
epoch's steps, compiled anew each round as `lrjax bench` does, called
``--segments`` times on fresh copies of the initial weights. Later calls show the
steady state; the first call's excess is the fixed cost. From the repository root:

  python benchmarks/studies/first_call_study.py --model cnn --batch 32 --rounds 3
"""
import argparse
import os
import sys
import time
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--model", default="cnn")
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--segments", type=int, default=3)
  ap.add_argument("--rounds", type=int, default=3)
  args = ap.parse_args()
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  import optax  # noqa: PLC0415

  import baselines  # noqa: PLC0415

  import lrjax  # noqa: PLC0415
  from lrjax import data, engine, models  # noqa: PLC0415
  from lrjax.engine import trainer  # noqa: PLC0415

  calls = []

  class TimedCall:
    """Wraps the compiled segment: blocks on and times each call."""

    def __init__(self, compiled):
      self.compiled = compiled

    def __call__(self, *a):
      t0 = time.perf_counter()
      out = jax.block_until_ready(self.compiled(*a))
      calls.append(time.perf_counter() - t0)
      return out

  class TimedSegment:
    """Stands in for ``Program.segment``: what it compiles is wrapped in ``TimedCall``."""

    def __init__(self, jitted):
      self.jitted = jitted

    def lower(self, *args):
      lowered = self.jitted.lower(*args)
      return types.SimpleNamespace(compile=lambda **kw: TimedCall(lowered.compile(**kw)))

  class TimedProgram(engine.Program):
    def __init__(self, *a, **k):
      super().__init__(*a, **k)
      self.segment = TimedSegment(self.segment)

  trainer.Program = TimedProgram  # engine.train builds its Program from this name
  ds = data.load("digits")
  adapter = models.get_model(args.model, ds.num_classes)
  table = lrjax.make_grid({"lr": (0.01,), "batch_size": (args.batch,), "seed": (0,)})
  settings = lrjax.TrainSettings(optimizer="momentum", epochs=args.segments,
                                 eval_every=len(ds.train))
  steps = len(ds.train) // args.batch
  order = data.example_order(0, len(ds.train), steps * args.batch).reshape(steps, args.batch)
  xs = jax.device_put(ds.train.images[order].astype(np.float32) / np.float32(255.0))
  ys = jax.device_put(np.eye(ds.num_classes, dtype=np.float32)[ds.train.labels[order]])
  init = jax.jit(lambda: adapter.init(jax.random.key(0), jnp.zeros((1,) + ds.image_shape)))()
  opt_init = jax.jit(jax.vmap(optax.sgd(0.1, momentum=baselines.MOMENTUM).init))
  lrs = jax.device_put(np.float32([0.01]))

  def fresh():
    params = jax.tree.map(lambda a: jax.device_put(np.asarray(a)[None].copy()), init)
    return params, opt_init(params)

  excess = {"lrjax": [], "vmap_scan": []}
  for r in range(args.rounds):
    calls.clear()
    engine.train(engine.build_run(adapter, ds, table, settings), progress=False)
    lrjax_calls = list(calls)
    compiled = baselines.vmapped_scan_fn(adapter.apply).lower(*fresh(), lrs, xs, ys).compile()
    vmap_calls = []
    for _ in range(args.segments):
      state = fresh()
      t0 = time.perf_counter()
      jax.block_until_ready(compiled(*state, lrs, xs, ys))
      vmap_calls.append(time.perf_counter() - t0)
    for name, ts in (("lrjax", lrjax_calls), ("vmap_scan", vmap_calls)):
      excess[name].append(ts[0] - np.median(ts[1:]))
      print(f"round {r + 1} {name:9s} calls ms: " + ", ".join(f"{t * 1e3:.1f}" for t in ts),
            flush=True)
  for name, e in excess.items():
    print(f"{args.model} B={args.batch} {name}: first call minus later calls' median, ms per "
          f"round: {', '.join(f'{x * 1e3:.1f}' for x in e)}")


if __name__ == "__main__":
  main()
