"""Tensor internals: the helpers behind Tensor's methods, random fills, and the element-wise
engine with SINGA's promotion rules (section 1.7). Re-exported by `singax.tensor`."""
from __future__ import annotations

import functools
import operator
from typing import Any
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from . import device as _device

from .tensor import (  # noqa: F401
    _F32, _F64, _I32,
    _ARRAY_TYPES,
    _on,
    _np_input,
    IndexValueError,
    Tensor,
)


# --- helpers ---------------------------------------------------------------
def _wrap(array, dev, requires_grad: bool = True, creator=None, name: str | None = None) -> Tensor:
    """A Tensor around an array already on `dev`: the constructor minus its device_put
    (the hot path of operator outputs, gradients and compiled-step outputs)."""
    t = Tensor.__new__(Tensor)
    t._init(array, dev, requires_grad, False, creator, name)
    return t


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


def _float_of(dt) -> np.dtype:
    dt = np.dtype(dt)
    return dt if jnp.issubdtype(dt, jnp.floating) else _F32


def _index_int(v: Any) -> int:
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    raise IndexValueError(f"Tensor.__getitem__: slice bounds must be ints, got {v!r}")


def _reshape_target(old: tuple, shape: Any, where: str) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{where}: shape must be a sequence of ints, got {shape!r}") from None
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


def _matrix_vector(m: Tensor, v: Any, column: bool, where: str):
    """The raw vector of a column/row op, shaped to broadcast over the 2-D `m`."""
    if not isinstance(m, Tensor) or m.ndim() != 2:
        raise ValueError(f"{where}: expected a 2-D tensor, got shape {getattr(m, 'shape', None)}")
    if not isinstance(v, Tensor):
        raise TypeError(f"{where}: v must be a Tensor, got {type(v).__name__}")
    n = m.shape[0] if column else m.shape[1]
    if v.size() != n:
        kind = "rows" if column else "columns"
        raise ValueError(f"{where}: v of shape {v.shape} must have {n} elements (the {kind} of {m.shape})")
    return jnp.reshape(v.data, (n, 1) if column else (1, n))


# --- element-wise binary engine (SINGA's promotion, section 1.7) ------------------
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


def _true_div(a, b):
    # integer results truncate toward zero, like SINGA's float→int cast
    return lax.div(a, b) if jnp.issubdtype(a.dtype, jnp.integer) else a / b


_KERNELS = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
    "floordiv": lambda a, b: jnp.floor(a / b), "pow": jnp.power,
    "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "eq": jnp.equal,
}
# integer results (both operands integer tensors): division truncates like SINGA's cast, // floors
_INT_KERNELS = {"div": lax.div, "floordiv": jnp.floor_divide}
_COMPARISONS = frozenset({"lt", "le", "gt", "ge", "eq"})


def _operand(x: Any):
    """(value, dtype or None for a scalar); None when `x` is not a numeric operand."""
    if isinstance(x, Tensor):
        return x.data, x._np_dtype()
    if isinstance(x, (bool, int, float, np.number, np.bool_)):
        return float(x), None
    if isinstance(x, _ARRAY_TYPES) or isinstance(x, np.ndarray):
        if jnp.ndim(x) == 0:
            return x, None
        if isinstance(x, np.ndarray):
            x = jnp.asarray(_np_input(x, "tensor"))
        return x, np.dtype(x.dtype)
    return None


def _compute(name: str, x: Any, y: Any, where: str, into: tuple | None = None):
    """The raw result and device of `x <name> y` (at least one a Tensor), or NotImplemented."""
    ox, oy = _operand(x), _operand(y)
    if ox is None or oy is None:
        return NotImplemented, None
    (a, da), (b, db) = ox, oy
    if isinstance(x, Tensor) and isinstance(y, Tensor) and x.device is not y.device:
        raise ValueError(f"{where}: tensors are on different devices ({x.device} and {y.device}); "
                         "move one with to_device first")
    if da is not None and db is not None:
        rt = _result_dtype(da, db)
        if a.shape != b.shape or (into is not None and a.shape != into):
            try:
                out_shape = np.broadcast_shapes(a.shape, b.shape)
            except ValueError:
                raise ValueError(f"{where}: shapes {a.shape} and {b.shape} do not broadcast") from None
            if into is not None and out_shape != into:
                raise ValueError(f"{where}: result of shape {out_shape} (from {a.shape} and {b.shape}) "
                                 f"cannot be stored in place into shape {into}")
    else:
        rt = _result_dtype(da if da is not None else db, None)
    if not isinstance(a, float) and a.dtype != rt:
        a = a.astype(rt)
    if not isinstance(b, float) and b.dtype != rt:
        b = b.astype(rt)
    kernel = _INT_KERNELS.get(name) if rt.kind in "iu" else None
    out = (kernel or _KERNELS[name])(a, b)
    if name in _COMPARISONS:
        out = out.astype(rt)
    dev = x.device if isinstance(x, Tensor) else y.device
    return out, dev


def _binary(name: str, x: Any, y: Any, where: str):
    out, dev = _compute(name, x, y, where)
    if out is NotImplemented:
        return NotImplemented
    return _wrap(out, dev)


def _inplace(t: Tensor, name: str, x: Any, where: str) -> Tensor:
    out, _ = _compute(name, t, x, where, into=t.shape)
    if out is NotImplemented:
        return NotImplemented
    dt = t._np_dtype()
    t.data = out if out.dtype == dt else out.astype(dt)
    return t


def _binary_fn(name: str, x: Any, y: Any, where: str) -> Tensor:
    """Module-level form: non-Tensor lhs or non-numeric operands are TypeErrors."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: lhs must be a Tensor, got {type(x).__name__}")
    out = _binary(name, x, y, where)
    if out is NotImplemented:
        raise TypeError(f"{where}: rhs must be a Tensor or a number, got {type(y).__name__}")
    return out


def _write(ret: Tensor, result: Tensor, where: str) -> Tensor:
    """Store `result` into `ret` in place (SINGA's `ret=`/`out=`); same shape required."""
    if not isinstance(ret, Tensor):
        raise TypeError(f"{where}: the output must be a Tensor, got {type(ret).__name__}")
    if ret.shape != result.shape:
        raise ValueError(f"{where}: result shape {result.shape} does not match the output shape {ret.shape}")
    ret.data = result.data.astype(ret._np_dtype())
    return ret
