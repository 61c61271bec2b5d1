"""Shape and indexing operators (one table). All are linear in their tensor inputs,
so every backward is `jax.vjp` of the forward.

Attributes are static: shapes, axes and index arrays (gather/scatter indices, the
`where` condition) arrive here as tuples, and all validation runs at trace time.
"""
from __future__ import annotations

import builtins
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from ._op import OPS, Op, register
from ..tensor import Tensor

# the hand-written names; `register(..., export=__all__)` adds each row's name
__all__: list[str] = []

_pyslice = builtins.slice  # this module defines SINGA's `slice`


def _ints(v) -> list:
    """An int or a sequence of ints (lists, tuples, numpy arrays) as a list of ints."""
    if isinstance(v, (int, np.integer)):
        return [int(v)]
    return [int(e) for e in np.asarray(v).reshape(-1).tolist()]


def _op_axis(op: str, axis, rank: int) -> int:
    if not -rank <= int(axis) < rank:
        raise ValueError(f"{op}: axis {axis} out of range for a {rank}-d input")
    return int(axis) % rank


def _index_array(op: str, what: str, v, dim: int) -> np.ndarray:
    """A static integer index array, checked against `dim` and wrapped to >= 0."""
    idx = np.asarray(v)
    if idx.size == 0:
        idx = idx.astype(np.int64)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: {what} must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise ValueError(f"{op}: {what} must lie in [{-dim}, {dim - 1}] for an axis of size "
                         f"{dim}, got values from {idx.min()} to {idx.max()}")
    return idx.astype(np.int64) % dim


# --- reshaping ----------------------------------------------------------------

def _reshape_target(shape, in_shape: tuple) -> tuple:
    target = _ints(shape)
    out = []
    for i, s in enumerate(target):
        if s == 0:
            if i >= len(in_shape):
                raise ValueError(f"reshape: 0 at position {i} copies an input dim, but the "
                                 f"input {in_shape} has only {len(in_shape)}")
            s = in_shape[i]
        elif s < -1:
            raise ValueError(f"reshape: invalid dim {s} in shape {tuple(target)}")
        out.append(s)
    size = int(np.prod(in_shape, dtype=np.int64))
    if out.count(-1) > 1:
        raise ValueError(f"reshape: at most one -1 allowed, got shape {tuple(target)}")
    if -1 in out:
        known = int(np.prod([s for s in out if s != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise ValueError(f"reshape: cannot reshape input of shape {in_shape} ({size} elements) "
                             f"into {tuple(target)}")
        out[out.index(-1)] = size // known
    if int(np.prod(out, dtype=np.int64)) != size:
        raise ValueError(f"reshape: cannot reshape input of shape {in_shape} ({size} elements) "
                         f"into {tuple(target)} ({int(np.prod(out, dtype=np.int64))} elements)")
    return tuple(out)


def _flatten_shape(in_shape: tuple, axis: int) -> tuple:
    rank = len(in_shape)
    if not -rank <= axis <= rank:
        raise ValueError(f"flatten: axis {axis} out of range for a {rank}-d input (allowed "
                         f"{-rank}..{rank})")
    a = axis + rank if axis < 0 else axis
    return int(np.prod(in_shape[:a], dtype=np.int64)), int(np.prod(in_shape[a:], dtype=np.int64))


def _perm(perm, rank: int) -> tuple:
    if perm is None:  # ONNX default: reverse the axes
        return tuple(range(rank - 1, -1, -1))
    p = tuple(_ints(perm))
    if sorted(p) != list(range(rank)):
        raise ValueError(f"transpose: perm {p} is not a permutation of the {rank} input axes")
    return p


def _squeeze_shape(in_shape: tuple, axis) -> tuple:
    rank = len(in_shape)
    if axis is None or (not isinstance(axis, (int, np.integer)) and len(axis) == 0):
        out = tuple(s for s in in_shape if s != 1)
    else:
        drop = {_op_axis("squeeze", a, rank) for a in _ints(axis)}
        for a in sorted(drop):
            if in_shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} of input {in_shape} has size "
                                 f"{in_shape[a]}, expected 1")
        out = tuple(s for i, s in enumerate(in_shape) if i not in drop)
    return out if out else in_shape  # no 0-d tensors: all-ones input is kept


def _unsqueeze_shape(in_shape: tuple, axis) -> tuple:
    axis = _ints(axis)
    if len(in_shape) == 1 and axis == [0]:  # SINGA's special case
        return in_shape
    out = list(in_shape)
    for a in axis:
        out.insert(a, 1)
    return tuple(out)


# --- joining and splitting -----------------------------------------------------

def _concat(*xs, axis=0):
    if not xs:
        raise ValueError("cat: needs at least one input")
    return jnp.concatenate(xs, axis=_op_axis("cat", axis, xs[0].ndim))


def _split_parts(in_shape: tuple, axis, parts, num_output) -> tuple:
    a = _op_axis("split", axis, len(in_shape))
    n = in_shape[a]
    if parts is None:
        if not num_output or n % int(num_output):
            raise ValueError(f"split: cannot split axis {a} of size {n} (input {in_shape}) into "
                             f"num_output={num_output} equal parts")
        parts = [n // int(num_output)] * int(num_output)
    parts = _ints(parts)
    if sum(parts) != n or min(parts) < 0:
        raise ValueError(f"split: parts {tuple(parts)} must be non-negative and sum to {n}, the "
                         f"size of axis {a} of input {in_shape}")
    return a, tuple(int(o) for o in np.cumsum(parts)[:-1])


def _split(x, *, axis, parts, num_output=None):
    a, offsets = _split_parts(x.shape, axis, parts, num_output)
    return tuple(jnp.split(x, offsets, axis=a))


# --- slicing and indexing -------------------------------------------------------

def _slice_indices(x_shape: tuple, starts, ends, axes, steps) -> tuple:
    """Per-axis (axis, python slice) pairs, with ONNX's clamping."""
    rank = len(x_shape)
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else [_op_axis("slice", a, rank) for a in _ints(axes)]
    steps = [1] * len(starts) if steps is None else _ints(steps)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError(f"slice: starts, ends, axes and steps must have equal lengths, got "
                         f"{len(starts)}, {len(ends)}, {len(axes)}, {len(steps)}")
    if len(set(axes)) != len(axes):
        raise ValueError(f"slice: repeated axes {tuple(axes)}")
    out = []
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ValueError(f"slice: step 0 on axis {a}")
        r = range(*_pyslice(s, e, st).indices(x_shape[a]))
        if len(r) == 0:
            raise ValueError(f"slice: empty result on axis {a} of input {x_shape} "
                             f"(start {s}, end {e}, step {st})")
        out.append((a, r))
    return tuple(out)


def _slice(x, *, starts, ends, axes=None, steps=None):
    for a, r in _slice_indices(x.shape, starts, ends, axes, steps):
        # take the ascending strided slice, then flip it for negative steps (all static)
        lo, hi = min(r[0], r[-1]), max(r[0], r[-1]) + 1
        idx = [_pyslice(None)] * x.ndim
        idx[a] = _pyslice(lo, hi, abs(r.step))
        x = x[tuple(idx)]
        if r.step < 0:
            x = jnp.flip(x, axis=a)
    return x


def _gather(x, *, axis, indices):
    a = _op_axis("gather", axis, x.ndim)
    idx = _index_array("gather", "indices", indices, x.shape[a])
    return jnp.take(x, jnp.asarray(idx), axis=a, mode="clip")


def _tile_reps(repeats, rank: int) -> list:
    reps = _ints(repeats)
    if min(reps, default=1) < 0:
        raise ValueError(f"tile: repeats must be >= 0, got {tuple(reps)}")
    # SINGA tiles the leading axes when repeats is shorter than the rank (numpy: trailing)
    return reps + [1] * (rank - len(reps))


def _expand(x, *, shape):
    target = tuple(_ints(shape))
    try:
        out = np.broadcast_shapes(x.shape, target)
    except ValueError:
        raise ValueError(f"expand: cannot broadcast input {x.shape} to shape {target}") from None
    return jnp.broadcast_to(x, out)


# --- padding and resampling ------------------------------------------------------

def _pad_amounts(mode, pads, rank: int) -> tuple:
    pads = _ints(pads)
    if len(pads) != 2 * rank:
        raise ValueError(f"pad: pads must have 2 * rank = {2 * rank} entries [b_1..b_n, e_1..e_n], "
                         f"got {len(pads)}")
    if min(pads) < 0:
        raise ValueError(f"pad: negative pads {tuple(pads)} are not supported")
    if mode not in ("constant", "edge", "reflect"):
        raise ValueError(f"pad: mode must be 'constant', 'edge' or 'reflect', got {mode!r}")
    return tuple(zip(pads[:rank], pads[rank:]))


def _pad_index(mode: str, n: int, b: int, e: int) -> np.ndarray:
    """Source index along one axis for each padded position."""
    if mode == "edge":
        return np.clip(np.arange(-b, n + e), 0, n - 1)
    if b > n or e > n:
        raise ValueError(f"pad: 'reflect' copies the first/last slices, so pads ({b}, {e}) "
                         f"cannot exceed the axis size {n}")
    # SINGA's 'reflect': the first b and last e slices, copied in order (not mirrored)
    return np.concatenate([np.arange(b), np.arange(n), np.arange(n - e, n)])


def _pad(x, *, mode, pads, constant=0.0):
    mode = mode.decode() if isinstance(mode, bytes) else mode
    amounts = _pad_amounts(mode, pads, x.ndim)
    if mode == "constant":
        return jnp.pad(x, amounts, constant_values=jnp.asarray(constant, x.dtype))
    for a, (b, e) in enumerate(amounts):
        if b or e:
            x = jnp.take(x, jnp.asarray(_pad_index(mode, x.shape[a], b, e)), axis=a)
    return x


def _upsample(x, *, mode, scales):
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "nearest":
        raise ValueError(f"upsample: only mode 'nearest' is supported, got {mode!r}")
    scales = np.asarray(scales, dtype=np.float64).reshape(-1)
    if len(scales) != x.ndim or np.any(scales < 1) or np.any(scales != np.round(scales)):
        raise ValueError(f"upsample: scales must be {x.ndim} integers >= 1 (one per axis of input "
                         f"{x.shape}), got {tuple(scales.tolist())}")
    for a, s in enumerate(scales.astype(int).tolist()):
        if s != 1:
            x = jnp.repeat(x, s, axis=a)
    return x


# DCR: depth index = (i * bs + j) * C' + c ;  CRD: depth index = (c * bs + i) * bs + j
_D2S_VIEW = {"DCR": lambda b, c, bs, h, w: (b, bs, bs, c, h, w),
             "CRD": lambda b, c, bs, h, w: (b, c, bs, bs, h, w)}
_D2S_PERM = {"DCR": (0, 3, 4, 1, 5, 2), "CRD": (0, 1, 4, 2, 5, 3)}


def _block_check(op: str, x_shape: tuple, blocksize, mode) -> int:
    if len(x_shape) != 4:
        raise ValueError(f"{op}: expected a 4-d NCHW input, got shape {x_shape}")
    if mode not in _D2S_PERM:
        raise ValueError(f"{op}: mode must be 'DCR' or 'CRD', got {mode!r}")
    bs = int(blocksize)
    if bs < 1:
        raise ValueError(f"{op}: blocksize must be >= 1, got {blocksize}")
    return bs


def _depth_to_space(x, *, blocksize, mode="DCR"):
    bs = _block_check("depth_to_space", x.shape, blocksize, mode)
    b, c, h, w = x.shape
    if c % (bs * bs):
        raise ValueError(f"depth_to_space: channels {c} of input {x.shape} not divisible by "
                         f"blocksize**2 = {bs * bs}")
    y = x.reshape(_D2S_VIEW[mode](b, c // (bs * bs), bs, h, w)).transpose(_D2S_PERM[mode])
    return y.reshape(b, c // (bs * bs), h * bs, w * bs)


def _space_to_depth(x, *, blocksize, mode="DCR"):
    bs = _block_check("space_to_depth", x.shape, blocksize, mode)
    b, c, hh, ww = x.shape
    if hh % bs or ww % bs:
        raise ValueError(f"space_to_depth: spatial dims of input {x.shape} not divisible by "
                         f"blocksize {bs}")
    h, w = hh // bs, ww // bs
    y = x.reshape(b, c, h, bs, w, bs).transpose(np.argsort(_D2S_PERM[mode]))
    return y.reshape(b, c * bs * bs, h, w)


# --- selection ---------------------------------------------------------------------

def _where(x, y, *, condition):
    c = jnp.asarray(condition.data if isinstance(condition, Tensor) else condition)
    dt = jnp.result_type(x, y)
    ct = dt if jnp.issubdtype(dt, jnp.inexact) else jnp.float32
    c = c.astype(ct)
    # SINGA blends arithmetically, so inf/NaN in the unselected branch leaks (as NaN)
    out = c * x.astype(ct) + (1 - c) * y.astype(ct)
    return out.astype(dt)


def _scatter_elements(x, *, indices, updates, axis=0):
    a = _op_axis("scatter_elements", axis, x.ndim)
    idx = _index_array("scatter_elements", "indices", indices, x.shape[a])
    upd = np.asarray(updates)
    if idx.ndim != x.ndim or upd.shape != idx.shape or any(
            i > s for d, (i, s) in enumerate(zip(idx.shape, x.shape)) if d != a):
        raise ValueError(f"scatter_elements: indices {idx.shape} and updates {upd.shape} must have "
                         f"equal shapes, the rank of input {x.shape}, and no larger dims off axis {a}")
    grid = np.indices(idx.shape, sparse=True)
    where = tuple(jnp.asarray(idx if d == a else grid[d]) for d in range(x.ndim))
    return x.at[where].set(jnp.asarray(upd, x.dtype), mode="promise_in_bounds")


# --- SINGA's own signatures: the `function` column of their rows; each calls the
# generated function the table binds (`_transpose`...)

def transpose(x: Tensor, shape: Sequence[int] | None = None) -> Tensor:
    """Permute the axes of `x` by `shape` (SINGA's name for the permutation)."""
    return _transpose(x, shape)


def cat(xs: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Concatenate the tensors of the sequence `xs` along `axis`."""
    if isinstance(xs, Tensor) or not all(isinstance(x, Tensor) for x in xs):
        raise TypeError("cat: expected a list or tuple of Tensors, e.g. cat([a, b], axis=0)")
    return _cat(*xs, axis=axis)


def split(x: Tensor, axis: int, parts: Sequence[int] | None, num_output: int | None = None) -> tuple:
    """Split `x` along `axis` into pieces of lengths `parts` (or `num_output` equal
    pieces); always returns a tuple of Tensors."""
    return OPS["split"].op_class(axis, parts, num_output)(x)


def where(x: Tensor, y: Tensor, condition) -> Tensor:
    """condition·x + (1 − condition)·y; `condition` is a list, array or Tensor."""
    if isinstance(condition, Tensor):
        condition = condition.data
    return _where_fn(x, y, condition)


# --- the table -----------------------------------------------------------------------

(reshape, flatten, _transpose, squeeze, unsqueeze, _cat, _split_fn, slice, gather, tile, expand,
 pad, upsample, depth_to_space, space_to_depth, _where_fn, scatter_elements) = register(
    Op("reshape", lambda x, *, shape: x.reshape(_reshape_target(shape, x.shape)),
       attrs=(("shape", None),),
       doc="Reshape to `shape`: a 0 copies the input dim at that index, one -1 is inferred."),
    Op("flatten", lambda x, *, axis=1: x.reshape(_flatten_shape(x.shape, int(axis))),
       attrs=(("axis", 1),),
       doc="Flatten to 2-d (prod(shape[:axis]), prod(shape[axis:])); axis may be negative."),
    Op("transpose", lambda x, *, perm=None: jnp.transpose(x, _perm(perm, x.ndim)),
       attrs=(("perm", None),), function=transpose,
       doc="Permute the axes by `perm` (None reverses them, as in ONNX)."),
    Op("squeeze", lambda x, *, axis=(): x.reshape(_squeeze_shape(x.shape, axis)),
       attrs=(("axis", []),),
       doc="Drop the listed size-1 axes (all size-1 axes when `axis` is []); an all-ones "
           "input is returned unchanged (no 0-d tensors).\n\n"
           "SINGA: an int axis fails there; singax accepts it as [axis]."),
    Op("unsqueeze", lambda x, *, axis=-1: x.reshape(_unsqueeze_shape(x.shape, axis)),
       attrs=(("axis", -1),),
       doc="Insert size-1 dims with Python's `list.insert` for each entry of `axis` in order "
           "(so -1 inserts before the last dim); a 1-d input with axis [0] is unchanged.\n\n"
           "SINGA: an int axis (the default -1 included) raises TypeError there; singax "
           "accepts it as [axis]."),
    Op("cat", _concat, cls="Concat", attrs=(("axis", 0),), inputs=None, function=cat,
       doc="Concatenate the inputs along `axis` (negative allowed); the class takes varargs."),
    Op("split", _split, attrs=(("axis", 0), ("parts", None), ("num_output", None)), function=split,
       doc="Split along `axis` into `parts` (lengths) or `num_output` equal parts; returns a tuple."),
    Op("slice", _slice, attrs=(("starts", None), ("ends", None), ("axes", None), ("steps", None)),
       doc="ONNX Slice: Python range slicing per listed axis (ends clamped); empty results "
           "are an error.\n\n"
           "SINGA: the backward misplaces slices taken with negative steps; singax's is exact."),
    Op("gather", _gather, attrs=(("axis", 0), ("indices", None)),
       doc="Take `indices` (ints, or a list of lists, which adds an axis) along `axis`; "
           "negative indices count from the end.\n\n"
           "SINGA: the backward is right only for sorted unique non-negative indices; singax "
           "scatter-adds, so any indices work."),
    Op("tile", lambda x, *, repeats: jnp.tile(x, _tile_reps(repeats, x.ndim)),
       attrs=(("repeats", None),),
       doc="Repeat x `repeats` times per axis, like numpy.tile, except that a `repeats` "
           "shorter than the rank tiles the leading axes (SINGA's rule; numpy's are trailing)."),
    Op("expand", _expand, attrs=(("shape", None),),
       doc="Broadcast x with `shape` (ONNX Expand: bidirectional broadcasting).\n\n"
           "SINGA: the backward pairs axes wrongly when ranks differ; singax un-broadcasts."),
    Op("pad", _pad, attrs=(("mode", "constant"), ("pads", None), ("constant", 0.0)),
       doc="Pad with `pads` in ONNX order [b_1..b_n, e_1..e_n]. Modes: 'constant', 'edge' "
           "(repeat the border), 'reflect' (SINGA's: copies the first/last p slices in order, "
           "not numpy's mirror).\n\n"
           "SINGA: the backward only crops dy, dropping the gradient of the padded copies "
           "for 'edge'/'reflect'; singax returns the true gradient."),
    Op("upsample", _upsample, cls="UpSample", attrs=(("mode", "nearest"), ("scales", None)),
       doc="Nearest-neighbour upsampling: repeat each element `scales[i]` times along axis i."),
    Op("depth_to_space", _depth_to_space, attrs=(("blocksize", 2), ("mode", "DCR")),
       doc="Move channel blocks into space: (B, C, H, W) -> (B, C/bs², H·bs, W·bs), modes DCR/CRD."),
    Op("space_to_depth", _space_to_depth, attrs=(("blocksize", 2), ("mode", "DCR")),
       doc="The inverse of depth_to_space for the same mode: (B, C, H, W) -> (B, C·bs², H/bs, W/bs)."),
    Op("where", _where, attrs=(("condition", None),), inputs=2, function=where,
       doc="Blend condition·x + (1 − condition)·y (broadcasting), as SINGA computes `where`; "
           "inf/NaN in the unselected input leaks into the result as NaN."),
    Op("scatter_elements", _scatter_elements, attrs=(("indices", None), ("updates", None), ("axis", 0)),
       doc="ONNX ScatterElements: write `updates` at `indices` along `axis`; any rank.\n\n"
           "SINGA: 2-d only there. No gradient flows to `updates` (a constant attribute)."),
    export=__all__,
)
