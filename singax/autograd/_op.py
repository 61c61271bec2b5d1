"""One operator, one row: `Op` specs and `register`, which turns rows into
SINGA-style Operator classes and snake_case functions with jitted forward and
backward cached per static configuration."""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._tape import (MSG_NO_SAVED, Dummy, Operator, _none_if_float0, _ones_like_output, is_training,
                    keeps_residuals, post_order, vjp_over, yield_order)
from .._ctensor import raw
from ..tensor import Tensor
from ..tensor._tensor import _wrap

OPS: dict[str, "Op"] = {}        # snake_case name -> Op (tests walk this)
CLASSES: dict[str, type] = {}    # SINGA class name -> Operator subclass


class Op:
    """Spec of one operator.

    Args:
      name: the snake_case function name (`"relu"`).
      forward: pure JAX `forward(*arrays, **attrs)` returning an array or a tuple.
      grad: optional hand-written `grad(dy, *xs, y=..., **attrs)` returning one dx per
        input (a single dx for one input); without it the backward is `jax.vjp`.
      cls: SINGA class name (default: CamelCase of `name`).
      attrs: ordered `(attr, default)` pairs; positional constructor and function
        arguments after the tensor inputs bind to them in this order.
      inputs: number of tensor inputs, or None for varargs.
      diff: indices of inputs that get gradients (default: all); others get None.
      differentiable: False for ops SINGA gives no backward (comparisons, shape...).
      public_backward: what SINGA's low-level `op.backward(dy)` returns for such an op
        (`public_backward(dy)`; Shape: `list(dy.shape)`); the tape never calls it.
      check: `check(*arrays, **attrs)` raising a clear error before XLA sees the inputs.
      doc: the docstring of the class and the function.
      function: the public function when SINGA's signature differs from the generated
        one (`fn(*tensors, *attrs)`); it calls the generated function `register` returns.
      in_place: index of the input whose `.data` becomes the first output's (SINGA's
        in-place operators: `AddBias` writes into x).
      eager: True when the output shape depends on the input values: the forward runs
        without jit and refuses traced inputs (no backward).
      base: the `BuiltinOperator` subclass the row's class derives from, for SINGA's
        extra constructor arguments (default `BuiltinOperator`).

    The operator tests keep their samples and numpy references beside the table, in
    tests/op_specs (one `OpTest` per row).
    """

    def __init__(self, name: str, forward: Callable, grad: Callable | None = None, *,
                 cls: str | None = None, attrs: Sequence[tuple[str, Any]] = (),
                 inputs: int | None = 1, diff: Sequence[int] | None = None,
                 differentiable: bool = True, public_backward: Callable | None = None,
                 check: Callable | None = None, doc: str = "",
                 function: Callable | None = None, in_place: int | None = None, eager: bool = False,
                 base: type | None = None):
        self.name, self.forward, self.grad = name, forward, grad
        self.cls = cls or "".join(p.capitalize() for p in name.split("_"))
        self.attrs = tuple(attrs)
        self.attr_names = tuple(a for a, _ in self.attrs)
        self.inputs, self.diff, self.differentiable = inputs, diff, differentiable
        self.public_backward = public_backward
        self.check, self.doc = check, doc
        self.function, self.in_place, self.eager, self.base = function, in_place, eager, base
        self._compiled: dict[tuple, tuple] = {}

    def pure(self, *xs, **attrs):
        """The forward as a plain JAX function (what the gradient tests check)."""
        return self.forward(*xs, **{**dict(self.attrs), **attrs})

    def compiled(self, key: tuple) -> tuple:
        """(jitted forward, jitted backward, plain forward) for one attr configuration."""
        fns = self._compiled.get(key)
        if fns is None:
            attrs = dict(zip(self.attr_names, key))
            fwd = functools.partial(self.forward, **attrs)
            fns = self._compiled[key] = (jax.jit(fwd), jax.jit(self._make_backward(fwd, attrs)), fwd)
        return fns

    def _make_backward(self, fwd: Callable, attrs: dict) -> Callable:
        if self.grad is not None:
            grad = self.grad

            def bwd(xs, y, dy):
                dxs = grad(dy, *xs, y=y, **attrs)
                return dxs if isinstance(dxs, tuple) else (dxs,)
            return bwd

        def bwd(xs, y, dy):
            diff = self._diff_indices(xs)
            _, pull = vjp_over(fwd, xs, diff)
            got = pull(dy)
            dxs = [None] * len(xs)
            for i, g in zip(diff, got):
                dxs[i] = g
            return tuple(dxs)
        return bwd

    def _diff_indices(self, xs) -> list[int]:
        idx = range(len(xs)) if self.diff is None else self.diff
        return [i for i in idx if i < len(xs) and jnp.issubdtype(jnp.asarray(xs[i]).dtype, jnp.inexact)]


def _static(v: Any) -> Any:
    """A hashable form of an attribute value (lists and arrays become tuples)."""
    if isinstance(v, Tensor):
        v = v.data
    if isinstance(v, (list, tuple)):
        return tuple(_static(e) for e in v)
    if isinstance(v, np.ndarray):
        return _static(v.tolist())
    if isinstance(v, jax.Array) and not isinstance(v, jax.core.Tracer):
        return _static(np.asarray(v).tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


def _shapes(xs) -> str:
    return ", ".join(f"{tuple(x.shape)} {x.dtype}" for x in xs)


class BuiltinOperator(Operator):
    """Operator built from an `Op` row: forward/backward are the row's jitted functions."""

    spec: Op
    _builtin = True

    def __init__(self, *args, name: str | None = None, **kwargs):
        super().__init__(name)
        spec = self.spec
        if not (args or kwargs or spec.attrs):
            return
        if len(args) > len(spec.attr_names):
            raise TypeError(f"{spec.cls}: takes at most {len(spec.attr_names)} arguments "
                            f"({', '.join(spec.attr_names)}), got {len(args)}")
        values = dict(spec.attrs)
        values.update(zip(spec.attr_names, args))
        for k, v in kwargs.items():
            if k not in values:
                raise TypeError(f"{spec.cls}: unexpected argument {k!r}; expected {', '.join(spec.attr_names)}")
            values[k] = v
        self.__dict__.update(values)

    def _key(self) -> tuple:
        names = self.spec.attr_names
        if not names:
            return ()
        d = self.__dict__
        return tuple([_static(d[a]) for a in names])

    def _forward_raw(self, *xs):
        spec = self.spec
        key = self._key()
        fwd, _, plain = spec.compiled(key)
        if spec.check is not None:
            spec.check(*xs, **dict(zip(spec.attr_names, key)))
        keep = spec.differentiable and getattr(self, "requires_grad", True) and is_training()
        try:
            if spec.grad is None and keeps_residuals(keep, xs):
                diff = spec._diff_indices(xs)
                ys, pull = vjp_over(plain, xs, diff)
                self._pullback, self._diff, self._n = pull, diff, len(xs)
            else:
                ys = fwd(*xs)
        except (TypeError, ValueError) as err:
            if "Tracer" in type(err).__name__ or "Concretization" in type(err).__name__:
                raise
            raise ValueError(f"{spec.name}: cannot apply to inputs {_shapes(xs)}"
                             f"{self._attr_text()}: {err}") from None
        if keep:
            self._saved, self._ys = xs, ys
        return ys

    def _attr_text(self) -> str:
        if not self.spec.attr_names:
            return ""
        return " with " + ", ".join(f"{a}={self.__dict__[a]!r}" for a in self.spec.attr_names)

    def forward(self, *xs):
        return self._forward_raw(*xs)

    def _backward_raw(self, *dys):
        spec = self.spec
        if not spec.differentiable:
            raise RuntimeError(f"{spec.cls}: this operator has no gradient (as in SINGA)")
        saved = self.__dict__.get("_saved")
        if saved is None:
            raise RuntimeError(MSG_NO_SAVED.format(op=self.name))
        ys = self._ys
        dy = dys if isinstance(ys, tuple) else dys[0]
        if isinstance(ys, tuple):
            dy = tuple(jnp.zeros_like(y) if d is None else _like(d, y) for d, y in zip(dys, ys))
        else:
            dy = _like(dy, ys)
        pull = self.__dict__.get("_pullback")
        if pull is not None:
            got = pull(dy)
            dxs = [None] * self._n
            for i, g in zip(self._diff, got):
                dxs[i] = g
            return tuple(dxs)
        _, bwd, _ = spec.compiled(self._key())
        return tuple(_none_if_float0(d) for d in bwd(tuple(saved), ys, dy))


def _builtin_fusable(op) -> "tuple | None":
    d = op.__dict__
    if (d.get("_saved") is None or d.get("_pullback") is not None or not op.spec.differentiable
            or type(op).backward is not BuiltinOperator.backward):
        return None
    return (_builtin_vjp, op.spec, op._key()), tuple(d["_saved"]), d["_ys"]


def _builtin_vjp(static: tuple, saved: tuple, ys, dys: list) -> tuple:
    """A registry operator's backward inside the fused program (as `BuiltinOperator.backward`)."""
    _, spec, key = static
    if isinstance(ys, tuple):
        dy = tuple(jnp.zeros_like(y) if d is None else _like(d, y) for d, y in zip(dys, ys))
    else:
        dy = _like(dys[0], ys)
    return spec.compiled(key)[1](saved, ys, dy)


BuiltinOperator._fusable = _builtin_fusable


def _like(dy, y):
    """dy as an array of y's shape and dtype (a Python float dy comes from SINGA's backward)."""
    if getattr(dy, "shape", None) == y.shape and getattr(dy, "dtype", None) == y.dtype:
        return dy
    return jnp.broadcast_to(jnp.asarray(dy, y.dtype), y.shape)


def _public_backward(spec: Op) -> Callable:
    def backward(self, dy: Any = 1.0, *more: Any):
        return spec.public_backward(raw(dy), *[raw(d) for d in more])
    backward.__doc__ = f"SINGA's low-level backward of {spec.cls}: {spec.public_backward.__doc__ or ''}"
    return backward


class _Plan(NamedTuple):
    """A tape whose operators all run registry backwards, as one program's signature."""
    ops: list        # the operators, sources before their consumers
    key: tuple       # per operator: class, configuration, saved and output shapes, wiring
    outs: list       # (tensor, gradient name) per tensor that gets a gradient (stores_grad)
    parts: list      # per operator: (saved arrays, outputs), the program's arguments


_FUSED: dict[tuple, Callable] = {}
_YIELD_RANKS: dict[tuple, list] = {}   # per plan key: plan.outs indices in SINGA's yield order


def fused_backward(root: Operator, dy) -> "Iterator | None":
    """The whole backward pass under `root` as one jitted program per tape signature,
    yielding `(tensor, grad)` like `autograd.backward`; None when an operator must run its
    own backward (a custom operator, a traced pullback, forward run without training)."""
    plan = _plan(root)
    if plan is None:
        return None
    return _run_plan(plan, dy, root)


def _plan(root: Operator) -> "_Plan | None":
    if getattr(root, "_fusable", None) is None or not root.requires_grad:
        return None
    order = [op for op in post_order([root]) if op.requires_grad and not isinstance(op, Dummy)]
    index = {id(op): i for i, op in enumerate(order)}
    key, parts, outs, out_of = [], [], [], {}
    for op in order:
        fusable = getattr(op, "_fusable", None)
        part = fusable() if fusable is not None else None
        if part is None:
            return None
        static, saved, ys = part
        wiring = []
        for src_op, x_id, x, stores in op.src:
            i = index.get(id(src_op))
            j = src_op.y_id2idx[x_id] if i is not None else -1
            n = -1
            if stores and (i is not None or isinstance(src_op, Dummy)):
                n = out_of.get(x_id)
                if n is None:
                    n = out_of[x_id] = len(outs)
                    outs.append((x, src_op.grad_name(max(j, 0))))
            wiring.append((i, j, n))
        many = isinstance(ys, tuple)
        key.append((static, _avals(saved) + _avals(ys if many else (ys,)), len(ys) if many else 1,
                    tuple(wiring)))
        parts.append((saved, ys))
    return _Plan(order, tuple(key), outs, parts)


def _avals(arrays: tuple) -> tuple:
    """The abstract values of a tuple of arrays (nested tuples and None allowed)."""
    try:
        return tuple([a.aval for a in arrays if a is not None])
    except AttributeError:
        return tuple([a.aval for a in jax.tree.leaves(arrays)])


def loss_plan(y: Tensor) -> "tuple[_Plan, Any] | None":
    """`(plan, seed)` for the fused backward from a one-element `y` that stores no gradient
    itself, as `autograd.backward(y)` would run it; None when backward must walk the tape."""
    if y.stores_grad or y.size() != 1:
        return None
    plan = _plan(y.creator)
    return None if plan is None else (plan, _ones_like_output(y))


def plan_gradients(plan: _Plan) -> Callable:
    """The pure `(plan.parts, seed) -> gradients` of `plan`, one per `plan.outs` (None where
    an output gets no gradient); to be traced inside a larger program."""
    return _program(plan.key, len(plan.outs))


def _run_plan(plan: _Plan, dy, root: Operator) -> Iterator:
    fn = _FUSED.get(plan.key)
    if fn is None:
        fn = _FUSED[plan.key] = jax.jit(_program(plan.key, len(plan.outs)))
    ranks = _YIELD_RANKS.get(plan.key)
    if ranks is None:
        position = {x_id: k for k, x_id in enumerate(yield_order(root))}
        ranks = _YIELD_RANKS[plan.key] = sorted(range(len(plan.outs)),
                                                key=lambda n: position.get(id(plan.outs[n][0]), len(position)))
    grads = fn(plan.parts, dy)
    for n in ranks:
        (x, name), g = plan.outs[n], grads[n]
        if g is not None:
            yield x, _wrap(g, x.device, False, name=name)


def _program(key: tuple, n_outs: int) -> Callable:
    """The pure `(saved parts, dy) -> gradients` of a tape signature."""

    def program(parts, dy):
        slots = [[None] * k[2] for k in key]
        slots[-1][0] = dy
        grads = [None] * n_outs
        for k in range(len(key) - 1, -1, -1):
            static, _, _, wiring = key[k]
            if all(d is None for d in slots[k]):
                continue
            saved, ys = parts[k]
            dxs = static[0](static, saved, ys, slots[k])
            for (i, j, n), dx in zip(wiring, dxs):
                if dx is None or getattr(dx, "dtype", None) == jax.dtypes.float0:
                    continue
                if i is not None:
                    slots[i][j] = dx if slots[i][j] is None else slots[i][j] + dx
                elif n >= 0:
                    grads[n] = dx if grads[n] is None else grads[n] + dx
        for _, _, _, wiring in key:
            for i, j, n in wiring:
                if i is not None and n >= 0:
                    grads[n] = slots[i][j]
        return grads
    return program


_FIRST_INPUT_NAMES = frozenset({"x", "a", "x1", "lhs", "input", "data"})


def _keyword_tensors(spec: Op, args: tuple, kwargs: dict, n: int) -> tuple:
    """`args` completed with the tensor inputs given by keyword (`relu(x=t)`, `matmul(x, w=W)`):
    the Tensor-valued keywords that are not attributes, a first-input name (x, a, ...) first."""
    names = [k for k, v in kwargs.items() if isinstance(v, Tensor) and k not in spec.attr_names]
    names.sort(key=lambda k: k not in _FIRST_INPUT_NAMES)
    return args + tuple(kwargs.pop(k) for k in names[:n - len(args)])


def _make_function(spec: Op, cls: type) -> Callable:
    n = spec.inputs

    def fn(*args, **kwargs):
        if n is not None and len(args) < n and kwargs:
            args = _keyword_tensors(spec, args, kwargs, n)
        if n is None:
            tensors, rest = [a for a in args if isinstance(a, Tensor)], [a for a in args if not isinstance(a, Tensor)]
        else:
            if len(args) < n:
                raise TypeError(f"{spec.name}: expected {n} tensor inputs, got {len(args)}")
            tensors, rest = args[:n], args[n:]
        ys = cls(*rest, **kwargs)(*tensors)
        return ys[0] if len(ys) == 1 else ys

    fn.__name__ = fn.__qualname__ = spec.name
    fn.__doc__ = spec.doc or f"Apply the `{spec.cls}` operator."
    return fn


class _InPlaceOperator(BuiltinOperator):
    """A row with `in_place`: that input's `.data` becomes the first output's, as SINGA
    writes into the input's own storage."""

    def _do_forward(self, *xs: Tensor) -> tuple:
        ys = super()._do_forward(*xs)
        xs[self.spec.in_place].data = ys[0].data
        return ys


class _EagerOperator(BuiltinOperator):
    """A row with `eager`: its output shape depends on the input values, so it runs
    without jit and cannot be traced."""

    def _forward_raw(self, *xs):
        spec = self.spec
        if any(isinstance(x, jax.core.Tracer) for x in xs):
            raise ValueError(f"{spec.name}: the output shape depends on the input values, so it "
                             "cannot run inside a traced step (Model.compile / jax.jit)")
        return spec.forward(*xs, **dict(zip(spec.attr_names, self._key())))


def _class_of(spec: Op) -> type:
    """The row's Operator class: its `base` with the in-place and eager behaviours it asks for."""
    kinds = [k for k, on in ((_InPlaceOperator, spec.in_place is not None), (_EagerOperator, spec.eager)) if on]
    base = spec.base or BuiltinOperator
    doc = spec.doc or (base.__doc__ if spec.base else None)
    return type(spec.cls, (*kinds, base), {"spec": spec, "__doc__": doc, "__module__": "singax.autograd"})


def register(*specs: Op, export: list | None = None):
    """Create the Operator class and the generated function of each row; return the
    generated functions.

    A row's public function (`spec.function`) is its `function` column if it has one (a
    wrapper with SINGA's signature that calls the generated function), else the generated
    one. `export` is the calling family's `__all__`: each row's name is appended to it.
    """
    fns = []
    for spec in specs:
        if export is not None:
            export.append(spec.name)
        cls = _class_of(spec)
        if spec.public_backward is not None:   # set after creation, so the tape's backward stays
            cls.backward = _public_backward(spec)
        OPS[spec.name] = spec
        CLASSES[spec.cls] = cls
        spec.op_class = cls
        fn = _make_function(spec, cls)
        spec.function = spec.function or fn
        fns.append(fn)
    return fns[0] if len(fns) == 1 else tuple(fns)
