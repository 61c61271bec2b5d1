"""Losses: each returns a shape-(1,) tensor.

The target `t` is a constructor argument kept as the raw array `.t`, never an op
input, so it gets no gradient. Forward and backward are one jitted pure function
per loss and its jitted `jax.vjp`.

SINGA: the gradients come from autodiff, so they scale with dy (`backward(loss,
dy=2.0)`, `mul(loss, c)`); SINGA's loss ops ignore dy.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._handle import StateLog
from ._op import CLASSES, Op, register
from ._tape import OperandError
from .nn import _PureOperator
from ..tensor import Tensor

# the hand-written names; `register(..., export=__all__)` adds each row's name
__all__: list[str] = [
    "SoftMaxCrossEntropy", "softmax_cross_entropy", "CrossEntropy", "cross_entropy",
    "BinaryCrossEntropy", "binary_cross_entropy", "MeanSquareError", "mse_loss", "RankingLoss",
]

_LOG_FLT_MIN = float(np.log(np.finfo(np.float32).tiny))  # SINGA clamps p at FLT_MIN
_HALF = (jnp.float16, jnp.bfloat16)


def _accumulating(fn):
    """`fn(x, t)` computed in float32 for float16/bfloat16 `x`; the loss keeps x's dtype."""
    def loss(static, xs, consts):
        (x,), (t,) = xs, consts
        dtype = x.dtype
        if dtype in _HALF:
            x = x.astype(jnp.float32)
        return fn(x, t).reshape(1).astype(dtype), None
    return loss


def _clamped_value(logp):
    """`logp` with its value clamped at log(FLT_MIN) and its gradient left unclamped."""
    return logp + jax.lax.stop_gradient(jnp.maximum(logp, _LOG_FLT_MIN) - logp)


@_accumulating
def _softmax_ce(x, t):
    logp = jax.nn.log_softmax(x, axis=1)
    n = x.shape[0]
    if t.size == n:  # integer class ids: gather the picked log-probabilities
        picked = jnp.take_along_axis(logp, t.reshape(-1, 1).astype(jnp.int32), axis=1)
        return -jnp.sum(_clamped_value(picked)) / n
    t = t.astype(x.dtype)
    t = t / jnp.sum(t, axis=1, keepdims=True)
    return -jnp.sum(t * _clamped_value(logp)) / n


@_accumulating
def _cross_entropy(x, t):
    return -jnp.sum(t.astype(x.dtype) * jnp.log(x)) / x.shape[0]


@_accumulating
def _binary_cross_entropy(x, t):
    t = t.astype(x.dtype)
    return -jnp.sum(t * jnp.log(x + 1e-4) + (1 - t) * jnp.log(1.0001 - x)) / x.shape[0]


@_accumulating
def _mse(x, t):
    return jnp.sum((x - t.astype(x.dtype)) ** 2) / x.size


def _guard_labels(labels, classes: int) -> None:
    """Inside a compiled step: gate the step's updates on every label being in [0, classes)."""
    log = StateLog.active
    if log is not None:
        log.guards.append(jnp.all((labels >= 0) & (labels < classes) & (labels == jnp.round(labels))))


def _array_of(t: Any):
    if isinstance(t, Tensor):
        return t.data
    return t if isinstance(t, (jax.Array, jax.core.Tracer)) else jnp.asarray(np.asarray(t))


class _Loss(_PureOperator):
    """A loss `fn(x; t)` with the target stored as `.t`; backward gives dx only."""

    _fn = None
    _save_always = True   # SINGA's losses keep their internals in eval mode too

    def __init__(self, t: Any, name: str | None = None):
        super().__init__(name)
        self.t = _array_of(t)

    def _check(self, x, t) -> None:
        if x.shape != t.shape:
            raise OperandError(f"{type(self).__name__}: expected target of shape {tuple(x.shape)}, "
                             f"got {tuple(t.shape)}")

    def forward(self, x):
        """The loss, shape (1,); float16/bfloat16 inputs are reduced in float32."""
        t = self.t
        self._check(x, t)
        return self._run(type(self)._fn, (), (x,), (t,))[0]


class SoftMaxCrossEntropy(_Loss):
    """Mean over rows of -log softmax(x)[target] for logits x (N, C).

    `t` holds int class ids when `t.size == N` ((N,) or (N, 1)); otherwise it is a dense
    (N, C) target whose rows are normalised to sum 1. The reported log-probabilities are
    clamped at log(FLT_MIN); the gradient is always softmax(x) - target. Labels out of
    [0, C) raise ValueError in eager mode. In a compiled step (no host sync) they make
    the loss NaN and the optimizer skip that step's update; the Model raises on a later
    call (see `Model.label_check_interval`).

    SINGA: dense targets are read through an int pointer (only exact one-hot rows work).
    """

    _fn = staticmethod(_softmax_ce)

    def _check(self, x, t) -> None:
        if x.ndim != 2:
            raise OperandError(f"SoftMaxCrossEntropy: expected 2-D logits (N, C), got shape {tuple(x.shape)}")
        if t.size == x.shape[0]:
            if isinstance(t, jax.core.Tracer):
                _guard_labels(t, x.shape[1])
            else:
                labels = np.asarray(t)
                whole = labels.dtype.kind in "iub" or not np.any(labels != np.round(labels))
                if labels.size and (labels.min() < 0 or labels.max() >= x.shape[1] or not whole):
                    raise ValueError(f"SoftMaxCrossEntropy: labels must be integers in [0, {x.shape[1]}), "
                                     f"got values in [{labels.min()}, {labels.max()}]")
        elif tuple(t.shape) != tuple(x.shape):
            raise OperandError(f"SoftMaxCrossEntropy: expected {x.shape[0]} int labels or a dense target of "
                             f"shape {tuple(x.shape)}, got target shape {tuple(t.shape)}")


class CrossEntropy(_Loss):
    """-sum(t * log(x)) / N for probabilities x (N, C) and a dense target of the same shape.

    No clamp: log(0) gives inf, as in SINGA.
    SINGA: a Tensor dy makes backward return None; singax returns dy-scaled dx.
    """

    _fn = staticmethod(_cross_entropy)

    def _check(self, x, t) -> None:
        if x.ndim != 2:
            raise OperandError(f"CrossEntropy: expected 2-D probabilities (N, C), got shape {tuple(x.shape)}")
        super()._check(x, t)


class BinaryCrossEntropy(_Loss):
    """-sum(t*log(x + 1e-4) + (1 - t)*log(1.0001 - x)) / N, with N = x.shape[0].

    SINGA: its backward uses 0.9998 where the forward has 1.0001 (not the derivative of
    its forward); singax's dx is the exact derivative of this forward.
    """

    _fn = staticmethod(_binary_cross_entropy)


class MeanSquareError(_Loss):
    """sum((x - t)**2) / x.size over all elements; t is x's shape or broadcasts to it
    (e.g. a (N, 1) target against (N, C)), as SINGA's subtraction does."""

    _fn = staticmethod(_mse)

    def _check(self, x, t) -> None:
        try:
            fits = np.broadcast_shapes(tuple(t.shape), tuple(x.shape)) == tuple(x.shape)
        except ValueError:
            fits = False
        if not fits:
            raise OperandError(f"MeanSquareError: expected target of shape {tuple(x.shape)} or one that "
                             f"broadcasts to it, got {tuple(t.shape)}")


def softmax_cross_entropy(x: Tensor, t: Any) -> Tensor:
    """Softmax cross-entropy of logits `x` (N, C) with int labels or a dense target; shape (1,)."""
    return SoftMaxCrossEntropy(t)(x)[0]


def cross_entropy(x: Tensor, t: Any) -> Tensor:
    """Cross-entropy of probabilities `x` with a dense target `t`; shape (1,)."""
    return CrossEntropy(t)(x)[0]


def binary_cross_entropy(x: Tensor, t: Any) -> Tensor:
    """Binary cross-entropy of probabilities `x` with targets `t`; shape (1,)."""
    return BinaryCrossEntropy(t)(x)[0]


def mse_loss(x: Tensor, t: Any) -> Tensor:
    """Mean squared error over all elements; shape (1,)."""
    return MeanSquareError(t)(x)[0]


def _ranking(pos, neg, *, M=0.2):
    return (jnp.sum(jnp.maximum(0.0, M - pos + neg)) / pos.shape[0]).reshape(1)


def _ranking_check(pos, neg, *, M=0.2):
    if pos.shape != neg.shape:
        raise OperandError(f"ranking_loss: pos and neg must have the same shape, got {tuple(pos.shape)} "
                         f"and {tuple(neg.shape)}")


ranking_loss = register(Op(
    "ranking_loss", _ranking, cls="RankingLoss", inputs=2, attrs=(("M", 0.2),),
    check=_ranking_check,
    doc="Margin ranking loss sum(max(0, M - pos + neg)) / pos.shape[0], shape (1,). "
        "SINGA: ignores dy and asserts training; singax scales by dy and works in eval too."),
    export=__all__)
RankingLoss = CLASSES["RankingLoss"]
