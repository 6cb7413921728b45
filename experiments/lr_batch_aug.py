"""The main job: learning rate x batch size x augmentation on the built-in digits.

14 learning rates (0.01 to 0.9, x sqrt(2) apart) x 5 batch sizes (16 to 256) x 2
augmentation strengths (0, 1) x 6 seeds = 840 members of a 64-256-256-10 MLP, SGD with
momentum 0.9, 10 epochs each, trained as one vmapped program (about 2.5 minutes on 2
CPU cores). The grid is dense enough to settle its three primary questions: the best
LR of every batch size inside the grid with its interval, the LR-batch exponent
(linear, square root or neither) and the augmentation effect on the best LR (a ratio,
or equivalent within x/÷ 2). Run it with:

  lrjax run experiments/lr_batch_aug.py --workdir runs/lr_batch_aug

A small version for smoke tests (2 x 2 x 2 members, 1 epoch, a tiny MLP):

  lrjax run experiments/lr_batch_aug.py:runlocal --workdir runs/local

Any field can be overridden, e.g. --config.grid.lr="(0.01,0.1)" --config.epochs=5.
"""

from lrjax.experiment import default_config


def get_config(arg: str | None = None):
  config = default_config()
  config.dataset = "digits"
  config.model = "mlp"
  config.model_kwargs = {"hidden": (256, 256)}
  config.optimizer = "momentum"
  config.optimizer_kwargs = {"momentum": 0.9}
  config.schedule = "constant"
  config.epochs = 10.0
  config.grid.lr = tuple(round(0.01 * 2 ** (k / 2), 4) for k in range(14))
  config.grid.batch_size = (16, 32, 64, 128, 256)
  config.grid.aug = (0.0, 1.0)
  config.grid.seed = tuple(range(6))
  # The primary questions: one family, Holm-corrected (lrjax.analysis.questions).
  config.analysis.questions = ("best_lr", "scaling", "aug_effect")
  if arg == "runlocal":
    config.model_kwargs = {"hidden": (32,)}
    config.epochs = 1.0
    config.grid.lr = (0.01, 0.1)
    config.grid.batch_size = (32, 64)
    config.grid.aug = (0.0, 1.0)
    config.grid.seed = (0,)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':runlocal' or nothing")
  return config
