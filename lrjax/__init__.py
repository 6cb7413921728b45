"""lrjax: map how learning rate, batch size and augmentation interact.

Whole hyperparameter grids train as one vmapped, scanned JAX program. The public
API is re-exported here; submodules hold the rest.
"""

from lrjax import augment
from lrjax import data
from lrjax import lr_finder
from lrjax import schedules
from lrjax import transforms
from lrjax.data import Dataset, load
from lrjax.plan import GridResult, TrainSettings
from lrjax.errors import ConfigError
from lrjax.experiment import default_config, train_and_evaluate
from lrjax.grid import layout, log2_space, log_space, make_grid
from lrjax.models import CNN, MLP, ModelAdapter, from_linen, from_nnx, get_model
from lrjax.parallel import use_cpu_cores
from lrjax.optimizers import OPTIMIZERS, make_optimizer, make_schedule, optimizer_hparams
from lrjax.trainer import train_grid

__version__ = "0.1.0"

__all__ = [
    "CNN", "ConfigError", "Dataset", "GridResult", "MLP", "ModelAdapter", "OPTIMIZERS",
    "TrainSettings", "augment", "data", "default_config", "from_linen", "from_nnx",
    "get_model", "layout", "lr_finder", "transforms", "load", "log2_space", "log_space", "make_grid", "make_optimizer",
    "make_schedule", "optimizer_hparams", "schedules", "train_and_evaluate", "train_grid",
    "use_cpu_cores",
]
