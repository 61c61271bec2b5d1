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

from typing import Any, Callable

import jax
import numpy as np

from ._common import registrar
from .. import autograd
from ..autograd import CLASSES, Operator
from ..autograd.elementwise import SELU_ALPHA, SELU_GAMMA
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
importer = registrar(IMPORTERS)


def _fail(node, why: str) -> UnsupportedNode:
    return UnsupportedNode(f"sonnx: node {node.name!r} (op type {node.op_type}): {why}")


def _op(cls_name: str, *args, node=None, **kw):
    name = None if node is None else node.name
    cls = CLASSES.get(cls_name) or getattr(autograd, cls_name)
    return cls(*args, name=name, **kw) if cls_name in CLASSES else cls(*args, **kw)


class JaxOperator(Operator):
    """An operator that runs a jitted jax function of its inputs; its gradients are
    `jax.vjp` of that function (integer inputs get none)."""

    def __init__(self, fn: Callable, name: str | None = None):
        super().__init__(name)
        self.fn = jax.jit(fn)

    def forward(self, *xs):
        return self.fn(*xs)


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
    "Ceil": "Ceil", "Floor": "Floor", "Round": "Rounde", "Erf": "Erf",
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
    return _configured(node, "SeLU", alpha=float(node.getattr("alpha", SELU_ALPHA)),
                       gamma=float(node.getattr("gamma", SELU_GAMMA)))


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
    return _configured(node, "SpaceToDepth", blocksize=int(node.getattr("blocksize")),
                       mode=node.getattr("mode", "DCR"))


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

