"""Export (SINGA -> ONNX): walk the autograd tape of an eager forward pass and emit an
opset-11 ONNX model.

Leaves of the tape (`Dummy` creators) become graph inputs (the tensors passed as
`inputs`), initializers (tensors that store gradients: parameters) or constant
initializers (any other leaf). Every other operator is translated by its handler in
`_exporters.EXPORTERS`, keyed by class name.
"""
from __future__ import annotations

import warnings

from typing import Callable, Sequence

import jax
import numpy as np

from ._common import EXPORT_IR_VERSION, EXPORT_OPSET, helper, onnx, onnx_type_of
from ._exporters import EXPORTERS, _Emit, _Graph
from .. import autograd
from ..autograd._op import BuiltinOperator
from ..autograd._tape import Dummy, Operator, post_order
from ..tensor import Tensor

__all__ = ["SingaFrontend", "to_onnx", "EXPORTERS"]

_LOSSES = ("SoftMaxCrossEntropy", "CrossEntropy", "BinaryCrossEntropy", "MeanSquareError", "RankingLoss")


# --------------------------------------------------------------------------- the walk
def _aval(t: Tensor):
    return jax.ShapeDtypeStruct(t.shape, t.data.dtype)


def _infer(op: Operator, in_avals: list) -> list:
    """Output shapes/dtypes of `op` without running it (None where unknown)."""
    n_out = len(getattr(op, "y_id2idx", {})) or 1
    if any(a is None for a in in_avals):
        return [None] * n_out
    if isinstance(op, BuiltinOperator):
        spec = op.spec
        attrs = dict(zip(spec.attr_names, op._key()))
        try:
            out = jax.eval_shape(lambda *xs: spec.forward(*xs, **attrs), *in_avals)
        except Exception:   # forward needs concrete values (NonZero, ConstantOfShape)
            return [None] * n_out
        return list(out) if isinstance(out, tuple) else [out]
    if isinstance(op, (autograd._BatchNorm2d, autograd.Dropout)):
        return [in_avals[0]]
    return [None] * n_out


def _check_exportable(op: Operator) -> Callable:
    names = [c.__name__ for c in type(op).__mro__]
    if names[0] in _LOSSES or "_Loss" in names:
        raise ValueError(f"to_onnx: {op.name} is a loss operator ({names[0]}), which ONNX cannot "
                         "express; export the model output (the tensor passed to the loss) instead")
    for n in names:
        fn = EXPORTERS.get(n)
        if fn is not None:
            return fn
    raise ValueError(f"to_onnx: operator {op.name} ({names[0]}) has no ONNX export; exportable "
                     f"operators: {', '.join(sorted(EXPORTERS))}")


def _as_list(v, what: str) -> list[Tensor]:
    items = list(v) if isinstance(v, (list, tuple)) else [v]
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise TypeError(f"to_onnx: {what} must be Tensors (or a list of them); item {i} is "
                            f"{type(t).__name__}")
    return items


def _is_constant(v) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_is_constant(e) for e in v)
    return isinstance(v, (int, float, np.number))


def _tensor_inputs(inputs) -> list[Tensor]:
    """The Tensors among `inputs`. Numbers and shapes are skipped: SINGA scripts list an
    operator's attribute values there (`to_onnx([x, min, max], [y])`), which the graph
    already holds."""
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    for i, t in enumerate(items):
        if not isinstance(t, Tensor) and not _is_constant(t):
            raise TypeError(f"to_onnx: inputs must be Tensors (numbers and shapes are skipped); item {i} "
                            f"is {type(t).__name__}")
    return [t for t in items if isinstance(t, Tensor)]


def _run_model(model, inputs: list[Tensor]) -> list[Tensor]:
    """Run a Layer/Model's forward eagerly in evaluation mode and return its outputs."""
    saved = autograd.training
    autograd.training = False
    try:
        out = model.forward(*inputs)
    finally:
        autograd.training = saved
    return _as_list(out, "the model's outputs")


class SingaFrontend:
    """Translate the autograd graph behind output tensors into ONNX (opset 11)."""

    target_opset_version = EXPORT_OPSET

    @classmethod
    def singa_to_onnx_graph(cls, inputs: Sequence[Tensor], y: Sequence[Tensor], model_name: str = "sonnx"):
        """Build a `GraphProto` for the tape that produced `y` from `inputs`."""
        inputs, ys = _tensor_inputs(inputs), _as_list(y, "outputs")
        order = post_order([t.creator for t in ys])
        leaves = [op for op in order if isinstance(op, Dummy)]
        input_ids = {id(t) for t in inputs}
        if len(leaves) == len(order) and any(id(t) not in input_ids for t in ys):
            raise ValueError("to_onnx: the outputs have no recorded operations (Python operators such as "
                             "`+` on Tensors and compiled steps leave none); compute them with autograd "
                             "operators or layers in an eager forward")
        by_tensor = {id(t): i for i, t in enumerate(inputs)}
        input_of: dict[int, int] = {}     # id(leaf op) -> position in `inputs`
        for op in leaves:
            i = by_tensor.get(id(op.tensor))
            if i is not None:
                input_of[id(op)] = i
        missing = [i for i in range(len(inputs)) if i not in input_of.values()]
        if missing:   # SINGA matches inputs to non-parameter leaves in DFS order
            spare = [op for op in leaves if id(op) not in input_of and not op.tensor.stores_grad
                     and op.tensor.shape in {inputs[i].shape for i in missing}]
            if len(spare) < len(missing):
                unused = ", ".join(f"{i} (shape {inputs[i].shape})" for i in missing[len(spare):])
                warnings.warn(f"to_onnx: input {unused} is not used by the graph that produced the "
                              "outputs and is left out of the model's inputs", stacklevel=3)
            for i, op in zip(missing, spare):
                input_of[id(op)] = i
        g = _Graph()
        names: dict = {}    # id(leaf op) or (id(op), idx) -> tensor name
        avals: dict = {}
        graph_inputs: list = [None] * len(inputs)
        for op in leaves:
            t = op.tensor
            base = t.name if t.name else op.name
            if id(op) in input_of:
                name = g.unique(base)
                graph_inputs[input_of[id(op)]] = helper.make_tensor_value_info(
                    name, onnx_type_of(inputs[input_of[id(op)]].data.dtype), list(t.shape))
            else:
                name = g.const(base, np.asarray(t.data))
            names[id(op)] = name
            avals[id(op)] = _aval(t)
        for op in order:
            if isinstance(op, Dummy):
                continue
            fn = _check_exportable(op)
            ins, in_avals, leaf_values = [], [], []
            for src_op, x_id, _, _ in op.src:
                key = id(src_op) if isinstance(src_op, Dummy) else (id(src_op), src_op.y_id2idx[x_id])
                ins.append(names[key])
                in_avals.append(avals.get(key))
                leaf_values.append(src_op.tensor if isinstance(src_op, Dummy) else None)
            n_out = len(op.y_id2idx)
            outs = []
            for i in range(n_out):
                names[(id(op), i)] = g.unique(op.output_name(i))
                outs.append(names[(id(op), i)])
            out_avals = _infer(op, in_avals)
            for i, a in enumerate(out_avals[:n_out]):
                avals[(id(op), i)] = a
            fn(_Emit(g, op, ins, outs, in_avals, out_avals, leaf_values))
        outputs = []
        for t in ys:
            key = id(t.creator) if isinstance(t.creator, Dummy) else (id(t.creator), t.creator.y_id2idx[id(t)])
            outputs.append(helper.make_tensor_value_info(names[key], onnx_type_of(t.data.dtype), list(t.shape)))
        graph_inputs = [v for v in graph_inputs if v is not None]
        return helper.make_graph(g.nodes, model_name, graph_inputs, outputs, initializer=g.initializers)

    @classmethod
    def singa_to_onnx_model(cls, inputs: Sequence[Tensor], y: Sequence[Tensor], model_name: str = "sonnx"):
        """Build and check an ONNX `ModelProto` (opset 11) for the tape that produced `y`."""
        graph = cls.singa_to_onnx_graph(inputs, y, model_name)
        model = helper.make_model(graph, producer_name="sonnx",
                                  opset_imports=[helper.make_opsetid("", EXPORT_OPSET)])
        model.ir_version = EXPORT_IR_VERSION
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as err:  # an export bug: say so plainly
            raise ValueError(f"to_onnx: the exported model failed onnx.checker ({err})") from err
        return model


def to_onnx(inputs, y, model_name: str = "sonnx"):
    """Export a forward pass to an ONNX `ModelProto` (opset 11, checked).

    Forms:
      to_onnx(inputs, y): `y` (a Tensor or a list of Tensors) came from an eager forward
        pass over `inputs` (a Tensor or list); the tape behind `y` is exported.
      to_onnx(model, inputs): run `model.forward(*inputs)` eagerly in evaluation mode and
        export its outputs (a Layer/Model; `inputs` a Tensor or list of Tensors).

    Leaves that store gradients become initializers named after the tensors
    (`conv1.W`); leaves passed in `inputs` become graph inputs, in `inputs` order;
    other leaves become constant initializers. Loss operators cannot be exported.
    Numbers and shapes in `inputs` are skipped, and Tensors the graph does not use are
    left out with a warning (SINGA ignores both).

    SINGA: `y` must be a one-element list there, inputs are matched to leaves only by
    DFS order (singax matches by identity first), the graph is always named "sonnx",
    and Equal, Conv/Pool pads and BatchNorm momentum are written wrongly.
    """
    from ..layer import Layer
    if isinstance(inputs, Layer):
        inputs, y = y, _run_model(inputs, _as_list(y, "inputs"))
    elif isinstance(y, Layer):
        y = _run_model(y, _as_list(inputs, "inputs"))
    return SingaFrontend.singa_to_onnx_model(inputs, y, model_name)
