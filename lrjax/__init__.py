"""lrjax: map how learning rate, batch size and augmentation interact.

Whole hyperparameter grids train as one vmapped, scanned JAX program. The package
reads in one direction: an experiment config (``experiment``) resolves into a
``Run`` (``engine.build_run``), the engine compiles and trains it into tables, and
``analysis`` turns the tables into fits, figures and a report. The pieces also
stand alone: ``schedules``, ``transforms`` and ``optimizers`` are Optax-compatible,
``models`` adapts any Flax model, ``data`` and ``augment`` feed the engine.
``extend`` adds members to a finished run; ``settle`` decides which, wave by wave,
until the experiment's primary questions are settled.
"""

from lrjax import analysis
from lrjax import augment
from lrjax import data
from lrjax import lr_finder
from lrjax import models
from lrjax import optimizers
from lrjax import schedules
from lrjax import settle
from lrjax import transforms
from lrjax.best import BestMember, best_member, load_params, save_best
from lrjax.data import Dataset, from_arrays, load
from lrjax.engine import GridResult, Run, TrainSettings, build_run, train, train_grid
from lrjax.engine.devices import use_cpu_cores
from lrjax.errors import ConfigError, RunNotWritten
from lrjax.experiment import default_config, find_lr, resolve, train_and_evaluate
from lrjax.extend import extend_run
from lrjax.grid import layout, log2_space, log_space, make_grid
from lrjax.models import CNN, MLP, MNIST1DCNN, ModelAdapter, from_linen, from_nnx, get_model
from lrjax.optimizers import OPTIMIZERS, make_optimizer, optimizer_hparams
from lrjax.schedules import make_schedule
from lrjax.settle import SettleSettings, settle_run

__version__ = "0.1.0"

__all__ = [
    "BestMember", "CNN", "ConfigError", "Dataset", "GridResult", "MLP", "MNIST1DCNN", "ModelAdapter",
    "OPTIMIZERS", "Run", "RunNotWritten", "SettleSettings", "TrainSettings", "analysis", "augment",
    "best_member", "build_run", "data", "default_config", "extend_run", "find_lr", "from_arrays", "from_linen", "from_nnx", "get_model", "layout", "load",
    "log2_space", "log_space", "load_params", "lr_finder", "make_grid", "make_optimizer", "make_schedule",
    "models", "optimizer_hparams", "optimizers", "resolve", "schedules", "settle",
    "save_best", "settle_run", "train",
    "train_and_evaluate", "train_grid", "transforms", "use_cpu_cores",
]
