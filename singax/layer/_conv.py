"""Convolution, batch normalisation and pooling layers, with their padding helpers."""
from __future__ import annotations

import math
from typing import Any, Sequence

from .. import autograd
from .._args import is_int
from ..autograd import nn as _nn
from ..tensor import Tensor
from ._base import Layer, _gauss, _need_rank, _new


def _hw_tuple(owner: str, what: str, v: Any) -> tuple[int, int]:
    """A positive (h, w) from an int or a pair of ints."""
    if is_int(v):
        hw = int(v), int(v)
    elif isinstance(v, tuple) and len(v) == 2 and all(is_int(e) for e in v):
        hw = int(v[0]), int(v[1])
    else:
        raise TypeError(f"{owner}: {what} must be an int or a tuple (h, w), got {v!r}")
    if min(hw) < 1:
        raise ValueError(f"{owner}: {what} must be positive, got {v!r}")
    return hw


def _padding(owner: str, padding: Any) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """SINGA's padding argument -> (symmetric (ph, pw), odd (top, bottom, left, right))."""
    if is_int(padding):
        sides = (int(padding),) * 4
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        sides = (int(padding[0]), int(padding[0]), int(padding[1]), int(padding[1]))
    elif isinstance(padding, (tuple, list)) and len(padding) == 4:
        sides = tuple(int(p) for p in padding)
    else:
        raise TypeError(f"{owner}: padding must be an int, (h, w) or (top, bottom, left, right), got {padding!r}")
    if min(sides) < 0:
        raise ValueError(f"{owner}: padding must not be negative, got {padding!r}")
    top, bottom, left, right = sides
    ph, pw = min(top, bottom), min(left, right)
    return (ph, pw), (top - ph, bottom - ph, left - pw, right - pw)


_PAD_MODES = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _pad_mode(owner: str, pad_mode: str) -> str:
    if pad_mode not in _PAD_MODES:
        raise ValueError(f"{owner}: pad_mode must be one of {', '.join(_PAD_MODES)}, got {pad_mode!r}")
    return pad_mode


def _same_padding(pad_mode: str, spatial: Sequence[int], kernel: Sequence[int],
                  stride: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """SAME_UPPER/SAME_LOWER padding: out = ceil(in / stride); the odd pixel goes at the
    end (UPPER) or the start (LOWER)."""
    sym, odd = [], []
    for n, k, s in zip(spatial, kernel, stride):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        half = total // 2
        sym.append(half)
        odd += [0, total - 2 * half] if pad_mode == "SAME_UPPER" else [total - 2 * half, 0]
    return (sym[0], sym[1]), tuple(odd)


_CONV_KWARGS = ("cudnn_prefer", "workspace_MB_limit")


def _conv_positionals(name: str, first: Any, args: tuple, kernel_size: Any, stride: Any, padding: Any) -> tuple:
    """(nb_kernels, kernel_size, stride, padding) from a convolution's positionals: `(n, k)`,
    or the legacy `(in, out, k[, stride[, padding]])` and `(in, out, kernel_size=k)`."""
    legacy = len(args) >= 2 or (len(args) == 1 and kernel_size is not None)
    if not legacy:
        if args:
            kernel_size = args[0]
        if kernel_size is None:
            raise TypeError(f"{name}: missing kernel_size")
        return first, kernel_size, stride, padding
    if len(args) > 4:
        raise TypeError(f"{name}: too many positional arguments ({len(args) + 1})")
    if len(args) >= 2 and kernel_size is not None:
        raise TypeError(f"{name}: kernel_size given both by position and by keyword")
    rest = args[1:] if len(args) >= 2 else (kernel_size,)
    kernel_size = rest[0]
    stride = rest[1] if len(rest) > 1 else stride
    padding = rest[2] if len(rest) > 2 else padding
    return args[0], kernel_size, stride, padding


class Conv2d(Layer):
    """2-D convolution of NCHW input; W (nb_kernels, C / group, kh, kw), b (nb_kernels,).

    `Conv2d(nb_kernels, kernel_size, stride=1, padding=0, dilation=1, group=1, bias=True,
    pad_mode="NOTSET", activation="NOTSET")`; with 3 or more positionals the legacy form
    `Conv2d(in_channels, out_channels, kernel_size[, stride[, padding]])` (in_channels
    ignored). So `Conv2d(1, 20, 5)` is 20 filters 5x5 but `Conv2d(2, 2)` is 2 filters 2x2.

    Args:
      kernel_size, stride: int or tuple (h, w).
      padding: int, (h, w), or (top, bottom, left, right); unequal sides are handled by
        zero "odd padding" before the symmetric part.
      pad_mode: "SAME_UPPER"/"SAME_LOWER" computes the padding from the input size
        (output = ceil(in / stride)); "NOTSET"/"VALID" use `padding`.
      activation: "RELU" appends a ReLU.
      cudnn_prefer, workspace_MB_limit: accepted and ignored (XLA picks the algorithm).

    W ~ N(0, sqrt(2 / (C / group * kh * kw + nb_kernels))), b = 0.

    SINGA: dilation must be 1 and group 1 on CPU; singax supports both everywhere. SINGA 3.1+
    rejects `Conv2d(in, out, kernel_size=k)` (SINGA 2's form) with "multiple values".
    """

    def __init__(self, nb_kernels: int, *args, kernel_size: Any = None, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, group: int = 1, bias: bool = True, pad_mode: str = "NOTSET",
                 activation: str = "NOTSET", **kwargs):
        super().__init__()
        nb_kernels, kernel_size, stride, padding = _conv_positionals(
            "Conv2d", nb_kernels, args, kernel_size, stride, padding)
        for k in kwargs:
            if k not in _CONV_KWARGS:
                raise TypeError(f"Conv2d: unexpected keyword argument {k!r}")
        if activation not in ("NOTSET", "RELU"):
            raise ValueError(f"Conv2d: activation must be 'NOTSET' or 'RELU', got {activation!r}")
        if not is_int(nb_kernels) or nb_kernels < 1:
            raise ValueError(f"Conv2d: nb_kernels must be a positive int, got {nb_kernels!r}")
        self.nb_kernels = int(nb_kernels)
        self.kernel_size = _hw_tuple("Conv2d", "kernel_size", kernel_size)
        self.stride = _hw_tuple("Conv2d", "stride", stride)
        self.dilation = _hw_tuple("Conv2d", "dilation", dilation)
        self.padding, self.odd_padding = _padding("Conv2d", padding)
        self.group, self.bias = int(group), bias
        self.pad_mode, self.activation = _pad_mode("Conv2d", pad_mode), activation
        self.inner_params = {"cudnn_prefer": "fastest", "workspace_MB_limit": 1024, **kwargs}

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (4,), "(N, C, H, W)")
        C = x.shape[1]
        if C % self.group or self.nb_kernels % self.group:
            raise ValueError(f"{self._label()}: in_channels {C} and nb_kernels {self.nb_kernels} "
                             f"must be divisible by group {self.group}")
        self.in_channels = C
        kh, kw = self.kernel_size
        w_shape = (self.nb_kernels, C // self.group, kh, kw)
        self.W = _gauss(_new(w_shape, x), math.sqrt(2.0 / (w_shape[1] * kh * kw + self.nb_kernels)))
        self.b = _new((self.nb_kernels,), x) if self.bias else None
        self._build(x.shape)

    def _build(self, shape: tuple) -> None:
        """(Re)build the handle for an input shape; SAME padding depends on it."""
        if self.pad_mode in ("SAME_UPPER", "SAME_LOWER"):
            self.padding, self.odd_padding = _same_padding(
                self.pad_mode, shape[2:], self.kernel_size, self.stride)
        self.handle = _nn.ConvHandle(shape, self.kernel_size, self.stride, self.padding, self.in_channels,
                                     self.nb_kernels, self.bias, self.group, self.dilation)
        self._shape = shape

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        if shape != self._shape:
            if len(shape) != 4 or shape[1] != self.in_channels:
                raise ValueError(f"{self._label()}: expected input (N, {self.in_channels}, H, W), "
                                 f"got shape {shape}")
            self._build(shape)
        W, b = self.W, self.b
        self.device_check(x, W, b)
        self.dtype_check(x, W, b)
        y = autograd.conv2d(self.handle, x, W, b, self.odd_padding)
        return autograd.relu(y) if self.activation == "RELU" else y


class SeparableConv2d(Layer):
    """Depthwise convolution (one filter per channel) followed by a 1x1 convolution.

    `SeparableConv2d(nb_kernels, kernel_size, stride=1, padding=0, bias=False)`, or the
    legacy `(in_channels, out_channels, kernel_size[, stride[, padding]])` or
    `(in_channels, out_channels, kernel_size=k)`. The sublayers
    `depthwise_conv` and `point_conv` are built on the first call.
    """

    def __init__(self, nb_kernels: int, *args, kernel_size: Any = None, stride: Any = 1, padding: Any = 0,
                 bias: bool = False):
        super().__init__()
        nb_kernels, kernel_size, stride, padding = _conv_positionals(
            "SeparableConv2d", nb_kernels, args, kernel_size, stride, padding)
        self.nb_kernels, self.kernel_size = nb_kernels, kernel_size
        self.stride, self.padding, self.bias = stride, padding, bias

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (4,), "(N, C, H, W)")
        C = x.shape[1]
        self.in_channels = C
        self.depthwise_conv = Conv2d(C, self.kernel_size, stride=self.stride, padding=self.padding,
                                     group=C, bias=self.bias)
        self.point_conv = Conv2d(self.nb_kernels, 1, bias=self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.point_conv(self.depthwise_conv(x))


class BatchNorm2d(Layer):
    """Batch normalisation over all axes but 1 of (N, C, H, W) or (N, C) input.

    `BatchNorm2d(momentum=0.9)`; `BatchNorm2d(C)` is accepted (C comes from the input).
    Params `scale` (ones) and `bias` (zeros); states `running_mean` (zeros) and
    `running_var` (ones). While `autograd.training`, normalises with the batch statistics
    and updates `running = (1 - momentum) * running + momentum * batch` (unbiased batch
    variance); in eval mode normalises with the running statistics. eps = 1e-5.

    SINGA: a second positional argument (the SINGA-2 momentum) is ignored; singax uses it
    unless `momentum=` is given.
    """

    def __init__(self, *args, momentum: float | None = None):
        super().__init__()
        if len(args) > 2:
            raise TypeError(f"BatchNorm2d: expected at most 2 positional arguments (channels, momentum), "
                            f"got {len(args)}")
        self.channels = args[0] if args else None
        if momentum is None:
            momentum = args[1] if len(args) > 1 else 0.9
        self.momentum = float(momentum)
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"BatchNorm2d: momentum (the new batch's weight) must be in [0, 1], got {momentum!r}")

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (2, 4), "(N, C, H, W) or (N, C)")
        C = x.shape[1]
        self.channels = C
        self.scale = _new((C,), x, 1.0)
        self.bias = _new((C,), x, 0.0)
        self._state_attrs.extend(a for a in ("running_mean", "running_var") if a not in self._state_attrs)
        self.running_mean = _new((C,), x, 0.0, param=False)
        self.running_var = _new((C,), x, 1.0, param=False)
        self.handle = _nn.BatchNormHandle(self.momentum, x.shape)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        if len(shape) not in (2, 4) or shape[1] != self.channels:
            raise ValueError(f"{self._label()}: expected input (N, {self.channels}, H, W) or "
                             f"(N, {self.channels}), got shape {shape}")
        if shape[0] != self.handle.batchsize or (len(shape) == 2) != self.handle.is_2d:
            self.handle = _nn.BatchNormHandle(self.momentum, shape)
        ts = (self.scale, self.bias, self.running_mean, self.running_var)
        self.device_check(x, *ts)
        self.dtype_check(x, *ts)
        return autograd.batchnorm_2d(self.handle, x, *ts)


# --------------------------------------------------------------------------- pooling
class Pooling2d(Layer):
    """Max or average 2-D pooling of NCHW input (the average excludes padding).

    `Pooling2d(kernel_size, stride=None, padding=0, is_max=True, pad_mode="NOTSET")`;
    stride None means stride = kernel_size. `padding` and `pad_mode` as in Conv2d, but
    pooling's odd padding repeats the border rows/columns (as SINGA).
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, is_max: bool = True,
                 pad_mode: str = "NOTSET"):
        super().__init__()
        owner = type(self).__name__
        self.kernel_size = _hw_tuple(owner, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _hw_tuple(owner, "stride", stride)
        self.padding, self.odd_padding = _padding(owner, padding)
        self.is_max, self.pad_mode = is_max, _pad_mode(owner, pad_mode)

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (4,), "(N, C, H, W)")
        self._build(x.shape)

    def _build(self, shape: tuple) -> None:
        if self.pad_mode in ("SAME_UPPER", "SAME_LOWER"):
            self.padding, self.odd_padding = _same_padding(
                self.pad_mode, shape[2:], self.kernel_size, self.stride)
        self.handle = _nn.PoolingHandle(shape, self.kernel_size, self.stride, self.padding, self.is_max)
        self._shape = shape

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        if shape != self._shape:
            if len(shape) != 4:
                raise ValueError(f"{self._label()}: expected a 4-D input (N, C, H, W), got shape {shape}")
            self._build(shape)
        return autograd.pooling_2d(self.handle, x, self.odd_padding)


class MaxPool2d(Pooling2d):
    """2-D max pooling: `MaxPool2d(kernel_size, stride=None, padding=0, pad_mode="NOTSET")`."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, pad_mode: str = "NOTSET"):
        super().__init__(kernel_size, stride, padding, True, pad_mode)


class AvgPool2d(Pooling2d):
    """2-D average pooling (padding excluded from the count)."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, pad_mode: str = "NOTSET"):
        super().__init__(kernel_size, stride, padding, False, pad_mode)


def _pool1d_args(kernel_size: int, stride: Any, padding: int) -> tuple:
    return (1, kernel_size), (1, kernel_size if stride is None else stride), (0, padding)


class MaxPool1d(Pooling2d):
    """Max pooling along W of (N, C, 1, W) input: Pooling2d((1, k), (1, s), (0, p))."""

    def __init__(self, kernel_size: int, stride: Any = None, padding: int = 0, pad_mode: str = "NOTSET"):
        super().__init__(*_pool1d_args(kernel_size, stride, padding), True, pad_mode)


class AvgPool1d(Pooling2d):
    """Average pooling along W of (N, C, 1, W) input."""

    def __init__(self, kernel_size: int, stride: Any = None, padding: int = 0, pad_mode: str = "NOTSET"):
        super().__init__(*_pool1d_args(kernel_size, stride, padding), False, pad_mode)
