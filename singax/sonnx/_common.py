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
# default-domain opsets the importer reads (11..28); the operator versions of opsets 19-28
# add element types, Cast's saturate/round_mode, AveragePool's dilations, SpaceToDepth's
# mode and Pad's wrap mode, which the builders read (or refuse by name)
IMPORT_OPSETS = range(11, 29)

# what each ONNX element type becomes on import: every float type is held as float32 and
# every integer type that fits as int32 (values exact; Cast rounds to the narrower types)
_FLOATS = ("FLOAT", "FLOAT16", "DOUBLE", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
           "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1")
_INTS = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "INT4", "UINT4", "INT2", "UINT2")
_IMPORT_TYPES = {
    **{getattr(TensorProto, n): np.float32 for n in _FLOATS if hasattr(TensorProto, n)},
    **{getattr(TensorProto, n): np.int32 for n in _INTS if hasattr(TensorProto, n)},
    TensorProto.BOOL: np.float32,
}
# numpy dtype names (ml_dtypes' included) imported as float32 / as int32
_AS_FLOAT32 = frozenset(np.dtype(helper.tensor_dtype_to_np_dtype(t)).name
                              for t, d in _IMPORT_TYPES.items() if d is np.float32 and t != TensorProto.BOOL)
_AS_INT32 = frozenset(np.dtype(helper.tensor_dtype_to_np_dtype(t)).name
                            for t, d in _IMPORT_TYPES.items() if d is np.int32 and t != TensorProto.INT64)


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
    every float type -> float32, int64 and the narrower integer types -> int32)."""
    a = np.asarray(a)
    name = a.dtype.name
    if a.dtype.kind == "b" or name in _AS_FLOAT32:
        return a.astype(np.float32)
    if name == "int64":
        # clip, so INT64_MAX ("to the end" in Slice) stays the largest int32 instead of wrapping;
        # other values int32 cannot hold are refused rather than changed
        info = np.iinfo(np.int32)
        outside = (a < info.min) | (a > info.max)
        if np.any(outside & (np.abs(a.astype(np.float64)) < 2.0 ** 62)):
            raise ValueError(f"{where}: int64 value {a[outside].flat[0]} is outside int32, which singax "
                             "holds int64 as")
        return np.clip(a, info.min, info.max).astype(np.int32)
    if name in _AS_INT32:
        return a.astype(np.int32)
    if a.dtype.kind == "u":
        raise TypeError(f"{where}: {name} arrays are not supported (int32 cannot hold all their values)")
    raise TypeError(f"{where}: unsupported array dtype {a.dtype}")
