"""SINGA's tape: Operator records its inputs; backward() walks them in reverse."""
from __future__ import annotations

import sys
from collections import Counter
from typing import Any, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._ctensor import CTensor, raw
from .._handle import is_tracer
from .._messages import TypeAssertionError, ValueAssertionError
from ..tensor._tensor import Tensor, _wrap

MSG_NO_SAVED = ("{op}: backward needs values saved by forward, but forward ran with "
                "autograd.training = False; set autograd.training = True (or call "
                "model.train()) before the forward pass")


class OperandError(ValueAssertionError):
    """Operator inputs of incompatible shapes or values. SINGA checks these with `assert`,
    so this is also an AssertionError: code written for either exception catches it."""


def is_training() -> bool:
    return sys.modules["singax.autograd"].training


class Source(NamedTuple):
    """One input of an operator as the tape records it (SINGA's 4-tuple in `op.src`)."""
    op: Any              # the input's creator (an Operator, or a Dummy for a leaf)
    x_id: int            # id() of the input Tensor
    tensor: Any          # the input Tensor when it stores its gradient, else None
    stores_grad: bool


_new_source = tuple.__new__   # Source's fields without its Python-level constructor


class Operator:
    """Base of every autograd operator (SINGA 2 name: `Operation`).

    Subclasses implement `forward(*arrays)` and, optionally, `backward(*dys)` on raw
    jax arrays. A subclass without `backward` gets one from `jax.vjp` of its forward.
    The tape calls `_backward_raw` (a subclass's own `backward`, else the derived one);
    the public `backward` of singax's operators is SINGA's low-level call (see there).
    """

    op_count = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("backward")
        if own is not None:
            cls._backward_raw = own

    def __init__(self, name: str | None = None):
        if name is None:
            name = f"{type(self).__name__}#{Operator.op_count}"
            Operator.op_count += 1
        self.name = name

    def __call__(self, *xs: Tensor) -> tuple:
        return self._do_forward(*xs)

    def output_name(self, idx: int) -> str:
        return f"{self.name}:{idx}"

    def grad_name(self, idx: int) -> str:
        return f"{self.name}:{idx}_g"

    def get_params(self) -> list:
        return []

    def _do_forward(self, *xs: Tensor) -> tuple:
        src, arrays, grad = [], [], False
        for i, x in enumerate(xs):
            if not isinstance(x, Tensor):
                raise TypeError(f"{type(self).__name__}: input {i} must be a Tensor, got {type(x).__name__}")
            stores = x.stores_grad
            if x.requires_grad:
                grad = True
            src.append(_new_source(Source, (x.creator, id(x), x if stores else None, stores)))
            arrays.append(x.data)
        self.requires_grad, self.src = grad, src
        ys = self._forward_raw(*arrays)
        dev = xs[0].device if xs else None
        if not isinstance(ys, tuple):
            ys = (ys,)
        outs = tuple([_wrap(y, dev, grad, self, self.output_name(i)) for i, y in enumerate(ys)])
        self.y_id2idx = {id(y): i for i, y in enumerate(outs)}
        return outs

    def _forward_raw(self, *arrays):
        # Built-in operators override this; a user operator without backward
        # gets jax.vjp of its forward recorded while training.
        if type(self)._backward_raw is not Operator._backward_raw or not (is_training() and self.requires_grad):
            return self.forward(*arrays)
        ys, self._pullback = vjp_over(self.forward, arrays, range(len(arrays)))
        self._multi_out = isinstance(ys, tuple)
        return ys

    def _do_backward(self, *dys) -> tuple:
        dxs = self._backward_raw(*dys)
        if not isinstance(dxs, tuple):
            dxs = (dxs,)
        return dxs

    def forward(self, *xs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, dy: Any = 1.0, *more: Any):
        """SINGA's low-level backward: gradients of the inputs given `dy` (default 1.0).

        `dy` may be a number, a jax array, a CTensor or a Tensor. Returns CTensors
        (`shape()`, `GetFloatValue(n)`...; `tensor.from_raw_tensor` takes them): the bare
        gradient for a one-input operator, a tuple otherwise. An input the tape gives no
        gradient (indices, a condition) gets zeros of its shape where forward saved it
        (None otherwise), as SINGA returns a tensor per input.
        """
        dxs = self._backward_raw(raw(dy), *[raw(d) for d in more])
        if not isinstance(dxs, (tuple, list)):
            return CTensor.view(dxs)
        views = tuple(CTensor.view(d) if d is not None else self._zero_grad(i) for i, d in enumerate(dxs))
        return views[0] if len(views) == 1 else views

    def _zero_grad(self, i: int):
        saved = self.__dict__.get("_saved")
        if not isinstance(saved, tuple) or i >= len(saved) or not hasattr(saved[i], "shape"):
            return None
        dt = saved[i].dtype if jnp.issubdtype(saved[i].dtype, jnp.floating) else jnp.float32
        return CTensor.view(jnp.zeros(saved[i].shape, dt))

    def _backward_raw(self, *dys):
        # Auto-derived backward for user operators that only define forward.
        pullback = getattr(self, "_pullback", None)
        if pullback is None:
            raise RuntimeError(MSG_NO_SAVED.format(op=self.name))
        dxs = pullback(dys if self._multi_out else dys[0])
        return tuple(_none_if_float0(d) for d in dxs)


def keeps_residuals(keep: bool, xs: Sequence) -> bool:
    """Whether forward should record its vjp pullback: while keeping values for backward
    inside a trace (Model.compile), where backward then reuses the forward's residuals."""
    return keep and any(is_tracer(x) for x in xs)


def vjp_over(f, xs: Sequence, diff: Sequence[int], has_aux: bool = False) -> tuple:
    """`jax.vjp` of `f(*xs)` with respect to the inputs at `diff`, the others held fixed:
    `(ys, pullback)`, or `(ys, pullback, aux)` with `has_aux`. The one place operators
    record a pullback (user operators without backward, and every operator in a trace)."""
    diff = list(diff)
    held = list(xs)

    def partial(*d):
        for i, v in zip(diff, d):
            held[i] = v
        return f(*held)
    return jax.vjp(partial, *[xs[i] for i in diff], has_aux=has_aux)


def _none_if_float0(d):
    return None if getattr(d, "dtype", None) == jax.dtypes.float0 else d


Operation = Operator


class Dummy(Operator):
    """Leaf operator: the creator of tensors that no operator produced."""

    def __init__(self, tensor: Tensor, name: str | None = None):
        self.name = name if name is not None else tensor.name
        self.src = []
        self.y_id2idx = {id(tensor): 0}
        self.requires_grad = False
        self.tensor = tensor

    def output_name(self, idx: int) -> str:
        return self.name

    def grad_name(self, idx: int) -> str:
        return f"{self.name}_g"

    def __getattr__(self, attr):
        if attr in ("tensor", "__setstate__", "__deepcopy__"):
            raise AttributeError(attr)
        return getattr(self.tensor, attr)


def post_order(roots: Sequence[Operator]) -> list[Operator]:
    """Operators reachable from `roots`, each after all its sources (leaves in DFS order)."""
    order, seen = [], set()
    for root in roots:
        if id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(getattr(root, "src", [])))]
        while stack:
            op, it = stack[-1]
            for src_op, *_ in it:
                if id(src_op) not in seen:
                    seen.add(id(src_op))
                    stack.append((src_op, iter(getattr(src_op, "src", []))))
                    break
            else:
                stack.pop()
                order.append(op)
    return order


def infer_dependency(op: Operator) -> tuple[Counter, Counter]:
    """Count, for every op reachable from `op`, how often it is a source, and
    for every tensor id how many consumers it has."""
    op_count: Counter = Counter()
    tensor_count: Counter = Counter()
    for cur in post_order([op]):
        for src in cur.src:
            op_count[src.op] += 1
            tensor_count[src.x_id] += 1
    return op_count, tensor_count


def yield_order(root: Operator) -> list[int]:
    """The ids of the tensors `backward` yields from `root`, in SINGA's order: the tape
    walked from the output with a stack (last ready operator first), each tensor yielded
    once its last consumer ran."""
    op_dep, tensor_dep = infer_dependency(root)
    ready, order = [root], []
    while ready:
        op = ready.pop()
        if not op.requires_grad or isinstance(op, Dummy):
            continue
        for src_op, x_id, _, x_stores_grad in op.src:
            if isinstance(src_op, Dummy) and not x_stores_grad:
                continue
            op_dep[src_op] -= 1
            tensor_dep[x_id] -= 1
            if x_stores_grad and tensor_dep[x_id] == 0:
                order.append(x_id)
            if op_dep[src_op] == 0 and src_op.requires_grad and not isinstance(src_op, Dummy):
                ready.append(src_op)
    return order


_SEEDS: dict[tuple, jax.Array] = {}   # the ones that start backward from a loss, per (shape, dtype, device)


def _ones_like_output(y: Tensor):
    """Ones of y's shape and dtype; cached, since every backward from a loss starts there (the
    array never leaves the tape: y itself stores no gradient, and no program donates it)."""
    data = y.data
    if y.stores_grad or is_tracer(data):
        return jnp.ones(data.shape, data.dtype)
    key = (data.shape, data.dtype, y.device)
    seed = _SEEDS.get(key)
    if seed is None:
        seed = _SEEDS[key] = jnp.ones(data.shape, data.dtype, device=y.device.jax_device)
    return seed


def _as_array(dy, y: Tensor):
    """`dy` as an array of y's shape: a number fills it, a one-element dy of a one-element y
    is reshaped (a (1, 1) dy for a (1,) loss), and any other shape must broadcast to it."""
    if dy is None:
        return _ones_like_output(y)
    if isinstance(dy, (int, float)):
        return jnp.full(y.shape, dy, y.data.dtype)
    arr = dy.data if isinstance(dy, Tensor) else jnp.asarray(dy)
    if arr.shape == y.shape:
        return arr
    if arr.size == y.size() == 1:
        return arr.reshape(y.shape)
    try:
        if np.broadcast_shapes(arr.shape, y.shape) == y.shape:
            return jnp.broadcast_to(arr, y.shape)
    except ValueError:
        pass
    raise OperandError(f"backward: dy of shape {arr.shape} does not fit y of shape {y.shape}")


def backward(y: Tensor, dy: Any = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield `(param, grad)` for every tensor with `stores_grad` that `y` depends on.

    Gradients of tensors used several times are summed; each parameter is yielded
    once, after all its consumers ran backward, so updating it while iterating is safe.
    The values forward saved stay with the graph, so backward may run again over the
    same graph (same gradients); they are freed with the graph once no tensor of it
    is referenced.

    SINGA: `dy` may be any shape-compatible value; a non-scalar `y` needs `dy`.
    """
    if not isinstance(y, Tensor):
        raise TypeAssertionError(f"backward: expected a Tensor, got {type(y).__name__}")
    if dy is None and y.size() != 1:
        raise OperandError(f"backward: y must have exactly one element (got shape {y.shape}); "
                           "pass dy for a non-scalar output")
    dy = _as_array(dy, y)
    if y.stores_grad:
        yield y, Tensor(device=y.device, data=dy, requires_grad=False, name=y.creator.grad_name(0))
    fused = sys.modules["singax.autograd._op"].fused_backward(y.creator, dy)
    if fused is not None:
        yield from fused
        return
    op_dep, tensor_dep = infer_dependency(y.creator)
    ready = [(y.creator, [dy] + [None] * (len(y.creator.y_id2idx) - 1))]
    pending: dict[int, list] = {}
    while ready:
        op, dys = ready.pop()
        if not op.requires_grad or isinstance(op, Dummy):
            continue
        dxs = op._do_backward(*dys)
        if len(dxs) != len(op.src):
            raise RuntimeError(f"{op.name}: backward returned {len(dxs)} gradients for {len(op.src)} inputs")
        op.src_done = True
        for (src_op, x_id, x, x_stores_grad), dx in zip(op.src, dxs):
            if isinstance(src_op, Dummy) and not x_stores_grad:
                continue
            slot = pending.get(id(src_op))
            if slot is None:
                slot = pending[id(src_op)] = [None] * len(src_op.y_id2idx)
            if dx is not None:
                idx = src_op.y_id2idx[x_id]
                slot[idx] = dx if slot[idx] is None else slot[idx] + dx
            op_dep[src_op] -= 1
            tensor_dep[x_id] -= 1
            if x_stores_grad and tensor_dep[x_id] == 0 and slot[src_op.y_id2idx[x_id]] is not None:
                g = slot[src_op.y_id2idx[x_id]]
                yield x, _wrap(g, x.device, False, name=src_op.grad_name(src_op.y_id2idx[x_id]))
            if op_dep[src_op] == 0:
                del pending[id(src_op)]
                if src_op.requires_grad and not isinstance(src_op, Dummy):
                    ready.append((src_op, slot))


def gradients(y: Tensor, dy: Any = None) -> dict[int, Tensor]:
    """`{id(param): grad}` over `backward(y, dy)`."""
    return {id(p): g for p, g in backward(y, dy)}


def axis_helper(y_shape, x_shape) -> tuple:
    """Axes of `y_shape` along which `x_shape` was broadcast (right-aligned)."""
    y_shape, x_shape = tuple(y_shape), tuple(x_shape)
    lead = len(y_shape) - len(x_shape)
    return tuple(i for i in range(len(y_shape))
                 if i < lead or (x_shape[i - lead] == 1 and y_shape[i] != 1))


def back_broadcast(y_shape, x_shape, raw):
    """Sum a gradient of shape `y_shape` back to `x_shape`."""
    axes = axis_helper(y_shape, x_shape)
    if axes:
        raw = jnp.sum(raw, axis=axes)
    return jnp.reshape(raw, x_shape)


def ctensor2numpy(raw):
    import numpy as np
    return np.asarray(raw)
