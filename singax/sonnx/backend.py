"""Import (ONNX -> singax): `prepare` turns a model into a `SingaRep` that runs it with
singax operators; `SONNXModel` wraps that in a trainable `model.Model`.

Initializers become Tensors: float ones consumed as data are trainable parameters
(`stores_grad`), BatchNormalization's mean/var are buffers updated in training, and
initializers consumed only as shapes/axes/pads (or of integer type) stay constants.
Values computed only from constants and shapes (the Shape -> Gather -> Concat ->
Reshape pattern) are evaluated concretely even inside `Model.compile`'s trace.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict, namedtuple
from typing import Any, Sequence

import jax
import numpy as np

from ._common import _IMPORT_TYPES, TensorProto, helper, import_array, numpy_helper, singa_dtype_of_onnx
from ._importers import IMPORTERS, Imported, UnsupportedNode
from ._load import elem_types, load_checked
from .. import device as _device
from ..layer import Layer
from ..model import Model
from ..tensor import Tensor

try:
    from onnx.backend.base import Backend, BackendRep
except ImportError:  # pragma: no cover - very old or stripped onnx
    Backend, BackendRep = object, object

__all__ = ["OnnxAttributes", "OnnxNode", "SingaBackend", "SingaRep", "SONNXModel", "prepare",
           "run_node", "get_op", "supported_ops"]

# kind: "tensor", "sequence" (a list of tensors), "optional" or "optional sequence" (may be None)
ValueInfo = namedtuple("ValueInfo", ["name", "dtype", "shape", "kind"], defaults=("tensor",))


def supported_ops() -> list[str]:
    """The ONNX op types `prepare` can import (plus `Constant`, folded at prepare time)."""
    return sorted(set(IMPORTERS) | {"Constant"})


def _attr_value(a) -> Any:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, TensorProto):
        if v.data_location == TensorProto.EXTERNAL:   # would be read relative to the current folder
            raise ValueError(f"sonnx: attribute {a.name!r} refers to external data, which is read only "
                             "for a model loaded from a file (sonnx.prepare(path))")
        return numpy_helper.to_array(v)
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [s.decode("utf-8") for s in v]
    return v


class OnnxAttributes(dict):
    """A node's attributes as a dict of plain Python/numpy values (strings decoded)."""

    @classmethod
    def from_onnx(cls, attributes) -> "OnnxAttributes":
        return cls((a.name, _attr_value(a)) for a in attributes)


class OnnxNode:
    """One ONNX node: `name`, `op_type`, `attrs` (OnnxAttributes), `inputs`, `outputs`."""

    def __init__(self, node, name: str | None = None, types: dict | None = None):
        self.node = node
        self.name = name or node.name or node.op_type
        self.op_type = node.op_type
        self.domain = node.domain
        self.attrs = OnnxAttributes.from_onnx(node.attribute)
        self.inputs = list(node.input)
        self.outputs = list(node.output)
        # the ONNX element type of each input where the model declares or implies it
        self.input_types = [(types or {}).get(n) for n in self.inputs]

    def getattr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def __repr__(self) -> str:
        return f"OnnxNode({self.name!r}, {self.op_type})"


def get_op(onnx_node, opset_version: int = 11) -> Imported:
    """The singax callable for one node (`Imported`; its `.operator` is the singax op).

    Raises UnsupportedNode (a ValueError) naming the node, its op type and the supported types.
    """
    node = onnx_node if isinstance(onnx_node, OnnxNode) else OnnxNode(onnx_node)
    if node.domain not in ("", "ai.onnx"):
        raise UnsupportedNode(f"sonnx: node {node.name!r} (op type {node.op_type}, domain {node.domain!r}): "
                              "only the default ONNX domain is supported")
    build = IMPORTERS.get(node.op_type)
    if build is None:
        raise UnsupportedNode(f"sonnx: node {node.name!r} has op type {node.op_type}, which singax cannot "
                              f"import; supported op types: {', '.join(supported_ops())}")
    return build(node, opset_version)


# --------------------------------------------------------------------------- helpers
def _tensor_type(type_proto) -> tuple[Any, str]:
    """(the tensor type inside optional/sequence wrappers, the kind of value)."""
    kind = []
    while True:
        if type_proto.HasField("optional_type"):
            kind.append("optional")
            type_proto = type_proto.optional_type.elem_type
        elif type_proto.HasField("sequence_type"):
            kind.append("sequence")
            type_proto = type_proto.sequence_type.elem_type
        else:
            break
    if not type_proto.HasField("tensor_type") or kind.count("sequence") > 1:
        return None, ""
    return type_proto.tensor_type, " ".join(kind) or "tensor"


def _value_info(vi) -> ValueInfo:
    t, kind = _tensor_type(vi.type)
    if t is None:
        raise ValueError(f"sonnx.prepare: graph value {vi.name!r} is neither a tensor nor a sequence of "
                         "tensors (maps and nested sequences are not supported)")
    dtype = singa_dtype_of_onnx(t.elem_type, f"sonnx.prepare: graph value {vi.name!r}") if t.elem_type else None
    shape = None
    if t.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return ValueInfo(vi.name, dtype, shape, kind)


def _convert_input(info: ValueInfo, arr):
    """`arr` converted to the declared number kind: integers and bools to float, and whole
    floats to integers (rounded, as ids held in float32 Tensors); a float with a fraction
    given for an integer input is an error."""
    want = np.dtype(info.dtype)
    if want.kind in "iu" and np.dtype(arr.dtype).kind == "f":
        if not isinstance(arr, jax.core.Tracer):
            host = np.asarray(arr)
            if not np.all(np.isfinite(host)) or np.any(host != np.round(host)):
                raise TypeError(f"sonnx: input {info.name!r} is an integer input ({want}); got "
                                f"{np.dtype(arr.dtype)} values that are not whole numbers")
        return jax.numpy.round(arr).astype(want)
    if want.kind in "iuf" and np.dtype(arr.dtype).kind in "iufb":
        return jax.numpy.asarray(arr).astype(want)
    raise TypeError(f"sonnx: input {info.name!r} must be {want} (as the model declares), "
                    f"got {np.dtype(arr.dtype)}")


def _resolve_device(device) -> _device.Device:
    if isinstance(device, _device.Device):
        return device
    if device is None:
        return _device.get_default_device()
    if str(device).upper() == "CPU":
        return _device.create_cpu_device()
    if str(device).upper() in ("CUDA", "GPU") or str(device).upper().startswith("CUDA:"):
        return _device.create_cuda_gpu()
    raise ValueError(f"sonnx: unknown device {device!r}; use 'CPU', 'CUDA' or a singax Device")


def _unique_names(nodes) -> list[str]:
    used, out = set(), []
    for i, n in enumerate(nodes):
        base = n.name or f"{n.op_type}_{i}"
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        out.append(name)
    return out


def _constant_value(node: OnnxNode) -> np.ndarray:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            v = node.attrs[key]
            return np.asarray(v, np.float32 if "float" in key else (np.int64 if "int" in key else None))
    raise UnsupportedNode(f"sonnx: node {node.name!r} (op type Constant): only value, value_float(s) and "
                          f"value_int(s) are supported, got {sorted(node.attrs)}")


# --------------------------------------------------------------------------- prepare
def prepare(model, device: Any = "CPU", **kwargs) -> "SingaRep":
    """Turn an ONNX model into a `SingaRep` that runs it with singax operators.

    Args:
      model: an `onnx.ModelProto`, its serialized bytes, or a file path.
      device: 'CPU', 'CUDA' or a singax `Device` for the parameters.

    Raises ValueError (nothing is built) for a malformed model, an unsupported opset, and
    unsupported nodes (all of them listed, each with its name and op type).

    SINGA: reads BatchNormalization's momentum as its own factor, ignores epsilon and reads
    4-element pads as (top, bottom, left, right); singax follows ONNX for all three.
    """
    model, opset = load_checked(model)
    graph = model.graph
    dev = _resolve_device(device)
    inits = {i.name: i for i in graph.initializer}
    onnx_nodes = list(graph.node)
    names = _unique_names(onnx_nodes)
    types = elem_types(model)
    constants: dict[str, np.ndarray] = {}
    layers, problems, unknown = [], [], False
    for n, name in zip(onnx_nodes, names):
        node = OnnxNode(n, name, types)
        where = f"node {name!r} (op type {node.op_type}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}, domain {node.domain!r}): only the default ONNX domain is supported")
        elif node.op_type != "Constant" and node.op_type not in IMPORTERS:
            problems.append(f"{where}): not supported")
            unknown = True
        else:
            try:
                if node.op_type == "Constant":
                    constants[node.outputs[0]] = _constant_value(node)
                else:
                    layers.append((node, get_op(node, opset)))
            except UnsupportedNode as err:
                problems.append(str(err).replace("sonnx: ", "", 1))
    if problems:   # nothing has been built yet: report every problem at once
        raise ValueError("sonnx.prepare: cannot import this model: " + "; ".join(problems)
                         + (f". Supported op types: {', '.join(supported_ops())}" if unknown else ""))
    inputs = [_value_info(vi) for vi in graph.input if vi.name not in inits]
    outputs = [_value_info(vi) for vi in graph.output]
    states = _make_states(inits, layers, dev, constants)
    static_nodes = _static_nodes(layers, set(constants))
    return SingaRep(states, inputs, outputs, layers, dev, constants=constants, static_nodes=static_nodes,
                    opset=opset)


def _make_states(inits: dict, layers: list, dev, constants: dict) -> dict[str, Tensor]:
    """Tensors for the initializers consumed as data; the rest go into `constants`."""
    uses: dict[str, list] = {}
    for node, imp in layers:
        for pos, name in enumerate(node.inputs):
            if name in inits:
                uses.setdefault(name, []).append((node, imp, pos))
    states: dict[str, Tensor] = {}
    for name, proto in inits.items():
        arr = numpy_helper.to_array(proto)
        used = uses.get(name, [])
        as_data = [(n, p) for n, imp, p in used if p not in imp.values and p not in imp.maybe]
        if not as_data or arr.dtype.kind not in "f":
            constants[name] = arr
            continue
        value = import_array(arr, f"sonnx.prepare: initializer {name!r}")
        buffer = all(n.op_type == "BatchNormalization" and p in (3, 4) for n, p in as_data)
        states[name] = Tensor(device=dev, data=value, dtype=value.dtype, requires_grad=not buffer,
                              stores_grad=not buffer, name=name)
    return states


def _static_nodes(layers: list, static: set) -> set[int]:
    """Indices of nodes computed only from constants and shapes (run concretely)."""
    out = set()
    for i, (node, _) in enumerate(layers):
        if node.op_type == "Shape" or all(n == "" or n in static for n in node.inputs):
            out.add(i)
            static.update(n for n in node.outputs if n)
    return out


# --------------------------------------------------------------------------- SingaRep
class SingaRep(BackendRep):
    """A prepared ONNX model.

    Attributes: `inputs`/`outputs` (ValueInfo name, dtype, shape), `states` (name ->
    Tensor: parameters and buffers), `layers` (list of `(OnnxNode, Imported)`), `dev`,
    `is_graph` (False: `run` returns numpy arrays; True: Tensors), `has_initialized`.

    SINGA: `states` holds numpy copies there; here they are the live Tensors.
    """

    def __init__(self, states: dict, inputs: list, outputs: list, layers: list, device,
                 constants: dict | None = None, static_nodes: set | None = None, opset: int = 11):
        self.states, self.inputs, self.outputs, self.layers = states, inputs, outputs, layers
        self.dev = device
        self.constants = constants or {}
        self.static_nodes = static_nodes or set()
        self.opset = opset
        self.is_graph = False
        self.has_initialized = True

    def get_params(self) -> dict[str, Tensor]:
        """Trainable parameters (float initializers consumed as data) by name."""
        return {k: t for k, t in self.states.items() if t.stores_grad}

    def run(self, x, last_layers: int | None = None, aux_output: Sequence[str] = (), **kwargs) -> list:
        """Run the model on `x` (a list with one array or Tensor per graph input).

        Args:
          last_layers: run only `layers[:last_layers]` and return the outputs of the last
            node run (negative counts from the end).
          aux_output: names of further tensors to append to the result.

        Returns a list of numpy arrays (Tensors when `is_graph` is True).
        """
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self.inputs):
            raise ValueError(f"sonnx: the model takes {len(self.inputs)} input(s) "
                             f"({', '.join(i.name for i in self.inputs)}), got {len(xs)}")
        values: dict[str, Tensor] = dict(self.states)
        static = dict(self.constants)
        for info, v in zip(self.inputs, xs):
            values[info.name] = self._input(info, v)
        self._follow_device(xs)
        layers = self.layers if last_layers is None else self.layers[:last_layers]
        if last_layers is not None and not layers:
            raise ValueError(f"sonnx: last_layers={last_layers} selects no node (the model has {len(self.layers)})")
        outs: tuple = ()
        for i, (node, imp) in enumerate(layers):
            args: list = []
            try:
                # constant-only nodes run concretely, even while Model.compile traces the step
                with jax.ensure_compile_time_eval() if i in self.static_nodes else contextlib.nullcontext():
                    args = [self._arg(node, imp, pos, name, values, static) for pos, name in enumerate(node.inputs)]
                    outs = imp(*args)
            except (ValueError, TypeError) as err:
                shapes = ", ".join(_shape_text(a) for a in args)
                raise ValueError(f"sonnx: node {node.name!r} (op type {node.op_type}) failed on inputs of "
                                 f"shapes ({shapes}): {err}") from err
            for name, t in zip(node.outputs, outs):
                if name:
                    values[name] = t
                    if i in self.static_nodes and isinstance(t, Tensor):
                        static[name] = np.asarray(t.data)
        if last_layers is None:
            result = [self._lookup(o.name, values, static) for o in self.outputs]
        else:
            result = list(outs)
        result += [self._lookup(n, values, static) for n in aux_output]
        if self.is_graph:
            return result
        return [_numpy(t) for t in result]

    # --- internals -------------------------------------------------------------
    def _input(self, info: ValueInfo, v):
        if info.kind.startswith("optional") and v is None:
            return None
        if info.kind.endswith("sequence"):
            if not isinstance(v, (list, tuple)):
                raise TypeError(f"sonnx: input {info.name!r} is a sequence: pass a list of arrays, got "
                                f"{type(v).__name__}")
            return [self._tensor_input(info, e) for e in v]
        return self._tensor_input(info, v)

    def _tensor_input(self, info: ValueInfo, v) -> Tensor:
        """The Tensor fed to graph input `info`: its rank must match the declaration; its
        sizes need not (the nodes check what they need, and zoo models often declare batch 1),
        and a number kind other than the declared one is converted by value.

        SINGA: no check at all; a float Tensor reaches integer ops (Gather) as floats."""
        arr = v.data if isinstance(v, Tensor) else import_array(v, f"sonnx: input {info.name!r}")
        shape = tuple(arr.shape)
        if info.shape is not None and len(shape) != len(info.shape):
            want = tuple("?" if d is None else d for d in info.shape)
            raise ValueError(f"sonnx: input {info.name!r} must have rank {len(want)} (the model declares "
                             f"shape {want}), got shape {shape}")
        if info.dtype is None or np.dtype(arr.dtype).kind == np.dtype(info.dtype).kind:
            return v if isinstance(v, Tensor) else Tensor(device=self.dev, data=arr, dtype=arr.dtype)
        converted = _convert_input(info, arr)
        if isinstance(v, Tensor):
            return Tensor(device=v.device, data=converted, dtype=converted.dtype, requires_grad=False)
        return Tensor(device=self.dev, data=converted, dtype=converted.dtype)

    def _follow_device(self, xs) -> None:
        """Move the parameters to the device of Tensor inputs (as SINGA layers do)."""
        for v in xs:
            if isinstance(v, Tensor) and v.device is not self.dev and not isinstance(v.data, jax.core.Tracer):
                for t in self.states.values():
                    t.to_device(v.device)
                self.dev = v.device
                return

    def _arg(self, node, imp, pos, name, values, static):
        if name == "":
            return None
        if pos in imp.values or (pos in imp.maybe and name in static):
            if name in static:
                return static[name]
            t = values[name]
            if isinstance(t.data, jax.core.Tracer):
                raise ValueError(f"sonnx: input {pos} ({name!r}) of node {node.name!r} (op type "
                                 f"{node.op_type}) must be known before the run, but it is computed from "
                                 "the graph inputs; run this model eagerly (not inside Model.compile)")
            return np.asarray(t.data)
        return self._lookup(name, values, static)

    def _lookup(self, name: str, values: dict, static: dict) -> Tensor:
        t = values.get(name)
        if t is None and name not in values:
            if name not in static:
                raise ValueError(f"sonnx: no tensor named {name!r} in the model (graph inputs: "
                                 f"{', '.join(i.name for i in self.inputs)})")
            arr = import_array(static[name], f"sonnx: constant {name!r}")
            t = values[name] = Tensor(device=self.dev, data=arr, dtype=arr.dtype, requires_grad=False)
        return t


def _shape_text(a) -> str:
    if a is None:
        return "-"
    if isinstance(a, list):
        return "[" + ", ".join(_shape_text(e) for e in a) + "]"
    return str(tuple(np.shape(a.data if isinstance(a, Tensor) else a)))


def _numpy(t):
    """A run result as numpy: arrays, lists of arrays for sequences, None for an empty optional."""
    if t is None or isinstance(t, list):
        return t if t is None else [np.asarray(e.data) for e in t]
    return np.asarray(t.data)


# --------------------------------------------------------------------------- backend
def _same(*names: str) -> dict:
    return {n: n for n in names}


# SINGA's table of the ONNX op types its backend imports -> the SINGA operator (or layer)
# each becomes; ONNX's node test suite is selected from its keys. singax imports more
# (`supported_ops()`).
RENAMED_OPERATORS: dict[str, str] = {
    "Relu": "ReLU", "MatMul": "Matmul", "Softplus": "SoftPlus", "Softsign": "SoftSign",
    "Neg": "Negative", "Selu": "SeLU", "Softmax": "SoftMax", "Upsample": "UpSample",
    "Conv": "Conv2d", "MaxPool": "Pooling2d", "AveragePool": "Pooling2d",
    "BatchNormalization": "BatchNorm2d",
    **_same("Sigmoid", "Add", "Sum", "Cos", "Cosh", "Sin", "Sinh", "Tan", "Tanh", "Acos", "Acosh",
            "Asin", "Asinh", "Atan", "Atanh", "Equal", "Less", "Greater", "Sign", "Div", "Sub", "Sqrt",
            "Log", "Identity", "Mean", "Pow", "PRelu", "Mul", "Max", "Min", "Shape", "And", "Or", "Xor",
            "Not", "Reciprocal", "NonZero", "Ceil", "Floor", "Abs", "Erf", "Cast", "Split", "Squeeze",
            "Unsqueeze", "GlobalAveragePool", "LeakyRelu", "ReduceSum", "ReduceMean", "Dropout",
            "ConstantOfShape", "Transpose", "HardSigmoid", "Elu", "Concat", "Flatten", "DepthToSpace",
            "SpaceToDepth", "Reshape", "Slice", "Clip", "Gather", "Tile", "OneHot", "Pad", "Expand",
            "Where", "ScatterElements", "Gemm"),
}


class SingaBackend(Backend):
    """ONNX backend API (`onnx.backend.base.Backend`) over singax.

    `_rename_operators` is SINGA's table of supported ONNX op types (see
    RENAMED_OPERATORS); every key is importable here.
    """

    _rename_operators = RENAMED_OPERATORS

    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
        """Whether every tensor the graph declares has an element type singax imports
        (float, float16, double, bool, int8/16/32/64)."""
        g = model.graph
        types = [vi.type.tensor_type.elem_type for vi in list(g.input) + list(g.output)
                 if vi.type.HasField("tensor_type")]
        types += [t.data_type for t in g.initializer]
        return all(t in _IMPORT_TYPES for t in types)

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> "_TypedRep":
        """`prepare`, with `run` giving numpy outputs of the element types the graph declares
        (as the ONNX backend API expects; singax computes bool as 0/1 float32, int64 as int32)."""
        return _TypedRep(prepare(model, device, **kwargs), model)

    @classmethod
    def run_node(cls, node, inputs: Sequence[Any], device: str = "CPU", outputs_info=None,
                 opset_version: int = 11, **kwargs) -> OrderedDict:
        return run_node(node, inputs, device, opset_version)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().split(":")[0] in ("CPU", "CUDA", "GPU")


class _TypedRep(SingaRep):
    """A SingaRep (its attributes are the wrapped one's) whose `run` returns numpy arrays,
    the graph outputs cast to their declared types; `aux_output` tensors follow as they are."""

    def __init__(self, rep: SingaRep, model):
        self.__dict__["rep"] = rep
        types = []
        for o in model.graph.output:
            t, _ = _tensor_type(o.type)
            types.append(helper.tensor_dtype_to_np_dtype(t.elem_type) if t is not None and t.elem_type else None)
        self.__dict__["types"] = types

    def __getattr__(self, attr: str):
        return getattr(self.__dict__["rep"], attr)

    def run(self, inputs, **kwargs) -> list:
        outs = [_numpy(o) if isinstance(o, (Tensor, list)) else o for o in self.rep.run(inputs, **kwargs)]
        typed = len(self.types) if kwargs.get("last_layers") is None else 0
        return [o if t is None or o is None else [e.astype(t) for e in o] if isinstance(o, list) else o.astype(t)
                for o, t in zip(outs[:typed], self.types)] + outs[typed:]


def run_node(node, inputs: Sequence[Any], device: Any = "CPU", opset_version: int = 11) -> OrderedDict:
    """Run one `NodeProto` on numpy inputs; returns an OrderedDict output name -> Tensor."""
    imp = get_op(node, opset_version)
    dev = _resolve_device(device)
    names = list(imp.node.inputs)
    args = []
    for pos, v in enumerate(inputs):
        if pos < len(names) and names[pos] == "" or v is None:
            args.append(None)
        elif pos in imp.values or pos in imp.maybe:
            args.append(np.asarray(v.data if isinstance(v, Tensor) else v))
        else:
            arr = v.data if isinstance(v, Tensor) else import_array(v, f"sonnx.run_node: input {pos}")
            args.append(v if isinstance(v, Tensor) else Tensor(device=dev, data=arr, dtype=arr.dtype))
    outs = imp(*args)
    return OrderedDict((n, t) for n, t in zip(imp.node.outputs, outs) if n)


# --------------------------------------------------------------------------- SONNXModel
class _OnnxStates(Layer):
    """Registers an imported model's initializers with the Model (params and buffers)."""

    def __init__(self, rep: SingaRep):
        super().__init__()
        self.__dict__["_rep"] = rep

    def get_params(self) -> dict:
        return self._rep.get_params()

    def get_states(self) -> dict:
        return dict(self._rep.states)


class SONNXModel(Model):
    """An imported ONNX model as a `model.Model`: subclass it, add layers and a
    `train_one_batch`, and fine-tune with any singax optimizer.

    `forward(*inputs, aux_output=(), last_layers=None)` returns the list of output
    Tensors (plus the `aux_output` tensors). `self.sg_ir` is the `SingaRep`.

    SINGA: the imported parameters are not registered there (get_params/save_states miss
    them); here they are, under their initializer names.
    """

    def __init__(self, onnx_model, device: Any = "CPU"):
        super().__init__()
        rep = prepare(onnx_model, device)
        rep.is_graph = True
        self.sg_ir = rep
        self.onnx_states = _OnnxStates(rep)

    def initialize(self, *inputs, **kwargs) -> None:
        """Nothing to create: the parameters come from the ONNX initializers."""

    def forward(self, *input, aux_output: Sequence[str] = (), **kwargs):
        return self.sg_ir.run(list(input), aux_output=aux_output, **kwargs)
