"""Import builders for ops whose shapes, axes, pads... arrive as input values, and for
attribute-driven ops (Cast, Shape, Split, Dropout...)."""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import autograd
from ..tensor import Tensor
from ._importers import Imported, JaxOperator, _const, _fail, _ints, _op, _scalar, importer


# --------------------------------------------------------------------------- inputs as values
@importer("Reshape")
def _reshape(node, opset):
    allowzero = bool(node.getattr("allowzero", 0))
    op = _op("Reshape", node=node, shape=())

    def run(x, shape):
        dims = _ints(shape)
        if allowzero and 0 in dims:   # 0 is a dim of size 0 here, not a copy of the input's dim
            if -1 in dims or math.prod(x.shape) != 0:
                raise ValueError(f"Reshape: with allowzero=1 the target {dims} has a 0 dim, which needs "
                                 f"an empty input and no -1; got input {x.shape}")
            return _const(np.zeros(dims, x.data.dtype), x)
        op.shape = tuple(dims)
        return op(x)
    return Imported(node, run, op, values=(1,))


def _reshape_to(node, op, x: Tensor, shape) -> Tensor:
    op.shape = tuple(int(s) for s in shape)
    return op(x)[0]


@importer("Squeeze")
def _squeeze(node, opset):
    op = _op("Reshape", node=node, shape=())
    attr_axes = node.getattr("axes")

    def run(x, axes=None):
        shape = x.shape
        axes = attr_axes if axes is None else _ints(axes)
        if axes is None:
            keep = [s for s in shape if s != 1]
        else:
            drop = {int(a) % len(shape) for a in axes}
            bad = [a for a in drop if shape[a] != 1]
            if bad:
                raise ValueError(f"Squeeze: axes {sorted(bad)} of input {shape} do not have size 1")
            keep = [s for i, s in enumerate(shape) if i not in drop]
        return _reshape_to(node, op, x, keep)
    return Imported(node, run, op, values=(1,))


@importer("Unsqueeze")
def _unsqueeze(node, opset):
    op = _op("Reshape", node=node, shape=())
    attr_axes = node.getattr("axes")

    def run(x, axes=None):
        axes = _ints(attr_axes if axes is None else axes)
        rank = len(x.shape) + len(axes)
        new = {a % rank for a in axes}   # ONNX: positions in the output
        it = iter(x.shape)
        return _reshape_to(node, op, x, [1 if i in new else next(it) for i in range(rank)])
    return Imported(node, run, op, values=(1,))


@importer("ReduceSum", "ReduceMean", "ReduceMax")
def _reduce(node, opset):
    keepdims = int(node.getattr("keepdims", 1))
    noop = int(node.getattr("noop_with_empty_axes", 0))
    attr_axes = node.getattr("axes")
    op = _op(node.op_type, node=node, axes=None, keepdims=keepdims)
    flat = _op("Reshape", shape=())

    def run(x, axes=None):
        axes = attr_axes if axes is None else _ints(axes)
        if axes is not None and len(axes) == 0:
            axes = None
        if axes is None and noop:
            return _op("Identity")(x)[0]
        op.axes = None if axes is None else tuple(int(a) for a in axes)
        y = op(x)[0]
        full = axes is None or len(set(int(a) % len(x.shape) for a in axes)) == len(x.shape)
        if full and not keepdims:   # ONNX gives a 0-d result where singax gives (1, 1)
            y = _reshape_to(node, flat, y, ())
        return y
    return Imported(node, run, op, values=(1,))


@importer("Clip")
def _clip(node, opset):
    op = _op("Clip", node=node)

    def run(x, lo=None, hi=None):
        op.min, op.max = _scalar(lo), _scalar(hi)
        return op(x)
    return Imported(node, run, op, values=(1, 2))


@importer("Slice")
def _slice(node, opset):
    op = _op("Slice", node=node, starts=(), ends=())

    def run(x, starts, ends, axes=None, steps=None):
        op.starts, op.ends = tuple(_ints(starts)), tuple(_ints(ends))
        op.axes = None if axes is None else tuple(_ints(axes))
        op.steps = None if steps is None else tuple(_ints(steps))
        return op(x)
    return Imported(node, run, op, values=(1, 2, 3, 4))


def _ints_from_input(op_type: str, attr: str):
    """The importer of `op_type`, whose second input (a value) sets the op's int-tuple `attr`."""
    def build(node, opset):
        op = _op(op_type, node=node, **{attr: ()})

        def run(x, value):
            setattr(op, attr, tuple(_ints(value)))
            return op(x)
        return Imported(node, run, op, values=(1,))
    return build


importer("Tile")(_ints_from_input("Tile", "repeats"))
importer("Expand")(_ints_from_input("Expand", "shape"))


@importer("Gather")
def _gather(node, opset):
    axis = int(node.getattr("axis", 0))
    op = _op("Gather", node=node, axis=axis, indices=())

    def take(x, indices):
        n = x.shape[axis]
        return jnp.take(x, jnp.where(indices < 0, indices + n, indices), axis=axis)
    by_value = JaxOperator(take, name=node.name)

    def run(x, indices):
        if isinstance(indices, Tensor):   # indices computed from the graph inputs
            return by_value(x, indices)[0]
        op.indices = np.asarray(indices).astype(np.int64)
        return op(x)
    return Imported(node, run, op, maybe=(1,))


@functools.partial(jax.jit, static_argnames=("depth", "axis"))
def _one_hot(indices, values, *, depth: int, axis: int):
    """ONNX OneHot: negative indices count from depth; indices outside [-depth, depth) give
    an all-off row."""
    idx = jnp.trunc(indices).astype(jnp.int32)
    idx = jnp.where(idx < 0, idx + depth, idx)
    hot = idx[..., None] == jnp.arange(depth, dtype=jnp.int32)
    return jnp.moveaxis(jnp.where(hot, values[1], values[0]), -1, axis)


@importer("OneHot")
def _onehot(node, opset):
    axis = int(node.getattr("axis", -1))

    def run(indices, depth, values):
        d = int(_scalar(depth))
        if d < 1 or not -(len(indices.shape) + 1) <= axis <= len(indices.shape):
            raise ValueError(f"OneHot: depth {d} must be positive and axis {axis} within the output "
                             f"rank {len(indices.shape) + 1}")
        vals = np.asarray(values, np.float32).reshape(-1)
        y = _one_hot(indices.data, vals, depth=d, axis=axis)
        return Tensor(data=y, dtype=y.dtype, requires_grad=False)
    return Imported(node, run, None, values=(1, 2))


@importer("Pad")
def _pad(node, opset):
    mode = node.getattr("mode", "constant")
    if mode not in ("constant", "edge", "reflect"):
        raise _fail(node, f"mode {mode!r} is not supported (supported: constant, edge, reflect)")
    op = _op("Pad", node=node, mode="constant" if mode == "reflect" else mode, pads=())

    def run(x, pads, value=None, axes=None):
        r = len(x.shape)
        pads = _ints(pads)
        if axes is not None:   # opset 18: pads only for the listed axes
            full = [0] * (2 * r)
            ax = [int(a) % r for a in _ints(axes)]
            for k, a in enumerate(ax):
                full[a], full[a + r] = pads[k], pads[k + len(ax)]
            pads = full
        if min(pads, default=0) < 0:
            raise ValueError(f"Pad: negative pads {pads} (cropping) are not supported")
        if mode == "reflect":   # numpy-style mirror: gather the mirrored indices axis by axis
            for a in range(r):
                b, e = pads[a], pads[a + r]
                if b or e:
                    idx = np.pad(np.arange(x.shape[a]), (b, e), mode="reflect")
                    x = _op("Gather", axis=a, indices=idx)(x)[0]
            return x
        op.pads, op.constant = tuple(pads), _scalar(value) or 0.0
        return op(x)
    return Imported(node, run, op, values=(1, 2, 3))


def _nearest_index(n_in: int, n_out: int, scale: float, ctm: str, mode: str) -> np.ndarray:
    """Source index of each output position for ONNX nearest resizing along one axis."""
    x = np.arange(n_out, dtype=np.float64)
    if ctm == "half_pixel":
        v = (x + 0.5) / scale - 0.5
    elif ctm == "pytorch_half_pixel":
        v = (x + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(x)
    elif ctm == "align_corners":
        v = x * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(x)
    elif ctm == "asymmetric":
        v = x / scale
    elif ctm == "tf_half_pixel_for_nn":
        v = (x + 0.5) / scale
    else:
        raise ValueError(f"coordinate_transformation_mode {ctm!r} is not supported")
    rounding = {"round_prefer_floor": lambda a: np.ceil(a - 0.5), "round_prefer_ceil": lambda a: np.floor(a + 0.5),
                "floor": np.floor, "ceil": np.ceil}
    if mode not in rounding:
        raise ValueError(f"nearest_mode {mode!r} is not supported")
    return np.clip(rounding[mode](v), 0, n_in - 1).astype(np.int64)


def _resize_nearest(node, x: Tensor, scales, sizes, ctm: str, mode: str, up) -> Tensor:
    shape = x.shape
    if sizes is not None and np.asarray(sizes).size:
        sizes = _ints(sizes)
        scales = [o / i for o, i in zip(sizes, shape)]
    else:
        scales = [float(s) for s in np.asarray(scales).reshape(-1)]
        sizes = [int(math.floor(i * s)) for i, s in zip(shape, scales)]
    if len(scales) != len(shape):
        raise ValueError(f"{node.op_type}: {len(scales)} scales for a {len(shape)}-d input")
    index = [_nearest_index(i, o, s, ctm, mode) for i, o, s in zip(shape, sizes, scales)]
    reps = [o // i if i and o % i == 0 else 0 for i, o in zip(shape, sizes)]
    if all(r >= 1 and np.array_equal(ix, np.arange(o) // r) for r, ix, o in zip(reps, index, sizes)):
        up.scales = tuple(float(r) for r in reps)   # pixel repetition: singax's UpSample
        return up(x)[0]
    for a, (ix, n) in enumerate(zip(index, shape)):   # any other nearest map: gathers
        if not np.array_equal(ix, np.arange(n)):
            x = _op("Gather", axis=a, indices=ix)(x)[0]
    return x


@importer("Resize")
def _resize(node, opset):
    mode = node.getattr("mode", "nearest")
    if mode != "nearest":
        raise _fail(node, f"mode {mode!r} is not supported (only 'nearest')")
    ctm = node.getattr("coordinate_transformation_mode", "half_pixel")
    nearest = node.getattr("nearest_mode", "round_prefer_floor")
    if ctm == "tf_crop_and_resize" or node.getattr("antialias", 0) or node.getattr("axes") is not None \
            or node.getattr("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise _fail(node, "only plain nearest resizing is supported (no crop, antialias, axes or "
                          "aspect-ratio policy)")
    up = _op("UpSample", node=node, mode="nearest", scales=())

    def run(x, roi=None, scales=None, sizes=None):
        return _resize_nearest(node, x, scales, sizes, ctm, nearest, up)
    return Imported(node, run, up, values=(1, 2, 3))


@importer("Upsample")
def _upsample(node, opset):
    if node.getattr("mode", "nearest") != "nearest":
        raise _fail(node, "only mode 'nearest' is supported")
    up = _op("UpSample", node=node, mode="nearest", scales=())

    def run(x, scales):
        return _resize_nearest(node, x, scales, None, "asymmetric", "floor", up)
    return Imported(node, run, up, values=(1,))


@importer("Where")
def _where(node, opset):
    op = _op("Where", node=node, condition=())

    def run(cond, x, y):
        if isinstance(cond, Tensor):   # computed condition (1.0/0.0): blend with tensor ops
            one = _const(np.ones((), np.float32), cond)
            c = cond if cond.data.dtype == x.data.dtype else autograd.cast(cond, x.dtype)
            return autograd.add(autograd.mul(c, x), autograd.mul(autograd.sub(one, c), y))
        op.condition = np.asarray(cond).astype(np.float32)
        return op(x, y)
    return Imported(node, run, op, maybe=(0,))


_SCATTER_REDUCE = {"add": "add", "mul": "multiply", "max": "max", "min": "min"}


@importer("ScatterElements")
def _scatter(node, opset):
    reduction = node.getattr("reduction", "none")
    if reduction != "none" and reduction not in _SCATTER_REDUCE:
        raise _fail(node, f"reduction {reduction!r} is not one of none, add, mul, max, min")
    axis = int(node.getattr("axis", 0))
    op = _op("ScatterElements", node=node, indices=(), updates=(), axis=axis)

    def reduce(x, indices, updates):   # repeated indices all combine into the target element
        a = axis % x.ndim
        idx = jnp.where(indices < 0, indices + x.shape[a], indices)
        grid = np.indices(indices.shape, sparse=True)
        where = tuple(idx if d == a else jnp.asarray(grid[d]) for d in range(x.ndim))
        updates = jax.lax.stop_gradient(updates.astype(x.dtype))   # a constant input
        if reduction == "mul":   # x times the product of its updates (differentiable in x)
            return x * jnp.ones_like(x).at[where].multiply(updates)
        return getattr(x.at[where], _SCATTER_REDUCE[reduction])(updates)
    reducing = JaxOperator(reduce, name=node.name)

    def run(x, indices, updates):
        if reduction != "none":
            return reducing(x, _const(np.asarray(indices).astype(np.int32), x), _const(np.asarray(updates), x))
        op.indices, op.updates = np.asarray(indices).astype(np.int64), np.asarray(updates)
        return op(x)
    return Imported(node, run, op, values=(1, 2))


# --------------------------------------------------------------------------- attribute-driven
@importer("Shape")
def _shape(node, opset):
    start, end = node.getattr("start", 0), node.getattr("end")

    def run(x):
        # shapes are static, even inside a compiled step
        dims = np.asarray(x.shape, np.int32)[slice(start, end)]
        return _const(dims, x)
    return Imported(node, run, None)


@importer("ConstantOfShape")
def _constant_of_shape(node, opset):
    value = node.getattr("value")
    v = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    op = _op("ConstantOfShape", node=node, value=float(v[0]))
    is_int = v.dtype.kind in "iu"

    def run(shape):
        y = op(shape)[0]
        return autograd.cast(y, 2) if is_int else y
    return Imported(node, run, op)


@importer("Split")
def _split(node, opset):
    axis = int(node.getattr("axis", 0))
    attr_split = node.getattr("split")
    n = len(node.outputs)
    op = _op("Split", node=node, axis=axis, parts=None, num_output=n)

    def run(x, split=None):
        parts = attr_split if split is None else _ints(split)
        op.parts = None if parts is None else tuple(int(p) for p in parts)
        op.num_output = None if parts is not None else n
        if parts is None and x.shape[axis % len(x.shape)] % n:   # opset 18: a shorter last chunk
            size = -(-x.shape[axis % len(x.shape)] // n)
            op.parts = tuple([size] * (n - 1) + [x.shape[axis % len(x.shape)] - size * (n - 1)])
        return op(x)
    return Imported(node, run, op, values=(1,))


@importer("Dropout")
def _dropout(node, opset):
    ratio0 = float(node.getattr("ratio", 0.5))
    op = autograd.Dropout(int(node.getattr("seed", 0)), ratio0)

    def run(x, ratio=None, training_mode=None):
        op.ratio = ratio0 if ratio is None else float(_scalar(ratio))
        y = op(x)[0]
        if len(node.outputs) > 1 and node.outputs[1]:
            return y, _const(np.ones(x.shape, np.float32), x)   # the mask (all kept in eval)
        return y
    return Imported(node, run, op, values=(1, 2))
