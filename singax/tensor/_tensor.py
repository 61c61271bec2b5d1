"""The Tensor class, its methods and its Python operators (described in `singax.tensor`)."""
from __future__ import annotations

import copy
import functools
import math
import operator
import re
import warnings
import weakref
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from .. import device as _device
from .._args import is_int
from .._ctensor import CTensor as _CTensor
from .._handle import Handle, is_tracer
from ._engine import (_ARRAY_TYPES, _COMPARISONS, _INT_KERNELS, _KERNELS, _NP_TO_CODE,
                      IndexValueError, _bernoulli, _device_of, _fill_value, _float_of, _fresh, _from_host,
                      _index_int, _axis, _normal, _np_input, _on, _reshape_target,
                      _result_dtype, _shape_tuple, _true_div, _uniform, _value_in_trace,
                      dtype_name, float32, to_np_dtype)

_DUMMY = re.compile(r"Dummy#\d+")


@functools.cache
def _dummy_class():
    """autograd's leaf operator (imported on first use: autograd imports this module)."""
    from ..autograd._tape import Dummy  # layering: a Tensor's creator is the tape's leaf (the one cycle)
    return Dummy



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
    SINGA: Tensor is hashable (by identity) although it defines `__eq__`; singax keys
    dicts and sets by tensors.
    """

    dtype_name = dtype_name
    # numpy defers `ndarray ⊕ Tensor` and `np.float32 ⊕ Tensor` to our reflected operators
    __array_ufunc__ = None
    tensor_count = 0   # unnamed tensors are named Dummy#<tensor_count>, as in SINGA

    def __init__(self, shape: Sequence[int] = (), device: "_device.Device | None" = None,
                 dtype: Any = float32, data: Any = None, requires_grad: bool = True,
                 stores_grad: bool = False, creator: Any = None, name: str | None = None):
        dev = device if device is not None else _device.get_default_device()
        if not isinstance(dev, _device.Device):
            raise TypeError(f"Tensor: device must be a singax Device (device.create_cpu_device(), ...), "
                            f"got {type(device).__name__}")
        if data is None:
            arr = _on(jnp.zeros(_shape_tuple(shape, "Tensor"), to_np_dtype(dtype, "Tensor")), dev)
        elif isinstance(data, _ARRAY_TYPES):
            arr = data if device is None else _on(data, dev)
            if device is None and not is_tracer(data):
                dev = _device_of(data)
        elif type(data) is _CTensor:
            arr = data.value if device is None else _on(data.value, dev)
            if device is None:
                dev = _device_of(arr)
        else:
            arr = _from_host(data, to_np_dtype(dtype, "Tensor"), dev.jax_device, "Tensor")
        self._init(arr, dev, requires_grad, stores_grad, creator, name)

    def _init(self, arr, dev, requires_grad: bool = True, stores_grad: bool = False,
              creator: Any = None, name: str | None = None) -> None:
        Handle.__init__(self, arr)
        self.device = dev
        self.requires_grad = requires_grad
        self.stores_grad = stores_grad
        if name is None:
            k = Tensor.tensor_count
            Tensor.tensor_count = k + 1
            name = f"Dummy#{k}"
        self.name = name
        if creator is not None:
            self.creator = creator

    def __getattr__(self, attr: str):
        """A tensor that no operator made gets its `creator` (autograd's leaf `Dummy`) on
        first read."""
        d = self.__dict__
        if attr == "creator" and "name" in d:
            creator = d["creator"] = _dummy_class()(self, d["name"])
            return creator
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    __hash__ = object.__hash__

    # --- attributes ------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.__dict__["_data"].shape)

    @property
    def dtype(self) -> int:
        return _NP_TO_CODE[np.dtype(self.__dict__["_data"].dtype)]

    def _np_dtype(self) -> np.dtype:
        return np.dtype(self.__dict__["_data"].dtype)

    def ndim(self) -> int:
        """Number of dimensions (a method, as in SINGA)."""
        return len(self.shape)

    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.__dict__["_data"].shape)

    def memsize(self) -> int:
        """Bytes held by the data."""
        return self.size() * self._np_dtype().itemsize

    def is_empty(self) -> bool:
        """True for a 0-d tensor (SINGA's definition: `ndim() == 0`)."""
        return self.ndim() == 0

    def is_dummy(self) -> bool:
        """True while the name starts with an automatic `Dummy#k` (SINGA's `re.match`)."""
        return bool(_DUMMY.match(str(self.name)))

    def is_transpose(self) -> bool:
        """Always False: jax arrays have no lazy strides."""
        return False

    # --- shape -----------------------------------------------------------
    def transpose(self, axes: Sequence[int] | None = None) -> "Tensor":
        """New tensor with axes permuted (`None` reverses them). A copy, not a view."""
        nd = self.ndim()
        if axes is not None:
            axes = tuple(axes)
            if len(axes) != nd:
                raise ValueError(f"Tensor.transpose: axes {axes} do not match a {nd}-D tensor of shape {self.shape}")
            norm = [a + nd if isinstance(a, (int, np.integer)) and a < 0 else a for a in axes]
            if sorted(norm) != list(range(nd)):
                raise ValueError(f"Tensor.transpose: axes {axes} are not a permutation of 0..{nd - 1}")
            axes = tuple(int(a) for a in norm)
        return self._new(jnp.transpose(self.data, axes))

    def T(self) -> "Tensor":
        """All axes reversed (a method, as in SINGA)."""
        return self.transpose()

    def reshape(self, shape: Sequence[int]) -> "Tensor":
        """New tensor with the same elements in `shape` (one -1 allowed: singax extension)."""
        shape = _reshape_target(self.shape, shape, "Tensor.reshape")
        return self._new(jnp.reshape(self.data, shape))

    def contiguous(self) -> "Tensor":
        """A copy (jax arrays are always contiguous)."""
        return self._new(self.data)

    def reset_like(self, t: "Tensor") -> None:
        """Re-allocate self with `t`'s shape, dtype and device (zero-filled; data not copied)."""
        if not isinstance(t, Tensor):
            raise TypeError(f"Tensor.reset_like: expected a Tensor, got {type(t).__name__}")
        self.data = _on(jnp.zeros(t.shape, t._np_dtype()), t.device)
        self.device = t.device

    # --- dtype and device --------------------------------------------------
    def as_type(self, dtype: Any) -> "Tensor":
        """New tensor converted by value to `dtype` (code, `'int'`, `'float'`); float→int truncates."""
        return self._new(self.data.astype(to_np_dtype(dtype, "Tensor.as_type")))

    def to_type(self, dtype: Any) -> "Tensor":
        """Convert in place to `dtype`; returns self."""
        self.data = self.data.astype(to_np_dtype(dtype, "Tensor.to_type"))
        return self

    def to_device(self, device: "_device.Device") -> None:
        """Move the data to `device` in place."""
        if not isinstance(device, _device.Device):
            raise TypeError(f"Tensor.to_device: expected a singax Device, got {type(device).__name__}")
        self.data = _on(self.data, device)
        self.device = device

    def to_host(self) -> None:
        """Move the data to the host CPU device in place."""
        self.to_device(_device.create_cpu_device())

    # --- norms -----------------------------------------------------------
    def l1(self) -> float:
        """Mean absolute value, sum(|x|) / size (SINGA's definition; a Python float)."""
        x = self._concrete("Tensor.l1")
        return float(jnp.sum(jnp.abs(x.astype(_float_of(x.dtype)))) / self.size())

    def l2(self) -> float:
        """Euclidean norm divided by size, sqrt(sum x²) / size (SINGA's definition, not RMS)."""
        x = self._concrete("Tensor.l2").astype(_float_of(self._np_dtype()))
        return float(jnp.sqrt(jnp.sum(x * x)) / self.size())

    def _concrete(self, what: str):
        data = self.data
        if is_tracer(data):
            raise _value_in_trace(what)
        return data

    # --- in-place fills ----------------------------------------------------
    def set_value(self, x: Any, inplace: bool = True) -> "Tensor":
        """Fill with `x` in place; returns self. `inplace=False` raises NotImplementedError."""
        if not inplace:
            raise NotImplementedError("Tensor.set_value: only inplace=True is supported (as in SINGA)")
        value = _fill_value(x, "Tensor.set_value")
        self.data = _on(jnp.full(self.shape, value, self._np_dtype()), self.device)
        return self

    def gaussian(self, mean: float, std: float, inplace: bool = True) -> "Tensor":
        """Fill with N(mean, std²) samples from the device key stream; returns self."""
        if not inplace:
            raise NotImplementedError("Tensor.gaussian: only inplace=True is supported (as in SINGA)")
        mean, std = _fill_value(mean, "Tensor.gaussian"), _fill_value(std, "Tensor.gaussian")
        if isinstance(std, float) and not std >= 0:   # concrete values only; NaN fails too
            raise ValueError(f"Tensor.gaussian: std must be >= 0, got {std}")
        self.data = _normal(self.device.next_key(), mean, std, self.shape, self._np_dtype(), self.device)
        return self

    def uniform(self, low: float, high: float, inplace: bool = True) -> "Tensor":
        """Fill with U[low, high) samples from the device key stream; returns self."""
        if not inplace:
            raise NotImplementedError("Tensor.uniform: only inplace=True is supported (as in SINGA)")
        low, high = _fill_value(low, "Tensor.uniform"), _fill_value(high, "Tensor.uniform")
        if isinstance(low, float) and isinstance(high, float) and not low <= high:
            raise ValueError(f"Tensor.uniform: low must be <= high, got {low} and {high}")
        self.data = _uniform(self.device.next_key(), low, high, self.shape, self._np_dtype(), self.device)
        return self

    def bernoulli(self, p: float, inplace: bool = True) -> "Tensor":
        """Fill with 1 (probability p) or 0 from the device key stream; returns self."""
        if not inplace:
            raise NotImplementedError("Tensor.bernoulli: only inplace=True is supported (as in SINGA)")
        p = _fill_value(p, "Tensor.bernoulli")
        if isinstance(p, float) and not 0 <= p <= 1:
            raise ValueError(f"Tensor.bernoulli: p must be in [0, 1], got {p}")
        self.data = _bernoulli(self.device.next_key(), p, self.shape, self._np_dtype(), self.device)
        return self

    # --- copies ------------------------------------------------------------
    def copy_from_numpy(self, np_array: Any, offset: int = 0) -> None:
        """Copy `np_array` (same element count, any shape) into self, converted by value.

        SINGA: values are converted to self's dtype, not byte-copied; `offset` is ignored
        as in SINGA (the sizes must match anyway).
        """
        arr = _np_input(np_array, "Tensor.copy_from_numpy")
        if arr.size != self.size():
            raise ValueError(f"Tensor.copy_from_numpy: array of shape {arr.shape} ({arr.size} elements) "
                             f"does not fit a tensor of shape {self.shape} ({self.size()} elements)")
        self.data = _from_host(arr, self._np_dtype(), self.device.jax_device, "Tensor.copy_from_numpy",
                               self.shape)

    def copy_data(self, t: "Tensor") -> None:
        """Copy the values of `t` (same element count and dtype; any device) into self."""
        if not isinstance(t, Tensor):
            raise TypeError(f"Tensor.copy_data: expected a Tensor, got {type(t).__name__}")
        if t.size() != self.size():
            raise ValueError(f"Tensor.copy_data: source shape {t.shape} ({t.size()} elements) does not "
                             f"fit destination shape {self.shape} ({self.size()} elements)")
        if t.dtype != self.dtype:
            raise TypeError(f"Tensor.copy_data: source dtype {dtype_name[t.dtype]} differs from "
                            f"destination dtype {dtype_name[self.dtype]}; convert with as_type first")
        self.data = _on(_fresh(jnp.reshape(t.data, self.shape), t.data), self.device)

    def copy_from(self, t: Any, offset: int = 0) -> None:
        """`copy_data` for a Tensor, `copy_from_numpy` for a numpy array."""
        if isinstance(t, Tensor):
            self.copy_data(t)
        elif isinstance(t, np.ndarray):
            self.copy_from_numpy(t, offset)
        else:
            raise ValueError(f"Tensor.copy_from: expected a Tensor or a numpy array, got {type(t).__name__}")

    def clone(self) -> "Tensor":
        """A deep copy with default autograd flags."""
        return self._new(self.data)

    def deepcopy(self) -> "Tensor":
        """Same as `clone`."""
        return self.clone()

    def copy(self) -> "Tensor":
        """A tensor sharing self's values (SINGA's shallow copy shares the data block): an
        in-place update of either (`+=`, `set_value`, `copy_from_numpy`...) is seen by both.
        `deepcopy` and `clone` give an independent tensor. Each keeps its own buffer; writes
        are passed on to the others."""
        twin = self._new(self.__dict__["_data"])
        peers = self.__dict__.get("_peers")
        if peers is None:
            peers = self.__dict__["_peers"] = [weakref.ref(self)]
            self.__class__ = _SharedTensor
        peers[:] = [r for r in peers if r() is not None]
        peers.append(weakref.ref(twin))
        twin.__dict__["_peers"] = peers
        twin.__class__ = _SharedTensor
        return twin

    def repeat(self, repeats: Any, axis: int | None) -> "Tensor":
        """numpy.repeat: `axis=None` flattens; a sequence of repeats needs an axis and one entry per element."""
        where = "Tensor.repeat"
        if is_int(repeats):
            if repeats < 0:
                raise ValueError(f"{where}: repeats must be >= 0, got {repeats}")
            reps: Any = int(repeats)
        elif isinstance(repeats, (list, tuple)):
            if any(not isinstance(r, (int, np.integer)) or r < 0 for r in repeats):
                raise ValueError(f"{where}: repeats must be non-negative ints, got {repeats}")
            if axis is None:
                raise ValueError(f"{where}: a sequence of repeats {repeats} needs an axis")
            reps = np.asarray(repeats, np.int64)
        else:
            raise ValueError(f"{where}: repeats must be an int or a sequence of ints, got {repeats!r}")
        if axis is None:
            data, ax = jnp.reshape(self.data, (-1,)), 0
        else:
            data, ax = self.data, _axis(axis, self.ndim(), where)
        n = data.shape[ax]
        if isinstance(reps, np.ndarray) and len(reps) != n:
            raise ValueError(f"{where}: {len(reps)} repeats for axis {axis} of size {n} (shape {self.shape})")
        # one gather with a constant index: a single small kernel, and fine inside a trace
        index = np.repeat(np.arange(n), reps)
        return self._new(jnp.take(data, index, axis=ax))

    def __getitem__(self, keys: Any) -> "Tensor":
        """A copy of a sub-block: ints keep their axis (size 1), slice steps are ignored.

        Keys are ints or slices, one per leading axis. Negative indices wrap once; empty or
        out-of-range selections raise ValueError. Not tracked by autograd.
        SINGA: a slice stop of 0 selects nothing here (SINGA reads it as "to the end").
        """
        if not isinstance(keys, tuple):
            keys = (keys,)
        shape = self.shape
        if len(keys) > len(shape):
            raise IndexValueError(f"Tensor.__getitem__: {len(keys)} indices for a tensor of shape {shape}")
        index = []
        for ax, key in enumerate(keys):
            n = shape[ax]
            if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
                i = int(key) + (n if key < 0 else 0)
                if not 0 <= i < n:
                    raise IndexValueError(f"Tensor.__getitem__: index {key} out of range for axis {ax} "
                                          f"of size {n} (shape {shape})")
                index.append(slice(i, i + 1))
            elif isinstance(key, slice):
                start = 0 if key.start is None else _index_int(key.start)
                stop = n if key.stop is None else _index_int(key.stop)
                start += n if start < 0 else 0
                stop += n if stop < 0 else 0
                if not (0 <= start < stop <= n):
                    raise IndexValueError(f"Tensor.__getitem__: slice {key.start}:{key.stop} selects nothing "
                                          f"or is out of range for axis {ax} of size {n} (shape {shape})")
                index.append(slice(start, stop))
            else:
                raise IndexValueError(f"Tensor.__getitem__: index must be an int or a slice, got {key!r}")
        return self._new(self.data[tuple(index)])

    # --- deprecated 2-D broadcasts (in place) --------------------------------
    def add_column(self, v: "Tensor") -> "Tensor":
        """Deprecated: add `v` (length rows) to every column, in place."""
        return self._column_row(v, "add_column", operator.add, column=True)

    def add_row(self, v: "Tensor") -> "Tensor":
        """Deprecated: add `v` (length cols) to every row, in place."""
        return self._column_row(v, "add_row", operator.add, column=False)

    def div_column(self, v: "Tensor") -> "Tensor":
        """Deprecated: divide every column by `v` (length rows), in place."""
        return self._column_row(v, "div_column", _true_div, column=True)

    def div_row(self, v: "Tensor") -> "Tensor":
        """Deprecated: divide every row by `v` (length cols), in place."""
        return self._column_row(v, "div_row", _true_div, column=False)

    def mult_column(self, v: "Tensor") -> "Tensor":
        """Deprecated: multiply every column by `v` (length rows), in place."""
        return self._column_row(v, "mult_column", operator.mul, column=True)

    def mult_row(self, v: "Tensor") -> "Tensor":
        """Deprecated: multiply every row by `v` (length cols), in place."""
        return self._column_row(v, "mult_row", operator.mul, column=False)

    def _column_row(self, v, name: str, fn, column: bool) -> "Tensor":
        warnings.warn(f"Tensor.{name} is deprecated; use broadcasting operators", DeprecationWarning, stacklevel=3)
        vec = _matrix_vector(self, v, column, f"Tensor.{name}")
        dt = _result_dtype(self._np_dtype(), np.dtype(vec.dtype))
        self.data = fn(self.data.astype(dt), vec.astype(dt)).astype(self._np_dtype())
        return self

    # --- Python operators (not tracked by autograd) ---------------------------
    def __add__(self, rhs):
        return _binary("add", self, rhs, "Tensor.__add__")

    def __sub__(self, rhs):
        return _binary("sub", self, rhs, "Tensor.__sub__")

    def __mul__(self, rhs):
        return _binary("mul", self, rhs, "Tensor.__mul__")

    def __truediv__(self, rhs):
        return _binary("div", self, rhs, "Tensor.__truediv__")

    __div__ = __truediv__

    def __floordiv__(self, rhs):
        return _binary("floordiv", self, rhs, "Tensor.__floordiv__")

    def __lt__(self, rhs):
        return _binary("lt", self, rhs, "Tensor.__lt__")

    def __le__(self, rhs):
        return _binary("le", self, rhs, "Tensor.__le__")

    def __gt__(self, rhs):
        return _binary("gt", self, rhs, "Tensor.__gt__")

    def __ge__(self, rhs):
        return _binary("ge", self, rhs, "Tensor.__ge__")

    def __eq__(self, rhs):
        """Element-wise 1/0; `t == None` is False. (No `__ne__`: as in SINGA, `t != x` is False.)"""
        if rhs is None:
            return False
        return _binary("eq", self, rhs, "Tensor.__eq__")

    def __radd__(self, lhs):
        return _binary("add", lhs, self, "Tensor.__radd__")

    def __rsub__(self, lhs):
        return _binary("sub", lhs, self, "Tensor.__rsub__")

    def __rmul__(self, lhs):
        return _binary("mul", lhs, self, "Tensor.__rmul__")

    def __rtruediv__(self, lhs):
        return _binary("div", lhs, self, "Tensor.__rtruediv__")

    __rdiv__ = __rtruediv__

    def __iadd__(self, x):
        return _inplace(self, "add", x, "Tensor.__iadd__")

    def __isub__(self, x):
        return _inplace(self, "sub", x, "Tensor.__isub__")

    def __imul__(self, x):
        return _inplace(self, "mul", x, "Tensor.__imul__")

    def __itruediv__(self, x):
        return _inplace(self, "div", x, "Tensor.__itruediv__")

    __idiv__ = __itruediv__

    def __repr__(self) -> str:
        try:
            body = np.array2string(np.array(self._concrete("Tensor.__repr__")))
        except Exception:
            body = repr(self.__dict__["_data"])
        return f"{body}, {dtype_name.get(self.dtype, self.dtype)}"

    def _new(self, array) -> "Tensor":
        """A fresh untracked tensor on this device holding `array` (never self's buffer)."""
        return _wrap(_fresh(array, self.__dict__["_data"]), self.device)


def _wrap(array, dev, requires_grad: bool = True, creator=None, name: str | None = None) -> Tensor:
    """A Tensor around an array already on `dev`: the constructor minus its device_put
    (the hot path of operator outputs, gradients and compiled-step outputs)."""
    t = Tensor.__new__(Tensor)
    t._init(array, dev, requires_grad, False, creator, name)
    return t


def _matrix_vector(m: Tensor, v: Any, column: bool, where: str):
    """The raw vector of a column/row op, shaped to broadcast over the 2-D `m`."""
    if not isinstance(m, Tensor) or m.ndim() != 2:
        raise ValueError(f"{where}: expected a 2-D tensor, got shape {getattr(m, 'shape', None)}")
    if not isinstance(v, Tensor):
        raise TypeError(f"{where}: v must be a Tensor, got {type(v).__name__}")
    n = m.shape[0] if column else m.shape[1]
    if v.size() != n:
        kind = "rows" if column else "columns"
        raise ValueError(f"{where}: v of shape {v.shape} must have {n} elements (the {kind} of {m.shape})")
    return jnp.reshape(v.data, (n, 1) if column else (1, n))


# --- element-wise binary operators (SINGA's promotion rules) ----------------
def _operand(x: Any):
    """(value, dtype or None for a scalar); None when `x` is not a numeric operand."""
    if isinstance(x, Tensor):
        return x.data, x._np_dtype()
    if isinstance(x, (bool, int, float, np.number, np.bool_)):
        return float(x), None
    if isinstance(x, _ARRAY_TYPES) or isinstance(x, np.ndarray):
        if jnp.ndim(x) == 0:
            return x, None
        if isinstance(x, np.ndarray):
            x = jnp.asarray(_np_input(x, "tensor"))
        return x, np.dtype(x.dtype)
    return None


def _compute(name: str, x: Any, y: Any, where: str, into: tuple | None = None):
    """The raw result and device of `x <name> y` (at least one a Tensor), or NotImplemented."""
    ox, oy = _operand(x), _operand(y)
    if ox is None or oy is None:
        return NotImplemented, None
    (a, da), (b, db) = ox, oy
    if isinstance(x, Tensor) and isinstance(y, Tensor) and x.device is not y.device:
        raise ValueError(f"{where}: tensors are on different devices ({x.device} and {y.device}); "
                         "move one with to_device first")
    if da is not None and db is not None:
        rt = _result_dtype(da, db)
        if a.shape != b.shape or (into is not None and a.shape != into):
            try:
                out_shape = np.broadcast_shapes(a.shape, b.shape)
            except ValueError:
                raise ValueError(f"{where}: shapes {a.shape} and {b.shape} do not broadcast") from None
            if into is not None and out_shape != into:
                raise ValueError(f"{where}: result of shape {out_shape} (from {a.shape} and {b.shape}) "
                                 f"cannot be stored in place into shape {into}")
    else:
        rt = _result_dtype(da if da is not None else db, None)
    if not isinstance(a, float) and a.dtype != rt:
        a = a.astype(rt)
    if not isinstance(b, float) and b.dtype != rt:
        b = b.astype(rt)
    kernel = _INT_KERNELS.get(name) if rt.kind in "iu" else None
    out = (kernel or _KERNELS[name])(a, b)
    if name in _COMPARISONS:
        out = out.astype(rt)
    dev = x.device if isinstance(x, Tensor) else y.device
    return out, dev


def _binary(name: str, x: Any, y: Any, where: str):
    out, dev = _compute(name, x, y, where)
    if out is NotImplemented:
        return NotImplemented
    return _wrap(out, dev)


def _inplace(t: Tensor, name: str, x: Any, where: str) -> Tensor:
    out, _ = _compute(name, t, x, where, into=t.shape)
    if out is NotImplemented:
        return NotImplemented
    dt = t._np_dtype()
    t.data = out if out.dtype == dt else out.astype(dt)
    return t


class _SharedTensor(Tensor):
    """A Tensor made by or given to `Tensor.copy`: writing `data` also writes (a copy of)
    the value into every other live tensor of the group of the same shape."""

    @property
    def data(self):
        return Handle.data.fget(self)

    @data.setter
    def data(self, value) -> None:
        Handle.data.fset(self, value)
        for ref in self.__dict__["_peers"]:
            peer = ref()
            if peer is not None and peer is not self and peer.shape == tuple(value.shape):
                Handle.data.fset(peer, jnp.array(value, copy=True))

    def __deepcopy__(self, memo: dict) -> Tensor:
        new = Tensor.__new__(Tensor)
        memo[id(self)] = new
        state = {k: v for k, v in self.__dict__.items() if k != "_peers"}
        new.__dict__.update(copy.deepcopy(state, memo))
        return new
