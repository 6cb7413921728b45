"""Adam's best learning rate vs batch size, against the square-root rule (Malladi et al. 2022).

On MNIST-1D: Adam, batch sizes 32 ... 1024 x 12 learning rates (1e-4 to 0.1) x 3 seeds
= 216 members of a 40-128-128-10 MLP, 30 epochs (about 3 minutes):

  lrjax run experiments/adam_sqrt_scaling.py --workdir runs/adam_sqrt_scaling

The report fits the exponent of best LR against batch size with its interval and says
whether it is linear, square root, neither, or not settled.
Quick version: `...:runlocal --workdir runs/adam_local`.
"""

from lrjax.experiment import default_config
from lrjax.grid import log_space


def get_config(arg: str | None = None):
  config = default_config()
  config.dataset = "mnist1d"
  config.model = "mlp"
  config.model_kwargs = {"hidden": (128, 128)}
  config.optimizer = "adam"
  config.optimizer_kwargs = {}
  config.epochs = 30.0
  config.grid.lr = log_space(1e-4, 0.1, 12)
  config.grid.batch_size = (32, 64, 128, 256, 512, 1024)
  config.grid.seed = (0, 1, 2)
  # The primary questions: one family, Holm-corrected (lrjax.analysis.questions).
  config.analysis.questions = ("scaling",)
  if arg == "runlocal":
    config.model_kwargs = {"hidden": (32,)}
    config.epochs = 1.0
    config.grid.lr = (1e-3, 1e-2)
    config.grid.batch_size = (32, 128)
    config.grid.seed = (0,)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':runlocal' or nothing")
  return config
