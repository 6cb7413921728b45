"""Why ``PatchConv`` flattens its patches to 2-D before the matmul (XLA:CPU).

Trains lrjax's default CNN on digits as one compiled ``lax.scan`` (the benchmark's
``scans`` case, one member) in two forms, interleaved in rounds in one process:

  patches4d  ``jnp.dot(patches, kernel)`` on the ``(B, OH, OW, K)`` patches (lrjax's
             first ``PatchConv``)
  flat       ``jnp.dot(patches.reshape(-1, K), kernel)``, reshaped back (lrjax now)

Both compute the same function; autodiff turns the first form's kernel gradient
into a dot that contracts three axes, which XLA:CPU runs on a transposed copy of
the output gradient in a slow Eigen path (``f32[9,32] dot(..., rhs_contracting_dims=
{1})``). The script prints each form's kernel-gradient dots from the optimised HLO,
the largest difference of the trained parameters (0.0: same values bit for bit), and
the fastest / median seconds of each form with their ratio. From the repository
root, pinned to one core for steadier numbers:

  taskset -c 1 python benchmarks/studies/patch_matmul_study.py --batch 32 --rounds 10
"""
import argparse
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax import data
from lrjax.models import PatchConv, extract_patches

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
import baselines  # noqa: E402


def _pairs(value, n):
  """``3 -> (3, 3)``; a sequence as a tuple (how ``PatchConv`` reads ``strides``)."""
  return (value,) * n if isinstance(value, int) else tuple(value)


class PatchConv4D(PatchConv):
  """``PatchConv`` as it was: the matmul on the 4-D patches."""

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features))
    patches = extract_patches(x, (kh, kw), _pairs(self.strides, 2), self.padding)
    y = jnp.dot(patches, kernel.reshape(-1, self.features))
    return y + self.param("bias", self.bias_init, (self.features,))


class CNN(nn.Module):
  """lrjax's default CNN (``lrjax.models.CNN``) with a choice of conv layer."""

  layer: type

  @nn.compact
  def __call__(self, x):
    for i, ch in enumerate((32, 64)):
      x = nn.relu(self.layer(ch, (3, 3), strides=(1, 1) if i == 0 else (2, 2),
                             name=f"Conv_{i}")(x))
    return nn.Dense(10)(x.mean(axis=(-3, -2)))


def kernel_grad_dots(work):
  opt_state = optax.sgd(0.1, momentum=0.9).init(work.init_params)
  step = lambda p, o, lr, xs, ys: baselines.train_scan(work.apply, p, o, lr, xs, ys)
  hlo = jax.jit(step).lower(work.init_params, opt_state, jnp.float32(0.1), work.xs,
                            work.ys).compile().as_text()
  return [line.strip().split(", metadata")[0] for line in hlo.splitlines()
          if "transpose(jvp(CNN))/Conv_" in line and " dot(" in line]


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--steps", type=int, default=80)
  ap.add_argument("--rounds", type=int, default=10)
  args = ap.parse_args()
  ds = data.load("digits")
  rng = np.random.default_rng(0)
  order = rng.integers(0, len(ds.train.labels), args.steps * args.batch)
  order = order.reshape(args.steps, args.batch)
  labels = ds.train.labels[order].astype(np.int32)
  xs = jax.device_put(ds.train.images[order].astype(np.float32) / 255)
  ys = jax.device_put(np.eye(ds.num_classes, dtype=np.float32)[labels])
  works = {}
  for name, layer in (("patches4d", PatchConv4D), ("flat", PatchConv)):
    model = CNN(layer)
    params = jax.jit(lambda m=model: m.init(jax.random.key(0),
                                            jnp.zeros((1,) + ds.image_shape)))()
    works[name] = baselines.Work(apply=model.apply, init_params=params,
                                 lrs=np.array([0.05], np.float32), xs=xs, ys=ys,
                                 labels=labels)
    print(f"{name}: kernel-gradient dots")
    for line in kernel_grad_dots(works[name]):
      print("   ", line)
  trained = {name: baselines.sequential_scans(w).params for name, w in works.items()}
  diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree.leaves(trained["patches4d"]),
                             jax.tree.leaves(trained["flat"])))
  print(f"largest difference of the trained parameters: {diff}")
  times = {name: [] for name in works}
  for _ in range(args.rounds):
    for name, w in works.items():
      times[name].append(baselines.sequential_scans(w).train_s)
  for name, ts in times.items():
    print(f"{name:10s} fastest {min(ts):.4f} s  median {np.median(ts):.4f} s")
  print(f"patches4d / flat: fastest {min(times['patches4d']) / min(times['flat']):.2f}x, "
        f"median {np.median(times['patches4d']) / np.median(times['flat']):.2f}x")


if __name__ == "__main__":
  main()
