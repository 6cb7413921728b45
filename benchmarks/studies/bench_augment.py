"""What share of a training tick augmentation costs, for the default CNN grid of 64 members.

Trains the same 64-member CNN grid on digits twice in one process -- with
augmentation (strengths 0.5, 1, 1.5, 2: four input groups of 16 LRs) and without
(strength 0 everywhere, so no augmentation code is compiled) -- and reports

  share = (t_aug - t_plain) / t_aug

per training tick (compile excluded). From the repository root:

  python benchmarks/studies/bench_augment.py [--epochs 1] [--model cnn] [--batch 32]
"""

import argparse
import json
import sys

import lrjax
from lrjax import augment, data, models


def measure(model_name: str, batch: int, epochs: float, repeats: int) -> dict:
  ds = data.load("digits")
  model = models.get_model(model_name, ds.num_classes)
  lrs = lrjax.log_space(1e-3, 0.3, 16)
  with_aug = lrjax.make_grid({"lr": lrs, "batch_size": (batch,), "aug": (0.5, 1.0, 1.5, 2.0)})
  without = lrjax.make_grid({"lr": lrs, "batch_size": (batch,), "seed": (0, 1, 2, 3)})
  policy = augment.policy_for("digits", ds.image_shape)
  times = {"aug": [], "plain": []}
  for _ in range(repeats):  # interleaved, best of `repeats`, to resist a noisy machine
    for name, table, pol in (("aug", with_aug, policy), ("plain", without, None)):
      res = lrjax.train_grid(model, ds, table,
                             lrjax.TrainSettings(epochs=epochs, augment_policy=pol),
                             progress=False)
      ticks = res.info["num_segments"] * res.info["ticks_per_segment"]
      times[name].append(res.info["train_seconds"] / ticks)
  t_aug, t_plain = min(times["aug"]), min(times["plain"])
  return {"model": model_name, "members": len(with_aug), "batch": batch,
          "ms_per_tick_aug": 1e3 * t_aug, "ms_per_tick_plain": 1e3 * t_plain,
          "augment_share": (t_aug - t_plain) / t_aug}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="cnn")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--epochs", type=float, default=1.0)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args(argv)
  out = measure(args.model, args.batch, args.epochs, args.repeats)
  print(json.dumps(out, indent=2))
  print(f"augmentation share of a tick: {100 * out['augment_share']:.1f}% (target <= 15%)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
