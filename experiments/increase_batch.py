"""Don't decay the learning rate, increase the batch size (Smith et al. 2018), on MNIST-1D.

Four arms at 6 learning rates x 3 seeds, batch 64 to start, 30 epochs, 40-128-128-10
MLP, SGD with momentum 0.9 (72 members, about 2 minutes):

* constant LR, constant batch (schedule constant, batch_growth 1);
* LR halved at 50% and 75% of the updates (multistep, batch_growth 1);
* constant LR, batch doubled at 50% and 75% of the examples (constant, batch_growth 2);
* both (multistep, batch_growth 2).

  lrjax run experiments/increase_batch.py --workdir runs/increase_batch

Compare final_val_loss and updates by (schedule, batch_growth) in members.csv or the
report. Quick version: `...:runlocal --workdir runs/ib_local`.
"""

from lrjax.experiment import default_config


def get_config(arg: str | None = None):
  config = default_config()
  config.dataset = "mnist1d"
  config.model = "mlp"
  config.model_kwargs = {"hidden": (128, 128)}
  config.optimizer = "momentum"
  config.optimizer_kwargs = {"momentum": 0.9}
  config.epochs = 30.0
  config.batch_growth_at = (0.5, 0.75)
  config.schedule_kwargs = {"constant": {},
                            "multistep": {"milestone_fractions": (0.5, 0.75), "gamma": 0.5}}
  config.grid.schedule = ("constant", "multistep")
  config.grid.batch_growth = (1, 2)
  config.grid.lr = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
  config.grid.batch_size = (64,)
  config.grid.seed = (0, 1, 2)
  # The primary questions: one family, Holm-corrected (lrjax.analysis.questions).
  config.analysis.questions = ("arms:schedule", "arms:batch_growth")
  if arg == "runlocal":
    config.model_kwargs = {"hidden": (32,)}
    config.epochs = 2.0
    config.grid.lr = (0.05,)
    config.grid.seed = (0,)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':runlocal' or nothing")
  return config
