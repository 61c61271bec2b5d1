"""The export table: one handler per singax operator class, emitting ONNX nodes.

A handler receives an `_Emit` (the operator, its input/output names, shapes and
dtypes) and appends nodes and initializers to the graph being built. Handlers may
emit several nodes: casts that keep singax's dtypes, the pads SINGA expresses as odd
padding, the gate reordering of RNN weights.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ._common import TensorProto, helper, numpy_helper, onnx_type_of, registrar
from .. import tensor as _tensor
from ..autograd._tape import Operator
from ..autograd.nn import BN_EPSILON
from ..tensor import Tensor

__all__ = ["EXPORTERS", "exporter"]

EXPORTERS: dict[str, Callable] = {}   # operator class name -> handler(e)

# --------------------------------------------------------------------------- graph builder
class _Graph:
    """Nodes, initializers and unique names of the graph being built."""

    def __init__(self):
        self.nodes: list = []
        self.initializers: list = []
        self.used: set[str] = set()

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def const(self, base: str, value: Any, dtype: Any = None) -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self.unique(base)
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name


class _Emit:
    """What a handler sees for one operator: names, shapes/dtypes and node helpers."""

    def __init__(self, g: _Graph, op: Operator, ins: list[str], outs: list[str],
                 in_avals: list, out_avals: list, leaves: list):
        self.g, self.op, self.ins, self.outs = g, op, ins, outs
        self.in_avals, self.out_avals, self.leaves = in_avals, out_avals, leaves
        self._k = 0

    def tmp(self, hint: str = "t") -> str:
        return self.g.unique(f"{self.op.name}/{hint}")

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None, **attrs) -> list[str]:
        outputs = list(outputs) if outputs is not None else [self.tmp(op_type)]
        name = self.op.name if self._k == 0 else f"{self.op.name}/{op_type}_{self._k}"
        self._k += 1
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.g.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=name, **attrs))
        return outputs

    def const(self, hint: str, value: Any, dtype: Any = None) -> str:
        return self.g.const(f"{self.op.name}:{hint}", value, dtype)

    def rank(self, i: int = 0) -> int:
        return len(self.shape(i))

    def shape(self, i: int = 0) -> tuple:
        aval = self.in_avals[i]
        if aval is None:
            raise ValueError(f"to_onnx: {self.op.name} ({type(self.op).__name__}): the shape of input {i} "
                             "is unknown (it comes from an operator whose output shape depends on values)")
        return tuple(aval.shape)

    def dtype(self, i: int = 0):
        aval = self.in_avals[i]
        return None if aval is None else np.dtype(aval.dtype)

    def out_dtype(self, i: int = 0):
        aval = self.out_avals[i] if i < len(self.out_avals) else None
        return None if aval is None else np.dtype(aval.dtype)

    def cast(self, name: str, dtype, have=None) -> str:
        """`name` converted to `dtype` (no node when it already has that dtype)."""
        if have is not None and np.dtype(have) == np.dtype(dtype):
            return name
        return self.node("Cast", [name], to=onnx_type_of(dtype))[0]

    def cast_to_bool(self, i: int) -> str:
        return self.node("Cast", [self.ins[i]], to=TensorProto.BOOL)[0]

    def fail(self, why: str) -> ValueError:
        return ValueError(f"to_onnx: operator {self.op.name} ({type(self.op).__name__}) cannot be "
                          f"exported: {why}")


exporter = registrar(EXPORTERS)


# --------------------------------------------------------------------------- handlers
_SAME = {  # singax class -> ONNX op with the same inputs, outputs and no attributes
    "ReLU": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt",
    "Abs": "Abs", "Sign": "Sign", "Negative": "Neg", "Reciprocal": "Reciprocal", "SoftPlus": "Softplus",
    "SoftSign": "Softsign", "Cos": "Cos", "Sin": "Sin", "Tan": "Tan", "Cosh": "Cosh", "Sinh": "Sinh",
    "Acos": "Acos", "Asin": "Asin", "Atan": "Atan", "Acosh": "Acosh", "Asinh": "Asinh",
    "Atanh": "Atanh", "Ceil": "Ceil", "Floor": "Floor", "Rounde": "Round", "Erf": "Erf",
    "Identity": "Identity", "PRelu": "PRelu", "Matmul": "MatMul",
}
_ARITH = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Pow": "Pow", "Sum": "Sum",
          "Mean": "Mean", "Max": "Max", "Min": "Min"}


def _same(e: _Emit) -> None:
    e.node(_SAME[type(e.op).__name__], e.ins, e.outs)


for _n in _SAME:
    EXPORTERS[_n] = _same


@exporter(*_ARITH)
def _arith(e: _Emit) -> None:
    # ONNX needs equal input types; singax promotes (int * float -> ...), so cast to the result
    out = e.out_dtype()
    ins = [e.cast(n, out, e.dtype(i)) if out is not None else n for i, n in enumerate(e.ins)]
    e.node(_ARITH[type(e.op).__name__], ins, e.outs)


@exporter("Less", "Greater", "Equal")
def _compare(e: _Emit) -> None:
    # singax compares in the (float) result dtype and returns 1.0/0.0, not bool
    out = e.out_dtype() or np.dtype(np.float32)
    ins = [e.cast(n, out, e.dtype(i)) for i, n in enumerate(e.ins)]
    y = e.node(type(e.op).__name__, ins)
    e.node("Cast", y, e.outs, to=onnx_type_of(out))


@exporter("And", "Or", "Xor", "Not")
def _logic(e: _Emit) -> None:
    out = e.out_dtype() or np.dtype(np.float32)
    ins = [e.cast_to_bool(i) for i in range(len(e.ins))]
    y = e.node(type(e.op).__name__, ins)
    e.node("Cast", y, e.outs, to=onnx_type_of(out))


@exporter("Round")
def _round(e: _Emit) -> None:
    # SINGA's round takes halves away from zero; ONNX Round takes them to even
    x = e.ins[0]
    half = e.const("half", 0.5, e.dtype())
    mag = e.node("Floor", e.node("Add", [e.node("Abs", [x])[0], half]))
    e.node("Mul", [e.node("Sign", [x])[0], mag[0]], e.outs)


@exporter("AddBias")
def _add_bias(e: _Emit) -> None:
    x, b = e.ins
    if e.op.axis == 1:   # one bias per row: make it a column
        b = e.node("Reshape", [b, e.const("shape", [-1, 1], np.int64)])[0]
    e.node("Add", [x, b], e.outs)


@exporter("Gemm")
def _gemm(e: _Emit) -> None:
    op = e.op
    e.node("Gemm", e.ins, e.outs, alpha=float(op.alpha), beta=float(op.beta),
           transA=int(bool(op.transA)), transB=int(bool(op.transB)))


def _attributes(onnx_type: str, **attrs: tuple[str, Callable]):
    """The exporter of a one-node operator whose ONNX attributes are its own attributes,
    given as `onnx_name=(attribute, convert)`."""
    def export(e: _Emit) -> None:
        e.node(onnx_type, e.ins, e.outs, **{k: convert(getattr(e.op, a)) for k, (a, convert) in attrs.items()})
    return export


exporter("LeakyRelu")(_attributes("LeakyRelu", alpha=("a", float)))
exporter("Elu")(_attributes("Elu", alpha=("alpha", float)))
exporter("SeLU")(_attributes("Selu", alpha=("alpha", float), gamma=("gamma", float)))
exporter("HardSigmoid")(_attributes("HardSigmoid", alpha=("alpha", float), beta=("gamma", float)))


def _scalar(v) -> float | None:
    if v is None:
        return None
    v = np.asarray(v).reshape(-1)
    return None if v.size == 0 else float(v[0])


@exporter("Clip")
def _clip(e: _Emit) -> None:
    dt = e.dtype() or np.float32
    lo, hi = _scalar(e.op.min), _scalar(e.op.max)
    ins = [e.ins[0], "" if lo is None else e.const("min", lo, dt), "" if hi is None else e.const("max", hi, dt)]
    while ins[-1] == "":
        ins.pop()
    e.node("Clip", ins, e.outs)


# singax's softmax is opset 11's: normalised over the whole block shape[axis:]
exporter("SoftMax")(_attributes("Softmax", axis=("axis", int)))
exporter("Concat")(_attributes("Concat", axis=("axis", int)))
exporter("Flatten")(_attributes("Flatten", axis=("axis", int)))


def _int_list(v) -> list[int]:
    return [int(a) for a in np.asarray(v).reshape(-1).tolist()]


@exporter("Reshape")
def _reshape(e: _Emit) -> None:
    e.node("Reshape", [e.ins[0], e.const("shape", _int_list(e.op.shape), np.int64)], e.outs)


@exporter("Transpose")
def _transpose(e: _Emit) -> None:
    perm = None if e.op.perm is None else _int_list(e.op.perm)
    e.node("Transpose", e.ins, e.outs, perm=perm)


@exporter("Squeeze")
def _squeeze(e: _Emit) -> None:
    axis = e.op.axis
    axes = [] if axis is None else _int_list(axis)
    shape = e.shape()
    if not axes and all(s == 1 for s in shape):   # singax keeps an all-ones input as it is
        e.node("Identity", e.ins, e.outs)
        return
    e.node("Squeeze", e.ins, e.outs, axes=axes or None)


@exporter("Unsqueeze")
def _unsqueeze(e: _Emit) -> None:
    rank = e.rank()
    axes = _int_list(e.op.axis)
    if rank == 1 and axes == [0]:   # SINGA's special case: returned unchanged
        e.node("Identity", e.ins, e.outs)
        return
    # SINGA inserts with list.insert one axis at a time; ONNX wants final positions
    dims: list = list(range(rank))
    for a in axes:
        dims.insert(a, None)
    e.node("Unsqueeze", e.ins, e.outs, axes=[i for i, d in enumerate(dims) if d is None])


@exporter("ReduceSum", "ReduceMean", "ReduceMax")
def _reduce(e: _Emit) -> None:
    op, rank = e.op, e.rank()
    axes = None if op.axes is None else sorted(a % rank for a in _int_list(op.axes))
    full = axes is None or len(axes) == rank
    out = e.outs if not (full and not op.keepdims) else [e.tmp("reduced")]
    e.node(type(op).__name__, e.ins, out, axes=axes, keepdims=int(bool(op.keepdims)))
    if out is not e.outs:   # singax has no 0-d tensors: a full reduction gives (1, 1)
        e.node("Reshape", [out[0], e.const("shape", [1, 1], np.int64)], e.outs)


@exporter("GlobalAveragePool")
def _gap(e: _Emit) -> None:
    if e.op.data_format == "channels_first":
        e.node("GlobalAveragePool", e.ins, e.outs)
    else:
        e.node("ReduceMean", e.ins, e.outs, axes=list(range(1, e.rank() - 1)), keepdims=1)


@exporter("Slice")
def _slice(e: _Emit) -> None:
    op = e.op
    ins = [e.ins[0], e.const("starts", _int_list(op.starts), np.int64), e.const("ends", _int_list(op.ends), np.int64)]
    if op.axes is not None or op.steps is not None:
        axes = _int_list(op.axes) if op.axes is not None else list(range(len(_int_list(op.starts))))
        ins.append(e.const("axes", axes, np.int64))
    if op.steps is not None:
        ins.append(e.const("steps", _int_list(op.steps), np.int64))
    e.node("Slice", ins, e.outs)


@exporter("Split")
def _split(e: _Emit) -> None:
    op = e.op
    axis = int(op.axis) % e.rank()
    if op.parts is None:
        n = e.shape()[axis]
        parts = [n // int(op.num_output)] * int(op.num_output)
    else:
        parts = _int_list(op.parts)
    e.node("Split", e.ins, e.outs, axis=axis, split=parts)


@exporter("Gather")
def _gather(e: _Emit) -> None:
    idx = e.const("indices", np.asarray(e.op.indices), np.int64)
    e.node("Gather", [e.ins[0], idx], e.outs, axis=int(e.op.axis))


@exporter("Tile")
def _tile(e: _Emit) -> None:
    shape = e.shape()
    reps = _int_list(e.op.repeats)
    x = e.ins[0]
    if len(reps) > len(shape):   # numpy.tile prepends size-1 axes first
        x = e.node("Reshape", [x, e.const("shape", [1] * (len(reps) - len(shape)) + list(shape), np.int64)])[0]
    reps = reps + [1] * (len(shape) - len(reps))   # SINGA tiles the leading axes
    e.node("Tile", [x, e.const("repeats", reps, np.int64)], e.outs)


@exporter("Expand")
def _expand(e: _Emit) -> None:
    e.node("Expand", [e.ins[0], e.const("shape", _int_list(e.op.shape), np.int64)], e.outs)


@exporter("Pad")
def _pad(e: _Emit) -> None:
    op = e.op
    mode = op.mode.decode() if isinstance(op.mode, bytes) else op.mode
    pads = _int_list(op.pads)
    if mode in ("constant", "edge"):
        ins = [e.ins[0], e.const("pads", pads, np.int64)]
        if mode == "constant":
            ins.append(e.const("constant", _scalar(op.constant) or 0.0, e.dtype() or np.float32))
        e.node("Pad", ins, e.outs, mode=mode)
        return
    # SINGA's 'reflect' copies the border slices in order (not mirrored): gather them
    shape, x = e.shape(), e.ins[0]
    r = len(shape)
    axes = [a for a in range(r) if pads[a] or pads[a + r]]
    for k, a in enumerate(axes):
        n, b, t = shape[a], pads[a], pads[a + r]
        idx = np.concatenate([np.arange(b), np.arange(n), np.arange(n - t, n)])
        out = e.outs if k == len(axes) - 1 else None
        x = e.node("Gather", [x, e.const(f"index{a}", idx, np.int64)], out, axis=a)[0]
    if not axes:
        e.node("Identity", [x], e.outs)


@exporter("UpSample")
def _upsample(e: _Emit) -> None:
    # opset 11 has no Upsample: integer nearest upsampling is Resize(asymmetric, floor)
    scales = e.const("scales", np.asarray(e.op.scales, np.float32).reshape(-1), np.float32)
    roi = e.const("roi", np.zeros(0, np.float32))
    e.node("Resize", [e.ins[0], roi, scales], e.outs, mode="nearest",
           coordinate_transformation_mode="asymmetric", nearest_mode="floor")


@exporter("DepthToSpace")
def _d2s(e: _Emit) -> None:
    e.node("DepthToSpace", e.ins, e.outs, blocksize=int(e.op.blocksize), mode=e.op.mode)


@exporter("SpaceToDepth")
def _s2d(e: _Emit) -> None:
    bs = int(e.op.blocksize)
    if e.op.mode == "DCR":
        e.node("SpaceToDepth", e.ins, e.outs, blocksize=bs)
        return
    # ONNX SpaceToDepth has no CRD mode: the inverse of CRD DepthToSpace, spelled out
    b, c, hh, ww = e.shape()
    h, w = hh // bs, ww // bs
    y = e.node("Reshape", [e.ins[0], e.const("view", [b, c, h, bs, w, bs], np.int64)])
    y = e.node("Transpose", y, perm=[0, 1, 3, 5, 2, 4])
    e.node("Reshape", [y[0], e.const("shape", [b, c * bs * bs, h, w], np.int64)], e.outs)


@exporter("Where")
def _where(e: _Emit) -> None:
    cond = np.asarray(e.op.condition.data if isinstance(e.op.condition, Tensor) else e.op.condition)
    dt = e.out_dtype() or np.dtype(np.float32)
    x, y = (e.cast(n, dt, e.dtype(i)) for i, n in enumerate(e.ins))
    if np.all((cond == 0) | (cond == 1)):
        e.node("Where", [e.const("condition", cond != 0, np.bool_), x, y], e.outs)
        return
    # a fractional condition blends, as singax computes where: c*x + (1-c)*y
    c = e.const("condition", cond, dt)
    cy = e.node("Mul", [e.node("Sub", [e.const("one", 1.0, dt), c])[0], y])
    e.node("Add", [e.node("Mul", [c, x])[0], cy[0]], e.outs)


@exporter("ScatterElements")
def _scatter(e: _Emit) -> None:
    op = e.op
    idx = e.const("indices", np.asarray(op.indices), np.int64)
    upd = e.const("updates", np.asarray(op.updates), e.dtype() or np.float32)
    e.node("ScatterElements", [e.ins[0], idx, upd], e.outs, axis=int(op.axis))


@exporter("Cast")
def _cast(e: _Emit) -> None:
    e.node("Cast", e.ins, e.outs, to=onnx_type_of(_tensor.to_np_dtype(e.op.to)))


@exporter("Shape")
def _shape(e: _Emit) -> None:
    e.node("Cast", e.node("Shape", e.ins), e.outs, to=TensorProto.INT32)   # singax shapes are int32


@exporter("NonZero")
def _nonzero(e: _Emit) -> None:
    e.node("Cast", e.node("NonZero", e.ins), e.outs, to=TensorProto.INT32)


@exporter("ConstantOfShape")
def _constant_of_shape(e: _Emit) -> None:
    shape = e.cast(e.ins[0], np.int64, e.dtype())
    value = numpy_helper.from_array(np.asarray([_scalar(e.op.value) or 0.0], np.float32), "value")
    e.node("ConstantOfShape", [shape], e.outs, value=value)


@exporter("OneHot")
def _onehot(e: _Emit) -> None:
    op = e.op
    depth = int(_scalar(op.depth))
    # singax truncates, then wraps every index mod depth (ONNX wraps only negatives):
    # floor-mod in float, so the graph needs no Mod (which singax does not import)
    f = e.node("Cast", [e.cast(e.ins[0], np.int64, e.dtype())], to=TensorProto.FLOAT)[0]
    d = e.const("depth_f", float(depth), np.float32)
    q = e.node("Floor", e.node("Div", [f, d]))[0]
    idx = e.node("Cast", e.node("Sub", [f, e.node("Mul", [q, d])[0]]), to=TensorProto.INT64)[0]
    values = e.const("values", [float(v) for v in op.values], np.float32)
    e.node("OneHot", [idx, e.const("depth", [depth], np.int64), values], e.outs, axis=int(op.axis))


@exporter("Dropout")
def _dropout(e: _Emit) -> None:
    e.node("Dropout", e.ins, e.outs[:1], ratio=float(e.op.ratio))


@exporter("Embedding")
def _embedding(e: _Emit) -> None:
    idx = e.cast(e.ins[0], np.int64, e.dtype(0))
    e.node("Gather", [e.ins[1], idx], e.outs, axis=0)


@exporter("CosSim")
def _cossim(e: _Emit) -> None:
    a, b = e.ins
    axes = dict(axes=[1], keepdims=0)
    dot = e.node("ReduceSum", e.node("Mul", [a, b]), **axes)
    na = e.node("Sqrt", e.node("ReduceSum", e.node("Mul", [a, a]), **axes))
    nb = e.node("Sqrt", e.node("ReduceSum", e.node("Mul", [b, b]), **axes))
    e.node("Div", [dot[0], e.node("Mul", [na[0], nb[0]])[0]], e.outs)


def _conv_pads(handle, odd) -> list[int]:
    t, b, l, r = (int(p) for p in odd)
    # ONNX order: [top, left, bottom, right]
    return [handle.pad_h + t, handle.pad_w + l, handle.pad_h + b, handle.pad_w + r]


@exporter("_Conv2d")
def _conv(e: _Emit) -> None:
    h = e.op.handle
    e.node("Conv", e.ins, e.outs, kernel_shape=[h.kernel_h, h.kernel_w], strides=[h.stride_h, h.stride_w],
           pads=_conv_pads(h, e.op.odd_padding), dilations=[h.dilation_h, h.dilation_w], group=h.group)


@exporter("_Pooling2d")
def _pool(e: _Emit) -> None:
    h = e.op.handle
    x = e.ins[0]
    t, b, l, r = (int(p) for p in e.op.odd_padding)
    if t or b or l or r:   # pooling's odd padding repeats the border rows/columns
        pads = e.const("odd_padding", [0, 0, t, l, 0, 0, b, r], np.int64)
        x = e.node("Pad", [x, pads], mode="edge")[0]
    kind = "MaxPool" if h.is_max_pooling else "AveragePool"
    e.node(kind, [x], e.outs, kernel_shape=[h.kernel_h, h.kernel_w], strides=[h.stride_h, h.stride_w],
           pads=[h.pad_h, h.pad_w, h.pad_h, h.pad_w])


@exporter("_BatchNorm2d")
def _batchnorm(e: _Emit) -> None:
    op = e.op
    rm, rv = op.running_mean, op.running_var
    mean = _tensor_const(e, rm, "mean")
    var = _tensor_const(e, rv, "var")
    # ONNX momentum weights the old running value; SINGA's factor weights the new batch value
    e.node("BatchNormalization", [*e.ins, mean, var], e.outs[:1],
           epsilon=float(getattr(op, "epsilon", BN_EPSILON)), momentum=1.0 - float(op.handle.factor))


def _tensor_const(e: _Emit, t: Tensor, hint: str) -> str:
    arr = np.asarray(t.data)
    base = t.name if isinstance(t, Tensor) and t.name and not t.is_dummy() else f"{e.op.name}:{hint}"
    return e.g.const(base, arr)


# --- RNN: the flat cuDNN weights become ONNX LSTM/GRU/RNN W, R and B -----------------
_RNN_ONNX = {0: "RNN", 1: "RNN", 2: "LSTM", 3: "GRU"}
_GATE_ORDER = {2: [0, 3, 1, 2],   # singax/cuDNN i,f,g,o -> ONNX i,o,f,c
               3: [1, 0, 2],      # r,z,n -> ONNX z,r,h
               0: [0], 1: [0]}


@exporter("_RNN")
def _rnn(e: _Emit) -> None:
    from ..autograd.rnn import _rnn_blocks
    op, h = e.op, e.op.handle
    W = e.leaves[3]
    if W is None:
        raise e.fail("the flat weight W must be a parameter (a leaf tensor), not computed")
    W = np.asarray(W.data)
    H, D = h.hidden_size, 2 if h.bidirectional else 1
    order = _GATE_ORDER[h.mode]

    def gates(a):   # reorder the G gate blocks along axis 0
        return np.concatenate([a[g * H:(g + 1) * H] for g in order], axis=0)

    blocks, off = [], 0
    for shape, size in _rnn_blocks(h):
        blocks.append(W[off:off + size].reshape(shape))
        off += size
    per = 4 if h.bias else 2
    x, hx, cx = e.ins[0], e.ins[1], e.ins[2]
    seq_lens = ""
    if op.use_mask:
        lens = op.seq_lengths.data if isinstance(op.seq_lengths, Tensor) else op.seq_lengths
        seq_lens = e.const("seq_lengths", np.asarray(lens).reshape(-1), np.int32)
    T, B = e.shape(0)[:2]
    kind = _RNN_ONNX[h.mode]
    for layer in range(h.num_layers):
        dirs = blocks[layer * D * per:(layer + 1) * D * per]
        dirs = [dirs[d * per:(d + 1) * per] for d in range(D)]
        Wl = e.const(f"l{layer}:W", np.stack([gates(d[0]) for d in dirs]))
        Rl = e.const(f"l{layer}:R", np.stack([gates(d[1]) for d in dirs]))
        ins = [x, Wl, Rl]
        ins.append(e.const(f"l{layer}:B", np.stack([np.concatenate([gates(d[2]), gates(d[3])]) for d in dirs]))
                   if h.bias else "")
        starts = e.const(f"l{layer}:state_start", [layer * D], np.int64)
        ends = e.const(f"l{layer}:state_end", [(layer + 1) * D], np.int64)
        axes0 = e.const(f"l{layer}:axes", [0], np.int64)
        ins += [seq_lens, e.node("Slice", [hx, starts, ends, axes0])[0]]
        if h.mode == 2:
            ins.append(e.node("Slice", [cx, starts, ends, axes0])[0])
        while ins[-1] == "":
            ins.pop()
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        if h.mode in (0, 1):
            attrs["activations"] = ["Relu" if h.mode == 0 else "Tanh"] * D
        if h.mode == 3:
            attrs["linear_before_reset"] = 1   # cuDNN applies r after the recurrent product
        y = e.node(kind, ins, **attrs)[0]     # (T, D, B, H)
        if D == 1:
            x = e.node("Squeeze", [y], axes=[1])[0]
        else:
            y = e.node("Transpose", [y], perm=[0, 2, 1, 3])[0]
            x = e.node("Reshape", [y, e.const(f"l{layer}:merge", [T, B, D * H], np.int64)])[0]
    if op.return_sequences:
        e.node("Identity", [x], e.outs)
    else:
        e.node("Gather", [x, e.const("last", np.asarray(T - 1, np.int64))], e.outs, axis=0)
