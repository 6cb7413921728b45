"""The largest useful batch: steps to a target loss vs batch size, B_crit and B_simple.

On MNIST-1D, batch sizes 16 ... 1024 x 10 learning rates (0.003 to 3) x augmentation
0 and 1 x 3 seeds = 420 members of a 40-128-128-10 MLP, SGD with momentum 0.9, 40
epochs, evaluated every 1,024 examples. The micro-batch is 16, so every batch size
above 16 accumulates and the engine measures its gradient noise scale B_simple
(McCandlish et al. 2018) on the way. About 6 minutes on 2 CPU cores:

  lrjax run experiments/critical_batch.py --workdir runs/critical_batch

The report fits S = S_min (1 + B_crit / B) to the best steps to target per batch size
(steps_to_target.png) and plots the noise scale over training (noise_scale.png).
Quick version: `...:runlocal --workdir runs/cb_local`.
"""

from lrjax.experiment import default_config
from lrjax.grid import log_space


def get_config(arg: str | None = None):
  config = default_config()
  config.dataset = "mnist1d"
  config.model = "mlp"
  config.model_kwargs = {"hidden": (128, 128)}
  config.optimizer = "momentum"
  config.optimizer_kwargs = {"momentum": 0.9}
  config.epochs = 40.0
  config.eval_every = 1024
  config.micro_batch = 16
  config.grid.lr = log_space(0.003, 3.0, 10)
  config.grid.batch_size = (16, 32, 64, 128, 256, 512, 1024)
  config.grid.aug = (0.0, 1.0)
  config.grid.seed = (0, 1, 2)
  # The primary questions: one family, Holm-corrected (lrjax.analysis.questions).
  config.analysis.questions = ("b_crit", "scaling")
  if arg == "runlocal":
    config.model_kwargs = {"hidden": (32,)}
    config.epochs = 1.0
    config.eval_every = 0
    config.grid.lr = (0.03, 0.3)
    config.grid.batch_size = (16, 64)
    config.grid.aug = (0.0,)
    config.grid.seed = (0,)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':runlocal' or nothing")
  return config
