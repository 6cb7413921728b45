"""lrjax: map how learning rate, batch size and augmentation interact.

Whole hyperparameter grids train as one vmapped, scanned JAX program.
"""

__version__ = "0.1.0"
