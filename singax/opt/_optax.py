"""`Optax`: any optax GradientTransformation behind SINGA's optimizer interface."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from .. import tensor
from ..tensor import Tensor
from .._handle import is_tracer
from ._base import Optimizer, _compute_dtype, _named


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
        from .. import autograd
        self._require_loss(loss)
        pairs = []
        for p, g in autograd.backward(loss):
            pairs.append((_named(p), p, g))
        if pairs:
            self._apply_all(pairs)

    def apply(self, param_name: str, param_value: Tensor, param_grad: Tensor) -> None:
        """Update one parameter (global transforms see only this parameter)."""
        self._apply_all([(param_name, param_value, param_grad)])

    def get_states(self) -> dict:
        states = super().get_states()
        states["state"] = {name: dict(slots) for name, slots in self.state.items()}
        return states

    def _set_states(self, states: dict) -> None:
        super()._set_states(states)
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
            p0 = jnp.zeros(param.shape, cdt) if is_tracer(data) else data.astype(cdt)
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
