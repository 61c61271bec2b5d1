"""The built-in optimizers SGD, RMSProp, AdaGrad and Adam: optax chains under one jitted
update per configuration."""
from __future__ import annotations

import collections
import functools
import sys
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .. import tensor
from .._handle import concrete
from ..autograd._op import loss_plan, plan_gradients
from ..tensor import Tensor
from ._base import Optimizer, _compute_dtype, _guard_platform, _named, _require, _step_guard

_LOW_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))

TRACE_COUNTS: collections.Counter = collections.Counter()
"""Python traces of each built-in jitted update, keyed by configuration (tests read it)."""


# --- built-in optimizers: optax chains under one jitted update -----------------------

_UPDATES: dict[tuple, Callable] = {}


def _update_fn(key: tuple, build: Callable) -> Callable:
    """The pure `(p, g, slots, hyper) -> (p, slots)` of one optimizer configuration.

    `build(*hyper_scalars)` returns the optax transform; its state leaves are the slots.
    """
    def update(p, g, slots, hyper):
        TRACE_COUNTS[key] += 1
        cdt = _compute_dtype(p.dtype)
        pc, gc = p.astype(cdt), g.astype(cdt)
        tx = build(*[h.reshape(()).astype(cdt) for h in hyper])
        treedef = jax.tree.structure(jax.eval_shape(tx.init, pc))
        updates, state = tx.update(gc, jax.tree.unflatten(treedef, list(slots)), pc)
        return (pc + updates).astype(p.dtype), tuple(jax.tree.leaves(state))
    return update


def _compiled(key: tuple, build: Callable) -> Callable:
    """The jitted update of one parameter for one optimizer configuration."""
    fn = _UPDATES.get(key)
    if fn is None:
        fn = _UPDATES[key] = jax.jit(_update_fn(key, build))
    return fn


def _compiled_many(key: tuple, build: Callable, donate: bool) -> Callable:
    """The jitted update of a list of parameters in one program (slot buffers donated if
    asked): `(ps, gs, slots, hyper, ok, platform)`; with a traced bool `ok` (a compiled
    step's guards) nothing changes unless it is true (see `_gated`)."""
    fn = _UPDATES.get(("many", donate) + key)
    if fn is None:
        one = _update_fn(("many",) + key, build)
        fn = _UPDATES[("many", donate) + key] = jax.jit(
            functools.partial(_update_list, one), static_argnums=(5,), donate_argnums=(2,) if donate else ())
    return fn


def _update_list(one: Callable, ps, gs, slots, hyper, ok=None,
                 platform: str | None = None) -> tuple[list, list]:
    """`one` (a single parameter's update) over lists: (new parameters, new slot tuples).
    With a traced bool `ok`, each parameter's update is gated on its own (see `_gated`), so
    it can start as soon as its gradient is ready."""
    out = [_gated(ok, functools.partial(one, p, g, s, hyper), (p, s), platform)
           for p, g, s in zip(ps, gs, slots)]
    return [o[0] for o in out], [o[1] for o in out]


def _write_back(params: list, slot_tensors: list, new_ps: list, new_slots: list) -> None:
    """Rebind each parameter and each of its slot Tensors to the update's new arrays."""
    for p, slots, new_p, new_s in zip(params, slot_tensors, new_ps, new_slots):
        p.data = new_p
        for s, a in zip(slots, new_s):
            s.data = a


_FUSED_STEPS: dict[tuple, tuple] = {}


def _fused_program(plan, seed, key: tuple, build: Callable) -> tuple:
    """`(programs, gradient shapes)` for one tape signature and optimizer configuration.

    `programs[donate](parts, seed, ps, slots, hyper, counter, ok, advance, platform)` runs the
    tape's backward, updates every parameter that gets a gradient and (if `advance`)
    increments the counter, in one jitted program; slot buffers are donated when
    `donate`. With a traced bool `ok` (a compiled step's guards) nothing changes unless
    it is true.
    """
    cache_key = (plan.key, key)
    got = _FUSED_STEPS.get(cache_key)
    if got is not None:
        return got
    gradients = plan_gradients(plan)
    one = _update_fn(("fused",) + key, build)

    def step(parts, seed, ps, slots, hyper, counter, ok, advance, platform):
        gs = [g for g in gradients(parts, seed) if g is not None]

        new_ps, new_slots = _update_list(one, ps, gs, slots, hyper, ok, platform)
        new_counter = counter + jnp.ones((), counter.dtype) if advance else counter
        return new_ps, new_slots, new_counter if ok is None else jnp.where(ok, new_counter, counter)
    programs = {donate: jax.jit(step, static_argnums=(7, 8), donate_argnums=(3,) if donate else ())
                for donate in (False, True)}
    shapes = jax.eval_shape(gradients, plan.parts, seed)
    got = _FUSED_STEPS[cache_key] = (programs, shapes)
    return got


_OWNED_REFS = 4   # a slot array referenced only by its Tensor (+ the tuple, the loop, the call)


def _only_held_by_slots(slot_arrays: list) -> bool:
    """True when no one but the slot Tensors holds these arrays, so donating them is unseen."""
    return all(sys.getrefcount(a) <= _OWNED_REFS for t in slot_arrays for a in t)


def _compiled_if(key: tuple, build: Callable) -> Callable:
    """`_compiled` gated by a traced bool: `(ok, p, g, slots, hyper, platform)`; p and slots
    stay when not ok."""
    gated = ("if",) + key
    fn = _UPDATES.get(gated)
    if fn is None:
        update = _compiled(key, build)
        fn = _UPDATES[gated] = jax.jit(lambda ok, p, g, slots, hyper, platform: _gated(
            ok, lambda: update(p, g, slots, hyper), (p, slots), platform), static_argnums=(5,))
    return fn


def _gated(ok, update: Callable[[], Any], old, platform: str | None = None):
    """`update()` where the traced bool `ok` holds, else `old` (a pytree of the same
    structure); `update()` when `ok` is None. A conditional on CPU (selects there make
    XLA copy every parameter and slot); elsewhere selects, since XLA:GPU reads a
    conditional's predicate on the host. `platform` (the compiled step's) picks one; when
    it is None the choice is left to lowering (both are traced)."""
    if ok is None:
        return update()
    if platform is not None:
        return (_gated_by_conditional if platform == "cpu" else _gated_by_select)(ok, update, old)
    return jax.lax.platform_dependent(cpu=functools.partial(_gated_by_conditional, ok, update, old),
                                      default=functools.partial(_gated_by_select, ok, update, old))


def _gated_by_conditional(ok, update: Callable[[], Any], old):
    return jax.lax.cond(ok, update, lambda: old)


def _gated_by_select(ok, update: Callable[[], Any], old):
    """Every leaf a select, which fuses into the update's own loops."""
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), update(), old)


class _Builtin(Optimizer):
    """An optimizer whose per-parameter update is an optax chain with named slots."""

    _slot_attrs: tuple = ()
    _guarded_apply = True   # apply() itself keeps p and slots when a step guard fails
    _cfg: tuple   # (static configuration key, build function, hyper-parameter Tensors, slot names)

    def apply(self, param_name: str, param_value: Tensor, param_grad: Tensor) -> None:
        """Update `param_value` (and its slots) in place: one jitted call."""
        self._require_tensors(param_value, param_grad)
        self._update_one(param_value, param_grad, self._prepare(param_name, param_value, param_grad.shape))

    def __call__(self, loss: Tensor) -> None:
        """Backward from `loss`, update every parameter, then advance the step counter.

        When every operator under `loss` is a built-in one (and `call`, `apply` and `step`
        are not overridden), the backward pass, the update of every parameter and the
        counter's increment run as one jitted program.
        """
        self._require_loss(loss)
        own = type(self).call is _Builtin.call and type(self).step is Optimizer.step
        if not (own and self._fused_step(loss, advance=True)):
            super().__call__(loss)

    def call(self, loss: Tensor) -> None:
        """Backward from `loss`, then update every parameter in one jitted program.

        Each parameter is checked and gets its slots as backward yields it; the update
        runs once backward is done (no gradient depends on a parameter's new value).
        """
        self._require_loss(loss)
        if self._fused_step(loss, advance=False):
            return None
        if not self._plain(loss):
            return super().call(loss)
        from .. import autograd
        pairs = []
        for p, g in autograd.backward(loss):
            pairs.append((p, g, self._prepare(_named(p), p, g.shape)))
        if not pairs:
            return self._warn_nothing_to_update(loss)
        ok = _step_guard()
        if any(prep[0] is not None for _, _, prep in pairs):   # float32 master copies
            for p, g, prep in pairs:
                self._update_one(p, g, prep)
        else:
            key, build, hypers, _ = self._cfg
            slot_arrays = [tuple(s.data for s in prep[1]) for _, _, prep in pairs]
            new_ps, new_slots = _compiled_many(key, build, _only_held_by_slots(slot_arrays))(
                [p.data for p, _, _ in pairs], [g.data for _, g, _ in pairs], slot_arrays,
                tuple(t.data for t in hypers), ok, _guard_platform())
            _write_back([p for p, _, _ in pairs], [prep[1] for _, _, prep in pairs], new_ps, new_slots)
        if ok is not None:
            self._count_skipped(ok)

    def _plain(self, loss: Tensor) -> bool:
        """The built-in update applies as is: `apply` not overridden, no float16 loss
        scaling."""
        return (type(self).apply is _Builtin.apply and self.dtype != tensor.float16
                and loss.data.dtype != jnp.float16)

    def _fused_step(self, loss: Tensor, advance: bool) -> bool:
        """Backward from `loss` and the update of every parameter (and the counter's increment
        if `advance`) as one program; False, with nothing changed, when the tape or the
        optimizer needs the step-by-step path."""
        if not self._plain(loss):
            return False
        got = loss_plan(loss)
        if got is None:
            return False
        plan, seed = got
        program, grad_shapes = _fused_program(plan, seed, *self._cfg[:2])
        if not any(s is not None for s in grad_shapes):
            return False
        updated = [(p, shape.shape) for (p, _), shape in zip(plan.outs, grad_shapes) if shape is not None]
        if any(p.data.dtype in _LOW_PRECISION for p, _ in updated):   # float32 master copies
            return False
        pairs = [(p, self._prepare(_named(p), p, shape)) for p, shape in updated]
        slot_arrays = [tuple(s.data for s in prep[1]) for _, prep in pairs]
        donate = _only_held_by_slots(slot_arrays)
        ok = _step_guard()
        new_ps, new_slots, counter = program[donate](
            plan.parts, seed, [p.data for p, _ in pairs], slot_arrays,
            tuple(t.data for t in self._cfg[2]), self.step_counter.data, ok, advance, _guard_platform())
        _write_back([p for p, _ in pairs], [prep[1] for _, prep in pairs], new_ps, new_slots)
        if ok is not None:
            self._count_skipped(ok)
        if advance:
            self.step_counter.data = counter
            self._refresh(force=False)
        return True

    def _check_param(self, param_name: str, param_value: Tensor, grad_shape: tuple) -> None:
        self._check_update(param_name, param_value, grad_shape)

    def _prepare(self, param_name: str, param_value: Tensor, grad_shape: tuple) -> tuple:
        """Check one update and return (its float32 master slot or None, its other slots)."""
        self._check_param(param_name, param_value, grad_shape)
        self._follow(param_value)
        slot_names = tuple(self._cfg[3])
        dtype = param_value.data.dtype
        low = dtype in _LOW_PRECISION

        def make() -> list:
            # float16/bfloat16 parameters keep a float32 master copy that the update works on
            cdt, shape = _compute_dtype(dtype), param_value.shape
            return ([jnp.zeros(shape, cdt) for _ in slot_names]
                    + ([jnp.asarray(concrete(param_value), cdt)] if low else []))
        slots = self._slots(param_name, param_value, slot_names + ("master",) if low else slot_names, make)
        return (slots[-1], slots[:-1]) if low else (None, slots)

    def _update_one(self, param_value: Tensor, param_grad: Tensor, prepared: tuple) -> None:
        key, build, hypers, _ = self._cfg
        master, slots = prepared
        args = (master.data if master is not None else param_value.data, param_grad.data,
                tuple(s.data for s in slots), tuple(t.data for t in hypers))
        ok = _step_guard()
        new_p, new_slots = (_compiled(key, build)(*args) if ok is None
                            else _compiled_if(key, build)(ok, *args, _guard_platform()))
        if master is not None:
            master.data = new_p
            new_p = new_p.astype(param_value.data.dtype)
        _write_back([param_value], [slots], [new_p], [new_slots])

    def get_states(self) -> dict:
        states = super().get_states()
        for attr in self._slot_attrs + (("master",) if self.master else ()):
            states[attr] = dict(getattr(self, attr))
        return states

    def _set_states(self, states: dict) -> None:
        super()._set_states(states)
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

    def _check_param(self, param_name: str, param_value: Tensor, grad_shape: tuple) -> None:
        if param_value.dtype != self.dtype:
            raise TypeError(f"SGD.apply: parameter {param_name!r} has dtype "
                            f"{tensor.dtype_name[param_value.dtype]} but this SGD was created with "
                            f"dtype={tensor.dtype_name[self.dtype]}; pass SGD(..., "
                            f"dtype=tensor.{tensor.dtype_name[param_value.dtype]})")
        super()._check_param(param_name, param_value, grad_shape)


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
