"""Test metadata of the elementwise operator rows (see `OpTest`)."""
import math
import numpy as np

from singax.autograd.elementwise import SINGA_SELU_ALPHA, SINGA_SELU_GAMMA, _softmax_axes

from ._spec import OpTest


_erf_np = np.vectorize(math.erf, otypes=[np.float64])


_SHAPES = [((3, 4),), ((2, 3, 2),)]


def _clip_ref(x, min=None, max=None):
    return np.clip(x, -np.inf if min is None else min, np.inf if max is None else max)


def _softmax_ref(x, axis=1):
    axes = _softmax_axes(x.ndim, axis)
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


TESTS = {
    "relu": OpTest(domain="nonzero", shapes=_SHAPES, ref=lambda x: np.maximum(x, 0)),
    "sigmoid": OpTest(ref=lambda x: 1 / (1 + np.exp(-x))),
    "tanh": OpTest(ref=np.tanh),
    "exp": OpTest(domain="small", ref=np.exp),
    "log": OpTest(domain="positive", ref=np.log),
    "sqrt": OpTest(domain="positive", ref=np.sqrt),
    "abs": OpTest(domain="nonzero", ref=np.abs),
    "sign": OpTest(domain="nonzero", ref=np.sign),
    "negative": OpTest(ref=np.negative),
    "reciprocal": OpTest(domain="nonzero", ref=lambda x: 1 / x),
    "softplus": OpTest(ref=lambda x: np.log1p(np.exp(x))),
    "softsign": OpTest(ref=lambda x: x / (1 + np.abs(x))),
    "cos": OpTest(ref=np.cos),
    "sin": OpTest(ref=np.sin),
    "tan": OpTest(domain="small", ref=np.tan),
    "cosh": OpTest(domain="small", ref=np.cosh),
    "sinh": OpTest(domain="small", ref=np.sinh),
    "acos": OpTest(domain="unit", ref=np.arccos),
    "asin": OpTest(domain="unit", ref=np.arcsin),
    "atan": OpTest(ref=np.arctan),
    "acosh": OpTest(domain="above1", ref=np.arccosh),
    "asinh": OpTest(ref=np.arcsinh),
    "atanh": OpTest(domain="unit", ref=np.arctanh),
    "ceil": OpTest(ref=np.ceil),
    "floor": OpTest(ref=np.floor),
    "round": OpTest(ref=lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5)),
    "rounde": OpTest(ref=np.round),
    "erf": OpTest(ref=_erf_np),
    "identity": OpTest(ref=lambda x: x),
    "leakyrelu": OpTest(
        domain="nonzero",
        samples=[{}, {"a": 0.2}],
        ref=lambda x, a=0.01: np.where(x >= 0, x, a * x)),
    "elu": OpTest(
        domain="nonzero",
        samples=[{}, {"alpha": 0.5}],
        ref=lambda x, alpha=1.0: np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0)))),
    "selu": OpTest(
        domain="nonzero",
        samples=[{}, {"alpha": 1.5, "gamma": 2.0}],
        ref=lambda x, alpha=SINGA_SELU_ALPHA, gamma=SINGA_SELU_GAMMA:
            gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))),
    "hardsigmoid": OpTest(
        shapes=[((4, 5),)],
        samples=[{}, {"alpha": 0.5, "gamma": 0.3}],
        sample=lambda rng, attrs: [rng.uniform(-5, 5, (4, 5))],
        ref=lambda x, alpha=0.2, gamma=0.5: np.clip(alpha * x + gamma, 0, 1)),
    "clip": OpTest(
        samples=[{"min": -0.5, "max": 0.5}, {"min": None, "max": 0.3}, {"min": -0.2}, {}],
        ref=_clip_ref),
    "prelu": OpTest(
        domain="nonzero",
        shapes=[((2, 3, 2, 2), (3, 1, 1)), ((3, 4), (3, 4)), ((3, 4), (4,))],
        samples=[{}],
        ref=lambda x, slope: np.where(x >= 0, x, slope * x)),
    "softmax": OpTest(
        shapes=[((3, 4),), ((2, 3, 2, 2),)],
        samples=[{}, {"axis": -1}, {"axis": 0}],
        ref=_softmax_ref),
}
