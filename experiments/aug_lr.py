"""Does augmentation move the best learning rate? 6 strengths x a fine LR sweep, on MNIST-1D.

Augmentation strengths 0, 0.25, 0.5, 1, 1.5, 2 (MNIST-1D's recipe: shifts, noise,
segment cutout at 1; mixup above 1) x 16 learning rates (0.003 to 1, log-spaced) x
batch sizes 32 and 256 x 3 seeds = 576 members of a 40-128-128-10 MLP, SGD with
momentum 0.9, 30 epochs (about 4 minutes on 2 CPU cores):

  lrjax run experiments/aug_lr.py --workdir runs/aug_lr

The report's findings give the change in log best-LR, in maximum stable LR and in best
validation loss against strength 0, each with its 95% interval over seeds.
Quick version: `lrjax run experiments/aug_lr.py:runlocal --workdir runs/aug_lr_local`.
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
  config.epochs = 30.0
  config.grid.lr = log_space(0.003, 1.0, 16)
  config.grid.batch_size = (32, 256)
  config.grid.aug = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
  config.grid.seed = (0, 1, 2)
  # The primary questions: one family, Holm-corrected (lrjax.analysis.questions).
  config.analysis.questions = ("aug_effect",)
  if arg == "runlocal":
    config.model_kwargs = {"hidden": (32,)}
    config.epochs = 1.0
    config.grid.lr = (0.03, 0.3)
    config.grid.aug = (0.0, 1.0)
    config.grid.seed = (0,)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':runlocal' or nothing")
  return config
