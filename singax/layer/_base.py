"""`Layer`: lazy `initialize`, attribute-path naming, get/set of params and states, and
the helpers every layer family uses (see `singax.layer`)."""
from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import autograd
from .._handle import is_tracer
from ..initializer import _gaussian
from ..tensor import Tensor
from ..tensor._engine import _float_of, _from_host, is_floating

# Layer bookkeeping kept in __dict__ (never scanned for sublayers).
_INTERNAL = frozenset(("name", "_initialized", "_parent", "_layers", "_tensors", "_param_attrs",
                       "_state_attrs", "_contained", "_key"))


# --------------------------------------------------------------------------- helpers
def _unlogged_data(t: Tensor):
    """The array of `t` without logging a read (only metadata is inspected)."""
    return t.__dict__["_data"]


def _move(t: Tensor, dev) -> None:
    """Move `t` to `dev` in place (traced values stay where the trace puts them)."""
    if is_tracer(_unlogged_data(t)):
        return
    t.to_device(dev)


def _float_dtype(x: Tensor):
    """x's dtype if it is floating, else float32 (parameters are always floating)."""
    return _float_of(_unlogged_data(x).dtype)


def _new(shape: Sequence[int], like: Tensor, value: float = 0.0, param: bool = True,
         dtype: Any = None) -> Tensor:
    """A new parameter (or state, with `param=False`) on `like`'s device filled with `value`."""
    dt = _float_dtype(like) if dtype is None else dtype
    arr = jnp.full(tuple(int(s) for s in shape), value, dt)
    return Tensor(device=like.device, data=arr, requires_grad=param, stores_grad=param)


def _gauss(t: Tensor, std: float) -> Tensor:
    _gaussian(t, 0.0, std)
    return t


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

    def _tensors_by_name(self, own_attrs: tuple, of_sublayer) -> dict:
        """By name: the tensors this layer holds in the attribute lists `own_attrs`, its
        contained parameter Tensors, then `of_sublayer(sub)` of every sublayer."""
        self._sync_containers()
        d = self.__dict__
        out: dict = {}
        for attrs in own_attrs:
            for attr in d[attrs]:
                _collect(out, d.get(attr), self)
        for t in d["_contained"].values():
            if isinstance(t, Tensor) and t.stores_grad:
                _collect(out, t, self)
        for sub in d["_layers"].values():
            for t in of_sublayer(sub).values():
                _collect(out, t, self)
        return out

    def get_params(self) -> dict:
        """Parameters by name: this layer's own (Tensors with `stores_grad` assigned to it,
        or built in), then every sublayer's.

        SINGA: sublayers that were never initialised are skipped and Tensors merely
        assigned as attributes are not collected; singax collects parameter Tensors.
        """
        return self._tensors_by_name(("_param_attrs",), lambda sub: sub.get_params())

    def get_states(self) -> dict:
        """Parameters plus buffers (BatchNorm running statistics) by name."""
        states = self._tensors_by_name(("_param_attrs", "_state_attrs"), lambda sub: sub.get_states())
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
        dt = _unlogged_data(tensors[0]).dtype
        if not is_floating(dt):
            return
        for t in tensors[1:]:
            if t is not None and _unlogged_data(t).dtype != dt:
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
        converted = {key: _owned_copy(arr, _unlogged_data(targets[key]).dtype, targets[key].device.jax_device,
                                      f"{self._label()}.{method} {key!r}")
                     for key, arr in arrays.items()}   # every value converts before any changes
        for key, arr in converted.items():
            targets[key].data = arr


def _owned_copy(value: Any, dtype: Any, jax_device: Any, where: str) -> Any:
    """A private copy of `value` (Tensor, jax array or array-like) as `dtype` on `jax_device`,
    so a compiled step may donate it; tracers (inside a compiled step) are converted."""
    if isinstance(value, Tensor):
        value = value.data
    if is_tracer(value):
        return value.astype(dtype)
    if isinstance(value, jax.Array):
        return jax.device_put(jnp.array(value, dtype=dtype, copy=True), jax_device)
    return _from_host(value, dtype, jax_device, where)


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


def _need_rank(layer: Layer, x: Any, ranks: tuple, what: str, hint: str = "") -> None:
    """Raise before any parameter exists when the first input has the wrong rank."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer._label()}: expected a Tensor input, got {type(x).__name__}")
    if len(x.shape) not in ranks:
        raise ValueError(f"{layer._label()}: expected input {what}, got shape {x.shape}{hint}")
