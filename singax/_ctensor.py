"""CTensor: SINGA's raw tensor as a thin mutable view on a jax.Array.

SINGA's low-level API hands out raw tensors (`op.backward(dy)` results, the
`singa_wrap` functions) whose methods are C++-style: `shape()`, `Size()`,
`GetFloatValue(n)`, `CopyFloatDataFromHostPtr(a)`... A `CTensor` offers those over
one jax.Array (`.value`). singax never uses it internally: `Tensor.data` and
everything the tape passes around stay plain jax arrays, and only the public
low-level entry points wrap (`CTensor.view`) or unwrap (`raw`) at the boundary.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._handle import Handle

# SINGA's dtype codes (kFloat32, kFloat16, kInt, kChar, kDouble, kUChar)
DTYPES = {0: np.dtype("float32"), 1: np.dtype("float16"), 2: np.dtype("int32"), 3: np.dtype("int8"),
          4: np.dtype("float64"), 5: np.dtype("uint8")}
CODES = {v: k for k, v in DTYPES.items()}


def _dtype(code: Any) -> np.dtype:
    if isinstance(code, (int, np.integer)) and int(code) in DTYPES:
        return DTYPES[int(code)]
    try:
        return np.dtype(code)
    except TypeError:
        raise TypeError(f"CTensor: unknown dtype {code!r}; expected a SINGA code "
                        f"(kFloat32=0, kFloat16=1, kInt=2, kChar=3, kDouble=4, kUChar=5)") from None


def raw(x: Any) -> Any:
    """The jax.Array behind a CTensor (or a Tensor); anything else unchanged."""
    if type(x) is CTensor:
        return x.value
    if isinstance(x, Handle):
        return x.data
    return x


def _host(x: Any) -> np.ndarray:
    return np.asarray(x).ravel()


def _float_values(a: Any, n: int | None = None) -> np.ndarray:
    return _host(a).astype(np.float32)[:n]


def _int_values(a: Any, n: int | None = None) -> np.ndarray:
    return _host(a).astype(np.int32)[:n]


def _l1(a: Any) -> float:
    return float(jnp.mean(jnp.abs(a)))


def _l2(a: Any) -> float:
    return float(jnp.sqrt(jnp.mean(jnp.square(a))))


# CTensor queries that also read a jax.Array, none clashing with jax.Array's own attributes
ARRAY_METHODS = {"GetFloatValue": _float_values, "GetIntValue": _int_values, "L1": _l1, "L2": _l2,
                 "Size": lambda a: int(a.size), "nDim": lambda a: a.ndim,
                 "data_type": lambda a: CODES.get(np.dtype(a.dtype), 0)}


class CTensor:
    """SINGA's raw tensor: `CTensor(shape, device=None, dtype=kFloat32)` is zero-filled.

    Wraps a jax.Array in `.value`. In-place methods (`SetFloatValue`, `+=`,
    `CopyFloatDataFromHostPtr`, `singa_wrap.Gaussian`...) rebind `.value`.
    """

    __slots__ = ("value", "__weakref__")

    def __init__(self, shape: Sequence[int] = (), device: Any = None, dtype: Any = 0):
        arr = jnp.zeros(tuple(int(s) for s in shape), _dtype(dtype))
        jdev = getattr(device, "jax_device", None)
        self.value = arr if jdev is None else jax.device_put(arr, jdev)

    @classmethod
    def view(cls, value: Any) -> "CTensor":
        """A CTensor over `value` (a jax.Array), without copying."""
        t = cls.__new__(cls)
        t.value = value
        return t

    # --- queries -----------------------------------------------------------
    def shape(self, axis: int | None = None):
        """The shape as a tuple, or one dimension."""
        s = tuple(self.value.shape)
        return s if axis is None else s[axis]

    def device(self):
        from .tensor._engine import _device_of
        return _device_of(self.value)

    def transpose(self) -> bool:
        """Whether the storage is transposed: never (values are laid out row-major)."""
        return False

    # --- in-place writes ---------------------------------------------------
    def SetFloatValue(self, x: float) -> None:  # noqa: N802
        self.value = jnp.full_like(self.value, x)

    SetIntValue = SetFloatValue

    def CopyFloatDataFromHostPtr(self, a: Any, num: int | None = None) -> None:  # noqa: N802
        """Copy host values (flat or shaped, converted by value) into self."""
        flat = np.asarray(a).ravel()
        n = self.Size() if num is None else int(num)
        if flat.size < n:
            raise ValueError(f"CTensor.CopyFloatDataFromHostPtr: {flat.size} values cannot fill "
                             f"{n} elements of a tensor of shape {self.shape()}")
        old = _host(self.value)
        new = np.concatenate([flat[:n].astype(old.dtype), old[n:]]).reshape(self.value.shape)
        self.value = jax.device_put(new, next(iter(self.value.devices())))

    CopyIntDataFromHostPtr = CopyDataFromHostPtr = CopyFloatDataFromHostPtr

    def CopyData(self, other: "CTensor") -> None:  # noqa: N802
        self.CopyFloatDataFromHostPtr(np.asarray(raw(other)))

    def ResetLike(self, other: Any) -> None:  # noqa: N802
        self.value = jnp.zeros_like(raw(other))

    def ToDevice(self, device: Any) -> None:  # noqa: N802
        self.value = jax.device_put(self.value, device.jax_device)

    def ToHost(self) -> None:  # noqa: N802
        self.value = jax.device_put(self.value, jax.devices("cpu")[0])

    # --- new tensors ---------------------------------------------------------
    def Clone(self) -> "CTensor":  # noqa: N802
        return CTensor.view(self.value)

    def Reshape(self, shape: Sequence[int]) -> "CTensor":  # noqa: N802
        return CTensor.view(jnp.reshape(self.value, tuple(shape)))

    def AsType(self, dtype: Any) -> "CTensor":  # noqa: N802
        return CTensor.view(self.value.astype(_dtype(dtype)))

    def T(self) -> "CTensor":  # noqa: N802
        return CTensor.view(self.value.T)

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(self.value)
        return a if dtype is None else a.astype(dtype)

    def __repr__(self) -> str:
        return f"CTensor(shape={self.shape()}, dtype={np.dtype(self.value.dtype)})"

    def __len__(self) -> int:
        return len(self.value)

    def __neg__(self) -> "CTensor":
        return CTensor.view(-self.value)


def _dunder(fn, reflected: bool = False, inplace: bool = False):
    def method(self, other):
        o = raw(other)
        if not isinstance(o, (jax.Array, np.ndarray, int, float, np.generic)):
            return NotImplemented
        a, b = (o, self.value) if reflected else (self.value, o)
        out = fn(a, b)
        if out.dtype != self.value.dtype and jnp.issubdtype(self.value.dtype, jnp.floating):
            out = out.astype(self.value.dtype)
        if inplace:
            self.value = out
            return self
        return CTensor.view(out)
    return method


def _mask(cmp):
    """A comparison giving 1/0 in the lhs's float dtype (float32 for ints), as SINGA does."""
    def f(a, b):
        dt = jnp.result_type(a)
        return cmp(a, b).astype(dt if jnp.issubdtype(dt, jnp.floating) else jnp.float32)
    return f


ARITHMETIC = {"add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply, "truediv": jnp.divide,
              "div": jnp.divide, "pow": jnp.power}
COMPARISONS = {"lt": _mask(jnp.less), "le": _mask(jnp.less_equal), "gt": _mask(jnp.greater),
               "ge": _mask(jnp.greater_equal)}

for _name, _fn in ARITHMETIC.items():
    setattr(CTensor, f"__{_name}__", _dunder(_fn))
    setattr(CTensor, f"__r{_name}__", _dunder(_fn, reflected=True))
    setattr(CTensor, f"__i{_name}__", _dunder(_fn, inplace=True))
for _name, _fn in COMPARISONS.items():
    setattr(CTensor, f"__{_name}__", _dunder(_fn))

for _name, _fn in ARRAY_METHODS.items():
    setattr(CTensor, _name, (lambda f: lambda self, *a: f(self.value, *a))(_fn))


def attach_to_jax_arrays() -> None:
    """Give jax arrays the read-only CTensor methods above (as `Tensor.data.GetFloatValue(n)`
    in SINGA code); called when singax is installed as `singa`."""
    from jax._src.array import ArrayImpl as cls   # the concrete class, without starting a device
    for name, fn in ARRAY_METHODS.items():
        if not hasattr(cls, name):
            setattr(cls, name, fn)
