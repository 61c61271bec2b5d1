"""Neural-network operators: handles, convolution, pooling,
batch normalisation, dropout, embedding and cosine similarity (RNNs: `rnn.py`).

Convolution, pooling, embedding, cosine similarity and the RNN are pure and are
table rows; BatchNorm (writes running statistics) and Dropout (draws from the
device key stream) need Tensor-level side effects, so they are `_PureOperator`s.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _cpu_lowering as _cpu, _onednn
from ._op import CLASSES, Op, _like, register
from .._handle import StateLog
from ._tape import MSG_NO_SAVED, Operator, _none_if_float0, is_training, keeps_residuals, vjp_over
from ..tensor import Tensor

# the hand-written names; `register(..., export=__all__)` adds each row's name
__all__: list[str] = [
    "ConvHandle", "PoolingHandle", "BatchNormHandle", "_Conv2d", "_Pooling2d", "_BatchNorm2d",
    "batchnorm_2d", "Dropout", "dropout", "Embedding", "CosSim",
]


# --------------------------------------------------------------------------- handles
def _pair(v: Any, what: str, owner: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return int(v[0]), int(v[1])
    raise TypeError(f"{owner}: {what} must be an int or a pair (h, w), got {v!r}")


def _shape_of(x: Any) -> tuple:
    """Shape of a Tensor, a jax/numpy array, a CTensor, or a shape given directly."""
    shape = getattr(x, "shape", x)
    if callable(shape):
        shape = shape()
    return tuple(int(s) for s in shape)


class _Handle:
    """Configuration record passed to an operator; hashable by `_config()` fields."""

    _fields: tuple = ()

    def _config(self) -> tuple:
        return tuple(getattr(self, f) for f in self._fields)

    def __setattr__(self, name, value):
        self.__dict__.pop("_hash", None)  # attributes may be rebound: rehash lazily
        object.__setattr__(self, name, value)

    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = self.__dict__["_hash"] = hash((type(self).__name__, self._config()))
        return h

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other._config() == self._config()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self._fields)})"


class ConvHandle(_Handle):
    """Configuration of a 2-D convolution (SINGA's `ConvHandle`).

    `ConvHandle(x, kernel_size, stride, padding, in_channels, out_channels, bias, group=1,
    dilation=1)`.

    Args:
      x: the input (N, C, H, W) as a Tensor, an array, or its shape.
      kernel_size, stride, padding, dilation: int or pair (h, w); padding is symmetric.
      in_channels, out_channels: C and the number of filters O.
      bias: whether the convolution has a bias term.
      group: number of channel groups (C and O must be divisible by it).

    Attributes: `kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, channels,
    num_filters, group, bias_term, batchsize, height, width, conv_height, conv_width`,
    plus singax's `dilation_h, dilation_w`.

    SINGA: dilation must be 1 and group 1 on CPU; singax supports both everywhere.
    """

    _fields = ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w",
               "dilation_h", "dilation_w", "channels", "num_filters", "group", "bias_term")

    def __init__(self, x: Any, kernel_size: Any, stride: Any, padding: Any, in_channels: int,
                 out_channels: int, bias: bool, group: int = 1, dilation: Any = 1):
        shape = _shape_of(x)
        self.kernel_h, self.kernel_w = _pair(kernel_size, "kernel_size", "ConvHandle")
        self.stride_h, self.stride_w = _pair(stride, "stride", "ConvHandle")
        self.pad_h, self.pad_w = _pair(padding, "padding", "ConvHandle")
        self.dilation_h, self.dilation_w = _pair(dilation, "dilation", "ConvHandle")
        self.channels, self.num_filters = int(in_channels), int(out_channels)
        self.group, self.bias_term = int(group), bool(bias)
        if self.group < 1 or self.channels % self.group or self.num_filters % self.group:
            raise ValueError(f"ConvHandle: in_channels {self.channels} and out_channels "
                             f"{self.num_filters} must be divisible by group {self.group}")
        if len(shape) != 4 or shape[1] != self.channels:
            raise ValueError(f"ConvHandle: expected input (N, {self.channels}, H, W), got shape {shape}")
        self.batchsize, _, self.height, self.width = shape
        self.conv_height = _out_size(self.height, self.kernel_h, self.stride_h, self.pad_h, self.dilation_h)
        self.conv_width = _out_size(self.width, self.kernel_w, self.stride_w, self.pad_w, self.dilation_w)


def _out_size(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class PoolingHandle(_Handle):
    """Configuration of 2-D max/average pooling (SINGA's `PoolingHandle`).

    `PoolingHandle(x, kernel_size, stride, padding, is_max=True)`.

    Args:
      x: the input (N, C, H, W) as a Tensor, an array, or its shape.
      kernel_size, stride, padding: int or pair (h, w); padding is symmetric.
      is_max: max pooling if True, else average pooling (padding excluded from the count).

    Attributes: `kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, is_max_pooling,
    batchsize, channels, height, width, pooled_height, pooled_width`.
    """

    _fields = ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w", "is_max_pooling")

    def __init__(self, x: Any, kernel_size: Any, stride: Any, padding: Any, is_max: bool = True):
        shape = _shape_of(x)
        self.kernel_h, self.kernel_w = _pair(kernel_size, "kernel_size", "PoolingHandle")
        self.stride_h, self.stride_w = _pair(stride, "stride", "PoolingHandle")
        self.pad_h, self.pad_w = _pair(padding, "padding", "PoolingHandle")
        self.is_max_pooling = bool(is_max)
        if len(shape) != 4:
            raise ValueError(f"PoolingHandle: expected input (N, C, H, W), got shape {shape}")
        self.batchsize, self.channels, self.height, self.width = shape
        self.pooled_height = _out_size(self.height, self.kernel_h, self.stride_h, self.pad_h)
        self.pooled_width = _out_size(self.width, self.kernel_w, self.stride_w, self.pad_w)


class BatchNormHandle(_Handle):
    """Configuration of batch normalisation (SINGA's `BatchNormHandle`).

    `BatchNormHandle(momentum, x)`: `momentum` (stored as `factor`) is the weight of the
    new batch statistics in the running averages; `x` is the (N, C, H, W) or (N, C)
    input, a Tensor, an array or its shape.

    Attributes: `factor, batchsize, channels, height, width, is_2d`.
    """

    _fields = ("factor",)

    def __init__(self, momentum: float, x: Any):
        shape = _shape_of(x)
        if len(shape) not in (2, 4):
            raise ValueError(f"BatchNormHandle: expected input (N, C, H, W) or (N, C), got shape {shape}")
        self.factor = float(momentum)
        self.batchsize, self.channels = shape[0], shape[1]
        self.height, self.width = (shape[2], shape[3]) if len(shape) == 4 else (1, 1)
        self.is_2d = len(shape) == 2


# --------------------------------------------------------------------------- shared machinery
@functools.cache
def _jitted(fn: Callable) -> tuple[Callable, Callable]:
    """Jitted forward and vjp-backward of `fn(static, xs, consts) -> (y, aux)`."""
    def bwd(static, xs, consts, dy):
        _, pull, _ = jax.vjp(lambda *d: fn(static, d, consts), *xs, has_aux=True)
        return pull(dy)
    return jax.jit(fn, static_argnums=0), jax.jit(bwd, static_argnums=0)


class _PureOperator(Operator):
    """An Operator over a pure `fn(static, xs, consts) -> (y, aux)`: jitted forward and
    jitted vjp backward (cached per static configuration); gradients flow to `xs` only."""

    _save_always = False

    def _run(self, fn: Callable, static: tuple, xs: tuple, consts: tuple = ()):
        fwd, _ = _jitted(fn)
        save = self._save_always or (is_training() and getattr(self, "requires_grad", True))
        if keeps_residuals(save, xs):
            y, self._pullback, aux = vjp_over(lambda *d: fn(static, d, consts), xs, range(len(xs)),
                                              has_aux=True)
        else:
            y, aux = fwd(static, xs, consts)
            if save:
                self._saved = (fn, static, xs, consts)
        if save:
            self._ys = y
        return y, aux

    def _backward_raw(self, dy):
        y = self.__dict__.get("_ys")
        if y is None:
            raise RuntimeError(MSG_NO_SAVED.format(op=self.name))
        dy = _like(dy, y)
        pull = self.__dict__.get("_pullback")
        if pull is not None:
            dxs = pull(dy)
        else:
            fn, static, xs, consts = self._saved
            dxs = _jitted(fn)[1](static, xs, consts, dy)
        dxs = tuple(_none_if_float0(d) for d in dxs)
        return dxs[0] if len(dxs) == 1 else dxs


def _pure_fusable(op) -> "tuple | None":
    d = op.__dict__
    if d.get("_saved") is None or d.get("_pullback") is not None or d.get("_ys") is None or \
            type(op).backward is not _PureOperator.backward:
        return None
    fn, static, xs, consts = d["_saved"]
    return (_pure_vjp, fn, static), (tuple(xs), tuple(consts)), d["_ys"]


def _pure_vjp(static: tuple, saved: tuple, y, dys: list) -> tuple:
    """A pure operator's backward inside the fused program (as `_PureOperator.backward`)."""
    _, fn, st = static
    xs, consts = saved
    return _jitted(fn)[1](st, xs, consts, _like(dys[0], y))


_PureOperator._fusable = _pure_fusable


def _cls(name: str) -> type:
    return CLASSES[name]


# --------------------------------------------------------------------------- convolution
def _conv_forward(x, W, b=None, *, handle, odd_padding=(0, 0, 0, 0)):
    h = handle
    top, bottom, left, right = odd_padding
    # odd padding pre-pads with zeros, which is the same as an asymmetric conv padding
    geometry = ((h.stride_h, h.stride_w), ((h.pad_h + top, h.pad_h + bottom), (h.pad_w + left, h.pad_w + right)),
                (h.dilation_h, h.dilation_w))

    def xla_conv(x, W):
        return lax.conv_general_dilated(
            x, W, window_strides=geometry[0], padding=geometry[1], rhs_dilation=geometry[2],
            dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=h.group)
    if _onednn.handles(x, W, h.group):
        y = _cpu.cpu_or_default(lambda x, W: _onednn.conv2d(x, W, geometry), xla_conv, x, W)
    else:
        y = xla_conv(x, W)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


def _conv_check(x, W, b=None, *, handle, odd_padding=(0, 0, 0, 0)):
    h = handle
    if not isinstance(h, ConvHandle):
        raise TypeError(f"conv2d: expected a ConvHandle, got {type(h).__name__}")
    if len(odd_padding) != 4:
        raise ValueError(f"conv2d: odd_padding must be (top, bottom, left, right), got {odd_padding!r}")
    want_w = (h.num_filters, h.channels // h.group, h.kernel_h, h.kernel_w)
    if x.ndim != 4 or x.shape[1] != h.channels:
        raise ValueError(f"conv2d: expected input (N, {h.channels}, H, W) (NCHW), got shape {tuple(x.shape)}")
    if tuple(W.shape) != want_w:
        raise ValueError(f"conv2d: expected W of shape {want_w}, got {tuple(W.shape)}")
    if b is not None and tuple(b.shape) != (h.num_filters,):
        raise ValueError(f"conv2d: expected b of shape ({h.num_filters},), got {tuple(b.shape)}")
    hh, ww = x.shape[2] + odd_padding[0] + odd_padding[1], x.shape[3] + odd_padding[2] + odd_padding[3]
    if min(_out_size(hh, h.kernel_h, h.stride_h, h.pad_h, h.dilation_h),
           _out_size(ww, h.kernel_w, h.stride_w, h.pad_w, h.dilation_w)) < 1:
        raise ValueError(f"conv2d: input {tuple(x.shape)} is smaller than the kernel "
                         f"({h.kernel_h}, {h.kernel_w}) with padding ({h.pad_h}, {h.pad_w})")


def conv2d(handle: ConvHandle, x: Tensor, W: Tensor, b: Tensor | None = None,
           odd_padding: Sequence[int] = (0, 0, 0, 0)) -> Tensor:
    """2-D convolution (cross-correlation) of NCHW `x` with `W` (O, C/group, kh, kw).

    Args:
      handle: a `ConvHandle` (stride, symmetric padding, dilation, group).
      x, W, b: input, filters and optional bias (O,).
      odd_padding: extra zero padding (top, bottom, left, right) applied first.

    SINGA: grouped and dilated convolutions work on every device.
    """
    op = _Conv2d(handle, tuple(odd_padding))
    return (op(x, W) if b is None else op(x, W, b))[0]


register(Op("conv2d", _conv_forward, cls="_Conv2d", inputs=None,
            attrs=(("handle", None), ("odd_padding", (0, 0, 0, 0))),
            check=_conv_check, function=conv2d,
            doc="2-D cross-correlation, NCHW; `_Conv2d(handle, odd_padding=(0, 0, 0, 0))(x, W[, b])`."),
         export=__all__)
_Conv2d = _cls("_Conv2d")


# --------------------------------------------------------------------------- pooling
def _pool_forward(x, *, handle, odd_padding=(0, 0, 0, 0)):
    h = handle
    if any(odd_padding):  # pooling's odd padding duplicates the border rows/columns
        t, bo, l, r = odd_padding
        x = jnp.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)), mode="edge")
    window, strides = (1, 1, h.kernel_h, h.kernel_w), (1, 1, h.stride_h, h.stride_w)
    pads = ((0, 0), (0, 0), (h.pad_h, h.pad_h), (h.pad_w, h.pad_w))
    if h.is_max_pooling:
        return _cpu.cpu_or_default(
            lambda x: _cpu.max_pool_select(x, window[2:], strides[2:], pads[2:]),
            lambda x: lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, window, strides, pads), x)
    total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, window, strides, pads)
    ones = jnp.ones((1, 1) + x.shape[2:], x.dtype)
    count = lax.reduce_window(ones, np.array(0, x.dtype), lax.add, window, strides, pads)
    return total / count  # average over the real (unpadded) elements only


def _pool_check(x, *, handle, odd_padding=(0, 0, 0, 0)):
    h = handle
    if not isinstance(h, PoolingHandle):
        raise TypeError(f"pooling_2d: expected a PoolingHandle, got {type(h).__name__}")
    if x.ndim != 4:
        raise ValueError(f"pooling_2d: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    if h.pad_h >= h.kernel_h or h.pad_w >= h.kernel_w or min(
            _out_size(x.shape[2] + odd_padding[0] + odd_padding[1], h.kernel_h, h.stride_h, h.pad_h),
            _out_size(x.shape[3] + odd_padding[2] + odd_padding[3], h.kernel_w, h.stride_w, h.pad_w)) < 1:
        raise ValueError(f"pooling_2d: kernel ({h.kernel_h}, {h.kernel_w}) with padding ({h.pad_h}, "
                         f"{h.pad_w}) does not fit input {tuple(x.shape)} (padding must be < kernel)")


def pooling_2d(handle: PoolingHandle, x: Tensor, odd_padding: Sequence[int] = (0, 0, 0, 0)) -> Tensor:
    """Max or average 2-D pooling of NCHW `x`; the average excludes padded positions.

    `odd_padding` (top, bottom, left, right) first duplicates the border rows/columns.
    """
    return _Pooling2d(handle, tuple(odd_padding))(x)[0]


register(Op("pooling_2d", _pool_forward, cls="_Pooling2d",
            attrs=(("handle", None), ("odd_padding", (0, 0, 0, 0))), check=_pool_check,
            function=pooling_2d,
            doc="2-D max or average pooling, NCHW; `_Pooling2d(handle, odd_padding)(x)`."),
         export=__all__)
_Pooling2d = _cls("_Pooling2d")


# --------------------------------------------------------------------------- batch norm
BN_EPSILON = 1e-5   # SINGA's fixed value, and ONNX's default


def _bn_layout(x):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    return axes, (1, -1) if x.ndim == 2 else (1, -1, 1, 1)


def _bn_train(static, xs, consts):
    """static = (momentum, eps, groups); returns y and the new running statistics.

    With `groups` > 1 the batch is `groups` equal parts (data-parallel workers' batches),
    each normalised with its own statistics; the running statistics move towards the
    parts' average mean and average unbiased variance.
    """
    (momentum, eps, groups), (x, scale, bias), (rm, rv) = static, xs, consts
    axes, shape = _bn_layout(x)
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # statistics in >= float32
    if groups > 1:
        xf = xf.reshape((groups, x.shape[0] // groups) + x.shape[1:])
        axes = tuple(a + 1 for a in axes)

    def normalize(xf, scale, bias):
        mean, var = jnp.mean(xf, axes, keepdims=True), jnp.var(xf, axes, keepdims=True)
        y = (xf - mean) * lax.rsqrt(var + eps)
        return y * scale.reshape(shape) + bias.reshape(shape), mean, var
    y, mean, var = _cpu.cpu_or_default(
        lambda xf, scale, bias: _cpu.batch_norm_folded(xf, scale, bias, axes, shape, eps), normalize,
        xf, scale, bias)
    y = y.reshape(x.shape).astype(x.dtype)
    n = x.size // x.shape[1] // groups
    mean = lax.stop_gradient(mean).reshape(groups, -1).mean(0)
    var = lax.stop_gradient(var).reshape(groups, -1).mean(0)
    new_rm = (1 - momentum) * rm + momentum * mean.astype(rm.dtype)
    new_rv = (1 - momentum) * rv + momentum * (var * (n / max(n - 1, 1))).astype(rv.dtype)
    return y, (new_rm.astype(rm.dtype), new_rv.astype(rv.dtype))


def _bn_eval(static, xs, consts):
    (_, eps, _), (x, scale, bias), (rm, rv) = static, xs, consts
    _, shape = _bn_layout(x)
    inv = lax.rsqrt(rv.reshape(shape) + eps)
    return ((x - rm.reshape(shape)) * inv * scale.reshape(shape) + bias.reshape(shape)).astype(x.dtype), None


def _batch_groups(batch: int) -> int:
    """The data-parallel workers a compiled step splits this batch over (1 outside one,
    or when the batch does not split evenly)."""
    log = StateLog.active
    groups = log.batch_groups if log is not None else 1
    return groups if groups > 1 and batch % groups == 0 else 1


def _as_tensor(t: Any) -> Tensor:
    return t if isinstance(t, Tensor) else Tensor(data=jnp.asarray(t))


class _BatchNorm2d(_PureOperator):
    """Batch normalisation of (N, C, H, W) or (N, C) input over all axes but 1.

    `_BatchNorm2d(handle, running_mean, running_var, name=None)(x, scale, bias)`.
    Training: normalise with the batch mean and biased variance (eps 1e-5) and update
    the running statistics in place, `rm = (1-m)*rm + m*mean`,
    `rv = (1-m)*rv + m*var*n/(n-1)` with m = `handle.factor` and n = N*H*W. Eval:
    normalise with the running statistics. Backward gives (dx, dscale, dbias).

    A plain Operator, not a row: it writes the running-statistic Tensors.

    SINGA: `running_mean`/`running_var` are Tensors (their `.data` is rebound, so
    `Model.compile` sees the write); a raw array given here is wrapped in a new Tensor.
    `epsilon` (default 1e-5, SINGA's fixed value) is a singax extra (ONNX import sets it).
    """

    def __init__(self, handle: BatchNormHandle, running_mean: Any, running_var: Any, name: str | None = None,
                 epsilon: float = BN_EPSILON):
        super().__init__(name)
        self.handle, self.epsilon = handle, float(epsilon)
        self.running_mean, self.running_var = _as_tensor(running_mean), _as_tensor(running_var)

    def forward(self, x, scale, bias):
        c = x.shape[1] if x.ndim in (2, 4) else None
        for what, v in (("scale", scale), ("bias", bias), ("running_mean", self.running_mean),
                        ("running_var", self.running_var)):
            if c is None or tuple(v.shape) != (c,):
                raise ValueError(f"batchnorm_2d: expected x (N, C, H, W) or (N, C) and {what} of shape (C,), "
                                 f"got x {tuple(x.shape)} and {what} {tuple(v.shape)}")
        rm, rv = self.running_mean, self.running_var
        static = (self.handle.factor, self.epsilon, _batch_groups(x.shape[0]))
        if not is_training():
            return self._run(_bn_eval, static, (x, scale, bias), (rm.data, rv.data))[0]
        y, (new_rm, new_rv) = self._run(_bn_train, static, (x, scale, bias), (rm.data, rv.data))
        rm.data, rv.data = new_rm, new_rv
        return y


def batchnorm_2d(handle: BatchNormHandle, x: Tensor, scale: Tensor, bias: Tensor,
                 running_mean: Tensor, running_var: Tensor) -> Tensor:
    """Batch normalisation (see `_BatchNorm2d`); updates the running stats while training."""
    return _BatchNorm2d(handle, running_mean, running_var)(x, scale, bias)[0]


# --------------------------------------------------------------------------- dropout
def _dropout_fn(static, xs, consts):
    (ratio,), (x,), (key,) = static, xs, consts
    keep = jax.random.bernoulli(key, 1.0 - ratio, x.shape)
    return jnp.where(keep, x / (1.0 - ratio), jnp.zeros_like(x)), None


class Dropout(_PureOperator):
    """Inverted dropout: while training `y = x * mask / (1 - ratio)` with
    mask ~ Bernoulli(1 - ratio); identity in eval mode.

    `Dropout(seed=0, ratio=0.5)`. Each call draws a fresh mask from the input device's key
    stream (`x.device.next_key()`); `dev.SetRandSeed(s)` makes the masks reproducible.
    The SINGA-3.0 call `Dropout(ratio)` / `dropout(x, ratio)` still works: a float strictly
    between 0 and 1 given as `seed` is taken as the ratio.

    SINGA: scales by (1 - ratio) instead of dividing (operator precedence) and reseeds
    the whole device RNG with `seed` on each new op; singax does neither and ignores `seed`.
    """

    _device = None

    def __init__(self, seed: Any = 0, ratio: float = 0.5, name: str | None = None):
        super().__init__(name)
        if isinstance(seed, float) and 0.0 < seed < 1.0:  # old signature: dropout(x, ratio)
            seed, ratio = 0, seed
        if not 0.0 <= float(ratio) < 1.0:
            raise ValueError(f"Dropout: ratio must be in [0, 1), got {ratio!r}")
        self.seed, self.ratio = seed, float(ratio)

    def __call__(self, x: Tensor) -> tuple:
        self._device = x.device if isinstance(x, Tensor) else None
        return super().__call__(x)

    def forward(self, x):
        if not is_training() or self.ratio == 0.0:
            return x
        dev = self._device
        if dev is None:
            from ..tensor._engine import _device_of
            dev = _device_of(x)
        return self._run(_dropout_fn, (self.ratio,), (x,), (dev.next_key(),))[0]

    def _backward_raw(self, dy):
        if self.ratio == 0.0:
            return dy
        return super()._backward_raw(dy)


def dropout(x: Tensor, seed: Any = 0, ratio: float = 0.5) -> Tensor:
    """Inverted dropout (see `Dropout`); `dropout(x, 0.3)` means ratio 0.3."""
    return Dropout(seed, ratio)(x)[0]


# --------------------------------------------------------------------------- embedding, cossim
def _embedding_forward(x, w):
    return jnp.take(w, x.astype(jnp.int32), axis=0)


def _embedding_check(x, w):
    if w.ndim != 2:
        raise ValueError(f"embedding: expected w of shape (vocab, dim), got {tuple(w.shape)}")
    if not isinstance(x, jax.core.Tracer) and x.size:
        lo, hi = float(jnp.min(x)), float(jnp.max(x))
        if lo < 0 or hi >= w.shape[0]:
            raise ValueError(f"embedding: indices must be in [0, {w.shape[0]}), got range [{lo:g}, {hi:g}]")


def _cossim_forward(a, b):
    return jnp.sum(a * b, axis=1) / (jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1))


def _cossim_check(a, b):
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"cossim: expected two (B, D) inputs of the same shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")


def embedding(x: Tensor, w: Tensor) -> Tensor:
    """Rows of `w` (V, D) picked by the indices `x` (N, T) -> (N, T, D); no gradient for `x`."""
    return Embedding()(x, w)[0]


def cossim(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of matching rows of `a` and `b` (B, D) -> (B,)."""
    return CosSim()(a, b)[0]


register(
    Op("embedding", _embedding_forward, cls="Embedding", inputs=2, diff=(1,), check=_embedding_check,
       function=embedding,
       doc="Row lookup: x (N, T) indices, w (V, D) -> (N, T, D). "
           "SINGA: x gets no gradient (SINGA's dx is a meaningless sum of dy; the public "
           "`op.backward` returns zeros of x's shape); only w gets a gradient."),
    Op("cossim", _cossim_forward, cls="CosSim", inputs=2, check=_cossim_check, function=cossim,
       doc="Row-wise cosine similarity of two (B, D) tensors -> (B,)."),
    export=__all__,
)
Embedding, CosSim = _cls("Embedding"), _cls("CosSim")
