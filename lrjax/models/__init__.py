"""Models: adapters for any Flax model, the built-in MLP/CNN, and the patch convolution."""

from lrjax.models.adapters import ModelAdapter, from_linen, from_nnx
from lrjax.models.builtin import BUILTIN_MODELS, CNN, MLP, get_model
from lrjax.models.conv import PatchConv, extract_patches

__all__ = ["BUILTIN_MODELS", "CNN", "MLP", "ModelAdapter", "PatchConv", "extract_patches",
           "from_linen", "from_nnx", "get_model"]
