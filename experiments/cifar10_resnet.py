"""CIFAR-10 with ResNet-20: learning rate x batch size x augmentation, the default CIFAR study.

7 learning rates (0.025 to 1.6, factors of 2) x 4 batch sizes (128 to 1024) x
augmentation strength 0 and 1 (the standard CIFAR recipe at 1: shifts of up to 4
pixels and horizontal flips, lrjax.augment.policy_for("cifar10")) x 2 seeds =
112 members of ResNet-20 (He et al. 2016, 0.27M parameters), SGD with momentum
0.9, cosine decay after a linear warmup over the first 2% of updates, 30 epochs
each on 45,000 training images (5,000 held out for validation).

The dataset must be prepared first, once (needs TensorFlow and a network
connection):

  pip install 'lrjax[tf]' && lrjax prepare cifar10

Then:

  lrjax run experiments/cifar10_resnet.py --workdir runs/cifar10_resnet

Expected time on one GPU: roughly 10 to 30 minutes, an estimate, not a
measurement. One training step of ResNet-20 costs 0.253 GFLOP per 32x32 image
(XLA's cost analysis of the compiled forward and backward pass; the forward
pass alone is 0.085 GFLOP), and the grid trains 112 members x 30 epochs x 45,000
images = 151M member-images, about 38 PFLOP; at a sustained 25 to 60 TFLOP/s
(a fraction of an H100/H200's TF32 tensor-core peak; small convolutions run as
im2col matmuls) that is 11 to 26 minutes, plus compilation and the evaluations
(validation is under 4% of the FLOPs). On CPU it is days: use the :runlocal
version there.

BatchNorm statistics are computed per micro-batch ("ghost batch norm"); the
micro-batch is the smallest batch size, 128, so every member normalises over 128
images whatever its batch size, as in Hoffer et al. 2017 (config field bn_batch
sets another normalisation batch). One training step holds about 1 GB per member
at micro-batch 128 (XLA:CPU's memory analysis of the step), some 110 GB for all
112 members; lrjax's memory-aware chunking trains the grid in as many chunks as
the GPU's memory needs (docs/PERFORMANCE.md, max_memory).

He et al.'s piecewise schedule (LR / 10 at 50% and 75% of training) instead of
cosine:

  lrjax run experiments/cifar10_resnet.py --workdir runs/cifar10_step \\
      --config.schedule=multistep --config.schedule_kwargs.milestone_fractions="(0.5,0.75)"

A small version on the built-in digits (ResNet-8 at a quarter width, 8 members,
1 epoch, no preparation; about half a minute on 2 CPU cores, mostly compilation):

  lrjax run experiments/cifar10_resnet.py:runlocal --workdir runs/cifar10_local

Other depths and widths: --config.model=resnet --config.model_kwargs.depth=56, or
--config.model_kwargs.width=2; mixed precision (bfloat16 computation, float32
weights and optimizer state): --config.dtype=bfloat16. There is no weight decay
(the catalog's momentum optimizer has none; He et al. used 1e-4) and 30 epochs
are a fifth of the paper's 164, so the best members will fall short of its 91.25%
test accuracy; the study maps the LR x batch size x augmentation landscape, not
the record. For weight decay, write the optimizer as a factory in a module of the
directory you run from, e.g. my_opts.py with
def sgdw(learning_rate, momentum=0.9, weight_decay=1e-4): return optax.chain(
optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum=momentum)),
and pass --config.optimizer=my_opts:sgdw (docs/MODELS.md).
"""

from lrjax.experiment import default_config


def get_config(arg: str | None = None):
  config = default_config()
  config.dataset = "cifar10"
  config.model = "resnet20"
  config.model_kwargs = {"width": 1.0}
  config.optimizer = "momentum"
  config.optimizer_kwargs = {"momentum": 0.9}
  config.schedule = "cosine"
  config.schedule_kwargs = {"warmup_fraction": 0.02}
  config.epochs = 30.0
  config.grid.lr = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
  config.grid.batch_size = (128, 256, 512, 1024)
  config.grid.aug = (0.0, 1.0)
  config.grid.seed = (0, 1)
  # The primary questions: one family, Holm-corrected (lrjax.analysis.questions).
  config.analysis.questions = ("best_lr", "scaling", "aug_effect")
  if arg == "runlocal":
    config.dataset = "digits"
    config.model = "resnet"
    config.model_kwargs = {"depth": 8, "width": 0.25}
    config.epochs = 1.0
    config.grid.lr = (0.05, 0.2)
    config.grid.batch_size = (32, 64)
    config.grid.aug = (0.0, 1.0)
    config.grid.seed = (0,)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':runlocal' or nothing")
  return config
