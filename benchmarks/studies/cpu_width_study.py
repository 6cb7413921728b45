"""The probe behind ``lrjax.engine.autotune``: train_grid's time at fixed lax.map widths.

N members of a built-in model (one batch size, momentum SGD, one validation pass),
one CPU device per core, ``vmap_width`` fixed to each width in turn, in
interleaved rounds. Prints each width's fastest and median train seconds. From the
repository root:

  python benchmarks/studies/cpu_width_study.py --model cnn --batch 32 --widths 1,2,4,8 --rounds 2
"""
import argparse

import numpy as np

import lrjax


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--model", default="mlp")
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--members", type=int, default=64)
  ap.add_argument("--epochs", type=float, default=1.0)
  ap.add_argument("--widths", default="1,2,4")
  ap.add_argument("--rounds", type=int, default=3)
  args = ap.parse_args()
  lrjax.use_cpu_cores()  # before any JAX computation
  from lrjax import data, models  # noqa: PLC0415

  ds = data.load("digits")
  adapter = models.get_model(args.model, ds.num_classes)
  table = lrjax.make_grid({"lr": lrjax.log_space(1e-3, 0.3, args.members),
                           "batch_size": (args.batch,), "seed": (0,)})
  widths = [int(w) for w in args.widths.split(",")]
  times = {w: [] for w in widths}
  for r in range(args.rounds):
    for w in widths:
      settings = lrjax.TrainSettings(optimizer="momentum", epochs=args.epochs, vmap_width=w,
                                     eval_every=int(round(args.epochs * len(ds.train))))
      times[w].append(lrjax.train_grid(adapter, ds, table, settings, progress=False)
                      .info["train_seconds"])
    print(f"round {r + 1}: " + ", ".join(f"width {w} {t[-1]:.3f} s" for w, t in times.items()),
          flush=True)
  for w, t in times.items():
    print(f"{args.model} N={args.members} B={args.batch} width {w}: fastest {min(t):.3f} s, "
          f"median {np.median(t):.3f} s")


if __name__ == "__main__":
  main()
