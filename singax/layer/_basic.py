"""Layers without parameters, and the loss layers."""
from __future__ import annotations

from typing import Sequence

from .. import autograd
from ..tensor import Tensor
from ._base import Layer


# --------------------------------------------------------------------------- layers without parameters
class ReLU(Layer):
    """max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        return autograd.relu(x)


class Sigmoid(Layer):
    """1 / (1 + exp(-x))."""

    def forward(self, x: Tensor) -> Tensor:
        return autograd.sigmoid(x)


class SoftMax(Layer):
    """Softmax over axis 1 (the whole trailing block, as SINGA's SoftMax)."""

    def forward(self, x: Tensor) -> Tensor:
        return autograd.softmax(x)


class Add(Layer):
    """`forward(a, b)` -> a + b (broadcast)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return autograd.add(a, b)


class Flatten(Layer):
    """(d0, ..., dn) -> (prod(d[:axis]), prod(d[axis:]))."""

    def __init__(self, axis: int = 1):
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return autograd.flatten(x, self.axis)


class Cat(Layer):
    """`forward(xs)` -> concatenation of the list `xs` along `axis`."""

    def __init__(self, axis: int = 0):
        super().__init__()
        self.axis = axis

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        return autograd.cat(xs, self.axis)


class Reshape(Layer):
    """`forward(x, shape)` -> x reshaped (0 copies a dim, -1 is inferred)."""

    def forward(self, x: Tensor, shape: Sequence[int]) -> Tensor:
        return autograd.reshape(x, shape)


class Dropout(Layer):
    """Inverted dropout with probability `ratio` while training; identity in eval mode.

    SINGA: passes the ratio as the op's seed, so the ratio is always 0.5, scales kept units
    by (1 - ratio) instead of 1 / (1 - ratio), and reseeds the device RNG every call (the
    same mask each step); singax honours `ratio` and draws a fresh mask per call.
    """

    def __init__(self, ratio: float = 0.5):
        super().__init__()
        if not 0.0 <= float(ratio) < 1.0:
            raise ValueError(f"Dropout: ratio must be in [0, 1), got {ratio!r}")
        self.ratio = float(ratio)

    def forward(self, x: Tensor) -> Tensor:
        return autograd.dropout(x, 0, self.ratio)


class SoftMaxCrossEntropy(Layer):
    """`forward(x, t)`: mean cross-entropy of softmax(x) against int labels or dense targets."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return autograd.softmax_cross_entropy(x, t)


class MeanSquareError(Layer):
    """`forward(x, t)`: sum((x - t)^2) / x.size."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return autograd.mse_loss(x, t)


class CrossEntropy(Layer):
    """`forward(x, t)`: -sum(t * log(x)) / N for probabilities x."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return autograd.cross_entropy(x, t)


class BinaryCrossEntropy(Layer):
    """`forward(x, t)`: SINGA's binary cross-entropy of probabilities x against t."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return autograd.binary_cross_entropy(x, t)
