"""Which schedule? Six LR schedule families x 6 peak LRs in one program, on MNIST-1D.

constant, cosine, 1cycle, triangular cyclic, exponential decay and the plateau rule
(torch ReduceLROnPlateau on the validation loss), each at 6 peak learning rates,
SGD with momentum 0.9, batch 64, 30 epochs, 3 seeds = 108 members of a 40-128-128-10
MLP (about 2 minutes). Run it with:

  lrjax run experiments/schedules.py --workdir runs/schedules

and compare families in members.csv (final_val_acc by schedule and lr) or the
report. A quick version: `lrjax run experiments/schedules.py:runlocal --workdir runs/s`.
"""

from lrjax.experiment import default_config


def get_config(arg: str | None = None):
  config = default_config()
  config.optimizer = "momentum"
  config.optimizer_kwargs = {"momentum": 0.9}
  config.dataset = "mnist1d"
  config.model_kwargs = {"hidden": (128, 128)}
  config.epochs = 30.0
  config.eval_every = 3008  # examples: about two evaluations per epoch (plateau patience unit)
  config.schedule_kwargs = {
      "cosine": {"alpha": 0.0},
      "onecycle": {"pct_start": 0.3},
      "cyclic": {"base_value": 0.001, "step_size_up": 470, "mode": "triangular2"},
      "exponential": {"decay_rate": 0.97, "transition_steps": 47},
      "plateau": {"factor": 0.3, "patience": 2, "threshold": 0.01},
  }
  config.grid.schedule = ("constant", "cosine", "onecycle", "cyclic", "exponential", "plateau")
  config.grid.lr = (0.01, 0.03, 0.1, 0.3, 0.6, 1.0)
  config.grid.batch_size = (64,)
  config.grid.seed = (0, 1, 2)
  # The primary questions: one family, Holm-corrected (lrjax.analysis.questions).
  config.analysis.questions = ("arms:schedule",)
  if arg == "runlocal":
    config.model_kwargs = {"hidden": (32,)}
    config.epochs = 2.0
    config.grid.lr = (0.03, 0.3)
    config.grid.seed = (0,)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':runlocal' or nothing")
  return config
