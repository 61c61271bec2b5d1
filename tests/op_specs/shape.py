"""Test metadata of the shape operator rows (see `OpTest`)."""
import numpy as np

from singax.autograd.shape import _ints, _pyslice, _tile_reps

from ._spec import OpTest


def _ref_reshape(x, shape):
    return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(_ints(shape))])


def _ref_flatten(x, axis=1):
    a = axis % x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:a])), -1)


def _ref_squeeze(x, axis=()):
    ax = tuple(_ints(axis)) if axis is not None and np.size(axis) else None
    y = np.squeeze(x, axis=ax)
    return x if y.ndim == 0 else y


def _ref_unsqueeze(x, axis=-1):
    shape = list(x.shape)
    if not (x.ndim == 1 and _ints(axis) == [0]):
        for a in _ints(axis):
            shape.insert(a, 1)
    return x.reshape(shape)


def _ref_split(x, axis, parts, num_output=None):
    if parts is None:
        return tuple(np.array_split(x, num_output, axis=axis))
    return tuple(np.split(x, np.cumsum(parts)[:-1], axis=axis))


def _cat_sample(rng, attrs):
    axis = attrs.get("axis", 0) % 3
    shapes = [[2, 3, 4] for _ in range(3)]
    for k, s in enumerate(shapes):
        s[axis] = k + 1
    return [rng.standard_normal(s) for s in shapes]


def _ref_slice(x, starts, ends, axes=None, steps=None):
    idx = [_pyslice(None)] * x.ndim
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for s, e, a, st in zip(starts, ends, axes, steps):
        idx[a] = _pyslice(s, e, st)
    return x[tuple(idx)]


def _ref_pad(x, mode, pads, constant=0.0):
    r = x.ndim
    if mode == "constant":
        return np.pad(x, list(zip(pads[:r], pads[r:])), constant_values=constant)
    if mode == "edge":
        return np.pad(x, list(zip(pads[:r], pads[r:])), mode="edge")
    for a in range(r):  # SINGA's reflect, built by concatenation one axis at a time
        n, b, e = x.shape[a], pads[a], pads[a + r]
        x = np.concatenate([np.take(x, range(b), a), x, np.take(x, range(n - e, n), a)], axis=a)
    return x


def _ref_upsample(x, mode, scales):
    for a, s in enumerate(scales):
        x = np.repeat(x, int(s), axis=a)
    return x


def _depth_index(mode, c, i, j, cc, bs):
    return (i * bs + j) * cc + c if mode == "DCR" else (c * bs + i) * bs + j


def _ref_depth_to_space(x, blocksize, mode="DCR"):
    bs, (b, c, h, w) = blocksize, x.shape
    cc = c // (bs * bs)
    cq, hq, wq = np.meshgrid(np.arange(cc), np.arange(h * bs), np.arange(w * bs), indexing="ij")
    d = _depth_index(mode, cq, hq % bs, wq % bs, cc, bs)
    return x[:, d, hq // bs, wq // bs]


def _ref_space_to_depth(x, blocksize, mode="DCR"):
    bs, (b, cc, hh, ww) = blocksize, x.shape
    y = np.zeros((b, cc * bs * bs, hh // bs, ww // bs), x.dtype)
    cq, hq, wq = np.meshgrid(np.arange(cc), np.arange(hh), np.arange(ww), indexing="ij")
    y[:, _depth_index(mode, cq, hq % bs, wq % bs, cc, bs), hq // bs, wq // bs] = x
    return y


def _ref_scatter_elements(x, indices, updates, axis=0):
    y, idx, upd = x.copy(), np.asarray(indices), np.asarray(updates)
    for pos in np.ndindex(*idx.shape):
        target = list(pos)
        target[axis] = idx[pos] % x.shape[axis]
        y[tuple(target)] = upd[pos]
    return y


TESTS = {
    "reshape": OpTest(
        shapes=[((2, 3, 4),)],
        samples=[dict(shape=[0, -1]), dict(shape=[4, -1, 2]), dict(shape=[24]),
                 dict(shape=(2, 0, 4)), dict(shape=[-1]), dict(shape=[1, 2, 12, 1])],
        ref=_ref_reshape),
    "flatten": OpTest(
        shapes=[((2, 3, 4),), ((2, 3, 4, 5),)],
        samples=[dict(axis=0), dict(axis=1), dict(axis=2), dict(axis=-1), dict(axis=-3)],
        ref=_ref_flatten),
    "transpose": OpTest(
        shapes=[((2, 3, 4),)],
        samples=[dict(perm=[2, 0, 1]), dict(perm=(0, 2, 1)), dict(perm=None)],
        ref=lambda x, perm=None: np.transpose(x, perm)),
    "squeeze": OpTest(
        shapes=[((1, 3, 1, 4),), ((1, 1, 1),)],
        samples=[dict(axis=[]), dict(axis=[0]), dict(axis=[-2]), dict(axis=[0, 2]), dict(axis=0)],
        ref=_ref_squeeze),
    "unsqueeze": OpTest(
        shapes=[((3, 4),), ((5,),)],
        samples=[dict(axis=[0]), dict(axis=[-1]), dict(axis=[0, 3]), dict(axis=-1), dict(axis=[7])],
        ref=_ref_unsqueeze),
    "cat": OpTest(
        shapes=[((2, 3, 4),) * 3],
        samples=[dict(axis=0), dict(axis=1), dict(axis=-1)],
        sample=_cat_sample,
        ref=lambda *xs, axis=0: np.concatenate(xs, axis=axis)),
    "split": OpTest(
        shapes=[((4, 6),)],
        samples=[dict(axis=1, parts=[1, 2, 3]), dict(axis=0, parts=None, num_output=2),
                 dict(axis=-1, parts=[3, 3]), dict(axis=0, parts=[4])],
        ref=_ref_split),
    "slice": OpTest(
        shapes=[((4, 5, 6),)],
        samples=[dict(starts=[1], ends=[3]),
                 dict(starts=[0, 1], ends=[10, -1], axes=[1, 2], steps=[2, 1]),
                 dict(starts=[-1], ends=[-100], axes=[2], steps=[-2]),
                 dict(starts=[3, 4], ends=[0, 1], axes=[0, -1], steps=[-1, -3]),
                 dict(starts=[-3], ends=[2 ** 31 - 1], axes=[1])],
        ref=_ref_slice),
    "gather": OpTest(
        shapes=[((4, 5),)],
        samples=[dict(axis=0, indices=[3, 1, 1, -1]), dict(axis=1, indices=[[0, 4], [4, 2], [-1, 0]]),
                 dict(axis=-1, indices=[2]), dict(axis=0, indices=np.array([[2, 2, 0]]))],
        ref=lambda x, axis, indices: np.take(x, np.asarray(indices) % x.shape[axis], axis=axis)),
    "tile": OpTest(
        shapes=[((2, 3),)],
        samples=[dict(repeats=[2, 3]), dict(repeats=[2]), dict(repeats=[2, 1, 2]), dict(repeats=3)],
        ref=lambda x, repeats: np.tile(x, _tile_reps(repeats, x.ndim))),
    "expand": OpTest(
        shapes=[((3, 1),)],
        samples=[dict(shape=[3, 4]), dict(shape=[2, 3, 4]), dict(shape=[2, 1, 1]), dict(shape=[1])],
        ref=lambda x, shape: x * np.ones(shape, x.dtype)),
    "pad": OpTest(
        shapes=[((3, 4),)],
        samples=[dict(mode="constant", pads=[1, 0, 2, 3], constant=0.5), dict(mode="edge", pads=[2, 1, 1, 2]),
                 dict(mode="reflect", pads=[2, 1, 1, 3]), dict(mode="constant", pads=[0, 0, 0, 0])],
        ref=_ref_pad),
    "upsample": OpTest(
        shapes=[((2, 3, 2),)],
        samples=[dict(mode="nearest", scales=[1, 2, 3]), dict(mode="nearest", scales=[2.0, 1.0, 1.0])],
        ref=_ref_upsample),
    "depth_to_space": OpTest(
        shapes=[((2, 8, 2, 3),)],
        samples=[dict(blocksize=2, mode="DCR"), dict(blocksize=2, mode="CRD")],
        ref=_ref_depth_to_space),
    "space_to_depth": OpTest(
        shapes=[((2, 2, 4, 6),)],
        samples=[dict(blocksize=2, mode="DCR"), dict(blocksize=2, mode="CRD")],
        ref=_ref_space_to_depth),
    "where": OpTest(
        shapes=[((2, 3), (2, 3)), ((2, 3), (1, 3))],
        samples=[dict(condition=[[1, 0, 1], [0, 0, 1]]), dict(condition=[True, False, False]),
                 dict(condition=np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], np.float32))],
        ref=lambda x, y, condition: (np.asarray(condition, np.float32) * x
                                     + (1 - np.asarray(condition, np.float32)) * y)),
    "scatter_elements": OpTest(
        shapes=[((3, 4),)],
        samples=[dict(indices=[[1, 0, 2], [0, 2, 1]], updates=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], axis=0),
                 dict(indices=[[3, -4], [2, 0], [1, 3]], updates=[[1.5, 2.5], [3.5, 4.5], [5.5, 6.5]], axis=1),
                 dict(indices=[[2]], updates=[[9.0]], axis=-2)],
        ref=_ref_scatter_elements),
}
