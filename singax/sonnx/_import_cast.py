"""Import of Cast and CastLike to every numeric ONNX element type.

singax holds imported values as float32 (every float type, bool as 1.0/0.0) or int32
(every integer type that fits). A cast therefore rounds the values to what the target
type can represent and keeps them in that storage: float16, bfloat16, the float8, float4
and e8m0 types round as ONNX specifies (`saturate`, `round_mode`), and the integer
types truncate toward zero and wrap to their width. `SingaBackend` returns the graph
outputs in their declared types, which these values convert to exactly.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from ._common import TensorProto, type_name
from ..tensor import Tensor
from ._importers import Imported, _fail, importer

__all__ = ["converter"]

_NARROW_FLOATS = {  # held as float32, rounded through the narrower type
    TensorProto.FLOAT16: jnp.float16, TensorProto.BFLOAT16: jnp.bfloat16,
    TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn, TensorProto.FLOAT8E4M3FNUZ: ml_dtypes.float8_e4m3fnuz,
    TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2, TensorProto.FLOAT8E5M2FNUZ: ml_dtypes.float8_e5m2fnuz,
    TensorProto.FLOAT4E2M1: ml_dtypes.float4_e2m1fn,
}
_SATURATING = frozenset({TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
                         TensorProto.FLOAT8E5M2FNUZ})
_INT_WIDTHS = {  # (bits, signed) of the integer types held as int32
    TensorProto.INT2: (2, True), TensorProto.UINT2: (2, False), TensorProto.INT4: (4, True),
    TensorProto.UINT4: (4, False), TensorProto.INT8: (8, True), TensorProto.UINT8: (8, False),
    TensorProto.INT16: (16, True), TensorProto.UINT16: (16, False),
}
_WIDE = {TensorProto.FLOAT: jnp.float32, TensorProto.DOUBLE: jnp.float32,
         TensorProto.INT32: jnp.int32, TensorProto.INT64: jnp.int32}


def _round_float(x, dtype, saturate: bool):
    x = x.astype(jnp.float32)
    if saturate:   # out of range (infinities included) -> the largest finite value
        big = float(ml_dtypes.finfo(dtype).max)
        x = jnp.clip(x, -big, big)
    return x.astype(dtype).astype(jnp.float32)


def _e8m0(x, saturate: bool, round_mode: str):
    """float32 -> the power of two float8e8m0 holds (sign ignored), as float32."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    e = (bits >> 23) & 0xFF
    special = e == 0xFF
    if round_mode == "up":
        up = (bits & 0x7FFFFF) > 0
    elif round_mode == "nearest":
        guard, rest = (bits & 0x400000) > 0, (bits & 0x3FFFFF) > 0
        up = guard & (rest | (e > 0))
    else:
        up = jnp.zeros_like(special)
    if saturate:
        up = up & (e != 0xFE)
    e = jnp.where(special, 0xFF, e + up.astype(jnp.uint32))
    if saturate:   # an infinity becomes the largest value
        e = jnp.where(special & ~jnp.isnan(x), 0xFE, e)
    value = jax.lax.bitcast_convert_type(jnp.where(e == 0, jnp.uint32(0x00400000), e << 23), jnp.float32)
    return jnp.where(e == 0xFF, jnp.nan, value)


def _to_int(x, bits: int, signed: bool):
    """Truncate toward zero and wrap to `bits` (two's complement); floats outside a 2- or
    4-bit range become 0, as ONNX's reference implementation gives."""
    m = 1 << bits
    lo, hi = (-(m // 2), m // 2 - 1) if signed else (0, m - 1)
    if jnp.issubdtype(x.dtype, jnp.floating) and bits <= 4:
        t = jnp.trunc(x)
        ok = (t >= lo) & (t <= hi)
        return jnp.where(ok, jnp.where(ok, t, 0).astype(jnp.int32), 0)
    v = x.astype(jnp.int32) & (m - 1)
    return jnp.where(v > hi, v - m, v) if signed else v


def converter(node, to: int, saturate: bool = True, round_mode: str = "up") -> Callable:
    """The jitted jax function casting singax's held values to ONNX type `to`."""
    if to == TensorProto.BOOL:
        fn = lambda x: (x != 0).astype(jnp.float32)   # noqa: E731
    elif to in _WIDE:
        fn = functools.partial(jnp.asarray, dtype=_WIDE[to])
    elif to in _NARROW_FLOATS:
        fn = functools.partial(_round_float, dtype=_NARROW_FLOATS[to], saturate=saturate and to in _SATURATING)
    elif to == TensorProto.FLOAT8E8M0:
        if round_mode not in ("up", "down", "nearest"):
            raise _fail(node, f"round_mode {round_mode!r} is not one of 'up', 'down', 'nearest'")
        fn = functools.partial(_e8m0, saturate=saturate, round_mode=round_mode)
    elif to in _INT_WIDTHS:
        fn = functools.partial(_to_int, bits=_INT_WIDTHS[to][0], signed=_INT_WIDTHS[to][1])
    else:
        raise _fail(node, f"cast to {type_name(to)} is not supported (singax holds numbers as float32 "
                          "or int32: no strings, complex numbers or 32/64-bit unsigned integers)")
    return jax.jit(fn)


def _cast_tensor(convert: Callable, x: Tensor) -> Tensor:
    y = convert(x.data)
    return Tensor(data=y, dtype=y.dtype, requires_grad=False)


def _flags(node) -> tuple[bool, str]:
    return bool(node.getattr("saturate", 1)), node.getattr("round_mode", "up")


@importer("Cast")
def _cast(node, opset):
    convert = converter(node, int(node.getattr("to")), *_flags(node))
    return Imported(node, lambda x: _cast_tensor(convert, x))


@importer("CastLike")
def _cast_like(node, opset):
    """The target is the declared (or inferred) ONNX type of the second input; without
    one, the type singax holds it in (FLOAT or INT32)."""
    declared = node.input_types[1] if len(node.input_types) > 1 else None
    flags = _flags(node)
    fixed = converter(node, declared, *flags) if declared else None
    by_kind: dict = {}   # FLOAT / INT32 converters, built on first use

    def run(x, like):
        convert = fixed
        if convert is None:
            to = TensorProto.INT32 if np.dtype(like.data.dtype).kind in "iu" else TensorProto.FLOAT
            convert = by_kind.get(to) or by_kind.setdefault(to, converter(node, to, *flags))
        return _cast_tensor(convert, x)
    return Imported(node, run)
