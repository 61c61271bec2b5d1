"""Element-wise operators: y = f(x), one row each.

Backwards come from `jax.vjp` unless SINGA fixes a value at a kink (relu,
leakyrelu, abs at 0; clip's inclusive and hardsigmoid's strict bounds).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._op import Op, register

# the hand-written names; `register(..., export=__all__)` adds each row's name
__all__: list[str] = []


def _bound(v):
    """A clip bound as a Python float or None (ONNX may set a 1-element array)."""
    if v is None:
        return None
    if isinstance(v, tuple):
        return None if len(v) == 0 else float(v[0])
    return float(v)


def _clip(x, min=None, max=None):
    lo, hi = _bound(min), _bound(max)
    if lo is not None:
        x = jnp.maximum(x, jnp.asarray(lo, x.dtype))
    if hi is not None:
        x = jnp.minimum(x, jnp.asarray(hi, x.dtype))
    return x


def _clip_grad(dy, x, y, min=None, max=None):
    lo, hi = _bound(min), _bound(max)
    keep = jnp.ones(x.shape, bool)
    if lo is not None:
        keep = keep & (x >= lo)
    if hi is not None:
        keep = keep & (x <= hi)
    return dy * keep


def _softmax_axes(ndim: int, axis: int) -> tuple:
    # ONNX opset <= 11: normalise over the whole trailing block shape[axis:]
    axis = axis + ndim if axis < 0 else axis
    if not 0 <= axis < ndim:
        raise ValueError(f"softmax: axis {axis} out of range for a {ndim}-D input")
    return tuple(range(axis, ndim))


def _softmax(x, axis=1):
    return jax.nn.softmax(x, axis=_softmax_axes(x.ndim, axis))


def _softmax_check(x, axis=1):
    _softmax_axes(x.ndim, axis)


def _hardsigmoid_grad(dy, x, y, alpha=0.2, gamma=0.5):
    z = alpha * x + gamma
    return dy * alpha * ((z > 0) & (z < 1))   # strict: 0 on the plateau edges, as SINGA


# SELU's constants: exact (ONNX's defaults) and SINGA's rounded defaults
SELU_ALPHA, SELU_GAMMA = 1.6732632423543772, 1.0507009873554805
SINGA_SELU_ALPHA, SINGA_SELU_GAMMA = 1.67326, 1.0507


def _selu(x, alpha=SINGA_SELU_ALPHA, gamma=SINGA_SELU_GAMMA):
    return gamma * jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0)))


relu, sigmoid, tanh, exp, log, sqrt, abs, sign, negative, reciprocal = register(
    Op("relu", lambda x: jnp.maximum(x, 0), grad=lambda dy, x, y: dy * (x > 0), cls="ReLU",
       doc="ReLU: x if x >= 0 else 0; gradient 0 at x = 0 (as SINGA)."),
    Op("sigmoid", jax.nn.sigmoid, doc="Logistic sigmoid."),
    Op("tanh", jnp.tanh, doc="Hyperbolic tangent."),
    Op("exp", jnp.exp, doc="e**x."),
    Op("log", jnp.log, doc="Natural logarithm."),
    Op("sqrt", jnp.sqrt, doc="Square root."),
    Op("abs", jnp.abs, grad=lambda dy, x, y: dy * jnp.sign(x),
       doc="abs(x); gradient sign(x), 0 at x = 0 (as SINGA)."),
    Op("sign", jnp.sign, doc="-1, 0 or +1; zero gradient."),
    Op("negative", jnp.negative, doc="-x."),
    Op("reciprocal", lambda x: 1 / x, doc="1 / x."),
    export=__all__,
)

softplus, softsign, cos, sin, tan, cosh, sinh, acos, asin, atan, acosh, asinh, atanh = register(
    Op("softplus", jax.nn.softplus, cls="SoftPlus",
       doc="ln(1 + e**x).\n\nSINGA: computed naively there (inf for x > ~88); here it is stable."),
    Op("softsign", lambda x: x / (1 + jnp.abs(x)), cls="SoftSign",
       doc="x / (1 + abs(x))."),
    Op("cos", jnp.cos, doc="Cosine."),
    Op("sin", jnp.sin, doc="Sine."),
    Op("tan", jnp.tan, doc="Tangent."),
    Op("cosh", jnp.cosh, doc="Hyperbolic cosine."),
    Op("sinh", jnp.sinh, doc="Hyperbolic sine."),
    Op("acos", jnp.arccos, doc="Inverse cosine (abs(x) < 1)."),
    Op("asin", jnp.arcsin, doc="Inverse sine (abs(x) < 1)."),
    Op("atan", jnp.arctan, doc="Inverse tangent."),
    Op("acosh", jnp.arccosh, doc="Inverse hyperbolic cosine (x > 1)."),
    Op("asinh", jnp.arcsinh, doc="Inverse hyperbolic sine."),
    Op("atanh", jnp.arctanh, doc="Inverse hyperbolic tangent (abs(x) < 1)."),
    export=__all__,
)

ceil, floor, round, rounde, erf, identity = register(
    Op("ceil", jnp.ceil, doc="Ceiling; zero gradient."),
    Op("floor", jnp.floor, doc="Floor; zero gradient."),
    Op("round", lambda x: lax.round(x, lax.RoundingMethod.AWAY_FROM_ZERO),
       doc="Round halves away from zero (C `round`); zero gradient."),
    Op("rounde", jnp.round, doc="Round halves to even; zero gradient."),
    Op("erf", lax.erf,
       doc="Error function; gradient dy * 2/sqrt(pi) * exp(-x**2).\n\n"
           "SINGA: its backward returns 2/sqrt(pi)*exp(-dy**2) (uses dy for x, ignores dy); "
           "singax returns the true gradient."),
    Op("identity", lambda x: x, doc="y = x."),
    export=__all__,
)

leakyrelu, elu, selu, hardsigmoid, clip, prelu, softmax = register(
    Op("leakyrelu", lambda x, a=0.01: jnp.where(x >= 0, x, a * x),
       grad=lambda dy, x, y, a=0.01: dy * jnp.where(x > 0, 1.0, jnp.where(x < 0, a, 0.0)).astype(dy.dtype),
       cls="LeakyRelu", attrs=(("a", 0.01),),
       doc="x if x >= 0 else a*x; gradient 0 at x = 0 (as SINGA)."),
    Op("elu", lambda x, alpha=1.0: jnp.where(x >= 0, x, alpha * jnp.expm1(jnp.minimum(x, 0))),
       attrs=(("alpha", 1.0),),
       doc="x if x >= 0 else alpha*(e**x - 1)."),
    Op("selu", _selu, cls="SeLU", attrs=(("alpha", SINGA_SELU_ALPHA), ("gamma", SINGA_SELU_GAMMA)),
       doc="gamma*x if x > 0 else gamma*alpha*(e**x - 1) (SINGA's 5-6 digit defaults)."),
    Op("hardsigmoid", lambda x, alpha=0.2, gamma=0.5: jnp.clip(alpha * x + gamma, 0, 1),
       grad=_hardsigmoid_grad, cls="HardSigmoid", attrs=(("alpha", 0.2), ("gamma", 0.5)),
       doc="clip(alpha*x + gamma, 0, 1) (`gamma` is ONNX's beta); gradient alpha strictly inside."),
    Op("clip", _clip, grad=_clip_grad, attrs=(("min", None), ("max", None)),
       doc="Clip x to [min, max] (each bound optional); gradient 1 where "
           "min <= x <= max (inclusive), else 0."),
    Op("prelu", lambda x, slope: jnp.where(x >= 0, x, slope * x), cls="PRelu", inputs=2,
       doc="x if x >= 0 else slope*x, `slope` broadcast to x; both gradients un-broadcast."),
    Op("softmax", _softmax, cls="SoftMax", attrs=(("axis", 1),), check=_softmax_check,
       doc="Softmax over the trailing block shape[axis:] (ONNX opset <= 11, as SINGA): a 4-D "
           "input with axis=1 is normalised over C*H*W jointly; axis=-1 means the last dim only."),
    export=__all__,
)
