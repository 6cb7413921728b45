"""No, square-root or linear LR scaling with batch size, with and without gradual warmup.

Goyal et al. 2017 (Table 2a) in miniature on MNIST-1D: a base LR tuned at batch 32
(grid.lr, 2 values) is scaled to batch sizes 32 ... 1024 by (B / 32) ** lr_scaling
with lr_scaling 0 (none), 0.5 (square root) or 1 (linear), with no warmup or a linear
warmup over the first 10% of each member's updates (warmup_fraction, equal in epochs
for every batch size), cosine decay after, at a fixed budget of 30 epochs; 3 seeds =
216 members of a 40-128-128-10 MLP, SGD with momentum 0.9 (about 3 minutes):

  lrjax run experiments/linear_scaling_warmup.py --workdir runs/linear_scaling_warmup

Compare final_val_loss by (batch_size, lr_scaling, warmup_fraction) in members.csv or
the report. Quick version: `...:runlocal --workdir runs/lsw_local`.
"""

from lrjax.experiment import default_config


def get_config(arg: str | None = None):
  config = default_config()
  config.dataset = "mnist1d"
  config.model = "mlp"
  config.model_kwargs = {"hidden": (128, 128)}
  config.optimizer = "momentum"
  config.optimizer_kwargs = {"momentum": 0.9}
  config.schedule = "cosine"
  config.epochs = 30.0
  config.lr_reference_batch = 32
  config.grid.lr = (0.03, 0.1)
  config.grid.batch_size = (32, 64, 128, 256, 512, 1024)
  config.grid.lr_scaling = (0.0, 0.5, 1.0)
  config.grid.warmup_fraction = (0.0, 0.1)
  config.grid.seed = (0, 1, 2)
  # The primary questions: one family, Holm-corrected (lrjax.analysis.questions).
  config.analysis.questions = ("arms:lr_scaling", "arms:warmup_fraction")
  if arg == "runlocal":
    config.model_kwargs = {"hidden": (32,)}
    config.epochs = 2.0
    config.grid.lr = (0.1,)
    config.grid.batch_size = (32, 256)
    config.grid.seed = (0,)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':runlocal' or nothing")
  return config
