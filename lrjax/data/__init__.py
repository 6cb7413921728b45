"""Datasets as host arrays through TFDS: the built-in offline digits, or any catalog dataset."""

from lrjax.data.datasets import (
    BUILTIN, Dataset, Split, default_data_dir, example_order, load, prepare)

__all__ = ["BUILTIN", "Dataset", "Split", "default_data_dir", "example_order", "load",
           "prepare"]
