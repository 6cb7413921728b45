"""Draws every lrjax schedule into one picture, docs/schedules.png.

Run: .venv/bin/python scripts/plot_schedules.py [--out docs/schedules.png]
"""
import argparse
import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lrjax import schedules as S  # noqa: E402
from lrjax import transforms  # noqa: E402

STEPS = 300


def panels():
  """(title, [(label, schedule)]) for every schedule in the catalog."""
  lr = 0.1
  cyc = dict(base_value=0.01, max_value=lr, step_size_up=40)
  return [
      ("constant", [("constant(0.1)", S.constant(lr))]),
      ("step", [("step_size=60, gamma=0.5", S.step(lr, 60, 0.5))]),
      ("multistep", [("milestones=(100, 200)", S.multistep(lr, (100, 200)))]),
      ("piecewise_constant", [("{50: 0.5, 150: 0.2}",
                               S.piecewise_constant(lr, {50: 0.5, 150: 0.2}))]),
      ("exponential", [("rate 0.5 / 60 steps", S.exponential(lr, 0.5, 60)),
                       ("staircase, end_value", S.exponential(lr, 0.5, 60, True,
                                                              end_value=0.02))]),
      ("inverse_time", [("rate 1 / 50 steps", S.inverse_time(lr, 1.0, 50)),
                        ("staircase", S.inverse_time(lr, 1.0, 50, True))]),
      ("polynomial", [("power 2", S.polynomial(lr, 0.001, 2.0, 200)),
                      ("power 1, cycle", S.polynomial(lr, 0.001, 1.0, 80, cycle=True))]),
      ("linear", [("0.1 -> 0.01 in 200", S.linear(lr, 0.01, 200))]),
      ("cosine", [("alpha=0", S.cosine(lr, 250)),
                  ("alpha=0.2, exponent=2", S.cosine(lr, 250, 0.2, 2.0))]),
      ("cosine_restarts", [("t_mul=1", S.cosine_restarts(lr, 60)),
                           ("t_mul=2, m_mul=0.7", S.cosine_restarts(lr, 40, 2.0, 0.7))]),
      ("onecycle", [("cos", S.onecycle(lr, STEPS)),
                    ("linear, three_phase", S.onecycle(lr, STEPS, anneal="linear",
                                                       three_phase=True))]),
      ("cyclic", [("triangular", S.cyclic(**cyc)),
                  ("triangular2", S.cyclic(**cyc, mode="triangular2")),
                  ("exp_range 0.995", S.cyclic(**cyc, mode="exp_range", gamma=0.995))]),
      ("momentum cycling", [("onecycle_momentum", S.onecycle_momentum(STEPS)),
                            ("cyclic_momentum", S.cyclic_momentum(40))]),
      ("warmup", [("linear into cosine", S.warmup(S.cosine(lr, 250), 50)),
                  ("exponential, 1e-3 start", S.warmup(S.cosine(lr, 250), 50, 1e-3,
                                                       "exponential"))]),
      ("join", [("constant | linear | constant",
                 S.join([S.constant(lr), S.linear(lr, 0.02, 100), S.constant(0.02)],
                        [50, 150]))]),
      ("product", [("step x exponential", S.product(S.step(1.0, 100, 0.5),
                                                    S.exponential(lr, 0.99)))]),
  ]


def plateau_curve():
  """reduce_on_plateau on a synthetic validation loss: (steps, lr, loss)."""
  evals = np.arange(0, STEPS, 10)
  rng = np.random.default_rng(0)
  loss = 2.0 * np.exp(-evals / 40.0) + 0.5 + rng.normal(0, 0.03, evals.size)

  def body(state, value):
    state = transforms.plateau_step(state, value, factor=0.5, patience=2, threshold=0.02)
    return state, state.scale
  _, scales = jax.lax.scan(body, transforms.plateau_init(), jnp.asarray(loss, jnp.float32))
  return evals, 0.1 * np.asarray(scales), loss


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[1]
                                          / "docs" / "schedules.png"))
  args = parser.parse_args()
  counts = jnp.arange(STEPS)
  items = panels()
  cols = 4
  rows = -(-(len(items) + 1) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows))
  axes = axes.ravel()
  for ax, (title, curves) in zip(axes, items):
    for label, schedule in curves:
      ax.plot(counts, jax.jit(jax.vmap(schedule))(counts), label=label, lw=1.4)
    ax.set_title(title, fontsize=10, family="monospace")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
  ax = axes[len(items)]
  evals, lrs, loss = plateau_curve()
  ax.step(evals, lrs, where="post", label="LR (factor 0.5, patience 2)", lw=1.4)
  ax.set_title("transforms.reduce_on_plateau", fontsize=10, family="monospace")
  twin = ax.twinx()
  twin.plot(evals, loss, ".", color="gray", ms=3, label="val loss")
  twin.tick_params(labelsize=7)
  ax.legend(fontsize=7, loc="upper right")
  ax.grid(alpha=0.3)
  for ax in axes[len(items) + 1:]:
    ax.axis("off")
  for ax in axes[:len(items) + 1]:
    ax.tick_params(labelsize=7)
    ax.set_xlabel("count", fontsize=7, labelpad=1)
  fig.suptitle("lrjax.schedules: every schedule (value vs count)", fontsize=13)
  fig.tight_layout()
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(args.out, dpi=90)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
