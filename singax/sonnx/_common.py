"""Shared by export and import: the onnx import guard and the type mappings."""
from __future__ import annotations

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("singax.sonnx needs the optional `onnx` package: "
                      "pip install 'singax[onnx]' (or pip install onnx onnxruntime)") from err

__all__ = ["onnx", "TensorProto", "helper", "numpy_helper", "EXPORT_OPSET", "IMPORT_OPSETS",
           "onnx_type_of", "singa_dtype_of_onnx", "import_array", "type_name"]

EXPORT_OPSET = 11
EXPORT_IR_VERSION = 6          # the IR version that goes with opset 11
IMPORT_OPSETS = range(11, 19)  # default-domain opsets the importer reads (11..18)

# what each ONNX element type becomes on import (None: unsupported)
_IMPORT_TYPES = {
    TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float32, TensorProto.DOUBLE: np.float32,
    TensorProto.BOOL: np.float32, TensorProto.INT8: np.int32, TensorProto.INT16: np.int32,
    TensorProto.INT32: np.int32, TensorProto.INT64: np.int32,
}


def registrar(table: dict):
    """`decorator(*names)` that files the decorated function in `table` under each name."""
    def decorator(*names: str):
        def file(fn):
            for name in names:
                table[name] = fn
            return fn
        return file
    return decorator


def onnx_type_of(dtype) -> int:
    """The ONNX element type of a numpy/jax dtype."""
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def type_name(elem_type: int) -> str:
    return TensorProto.DataType.Name(elem_type)


def singa_dtype_of_onnx(elem_type: int, where: str) -> np.dtype:
    """The numpy dtype singax uses for an ONNX element type."""
    dt = _IMPORT_TYPES.get(elem_type)
    if dt is None:
        supported = ", ".join(sorted(type_name(t) for t in _IMPORT_TYPES))
        raise TypeError(f"{where}: ONNX type {type_name(elem_type)} is not supported "
                        f"(supported: {supported})")
    return np.dtype(dt)


def import_array(a, where: str) -> np.ndarray:
    """A numpy array converted as the importer converts ONNX types (bool -> 0/1 float32,
    int64 -> int32, float64/float16 -> float32)."""
    a = np.asarray(a)
    if a.dtype.kind == "b" or a.dtype in (np.float16, np.float64):
        return a.astype(np.float32)
    if a.dtype.kind in "iu":
        if a.dtype.kind == "u":
            raise TypeError(f"{where}: unsigned integer arrays ({a.dtype}) are not supported")
        # clip, so INT64_MAX ("to the end" in Slice) stays the largest int32 instead of wrapping
        info = np.iinfo(np.int32)
        return np.clip(a, info.min, info.max).astype(np.int32)
    if a.dtype != np.float32:
        raise TypeError(f"{where}: unsupported array dtype {a.dtype}")
    return a

