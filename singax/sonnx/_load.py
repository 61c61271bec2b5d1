"""Reading an ONNX model for import: parsing, contained external data, the checker,
the opset range (direct or through onnx's version converter) and element types."""
from __future__ import annotations

import os

from ._common import IMPORT_OPSETS, TensorProto, onnx

__all__ = ["load_checked", "elem_types"]


def load_checked(model):
    """(checked ModelProto within IMPORT_OPSETS, its opset) from a ModelProto, bytes or path."""
    return _checked(_load(model))


def _load(model):
    if isinstance(model, (bytes, bytearray, str, os.PathLike)):
        try:
            if isinstance(model, (str, os.PathLike)):
                proto = onnx.load(model, load_external_data=False)
                _load_external_data(proto, os.path.dirname(os.path.abspath(model)))
                return proto
            proto = onnx.load_from_string(bytes(model))
        except (OSError, ValueError):
            raise
        except Exception as err:   # protobuf's DecodeError and friends
            raise ValueError(f"sonnx.prepare: malformed ONNX model (cannot parse it: {err})") from None
    elif isinstance(model, onnx.ModelProto):
        proto = model
    else:
        raise TypeError(f"sonnx.prepare: expected an onnx.ModelProto, bytes or a file path, got "
                        f"{type(model).__name__}")
    _load_external_data(proto, None)
    return proto


def _tensors(graph):
    """Every TensorProto of `graph`: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _tensors(g)


def _load_external_data(model, folder: str | None) -> None:
    """Read external tensor data from files inside `folder` (the model file's folder).

    A model given as bytes or a ModelProto has no folder, so external data is refused;
    a location must be a relative path that stays inside the folder (symlinks resolved).
    """
    external = [t for t in _tensors(model.graph) if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return
    if folder is None:
        raise ValueError(f"sonnx.prepare: tensor {external[0].name!r} keeps its data in an external file, "
                         "which is read only for a model loaded from a file path (pass the .onnx path)")
    from onnx import external_data_helper
    root = os.path.realpath(folder)
    for t in external:
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        target = os.path.realpath(os.path.join(root, location))
        if (not location or os.path.isabs(location) or ".." in location.replace("\\", "/").split("/")
                or os.path.commonpath([root, target]) != root or not os.path.isfile(target)):
            raise ValueError(f"sonnx.prepare: tensor {t.name!r} names external data {location!r}, which is "
                             f"not a file inside the model folder {folder}")
        try:
            external_data_helper.load_external_data_for_tensor(t, root)
        except Exception as err:
            raise ValueError(f"sonnx.prepare: cannot read external data {location!r} of tensor "
                             f"{t.name!r} in {folder}: {err}") from None


def _opset(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def _newest_since(model, opset: int) -> int:
    """The newest operator version (`since_version`) the model's default-domain nodes use."""
    newest = 1
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx"):
            try:
                newest = max(newest, onnx.defs.get_schema(node.op_type, opset).since_version)
            except Exception:   # an op unknown to this onnx: prepare names it
                pass
    return newest


def _checked(model):
    """Check, and bring the opset into IMPORT_OPSETS (version converter) if needed.

    A newer opset whose operators all keep a definition from IMPORT_OPSETS (their
    `since_version`) is read as it is.
    """
    try:
        onnx.checker.check_model(model)
    except Exception as err:
        raise ValueError(f"sonnx.prepare: malformed ONNX model: {err}") from None
    opset = _opset(model)
    last = IMPORT_OPSETS[-1]
    if opset in IMPORT_OPSETS or (opset > last and _newest_since(model, opset) <= last):
        return model, opset
    target = IMPORT_OPSETS.start if opset < IMPORT_OPSETS.start else last
    try:
        from onnx import version_converter
        model = version_converter.convert_version(model, target)
        onnx.checker.check_model(model)
    except Exception as err:
        raise ValueError(f"sonnx.prepare: opset {opset} is not supported (singax imports opsets "
                         f"{IMPORT_OPSETS.start}-{last}) and converting it to opset {target} "
                         f"failed: {err}") from None
    return model, _opset(model)


def elem_types(model) -> dict[str, int]:
    """Value name -> ONNX element type, as declared or as ONNX's shape inference finds it."""
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:   # inference is a help here, not a requirement
        graph = model.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    return types
