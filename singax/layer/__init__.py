"""SINGA's layers (singa-api 3): `Layer` with lazy `initialize` and attribute-path names.

A layer creates its parameters on its first call, from the input's shape, device and
dtype (`initialize(*inputs)` runs before the first `forward`). Parameters and states
are named after the attribute path that reaches them from the outermost layer without
a parent: `self.conv1 = Conv2d(...)` in a Model gives `conv1.W`; a block attached as
`self.block` holding `self.bn` gives `block.bn.running_mean`, even when the block was
attached after its own `__init__`. A standalone layer (no parent) names its params
`W`, `b`, ... as SINGA does.

Layers kept in lists, tuples or dicts are registered too (`self.layers = [Linear(4),
Linear(2)]` gives `layers.0.W`, `layers.1.W`); so are Tensors with `stores_grad` kept
in such containers. The containers are re-scanned before the first forward and by
`get_params`/`get_states`, so filling a list after assigning it works.
SINGA: layers in containers are not registered (its ResNet example loses them).
"""
from __future__ import annotations

# The families live in singax/_layers/; this module is their public face. The private
# helpers are re-exported too, so code that imported them from here keeps working.
from . import autograd  # noqa: F401
from ._layers.base import (_INTERNAL, Layer, _collect, _float_dtype, _gauss, _is_tracer,  # noqa: F401
                           _lazy_forward, _marking_initialize, _move, _need_rank, _new, _raw, _walk)
from ._layers.basic import (Add, BinaryCrossEntropy, Cat, CrossEntropy, Dropout, Flatten,  # noqa: F401
                            MeanSquareError, ReLU, Reshape, Sigmoid, SoftMax, SoftMaxCrossEntropy)
from ._layers.conv import (_CONV_KWARGS, _PAD_MODES, AvgPool1d, AvgPool2d, BatchNorm2d,  # noqa: F401
                           Conv2d, MaxPool1d, MaxPool2d, Pooling2d, SeparableConv2d, _pad_mode,
                           _padding, _pair, _pool1d_args, _same_padding)
from ._layers.dense import Embedding, Gemm, Linear  # noqa: F401
from ._layers.rnn import _GATES, LSTM, RNN, CudnnRNN, RNN_Base, _pair_states, _warn_unused  # noqa: F401
from .tensor import Tensor  # noqa: F401

__all__ = [
    "Layer", "Linear", "Gemm", "Embedding", "Conv2d", "SeparableConv2d", "BatchNorm2d",
    "Pooling2d", "MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d", "RNN_Base", "RNN", "LSTM",
    "CudnnRNN", "ReLU", "Sigmoid", "Add", "Flatten", "SoftMaxCrossEntropy", "SoftMax",
    "MeanSquareError", "CrossEntropy", "BinaryCrossEntropy", "Dropout", "Cat", "Reshape",
]
