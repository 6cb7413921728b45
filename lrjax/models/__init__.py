"""Models: adapters for any Flax model, the built-in MLP/CNN/MNIST1DCNN/ResNet, and the
patch convolution."""

from lrjax.models.adapters import (ModelAdapter, eval_logits, from_linen, from_nnx, initial_state,
                                   train_logits)
from lrjax.models.builtin import BUILTIN_MODELS, CNN, MLP, MNIST1DCNN, get_model
from lrjax.models.conv import PatchConv, extract_patches
from lrjax.models.resnet import BasicBlock, ResNet

__all__ = ["BUILTIN_MODELS", "BasicBlock", "CNN", "MLP", "MNIST1DCNN", "ModelAdapter",
           "PatchConv", "ResNet", "eval_logits", "extract_patches", "from_linen", "from_nnx",
           "get_model", "initial_state", "train_logits"]
