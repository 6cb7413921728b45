"""Regenerates tests/data/schedule_references.json and tests/data/plateau_references.json.

Reference values come from the real implementations, in float64:
  * PyTorch ``torch.optim.lr_scheduler`` schedulers stepped on a dummy SGD optimizer
    (the chainable, recursive form torch uses in training);
  * Keras 3 ``keras.optimizers.schedules`` with ``KERAS_BACKEND=jax`` and floatx float64;
  * Optax schedules with ``jax_enable_x64``.
Every float argument is first rounded to float32, so the float32 lrjax values are
compared against the exact formula of the very same arguments (0.9 is not a float32).

The tests read the JSON files only; torch and keras are not test dependencies.
Run (torch CPU wheel and keras installed in the venv for this script only):

  KERAS_BACKEND=jax .venv/bin/python scripts/make_schedule_references.py
"""
import json
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

keras.config.set_floatx("float64")
OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data"


def f32(x):
  """Rounds a Python float to the nearest float32, returned as a Python float."""
  return float(np.float32(x))


def spec(schedule, /, **kwargs):
  return {"schedule": schedule, "kwargs": kwargs}


CASES = []


def add(name, source, lrjax_spec, counts, values, momentum=None):
  case = {"name": name, "source": source, "spec": lrjax_spec,
          "counts": [int(c) for c in counts], "values": [float(v) for v in values]}
  if momentum is not None:
    case["momentum"] = momentum
  CASES.append(case)


# ---------------------------------------------------------------- torch helpers
def torch_run(make, steps, lr, momentum_key=None):
  """Steps a torch scheduler; returns lrs (and momenta) at counts 0..steps."""
  param = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.SGD([param], lr=lr, momentum=0.9)
  sched = make(opt)
  lrs, moms = [], []
  for t in range(steps + 1):
    lrs.append(opt.param_groups[0]["lr"])
    moms.append(opt.param_groups[0]["momentum"])
    if t < steps:
      opt.step()
      sched.step()
  return (lrs, moms) if momentum_key else lrs


def torch_cases():
  S = torch.optim.lr_scheduler
  lr = f32(0.1)
  n = 60
  counts = range(n + 1)
  for step_size, gamma in [(7, f32(0.5)), (1, f32(0.9)), (10, f32(0.1))]:
    add(f"torch_step_{step_size}_{gamma:.3g}", "torch StepLR",
        spec("step", init_value=lr, step_size=step_size, gamma=gamma), counts,
        torch_run(lambda o: S.StepLR(o, step_size, gamma), n, lr))
  for ms, gamma in [([10, 25, 40], f32(0.1)), ([5, 5, 30], f32(0.5)), ([0, 70], f32(0.3))]:
    add(f"torch_multistep_{'_'.join(map(str, ms))}", "torch MultiStepLR (repeated milestone "
        "decays twice)", spec("multistep", init_value=lr, milestones=ms, gamma=gamma),
        counts, torch_run(lambda o: S.MultiStepLR(o, ms, gamma), n, lr))
  gamma = f32(0.95)
  add("torch_exponential", "torch ExponentialLR",
      spec("exponential", init_value=lr, decay_rate=gamma), counts,
      torch_run(lambda o: S.ExponentialLR(o, gamma), n, lr))
  for total, power in [(40, 1.0), (40, 2.0), (25, f32(0.5))]:
    add(f"torch_polynomial_{total}_{power:.3g}", "torch PolynomialLR (end value 0; "
        "count past total_iters held)",
        spec("polynomial", init_value=lr, end_value=0.0, power=power, decay_steps=total),
        counts, torch_run(lambda o: S.PolynomialLR(o, total, power), n, lr))
  for sf, ef, total in [(f32(0.1), 1.0, 20), (1.0, f32(0.05), 30)]:
    add(f"torch_linear_{sf:.3g}_{ef:.3g}", "torch LinearLR",
        spec("linear", init_value=lr * sf, end_value=lr * ef, transition_steps=total),
        counts, torch_run(lambda o: S.LinearLR(o, sf, ef, total), n, lr))
  for t_max, eta_min in [(50, 0.0), (30, f32(0.001))]:
    # Chainable (recursive) form, compared only up to T_max: after T_max torch
    # follows the cosine back up while lrjax/Optax hold. Up to T_max it agrees with
    # torch's closed form to ~1e-15 (checked below).
    vals = torch_run(lambda o: S.CosineAnnealingLR(o, t_max, eta_min), t_max, lr)
    closed = [eta_min + (lr - eta_min) * (1 + np.cos(np.pi * t / t_max)) / 2
              for t in range(t_max + 1)]
    assert np.allclose(vals, closed, rtol=1e-12, atol=1e-15)
    add(f"torch_cosine_{t_max}_{eta_min:.3g}", "torch CosineAnnealingLR, chainable form, "
        "counts 0..T_max", spec("cosine", init_value=lr, decay_steps=t_max,
                                alpha=eta_min / lr), range(t_max + 1), vals)
  for t0, t_mult, eta_min in [(10, 1, 0.0), (10, 2, f32(0.001)), (3, 3, 0.0)]:
    add(f"torch_cosine_restarts_{t0}_{t_mult}", "torch CosineAnnealingWarmRestarts",
        spec("cosine_restarts", init_value=lr, first_decay_steps=t0, t_mul=t_mult,
             alpha=eta_min / lr), range(81),
        torch_run(lambda o: S.CosineAnnealingWarmRestarts(o, t0, t_mult, eta_min), 80, lr))
  for anneal, three, pct, total in [("cos", False, f32(0.3), 100), ("linear", False,
                                    f32(0.25), 50), ("cos", True, f32(0.3), 60),
                                    ("linear", True, f32(0.4), 45), ("cos", False,
                                                                     f32(0.05), 20)]:
    kw = dict(total_steps=total, pct_start=pct, anneal=anneal, three_phase=three)
    lrs, moms = torch_run(lambda o: S.OneCycleLR(
        o, lr, total_steps=total, pct_start=pct, anneal_strategy=anneal,
        three_phase=three, div_factor=f32(25.0), final_div_factor=f32(1e4),
        base_momentum=f32(0.85), max_momentum=f32(0.95)), total - 1, lr, True)
    # torch raises past total_steps; lrjax holds the value of the last step.
    past = [total - 1 + 1, total + 20]
    add(f"torch_onecycle_{anneal}_{three}_{total}", "torch OneCycleLR (counts past the end: "
        "lrjax holds the last value)", spec("onecycle", max_value=lr, **kw),
        list(range(total)) + past, lrs + [lrs[-1]] * 2,
        momentum={"spec": spec("onecycle_momentum", base_momentum=f32(0.85),
                               max_momentum=f32(0.95), **kw),
                  "values": moms + [moms[-1]] * 2})
  for mode, up, down, gamma in [("triangular", 10, None, 1.0), ("triangular2", 8, 4, 1.0),
                                ("exp_range", 5, 15, f32(0.99)), ("exp_range", 6, None,
                                                                  f32(0.9))]:
    base, top = f32(0.01), lr
    kw = dict(step_size_up=up, step_size_down=down, mode=mode, gamma=gamma)
    lrs, moms = torch_run(lambda o: S.CyclicLR(
        o, base, top, step_size_up=up, step_size_down=down, mode=mode, gamma=gamma,
        base_momentum=f32(0.8), max_momentum=f32(0.9)), 90, lr, True)
    add(f"torch_cyclic_{mode}_{up}_{down}", "torch CyclicLR",
        spec("cyclic", base_value=base, max_value=top, **kw), range(91), lrs,
        momentum={"spec": spec("cyclic_momentum", base_momentum=f32(0.8),
                               max_momentum=f32(0.9), **kw), "values": moms})
  # SequentialLR: warmup with LinearLR, then ExponentialLR restarted at the milestone.
  sf, gamma, w = f32(0.1), f32(0.9), 5
  add("torch_sequential", "torch SequentialLR([LinearLR, ExponentialLR], [5])",
      spec("join", schedules=[spec("linear", init_value=lr * sf, end_value=lr,
                                   transition_steps=w),
                              spec("exponential", init_value=lr, decay_rate=gamma)],
           boundaries=[w]), counts,
      torch_run(lambda o: S.SequentialLR(o, [S.LinearLR(o, sf, 1.0, w),
                                             S.ExponentialLR(o, gamma)], [w]), n, lr))
  # ChainedScheduler: StepLR and ExponentialLR multiply.
  g1, g2 = f32(0.5), f32(0.98)
  add("torch_chained", "torch ChainedScheduler([StepLR(10, 0.5), ExponentialLR(0.98)])",
      spec("product", schedules=[spec("step", init_value=1.0, step_size=10, gamma=g1),
                                 spec("exponential", init_value=lr, decay_rate=g2)]),
      counts, torch_run(lambda o: S.ChainedScheduler([S.StepLR(o, 10, g1),
                                                      S.ExponentialLR(o, g2)]), n, lr))


# ---------------------------------------------------------------- keras
def keras_cases():
  K = keras.optimizers.schedules
  lr = f32(0.1)

  def run(schedule, counts):
    # One jitted, vmapped call: keras ops on the jax backend are slow eagerly.
    values = jax.jit(jax.vmap(schedule))(np.asarray(counts, np.int64))
    return [float(v) for v in np.asarray(values, np.float64)]

  counts = list(range(0, 121, 3)) + [1000]
  for rate, steps, stair in [(f32(0.9), 10, False), (f32(0.5), 7, True), (f32(1.05), 20,
                                                                          False)]:
    add(f"keras_exponential_{rate:.3g}_{steps}_{stair}", "keras ExponentialDecay",
        spec("exponential", init_value=lr, decay_rate=rate, transition_steps=steps,
             staircase=stair), counts, run(K.ExponentialDecay(lr, steps, rate, stair), counts))
  for rate, steps, stair in [(f32(0.5), 10, False), (f32(2.0), 7, True)]:
    add(f"keras_inverse_time_{steps}_{stair}", "keras InverseTimeDecay",
        spec("inverse_time", init_value=lr, decay_rate=rate, decay_steps=steps,
             staircase=stair), counts, run(K.InverseTimeDecay(lr, steps, rate, stair), counts))
  for end, power, steps, cyc in [(f32(0.001), 1.0, 30, False), (f32(0.001), 2.0, 30, True),
                                 (0.0, f32(0.5), 25, True), (f32(0.01), 3.0, 50, False)]:
    add(f"keras_polynomial_{power:.3g}_{steps}_{cyc}", "keras PolynomialDecay",
        spec("polynomial", init_value=lr, end_value=end, power=power, decay_steps=steps,
             cycle=cyc), counts, run(K.PolynomialDecay(lr, steps, end, power, cyc), counts))
  bounds, values = [10, 30, 60], [lr, f32(0.05), f32(0.01), f32(0.001)]
  pairs = [[b + 1, values[i + 1] / values[i]] for i, b in enumerate(bounds)]
  every = list(range(0, 70)) + [1000]
  add("keras_piecewise_constant", "keras PiecewiseConstantDecay (switches at step > "
      "boundary, so lrjax boundaries are b + 1)",
      spec("piecewise_constant", init_value=lr, boundaries_and_scales=pairs), every,
      run(K.PiecewiseConstantDecay(bounds, values), every))
  every = list(range(0, 160)) + [1000]
  for t0, t_mul, m_mul, alpha in [(10, 1.0, 1.0, 0.0), (10, 2.0, f32(0.5), f32(0.1)),
                                  (10, f32(1.5), f32(0.8), 0.0), (7, 1.0, f32(0.9),
                                                                  f32(0.01))]:
    # Keras's float64 path evaluates ops.cos at float32 precision (errors ~1e-8),
    # too coarse for rtol 1e-6 near a cycle's end. Store a float64 NumPy transcription
    # of Keras's own formula instead, after checking it against Keras.
    keras_values = run(K.CosineDecayRestarts(lr, t0, t_mul, m_mul, alpha), every)
    exact = keras_restarts_float64(lr, t0, t_mul, m_mul, alpha, every)
    np.testing.assert_allclose(keras_values, exact, rtol=0, atol=1e-7 * lr)
    add(f"keras_cosine_restarts_{t0}_{t_mul:.3g}_{m_mul:.3g}", "keras CosineDecayRestarts "
        "(its formula in float64 NumPy; matches keras to 1e-7 x init)",
        spec("cosine_restarts", init_value=lr, first_decay_steps=t0, t_mul=t_mul,
             m_mul=m_mul, alpha=alpha), every, exact)


def keras_restarts_float64(lr, t0, t_mul, m_mul, alpha, counts):
  """keras CosineDecayRestarts.__call__, line by line, in float64."""
  out = []
  for step in counts:
    fraction = step / t0
    if t_mul == 1.0:
      i = np.floor(fraction)
      fraction -= i
    else:
      i = np.floor(np.log(1.0 - fraction * (1.0 - t_mul)) / np.log(t_mul))
      fraction = (fraction - (1.0 - t_mul ** i) / (1.0 - t_mul)) / t_mul ** i
    decayed = 0.5 * m_mul ** i * (1.0 + np.cos(np.pi * fraction))
    out.append(lr * ((1 - alpha) * decayed + alpha))
  return out


# ---------------------------------------------------------------- optax
def optax_cases():
  lr = f32(0.1)
  counts = list(range(0, 121, 2)) + [500, 10**6]
  run = lambda s: [float(s(np.float64(c))) for c in counts]
  add("optax_constant", "optax constant_schedule", spec("constant", value=lr), counts,
      run(optax.constant_schedule(lr)))
  for kw in [dict(transition_steps=10, decay_rate=f32(0.9)),
             dict(transition_steps=8, decay_rate=f32(0.5), staircase=True,
                  transition_begin=20),
             dict(transition_steps=5, decay_rate=f32(0.7), end_value=f32(0.01)),
             dict(transition_steps=10, decay_rate=f32(1.1), end_value=f32(0.3),
                  transition_begin=3)]:
    name = "_".join(f"{k}{v}" for k, v in kw.items())
    add(f"optax_exponential_{name}", "optax exponential_decay",
        spec("exponential", init_value=lr, **kw), counts,
        run(optax.exponential_decay(lr, **kw)))
  pairs = {15: f32(0.5), 40: f32(0.1), 41: 0.0}
  add("optax_piecewise_constant", "optax piecewise_constant_schedule",
      spec("piecewise_constant", init_value=lr,
           boundaries_and_scales=[[b, s] for b, s in pairs.items()]), counts,
      run(optax.piecewise_constant_schedule(lr, pairs)))
  for init, end, steps in [(0.0, lr, 30), (lr, f32(1e-5), 77)]:
    add(f"optax_linear_{steps}", "optax linear_schedule",
        spec("linear", init_value=init, end_value=end, transition_steps=steps), counts,
        run(optax.linear_schedule(init, end, steps)))
  for steps, alpha, exponent in [(100, 0.0, 1.0), (50, f32(0.1), 1.0), (80, 0.0, 2.0),
                                 (33, f32(0.05), f32(0.5))]:
    add(f"optax_cosine_{steps}_{alpha:.3g}_{exponent:.3g}", "optax cosine_decay_schedule",
        spec("cosine", init_value=lr, decay_steps=steps, alpha=alpha, exponent=exponent),
        counts, run(optax.cosine_decay_schedule(lr, steps, alpha, exponent)))
  init, peak, w, d, end = f32(0.001), lr, 10, 100, f32(0.002)
  add("optax_warmup_cosine", "optax warmup_cosine_decay_schedule",
      spec("warmup", schedule=spec("cosine", init_value=peak, decay_steps=d - w,
                                   alpha=end / peak), warmup_steps=w, start_value=init),
      counts, run(optax.warmup_cosine_decay_schedule(init, peak, w, d, end)))
  add("optax_warmup_exponential", "optax warmup_exponential_decay_schedule",
      spec("warmup", schedule=spec("exponential", init_value=peak, decay_rate=f32(0.5),
                                   transition_steps=20, transition_begin=5, staircase=True),
           warmup_steps=12, start_value=0.0), counts,
      run(optax.warmup_exponential_decay_schedule(0.0, peak, 12, 20, f32(0.5), 5, True)))
  add("optax_join", "optax join_schedules",
      spec("join", schedules=[spec("constant", value=lr), spec("linear", init_value=lr,
                                                               end_value=0.0,
                                                               transition_steps=30),
                              spec("constant", value=f32(0.003))], boundaries=[20, 60]),
      counts, run(optax.join_schedules([optax.constant_schedule(lr),
                                        optax.linear_schedule(lr, 0.0, 30),
                                        optax.constant_schedule(f32(0.003))], [20, 60])))


# ---------------------------------------------------------------- plateau
def plateau_cases():
  rng = np.random.default_rng(0)
  n = 80
  trend = 2.0 * np.exp(-np.arange(n) / 15.0) + 0.5
  losses = {
      "decay_then_noise": trend + rng.normal(0, 0.02, n),
      "noisy_flat": 1.0 + rng.normal(0, 0.05, n),
      "accuracy_rising": 1.0 - trend / 3.0 + rng.normal(0, 0.01, n),
      "with_nan": np.where(np.arange(n) % 17 == 16, np.nan, trend + rng.normal(0, 0.02, n)),
  }
  losses = {k: [float(np.float32(x)) for x in v] for k, v in losses.items()}
  settings = [
      ("decay_then_noise", dict(mode="min", factor=0.1, patience=3)),
      ("decay_then_noise", dict(mode="min", factor=0.5, patience=2, threshold=0.01,
                                threshold_mode="abs", cooldown=2)),
      ("noisy_flat", dict(mode="min", factor=0.5, patience=4, threshold=0.001, cooldown=3,
                          min_lr=0.01)),
      ("noisy_flat", dict(mode="min", factor=0.5, patience=0)),
      ("accuracy_rising", dict(mode="max", factor=0.3, patience=2)),
      ("accuracy_rising", dict(mode="max", factor=0.5, patience=1, threshold=0.02,
                               threshold_mode="abs")),
      ("with_nan", dict(mode="min", factor=0.2, patience=2, cooldown=1)),
  ]
  cases = []
  for base_lr in (0.1, 1e-7):  # 1e-7: torch's eps=1e-8 stops reductions after three
    for loss_name, kw in settings:
      kw = {k: (f32(v) if isinstance(v, float) else v) for k, v in kw.items()}
      param = torch.nn.Parameter(torch.zeros(1))
      opt = torch.optim.SGD([param], lr=base_lr)
      sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
      lrs = []
      for v in losses[loss_name]:
        sched.step(v)
        lrs.append(opt.param_groups[0]["lr"])
      cases.append({"loss": loss_name, "base_lr": base_lr, "kwargs": kw, "lrs": lrs})
  return {"losses": losses, "cases": cases}


def main():
  torch_cases()
  keras_cases()
  optax_cases()
  versions = {"torch": torch.__version__, "keras": keras.__version__,
              "optax": optax.__version__, "jax": jax.__version__, "numpy": np.__version__}
  OUT.mkdir(parents=True, exist_ok=True)
  with open(OUT / "schedule_references.json", "w") as f:
    json.dump({"versions": versions, "generator": "scripts/make_schedule_references.py",
               "cases": CASES}, f, indent=None, separators=(",", ":"))
  plateau = plateau_cases()
  with open(OUT / "plateau_references.json", "w") as f:
    json.dump({"versions": versions, "generator": "scripts/make_schedule_references.py",
               "semantics": "torch ReduceLROnPlateau; lrs[i] is the LR after step(loss[i])",
               **plateau}, f, indent=None, separators=(",", ":"))
  print(f"wrote {len(CASES)} schedule cases and {len(plateau['cases'])} plateau cases")


if __name__ == "__main__":
  main()
