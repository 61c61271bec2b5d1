"""SINGA's Tensor: a mutable handle on an immutable jax.Array.

`Tensor.data` is a `jax.Array`; in-place methods (`set_value`, `gaussian`,
`copy_from_numpy`, `+=`, optimizer updates) rebind it. Methods and Python
operators are not tracked by autograd (use `singax.autograd` ops for that).
"""
from __future__ import annotations

import itertools
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import device as _device
from ._handle import Handle

# SINGA dtype codes (float32/float16/int32 are SINGA's; the rest are singax's)
float32 = 0
float16 = 1
int32 = 2
int8 = 3
float64 = 4
uint8 = 5
bfloat16 = 6
int64 = 7
bool_ = 8

_CODE_TO_NP = {
    float32: np.dtype("float32"), float16: np.dtype("float16"), int32: np.dtype("int32"),
    int8: np.dtype("int8"), float64: np.dtype("float64"), uint8: np.dtype("uint8"),
    bfloat16: np.dtype(jnp.bfloat16), int64: np.dtype("int64"), bool_: np.dtype("bool"),
}
_NP_TO_CODE = {v: k for k, v in _CODE_TO_NP.items()}
dtype_name = {code: ("bfloat16" if code == bfloat16 else str(dt)) for code, dt in _CODE_TO_NP.items()}
dtype_name[bool_] = "bool"

CTensor = jax.Array
_dummy_count = itertools.count()
_DUMMY = re.compile(r"Dummy#\d+")


def to_np_dtype(dtype: Any) -> np.dtype:
    """Map a SINGA dtype code, a string or a numpy/jax dtype to a numpy dtype."""
    if isinstance(dtype, (int, np.integer)) and not isinstance(dtype, bool):
        if int(dtype) not in _CODE_TO_NP:
            raise ValueError(f"tensor: unknown dtype code {dtype}; known codes: "
                             + ", ".join(f"{c}={dtype_name[c]}" for c in _CODE_TO_NP))
        return _CODE_TO_NP[int(dtype)]
    if dtype in ("int", "float"):
        return _CODE_TO_NP[int32 if dtype == "int" else float32]
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"tensor: unsupported dtype {dtype!r}") from None
    if dt not in _NP_TO_CODE:
        raise TypeError(f"tensor: unsupported dtype {dt}; supported: "
                        + ", ".join(dtype_name[c] for c in _CODE_TO_NP))
    return dt


def to_code(dtype: Any) -> int:
    """The SINGA dtype code of a numpy/jax dtype (or of a code)."""
    return _NP_TO_CODE[to_np_dtype(dtype)]


def _on(array: Any, dev: "_device.Device"):
    """Place a concrete array on `dev` (tracers stay as they are)."""
    if isinstance(array, jax.core.Tracer):
        return array
    return jax.device_put(array, dev.jax_device)


class Tensor(Handle):
    """SINGA's Tensor.

    Args:
      shape: shape of a new tensor (ignored when `data` is given). New tensors are
        zero-filled (SINGA: uninitialised memory).
      device: a `singax.device.Device` (default: the host CPU device).
      dtype: a SINGA dtype code (`tensor.float32`, ...) or a numpy dtype.
      data: a numpy array (converted by value to `dtype`) or a jax.Array (wrapped).
      requires_grad, stores_grad, creator, name: autograd flags as in SINGA.

    SINGA: numpy data of another dtype is converted by value, not byte-reinterpreted.
    """

    def __init__(self, shape: Sequence[int] = (), device: "_device.Device | None" = None,
                 dtype: Any = float32, data: Any = None, requires_grad: bool = True,
                 stores_grad: bool = False, creator: Any = None, name: str | None = None):
        dev = device if device is not None else _device.get_default_device()
        if data is None:
            arr = jnp.zeros(tuple(int(s) for s in shape), to_np_dtype(dtype))
            arr = _on(arr, dev)
        elif isinstance(data, (jax.Array, jax.core.Tracer)):
            arr = data if device is None else _on(data, dev)
            if device is None and not isinstance(data, jax.core.Tracer):
                dev = _device_of(data)
        else:
            np_data = np.asarray(data)
            if np_data.dtype.kind in "OUSV":
                raise TypeError(f"Tensor: unsupported numpy dtype {np_data.dtype} for data")
            arr = _on(np_data.astype(to_np_dtype(dtype), copy=False), dev)
        super().__init__(arr)
        self.device = dev
        self.requires_grad = requires_grad
        self.stores_grad = stores_grad
        if name is None:
            name = f"Dummy#{next(_dummy_count)}"
        self.name = name
        if creator is None:
            from .autograd._tape import Dummy
            creator = Dummy(self, name)
        self.creator = creator

    # --- attributes ------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.__dict__["_data"].shape)

    @property
    def dtype(self) -> int:
        return _NP_TO_CODE[np.dtype(self.__dict__["_data"].dtype)]

    def ndim(self) -> int:
        return len(self.shape)

    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def memsize(self) -> int:
        return self.size() * self.__dict__["_data"].dtype.itemsize

    def is_empty(self) -> bool:
        return self.ndim() == 0

    def is_dummy(self) -> bool:
        return bool(_DUMMY.fullmatch(str(self.name)))

    def is_transpose(self) -> bool:
        """Always False: jax arrays have no lazy strides."""
        return False

    def __repr__(self) -> str:
        try:
            body = np.array2string(to_numpy(self))
        except Exception:
            body = repr(self.__dict__["_data"])
        return f"{body}, {dtype_name.get(self.dtype, self.dtype)}"

    def _new(self, array) -> "Tensor":
        """A fresh untracked tensor on this device holding `array`."""
        return Tensor(device=self.device, data=array)


def _device_of(array) -> "_device.Device":
    try:
        jdev = next(iter(array.devices()))
    except Exception:
        return _device.get_default_device()
    for d in _device.get_devices() + [_device.get_default_device()]:
        if d.jax_device == jdev:
            return d
    return _device.get_default_device()


def from_numpy(np_array: Any, dev: "_device.Device | None" = None) -> Tensor:
    """Tensor from a numpy array (float64→float32, int64→int32 as in SINGA)."""
    arr = np.asarray(np_array)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.int64:
        arr = arr.astype(np.int32)
    return Tensor(device=dev, data=arr, dtype=arr.dtype)


def to_numpy(t: Tensor) -> np.ndarray:
    """A numpy copy of `t`."""
    data = t.data
    if isinstance(data, jax.core.Tracer):
        from .model import MSG_VALUE_IN_TRACE
        raise RuntimeError(MSG_VALUE_IN_TRACE.format(what="tensor.to_numpy"))
    return np.array(data)


PlaceHolder = Tensor
