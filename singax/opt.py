"""SINGA's optimizers (`singa.opt`) built from optax GradientTransformations.

Every piece of optimizer state lives in a Tensor: the step counter, the current
value of each hyper-parameter (`lr_value`, `mom_value`, ...) and the per-parameter
slots (`moments`, `m`, `v`, ...). A compiled train step (`Model.compile`) therefore
reads them as traced values, so a learning-rate schedule changes the rate without
recompiling. Updating one parameter is one jitted function per optimizer
configuration: `(param, grad, slots, hyper-parameter values) -> (param, slots)`.

Slots are keyed by parameter identity and reported by name; when two live
parameters share a name (two standalone layers both own `W`), the second is
reported as `W#1`, the third as `W#2`, in the order they were first updated.
"""
from __future__ import annotations

import collections
import functools
import warnings
import weakref
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import device as _device
from . import tensor
from ._handle import concrete
from ._mixed import DynamicLossScale, all_finite, keep_if
from .tensor import Tensor

_LOW_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))

__all__ = ["DecayScheduler", "Constant", "ExponentialDecay", "Optimizer", "SGD", "RMSProp",
           "AdaGrad", "Adam", "Optax"]

TRACE_COUNTS: collections.Counter = collections.Counter()
"""Python traces of each built-in jitted update, keyed by configuration (tests read it)."""

_WARNED: set = set()   # deprecated methods that already warned


# --- schedulers ----------------------------------------------------------------

class DecayScheduler:
    """Base of hyper-parameter schedules: `sched(step)` gives a shape-(1,) Tensor.

    Subclasses implement `call(step: Tensor) -> Tensor`. Optimizers read schedules
    through `value(step_array, dtype)`, which built-in schedules compute with jnp
    directly, so they also work on traced step counters.
    """

    def __init__(self, init_value: float):
        _check_number(type(self).__name__, "init_value", init_value)
        self.init_value = init_value

    def __call__(self, step: Tensor) -> Tensor:
        if not isinstance(step, Tensor):
            raise TypeError(f"{type(self).__name__}: step must be a Tensor, got {type(step).__name__}")
        return self.call(step)

    def call(self, step: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement call(step)")

    def value(self, step: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
        """The value at `step` (a jax array) as a shape-(1,) array of `dtype`."""
        out = self(Tensor(data=step, requires_grad=False))
        return jnp.asarray(out.data if isinstance(out, Tensor) else out, dtype).reshape((1,))

    def _tensor(self, step: Tensor) -> Tensor:
        return Tensor(device=step.device, data=self.value(step.data), requires_grad=False)


class Constant(DecayScheduler):
    """Always `init_value`."""

    def call(self, step: Tensor) -> Tensor:
        return self._tensor(step)

    def value(self, step: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
        return jnp.full((1,), self.init_value, dtype)


class ExponentialDecay(DecayScheduler):
    """`init_value * decay_rate ** (step / decay_steps)`; the exponent is floored with `staircase`."""

    def __init__(self, init_value: float, decay_steps: int, decay_rate: float, staircase: bool = False):
        super().__init__(init_value)
        _check_number("ExponentialDecay", "decay_steps", decay_steps)
        _check_number("ExponentialDecay", "decay_rate", decay_rate)
        if not decay_steps > 0:
            raise ValueError(f"ExponentialDecay: invalid decay_steps {decay_steps!r} (must be > 0)")
        if not decay_rate >= 0:
            raise ValueError(f"ExponentialDecay: invalid decay_rate {decay_rate!r} (must be >= 0)")
        self.decay_steps, self.decay_rate, self.staircase = decay_steps, decay_rate, bool(staircase)

    def call(self, step: Tensor) -> Tensor:
        return self._tensor(step)

    def value(self, step: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
        return _exp_decay(step, float(self.init_value), float(self.decay_steps),
                          float(self.decay_rate), self.staircase, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _exp_decay(step, init, decay_steps, rate, staircase, dtype):
    exponent = jnp.asarray(step, dtype) / jnp.asarray(decay_steps, dtype)
    if staircase:
        exponent = jnp.floor(exponent)
    return jnp.reshape(jnp.asarray(init, dtype) * jnp.asarray(rate, dtype) ** exponent, (1,))


@jax.jit
def _increment(counter):
    return counter + jnp.ones((), counter.dtype)


# --- validation helpers ----------------------------------------------------------

def _check_number(owner: str, what: str, value: Any) -> None:
    # SINGA accepts exactly Python int/float (bool and numpy scalars are rejected)
    if type(value) not in (int, float):
        raise TypeError(f"{owner}: {what} must be a Python float or int, got {type(value).__name__}")


def _schedule(owner: str, what: str, value: Any) -> DecayScheduler:
    if isinstance(value, DecayScheduler):
        return value
    if type(value) not in (int, float):
        raise TypeError(f"{owner}: {what} must be a float, an int or a DecayScheduler, "
                        f"got {type(value).__name__}")
    return Constant(value)


def _require(owner: str, what: str, sched: DecayScheduler, ok: bool, rule: str) -> None:
    if not ok:
        raise ValueError(f"{owner}: invalid {what} {sched.init_value!r} (must be {rule})")


def _compute_dtype(dtype) -> np.dtype:
    """float16/bfloat16 params are updated in float32; float64 stays float64."""
    return jnp.promote_types(dtype, jnp.float32)


def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _as_array(value: Any) -> Any:
    return value.data if isinstance(value, Tensor) else np.asarray(value)


class _Entry:
    """The slot Tensors of one parameter (held weakly, so a dead param frees its id)."""

    __slots__ = ("ref", "name", "keys", "tensors")

    def __init__(self, param: Tensor, name: str, keys: Sequence[str], tensors: list):
        self.ref, self.name, self.keys, self.tensors = weakref.ref(param), name, list(keys), tensors


# --- the base class ---------------------------------------------------------------

class Optimizer:
    """Base of SINGA's optimizers.

    Args:
      lr: learning rate, a float/int or a `DecayScheduler`.
      dtype: parameter dtype code. Hyper-parameter values are float64 Tensors when it
        is `tensor.float64`, else float32.

    Subclasses implement `apply(param_name, param_value, param_grad)`.

    SINGA: slots are keyed by parameter name; here by parameter identity, so two
    parameters that share a name keep separate slots (reported as `W`, `W#1`).
    """

    def __init__(self, lr: Any, dtype: int = tensor.float32):
        owner = type(self).__name__
        self.lr = _schedule(owner, "learning rate", lr)
        _require(owner, "learning rate", self.lr, self.lr.init_value >= 0, ">= 0")
        self.dtype = _check_dtype(owner, dtype)
        self._hdtype = jnp.float64 if self.dtype == tensor.float64 else jnp.float32
        dev = _device.get_default_device()
        self.step_counter = Tensor(device=dev, data=jnp.zeros((1,), jnp.float32), requires_grad=False)
        self._hypers: list[tuple[DecayScheduler, Tensor]] = []
        self._entries: dict[int, _Entry] = {}
        self._pending: dict[tuple[str, str], Any] = {}   # set_states values for slots not created yet
        self.master: dict[str, Tensor] = {}   # float32 copies of float16/bfloat16 parameters
        self.loss_scaler: DynamicLossScale | None = None
        self.lr_value = self._hyper_tensor(self.lr)

    # --- SINGA interface ---------------------------------------------------
    def __call__(self, loss: Tensor) -> None:
        """Backward from `loss`, update every parameter, then advance the step counter."""
        self.call(loss)
        self.step()

    def call(self, loss: Tensor) -> None:
        """Backward from `loss` and `apply` each (param, grad) pair as it is produced.

        With float16 (the optimizer's `dtype` or the loss's), gradients go through
        dynamic loss scaling and a non-finite step is skipped (see `singax._mixed`).
        """
        from . import autograd
        if self.dtype == tensor.float16 or loss.data.dtype == jnp.float16:
            return self._scaled_call(loss)
        for p, g in autograd.backward(loss):
            if p.name is None:
                p.name = str(id(p))
            self.apply(p.name, p, g)

    def _scaled_call(self, loss: Tensor) -> None:
        from . import autograd
        if self.loss_scaler is None:
            self.loss_scaler = DynamicLossScale(self.step_counter.device)
        scale = self.loss_scaler.scale.data
        dy = Tensor(device=loss.device, data=jnp.broadcast_to(scale, loss.shape).astype(loss.data.dtype),
                    requires_grad=False)
        pairs = list(autograd.backward(loss, dy))
        grads = [g.data.astype(jnp.float32) / scale[0] for _, g in pairs]
        finite = all_finite(grads)
        for (p, g), g32 in zip(pairs, grads):
            if p.name is None:
                p.name = str(id(p))
            g.data = jnp.where(finite, g32, 0)
            self._apply_if(finite, p, g)
        self.loss_scaler.update(finite)

    def _apply_if(self, finite, param: Tensor, grad: Tensor) -> None:
        """`apply`, then undo it (parameter and slots) unless `finite`."""
        entry = self._entries.get(id(param))
        old_slots = [t.data for t in entry.tensors] if entry is not None and entry.ref() is param else None
        old_p = param.data
        self.apply(param.name, param, grad)
        param.data = keep_if(finite, param.data, old_p)
        entry = self._entries.get(id(param))
        if entry is None:
            return
        for i, (key, t) in enumerate(zip(entry.keys, entry.tensors)):
            if old_slots is not None:
                old = old_slots[i]
            else:   # created by this apply: zeros, or the master copy of the old parameter
                old = old_p.astype(t.data.dtype) if key == "master" else jnp.zeros_like(t.data)
            t.data = keep_if(finite, t.data, old)

    def step(self) -> None:
        """Advance the step counter and recompute the scheduled hyper-parameter values."""
        self.step_counter.data = _increment(self.step_counter.data)
        self._refresh(force=False)

    def apply(self, param_name: str, param_value: Tensor, param_grad: Tensor) -> None:
        """Update `param_value` in place from `param_grad`."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply")

    def update(self, param: Tensor, grad: Tensor) -> None:
        """Deprecated: `apply(param.name, param, grad)`."""
        _deprecated("update", "apply(param.name, param, grad)")
        self.apply(param.name, param, grad)

    def backward_and_update(self, loss: Tensor) -> None:
        """Deprecated: `opt(loss)`."""
        _deprecated("backward_and_update", "opt(loss)")
        self(loss)

    def get_states(self) -> dict:
        """`{'step_counter': float, <slot attr>: {name: Tensor}}`.

        Slot values are the live Tensors (as in SINGA); hyper-parameter values are
        recomputed from the counter by `set_states`.
        """
        counter = tensor.to_numpy(self.step_counter)
        states = {"step_counter": float(counter.reshape(-1)[0])}
        if self.loss_scaler is not None:
            states["loss_scale"] = self.loss_scaler.scale
            states["loss_scale_good_steps"] = self.loss_scaler.good_steps
        return states

    def set_states(self, states: dict) -> None:
        """Restore `get_states()` output (values are copied into this optimizer's Tensors)."""
        if "step_counter" not in states:
            raise ValueError(f"{type(self).__name__}.set_states: missing 'step_counter' "
                             f"(got keys {sorted(states)})")
        count = float(np.asarray(_as_array(states["step_counter"])).reshape(-1)[0])
        self.step_counter.data = self._put(jnp.full((1,), count, jnp.float32))
        self._refresh(force=True)
        if "loss_scale" in states:
            if self.loss_scaler is None:
                self.loss_scaler = DynamicLossScale(self.step_counter.device)
            sc = self.loss_scaler
            sc.scale.data = self._put(jnp.asarray(_as_array(states["loss_scale"]), jnp.float32).reshape(1))
            sc.good_steps.data = self._put(jnp.asarray(_as_array(states.get("loss_scale_good_steps", 0)),
                                                       jnp.int32).reshape(1))

    def device_check(self, *tensors: Tensor) -> None:
        """Move every tensor to the device of the first one."""
        if not tensors:
            return
        dev = tensors[0].device
        for t in tensors[1:]:
            if t.device is not dev:
                if not _is_tracer(t.data):
                    t.data = jax.device_put(t.data, dev.jax_device)
                t.device = dev

    # --- internals ------------------------------------------------------------
    def _hyper(self, attr: str, value: Any, value_attr: str) -> DecayScheduler:
        """Set `self.<attr>` (scheduler) and `self.<value_attr>` (its current value Tensor)."""
        sched = _schedule(type(self).__name__, attr, value)
        setattr(self, attr, sched)
        setattr(self, value_attr, self._hyper_tensor(sched))
        return sched

    def _hyper_tensor(self, sched: DecayScheduler) -> Tensor:
        t = Tensor(device=self.step_counter.device,
                   data=sched.value(self.step_counter.data, self._hdtype), requires_grad=False)
        self._hypers.append((sched, t))
        return t

    def _refresh(self, force: bool) -> None:
        counter = self.step_counter.data
        for sched, t in self._hypers:
            if force or type(sched) is not Constant:   # a Constant's value never changes
                t.data = self._put(sched.value(counter, self._hdtype))

    def _put(self, array):
        if _is_tracer(array):
            return array
        return jax.device_put(array, self.step_counter.device.jax_device)

    def _follow(self, param: Tensor) -> None:
        """Keep the scalar state on the parameters' device (eager calls only)."""
        dev = param.device
        if dev is self.step_counter.device or _is_tracer(param.data):
            return
        self.device_check(param, self.step_counter, *(t for _, t in self._hypers))

    def _check_pair(self, name: Any, param: Tensor, grad: Tensor) -> None:
        owner = type(self).__name__
        if not isinstance(param, Tensor) or not isinstance(grad, Tensor):
            raise TypeError(f"{owner}.apply: param and grad must be Tensors, got "
                            f"{type(param).__name__} and {type(grad).__name__}")
        if param.shape != grad.shape:
            raise ValueError(f"{owner}.apply: gradient shape {grad.shape} does not match the shape "
                             f"{param.shape} of parameter {name!r}")
        if not jnp.issubdtype(param.data.dtype, jnp.floating):
            raise TypeError(f"{owner}.apply: parameter {name!r} has non-float dtype "
                            f"{param.data.dtype}")

    def _slots(self, name: Any, param: Tensor, keys: Sequence[str],
               make: Callable[[], list]) -> list[Tensor]:
        """The slot Tensors of `param`, created (as concrete zeros, even mid-trace) on first use.

        A new parameter that takes the name of a dead one inherits its slots when the
        shapes match (SINGA keys state by name, so re-created parameters continue).
        """
        entry = self._entries.get(id(param))
        if entry is not None and entry.ref() is param:
            return entry.tensors
        dead = {}
        for pid in [k for k, e in self._entries.items() if e.ref() is None]:
            gone = self._entries.pop(pid)   # dead params give up their names
            dead[gone.name] = gone
        taken = {e.name for e in self._entries.values()}
        uname, k = str(name), 0
        while uname in taken:
            k += 1
            uname = f"{name}#{k}"
        old = dead.get(uname)
        if old is not None and list(old.keys) == list(keys) and [
                (t.shape, t.data.dtype) for t in old.tensors] == [
                (a.shape, a.dtype) for a in jax.eval_shape(make)]:
            self._entries[id(param)] = _Entry(param, uname, keys, old.tensors)
            return old.tensors
        tensors = []
        # concrete even inside a trace (device_put included), so a compiled step sees new state
        with jax.ensure_compile_time_eval():
            for key, arr in zip(keys, make()):
                pending = self._pending.pop((uname, key), None)
                if pending is not None:
                    arr = self._restored(uname, key, pending, arr)
                tensors.append(Tensor(device=param.device, data=arr, requires_grad=False,
                                      name=f"{uname}:{key}"))
        for key, t in zip(keys, tensors):
            self._publish(uname, key, t)
        self._entries[id(param)] = _Entry(param, uname, keys, tensors)
        return tensors

    def _publish(self, uname: str, key: str, t: Tensor) -> None:
        getattr(self, key)[uname] = t

    def _restored(self, uname: str, key: str, value: Any, like) -> jax.Array:
        arr = jnp.asarray(_as_array(value))
        if arr.shape != like.shape:
            raise ValueError(f"{type(self).__name__}.set_states: state {key!r} of {uname!r} has shape "
                             f"{arr.shape}, expected {like.shape}")
        # a private copy: the source buffer may be donated by another compiled step
        return jnp.array(arr, dtype=like.dtype, copy=True)

    def _assign(self, uname: str, key: str, value: Any) -> None:
        for e in self._entries.values():
            if e.name == uname and e.ref() is not None and key in e.keys:
                t = e.tensors[e.keys.index(key)]
                t.data = jax.device_put(self._restored(uname, key, value, t.data), t.device.jax_device)
                return
        self._pending[(uname, key)] = _as_array(value)   # snapshot now: a live Tensor moves on


def _check_dtype(owner: str, dtype: Any) -> int:
    try:
        code = tensor.to_code(dtype)
    except (TypeError, ValueError, KeyError):
        code = None
    if code not in (tensor.float32, tensor.float16, tensor.bfloat16, tensor.float64):
        raise ValueError(f"{owner}: dtype must be tensor.float32, float16, bfloat16 or float64, "
                         f"got {dtype!r}")
    return code


def _deprecated(method: str, use: str) -> None:
    if method not in _WARNED:
        _WARNED.add(method)
        warnings.warn(f"Optimizer.{method} is deprecated; use {use}", DeprecationWarning, stacklevel=3)


# --- built-in optimizers: optax chains under one jitted update -----------------------

_UPDATES: dict[tuple, Callable] = {}


def _compiled(key: tuple, build: Callable) -> Callable:
    """The jitted `(p, g, slots, hyper) -> (p, slots)` for one optimizer configuration.

    `build(*hyper_scalars)` returns the optax transform; its state leaves are the slots.
    """
    fn = _UPDATES.get(key)
    if fn is None:
        def update(p, g, slots, hyper):
            TRACE_COUNTS[key] += 1
            cdt = _compute_dtype(p.dtype)
            pc, gc = p.astype(cdt), g.astype(cdt)
            tx = build(*[h.reshape(()).astype(cdt) for h in hyper])
            treedef = jax.tree.structure(jax.eval_shape(tx.init, pc))
            updates, state = tx.update(gc, jax.tree.unflatten(treedef, list(slots)), pc)
            return (pc + updates).astype(p.dtype), tuple(jax.tree.leaves(state))
        fn = _UPDATES[key] = jax.jit(update)
    return fn


class _Builtin(Optimizer):
    """An optimizer whose per-parameter update is an optax chain with named slots."""

    _slot_attrs: tuple = ()
    _cfg: tuple   # (static configuration key, build function, hyper-parameter Tensors, slot names)

    def apply(self, param_name: str, param_value: Tensor, param_grad: Tensor) -> None:
        """Update `param_value` (and its slots) in place: one jitted call."""
        self._check_pair(param_name, param_value, param_grad)
        self._follow(param_value)
        key, build, hypers, slot_names = self._cfg
        cdt = _compute_dtype(param_value.data.dtype)
        shape = param_value.shape
        low = param_value.data.dtype in _LOW_PRECISION
        # float16/bfloat16 parameters keep a float32 master copy that the update works on
        keys = tuple(slot_names) + (("master",) if low else ())
        slots = self._slots(param_name, param_value, keys,
                            lambda: [jnp.zeros(shape, cdt) for _ in slot_names]
                            + ([jnp.asarray(concrete(param_value), cdt)] if low else []))
        master = slots[-1] if low else None
        slots = slots[:-1] if low else slots
        new_p, new_slots = _compiled(key, build)(master.data if low else param_value.data, param_grad.data,
                                                 tuple(s.data for s in slots),
                                                 tuple(t.data for t in hypers))
        if low:
            master.data = new_p
            new_p = new_p.astype(param_value.data.dtype)
        param_value.data = new_p
        for s, a in zip(slots, new_slots):
            s.data = a

    def get_states(self) -> dict:
        states = super().get_states()
        for attr in self._slot_attrs + (("master",) if self.master else ()):
            states[attr] = dict(getattr(self, attr))
        return states

    def set_states(self, states: dict) -> None:
        super().set_states(states)
        for attr in self._slot_attrs + ("master",):
            for uname, value in states.get(attr, {}).items():
                self._assign(uname, attr, value)


class _TraceState(NamedTuple):
    trace: Any


def _singa_momentum(momentum, dampening, nesterov: bool) -> optax.GradientTransformation:
    """v <- mu*v + (1-d)*g from a zero buffer; out = g + mu*v (nesterov) or v.

    optax.trace has no dampening, and PyTorch-style buffers start at g, not 0.
    """
    def init(params):
        return _TraceState(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        v = jax.tree.map(lambda g, t: momentum * t + (1 - dampening) * g, updates, state.trace)
        out = jax.tree.map(lambda g, t: g + momentum * t, updates, v) if nesterov else v
        return out, _TraceState(v)
    return optax.GradientTransformation(init, update)


class _AdamState(NamedTuple):
    m: Any
    v: Any


def _singa_adam(b1, b2, eps, counter) -> optax.GradientTransformation:
    """SINGA's Adam direction with t = step_counter + 1 taken from outside (not a state count)."""
    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return _AdamState(zeros, zeros)

    def update(updates, state, params=None):
        t = counter + 1
        m = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g, updates, state.m)
        v = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.v)
        out = jax.tree.map(lambda m, v: (m / (1 - b1 ** t)) / (jnp.sqrt(v / (1 - b2 ** t)) + eps), m, v)
        return out, _AdamState(m, v)
    return optax.GradientTransformation(init, update)


def _chain(*parts) -> optax.GradientTransformation:
    return optax.chain(*[p for p in parts if p is not None])


def _sgd_build(has_wd: bool, has_mom: bool, nesterov: bool) -> Callable:
    def build(lr, momentum, dampening, weight_decay):
        return _chain(optax.add_decayed_weights(weight_decay) if has_wd else None,
                      _singa_momentum(momentum, dampening, nesterov) if has_mom else None,
                      optax.scale(-lr))
    return build


def _rmsprop_build(has_wd: bool) -> Callable:
    def build(lr, rho, epsilon, weight_decay):
        # eps_in_sqrt: g / sqrt(r + eps), as SINGA
        return _chain(optax.add_decayed_weights(weight_decay) if has_wd else None,
                      optax.scale_by_rms(decay=rho, eps=epsilon, initial_scale=0.0, eps_in_sqrt=True),
                      optax.scale(-lr))
    return build


def _adagrad_build(has_wd: bool) -> Callable:
    def build(lr, epsilon, weight_decay):
        # scale_by_rss: g / sqrt(h + eps) with h starting at 0, as SINGA
        return _chain(optax.add_decayed_weights(weight_decay) if has_wd else None,
                      optax.scale_by_rss(initial_accumulator_value=0.0, eps=epsilon),
                      optax.scale(-lr))
    return build


def _adam_build(has_wd: bool) -> Callable:
    def build(lr, beta_1, beta_2, epsilon, weight_decay, counter):
        return _chain(optax.add_decayed_weights(weight_decay) if has_wd else None,
                      _singa_adam(beta_1, beta_2, epsilon, counter),
                      optax.scale(-lr))
    return build


class SGD(_Builtin):
    """SGD with SINGA's momentum, dampening, L2 weight decay and Nesterov rules.

    g <- g + wd*p; v <- mu*v + (1-d)*g (v starts at 0); g <- g + mu*v (nesterov) or v;
    p <- p - lr*g. The weight-decay and momentum branches exist when the schedule's
    initial value is non-zero.

    Args:
      lr, momentum, dampening, weight_decay: floats/ints or DecaySchedulers.
      nesterov: Nesterov momentum (needs momentum > 0 and dampening == 0).
      dtype: the dtype of the parameters this optimizer updates (SINGA checks it);
        float16/bfloat16 parameters are updated in float32 and cast back.
    """

    _slot_attrs = ("moments",)

    def __init__(self, lr: Any = 0.1, momentum: Any = 0, dampening: Any = 0, weight_decay: Any = 0,
                 nesterov: bool = False, dtype: int = tensor.float32):
        super().__init__(lr, dtype)
        mom = self._hyper("momentum", momentum, "mom_value")
        dam = self._hyper("dampening", dampening, "dam_value")
        wd = self._hyper("weight_decay", weight_decay, "decay_value")
        _require("SGD", "momentum", mom, 0 <= mom.init_value < 1, "in [0, 1)")
        _require("SGD", "dampening", dam, 0 <= dam.init_value <= 1, "in [0, 1]")
        _require("SGD", "weight_decay", wd, wd.init_value >= 0, ">= 0")
        self.nesterov = bool(nesterov)
        if self.nesterov and (mom.init_value <= 0 or dam.init_value != 0):
            raise ValueError(f"SGD: nesterov momentum requires momentum > 0 and dampening = 0 "
                             f"(got momentum={mom.init_value!r}, dampening={dam.init_value!r})")
        self.moments: dict[str, Tensor] = {}
        has_mom = mom.init_value != 0
        key = ("SGD", wd.init_value != 0, has_mom, self.nesterov)
        self._cfg = (key, _sgd_build(*key[1:]),
                     (self.lr_value, self.mom_value, self.dam_value, self.decay_value),
                     ("moments",) if has_mom else ())

    def apply(self, param_name: str, param_value: Tensor, param_grad: Tensor) -> None:
        if isinstance(param_value, Tensor) and param_value.dtype != self.dtype:
            raise TypeError(f"SGD.apply: parameter {param_name!r} has dtype "
                            f"{tensor.dtype_name[param_value.dtype]} but this SGD was created with "
                            f"dtype={tensor.dtype_name[self.dtype]}; pass SGD(..., "
                            f"dtype=tensor.{tensor.dtype_name[param_value.dtype]})")
        super().apply(param_name, param_value, param_grad)


class RMSProp(_Builtin):
    """RMSProp: r <- rho*r + (1-rho)*g^2; p <- p - lr*g/sqrt(r + eps) (eps inside the root).

    SINGA: an `epsilon` scheduler is accepted only when `rho` is one (a bug); here each
    hyper-parameter takes a number or a scheduler independently. `dtype` is a singax extra.
    """

    _slot_attrs = ("running_average",)

    def __init__(self, lr: Any = 0.1, rho: Any = 0.9, epsilon: Any = 1e-8, weight_decay: Any = 0,
                 *, dtype: int = tensor.float32):
        super().__init__(lr, dtype)
        rho_s = self._hyper("rho", rho, "rho_value")
        eps = self._hyper("epsilon", epsilon, "epsilon_value")
        wd = self._hyper("weight_decay", weight_decay, "decay_value")
        _require("RMSProp", "rho", rho_s, 0 <= rho_s.init_value < 1, "in [0, 1)")
        _require("RMSProp", "epsilon", eps, eps.init_value >= 0, ">= 0")
        _require("RMSProp", "weight_decay", wd, wd.init_value >= 0, ">= 0")
        self.running_average: dict[str, Tensor] = {}
        key = ("RMSProp", wd.init_value != 0)
        self._cfg = (key, _rmsprop_build(*key[1:]),
                     (self.lr_value, self.rho_value, self.epsilon_value, self.decay_value),
                     ("running_average",))


class AdaGrad(_Builtin):
    """AdaGrad: h <- h + g^2; p <- p - lr*g/sqrt(h + eps) (eps inside the root).

    `dtype` is a singax extra (see `Optimizer`).
    """

    _slot_attrs = ("history",)

    def __init__(self, lr: Any = 0.1, epsilon: Any = 1e-8, weight_decay: Any = 0,
                 *, dtype: int = tensor.float32):
        super().__init__(lr, dtype)
        eps = self._hyper("epsilon", epsilon, "epsilon_value")
        wd = self._hyper("weight_decay", weight_decay, "decay_value")
        _require("AdaGrad", "epsilon", eps, eps.init_value >= 0, ">= 0")
        _require("AdaGrad", "weight_decay", wd, wd.init_value >= 0, ">= 0")
        self.history: dict[str, Tensor] = {}
        key = ("AdaGrad", wd.init_value != 0)
        self._cfg = (key, _adagrad_build(*key[1:]),
                     (self.lr_value, self.epsilon_value, self.decay_value), ("history",))


class Adam(_Builtin):
    """Adam with L2 weight decay and t = step_counter + 1 (eps outside the root).

    m <- b1*m + (1-b1)*g; v <- b2*v + (1-b2)*g^2;
    p <- p - lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps). Calling `apply` without
    `step()` keeps t at 1, as in SINGA. `dtype` is a singax extra (see `Optimizer`).
    """

    _slot_attrs = ("m", "v")

    def __init__(self, lr: Any = 0.1, beta_1: Any = 0.9, beta_2: Any = 0.999, epsilon: Any = 1e-8,
                 weight_decay: Any = 0, *, dtype: int = tensor.float32):
        super().__init__(lr, dtype)
        b1 = self._hyper("beta_1", beta_1, "beta_1_value")
        b2 = self._hyper("beta_2", beta_2, "beta_2_value")
        eps = self._hyper("epsilon", epsilon, "epsilon_value")
        wd = self._hyper("weight_decay", weight_decay, "decay_value")
        _require("Adam", "beta_1", b1, 0 <= b1.init_value < 1, "in [0, 1)")
        _require("Adam", "beta_2", b2, 0 <= b2.init_value < 1, "in [0, 1)")
        _require("Adam", "epsilon", eps, eps.init_value >= 0, ">= 0")
        _require("Adam", "weight_decay", wd, wd.init_value >= 0, ">= 0")
        self.m: dict[str, Tensor] = {}
        self.v: dict[str, Tensor] = {}
        key = ("Adam", wd.init_value != 0)
        self._cfg = (key, _adam_build(*key[1:]),
                     (self.lr_value, self.beta_1_value, self.beta_2_value, self.epsilon_value,
                      self.decay_value, self.step_counter), ("m", "v"))


# --- any optax transform -----------------------------------------------------------

class Optax(Optimizer):
    """Any optax GradientTransformation behind SINGA's optimizer interface (singax extra).

    Args:
      transform: an `optax.GradientTransformation` (e.g. `optax.adamw(1e-3)`,
        `optax.chain(optax.clip_by_global_norm(1.0), optax.lion(1e-4))`) when `lr` is
        None; with `lr`, a factory `lr -> GradientTransformation` (e.g. `optax.adamw`)
        that is called inside the jitted update with the current learning rate.
      lr: None, or a float/int/DecayScheduler evaluated at SINGA's step counter.

    Per-parameter optax state lives in Tensors (`self.state[name][path]`). `opt(loss)`
    updates all parameters in one jitted call, so global transforms such as
    `clip_by_global_norm` see every gradient; `apply`/`update` on one parameter treat
    that parameter as the whole tree. Shared state leaves (e.g. a step count) are kept
    per parameter and taken from the first parameter when updating jointly.
    """

    def __init__(self, transform: Any, lr: Any = None, dtype: int = tensor.float32):
        if lr is None and not isinstance(transform, optax.GradientTransformation):
            raise TypeError(f"Optax: transform must be an optax.GradientTransformation, got "
                            f"{type(transform).__name__} (pass lr=... to use a factory such as optax.adamw)")
        if lr is not None and (isinstance(transform, optax.GradientTransformation) or not callable(transform)):
            raise TypeError("Optax: with lr=..., transform must be a factory lr -> GradientTransformation "
                            "(e.g. optax.adamw); a built transform already carries its learning rate")
        super().__init__(0.0 if lr is None else lr, dtype)
        if lr is None:
            self._hypers.clear()
            self.lr = self.lr_value = None
        self.transform = transform
        self.state: dict[str, dict[str, Tensor]] = {}
        self.trace_count = 0
        self._update = jax.jit(self._joint_update)

    def _tx(self, lr) -> optax.GradientTransformation:
        return self.transform if self.lr is None else self.transform(lr)

    def call(self, loss: Tensor) -> None:
        """Backward from `loss`, then update all parameters in one jitted call."""
        from . import autograd
        pairs = []
        for p, g in autograd.backward(loss):
            if p.name is None:
                p.name = str(id(p))
            pairs.append((p.name, p, g))
        if pairs:
            self._apply_all(pairs)

    def apply(self, param_name: str, param_value: Tensor, param_grad: Tensor) -> None:
        """Update one parameter (global transforms see only this parameter)."""
        self._apply_all([(param_name, param_value, param_grad)])

    def get_states(self) -> dict:
        states = super().get_states()
        states["state"] = {name: dict(slots) for name, slots in self.state.items()}
        return states

    def set_states(self, states: dict) -> None:
        super().set_states(states)
        for uname, slots in states.get("state", {}).items():
            for key, value in slots.items():
                self._assign(uname, key, value)

    # --- internals ------------------------------------------------------------
    def _publish(self, uname: str, key: str, t: Tensor) -> None:
        self.state.setdefault(uname, {})[key] = t

    def _init_state(self, param: Tensor) -> tuple[list[str], Callable]:
        cdt = _compute_dtype(param.data.dtype)
        with jax.ensure_compile_time_eval():
            proto = jax.ShapeDtypeStruct(param.shape, cdt)
            lr = jnp.ones((), self._hdtype)
            paths = jax.tree_util.tree_flatten_with_path(jax.eval_shape(self._tx(lr).init, proto))[0]
        keys = [(jax.tree_util.keystr(path) or "state").replace("/", "|") for path, _ in paths]

        def make():
            data = param.data
            p0 = jnp.zeros(param.shape, cdt) if _is_tracer(data) else data.astype(cdt)
            leaves = jax.tree.leaves(self._tx(lr).init(p0))
            return [jnp.asarray(x, x.dtype) for x in leaves]   # strong dtypes: one signature
        return keys, make

    def _apply_all(self, triples: list) -> None:
        slots = []
        for name, p, g in triples:
            self._check_pair(name, p, g)
            self._follow(p)
            entry = self._entries.get(id(p))
            if entry is not None and entry.ref() is p:
                slots.append(entry.tensors)
            else:
                keys, make = self._init_state(p)
                slots.append(self._slots(name, p, keys, make))
        lr = None if self.lr_value is None else self.lr_value.data
        new_ps, new_states = self._update([p.data for _, p, _ in triples], [g.data for _, _, g in triples],
                                          [tuple(s.data for s in ts) for ts in slots], lr)
        for (_, p, _), a in zip(triples, new_ps):
            p.data = a
        for ts, arrays in zip(slots, new_states):
            for t, a in zip(ts, arrays):
                t.data = a

    def _joint_update(self, params, grads, states, lr):
        self.trace_count += 1
        pcs = [p.astype(_compute_dtype(p.dtype)) for p in params]
        gcs = [g.astype(pc.dtype) for g, pc in zip(grads, pcs)]
        tx = self._tx(None if lr is None else lr.reshape(()))
        # A per-parameter state tree is a prefix of the state tree of the parameter list:
        # each leaf maps to a list (one per param) or to one shared leaf (e.g. a count).
        per = jax.tree.structure(jax.eval_shape(tx.init, pcs[0]))
        shapes = per.flatten_up_to(jax.eval_shape(tx.init, pcs))
        joint = per.unflatten([[s[k] for s in states] if isinstance(sub, list) else states[0][k]
                               for k, sub in enumerate(shapes)])
        updates, new = tx.update(gcs, joint, pcs)
        new_subs = per.flatten_up_to(new)
        new_states = [tuple((sub[i] if isinstance(sub, list) else sub).astype(states[i][k].dtype)
                            for k, sub in enumerate(new_subs)) for i in range(len(params))]
        new_params = [(pc + u).astype(p.dtype) for p, pc, u in zip(params, pcs, updates)]
        return new_params, new_states


def __getattr__(name: str):
    # SINGA exposes DistOpt from singa.opt; it lives in singax.dist (imported lazily: no cycle)
    if name == "DistOpt":
        from .dist import DistOpt
        return DistOpt
    raise AttributeError(f"module 'singax.opt' has no attribute {name!r}")
