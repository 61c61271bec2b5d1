"""SINGA's layers (singa-api 3): `Layer` with lazy `initialize` and attribute-path names.

A layer creates its parameters on its first call, from the input's shape, device and
dtype (`initialize(*inputs)` runs before the first `forward`). Parameters and states
are named after the attribute path that reaches them from the outermost layer without
a parent: `self.conv1 = Conv2d(...)` in a Model gives `conv1.W`; a block attached as
`self.block` holding `self.bn` gives `block.bn.running_mean`, even when the block was
attached after its own `__init__`. A standalone layer (no parent) names its params
`W`, `b`, ... as SINGA does.

Layers kept in lists, tuples or dicts are registered too (`self.layers = [Linear(4),
Linear(2)]` gives `layers.0.W`, `layers.1.W`); so are Tensors with `stores_grad` kept
in such containers. The containers are re-scanned before the first forward and by
`get_params`/`get_states`, so filling a list after assigning it works.
SINGA: layers in containers are not registered (its ResNet example loses them).
"""
from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import autograd
from .autograd import nn as _nn
from .initializer import _gaussian, _uniform
from .tensor import Tensor

__all__ = [
    "Layer", "Linear", "Gemm", "Embedding", "Conv2d", "SeparableConv2d", "BatchNorm2d",
    "Pooling2d", "MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d", "RNN_Base", "RNN", "LSTM",
    "CudnnRNN", "ReLU", "Sigmoid", "Add", "Flatten", "SoftMaxCrossEntropy", "SoftMax",
    "MeanSquareError", "CrossEntropy", "BinaryCrossEntropy", "Dropout", "Cat", "Reshape",
]

# Layer bookkeeping kept in __dict__ (never scanned for sublayers).
_INTERNAL = frozenset(("name", "_initialized", "_parent", "_layers", "_tensors", "_param_attrs",
                       "_state_attrs", "_contained", "_key"))


# --------------------------------------------------------------------------- helpers
def _raw(t: Tensor):
    """The array of `t` without logging a read (only metadata is inspected)."""
    return t.__dict__["_data"]


def _is_tracer(a) -> bool:
    return isinstance(a, jax.core.Tracer)


def _move(t: Tensor, dev) -> None:
    """Move `t` to `dev` in place (traced values stay where the trace puts them)."""
    if _is_tracer(_raw(t)):
        return
    t.to_device(dev)


def _float_dtype(x: Tensor):
    """x's dtype if it is floating, else float32 (parameters are always floating)."""
    dt = _raw(x).dtype
    return dt if jnp.issubdtype(dt, jnp.floating) else np.dtype(np.float32)


def _new(shape: Sequence[int], like: Tensor, value: float = 0.0, param: bool = True,
         dtype: Any = None) -> Tensor:
    """A new parameter (or state, with `param=False`) on `like`'s device filled with `value`."""
    dt = _float_dtype(like) if dtype is None else dtype
    arr = jnp.full(tuple(int(s) for s in shape), value, dt)
    return Tensor(device=like.device, data=arr, requires_grad=param, stores_grad=param)


def _gauss(t: Tensor, std: float) -> Tensor:
    _gaussian(t, 0.0, std)
    return t


def _pair(owner: str, what: str, v: Any) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v), int(v)
    if isinstance(v, tuple) and len(v) == 2:
        return int(v[0]), int(v[1])
    raise TypeError(f"{owner}: {what} must be an int or a tuple (h, w), got {v!r}")


def _padding(owner: str, padding: Any) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """SINGA's padding argument -> (symmetric (ph, pw), odd (top, bottom, left, right))."""
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        return (int(padding), int(padding)), (0, 0, 0, 0)
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        return (int(padding[0]), int(padding[1])), (0, 0, 0, 0)
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        top, bottom, left, right = (int(p) for p in padding)
        ph, pw = min(top, bottom), min(left, right)
        return (ph, pw), (top - ph, bottom - ph, left - pw, right - pw)
    raise TypeError(f"{owner}: padding must be an int, (h, w) or (top, bottom, left, right), got {padding!r}")


_PAD_MODES = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _pad_mode(owner: str, pad_mode: str) -> str:
    if pad_mode not in _PAD_MODES:
        raise ValueError(f"{owner}: pad_mode must be one of {', '.join(_PAD_MODES)}, got {pad_mode!r}")
    return pad_mode


def _same_padding(pad_mode: str, spatial: Sequence[int], kernel: Sequence[int],
                  stride: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """SAME_UPPER/SAME_LOWER padding: out = ceil(in / stride); the odd pixel goes at the
    end (UPPER) or the start (LOWER)."""
    sym, odd = [], []
    for n, k, s in zip(spatial, kernel, stride):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        half = total // 2
        sym.append(half)
        odd += [0, total - 2 * half] if pad_mode == "SAME_UPPER" else [total - 2 * half, 0]
    return (sym[0], sym[1]), tuple(odd)


# --------------------------------------------------------------------------- Layer
def _lazy_forward(fn):
    """Wrap a `forward` so that the first call runs `initialize` on the same inputs."""
    @functools.wraps(fn)
    def forward(self, *args, **kwargs):
        if not self.__dict__.get("_initialized", False):
            self._sync_containers()
            if args or kwargs:
                self.initialize(*args, **kwargs)
                self.__dict__["_initialized"] = True
                self._sync_containers()   # containers filled by initialize
        return fn(self, *args, **kwargs)
    forward._singax_lazy = True
    return forward


def _marking_initialize(fn):
    """Wrap an `initialize`: no inputs -> no-op (as SINGA); otherwise run it eagerly and
    mark the layer initialised."""
    @functools.wraps(fn)
    def initialize(self, *args, **kwargs):
        if not args and not kwargs:
            return None
        # parameters are created from concrete values even inside a traced step
        with jax.ensure_compile_time_eval():
            out = fn(self, *args, **kwargs)
        self.__dict__["_initialized"] = True
        return out
    initialize._singax_lazy = True
    return initialize


class Layer:
    """Base class of SINGA layers and models.

    Subclasses create their parameters in `initialize(*inputs)` (called once, before the
    first `forward`, with the same inputs) and compute in `forward(*inputs)`. Assigning a
    Layer, a Tensor, or a list/tuple/dict of Layers to an attribute registers it and
    names it by its attribute path (see the module docstring).
    """

    sep = "."

    def __new__(cls, *args, **kwargs):
        # bookkeeping exists even when a subclass forgets super().__init__()
        self = super().__new__(cls)
        self.__dict__.update(name=None, _initialized=False, _parent=None, _layers={}, _tensors={},
                             _param_attrs=[], _state_attrs=[], _contained={})
        return self

    def __init__(self):
        pass

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for attr, wrap in (("forward", _lazy_forward), ("initialize", _marking_initialize)):
            fn = cls.__dict__.get(attr)
            if callable(fn) and not getattr(fn, "_singax_lazy", False):
                setattr(cls, attr, wrap(fn))

    # --- SINGA interface -------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def initialize(self, *inputs) -> None:
        """Create parameters from the first inputs (default: nothing to create)."""

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def get_params(self) -> dict:
        """Parameters by name: this layer's own (Tensors with `stores_grad` assigned to it,
        or built in), then every sublayer's.

        SINGA: sublayers that were never initialised are skipped and Tensors merely
        assigned as attributes are not collected; singax collects parameter Tensors.
        """
        self._sync_containers()
        params: dict = {}
        d = self.__dict__
        for attr in d["_param_attrs"]:
            _collect(params, d.get(attr), self)
        for t in d["_contained"].values():
            if isinstance(t, Tensor) and t.stores_grad:
                _collect(params, t, self)
        for sub in d["_layers"].values():
            for t in sub.get_params().values():
                _collect(params, t, self)
        return params

    def get_states(self) -> dict:
        """Parameters plus buffers (BatchNorm running statistics) by name."""
        self._sync_containers()
        d = self.__dict__
        states: dict = {}
        for attr in d["_param_attrs"]:
            _collect(states, d.get(attr), self)
        for attr in d["_state_attrs"]:
            _collect(states, d.get(attr), self)
        for t in d["_contained"].values():
            if isinstance(t, Tensor) and t.stores_grad:
                _collect(states, t, self)
        for sub in d["_layers"].values():
            for t in sub.get_states().values():
                _collect(states, t, self)
        if type(self).get_params is not Layer.get_params:   # keep what an override adds
            for t in self.get_params().values():
                _collect(states, t, self)
        return states

    def set_params(self, params: Mapping) -> None:
        """Copy values (Tensors or arrays) into the parameters named by the keys.

        Every name and shape is checked first; on a mismatch nothing changes and the
        ValueError lists each problem. A subset of the names may be given.

        SINGA: shapes need only the same element count, and a missing name raises
        KeyError after earlier parameters were already overwritten.
        """
        self._assign("set_params", params, self.get_params())

    def set_states(self, states: Mapping) -> None:
        """Copy values into the parameters and buffers named by the keys (see set_params)."""
        self._assign("set_states", states, self.get_states())

    def register_layers(self, *layers) -> None:
        """Register sublayers not held in attributes: named `<ClassName>_<i>` (i = position),
        or by the keys of a single dict argument.

        SINGA: a second call reuses names `<ClassName>_0...` and silently replaces the
        earlier layers; singax moves on to the next free index instead.
        """
        if len(layers) == 1 and isinstance(layers[0], Mapping):
            items = [(str(k), v) for k, v in layers[0].items()]
        else:
            items, used, layers_ = [], set(), self.__dict__["_layers"]
            for i, v in enumerate(layers):
                k = i
                while True:
                    key = f"{type(v).__name__}_{k}"
                    if key not in used and layers_.get(key, v) is v:
                        break
                    k += 1
                used.add(key)
                items.append((key, v))
        for key, v in items:
            if not isinstance(v, Layer):
                raise TypeError(f"{self._label()}.register_layers: expected Layers, got {type(v).__name__}")
            self._adopt(key, v)

    def device_check(self, *tensors: Tensor) -> None:
        """Move every tensor (in place) to the device of the first."""
        if not tensors:
            return
        dev = tensors[0].device
        for t in tensors[1:]:
            if t is not None and t.device is not dev:
                _move(t, dev)

    def dtype_check(self, *tensors: Tensor) -> None:
        """Convert every tensor (in place) to the dtype of the first.

        SINGA: converts to non-float dtypes too; singax leaves tensors alone when the
        first one is an integer tensor (indices), so parameters stay floating.
        """
        if not tensors:
            return
        dt = _raw(tensors[0]).dtype
        if not jnp.issubdtype(dt, jnp.floating):
            return
        for t in tensors[1:]:
            if t is not None and _raw(t).dtype != dt:
                t.data = t.data.astype(dt)

    def train(self, mode: bool = True) -> None:
        """Set the global `autograd.training` (singax extra; SINGA layers have no train())."""
        autograd.training = bool(mode)

    def eval(self) -> None:
        """`train(False)`."""
        self.train(False)

    # --- naming ------------------------------------------------------------
    def __setattr__(self, attr: str, value: Any) -> None:
        d = self.__dict__
        old = d.get(attr)
        if old is not None and old is not value:
            self._forget(attr, old)
        d[attr] = value
        if isinstance(value, Layer):
            self._adopt(attr, value)
        elif isinstance(value, Tensor):
            self._own(attr, value)
        elif attr == "name":
            self._reprefix()

    def __delattr__(self, attr: str) -> None:
        d = self.__dict__
        if attr in d:
            self._forget(attr, d[attr])
            del d[attr]
        elif attr in d["_layers"]:
            del d["_layers"][attr]
        else:
            raise AttributeError(attr)

    def __getattr__(self, attr: str):
        # layers added by register_layers are reachable as attributes, as in SINGA
        layers = self.__dict__.get("_layers")
        if layers is not None and attr in layers:
            return layers[attr]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    def _prefix(self) -> str:
        d = self.__dict__
        return d["name"] + self.sep if d["name"] and d["_parent"] is not None else ""

    def _label(self) -> str:
        name = self.__dict__.get("name")
        return f"{type(self).__name__} {name!r}" if name else type(self).__name__

    def _adopt(self, key: str, sub: "Layer") -> None:
        up = self
        while up is not None:
            if up is sub:
                return   # a back-reference to an enclosing layer, not a sublayer
            up = up.__dict__["_parent"]
        self.__dict__["_layers"][key] = sub
        d = sub.__dict__
        owner, old_key = d["_parent"], d.get("_key")
        if owner is not None and owner.__dict__["_layers"].get(old_key) is sub \
                and (owner is not self or old_key != key):
            return   # an alias of a layer reachable elsewhere: it keeps its first name
        d["_parent"], d["_key"] = self, key
        sub.name = self._prefix() + key

    def _own(self, key: str, t: Tensor, param_attr: bool = True) -> None:
        d = self.__dict__
        if t.is_dummy():
            t.name = self._prefix() + key
            d["_tensors"][key] = (t, t.name)
        if param_attr and t.stores_grad and key not in d["_param_attrs"] and key not in d["_state_attrs"]:
            d["_param_attrs"].append(key)

    def _forget(self, attr: str, old: Any) -> None:
        d = self.__dict__
        if isinstance(old, Layer) and d["_layers"].get(attr) is old:
            del d["_layers"][attr]
        elif isinstance(old, Tensor):
            d["_tensors"].pop(attr, None)

    def _reprefix(self) -> None:
        """Rename sublayers, and the tensors this layer named, after a name change."""
        d = self.__dict__
        prefix = self._prefix()
        for key, sub in list(d["_layers"].items()):
            if sub.__dict__["_parent"] is self and sub.__dict__.get("_key") == key:
                sub.name = prefix + key
        for key, (t, given) in list(d["_tensors"].items()):
            if t.name == given:   # not renamed by the user since
                t.name = prefix + key
                d["_tensors"][key] = (t, t.name)

    def _sync_containers(self) -> None:
        """Register Layers and name Tensors held in list/tuple/dict attributes."""
        d = self.__dict__
        found: dict = {}
        for attr, v in list(d.items()):
            if attr not in _INTERNAL and isinstance(v, (list, tuple, dict)):
                _walk(v, attr, found, self.sep, 0)
        contained, layers = d["_contained"], d["_layers"]
        if not found and not contained:
            return
        for key in [k for k in contained if k not in found or found[k] is not contained[k]]:
            if layers.get(key) is contained[key]:
                del layers[key]
            d["_tensors"].pop(key, None)
            del contained[key]
        direct = {id(v) for k, v in layers.items() if k not in contained}
        for key, v in found.items():
            if key in contained or id(v) in direct:
                continue   # known, or already an attribute / registered by register_layers
            contained[key] = v
            if isinstance(v, Layer):
                self._adopt(key, v)
            else:
                self._own(key, v, param_attr=False)

    # --- set_params / set_states ------------------------------------------
    def _assign(self, method: str, values: Mapping, targets: dict) -> None:
        if not isinstance(values, Mapping):
            raise TypeError(f"{self._label()}.{method}: expected a dict name -> Tensor or array, "
                            f"got {type(values).__name__}")
        problems, arrays = [], {}
        for key, v in values.items():
            t = targets.get(key)
            if t is None:
                problems.append(f"unknown name {key!r}")
                continue
            arr = v.data if isinstance(v, Tensor) else v
            shape = tuple(getattr(arr, "shape", np.shape(arr)))
            if shape != t.shape:
                problems.append(f"{key!r} expects shape {t.shape}, got {shape}")
            arrays[key] = arr
        if problems:
            names = list(targets)
            known = ", ".join(repr(k) for k in names[:12]) or "none yet (run a forward pass first)"
            if len(names) > 12:
                known += f", ... ({len(names)} in all)"
            raise ValueError(f"{self._label()}.{method}: " + "; ".join(problems)
                             + f". Known names: {known}. Nothing was changed.")
        for key, arr in arrays.items():
            t = targets[key]
            value = jnp.asarray(arr, dtype=_raw(t).dtype)
            t.data = value if _is_tracer(value) else jax.device_put(value, t.device.jax_device)


def _collect(out: dict, t: Any, owner: Layer) -> None:
    if not isinstance(t, Tensor):
        return
    prev = out.get(t.name)
    if prev is not None and prev is not t:
        warnings.warn(f"{owner._label()}: two different tensors are both named {t.name!r}; "
                      "the second is not listed (rename one of them)", stacklevel=3)
        return
    out[t.name] = t


def _walk(v: Any, key: str, found: dict, sep: str, depth: int) -> None:
    items = enumerate(v) if isinstance(v, (list, tuple)) else v.items()
    for k, e in items:
        if isinstance(e, (Layer, Tensor)):
            found[f"{key}{sep}{k}"] = e
        elif depth < 3 and isinstance(e, (list, tuple, dict)):
            _walk(e, f"{key}{sep}{k}", found, sep, depth + 1)


Layer.forward = _lazy_forward(Layer.forward)
Layer.initialize = _marking_initialize(Layer.initialize)


# --------------------------------------------------------------------------- layers with parameters
class Linear(Layer):
    """y = x @ W + b for 2-D x (N, in); W is (in, out), as in SINGA.

    `Linear(out_features, bias=True)`; the legacy forms `Linear(in, out)` and
    `Linear(in, out, bias)` are accepted (`in` is ignored: it comes from the input).
    W ~ N(0, sqrt(2 / (in + out))), b = 0.
    """

    def __init__(self, out_features: int, *args, bias: bool = True, **kwargs):
        super().__init__()
        self.in_features = None
        self.out_features = out_features
        if args:   # legacy Linear(in, out[, bias])
            self.in_features, self.out_features = out_features, args[0]
        self.bias = args[1] if len(args) > 1 else bias

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (2,), "(N, in_features)", "; flatten it first")
        fan_in, fan_out = x.shape[1], self.out_features
        self.W = _gauss(_new((fan_in, fan_out), x), math.sqrt(2.0 / (fan_in + fan_out)))
        if self.bias:
            self.b = _new((fan_out,), x)

    def forward(self, x: Tensor) -> Tensor:
        W = self.W
        shape = x.shape
        if len(shape) != 2 or shape[1] != W.shape[0]:
            raise ValueError(f"{self._label()}: expected input (N, {W.shape[0]}), got shape {shape}"
                             + ("; flatten it first" if len(shape) > 2 else ""))
        b = self.b if self.bias else None
        self.device_check(x, W, b)
        self.dtype_check(x, W, b)
        y = autograd.matmul(x, W)
        return autograd.add_bias(y, b, axis=0) if b is not None else y


class Gemm(Layer):
    """y = alpha * x' @ W' + beta * b (ONNX Gemm), x' = x.T if transA, W' = W.T if transB.

    W is (nb_kernels, in) when transB else (in, nb_kernels), N(0, sqrt(2 / (in + nb_kernels)));
    b is `bias_shape` or (1, nb_kernels), zeros.
    """

    def __init__(self, nb_kernels: int, alpha: float = 1.0, beta: float = 1.0, transA: bool = False,
                 transB: bool = True, bias: bool = True, bias_shape: Sequence[int] | None = None):
        super().__init__()
        self.nb_kernels, self.alpha, self.beta = nb_kernels, alpha, beta
        self.transA, self.transB = int(bool(transA)), int(bool(transB))
        self.bias, self.bias_shape = bias, bias_shape

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (2,), "a 2-D input")
        fan_in = x.shape[0] if self.transA else x.shape[-1]
        shape = (self.nb_kernels, fan_in) if self.transB else (fan_in, self.nb_kernels)
        self.W = _gauss(_new(shape, x), math.sqrt(2.0 / (fan_in + self.nb_kernels)))
        if self.bias:
            self.b = _new(self.bias_shape if self.bias_shape is not None else (1, self.nb_kernels), x)

    def forward(self, x: Tensor) -> Tensor:
        W = self.W
        k = W.shape[1] if self.transB else W.shape[0]
        got = x.shape[0] if self.transA else x.shape[-1]
        if x.ndim() != 2 or got != k:
            raise ValueError(f"{self._label()}: expected a 2-D input with {k} features along axis "
                             f"{0 if self.transA else 1}, got shape {x.shape}")
        b = self.b if self.bias else None
        self.device_check(x, W, b)
        self.dtype_check(x, W, b)
        return autograd.gemm(x, W, b, self.alpha, self.beta, self.transA, self.transB)


class Embedding(Layer):
    """Row lookup: x (N, T) of indices -> (N, T, output_dim) from W (input_dim, output_dim).

    W ~ U(-1, 1) with `initializer="uniform"`, else N(0, 1).
    """

    def __init__(self, input_dim: int, output_dim: int, initializer: str = "gaussian"):
        super().__init__()
        self.input_dim, self.output_dim, self.initializer = input_dim, output_dim, initializer

    def initialize(self, x: Tensor) -> None:
        W = _new((self.input_dim, self.output_dim), x)
        if self.initializer == "uniform":
            _uniform(W, -1.0, 1.0)
        else:
            _gaussian(W, 0.0, 1.0)
        self.W = W

    def forward(self, x: Tensor) -> Tensor:
        self.device_check(x, self.W)
        return autograd.embedding(x, self.W)

    def from_pretrained(self, W: Any, freeze: bool = True) -> None:
        """Use the given (input_dim, output_dim) weights; `freeze` stops their training.

        SINGA: needs a forward pass first, and freeze only clears `requires_grad`, so an
        optimizer still updates W; singax works before the first call and also clears
        `stores_grad`, so `autograd.backward` yields no gradient for W.
        """
        arr = W.data if isinstance(W, Tensor) else jnp.asarray(W)
        want = (self.input_dim, self.output_dim)
        if tuple(arr.shape) != want:
            raise ValueError(f"{self._label()}.from_pretrained: expected W of shape {want}, got {tuple(arr.shape)}")
        if "W" not in self.__dict__:
            dev = W.device if isinstance(W, Tensor) else None
            self.W = Tensor(device=dev, data=jnp.asarray(arr, jnp.float32), requires_grad=True, stores_grad=True)
            self.__dict__["_initialized"] = True
        else:
            self.set_params({self.W.name: arr})
        self.W.requires_grad = not freeze
        self.W.stores_grad = not freeze


_CONV_KWARGS = ("cudnn_prefer", "workspace_MB_limit")


class Conv2d(Layer):
    """2-D convolution of NCHW input; W (nb_kernels, C / group, kh, kw), b (nb_kernels,).

    `Conv2d(nb_kernels, kernel_size, stride=1, padding=0, dilation=1, group=1, bias=True,
    pad_mode="NOTSET", activation="NOTSET")`; with 3 or more positionals the legacy form
    `Conv2d(in_channels, out_channels, kernel_size[, stride[, padding]])` (in_channels
    ignored). So `Conv2d(1, 20, 5)` is 20 filters 5x5 but `Conv2d(2, 2)` is 2 filters 2x2.

    Args:
      kernel_size, stride: int or tuple (h, w).
      padding: int, (h, w), or (top, bottom, left, right); unequal sides are handled by
        zero "odd padding" before the symmetric part.
      pad_mode: "SAME_UPPER"/"SAME_LOWER" computes the padding from the input size
        (output = ceil(in / stride)); "NOTSET"/"VALID" use `padding`.
      activation: "RELU" appends a ReLU.
      cudnn_prefer, workspace_MB_limit: accepted and ignored (XLA picks the algorithm).

    W ~ N(0, sqrt(2 / (C / group * kh * kw + nb_kernels))), b = 0.

    SINGA: dilation must be 1 and group 1 on CPU; singax supports both everywhere.
    """

    def __init__(self, nb_kernels: int, kernel_size: Any, *args, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, group: int = 1, bias: bool = True, pad_mode: str = "NOTSET",
                 activation: str = "NOTSET", **kwargs):
        super().__init__()
        if args:   # legacy Conv2d(in, out, k[, stride[, padding]])
            nb_kernels, kernel_size = kernel_size, args[0]
            stride = args[1] if len(args) > 1 else stride
            padding = args[2] if len(args) > 2 else padding
            if len(args) > 3:
                raise TypeError(f"Conv2d: too many positional arguments ({len(args) + 2})")
        for k in kwargs:
            if k not in _CONV_KWARGS:
                raise TypeError(f"Conv2d: unexpected keyword argument {k!r}")
        if activation not in ("NOTSET", "RELU"):
            raise ValueError(f"Conv2d: activation must be 'NOTSET' or 'RELU', got {activation!r}")
        self.nb_kernels = int(nb_kernels)
        self.kernel_size = _pair("Conv2d", "kernel_size", kernel_size)
        self.stride = _pair("Conv2d", "stride", stride)
        self.dilation = _pair("Conv2d", "dilation", dilation)
        self.padding, self.odd_padding = _padding("Conv2d", padding)
        self.group, self.bias = int(group), bias
        self.pad_mode, self.activation = _pad_mode("Conv2d", pad_mode), activation
        self.inner_params = {"cudnn_prefer": "fastest", "workspace_MB_limit": 1024, **kwargs}

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (4,), "(N, C, H, W)")
        C = x.shape[1]
        if C % self.group or self.nb_kernels % self.group:
            raise ValueError(f"{self._label()}: in_channels {C} and nb_kernels {self.nb_kernels} "
                             f"must be divisible by group {self.group}")
        self.in_channels = C
        kh, kw = self.kernel_size
        w_shape = (self.nb_kernels, C // self.group, kh, kw)
        self.W = _gauss(_new(w_shape, x), math.sqrt(2.0 / (w_shape[1] * kh * kw + self.nb_kernels)))
        self.b = _new((self.nb_kernels,), x) if self.bias else None
        self._build(x.shape)

    def _build(self, shape: tuple) -> None:
        """(Re)build the handle for an input shape; SAME padding depends on it."""
        if self.pad_mode in ("SAME_UPPER", "SAME_LOWER"):
            self.padding, self.odd_padding = _same_padding(
                self.pad_mode, shape[2:], self.kernel_size, self.stride)
        self.handle = _nn.ConvHandle(shape, self.kernel_size, self.stride, self.padding, self.in_channels,
                                     self.nb_kernels, self.bias, self.group, self.dilation)
        self._shape = shape

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        if shape != self._shape:
            if len(shape) != 4 or shape[1] != self.in_channels:
                raise ValueError(f"{self._label()}: expected input (N, {self.in_channels}, H, W), "
                                 f"got shape {shape}")
            self._build(shape)
        W, b = self.W, self.b
        self.device_check(x, W, b)
        self.dtype_check(x, W, b)
        y = autograd.conv2d(self.handle, x, W, b, self.odd_padding)
        return autograd.relu(y) if self.activation == "RELU" else y


class SeparableConv2d(Layer):
    """Depthwise convolution (one filter per channel) followed by a 1x1 convolution.

    `SeparableConv2d(nb_kernels, kernel_size, stride=1, padding=0, bias=False)`, or the
    legacy `(in_channels, out_channels, kernel_size[, stride[, padding]])`. The sublayers
    `depthwise_conv` and `point_conv` are built on the first call.
    """

    def __init__(self, nb_kernels: int, kernel_size: Any, *args, stride: Any = 1, padding: Any = 0,
                 bias: bool = False):
        super().__init__()
        if args:
            nb_kernels, kernel_size = kernel_size, args[0]
            stride = args[1] if len(args) > 1 else stride
            padding = args[2] if len(args) > 2 else padding
        self.nb_kernels, self.kernel_size = nb_kernels, kernel_size
        self.stride, self.padding, self.bias = stride, padding, bias

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (4,), "(N, C, H, W)")
        C = x.shape[1]
        self.in_channels = C
        self.depthwise_conv = Conv2d(C, self.kernel_size, stride=self.stride, padding=self.padding,
                                     group=C, bias=self.bias)
        self.point_conv = Conv2d(self.nb_kernels, 1, bias=self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.point_conv(self.depthwise_conv(x))


class BatchNorm2d(Layer):
    """Batch normalisation over all axes but 1 of (N, C, H, W) or (N, C) input.

    `BatchNorm2d(momentum=0.9)`; `BatchNorm2d(C)` is accepted (C comes from the input).
    Params `scale` (ones) and `bias` (zeros); states `running_mean` (zeros) and
    `running_var` (ones). While `autograd.training`, normalises with the batch statistics
    and updates `running = (1 - momentum) * running + momentum * batch` (unbiased batch
    variance); in eval mode normalises with the running statistics. eps = 1e-5.

    SINGA: a second positional argument (the SINGA-2 momentum) is ignored; singax uses it
    unless `momentum=` is given.
    """

    def __init__(self, *args, momentum: float | None = None):
        super().__init__()
        if len(args) > 2:
            raise TypeError(f"BatchNorm2d: expected at most 2 positional arguments (channels, momentum), "
                            f"got {len(args)}")
        self.channels = args[0] if args else None
        if momentum is None:
            momentum = args[1] if len(args) > 1 else 0.9
        self.momentum = float(momentum)

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (2, 4), "(N, C, H, W) or (N, C)")
        C = x.shape[1]
        self.channels = C
        self.scale = _new((C,), x, 1.0)
        self.bias = _new((C,), x, 0.0)
        self._state_attrs.extend(a for a in ("running_mean", "running_var") if a not in self._state_attrs)
        self.running_mean = _new((C,), x, 0.0, param=False)
        self.running_var = _new((C,), x, 1.0, param=False)
        self.handle = _nn.BatchNormHandle(self.momentum, x.shape)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        if len(shape) not in (2, 4) or shape[1] != self.channels:
            raise ValueError(f"{self._label()}: expected input (N, {self.channels}, H, W) or "
                             f"(N, {self.channels}), got shape {shape}")
        if shape[0] != self.handle.batchsize or (len(shape) == 2) != self.handle.is_2d:
            self.handle = _nn.BatchNormHandle(self.momentum, shape)
        ts = (self.scale, self.bias, self.running_mean, self.running_var)
        self.device_check(x, *ts)
        self.dtype_check(x, *ts)
        return autograd.batchnorm_2d(self.handle, x, *ts)


# --------------------------------------------------------------------------- pooling
class Pooling2d(Layer):
    """Max or average 2-D pooling of NCHW input (the average excludes padding).

    `Pooling2d(kernel_size, stride=None, padding=0, is_max=True, pad_mode="NOTSET")`;
    stride None means stride = kernel_size. `padding` and `pad_mode` as in Conv2d, but
    pooling's odd padding repeats the border rows/columns (as SINGA).
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, is_max: bool = True,
                 pad_mode: str = "NOTSET"):
        super().__init__()
        owner = type(self).__name__
        self.kernel_size = _pair(owner, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _pair(owner, "stride", stride)
        self.padding, self.odd_padding = _padding(owner, padding)
        self.is_max, self.pad_mode = is_max, _pad_mode(owner, pad_mode)

    def initialize(self, x: Tensor) -> None:
        _need_rank(self, x, (4,), "(N, C, H, W)")
        self._build(x.shape)

    def _build(self, shape: tuple) -> None:
        if self.pad_mode in ("SAME_UPPER", "SAME_LOWER"):
            self.padding, self.odd_padding = _same_padding(
                self.pad_mode, shape[2:], self.kernel_size, self.stride)
        self.handle = _nn.PoolingHandle(shape, self.kernel_size, self.stride, self.padding, self.is_max)
        self._shape = shape

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        if shape != self._shape:
            if len(shape) != 4:
                raise ValueError(f"{self._label()}: expected a 4-D input (N, C, H, W), got shape {shape}")
            self._build(shape)
        return autograd.pooling_2d(self.handle, x, self.odd_padding)


class MaxPool2d(Pooling2d):
    """2-D max pooling: `MaxPool2d(kernel_size, stride=None, padding=0, pad_mode="NOTSET")`."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, pad_mode: str = "NOTSET"):
        super().__init__(kernel_size, stride, padding, True, pad_mode)


class AvgPool2d(Pooling2d):
    """2-D average pooling (padding excluded from the count)."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, pad_mode: str = "NOTSET"):
        super().__init__(kernel_size, stride, padding, False, pad_mode)


def _pool1d_args(kernel_size: int, stride: Any, padding: int) -> tuple:
    return (1, kernel_size), (1, kernel_size if stride is None else stride), (0, padding)


class MaxPool1d(Pooling2d):
    """Max pooling along W of (N, C, 1, W) input: Pooling2d((1, k), (1, s), (0, p))."""

    def __init__(self, kernel_size: int, stride: Any = None, padding: int = 0, pad_mode: str = "NOTSET"):
        super().__init__(*_pool1d_args(kernel_size, stride, padding), True, pad_mode)


class AvgPool1d(Pooling2d):
    """Average pooling along W of (N, C, 1, W) input."""

    def __init__(self, kernel_size: int, stride: Any = None, padding: int = 0, pad_mode: str = "NOTSET"):
        super().__init__(*_pool1d_args(kernel_size, stride, padding), False, pad_mode)


# --------------------------------------------------------------------------- recurrent
class RNN_Base(Layer):
    """Base of the step-by-step recurrent layers RNN and LSTM."""

    def step_forward(self, x=None, h=None, c=None, Wx=None, Wh=None, Bx=None, Bh=None, b=None):
        raise NotImplementedError(f"{type(self).__name__} must define step_forward")

    def _check_steps(self, xs: Any, states: Sequence[Tensor]) -> list:
        """xs must be a non-empty list of (N, input_size) tensors; states (N, hidden_size)."""
        label = self._label()
        if isinstance(xs, Tensor) or not isinstance(xs, (list, tuple)) or not xs:
            got = f"a Tensor of shape {xs.shape}" if isinstance(xs, Tensor) else repr(type(xs).__name__)
            raise ValueError(f"{label}: expected a non-empty list of (N, {self.input_size}) tensors, one per "
                             f"time step, got {got}; split the sequence, or use CudnnRNN for (T, N, F) input")
        n = xs[0].shape[0] if isinstance(xs[0], Tensor) and xs[0].ndim() >= 1 else None
        for t, x in enumerate(xs):
            if not isinstance(x, Tensor) or x.shape != (n, self.input_size):
                got = x.shape if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"{label}: expected step {t} of shape ({n}, {self.input_size}), got {got}")
        for what, h in zip(("h0", "c0"), states):
            if not isinstance(h, Tensor) or h.shape != (n, self.hidden_size):
                got = h.shape if isinstance(h, Tensor) else type(h).__name__
                raise ValueError(f"{label}: expected {what} of shape ({n}, {self.hidden_size}), got {got}")
        return list(xs)


def _warn_unused(owner: str, num_layers, bias, batch_first, dropout, bidirectional) -> None:
    unused = [f"{k}={v!r}" for k, v, default in (("num_layers", num_layers, 1), ("bias", bias, True),
                                                 ("batch_first", batch_first, False), ("dropout", dropout, 0),
                                                 ("bidirectional", bidirectional, False)) if v != default]
    if unused:
        warnings.warn(f"{owner}: {', '.join(unused)} ignored: {owner} is a single-layer, unidirectional "
                      f"step-by-step cell as in SINGA; use CudnnRNN for the others", stacklevel=3)


class RNN(RNN_Base):
    """Vanilla RNN over a list of time steps: h_t = act(h_{t-1} @ Wh + x_t @ Wx + b).

    `RNN(input_size, hidden_size, num_layers=1, nonlinearity="tanh", ...)`;
    `forward(xs, h0)` with xs a list of (N, input_size) tensors and h0 (N, hidden_size)
    returns `(list_of_h, h_last)`. Wx (in, H) and Wh (H, H) ~ N(0, 1), b (H,) zeros.
    Only one unidirectional layer, as in SINGA (other arguments warn and are ignored).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0, bidirectional: bool = False):
        super().__init__()
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        _warn_unused("RNN", num_layers, bias, batch_first, dropout, bidirectional)
        self.input_size, self.hidden_size, self.nonlinearity = input_size, hidden_size, nonlinearity

    def initialize(self, xs: Sequence[Tensor], h0: Tensor) -> None:
        x = self._check_steps(xs, (h0,))[0]
        self.Wx = _gauss(_new((self.input_size, self.hidden_size), x), 1.0)
        self.Wh = _gauss(_new((self.hidden_size, self.hidden_size), x), 1.0)
        self.b = _new((self.hidden_size,), x)

    def forward(self, xs: Sequence[Tensor], h0: Tensor):
        xs = self._check_steps(xs, (h0,))
        self.device_check(xs[0], self.Wx, self.Wh, self.b)
        h, out = h0, []
        for x in xs:
            h = self.step_forward(x, h, self.Wx, self.Wh, self.b)
            out.append(h)
        return out, h

    def step_forward(self, x, h, Wx, Wh, b):
        y = autograd.add(autograd.matmul(h, Wh), autograd.matmul(x, Wx))
        y = autograd.add_bias(y, b, axis=0)
        return autograd.tanh(y) if self.nonlinearity == "tanh" else autograd.relu(y)


_GATES = ("i", "f", "o", "g")


class LSTM(RNN_Base):
    """LSTM over a list of time steps.

    `LSTM(input_size, hidden_size, nonlinearity="tanh", num_layers=1, ...)` (nonlinearity
    is the 3rd positional, unlike RNN; it is unused as in SINGA). `forward(xs, (h0, c0))`
    returns `(list_of_h, h_T, c_T)` with, per step,
    i, f, o = sigmoid(x @ Wx_* + Bx_* + h @ Wh_* + Bh_*), g = tanh(...),
    c' = f * c + i * g, h' = o * tanh(c'). Weights ~ N(0, 0.01), biases zeros.
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0, bidirectional: bool = False):
        super().__init__()
        _warn_unused("LSTM", num_layers, bias, batch_first, dropout, bidirectional)
        self.input_size, self.hidden_size, self.nonlinearity = input_size, hidden_size, nonlinearity

    def initialize(self, xs: Sequence[Tensor], h0_c0: Sequence[Tensor]) -> None:
        x = self._check_steps(xs, _pair_states(self, h0_c0))[0]
        I, H = self.input_size, self.hidden_size
        for g in _GATES:
            setattr(self, f"Wx_{g}", _gauss(_new((I, H), x), 0.01))
        for g in _GATES:
            setattr(self, f"Wh_{g}", _gauss(_new((H, H), x), 0.01))
        for g in _GATES:
            setattr(self, f"Bx_{g}", _new((H,), x))
        for g in _GATES:
            setattr(self, f"Bh_{g}", _new((H,), x))

    def forward(self, xs: Sequence[Tensor], h0_c0: Sequence[Tensor]):
        h, c = _pair_states(self, h0_c0)
        xs = self._check_steps(xs, (h, c))
        d = self.__dict__
        self.device_check(xs[0], *(d[f"{kind}_{g}"] for kind in ("Wx", "Wh", "Bx", "Bh") for g in _GATES))
        out = []
        for x in xs:
            h, c = self.step_forward(x, h, c)
            out.append(h)
        return out, h, c

    def _gate(self, g: str, x: Tensor, h: Tensor) -> Tensor:
        d = self.__dict__
        a = autograd.add_bias(autograd.matmul(x, d[f"Wx_{g}"]), d[f"Bx_{g}"], axis=0)
        b = autograd.add_bias(autograd.matmul(h, d[f"Wh_{g}"]), d[f"Bh_{g}"], axis=0)
        s = autograd.add(a, b)
        return autograd.tanh(s) if g == "g" else autograd.sigmoid(s)

    def step_forward(self, x, h, c):
        i, f, o, g = (self._gate(k, x, h) for k in _GATES)
        c = autograd.add(autograd.mul(f, c), autograd.mul(i, g))
        return autograd.mul(o, autograd.tanh(c)), c


def _pair_states(layer: Layer, h0_c0: Any) -> tuple:
    if isinstance(h0_c0, Tensor) or not isinstance(h0_c0, (tuple, list)) or len(h0_c0) != 2:
        raise ValueError(f"{layer._label()}: expected the initial states as a pair (h0, c0), "
                         f"got {type(h0_c0).__name__}")
    return tuple(h0_c0)


class CudnnRNN(Layer):
    """Multi-layer (bidirectional) RNN, LSTM or GRU over a whole sequence in one op
    (`lax.scan`), with cuDNN's flat weight vector `W`.

    `CudnnRNN(hidden_size, activation="tanh", num_layers=1, bias=True, batch_first=True,
    dropout=0, bidirectional=False, rnn_mode="lstm", use_mask=False, return_sequences=True)`.
    `forward(x, hx=None, cx=None, seq_lengths=None)`: x (B, T, F) if batch_first else
    (T, B, F); hx, cx (num_layers * D, B, H) default to zeros. Returns y (B, T, H * D) /
    (T, B, H * D), or the last time step (B, H * D) without return_sequences.
    `rnn_mode` is "lstm", "gru", "tanh" (or "vanilla") or "relu"; `activation` is unused.
    W ~ U(-1/sqrt(H), 1/sqrt(H)). The flat layout is described in `autograd.CudnnRNNHandle`.

    SINGA: CUDA only; singax runs everywhere and applies no dropout between layers.
    """

    def __init__(self, hidden_size: int, activation: str = "tanh", num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0, bidirectional: bool = False,
                 rnn_mode: str = "lstm", use_mask: bool = False, return_sequences: bool = True):
        super().__init__()
        if rnn_mode not in ("lstm", "gru", "tanh", "vanilla", "relu"):
            raise ValueError(f"CudnnRNN: rnn_mode must be 'lstm', 'gru', 'tanh', 'vanilla' or 'relu', "
                             f"got {rnn_mode!r}")
        self.hidden_size, self.activation, self.num_layers = hidden_size, activation, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.rnn_mode = bidirectional, rnn_mode
        self.use_mask, self.return_sequences = use_mask, return_sequences

    def _time_major(self, shape: tuple) -> tuple:
        return (shape[1], shape[0], shape[2]) if self.batch_first else shape

    def initialize(self, x: Tensor, hx: Tensor | None = None, cx: Tensor | None = None,
                   seq_lengths: Tensor | None = None) -> None:
        _need_rank(self, x, (3,), "(B, T, F)" if self.batch_first else "(T, B, F)")
        self.input_size = x.shape[2]
        self._build(x.shape)
        W = _new((self.handle.weights_size,), x)
        k = 1.0 / math.sqrt(self.hidden_size)
        _uniform(W, -k, k)
        self.W = W

    def _build(self, shape: tuple) -> None:
        self.handle = _nn.CudnnRNNHandle(self._time_major(shape), self.hidden_size, self.rnn_mode,
                                         self.num_layers, self.bias, self.dropout, self.bidirectional)
        self._shape = shape

    def forward(self, x: Tensor, hx: Tensor | None = None, cx: Tensor | None = None,
                seq_lengths: Tensor | None = None) -> Tensor:
        shape = x.shape
        if shape != self._shape:
            if len(shape) != 3 or shape[2] != self.input_size:
                layout = "(B, T, {})" if self.batch_first else "(T, B, {})"
                raise ValueError(f"{self._label()}: expected input {layout.format(self.input_size)}, "
                                 f"got shape {shape}")
            self._build(shape)
        if self.use_mask and seq_lengths is None:
            raise ValueError(f"{self._label()}: use_mask=True needs seq_lengths")
        self.device_check(x, self.W)
        self.dtype_check(x, self.W)
        if self.batch_first:
            x = autograd.transpose(x, (1, 0, 2))
        D = 2 if self.bidirectional else 1
        state = (self.num_layers * D, x.shape[1], self.hidden_size)
        zeros = None
        if hx is None or cx is None:
            zeros = Tensor(device=x.device, data=jnp.zeros(state, _raw(self.W).dtype), requires_grad=False)
        hx, cx = (zeros if hx is None else hx), (zeros if cx is None else cx)
        op = autograd._RNN(self.handle, self.return_sequences, self.use_mask, seq_lengths)
        y = op(x, hx, cx, self.W)[0]
        if self.return_sequences and self.batch_first:
            y = autograd.transpose(y, (1, 0, 2))
        return y


# --------------------------------------------------------------------------- layers without parameters
class ReLU(Layer):
    """max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        return autograd.relu(x)


class Sigmoid(Layer):
    """1 / (1 + exp(-x))."""

    def forward(self, x: Tensor) -> Tensor:
        return autograd.sigmoid(x)


class SoftMax(Layer):
    """Softmax over axis 1 (the whole trailing block, as SINGA's SoftMax)."""

    def forward(self, x: Tensor) -> Tensor:
        return autograd.softmax(x)


class Add(Layer):
    """`forward(a, b)` -> a + b (broadcast)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return autograd.add(a, b)


class Flatten(Layer):
    """(d0, ..., dn) -> (prod(d[:axis]), prod(d[axis:]))."""

    def __init__(self, axis: int = 1):
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return autograd.flatten(x, self.axis)


class Cat(Layer):
    """`forward(xs)` -> concatenation of the list `xs` along `axis`."""

    def __init__(self, axis: int = 0):
        super().__init__()
        self.axis = axis

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        return autograd.cat(xs, self.axis)


class Reshape(Layer):
    """`forward(x, shape)` -> x reshaped (0 copies a dim, -1 is inferred)."""

    def forward(self, x: Tensor, shape: Sequence[int]) -> Tensor:
        return autograd.reshape(x, shape)


class Dropout(Layer):
    """Inverted dropout with probability `ratio` while training; identity in eval mode.

    SINGA: passes the ratio as the op's seed, so the ratio is always 0.5, scales kept units
    by (1 - ratio) instead of 1 / (1 - ratio), and reseeds the device RNG every call (the
    same mask each step); singax honours `ratio` and draws a fresh mask per call.
    """

    def __init__(self, ratio: float = 0.5):
        super().__init__()
        if not 0.0 <= float(ratio) < 1.0:
            raise ValueError(f"Dropout: ratio must be in [0, 1), got {ratio!r}")
        self.ratio = float(ratio)

    def forward(self, x: Tensor) -> Tensor:
        return autograd.dropout(x, 0, self.ratio)


class SoftMaxCrossEntropy(Layer):
    """`forward(x, t)`: mean cross-entropy of softmax(x) against int labels or dense targets."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return autograd.softmax_cross_entropy(x, t)


class MeanSquareError(Layer):
    """`forward(x, t)`: sum((x - t)^2) / x.size."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return autograd.mse_loss(x, t)


class CrossEntropy(Layer):
    """`forward(x, t)`: -sum(t * log(x)) / N for probabilities x."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return autograd.cross_entropy(x, t)


class BinaryCrossEntropy(Layer):
    """`forward(x, t)`: SINGA's binary cross-entropy of probabilities x against t."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return autograd.binary_cross_entropy(x, t)


def _need_rank(layer: Layer, x: Any, ranks: tuple, what: str, hint: str = "") -> None:
    """Raise before any parameter exists when the first input has the wrong rank."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer._label()}: expected a Tensor input, got {type(x).__name__}")
    if len(x.shape) not in ranks:
        raise ValueError(f"{layer._label()}: expected input {what}, got shape {x.shape}{hint}")
