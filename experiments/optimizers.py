"""SGD, momentum, Nesterov, Adam, AdamW, NAdam and RMSProp across LR x batch size, on MNIST-1D.

7 optimizers (grid.optimizer: each trains as its own program, one after another) x 13
learning rates (1e-4 to 1) x batch sizes 32 and 256 x 3 seeds = 546 members of a
40-128-128-10 MLP, 30 epochs (about 5 minutes):

  lrjax run experiments/optimizers.py --workdir runs/optimizers

Compare best validation loss, final training loss (fit) against validation loss
(generalisation), and the best LR by optimizer in the report or members.csv.
Quick version: `...:runlocal --workdir runs/opt_local`.
"""

from lrjax.experiment import default_config
from lrjax.grid import log_space


def get_config(arg: str | None = None):
  config = default_config()
  config.dataset = "mnist1d"
  config.model = "mlp"
  config.model_kwargs = {"hidden": (128, 128)}
  config.optimizer_kwargs = {"momentum": {"momentum": 0.9}, "nesterov": {"momentum": 0.9},
                             "adamw": {"weight_decay": 1e-4}}
  config.epochs = 30.0
  config.grid.optimizer = ("sgd", "momentum", "nesterov", "adam", "adamw", "nadam",
                           "rmsprop")
  config.grid.lr = log_space(1e-4, 1.0, 13)
  config.grid.batch_size = (32, 256)
  config.grid.seed = (0, 1, 2)
  # The primary questions: one family, Holm-corrected (lrjax.analysis.questions).
  config.analysis.questions = ("arms:optimizer",)
  if arg == "runlocal":
    config.model_kwargs = {"hidden": (32,)}
    config.epochs = 1.0
    config.grid.optimizer = ("sgd", "adam")
    config.grid.lr = (1e-3, 0.1)
    config.grid.batch_size = (32,)
    config.grid.seed = (0,)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':runlocal' or nothing")
  return config
