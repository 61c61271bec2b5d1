"""The import table: one builder per ONNX op type, turning a node into a callable over
singax operators.

A builder receives the `OnnxNode` and the model's opset and returns an `Imported`.
Calling it with the node's inputs returns a tuple of output Tensors. Inputs listed in
`values` (shapes, pads, axes... that ONNX passes as tensors) arrive as numpy arrays,
and so do `maybe` inputs when they are constants; all others arrive as Tensors; an
absent optional input is None. Builders configure singax operators by setting their
attributes before each call, as SINGA's backend does.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
from jax import lax

from ._common import TensorProto
from .. import autograd
from ..autograd import CLASSES
from ..autograd.nn import (BatchNormHandle, ConvHandle, CudnnRNNHandle, PoolingHandle, _BatchNorm2d,
                           _bn_layout, _RNN)
from ..tensor import Tensor

__all__ = ["IMPORTERS", "Imported", "UnsupportedNode"]


class UnsupportedNode(ValueError):
    """An ONNX node (or one of its attributes) singax cannot import."""


class Imported:
    """A prepared ONNX node: `imported(*inputs) -> tuple of Tensors`.

    Attributes: `node` (the OnnxNode), `operator` (the singax operator it drives; SINGA's
    backend exposes the same in `SingaRep.layers`), `values`/`maybe` (input positions read
    as numpy values).
    """

    def __init__(self, node, fn: Callable, operator: Any = None, values=(), maybe=()):
        self.node, self.fn, self.operator = node, fn, operator
        self.values, self.maybe = frozenset(values), frozenset(maybe)

    def __call__(self, *xs) -> tuple:
        out = self.fn(*xs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def __repr__(self) -> str:
        return f"Imported({self.node.name!r}, {self.node.op_type})"


IMPORTERS: dict[str, Callable] = {}


def importer(*op_types: str):
    def deco(build):
        for t in op_types:
            IMPORTERS[t] = build
        return build
    return deco


def _fail(node, why: str) -> UnsupportedNode:
    return UnsupportedNode(f"sonnx: node {node.name!r} (op type {node.op_type}): {why}")


def _op(cls_name: str, *args, node=None, **kw):
    name = None if node is None else node.name
    cls = CLASSES.get(cls_name) or getattr(autograd, cls_name)
    return cls(*args, name=name, **kw) if cls_name in CLASSES else cls(*args, **kw)


def _const(value, like: Tensor | None = None) -> Tensor:
    arr = np.asarray(value)
    dev = like.device if isinstance(like, Tensor) else None
    return Tensor(device=dev, data=arr, dtype=arr.dtype, requires_grad=False)


def _ints(v) -> list[int]:
    return [int(a) for a in np.asarray(v).reshape(-1).tolist()]


def _scalar(v) -> float | None:
    if v is None:
        return None
    v = np.asarray(v).reshape(-1)
    return None if v.size == 0 else float(v[0])


# --------------------------------------------------------------------------- plain operators
_PLAIN = {
    "Relu": "ReLU", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt",
    "Abs": "Abs", "Sign": "Sign", "Neg": "Negative", "Reciprocal": "Reciprocal", "Softplus": "SoftPlus",
    "Softsign": "SoftSign", "Cos": "Cos", "Sin": "Sin", "Tan": "Tan", "Cosh": "Cosh", "Sinh": "Sinh",
    "Acos": "Acos", "Asin": "Asin", "Atan": "Atan", "Acosh": "Acosh", "Asinh": "Asinh", "Atanh": "Atanh",
    "Ceil": "Ceil", "Floor": "Floor", "Round": "Rounde", "Erf": "Erf", "Identity": "Identity",
    "PRelu": "PRelu", "MatMul": "Matmul", "Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div",
    "Pow": "Pow", "Sum": "Sum", "Mean": "Mean", "Max": "Max", "Min": "Min", "Equal": "Equal",
    "Less": "Less", "Greater": "Greater", "And": "And", "Or": "Or", "Xor": "Xor", "Not": "Not",
    "NonZero": "NonZero",
}


def _plain(node, opset):
    op = _op(_PLAIN[node.op_type], node=node)
    return Imported(node, lambda *xs: op(*xs), op)


for _t in _PLAIN:
    IMPORTERS[_t] = _plain


def _configured(node, cls_name: str, **attrs) -> Imported:
    op = _op(cls_name, node=node, **attrs)
    return Imported(node, lambda x: op(x), op)


@importer("LeakyRelu")
def _leakyrelu(node, opset):
    return _configured(node, "LeakyRelu", a=float(node.getattr("alpha", 0.01)))


@importer("Elu")
def _elu(node, opset):
    return _configured(node, "Elu", alpha=float(node.getattr("alpha", 1.0)))


@importer("Selu")
def _selu(node, opset):
    return _configured(node, "SeLU", alpha=float(node.getattr("alpha", 1.6732632423543772)),
                       gamma=float(node.getattr("gamma", 1.0507009873554805)))


@importer("HardSigmoid")
def _hardsigmoid(node, opset):
    return _configured(node, "HardSigmoid", alpha=float(node.getattr("alpha", 0.2)),
                       gamma=float(node.getattr("beta", 0.5)))


@importer("Flatten")
def _flatten(node, opset):
    return _configured(node, "Flatten", axis=int(node.getattr("axis", 1)))


@importer("Transpose")
def _transpose(node, opset):
    perm = node.getattr("perm")
    return _configured(node, "Transpose", perm=None if perm is None else tuple(perm))


@importer("GlobalAveragePool")
def _gap(node, opset):
    return _configured(node, "GlobalAveragePool")


@importer("DepthToSpace")
def _d2s(node, opset):
    return _configured(node, "DepthToSpace", blocksize=int(node.getattr("blocksize")),
                       mode=node.getattr("mode", "DCR"))


@importer("SpaceToDepth")
def _s2d(node, opset):
    return _configured(node, "SpaceToDepth", blocksize=int(node.getattr("blocksize")), mode="DCR")


@importer("Concat")
def _concat(node, opset):
    op = _op("Concat", node=node, axis=int(node.getattr("axis")))
    return Imported(node, lambda *xs: op(*xs), op)


@importer("Softmax", "LogSoftmax")
def _softmax(node, opset):
    axis = int(node.getattr("axis", 1 if opset < 13 else -1))
    op = _op("SoftMax", node=node, axis=axis)
    log = _op("Log") if node.op_type == "LogSoftmax" else None

    def run(x):
        r = len(x.shape)
        a = axis % r
        if opset < 13 or a == r - 1:   # opset <= 12: over the block shape[axis:], as singax's op
            op.axis = axis if opset < 13 else -1
            y = op(x)[0]
        else:   # opset 13 normalises over one axis: move it last and back
            perm = [i for i in range(r) if i != a] + [a]
            op.axis = -1
            y = op(autograd.transpose(x, perm))[0]
            y = autograd.transpose(y, list(np.argsort(perm)))
        return log(y)[0] if log is not None else y
    return Imported(node, run, op)


# --------------------------------------------------------------------------- inputs as values
@importer("Reshape")
def _reshape(node, opset):
    if node.getattr("allowzero", 0):
        raise _fail(node, "allowzero=1 is not supported (singax's reshape copies dims for 0)")
    op = _op("Reshape", node=node, shape=())

    def run(x, shape):
        op.shape = tuple(_ints(shape))
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


@importer("ReduceSum", "ReduceMean")
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


@importer("Tile")
def _tile(node, opset):
    op = _op("Tile", node=node, repeats=())

    def run(x, repeats):
        op.repeats = tuple(_ints(repeats))
        return op(x)
    return Imported(node, run, op, values=(1,))


@importer("Expand")
def _expand(node, opset):
    op = _op("Expand", node=node, shape=())

    def run(x, shape):
        op.shape = tuple(_ints(shape))
        return op(x)
    return Imported(node, run, op, values=(1,))


@importer("Gather")
def _gather(node, opset):
    axis = int(node.getattr("axis", 0))
    op = _op("Gather", node=node, axis=axis, indices=())
    emb = _op("Embedding")

    def run(x, indices):
        if isinstance(indices, Tensor):   # indices computed from the graph inputs: a row lookup
            if axis % len(x.shape) != 0:
                raise ValueError(f"Gather: data-dependent indices are supported on axis 0 only, got axis {axis}")
            return emb(indices, x)
        op.indices = np.asarray(indices).astype(np.int64)
        return op(x)
    return Imported(node, run, op, maybe=(1,))


@importer("OneHot")
def _onehot(node, opset):
    op = _op("OneHot", node=node, axis=int(node.getattr("axis", -1)), depth=1)

    def run(indices, depth, values):
        op.depth = int(_scalar(depth))
        op.values = tuple(float(v) for v in np.asarray(values).reshape(-1))
        return op(indices)
    return Imported(node, run, op, values=(1, 2))


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


@importer("ScatterElements")
def _scatter(node, opset):
    if node.getattr("reduction", "none") != "none":
        raise _fail(node, "only reduction='none' is supported")
    op = _op("ScatterElements", node=node, indices=(), updates=(), axis=int(node.getattr("axis", 0)))

    def run(x, indices, updates):
        op.indices, op.updates = np.asarray(indices).astype(np.int64), np.asarray(updates)
        return op(x)
    return Imported(node, run, op, values=(1, 2))


# --------------------------------------------------------------------------- attribute-driven
_ONNX_TO_CODE = {TensorProto.FLOAT: 0, TensorProto.FLOAT16: 0, TensorProto.DOUBLE: 0,
                 TensorProto.INT8: 2, TensorProto.INT16: 2, TensorProto.INT32: 2, TensorProto.INT64: 2}


@importer("Cast")
def _cast(node, opset):
    to = int(node.getattr("to"))
    if to == TensorProto.BOOL:   # bool is 1.0/0.0 float32 in singax: x != 0
        op = _op("Not", node=node)
        return Imported(node, lambda x: op(_op("Not")(x)[0]), op)
    if to not in _ONNX_TO_CODE:
        raise _fail(node, f"cast to {TensorProto.DataType.Name(to)} is not supported")
    return _configured(node, "Cast", to=_ONNX_TO_CODE[to])


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


# --------------------------------------------------------------------------- layers with weights
def _spatial_pads(node, x_shape, kernel, strides, dilations) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial axis from `pads` or `auto_pad`."""
    auto = node.getattr("auto_pad", "NOTSET")
    n = len(kernel)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k, s, d in zip(x_shape[2:], kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    if auto == "VALID":
        return [(0, 0)] * n
    pads = list(node.getattr("pads", [0] * (2 * n)))
    return [(int(pads[i]), int(pads[i + n])) for i in range(n)]


def _split_pads(pads) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """[(top, bottom), (left, right)] -> symmetric (ph, pw) and SINGA's odd padding."""
    (t, b), (l, r) = pads
    ph, pw = min(t, b), min(l, r)
    return (ph, pw), (t - ph, b - ph, l - pw, r - pw)


@importer("Conv")
def _conv(node, opset):
    group = int(node.getattr("group", 1))
    op = _op("_Conv2d", node=node, handle=None)
    handles: dict = {}

    def run(x, W, b=None):
        if len(x.shape) != 4 or len(W.shape) != 4:
            raise ValueError(f"Conv: only 2-D convolution (4-d input and weight) is supported, got "
                             f"input {x.shape} and weight {W.shape}")
        key = (x.shape, W.shape, b is not None)
        hit = handles.get(key)
        if hit is None:
            kernel = tuple(node.getattr("kernel_shape", W.shape[2:]))
            strides = tuple(node.getattr("strides", (1, 1)))
            dil = tuple(node.getattr("dilations", (1, 1)))
            sym, odd = _split_pads(_spatial_pads(node, x.shape, kernel, strides, dil))
            hit = handles[key] = (ConvHandle(x.shape, kernel, strides, sym, x.shape[1], W.shape[0],
                                             b is not None, group, dil), odd)
        op.handle, op.odd_padding = hit
        return op(x, W) if b is None else op(x, W, b)
    return Imported(node, run, op)


def _pool_geometry(node, x_shape):
    kernel = tuple(int(k) for k in node.getattr("kernel_shape"))
    if len(kernel) != 2 or len(x_shape) != 4:
        raise ValueError(f"{node.op_type}: only 2-D pooling of 4-d input is supported, got kernel "
                         f"{kernel} and input {x_shape}")
    strides = tuple(int(s) for s in node.getattr("strides", (1, 1)))
    pads = _spatial_pads(node, x_shape, kernel, strides, (1, 1))
    if node.getattr("ceil_mode", 0):   # extra end padding turns floor into ceil
        new = []
        for (b, e), size, k, s in zip(pads, x_shape[2:], kernel, strides):
            out = -(-(size + b + e - k) // s) + 1
            if (out - 1) * s >= size + b:   # the last window must start inside the input
                out -= 1
            new.append((b, e, max((out - 1) * s + k - (size + b + e), 0)))
        return kernel, strides, [(b, e) for b, e, _ in new], [x for _, _, x in new]
    return kernel, strides, pads, [0, 0]


@importer("MaxPool", "AveragePool")
def _pool(node, opset):
    is_max = node.op_type == "MaxPool"
    if any(d != 1 for d in node.getattr("dilations", (1, 1))):
        raise _fail(node, "dilations other than 1 are not supported")
    if len(node.outputs) > 1 and node.outputs[1]:
        raise _fail(node, "the Indices output is not supported")
    include_pad = bool(node.getattr("count_include_pad", 0))
    op = _op("_Pooling2d", node=node, handle=None)
    plain = {}

    def run(x):
        key = x.shape
        hit = plain.get(key)
        if hit is None:
            hit = plain[key] = _pool_plan(node, x.shape, is_max, include_pad)
        kind, handle, odd, extra = hit
        op.handle, op.odd_padding = handle, odd
        if kind == "direct":
            return op(x)
        pads, factor = extra   # zero-pad, average every window, then rescale the counts
        xp = _op("Pad", mode="constant", pads=pads, constant=0.0)(x)[0]
        y = op(xp)[0]
        return autograd.mul(y, _const(factor.astype(x.data.dtype), x))
    return Imported(node, run, op)


def _pool_plan(node, shape, is_max, include_pad):
    kernel, strides, pads, ceil_extra = _pool_geometry(node, shape)
    ends = [e + c for (_, e), c in zip(pads, ceil_extra)]
    begins = [b for b, _ in pads]
    if is_max:
        sym, odd = _split_pads([(begins[0], ends[0]), (begins[1], ends[1])])
        return "direct", PoolingHandle(shape, kernel, strides, sym, True), odd, None
    if begins == ends and not any(ceil_extra) and (not include_pad or not any(begins)):
        return "direct", PoolingHandle(shape, kernel, strides, tuple(begins), False), (0, 0, 0, 0), None
    padded = (shape[0], shape[1], shape[2] + begins[0] + ends[0], shape[3] + begins[1] + ends[1])
    counted = np.zeros(padded[2:], np.float64)   # which padded positions the divisor counts
    if include_pad:   # explicit pads count, the ceil-mode overhang does not
        counted[:padded[2] - ceil_extra[0], :padded[3] - ceil_extra[1]] = 1
    else:
        counted[begins[0]:begins[0] + shape[2], begins[1]:begins[1] + shape[3]] = 1
    win = np.lib.stride_tricks.sliding_window_view(counted, kernel)[::strides[0], ::strides[1]]
    count = win.sum(axis=(2, 3))
    factor = (kernel[0] * kernel[1] / np.maximum(count, 1))[None, None]
    pads = (0, 0, begins[0], begins[1], 0, 0, ends[0], ends[1])
    handle = PoolingHandle(padded, kernel, strides, 0, False)
    return "padded", handle, (0, 0, 0, 0), (pads, factor)


@importer("Gemm")
def _gemm(node, opset):
    op = _op("Gemm", node=node, alpha=float(node.getattr("alpha", 1.0)), beta=float(node.getattr("beta", 1.0)),
             transA=int(node.getattr("transA", 0)), transB=int(node.getattr("transB", 0)))
    return Imported(node, lambda A, B, C=None: op(A, B) if C is None else op(A, B, C), op)


def _bn_train(static, xs, consts):
    (momentum, eps), (x, scale, bias), (rm, rv) = static, xs, consts
    axes, shape = _bn_layout(x)
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean, var = jnp.mean(xf, axes), jnp.var(xf, axes)
    y = (xf - mean.reshape(shape)) * lax.rsqrt(var.reshape(shape) + eps)
    y = (y * scale.reshape(shape) + bias.reshape(shape)).astype(x.dtype)
    n = x.size // x.shape[1]
    mean, var = lax.stop_gradient(mean), lax.stop_gradient(var)
    new_rm = (1 - momentum) * rm + momentum * mean.astype(rm.dtype)
    new_rv = (1 - momentum) * rv + momentum * (var * (n / max(n - 1, 1))).astype(rv.dtype)
    return y, (new_rm.astype(rm.dtype), new_rv.astype(rv.dtype))


def _bn_eval(static, xs, consts):
    (_, eps), (x, scale, bias), (rm, rv) = static, xs, consts
    _, shape = _bn_layout(x)
    inv = lax.rsqrt(rv.reshape(shape) + eps)
    return ((x - rm.reshape(shape)) * inv * scale.reshape(shape) + bias.reshape(shape)).astype(x.dtype), None


class OnnxBatchNorm(_BatchNorm2d):
    """`_BatchNorm2d` with ONNX's `epsilon` (singax's own op fixes it at 1e-5)."""

    def __init__(self, handle, running_mean, running_var, epsilon: float = 1e-5, name=None):
        super().__init__(handle, running_mean, running_var, name=name)
        self.epsilon = float(epsilon)

    def forward(self, x, scale, bias):
        rm, rv = self.running_mean, self.running_var
        static = (self.handle.factor, self.epsilon)
        if not autograd.training:
            return self._run(_bn_eval, static, (x, scale, bias), (rm.data, rv.data))[0]
        y, (new_rm, new_rv) = self._run(_bn_train, static, (x, scale, bias), (rm.data, rv.data))
        rm.data, rv.data = new_rm, new_rv
        return y


@importer("BatchNormalization")
def _batchnorm(node, opset):
    if len(node.outputs) > 1 and any(node.outputs[1:]):
        raise _fail(node, "only the Y output is supported (no training-mode statistics outputs)")
    momentum = float(node.getattr("momentum", 0.9))
    eps = float(node.getattr("epsilon", 1e-5))
    # ONNX momentum weights the old running value; SINGA's factor weights the new batch value
    op = OnnxBatchNorm(None, np.zeros(1, np.float32), np.ones(1, np.float32), eps, name=node.name)

    def run(x, scale, bias, mean, var):
        if len(x.shape) not in (2, 4):
            raise ValueError(f"BatchNormalization: expected a 2-d or 4-d input, got shape {x.shape}")
        op.handle = BatchNormHandle(1.0 - momentum, x.shape)
        op.running_mean, op.running_var = mean, var   # the model's buffers, updated in place
        return op(x, scale, bias)
    return Imported(node, run, op)


# --------------------------------------------------------------------------- recurrent layers
_RNN_MODES = {"LSTM": 2, "GRU": 3}
_TO_SINGA_GATES = {2: [0, 2, 3, 1],   # ONNX i,o,f,c -> singax (cuDNN) i,f,g,o
                   3: [1, 0, 2]}      # ONNX z,r,h -> r,z,n


@importer("LSTM", "GRU", "RNN")
def _rnn(node, opset):
    kind = node.op_type
    H = int(node.getattr("hidden_size"))
    direction = node.getattr("direction", "forward")
    if direction not in ("forward", "bidirectional"):
        raise _fail(node, f"direction {direction!r} is not supported (forward, bidirectional)")
    D = 2 if direction == "bidirectional" else 1
    acts = [a.lower() for a in (node.getattr("activations") or [])]
    if kind == "RNN":
        acts = acts or ["tanh"] * D
        if len(set(acts)) != 1 or acts[0] not in ("tanh", "relu"):
            raise _fail(node, f"activations {acts} are not supported (Tanh or Relu, the same for each direction)")
        mode = 1 if acts[0] == "tanh" else 0
    else:
        default = ["sigmoid", "tanh", "tanh"] if kind == "LSTM" else ["sigmoid", "tanh"]
        if acts and acts != default * D:
            raise _fail(node, f"activations {acts} are not supported (only the defaults {default})")
        mode = _RNN_MODES[kind]
    if node.getattr("clip") is not None or node.getattr("input_forget", 0) or node.getattr("layout", 0):
        raise _fail(node, "clip, input_forget and layout=1 are not supported")
    if kind == "GRU" and not node.getattr("linear_before_reset", 0):
        raise _fail(node, "linear_before_reset=0 is not supported (singax's GRU is cuDNN's, which "
                          "applies the reset gate after the recurrent product)")
    if kind == "LSTM" and len(node.inputs) > 7 and node.inputs[7]:
        raise _fail(node, "peephole weights (input P) are not supported")
    outs = node.outputs
    if kind == "LSTM" and len(outs) > 2 and outs[2]:
        raise _fail(node, "the Y_c output is not supported")
    G = {0: 1, 1: 1, 2: 4, 3: 3}[mode]
    perm = _TO_SINGA_GATES.get(mode, [0])
    rows = np.concatenate([np.arange(g * H, (g + 1) * H) for g in perm])
    op = _RNN(None, return_sequences=True)

    def run(x, W, R, B=None, seq_lens=None, h0=None, c0=None, P=None):
        T, Bn, F = x.shape
        pieces = []
        for d in range(D):
            for mat in (W, R):   # (D, G*H, n) -> this direction, rows in singax's gate order
                m = _op("Gather", axis=0, indices=np.int64(d))(mat)[0]
                pieces.append(_op("Reshape", shape=(-1,))(_op("Gather", axis=0, indices=rows)(m)[0])[0])
            if B is not None:
                b = _op("Gather", axis=0, indices=np.int64(d))(B)[0]
                for half in (0, 1):
                    idx = rows + half * G * H
                    pieces.append(_op("Gather", axis=0, indices=idx)(b)[0])
        # cuDNN's flat layout: per direction W_ih, W_hh, b_ih, b_hh
        flat = _op("Concat", axis=0)(*pieces)[0]
        zeros = _const(np.zeros((D, Bn, H), x.data.dtype), x)
        op.handle = CudnnRNNHandle(x.shape, H, mode, 1, B is not None, 0.0, D == 2)
        op.use_mask = seq_lens is not None
        op.seq_lengths = seq_lens
        y = op(x, h0 if h0 is not None else zeros, c0 if c0 is not None else zeros, flat)[0]  # (T, B, D*H)
        y4 = _op("Transpose", perm=(0, 2, 1, 3))(_op("Reshape", shape=(T, Bn, D, H))(y)[0])[0]
        if len(outs) < 2 or not outs[1]:
            return y4
        if seq_lens is not None:
            raise ValueError(f"{kind}: the Y_h output with sequence_lens is not supported")
        last = [_op("Slice", starts=(T - 1,), ends=(T,), axes=(0,))(y4)[0]]   # forward: last step
        if D == 2:   # backward direction ends at t = 0
            fwd = _op("Slice", starts=(0,), ends=(1,), axes=(1,))(last[0])[0]
            bwd = _op("Slice", starts=(0, 1), ends=(1, 2), axes=(0, 1))(y4)[0]
            last = [fwd, bwd]
        if D == 1:
            yh = _op("Reshape", shape=(1, Bn, H))(last[0])[0]
        else:
            yh = _op("Reshape", shape=(2, Bn, H))(_op("Concat", axis=1)(*last)[0])[0]
        return y4, yh
    return Imported(node, run, op, values=(4,))
