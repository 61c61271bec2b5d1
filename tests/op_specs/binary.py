"""Test metadata of the binary operator rows (see `OpTest`)."""
import functools
import numpy as np
import operator

from singax import tensor as _tensor

from ._spec import OpTest


_PAIRS = [((3, 4), (3, 4)), ((3, 4), (1, 4)), ((2, 1, 4), (3, 1))]


def _add_bias_ref(x, b, axis=0):
    return x + (b.reshape(1, -1) if axis == 0 else b.reshape(-1, 1))


def _gemm_ref(A, B, C=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    y = alpha * ((A.T if transA else A) @ (B.T if transB else B))
    return y if C is None else y + beta * C


def _gemm_sample(rng, attrs):
    # shapes follow the trans flags; the C shape varies with them so all C forms get tested
    m, k, n = 3, 4, 5
    a = rng.standard_normal((k, m) if attrs.get("transA") else (m, k))
    b = rng.standard_normal((n, k) if attrs.get("transB") else (k, n))
    c_shape = {(0, 0): (n,), (1, 0): (1, n), (0, 1): (m, n), (1, 1): None}[
        (attrs.get("transA", 0), attrs.get("transB", 0))]
    if attrs.get("alpha") is not None:
        c_shape = (m, 1)
    return [a, b] if c_shape is None else [a, b, rng.standard_normal(c_shape)]


_NARY = [((3, 4),), ((3, 4), (3, 4)), ((3, 4), (3, 4), (3, 4)), ((3, 4), (1, 4))]


def _np_float(*xs):
    dt = np.result_type(*xs)
    return dt if np.issubdtype(dt, np.floating) else np.float32


def _cmp_ref(f):
    return lambda x, y: f(x, y).astype(_np_float(x, y))


def _logic_ref(f):
    return lambda *xs: f(*[x != 0 for x in xs]).astype(_np_float(*xs))


def _onehot_ref(indices, axis=-1, depth=None, values=(0.0, 1.0)):
    idx = np.mod(indices.astype(np.int64), depth)
    y = np.where(idx[..., None] == np.arange(depth), values[1], values[0]).astype(np.float32)
    return np.moveaxis(y, -1, axis)


_LOGIC = dict(int_inputs=(0, 1), shapes=[((3, 4), (3, 4)), ((3, 4), (4,))])


TESTS = {
    "add": OpTest(shapes=_PAIRS, ref=operator.add),
    "sub": OpTest(shapes=_PAIRS, ref=operator.sub),
    "mul": OpTest(shapes=_PAIRS, ref=operator.mul),
    "div": OpTest(shapes=_PAIRS, domain="nonzero", ref=operator.truediv),
    "pow": OpTest(shapes=_PAIRS, domain="positive", ref=np.power),
    "matmul": OpTest(
        ref=np.matmul,
        shapes=[((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2))]),
    "add_bias": OpTest(
        shapes=[((4, 4), (4,)), ((4, 4), (1, 4))],
        samples=[{}, {"axis": 1}],
        ref=_add_bias_ref),
    "gemm": OpTest(
        shapes=[((3, 4), (4, 5), (5,))],
        sample=_gemm_sample,
        samples=[{}, {"transA": 1}, {"transB": 1}, {"transA": 1, "transB": 1},
                 {"alpha": 0.5, "beta": -2.0}],
        ref=_gemm_ref),
    "sum": OpTest(shapes=_NARY, ref=lambda *xs: functools.reduce(operator.add, xs)),
    "mean": OpTest(shapes=_NARY, ref=lambda *xs: functools.reduce(operator.add, xs) / len(xs)),
    "max": OpTest(shapes=_NARY, ref=lambda *xs: functools.reduce(np.maximum, xs)),
    "min": OpTest(shapes=_NARY, ref=lambda *xs: functools.reduce(np.minimum, xs)),
    "less": OpTest(shapes=_PAIRS, ref=_cmp_ref(lambda x, y: (x - y) < 0)),
    "greater": OpTest(shapes=_PAIRS, ref=_cmp_ref(lambda x, y: (x - y) > 0)),
    "equal": OpTest(int_inputs=(0, 1), shapes=_PAIRS, ref=_cmp_ref(np.equal)),
    "_and": OpTest(**_LOGIC, ref=_logic_ref(np.logical_and)),
    "_or": OpTest(**_LOGIC, ref=_logic_ref(np.logical_or)),
    "_xor": OpTest(**_LOGIC, ref=_logic_ref(np.logical_xor)),
    "_not": OpTest(int_inputs=(0,), shapes=[((3, 4),)], ref=_logic_ref(np.logical_not)),
    "shape": OpTest(shapes=[((3, 4),), ((2, 1, 3),)], ref=lambda x: np.asarray(x.shape, np.int32)),
    "cast": OpTest(
        samples=[{"to": _tensor.int32}, {"to": _tensor.float16}, {"to": _tensor.float32}],
        ref=lambda x, to=None: x.astype(_tensor.to_np_dtype(to))),
    "nonzero": OpTest(
        int_inputs=(0,),
        shapes=[((3, 4),), ((2, 3, 2),)],
        ref=lambda x: np.array(np.nonzero(x), np.int32).reshape(x.ndim, -1)),
    "onehot": OpTest(
        ref=_onehot_ref,
        sample=lambda rng, attrs: [rng.integers(-4, 8, (2, 3)).astype(np.int32)],
        samples=[{"depth": 4}, {"axis": 0, "depth": 3, "values": (-1.0, 2.0)}, {"axis": 1, "depth": 5},
                 {"axis": -2, "depth": 2}]),
    "constant_of_shape": OpTest(
        samples=[{}, {"value": 2.5}],
        sample=lambda rng, attrs: [np.array([2, 3], np.int32)],
        ref=lambda x, value=0.0: np.full(tuple(x), value, np.float32)),
}
