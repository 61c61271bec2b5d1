"""The module-level functions of `singax.tensor` (SINGA's `tensor.add`, `tensor.mult`, ...)."""
from __future__ import annotations

import functools
import operator
from typing import Any, Sequence
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from .. import device as _device
from .._ctensor import CTensor as _CTensor

from .._handle import is_tracer
from ._engine import (_ARRAY_TYPES, _F32, _F64, _I32, _axis, _float_of, _fresh, _from_host,
                      _np_input, _on, _result_dtype, _value_in_trace, dtype_name, float32, to_np_dtype)
from ._tensor import Tensor, _binary, _inplace, _matrix_vector, _wrap


def _binary_fn(name: str, x: Any, y: Any, where: str) -> Tensor:
    """Module-level form: non-Tensor lhs or non-numeric operands are TypeErrors."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: lhs must be a Tensor, got {type(x).__name__}")
    out = _binary(name, x, y, where)
    if out is NotImplemented:
        raise TypeError(f"{where}: rhs must be a Tensor or a number, got {type(y).__name__}")
    return out


def _write(ret: Tensor | None, result: Tensor, where: str) -> Tensor:
    """`result`, or with `ret` given (SINGA's `ret=`/`out=`), `result` stored into `ret` in
    place (same shape required) and `ret`."""
    if ret is None:
        return result
    if not isinstance(ret, Tensor):
        raise TypeError(f"{where}: the output must be a Tensor, got {type(ret).__name__}")
    if ret.shape != result.shape:
        raise ValueError(f"{where}: result shape {result.shape} does not match the output shape {ret.shape}")
    ret.data = result.data.astype(ret._np_dtype())
    return ret


PlaceHolder = Tensor


# --- module functions ----------------------------------------------------------
def from_numpy(np_array: Any, dev: "_device.Device | None" = None) -> Tensor:
    """Tensor with the shape and values of `np_array` (float64→float32, int64→int32 as in SINGA).

    Other numeric dtypes keep a singax code (float16, bfloat16, int8, uint8, bool); a jax
    array (also a tracer) is accepted and converted the same way.
    """
    if isinstance(np_array, _ARRAY_TYPES):
        dt = np.dtype(np_array.dtype)
        target = {_F64: _F32, np.dtype("int64"): _I32}.get(dt, dt)
        to_np_dtype(target, "from_numpy")
        return Tensor(device=dev, data=_fresh(np_array.astype(target), np_array))
    arr = _np_input(np_array, "from_numpy")
    target = {_F64: _F32, np.dtype("int64"): _I32}.get(arr.dtype, arr.dtype)
    dt = to_np_dtype(target, "from_numpy")
    dev = dev if dev is not None else _device.get_default_device()
    return _wrap(_from_host(arr, dt, dev.jax_device, "from_numpy"), dev)


def to_numpy(t: Tensor) -> np.ndarray:
    """A numpy copy of `t` (its shape and dtype)."""
    data = t.data
    if is_tracer(data):
        raise _value_in_trace("tensor.to_numpy")
    return np.array(data)


def to_host(t: Tensor) -> Tensor:
    """A copy of `t` on the host CPU device."""
    ret = t.clone()
    ret.to_host()
    return ret


def from_raw_tensor(t: Any) -> Tensor:
    """Wrap a raw jax array or CTensor (its device kept) in a Tensor with default flags."""
    if type(t) is _CTensor:
        t = t.value
    if not isinstance(t, _ARRAY_TYPES):
        raise TypeError(f"from_raw_tensor: expected a jax.Array or a CTensor, got {type(t).__name__}")
    return Tensor(data=t)


def from_raw_tensors(tt: Sequence[Any]) -> list[Tensor]:
    """`from_raw_tensor` of each element."""
    return [from_raw_tensor(t) for t in tt]


def zeros_like(t: Tensor) -> Tensor:
    """Zeros with `t`'s shape, dtype and device."""
    return Tensor(t.shape, t.device, t._np_dtype())


def ones_like(t: Tensor) -> Tensor:
    """Ones with `t`'s shape, dtype and device."""
    return Tensor(t.shape, t.device, t._np_dtype()).set_value(1.0)


def zeros(shape: Sequence[int], device: "_device.Device | None" = None, dtype: Any = float32) -> Tensor:
    """A float32 tensor of zeros (`dtype` is a singax extension)."""
    return Tensor(shape, device, dtype)


def ones(shape: Sequence[int], device: "_device.Device | None" = None, dtype: Any = float32) -> Tensor:
    """A float32 tensor of ones (`dtype` is a singax extension)."""
    return Tensor(shape, device, dtype).set_value(1.0)


def random(shape: Sequence[int], device: "_device.Device | None" = None) -> Tensor:
    """A float32 tensor of U[0, 1) samples from the device key stream."""
    return Tensor(shape, device).uniform(0.0, 1.0)


def product(shape: Sequence[int]) -> int:
    """Product of the entries of `shape` (an empty shape raises TypeError, as in SINGA)."""
    shape = list(shape)
    if not shape:
        raise TypeError("product: empty shape () has no product (use Tensor.size() for element counts)")
    return functools.reduce(operator.mul, shape)


def sizeof(dtype: Any) -> int:
    """Bytes per element of a SINGA dtype code (or numpy dtype)."""
    return to_np_dtype(dtype, "sizeof").itemsize


def reshape(t: Tensor, shape: Sequence[int]) -> Tensor:
    """`t.reshape(shape)`."""
    return t.reshape(shape)


def transpose(t: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """`t.transpose(axes)`."""
    return t.transpose(axes)


def contiguous(t: Tensor) -> Tensor:
    """`t.contiguous()`."""
    return t.contiguous()


def copy_data_to_from(dst: Tensor, src: Tensor, size: int, dst_offset: int = 0, src_offset: int = 0) -> None:
    """Copy `size` elements of flat `src` from `src_offset` into flat `dst` at `dst_offset`, in place."""
    where = "copy_data_to_from"
    if not isinstance(dst, Tensor) or not isinstance(src, Tensor):
        raise TypeError(f"{where}: dst and src must be Tensors")
    if dst.dtype != src.dtype:
        raise TypeError(f"{where}: src dtype {dtype_name[src.dtype]} differs from dst dtype {dtype_name[dst.dtype]}")
    size, dst_offset, src_offset = int(size), int(dst_offset), int(src_offset)
    if size < 0 or dst_offset < 0 or src_offset < 0 or src_offset + size > src.size() or dst_offset + size > dst.size():
        raise ValueError(f"{where}: cannot copy {size} elements from offset {src_offset} of {src.size()} "
                         f"into offset {dst_offset} of {dst.size()}")
    piece = lax.slice(jnp.reshape(src.data, (-1,)), (src_offset,), (src_offset + size,))
    piece = _on(piece, dst.device)
    flat = lax.dynamic_update_slice(jnp.reshape(dst.data, (-1,)), piece, (dst_offset,))
    dst.data = jnp.reshape(flat, dst.shape)


def _unary(name: str, fn, float_only: bool):
    def apply(t: Tensor) -> Tensor:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(t).__name__}")
        x = t.data
        if float_only or name == "ceil":
            if not jnp.issubdtype(x.dtype, jnp.floating):
                if name == "ceil":  # ceil of an integer is itself
                    return t.clone()
                x = x.astype(_F32)
        return t._new(fn(x))
    apply.__name__ = apply.__qualname__ = name
    kind = "float32 for integer input" if float_only else "same dtype as t"
    apply.__doc__ = f"Element-wise {name} as a new tensor ({kind})."
    return apply


abs = _unary("abs", jnp.abs, False)
exp = _unary("exp", jnp.exp, True)
ceil = _unary("ceil", jnp.ceil, False)
log = _unary("log", jnp.log, True)
sigmoid = _unary("sigmoid", jax.nn.sigmoid, True)
sign = _unary("sign", jnp.sign, False)
sqrt = _unary("sqrt", jnp.sqrt, True)
square = _unary("square", jnp.square, False)
tanh = _unary("tanh", jnp.tanh, True)


def _sum_axes(t: Tensor, axis: Any, where: str) -> tuple:
    nd = t.ndim()
    if axis is None:
        return tuple(range(nd))
    if isinstance(axis, (list, tuple)):
        axes = tuple(_axis(a, nd, where) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{where}: repeated axis in {axis}")
        return axes
    return (_axis(axis, nd, where),)


def sum(t: Tensor, axis: Any = None, out: Tensor | None = None) -> Tensor:
    """Sum over `axis` (None, int or tuple); a full reduction has shape (1, 1) as in SINGA.

    Summing the only axis of a 1-D tensor is a full reduction, so it also gives (1, 1).
    SINGA: `out=` fails in SINGA (Tensor has no `__setitem__`); here the result is written
    into `out` (same shape required) and `out` is returned.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"sum: expected a Tensor, got {type(t).__name__}")
    axes = _sum_axes(t, axis, "sum")
    dt = _I32 if t._np_dtype() == np.bool_ else t._np_dtype()
    res = jnp.sum(t.data, axis=axes, dtype=dt)
    if res.ndim == 0:
        res = jnp.reshape(res, (1, 1))
    ret = t._new(res)
    return _write(out, ret, "sum")


def pow(t: Tensor, x: Any, out: Tensor | None = None) -> Tensor:
    """Element-wise t ** x (x a number or a broadcastable Tensor); written into `out` if given."""
    ret = _binary_fn("pow", t, x, "pow")
    return _write(out, ret, "pow")


def average(t: Tensor, axis: int | None = None):
    """Mean: a Python float for 1-D tensors (or `axis=None`); else the mean over `axis`.

    For a 2-D tensor, axis 0 gives the column means (shape (cols,)), axis 1 the row means.
    SINGA: `axis=None` on an N-D tensor fails in SINGA; here it returns the float mean.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"average: expected a Tensor, got {type(t).__name__}")
    ft = _float_of(t._np_dtype())
    if t.ndim() <= 1 or axis is None:
        return float(jnp.mean(t._concrete("average").astype(ft)))
    return t._new(jnp.mean(t.data.astype(ft), axis=_axis(axis, t.ndim(), "average")))


def softmax(t: Tensor, out: Tensor | None = None) -> Tensor:
    """Softmax of each row of a 2-D tensor (of all elements of a 0/1-D one).

    For other ranks or a chosen axis use `autograd.softmax`.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"softmax: expected a Tensor, got {type(t).__name__}")
    if t.ndim() > 2:
        raise ValueError(f"softmax: expected a tensor of rank <= 2, got shape {t.shape}; "
                         "use autograd.softmax(x, axis) for higher ranks")
    x = t.data.astype(_float_of(t._np_dtype()))
    ret = t._new(jax.nn.softmax(x, axis=-1 if t.ndim() == 2 else None))
    return _write(out, ret, "softmax")


def lt(t: Tensor, x: Any) -> Tensor:
    """`t < x` as 1/0 values."""
    return _binary_fn("lt", t, x, "lt")


def le(t: Tensor, x: Any) -> Tensor:
    """`t <= x` as 1/0 values."""
    return _binary_fn("le", t, x, "le")


def gt(t: Tensor, x: Any) -> Tensor:
    """`t > x` as 1/0 values."""
    return _binary_fn("gt", t, x, "gt")


def ge(t: Tensor, x: Any) -> Tensor:
    """`t >= x` as 1/0 values."""
    return _binary_fn("ge", t, x, "ge")


def eq(t: Tensor, x: Any) -> Tensor:
    """`t == x` as 1/0 values."""
    return _binary_fn("eq", t, x, "eq")


def add(lhs: Tensor, rhs: Any, ret: Tensor | None = None) -> Tensor:
    """lhs + rhs; written into `ret` (same shape) and returned if given."""
    return _write(ret, _binary_fn("add", lhs, rhs, "add"), "add")


def sub(lhs: Tensor, rhs: Any, ret: Tensor | None = None) -> Tensor:
    """lhs - rhs; written into `ret` (same shape) and returned if given."""
    return _write(ret, _binary_fn("sub", lhs, rhs, "sub"), "sub")


def eltwise_mult(lhs: Tensor, rhs: Any, ret: Tensor | None = None) -> Tensor:
    """lhs * rhs element-wise; written into `ret` (same shape) and returned if given."""
    return _write(ret, _binary_fn("mul", lhs, rhs, "eltwise_mult"), "eltwise_mult")


def div(lhs: Tensor, rhs: Any, ret: Tensor | None = None) -> Tensor:
    """lhs / rhs; written into `ret` (same shape) and returned if given."""
    return _write(ret, _binary_fn("div", lhs, rhs, "div"), "div")


def mult(A: Tensor, B: Tensor, C: Tensor | None = None, alpha: float = 1.0, beta: float = 0.0) -> Tensor:
    """Matrix product alpha·A@B (+ beta·C, written into C in place when C is given).

    2-D×2-D is GEMM, 2-D×1-D is GEMV (shape (m,)); 3-D/4-D operands are batched with
    equal leading dims, and the leading dims of a lower-rank operand broadcast
    ((2, 3, 4)×(4, 5) → (2, 3, 5)).
    SINGA: SINGA mis-shapes 2-D×1-D through its broadcasting step; here it is matrix·vector.
    SINGA: SINGA ignores `alpha` when `C` is None; here the product is always scaled by alpha.
    """
    where = "mult"
    if not isinstance(A, Tensor) or not isinstance(B, Tensor):
        raise TypeError(f"{where}: A and B must be Tensors")
    sa, sb = A.shape, B.shape
    if len(sa) < 1 or len(sb) < 1:
        raise ValueError(f"{where}: cannot multiply shapes {sa} and {sb} (0-d operand)")
    inner_b = sb[0] if len(sb) == 1 else sb[-2]
    if sa[-1] != inner_b:
        raise ValueError(f"{where}: inner dimensions differ: {sa} @ {sb}")
    ba, bb = sa[:-2], sb[:-2]
    short, long_ = (ba, bb) if len(ba) <= len(bb) else (bb, ba)
    if short and long_[len(long_) - len(short):] != short:
        raise ValueError(f"{where}: batch dimensions of {sa} and {sb} must be equal "
                         "(or one operand 2-D)")
    if A.device is not B.device:
        raise ValueError(f"{where}: A and B are on different devices ({A.device} and {B.device})")
    prod = jnp.matmul(A.data, B.data)
    if prod.ndim == 0:  # vector·vector: a full contraction, (1, 1) like tensordot
        prod = jnp.reshape(prod, (1, 1))
    if not (isinstance(alpha, (int, float)) and alpha == 1):
        prod = alpha * prod
    if C is None:
        return A._new(prod)
    if not isinstance(C, Tensor):
        raise TypeError(f"{where}: C must be a Tensor, got {type(C).__name__}")
    if C.shape != prod.shape:
        raise ValueError(f"{where}: C has shape {C.shape}, but A @ B has shape {prod.shape}")
    if not (isinstance(beta, (int, float)) and beta == 0):
        prod = prod + beta * C.data
    C.data = prod.astype(C._np_dtype())
    return C


def einsum(ops: str, *args: Tensor) -> Tensor:
    """numpy.einsum of exactly two tensors; `ops` needs `'->'` (e.g. `'ij,jk->ik'`).

    A full contraction returns shape (1, 1), like `tensordot`.
    """
    where = "einsum"
    if not ops:
        raise ValueError(f"{where}: no subscripts given")
    if len(args) != 2:
        raise ValueError(f"{where}: exactly two operands are supported, got {len(args)}")
    if "->" not in ops or ops.count(",") != 1:
        raise ValueError(f"{where}: subscripts must look like 'ij,jk->ik', got {ops!r}")
    A, B = args
    if not isinstance(A, Tensor) or not isinstance(B, Tensor):
        raise TypeError(f"{where}: operands must be Tensors")
    ins, outs = ops.replace(" ", "").split("->")
    in_a, in_b = ins.split(",")
    if not (in_a + in_b + outs).isalpha() or not (in_a + in_b + outs).islower():
        raise ValueError(f"{where}: subscripts must be lowercase letters, got {ops!r}")
    if len(in_a) != A.ndim() or len(in_b) != B.ndim():
        raise ValueError(f"{where}: subscripts {in_a!r},{in_b!r} do not match shapes {A.shape} and {B.shape}")
    try:
        res = jnp.einsum(ops, A.data, B.data)
    except ValueError as err:
        raise ValueError(f"{where}: {ops!r} cannot apply to shapes {A.shape} and {B.shape}: {err}") from None
    if res.ndim == 0:
        res = jnp.reshape(res, (1, 1))
    return A._new(res)


def tensordot(A: Tensor, B: Tensor, axes: Any = 2) -> Tensor:
    """numpy.tensordot; a full contraction returns shape (1, 1) as in SINGA."""
    where = "tensordot"
    if not isinstance(A, Tensor) or not isinstance(B, Tensor):
        raise TypeError(f"{where}: A and B must be Tensors")
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > min(A.ndim(), B.ndim()):
            raise ValueError(f"{where}: axes={n} is invalid for shapes {A.shape} and {B.shape}")
        axes_a, axes_b = list(range(A.ndim() - n, A.ndim())), list(range(n))
    else:
        try:
            axes_a, axes_b = axes
        except (TypeError, ValueError):
            raise ValueError(f"{where}: axes must be an int or a pair of axis lists, got {axes!r}") from None
        axes_a = [axes_a] if isinstance(axes_a, (int, np.integer)) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, (int, np.integer)) else list(axes_b)
        axes_a = [_axis(a, A.ndim(), where) for a in axes_a]
        axes_b = [_axis(b, B.ndim(), where) for b in axes_b]
    if len(axes_a) != len(axes_b) or any(A.shape[i] != B.shape[j] for i, j in zip(axes_a, axes_b)):
        raise ValueError(f"{where}: shape mismatch: axes {axes_a} of {A.shape} vs axes {axes_b} of {B.shape}")
    res = jnp.tensordot(A.data, B.data, (axes_a, axes_b))
    if res.ndim == 0:
        res = jnp.reshape(res, (1, 1))
    return A._new(res)


def repeat(t: Tensor, repeats: Any, axis: int | None = None) -> Tensor:
    """`t.repeat(repeats, axis)`."""
    return t.repeat(repeats, axis)


def concatenate(tensors: Sequence[Tensor], axis: int) -> Tensor:
    """Join tensors along `axis` (all other dims equal; dtypes promote as in numpy)."""
    where = "concatenate"
    tensors = list(tensors)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError(f"{where}: expected a non-empty list of Tensors")
    nd = tensors[0].ndim()
    ax = _axis(axis, nd, where)
    for t in tensors[1:]:
        s0, s = tensors[0].shape, t.shape
        if len(s) != nd or s[:ax] + s[ax + 1:] != s0[:ax] + s0[ax + 1:]:
            raise ValueError(f"{where}: shapes {[x.shape for x in tensors]} differ outside axis {axis}")
    res = jnp.concatenate([t.data for t in tensors], axis=ax)
    return _wrap(_fresh(res, *[t.data for t in tensors]), tensors[0].device)


def axpy(alpha: float, x: Tensor, y: Tensor) -> Tensor:
    """y += alpha * x in place (x broadcasts into y's shape); returns y."""
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("axpy: x and y must be Tensors")
    scaled = x.data if isinstance(alpha, (int, float)) and alpha == 1 else alpha * x.data
    return _inplace(y, "add", _wrap(scaled, x.device), "axpy")


def bernoulli(p: float, t: Tensor) -> Tensor:
    """Fill `t` in place with 1 (probability p) or 0; returns t."""
    return t.bernoulli(p)


def gaussian(mean: float, std: float, t: Tensor) -> Tensor:
    """Fill `t` in place with N(mean, std²) samples; returns t."""
    return t.gaussian(mean, std)


def uniform(low: float, high: float, t: Tensor) -> Tensor:
    """Fill `t` in place with U[low, high) samples; returns t."""
    return t.uniform(low, high)


def _scaled_add(alpha, v, beta, M: Tensor, column: bool, where: str) -> Tensor:
    vec = _matrix_vector(M, v, column, where)
    dt = _result_dtype(M._np_dtype(), np.dtype(vec.dtype))
    M.data = (alpha * vec.astype(dt) + beta * M.data.astype(dt)).astype(M._np_dtype())
    return M


def add_column(alpha: float, v: Tensor, beta: float, M: Tensor) -> Tensor:
    """Each column m of the 2-D `M` ← alpha·v + beta·m, in place; returns M."""
    return _scaled_add(alpha, v, beta, M, True, "add_column")


def add_row(alpha: float, v: Tensor, beta: float, M: Tensor) -> Tensor:
    """Each row m of the 2-D `M` ← alpha·v + beta·m, in place; returns M."""
    return _scaled_add(alpha, v, beta, M, False, "add_row")


def sum_columns(M: Tensor) -> Tensor:
    """Sum of the columns of a 2-D tensor: shape (rows, 1)."""
    if not isinstance(M, Tensor) or M.ndim() != 2:
        raise ValueError(f"sum_columns: expected a 2-D tensor, got shape {getattr(M, 'shape', None)}")
    return M._new(jnp.sum(M.data, axis=1, keepdims=True))


def sum_rows(M: Tensor) -> Tensor:
    """Sum of the rows of a 2-D tensor: shape (1, cols)."""
    if not isinstance(M, Tensor) or M.ndim() != 2:
        raise ValueError(f"sum_rows: expected a 2-D tensor, got shape {getattr(M, 'shape', None)}")
    return M._new(jnp.sum(M.data, axis=0, keepdims=True))


def copy_from_numpy(data: Any, np_array: Any):
    """Copy `np_array` into `data` (equal element count), converted by value.

    `data` may be a Tensor (updated in place, returned) or a raw jax array: raw arrays
    are immutable, so the new raw array is returned instead.
    SINGA: SINGA writes into the raw tensor in place; rebind the returned array here.
    """
    if isinstance(data, Tensor):
        data.copy_from_numpy(np_array)
        return data
    if not isinstance(data, _ARRAY_TYPES):
        raise TypeError(f"copy_from_numpy: expected a Tensor or a jax.Array, got {type(data).__name__}")
    arr = _np_input(np_array, "copy_from_numpy")
    if arr.size != data.size:
        raise ValueError(f"copy_from_numpy: array of shape {arr.shape} does not fit raw shape {data.shape}")
    if is_tracer(data):
        return jnp.asarray(arr.astype(np.dtype(data.dtype)).reshape(data.shape))
    return _from_host(arr, data.dtype, next(iter(data.devices())), "copy_from_numpy", data.shape)

