"""Hyper-parameter schedules and the `Optimizer` base: state in Tensors, slots keyed by
parameter identity (see `singax.opt`)."""
from __future__ import annotations

import functools
import math
import warnings
import weakref
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import device as _device
from .. import tensor
from .._handle import is_tracer
from .._messages import TypeAssertionError, ValueAssertionError
from .._mixed import DynamicLossScale, all_finite, keep_if
from .._handle import StateLog
from ..tensor import Tensor
from ..tensor._engine import is_floating

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
            raise TypeAssertionError(f"{type(self).__name__}: step must be a Tensor, got {type(step).__name__}")
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


def _step_guard():
    """Inside a compiled step with guards (e.g. label ranges): a traced bool, all guards true."""
    log = StateLog.active
    if log is None or not log.guards:
        return None
    return functools.reduce(jnp.logical_and, log.guards)


def _guard_platform() -> str | None:
    """The platform of the compiled step being traced, when known (see `opt._builtin._gated`)."""
    log = StateLog.active
    return log.platform if log is not None else None


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


@functools.lru_cache(maxsize=None)
def _compute_dtype(dtype) -> np.dtype:
    """float16/bfloat16 params are updated in float32; float64 stays float64."""
    return jnp.promote_types(dtype, jnp.float32)


def _named(param: Tensor) -> str:
    """The name an optimizer keys `param`'s state by: its own, else (as SINGA) its id."""
    if param.name is None:
        param.name = str(id(param))
    return param.name


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

    _guarded_apply = False   # True where apply() itself honours a failed step guard

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
        # compiled steps whose update a guard skipped (labels out of range)
        self.skipped_steps = Tensor(device=dev, data=jnp.zeros((1,), jnp.int32), requires_grad=False,
                                    name="skipped_steps")
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
        from .. import autograd
        self._require_loss(loss)
        if self.dtype == tensor.float16 or loss.data.dtype == jnp.float16:
            return self._scaled_call(loss)
        ok = _step_guard()
        updated = False
        for p, g in autograd.backward(loss):
            if ok is None or self._guarded_apply:
                self.apply(_named(p), p, g)
            else:
                self._apply_if(ok, p, g)
            updated = True
        if not updated:
            self._warn_nothing_to_update(loss)
        if ok is not None:
            self._count_skipped(ok)

    def _count_skipped(self, ok) -> None:
        """Count a compiled step whose update a guard (labels out of range) skipped."""
        n = self.skipped_steps.data
        self.skipped_steps.data = jnp.where(ok, n, n + 1)

    def _warn_nothing_to_update(self, loss: Tensor) -> None:
        """Warn (once per optimizer) that `loss` reaches no parameter, so nothing was updated."""
        if self.__dict__.get("_warned_no_params"):
            return
        self._warned_no_params = True
        creator = getattr(loss, "creator", None)
        made_by = f" (made by {creator.name})" if creator is not None and creator.name != loss.name else ""
        warnings.warn(f"{type(self).__name__}: loss {loss.name!r}{made_by} has no path to any parameter "
                      "(no Tensor with stores_grad=True); nothing was updated", RuntimeWarning, stacklevel=3)

    def _scaled_call(self, loss: Tensor) -> None:
        from .. import autograd
        if self.loss_scaler is None:
            self.loss_scaler = DynamicLossScale(self.step_counter.device)
        scale = self.loss_scaler.scale.data
        dy = Tensor(device=loss.device, data=jnp.broadcast_to(scale, loss.shape).astype(loss.data.dtype),
                    requires_grad=False)
        pairs = list(autograd.backward(loss, dy))
        if not pairs:
            return self._warn_nothing_to_update(loss)
        grads = [g.data.astype(jnp.float32) / scale[0] for _, g in pairs]
        finite = all_finite(grads)
        ok = _step_guard()
        if ok is not None:
            self._count_skipped(ok)
            finite = finite & ok
        for (p, g), g32 in zip(pairs, grads):
            _named(p)
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
        counter = self.step_counter.data
        ok = _step_guard()
        self.step_counter.data = _increment(counter) if ok is None else jnp.where(ok, _increment(counter), counter)
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
        """Restore `get_states()` output (values are copied into this optimizer's Tensors).

        All or nothing: when a value is refused, every state is left as it was.
        """
        restore = self._saved_states()
        try:
            self._set_states(states)
        except BaseException:
            restore()
            raise

    def _saved_states(self) -> Callable[[], None]:
        """A function that puts every state Tensor (and pending slot value) back as it is now."""
        handles = [self.step_counter, self.skipped_steps] + [t for _, t in self._hypers]
        handles += [t for e in self._entries.values() for t in e.tensors]
        handles += list(self.master.values())
        scaler = self.loss_scaler
        if scaler is not None:
            handles += [scaler.scale, scaler.good_steps]
        saved = [(t, t.data) for t in handles]
        pending = dict(self._pending)

        def restore() -> None:
            for t, a in saved:
                t.data = a
            self._pending, self.loss_scaler = pending, scaler
        return restore

    def _set_states(self, states: dict) -> None:
        if "step_counter" not in states:
            raise ValueError(f"{type(self).__name__}.set_states: missing 'step_counter' "
                             f"(got keys {sorted(states)})")
        try:
            counter = np.asarray(_as_array(states["step_counter"]), dtype=np.float64)
            count = float(counter.reshape(-1)[0]) if counter.size == 1 else math.nan
        except (TypeError, ValueError):
            count = math.nan
        if not math.isfinite(count) or count < 0:
            raise ValueError(f"{type(self).__name__}.set_states: 'step_counter' must be one finite number "
                             f">= 0, got {states['step_counter']!r}")
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
                if not is_tracer(t.data):
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
        if is_tracer(array):
            return array
        return jax.device_put(array, self.step_counter.device.jax_device)

    def _follow(self, param: Tensor) -> None:
        """Keep the scalar state on the parameters' device (eager calls only)."""
        dev = param.device
        if dev is self.step_counter.device or is_tracer(param.data):
            return
        self.device_check(param, self.step_counter, *(t for _, t in self._hypers))

    def _check_pair(self, name: Any, param: Tensor, grad: Tensor) -> None:
        self._require_tensors(param, grad)
        self._check_update(name, param, grad.shape)

    def _require_loss(self, loss: Any) -> None:
        if not isinstance(loss, Tensor):
            raise TypeError(f"{type(self).__name__}: expected the loss Tensor to step from, got "
                            f"{type(loss).__name__}")

    def _require_tensors(self, param: Any, grad: Any) -> None:
        if not isinstance(param, Tensor) or not isinstance(grad, Tensor):
            raise TypeError(f"{type(self).__name__}.apply: param and grad must be Tensors, got "
                            f"{type(param).__name__} and {type(grad).__name__}")

    def _check_update(self, name: Any, param: Tensor, grad_shape: tuple) -> None:
        """A gradient of `grad_shape` can update `param` (same shape, a float parameter)."""
        owner = type(self).__name__
        if param.shape != tuple(grad_shape):
            raise ValueAssertionError(f"{owner}.apply: gradient shape {tuple(grad_shape)} does not match "
                                      f"the shape {param.shape} of parameter {name!r}")
        if not is_floating(param.data.dtype):
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
        raw = _as_array(value)
        if np.dtype(raw.dtype).kind not in "biuf":
            raise TypeError(f"{type(self).__name__}.set_states: state {key!r} of {uname!r} has dtype "
                            f"{np.dtype(raw.dtype)}; expected real numbers")
        arr = jnp.asarray(raw)
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
