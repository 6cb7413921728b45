"""Datasets as host arrays: TFDS's, the built-in offline ones, or the user's own arrays.

The built-in offline datasets (digits, mnist1d), any TFDS catalog dataset, numpy arrays
(``from_arrays``) or a function returning either (``from_function``; a config's
``"package.module:function"``).
"""

from lrjax.data.datasets import (
    BUILTIN, BUILTIN_DATASETS, Dataset, Split, default_data_dir, example_order, load,
    prepare, to_float)
from lrjax.data.arrays import KINDS, from_arrays, from_function, get_dataset

__all__ = ["BUILTIN", "BUILTIN_DATASETS", "Dataset", "KINDS", "Split", "default_data_dir",
           "example_order", "from_arrays", "from_function", "get_dataset", "load", "prepare",
           "to_float"]
