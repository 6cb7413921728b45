"""Why a small CNN training step is slow inside ``lax.scan`` on XLA:CPU, and what fixes it.

Times one SGD-momentum training step of lrjax's CNN built on ``nn.Conv`` (Conv(32,
3x3) -> relu -> Conv(64, 3x3, stride 2) -> relu -> mean pool -> Dense(10), 8x8x1
inputs; ``lrjax.models.CNN`` has used ``PatchConv`` since this study) for N
members vmapped over their parameters with the input shared (the engine's inner
vmap), in several forms side by side in one process, compile time excluded:

  loop          the step jitted alone (state donated), a Python loop over steps
  scan          ``lax.scan`` over the same steps inside one jit
  scan_u2/4/8   the same with ``unroll=2/4/8``
  patch_scan    ``scan`` with every ``nn.Conv`` replaced by ``lrjax.models.PatchConv``
                (im2col by strided slices + one matmul; same parameters)
  patches_scan  the same with im2col by ``lax.conv_general_dilated_patches``
  patch_loop    ``loop`` with ``PatchConv``
  mlp_loop, mlp_scan   a 64-256-256-10 MLP, to see what an XLA flag costs it

Forms are timed in interleaved rounds (every form once per round), and the
median and min ms per step over the rounds are reported with the ratio to
``loop``'s median. ``--flags`` reruns chosen forms in subprocesses with
``XLA_FLAGS`` set (each subprocess times its own ``loop`` too, so ratios stay
within one process). ``--check`` verifies ``PatchConv`` against ``nn.Conv``.

Diagnosis (``--dump-hlo``): in the optimised HLO of the scanned step the three
backward convolutions (input gradient ``b01f_01oi->b01f``, kernel gradients
``f01b_i01o->01bf``) are compiled as ``*_elemental_kernel`` loop nests, while
the jitted step has them canonicalised to ``b01f_01io->b01f`` Eigen
convolutions; the forward convolutions are canonical in both.

From the repository root:
  python benchmarks/studies/conv_scan_study.py --check
  python benchmarks/studies/conv_scan_study.py --members 1,8,64 --batch 32,128
  python benchmarks/studies/conv_scan_study.py --members 8 --batch 32 \
      --forms loop,scan,patch_scan --flags default
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time

FLAG_SETS = {
    "default": [
        "",  # the same forms in a subprocess without flags, for reference
        "--xla_cpu_use_thunk_runtime=false",
        "--xla_cpu_use_xnnpack=true",
        "--xla_cpu_use_onednn=true",
        "--xla_cpu_multi_thread_eigen=false",
        "--xla_cpu_enable_fast_math=true",
        "--xla_cpu_use_fusion_emitters=false",
    ],
}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--members", default="1,8,64", help="comma-separated N")
  p.add_argument("--batch", default="32,128", help="comma-separated batch sizes")
  p.add_argument("--forms", default="loop,scan,scan_u2,scan_u4,scan_u8,patch_scan,"
                 "patches_scan,patch_loop")
  p.add_argument("--steps", type=int, default=8, help="steps per timed call (scan length)")
  p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
  p.add_argument("--slow-s", type=float, default=15.0,
                 help="a form whose one call takes longer is timed once, not every round")
  p.add_argument("--flags", default="",
                 help="'default' (the FLAG_SETS list) or ';'-separated XLA_FLAGS strings, "
                 "each run in a subprocess with --flag-forms")
  p.add_argument("--flag-forms", default="loop,scan,patch_scan,mlp_loop,mlp_scan")
  p.add_argument("--flag-members", default="8", help="N for the flag subprocesses")
  p.add_argument("--flag-batch", default="32", help="batch sizes for the flag subprocesses")
  p.add_argument("--check", action="store_true", help="PatchConv == nn.Conv checks, then exit")
  p.add_argument("--list-flags", action="store_true",
                 help="print the xla_cpu_* flag names found in the jaxlib binaries")
  p.add_argument("--dump-hlo", default="", help="dir: dump optimised HLO of loop/scan steps")
  p.add_argument("--json", default="", help="write the results here")
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  return p.parse_args(argv)


def list_flags():
  """The ``xla_cpu_*`` names in the jaxlib shared objects (``strings | grep``)."""
  import jaxlib
  names = set()
  for so in glob.glob(os.path.join(os.path.dirname(jaxlib.__file__), "*.so")):
    data = open(so, "rb").read()
    names.update(m.decode() for m in re.findall(rb"xla_cpu_[a-z0-9_]+", data))
  return sorted(n for n in names if len(n) < 60)


# ---------------------------------------------------------------------------- models


def build(form, n, batch, steps):
  """Returns ``(run, compile_s, state, batches)``: ``run(state, batches) -> state`` runs ``steps`` steps."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import optax

  from lrjax.models import MLP, PatchConv

  class ConvCNN(nn.Module):
    """lrjax's CNN on ``nn.Conv`` (``lrjax.models.CNN`` itself now uses ``PatchConv``)."""

    @nn.compact
    def __call__(self, x):
      for i, ch in enumerate((32, 64)):
        x = nn.relu(nn.Conv(ch, (3, 3), strides=(1, 1) if i == 0 else (2, 2))(x))
      x = jnp.mean(x, axis=(-3, -2))
      return nn.Dense(10)(x)

  class PatchCNN(nn.Module):
    """``ConvCNN`` with PatchConv named like nn.Conv (same parameter tree)."""
    im2col: str = "slices"

    @nn.compact
    def __call__(self, x):
      for i, ch in enumerate((32, 64)):
        x = nn.relu(PatchConv(ch, (3, 3), strides=1 if i == 0 else 2, im2col=self.im2col,
                              name=f"Conv_{i}")(x))
      x = jnp.mean(x, axis=(-3, -2))
      return nn.Dense(10)(x)

  if form.startswith("mlp"):
    model = MLP()
  elif form.startswith("patches"):
    model = PatchCNN(im2col="patches")
  elif form.startswith("patch"):
    model = PatchCNN()
  else:
    model = ConvCNN()
  kind = form.split("_", 1)[1] if "_" in form and not form.startswith("scan") else form
  kx, ky, kp = jax.random.split(jax.random.key(0), 3)
  xs = jax.random.uniform(kx, (steps, batch, 8, 8, 1))
  ys = jax.random.randint(ky, (steps, batch), 0, 10)
  lrs = jnp.logspace(-3, -1, n)
  opt = optax.inject_hyperparams(optax.sgd, hyperparam_dtype=jnp.float32)(
      learning_rate=0.01, momentum=0.9)
  params = jax.vmap(lambda k: model.init(k, xs[0])["params"])(jax.random.split(kp, n))

  def init_opt(p, lr):
    s = opt.init(p)
    s.hyperparams["learning_rate"] = lr
    return s

  state = (params, jax.vmap(init_opt)(params, lrs))

  def member_step(p, o, x, y):
    def loss_fn(p):
      logits = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, g = jax.value_and_grad(loss_fn)(p)
    u, o = opt.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  def step(st, xy):
    p, o, loss = jax.vmap(member_step, in_axes=(0, 0, None, None))(*st, *xy)
    return (p, o), loss

  t0 = time.perf_counter()
  if kind == "loop":
    f = jax.jit(step, donate_argnums=0).lower(state, (xs[0], ys[0])).compile()
    batches = [(xs[i], ys[i]) for i in range(steps)]

    def run(st, batches):
      for b in batches:
        st, _ = f(st, b)
      return st
  else:
    unroll = int(kind[len("scan_u"):]) if kind.startswith("scan_u") else 1
    f = jax.jit(lambda st, b: jax.lax.scan(step, st, b, unroll=unroll)[0],
                donate_argnums=0).lower(state, (xs, ys)).compile()
    batches = (xs, ys)
    run = f
  return run, time.perf_counter() - t0, state, batches


def time_cell(forms, n, batch, steps, rounds, slow_s, log):
  """Compiles every form, then times them in interleaved rounds; returns rows."""
  import jax
  built = {}
  for form in forms:
    run, compile_s, state, batches = build(form, n, batch, steps)
    t0 = time.perf_counter()
    state = jax.block_until_ready(run(state, batches))  # warm-up call
    first_s = time.perf_counter() - t0
    built[form] = dict(run=run, state=state, batches=batches, compile_s=compile_s,
                       times=[first_s / steps] if first_s > slow_s else [])
    log(f"  N={n} B={batch} {form}: built+compiled {compile_s:.1f} s, "
        f"first call {first_s / steps * 1e3:.1f} ms/step")
  for _ in range(rounds):
    for form, b in built.items():
      if b["times"] and b["times"][0] * steps > slow_s:
        continue
      t0 = time.perf_counter()
      b["state"] = jax.block_until_ready(b["run"](b["state"], b["batches"]))
      b["times"].append((time.perf_counter() - t0) / steps)
  rows = []
  for form, b in built.items():
    rows.append(dict(members=n, batch=batch, form=form, flags=os.environ.get("XLA_FLAGS", ""),
                     ms_median=1e3 * statistics.median(b["times"]),
                     ms_min=1e3 * min(b["times"]), rounds=len(b["times"]),
                     compile_s=b["compile_s"]))
  base = {r["form"]: r["ms_median"] for r in rows}
  for r in rows:
    ref = base.get("mlp_loop" if r["form"].startswith("mlp") else "loop")
    r["vs_loop"] = r["ms_median"] / ref if ref else None
  return rows


# ---------------------------------------------------------------------------- checks


def check():
  """PatchConv vs nn.Conv: forward, input and kernel gradients; and a scanned CNN run."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np

  from lrjax.models import PatchConv
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  ok = True
  for stride in (1, 2):
    for im2col in ("slices", "patches"):
      ref = nn.Conv(16, (3, 3), strides=stride, padding="SAME")
      new = PatchConv(16, (3, 3), strides=stride, padding="SAME", im2col=im2col)
      params = ref.init(jax.random.key(1), x)

      def f(p, x, mod):
        return jnp.sum(jnp.sin(mod.apply(p, x)))

      vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1)), static_argnums=2)
      outs = [jax.jit(m.apply)(params, x) for m in (ref, new)]
      grads = [vg(params, x, m) for m in (ref, new)]
      errs = [float(jnp.max(jnp.abs(a - b))) for a, b in
              zip(jax.tree.leaves((outs[0], grads[0])), jax.tree.leaves((outs[1], grads[1])))]
      close = all(np.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in
                  zip(jax.tree.leaves((outs[0], grads[0])), jax.tree.leaves((outs[1], grads[1]))))
      ok &= close
      print(f"stride {stride} im2col={im2col}: out/grad max |diff| {max(errs):.2e} "
            f"allclose(1e-5)={close}")
  # Whole training: 8 scanned PatchConv steps vs 8 looped nn.Conv steps, N=4 members.
  run_a, _, st_a, b_a = build("loop", 4, 32, 8)
  run_b, _, st_b, b_b = build("patch_scan", 4, 32, 8)
  pa, pb = run_a(st_a, b_a)[0], run_b(st_b, b_b)[0]
  err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)))
  close = all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in
              zip(jax.tree.leaves(pa), jax.tree.leaves(pb)))
  ok &= close
  print(f"8 SGD-momentum steps, N=4: patch_scan vs loop (nn.Conv) params max |diff| {err:.2e} "
        f"allclose(1e-4)={close}")
  return ok


# ---------------------------------------------------------------------------- main


def table(rows):
  out = ["| N | B | form | XLA_FLAGS | ms/step (median) | min | rounds | vs loop | compile s |",
         "|--:|--:|---|---|--:|--:|--:|--:|--:|"]
  for r in rows:
    out.append(f"| {r['members']} | {r['batch']} | {r['form']} | {r['flags'] or '-'} | "
               f"{r['ms_median']:.2f} | {r['ms_min']:.2f} | {r['rounds']} | "
               f"{r['vs_loop']:.2f} | {r['compile_s']:.1f} |")
  return "\n".join(out)


def main(argv=None):
  args = parse_args(argv)
  log = lambda s: print(s, file=sys.stderr, flush=True)
  if args.list_flags:
    print("\n".join(list_flags()))
    return 0
  if args.dump_hlo:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_dump_to={args.dump_hlo} --xla_dump_hlo_as_text")
  if args.check:
    return 0 if check() else 1
  members = [int(v) for v in args.members.split(",")]
  if not args.worker:
    log(f"load average {os.getloadavg()}")
  batches = [int(v) for v in args.batch.split(",")]
  forms = args.forms.split(",")
  rows = []
  for n in members:
    for b in batches:
      cell = time_cell(forms, n, b, args.steps, args.rounds, args.slow_s, log)
      rows += cell
      log(table(cell))  # as it goes, so an interrupted run still leaves its cells
  if args.worker:
    print(json.dumps(rows))
    return 0
  flag_sets = FLAG_SETS.get(args.flags, None)
  if flag_sets is None:
    flag_sets = [f for f in args.flags.split(";") if f]
    flag_sets = [""] + flag_sets if flag_sets else []
  for flags in flag_sets:
    log(f"XLA_FLAGS={flags}")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--members",
           args.flag_members, "--batch", args.flag_batch, "--forms", args.flag_forms, "--steps", str(args.steps),
           "--rounds", str(args.rounds), "--slow-s", str(args.slow_s)]
    proc = subprocess.run(cmd, env=dict(os.environ, XLA_FLAGS=flags), capture_output=True,
                          text=True)
    if proc.returncode:
      log(f"  failed: {proc.stderr.strip().splitlines()[-1:]}")
      continue
    rows += json.loads(proc.stdout.strip().splitlines()[-1])
  print(table(rows))
  if args.json:
    with open(args.json, "w") as fh:
      json.dump(rows, fh, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
