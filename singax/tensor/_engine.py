"""The array level under `singax.tensor`: SINGA's dtype codes, placement on devices,
argument checks, random fills and SINGA's result-dtype rules. Nothing here knows the
Tensor class; `_tensor.py` builds on it."""
from __future__ import annotations

import functools
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import device as _device
from .._args import is_int
from .._messages import MSG_VALUE_IN_TRACE

# SINGA dtype codes (float32/float16/int32 are SINGA's; the rest are singax's)
float32 = 0
float16 = 1
int32 = 2
int8 = 3
float64 = 4
uint8 = 5
bfloat16 = 6
int64 = 7
bool_ = 8

_CODE_TO_NP = {
    float32: np.dtype("float32"), float16: np.dtype("float16"), int32: np.dtype("int32"),
    int8: np.dtype("int8"), float64: np.dtype("float64"), uint8: np.dtype("uint8"),
    bfloat16: np.dtype(jnp.bfloat16), int64: np.dtype("int64"), bool_: np.dtype("bool"),
}
_NP_TO_CODE = {v: k for k, v in _CODE_TO_NP.items()}
dtype_name = {code: ("bfloat16" if code == bfloat16 else str(dt)) for code, dt in _CODE_TO_NP.items()}
dtype_name[bool_] = "bool"

_F32, _F64, _I32 = np.dtype("float32"), np.dtype("float64"), np.dtype("int32")

CTensor = jax.Array
_ARRAY_TYPES = (jax.Array, jax.core.Tracer)


def to_np_dtype(dtype: Any, where: str = "tensor") -> np.dtype:
    """Map a SINGA dtype code, `'int'`/`'float'`, or a numpy/jax dtype to a numpy dtype."""
    if is_int(dtype):
        if int(dtype) not in _CODE_TO_NP:
            raise ValueError(f"{where}: unknown dtype code {dtype}; known codes: "
                             + ", ".join(f"{c}={dtype_name[c]}" for c in _CODE_TO_NP))
        return _CODE_TO_NP[int(dtype)]
    if isinstance(dtype, str) and dtype in ("int", "float"):
        return _CODE_TO_NP[int32 if dtype == "int" else float32]
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: unsupported dtype {dtype!r}") from None
    if dt not in _NP_TO_CODE:
        raise TypeError(f"{where}: unsupported dtype {dt}; supported: "
                        + ", ".join(dtype_name[c] for c in _CODE_TO_NP))
    return dt


def to_code(dtype: Any) -> int:
    """The SINGA dtype code of a numpy/jax dtype (or of a code)."""
    return _NP_TO_CODE[to_np_dtype(dtype)]


def _on(array: Any, dev: "_device.Device"):
    """Place a concrete array on `dev` (tracers stay as they are)."""
    if isinstance(array, jax.core.Tracer):
        return array
    return jax.device_put(array, dev.jax_device)


def _value_in_trace(what: str) -> RuntimeError:
    return RuntimeError(MSG_VALUE_IN_TRACE.format(what=what))


def _np_input(x: Any, where: str) -> np.ndarray:
    """`x` as a numpy array of a dtype singax can convert by value."""
    arr = np.asarray(x)
    if arr.dtype.kind in "OUSVcmM":
        raise TypeError(f"{where}: unsupported numpy dtype {arr.dtype}; use a numeric or bool array")
    return arr


def _ints_of_shape(shape: Any, where: str) -> tuple:
    """An int or a sequence of ints as a tuple of ints (any sign); floats, bools and strings
    are refused rather than truncated."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        if isinstance(shape, (str, bytes)) or any(isinstance(s, (bool, np.bool_)) for s in shape):
            raise TypeError
        return tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"{where}: shape must be a sequence of ints, got {shape!r}") from None


def _from_host(x: Any, dtype: Any, jax_device: Any, where: str, shape: tuple | None = None) -> jax.Array:
    """A device array with the values of `x` converted to `dtype`, sharing no memory with `x`.

    XLA:CPU may use an aligned host buffer in place, so the values are first copied into
    a buffer that only the tensor holds. Integers that do not fit `dtype` raise
    OverflowError naming its range.
    """
    arr = _np_input(x, where)
    dt = np.dtype(dtype)
    if dt.kind in "iu" and arr.dtype.kind in "iuf" and arr.size and not np.can_cast(arr.dtype, dt):
        info = np.iinfo(dt)
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            raise OverflowError(f"{where}: values in [{lo}, {hi}] do not fit {dt} "
                                f"(range [{info.min}, {info.max}])")
    host = arr.astype(dt, copy=True)   # owned: device_put may keep using it
    return jax.device_put(host if shape is None else host.reshape(shape), jax_device)


def _shape_tuple(shape: Any, where: str) -> tuple:
    out = _ints_of_shape(shape, where)
    if any(s < 0 for s in out):
        raise ValueError(f"{where}: negative dimension in shape {out}")
    return out


def _axis(axis: Any, ndim: int, where: str) -> int:
    if not is_int(axis):
        raise TypeError(f"{where}: axis must be an int, got {axis!r}")
    a = int(axis) + (ndim if axis < 0 else 0)
    if not 0 <= a < ndim:
        raise ValueError(f"{where}: axis {axis} out of range for a {ndim}-D tensor")
    return a


class IndexValueError(ValueError, IndexError):
    """Bad Tensor index: a ValueError as in SINGA, and an IndexError so `for row in t` stops."""


# --- helpers ---------------------------------------------------------------
def _fresh(array, *sources):
    """`array`, copied if it is one of `sources` (so no two tensors share a buffer that
    Model.compile may donate)."""
    for s in sources:
        if array is s:
            return jnp.array(array, copy=True)
    return array


def _device_of(array) -> "_device.Device":
    try:
        jdev = next(iter(array.devices()))
    except Exception:
        return _device.get_default_device()
    for d in _device.get_devices() + [_device.get_default_device()]:
        if d.jax_device == jdev:
            return d
    return _device.get_default_device()


@functools.lru_cache(maxsize=None)
def is_floating(dtype) -> bool:
    """True for floating dtypes (float8 to float64, bfloat16); cached, for per-call checks."""
    return bool(jnp.issubdtype(dtype, jnp.floating))


def _float_of(dt) -> np.dtype:
    dt = np.dtype(dt)
    return dt if is_floating(dt) else _F32


def _index_int(v: Any) -> int:
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    raise IndexValueError(f"Tensor.__getitem__: slice bounds must be ints, got {v!r}")


def _reshape_target(old: tuple, shape: Any, where: str) -> tuple:
    shape = _ints_of_shape(shape, where)
    size = int(np.prod(old, dtype=np.int64))
    if shape.count(-1) > 1 or any(s < -1 for s in shape):
        raise ValueError(f"{where}: invalid target shape {shape} (at most one -1, no other negatives)")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise ValueError(f"{where}: cannot reshape {old} ({size} elements) into {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    if int(np.prod(shape, dtype=np.int64)) != size:
        raise ValueError(f"{where}: cannot reshape {old} ({size} elements) into {shape} "
                         f"({int(np.prod(shape, dtype=np.int64))} elements)")
    return shape


def _fill_value(x: Any, where: str):
    """A fill value: a Python float, or a 0-d jax array (a tracer inside Model.compile)."""
    if isinstance(x, _ARRAY_TYPES) and jnp.ndim(x) == 0:
        return x
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: expected a number, got {type(x).__name__}") from None


# Random fills draw a flat sample whose length is the next power of two and keep the
# first `size` values: a handful of compiled samplers serve every shape (parameter
# initialisation would otherwise compile once per shape). Concrete fills finish on the
# host (no further compiles); traced fills (inside Model.compile) finish with jnp. Both
# give the same numbers.
def _bucket(size: int) -> int:
    return 1 << max(0, size - 1).bit_length()


@functools.partial(jax.jit, static_argnames=("n", "kind", "dtype"))
def _flat_sample(key, n, kind, dtype):
    if kind == "normal":
        return jax.random.normal(key, (n,), dtype)
    return jax.random.uniform(key, (n,), dtype)


def _sample(key, kind: str, shape, dtype, finish, *params):
    size = int(np.prod(shape, dtype=np.int64))
    flat = _flat_sample(key, _bucket(size), kind, np.dtype(_float_of(dtype)))
    concrete = not any(isinstance(v, jax.core.Tracer) for v in (flat, *params))
    z = np.asarray(flat)[:size].reshape(shape) if concrete else flat[:size].reshape(shape)
    return finish(np if concrete else jnp, z), concrete


def _normal(key, mean, std, shape, dtype, device=None):
    def finish(xp, z):
        ft = z.dtype
        return (xp.asarray(mean, ft) + xp.asarray(std, ft) * z).astype(dtype)
    out, concrete = _sample(key, "normal", shape, dtype, finish, mean, std)
    return _on(out, device) if concrete and device is not None else out


def _uniform(key, low, high, shape, dtype, device=None):
    def finish(xp, z):
        ft = z.dtype
        lo, hi = xp.asarray(low, ft), xp.asarray(high, ft)
        return (lo + (hi - lo) * z).astype(dtype)
    out, concrete = _sample(key, "uniform", shape, dtype, finish, low, high)
    return _on(out, device) if concrete and device is not None else out


def _bernoulli(key, p, shape, dtype, device=None):
    def finish(xp, z):
        return (z < xp.asarray(p, z.dtype)).astype(dtype)
    out, concrete = _sample(key, "uniform", shape, dtype, finish, p)
    return _on(out, device) if concrete and device is not None else out


# --- element-wise binary engine (SINGA's promotion rules) ------------------
def _result_dtype(a: np.dtype, b: np.dtype | None) -> np.dtype:
    """SINGA's result dtype of Tensor⊕Tensor (`b` a dtype) or Tensor⊕scalar (`b` None)."""
    if b is None:
        return _F64 if a == _F64 else _F32
    if a == b == _F32:
        return _F32
    if a.kind in "biu" and b.kind in "biu":
        r = np.promote_types(a, b)
        return _I32 if r == np.bool_ else r
    return _F64 if _F64 in (a, b) else _F32


def _int_div(a, b):
    """Integer division truncating toward zero (like SINGA's float->int cast), broadcasting."""
    return lax.div(*jnp.broadcast_arrays(a, b))


def _true_div(a, b):
    return _int_div(a, b) if jnp.issubdtype(a.dtype, jnp.integer) else a / b


_KERNELS = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
    "floordiv": lambda a, b: jnp.floor(a / b), "pow": jnp.power,
    "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "eq": jnp.equal,
}
# integer results (both operands integer tensors): division truncates like SINGA's cast, // floors
_INT_KERNELS = {"div": _int_div, "floordiv": jnp.floor_divide}
_COMPARISONS = frozenset({"lt", "le", "gt", "ge", "eq"})
