"""Reductions: sums, means and maxima over axes (one table)."""
from __future__ import annotations


import jax.numpy as jnp
import numpy as np

from ._op import Op, register

# the hand-written names; `register(..., export=__all__)` adds each row's name
__all__: list[str] = []


def _reduce_axes(op: str, axes, rank: int) -> tuple:
    """Normalised, sorted axes (None = all; an int is one axis)."""
    if axes is None:
        return tuple(range(rank))
    axes = [axes] if isinstance(axes, (int, np.integer)) else list(axes)
    out = []
    for a in axes:
        if not -rank <= int(a) < rank:
            raise ValueError(f"{op}: axis {a} out of range for a {rank}-d input")
        out.append(int(a) % rank)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axes {axes}")
    return tuple(sorted(out))


def _reducer(op: str, fn):
    def forward(x, *, axes=None, keepdims=1):
        y = fn(x, axis=_reduce_axes(op, axes, x.ndim), keepdims=bool(keepdims))
        # SINGA has no 0-d tensors: a full reduction without keepdims is (1, 1)
        return y.reshape(1, 1) if y.ndim == 0 else y
    return forward


def _gap_axes(x_ndim: int, data_format: str) -> tuple:
    if x_ndim < 3:
        raise ValueError(f"globalaveragepool: expected an input of rank >= 3 (N, C, spatial...), "
                         f"got rank {x_ndim}")
    if data_format in ("channels_first", "channel_first"):
        return tuple(range(2, x_ndim))
    if data_format in ("channels_last", "channel_last"):
        return tuple(range(1, x_ndim - 1))
    raise ValueError(f"globalaveragepool: data_format must be 'channels_first' or 'channels_last', "
                     f"got {data_format!r}")


def _gap(x, *, data_format="channels_first"):
    return jnp.mean(x, axis=_gap_axes(x.ndim, data_format), keepdims=True)


reduce_sum, reduce_mean, reduce_max, globalaveragepool = register(
    Op("reduce_sum", _reducer("reduce_sum", jnp.sum), attrs=(("axes", None), ("keepdims", 1)),
       doc="Sum over `axes` (None = all, negatives allowed); keepdims=0 drops them.\n\n"
           "Reducing every axis with keepdims=0 gives shape (1, 1), as in SINGA.\n\n"
           "SINGA: the backward scales dy by (output size / input size), the mean's "
           "gradient; singax returns the true gradient, dy broadcast back (x1)."),
    Op("reduce_mean", _reducer("reduce_mean", jnp.mean), attrs=(("axes", None), ("keepdims", 1)),
       doc="Mean over `axes` (None = all, negatives allowed); keepdims=0 drops them.\n\n"
           "Reducing every axis with keepdims=0 gives shape (1, 1), as in SINGA."),
    Op("reduce_max", _reducer("reduce_max", jnp.max), attrs=(("axes", None), ("keepdims", 1)),
       doc="Maximum over `axes` (None = all, negatives allowed); keepdims=0 drops them. The "
           "gradient goes to the maximal elements (split evenly between ties).\n\n"
           "Reducing every axis with keepdims=0 gives shape (1, 1). Not in SINGA (ONNX ReduceMax)."),
    Op("globalaveragepool", _gap, cls="GlobalAveragePool", attrs=(("data_format", "channels_first"),),
       doc="Mean over the spatial axes: (N, C, H, W) -> (N, C, 1, 1), or (N, H, W, C) -> "
           "(N, 1, 1, C) with data_format='channels_last' ('channel_last' also accepted, as "
           "SINGA's own tests spell it). Any rank >= 3 works."),
    export=__all__,
)
