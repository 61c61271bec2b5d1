"""Binary and n-ary operators, comparisons, logic and the
forward-only ops of 2.6, one row each.

Broadcasting gradients are un-broadcast by `jax.vjp` itself. This module
defines `sum`, `max`, `min` and `pow`, shadowing the builtins: code below them must
not call the builtin versions (use `builtins.` if ever needed).
"""
from __future__ import annotations

import functools
import math
import operator

import jax.numpy as jnp
import numpy as np

from ._op import Op, register
from ._tape import OperandError, back_broadcast
from .. import tensor as _tensor
from ..tensor import Tensor
from ..tensor._engine import is_floating

# the hand-written names; `register(..., export=__all__)` adds each row's name
__all__: list[str] = ["add_all"]


# --- arithmetic -------------------------------------------------------------

def _narrow(x) -> bool:
    """True for dtypes SINGA computes in float32 and casts back (ints, 16-bit floats)."""
    return not is_floating(x.dtype) or x.dtype.itemsize < 4


def _as_first(f):
    """SINGA's Sub/Div: a narrow first input is computed in float32 and cast back to its dtype."""
    def g(a, b):
        if _narrow(a):
            return f(a.astype(jnp.float32), b.astype(jnp.float32)).astype(a.dtype)
        return f(a, b)
    return g


def _mul(a, b):
    # SINGA: an int operand makes the product int32 (computed in float)
    if not is_floating(a.dtype) or not is_floating(b.dtype):
        return (a.astype(jnp.float32) * b.astype(jnp.float32)).astype(jnp.int32)
    return a * b


def _matmul_check(x, w):
    xs, ws = x.shape, w.shape
    if not xs or not ws:
        raise ValueError(f"matmul: inputs must be at least 1-D, got shapes {xs} and {ws}")
    k = ws[-2] if len(ws) >= 2 else ws[0]
    if xs[-1] != k:
        raise ValueError(f"matmul: x of shape {xs} has {xs[-1]} columns but w of shape "
                         f"{ws} has {k} rows")
    try:
        if len(xs) > 2 or len(ws) > 2:
            np.broadcast_shapes(xs[:-2], ws[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of x {xs} and w {ws} do not broadcast") from None


def _add_bias_check(x, b, axis=0):
    if axis not in (0, 1):
        raise OperandError(f"add_bias: axis must be 0 (bias per column) or 1 (bias per row), got {axis!r}")
    xs, bs = x.shape, b.shape
    if len(xs) != 2:
        raise ValueError(f"add_bias: x must be 2-D, got shape {xs}")
    n = xs[1 - axis]
    if not (len(bs) == 1 or (len(bs) == 2 and 1 in bs)) or math.prod(bs) != n:
        raise ValueError(f"add_bias: x of shape {xs} with axis={axis} needs a bias of {n} "
                         f"elements (shape ({n},) or (1, {n})), got shape {bs}")


def _add_bias(x, b, axis=0):
    b = jnp.reshape(b, (1, -1) if axis == 0 else (-1, 1))
    return (x + b).astype(x.dtype)   # in place in SINGA, so x's dtype is kept


def _gemm(A, B, C=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    y = alpha * ((A.T if transA else A) @ (B.T if transB else B))
    return y if C is None else y + beta * C


def _gemm_check(A, B, C=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"gemm: A and B must be 2-D, got shapes {A.shape} and {B.shape}")
    (m, k), (k2, n) = A.shape[::-1] if transA else A.shape, B.shape[::-1] if transB else B.shape
    if k != k2:
        raise ValueError(f"gemm: A' {(m, k)} and B' {(k2, n)} do not match (transA={transA}, "
                         f"transB={transB}; A {A.shape}, B {B.shape})")
    if C is not None:
        try:
            ok = np.broadcast_shapes(C.shape, (m, n)) == (m, n)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"gemm: C of shape {C.shape} does not broadcast to the output shape {(m, n)}")


def _select(xs, better):
    """Fold left to right keeping the earlier input on ties and the first NaN (NaN propagates,
    as in numpy and ONNX); return (value, index of the winner)."""
    cur = xs[0]
    idx = jnp.zeros(jnp.broadcast_shapes(*[x.shape for x in xs]), jnp.int32)
    for i, x in enumerate(xs[1:], 1):
        take = (better(x, cur) | jnp.isnan(x)) & ~jnp.isnan(cur)
        cur, idx = jnp.where(take, x, cur), jnp.where(take, i, idx)
    return jnp.broadcast_to(cur, idx.shape), idx


def _select_grad(better):
    def grad(dy, *xs, y=None):
        _, idx = _select(xs, better)
        return tuple(back_broadcast(dy.shape, x.shape, dy * (idx == i)) for i, x in enumerate(xs))
    return grad


# --- SINGA's own signatures: the `function` column of the rows below; each calls the
# generated function its table binds (`_add_bias_fn`...)

def add_bias(x: Tensor, b: Tensor, axis: int = 0) -> Tensor:
    """Add a bias to every row (axis=0, len(b) = columns) or column (axis=1) of a 2-D x.

    Like SINGA this modifies `x` in place (its `.data` becomes the result) and
    returns the result; `b` may be 1-D or a (1, n) row.

    SINGA: its axis=1 bias gradient sums over rows (wrong length); singax sums over axis 1.
    """
    return _add_bias_fn(x, b, axis=axis)


def gemm(A: Tensor, B: Tensor, C: Tensor | None = None, alpha: float = 1.0, beta: float = 1.0,
         transA: int = 0, transB: int = 0) -> Tensor:
    """alpha * A' @ B' + beta * C, where A' = A.T if transA and B' = B.T if transB.

    `C` is optional and broadcast to the (M, N) output; its gradient is un-broadcast.
    """
    xs = (A, B) if C is None else (A, B, C)
    return _gemm_fn(*xs, alpha=alpha, beta=beta, transA=transA, transB=transB)


def sum(*l: Tensor) -> Tensor:
    """Element-wise sum of any number of tensors (shadows the builtin in this module)."""
    return _sum_fn(*l)


def mean(*l: Tensor) -> Tensor:
    """Element-wise mean of any number of tensors."""
    return _mean_fn(*l)


def max(*l: Tensor) -> Tensor:
    """Element-wise max, folded left to right; ties go to the earlier input."""
    return _max_fn(*l)


def min(*l: Tensor) -> Tensor:
    """Element-wise min, folded left to right; ties go to the earlier input."""
    return _min_fn(*l)


add, sub, mul, div, pow, matmul, _add_bias_fn, _gemm_fn = register(
    Op("add", operator.add, inputs=2, doc="a + b, broadcast."),
    Op("sub", _as_first(operator.sub), inputs=2,
       doc="a - b, broadcast; an int or 16-bit a is computed in float32 and cast back to a's dtype."),
    Op("mul", _mul, inputs=2,
       doc="a * b, broadcast; an int operand makes the result int32 (as SINGA)."),
    Op("div", _as_first(operator.truediv), inputs=2,
       doc="a / b, broadcast; an int or 16-bit a is computed in float32 and cast back to a's dtype."),
    Op("pow", jnp.power, inputs=2,
       doc="a ** b for two tensors (broadcast); db needs a > 0."),
    Op("matmul", jnp.matmul, inputs=2, check=_matmul_check,
       doc="Matrix product: 2-D, or batched over broadcast leading dims.\n\n"
           "SINGA: its batched backward reverses all axes instead of the last two; "
           "singax's batched gradient is correct."),
    Op("add_bias", _add_bias, cls="AddBias", attrs=(("axis", 0),), inputs=2, check=_add_bias_check,
       function=add_bias, in_place=0,
       doc="Add bias b to every row (axis=0) or column (axis=1) of a 2-D x, in place."),
    Op("gemm", _gemm, attrs=(("alpha", 1.0), ("beta", 1.0), ("transA", 0), ("transB", 0)),
       inputs=None, check=_gemm_check, function=gemm,
       doc="alpha * A' @ B' + beta * C, A' = A.T if transA (likewise B); C optional, broadcast."),
    export=__all__,
)

_sum_fn, _mean_fn, _max_fn, _min_fn = register(
    Op("sum", lambda *xs: functools.reduce(operator.add, xs), inputs=None, function=sum,
       doc="Element-wise sum of the inputs.\n\nSINGA: its backward returns a list, which breaks "
           "autograd.backward; singax returns one gradient per input."),
    Op("mean", lambda *xs: functools.reduce(operator.add, xs) / len(xs), inputs=None, function=mean,
       doc="Element-wise mean of the inputs.\n\nSINGA: its backward returns a list, which breaks "
           "autograd.backward; singax returns one gradient per input."),
    Op("max", lambda *xs: _select(xs, jnp.greater)[0], grad=_select_grad(jnp.greater), inputs=None,
       function=max,
       doc="Element-wise max; a tie goes to the earlier input, which gets dy.\n\n"
           "SINGA: its backward returns the selection masks without multiplying by dy."),
    Op("min", lambda *xs: _select(xs, jnp.less)[0], grad=_select_grad(jnp.less), inputs=None,
       function=min,
       doc="Element-wise min; a tie goes to the earlier input, which gets dy.\n\n"
           "SINGA: its backward returns the selection masks without multiplying by dy."),
    export=__all__,
)


# --- comparisons and logic (float 1.0 / 0.0 outputs, no backward) -----------

def _float_dtype(*xs):
    dt = jnp.result_type(*xs)
    return dt if jnp.issubdtype(dt, jnp.floating) else jnp.float32


def _cmp(f):
    def forward(x, y):
        dt = _float_dtype(x, y)
        return f(x.astype(dt), y.astype(dt)).astype(dt)
    return forward


def _logic(f):
    return lambda *xs: f(*[x != 0 for x in xs]).astype(_float_dtype(*xs))


_LOGIC = dict(inputs=2, differentiable=False)

less, greater, equal, _and, _or, _xor, _not = register(
    Op("less", _cmp(lambda x, y: (x - y) < 0), inputs=2, differentiable=False,
       doc="1.0 where x < y else 0.0 (broadcast)."),
    Op("greater", _cmp(lambda x, y: (x - y) > 0), inputs=2, differentiable=False,
       doc="1.0 where x > y else 0.0 (broadcast)."),
    Op("equal", _cmp(jnp.equal), inputs=2, differentiable=False, doc="1.0 where x == y else 0.0 (broadcast)."),
    Op("_and", _logic(jnp.logical_and), cls="And", **_LOGIC,
       doc="1.0 where both a and b are non-zero."),
    Op("_or", _logic(jnp.logical_or), cls="Or", **_LOGIC,
       doc="1.0 where a or b is non-zero."),
    Op("_xor", _logic(jnp.logical_xor), cls="Xor", **_LOGIC,
       doc="1.0 where exactly one of a, b is non-zero."),
    Op("_not", _logic(jnp.logical_not), cls="Not", inputs=1, differentiable=False, doc="1.0 where x is zero."),
    export=__all__,
)


# --- forward-only ops --------------------------------------------------------

def _first(v):
    """A scalar attribute that ONNX may have set as a 1-element array (now a tuple)."""
    return v[0] if isinstance(v, tuple) else v


def _cast_check(x, to=None):
    if to is None:
        raise ValueError("cast: `to` (a SINGA dtype code such as tensor.int32) is required")
    _tensor.to_np_dtype(to)


def _onehot(indices, axis=-1, depth=None, values=(0.0, 1.0)):
    depth = int(_first(depth))
    idx = jnp.mod(indices.astype(jnp.int32), depth)   # negative and large indices wrap, as SINGA
    y = jnp.where(idx[..., None] == jnp.arange(depth), float(values[1]), float(values[0]))
    return jnp.moveaxis(y.astype(jnp.float32), -1, axis)


def _onehot_check(indices, axis=-1, depth=None, values=(0.0, 1.0)):
    if depth is None or int(_first(depth)) < 1:
        raise ValueError(f"onehot: depth must be a positive int, got {depth!r}")
    if not isinstance(values, tuple) or len(values) != 2:
        raise ValueError(f"onehot: values must be [off_value, on_value], got {values!r}")
    if not -(indices.ndim + 1) <= axis <= indices.ndim:
        raise ValueError(f"onehot: axis {axis} out of range for {indices.ndim}-D indices "
                         f"(valid: {-(indices.ndim + 1)}..{indices.ndim})")


def _nonzero(x):
    a = np.asarray(x)
    return jnp.asarray(np.array(np.nonzero(a), dtype=np.int32).reshape(a.ndim, -1))


def _constant_of_shape(x, value=0.0):
    dims = tuple(int(d) for d in np.asarray(x).reshape(-1))
    if any(d < 0 for d in dims):
        raise ValueError(f"constant_of_shape: dims must be >= 0, got {list(dims)}")
    if math.prod(dims) >= 2 ** 31:
        raise ValueError(f"constant_of_shape: dims {list(dims)} ask for {math.prod(dims)} elements, more than "
                         "singax fills (2**31 - 1)")
    return jnp.full(dims, float(_first(value)), jnp.float32)


def _dims_of(dy) -> list:
    """The dims of dy as a Python list."""
    return list(np.shape(dy))


def nonzero(x: Tensor) -> Tensor:
    """Indices of the non-zero elements of x: int32 of shape (x.ndim, nnz)."""
    return _nonzero_fn(x)


def onehot(axis: int, indices: Tensor, depth: int, values) -> Tensor:
    """One-hot encode `indices` (wrapped mod depth) with a new dim of size `depth` at `axis`.

    Args:
      axis: where the new dim goes (-1 = last). Note SINGA's order: axis comes first.
      indices: tensor of class indices (float or int; floats are truncated).
      depth: number of classes.
      values: `[off_value, on_value]`.
    """
    return _onehot_fn(indices, axis, depth, values)


shape, cast, _nonzero_fn, _onehot_fn, constant_of_shape = register(
    Op("shape", lambda x: jnp.asarray(x.shape, jnp.int32), differentiable=False,
       public_backward=_dims_of,
       doc="The dims of x as an int32 1-D tensor. Forward-only: `Shape().backward(dy)` "
           "returns `list(dy.shape)`, as SINGA's does."),
    Op("cast", lambda x, to=None: x.astype(_tensor.to_np_dtype(to)), attrs=(("to", None),),
       differentiable=False, check=_cast_check,
       doc="x converted to the dtype code `to`; float to int truncates toward zero."),
    Op("nonzero", _nonzero, cls="NonZero", differentiable=False, eager=True, function=nonzero,
       doc="Indices of the non-zero elements, int32 of shape (x.ndim, nnz), in numpy's order."),
    Op("onehot", _onehot, cls="OneHot", attrs=(("axis", -1), ("depth", None), ("values", (0.0, 1.0))),
       differentiable=False, check=_onehot_check, function=onehot,
       doc="One-hot encoding: float32, new dim of size depth at `axis`, values = [off, on]."),
    Op("constant_of_shape", _constant_of_shape, cls="ConstantOfShape", attrs=(("value", 0.0),),
       differentiable=False, eager=True,
       doc="A float32 tensor of the dims given by the 1-D tensor x, filled with `value`."),
    export=__all__,
)


def add_all(*xs: Tensor) -> Tensor:
    """Sum of one or more tensors, as a chain of `add` ops.

    SINGA: its add_all returns None (and needs at least 3 inputs); singax returns the sum.
    """
    if not xs:
        raise TypeError("add_all: needs at least one tensor")
    return functools.reduce(add, xs)
