"""Import builders for ops with weights and statistics: Conv, pooling, Gemm,
BatchNormalization and the recurrent LSTM/GRU/RNN."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .. import autograd
from ..autograd.nn import BN_EPSILON, BatchNormHandle, ConvHandle, PoolingHandle, _BatchNorm2d
from ..autograd.rnn import _RNN, CudnnRNNHandle
from ._importers import Imported, JaxOperator, _const, _fail, _op, importer


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


def _bn_training(momentum: float, eps: float):
    """ONNX training-mode BatchNormalization: (Y from the batch statistics, the updated
    running mean, the updated running variance); the batch variance is the biased one."""
    def fn(x, scale, bias, mean, var):
        axes = tuple(i for i in range(x.ndim) if i != 1)
        shape = [1, -1] + [1] * (x.ndim - 2)
        m, v = jnp.mean(x, axis=axes), jnp.var(x, axis=axes)
        y = (x - m.reshape(shape)) / jnp.sqrt(v.reshape(shape) + eps) * scale.reshape(shape) + bias.reshape(shape)
        return y, mean * momentum + m * (1 - momentum), var * momentum + v * (1 - momentum)
    return fn


@importer("BatchNormalization")
def _batchnorm(node, opset):
    training = opset >= 14 and bool(node.getattr("training_mode", 0))
    if len(node.outputs) > 1 and any(node.outputs[1:]) and not training:
        raise _fail(node, "the running-statistics outputs are supported only with training_mode=1 "
                          "(opset 14 and later)")
    momentum = float(node.getattr("momentum", 0.9))
    eps = float(node.getattr("epsilon", BN_EPSILON))
    if training:
        op = JaxOperator(_bn_training(momentum, eps), name=node.name)
        return Imported(node, lambda *xs: op(*xs)[:max(1, len(node.outputs))], op)
    # ONNX momentum weights the old running value; SINGA's factor weights the new batch value
    op = _BatchNorm2d(None, np.zeros(1, np.float32), np.ones(1, np.float32), name=node.name, epsilon=eps)

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
