"""SINGA's layers: `Layer` with lazy `initialize` and attribute-path names.

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
from ._base import Layer
from ._basic import (Add, BinaryCrossEntropy, Cat, CrossEntropy, Dropout, Flatten, MeanSquareError, ReLU,
                     Reshape, Sigmoid, SoftMax, SoftMaxCrossEntropy)
from ._conv import AvgPool1d, AvgPool2d, BatchNorm2d, Conv2d, MaxPool1d, MaxPool2d, Pooling2d, SeparableConv2d
from ._dense import Embedding, Gemm, Linear
from ._rnn import LSTM, RNN, CudnnRNN, RNN_Base

__all__ = [
    "Layer", "Linear", "Gemm", "Embedding", "Conv2d", "SeparableConv2d", "BatchNorm2d",
    "Pooling2d", "MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d", "RNN_Base", "RNN", "LSTM",
    "CudnnRNN", "ReLU", "Sigmoid", "Add", "Flatten", "SoftMaxCrossEntropy", "SoftMax",
    "MeanSquareError", "CrossEntropy", "BinaryCrossEntropy", "Dropout", "Cat", "Reshape",
]
