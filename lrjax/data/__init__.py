"""Datasets as host arrays through TFDS.

The built-in offline datasets (digits, mnist1d) or any TFDS catalog dataset.
"""

from lrjax.data.datasets import (
    BUILTIN, BUILTIN_DATASETS, Dataset, Split, default_data_dir, example_order, load,
    prepare, to_float)

__all__ = ["BUILTIN", "BUILTIN_DATASETS", "Dataset", "Split", "default_data_dir",
           "example_order", "load", "prepare", "to_float"]
