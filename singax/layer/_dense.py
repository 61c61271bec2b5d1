"""Dense layers: Linear, Gemm, Embedding."""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax.numpy as jnp

from .. import autograd
from .._args import is_int
from ..initializer import _gaussian, _uniform
from ..tensor import Tensor
from ._base import Layer, _gauss, _need_rank, _new


# --------------------------------------------------------------------------- layers with parameters
class Linear(Layer):
    """y = x @ W + b for 2-D x (N, in); W is (in, out), as in SINGA.

    `Linear(out_features, bias=True)`; the legacy forms `Linear(in, out)` and
    `Linear(in, out, bias)` are accepted (`in` is ignored: it comes from the input).
    W ~ N(0, sqrt(2 / (in + out))), b = 0.
    """

    def __init__(self, out_features: int, *args, bias: bool = True, **kwargs):
        super().__init__()
        self.in_features = None
        self.out_features = out_features
        if args:   # legacy Linear(in, out[, bias])
            self.in_features, self.out_features = out_features, args[0]
        self.bias = args[1] if len(args) > 1 else bias
        for what, n in (("out_features", self.out_features), ("in_features", self.in_features)):
            if n is not None and (not is_int(n) or n < 1):
                raise ValueError(f"Linear: {what} must be a positive int, got {n!r}")

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (2,), "(N, in_features)", "; flatten it first")
        fan_in, fan_out = x.shape[1], self.out_features
        self.W = _gauss(_new((fan_in, fan_out), x), math.sqrt(2.0 / (fan_in + fan_out)))
        if self.bias:
            self.b = _new((fan_out,), x)

    def forward(self, x: Tensor) -> Tensor:
        W = self.W
        shape = x.shape
        if len(shape) != 2 or shape[1] != W.shape[0]:
            raise ValueError(f"{self._label()}: expected input (N, {W.shape[0]}), got shape {shape}"
                             + ("; flatten it first" if len(shape) > 2 else ""))
        b = self.b if self.bias else None
        self.device_check(x, W, b)
        self.dtype_check(x, W, b)
        y = autograd.matmul(x, W)
        return autograd.add_bias(y, b, axis=0) if b is not None else y


class Gemm(Layer):
    """y = alpha * x' @ W' + beta * b (ONNX Gemm), x' = x.T if transA, W' = W.T if transB.

    W is (nb_kernels, in) when transB else (in, nb_kernels), N(0, sqrt(2 / (in + nb_kernels)));
    b is `bias_shape` or (1, nb_kernels), zeros.
    """

    def __init__(self, nb_kernels: int, alpha: float = 1.0, beta: float = 1.0, transA: bool = False,
                 transB: bool = True, bias: bool = True, bias_shape: Sequence[int] | None = None):
        super().__init__()
        self.nb_kernels, self.alpha, self.beta = nb_kernels, alpha, beta
        self.transA, self.transB = int(bool(transA)), int(bool(transB))
        self.bias, self.bias_shape = bias, bias_shape

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (2,), "a 2-D input")
        fan_in = x.shape[0] if self.transA else x.shape[-1]
        shape = (self.nb_kernels, fan_in) if self.transB else (fan_in, self.nb_kernels)
        self.W = _gauss(_new(shape, x), math.sqrt(2.0 / (fan_in + self.nb_kernels)))
        if self.bias:
            self.b = _new(self.bias_shape if self.bias_shape is not None else (1, self.nb_kernels), x)

    def forward(self, x: Tensor) -> Tensor:
        W = self.W
        k = W.shape[1] if self.transB else W.shape[0]
        got = x.shape[0] if self.transA else x.shape[-1]
        if x.ndim() != 2 or got != k:
            raise ValueError(f"{self._label()}: expected a 2-D input with {k} features along axis "
                             f"{0 if self.transA else 1}, got shape {x.shape}")
        b = self.b if self.bias else None
        self.device_check(x, W, b)
        self.dtype_check(x, W, b)
        return autograd.gemm(x, W, b, self.alpha, self.beta, self.transA, self.transB)


class Embedding(Layer):
    """Row lookup: x (N, T) of indices -> (N, T, output_dim) from W (input_dim, output_dim).

    W ~ U(-1, 1) with `initializer="uniform"`, else N(0, 1).
    """

    def __init__(self, input_dim: int, output_dim: int, initializer: str = "gaussian"):
        super().__init__()
        self.input_dim, self.output_dim, self.initializer = input_dim, output_dim, initializer

    def initialize(self, x: Tensor) -> None:
        W = _new((self.input_dim, self.output_dim), x)
        if self.initializer == "uniform":
            _uniform(W, -1.0, 1.0)
        else:
            _gaussian(W, 0.0, 1.0)
        self.W = W

    def forward(self, x: Tensor) -> Tensor:
        self.device_check(x, self.W)
        return autograd.embedding(x, self.W)

    def from_pretrained(self, W: Any, freeze: bool = True) -> None:
        """Use the given (input_dim, output_dim) weights; `freeze` stops their training.

        SINGA: needs a forward pass first, and freeze only clears `requires_grad`, so an
        optimizer still updates W; singax works before the first call and also clears
        `stores_grad`, so `autograd.backward` yields no gradient for W.
        """
        arr = W.data if isinstance(W, Tensor) else jnp.asarray(W)
        want = (self.input_dim, self.output_dim)
        if tuple(arr.shape) != want:
            raise ValueError(f"{self._label()}.from_pretrained: expected W of shape {want}, got {tuple(arr.shape)}")
        if "W" not in self.__dict__:
            dev = W.device if isinstance(W, Tensor) else None
            self.W = Tensor(device=dev, data=jnp.asarray(arr, jnp.float32), requires_grad=True, stores_grad=True)
            self.__dict__["_initialized"] = True
        else:
            self.set_params({self.W.name: arr})
        self.W.requires_grad = not freeze
        self.W.stores_grad = not freeze
