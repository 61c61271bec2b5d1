"""Stand-in for SINGA's compiled module `singa.singa_wrap` (SWIG over the C++ core).

SINGA code reads build flags from it (`USE_CUDA`...), creates raw tensors
(`singa_wrap.Tensor`, i.e. `CTensor`) and handles (`BatchNormHandle`,
`CudnnRNNHandle`...), and custom operators call its tensor functions
(`ReLU`, `GTFloat`, `MultFloat`, `__mul__`, `SoftMax`, `Mult`...). Each function is
one row of a table mapping SINGA's name to a jax function; it accepts CTensors,
jax arrays and numbers, and returns a CTensor when any argument was one (a jax
array otherwise, so a custom operator's forward stays traceable).

`USE_CUDA` and `USE_CUDNN` are computed on first read, so importing this module
does not start a JAX backend.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._ctensor import COMPARISONS, CTensor, raw
from .autograd.nn import BatchNormHandle, ConvHandle, PoolingHandle
from .autograd.rnn import CudnnRNNHandle
from .dist import NcclIdHolder

Tensor = CTensor
CudnnBatchNormHandle = BatchNormHandle
CudnnConvHandle = ConvHandle
CudnnPoolingHandle = PoolingHandle

USE_DIST = False
USE_PYTHON3 = True
USE_OPENCL = False
USE_DNNL = False
kFloat32, kFloat16, kInt, kChar, kDouble, kUChar = 0, 1, 2, 3, 4, 5


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


_LAZY_FLAGS = {"USE_CUDA": _has_gpu, "USE_CUDNN": _has_gpu}


def __getattr__(name: str) -> Any:
    if name in _LAZY_FLAGS:
        value = _LAZY_FLAGS[name]()
        globals()[name] = value
        return value
    raise AttributeError(f"singa_wrap (singax) has no {name!r}; singax provides the build flags, "
                         f"CTensor (Tensor), the handles and the functions listed in FUNCTIONS")


def _softmax(x, axis: int = 1):
    """SINGA's SoftMax: rows of x viewed as (prod(shape[:axis]), prod(shape[axis:]))."""
    rows = int(np.prod(x.shape[:axis])) if axis > 0 else 1
    return jax.nn.softmax(jnp.reshape(x, (rows, -1)), axis=1).reshape(x.shape)


def _softmax_backward(dy, axis: int, y):
    """Gradient of SoftMax given its output `y`."""
    rows = int(np.prod(y.shape[:axis])) if axis > 0 else 1
    d, s = jnp.reshape(dy, (rows, -1)), jnp.reshape(y, (rows, -1))
    return (s * (d - jnp.sum(d * s, axis=1, keepdims=True))).reshape(y.shape)


def _same_dtype(f: Callable) -> Callable:
    """`f(x, scalar)` keeping x's dtype (SINGA's *Float functions)."""
    return lambda x, v: f(x, v).astype(jnp.result_type(x))


def _cross_entropy_fwd(p, t):
    """Mean negative log-likelihood of probabilities p (N, C) against one-hot or index targets."""
    if t.ndim == 1 or t.shape[-1] == 1:
        t = jax.nn.one_hot(jnp.reshape(t, (-1,)).astype(jnp.int32), p.shape[-1], dtype=p.dtype)
    return -jnp.sum(t * jnp.log(jnp.clip(p, 1e-8, None)), axis=-1)


def _softmax_cross_entropy_bwd(p, t):
    if t.ndim == 1 or t.shape[-1] == 1:
        t = jax.nn.one_hot(jnp.reshape(t, (-1,)).astype(jnp.int32), p.shape[-1], dtype=p.dtype)
    return p - t


FUNCTIONS: dict[str, Callable] = {
    # element-wise
    "ReLU": jax.nn.relu, "Sigmoid": jax.nn.sigmoid, "Tanh": jnp.tanh, "Exp": jnp.exp, "Log": jnp.log,
    "Abs": jnp.abs, "Sign": jnp.sign, "Sqrt": jnp.sqrt, "Square": jnp.square,
    "SoftPlus": jax.nn.softplus, "SoftSign": jax.nn.soft_sign, "Erf": jax.scipy.special.erf,
    "Sin": jnp.sin, "Cos": jnp.cos, "Tan": jnp.tan, "Asin": jnp.arcsin, "Acos": jnp.arccos,
    "Atan": jnp.arctan, "Sinh": jnp.sinh, "Cosh": jnp.cosh, "Asinh": jnp.arcsinh,
    "Acosh": jnp.arccosh, "Atanh": jnp.arctanh, "Ceil": jnp.ceil, "Floor": jnp.floor,
    "Round": jnp.round, "ReLUBackward": lambda dy, x: dy * (x > 0).astype(dy.dtype),
    # tensor ⊕ tensor (broadcasting)
    "Add": jnp.add, "Sub": jnp.subtract, "EltwiseMult": jnp.multiply, "Div": jnp.divide,
    "Pow": jnp.power, "Mult": jnp.matmul,
    "__add__": jnp.add, "__sub__": jnp.subtract, "__mul__": jnp.multiply,
    "__div__": jnp.divide, "__truediv__": jnp.divide,
    "GT": COMPARISONS["gt"], "GE": COMPARISONS["ge"], "LT": COMPARISONS["lt"], "LE": COMPARISONS["le"],
    "__gt__": COMPARISONS["gt"], "__ge__": COMPARISONS["ge"],
    "__lt__": COMPARISONS["lt"], "__le__": COMPARISONS["le"],
    # tensor ⊕ scalar
    "AddFloat": _same_dtype(jnp.add), "SubFloat": _same_dtype(jnp.subtract),
    "MultFloat": _same_dtype(jnp.multiply), "DivFloat": _same_dtype(jnp.divide),
    "PowFloat": _same_dtype(jnp.power),
    "GTFloat": COMPARISONS["gt"], "GEFloat": COMPARISONS["ge"],
    "LTFloat": COMPARISONS["lt"], "LEFloat": COMPARISONS["le"],
    # shape and reductions
    "DefaultTranspose": lambda x: x.T,
    "Transpose": lambda x, axes=None: jnp.transpose(x, None if axes is None else tuple(axes)),
    "Reshape": lambda x, shape: jnp.reshape(x, tuple(shape)),
    "Sum": lambda x, axis=None: jnp.sum(x, axis=axis) if axis is not None else jnp.sum(x).reshape(1),
    "SumAll": lambda x: jnp.sum(x).reshape(1),
    "SumRows": lambda m: jnp.sum(m, axis=0), "SumColumns": lambda m: jnp.sum(m, axis=1),
    "AddRow": lambda v, m: m + v, "AddColumn": lambda v, m: m + v[:, None],
    "ConcatOn": lambda xs, axis: jnp.concatenate([raw(x) for x in xs], axis=axis),
    "SliceOn": lambda x, start, end, axis: jax.lax.slice_in_dim(x, start, end, axis=axis),
    "Average": lambda x, axis: jnp.mean(x, axis=axis),
    # softmax and losses
    "SoftMax": _softmax, "SoftMaxBackward": _softmax_backward,
    "CrossEntropyFwd": _cross_entropy_fwd, "SoftmaxCrossEntropyBwd": _softmax_cross_entropy_bwd,
}


def _lift(name: str, fn: Callable) -> Callable:
    def call(*args, **kwargs):
        view = any(type(a) is CTensor for a in args)
        try:
            out = fn(*[raw(a) for a in args], **kwargs)
        except (TypeError, ValueError) as err:
            shapes = ", ".join(str(getattr(raw(a), "shape", type(a).__name__)) for a in args)
            raise ValueError(f"singa_wrap.{name}: cannot apply to ({shapes}): {err}") from None
        return CTensor.view(out) if view else out
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"SINGA's `{name}` over jax arrays or CTensors."
    return call


globals().update({name: _lift(name, fn) for name, fn in FUNCTIONS.items()})


def _fill(name: str, sample: Callable) -> Callable:
    def fill(a: float, b: float, t: CTensor) -> None:
        if type(t) is not CTensor:
            raise TypeError(f"singa_wrap.{name}: fills a CTensor in place, got {type(t).__name__}")
        key = t.device().next_key()
        t.value = sample(key, a, b, t.value).astype(t.value.dtype)
    fill.__name__ = name
    fill.__doc__ = f"SINGA's `{name}`: fill the CTensor `t` in place from the device's key stream."
    return fill


Gaussian = _fill("Gaussian", lambda k, mean, std, v: mean + std * jax.random.normal(k, v.shape))
Uniform = _fill("Uniform", lambda k, low, high, v: jax.random.uniform(k, v.shape, minval=low, maxval=high))


def Bernoulli(p: float, t: CTensor) -> None:  # noqa: N802 - SINGA's name
    """Fill the CTensor `t` in place with 1 (probability p) or 0."""
    t.value = jax.random.bernoulli(t.device().next_key(), p, t.value.shape).astype(t.value.dtype)


def CopyDataToFrom(dst: CTensor, src: Any, num: int, dst_offset: int = 0,  # noqa: N802
                   src_offset: int = 0) -> None:
    """Copy `num` values of `src` (from `src_offset`) into `dst` (at `dst_offset`), flat."""
    d = np.asarray(dst.value).ravel().copy()
    d[dst_offset:dst_offset + num] = np.asarray(raw(src)).ravel()[src_offset:src_offset + num]
    dst.value = jax.device_put(d.reshape(dst.value.shape), next(iter(dst.value.devices())))


__all__ = ["Tensor", "CTensor", "NcclIdHolder", "BatchNormHandle", "CudnnBatchNormHandle",
           "CudnnRNNHandle", "ConvHandle", "CudnnConvHandle", "PoolingHandle", "CudnnPoolingHandle",
           "Gaussian", "Uniform", "Bernoulli", "CopyDataToFrom", "FUNCTIONS",
           *FUNCTIONS]
