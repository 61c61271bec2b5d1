"""SINGA's optimizers (`singa.opt`) built from optax GradientTransformations.

Every piece of optimizer state lives in a Tensor: the step counter, the current
value of each hyper-parameter (`lr_value`, `mom_value`, ...) and the per-parameter
slots (`moments`, `m`, `v`, ...). A compiled train step (`Model.compile`) therefore
reads them as traced values, so a learning-rate schedule changes the rate without
recompiling. Updating one parameter is one jitted function per optimizer
configuration: `(param, grad, slots, hyper-parameter values) -> (param, slots)`.

Slots are keyed by parameter identity and reported by name; when two live
parameters share a name (two standalone layers both own `W`), the second is
reported as `W#1`, the third as `W#2`, in the order they were first updated.
"""
from __future__ import annotations

# The families live in singax/_opt/; this module is their public face. The private
# helpers are re-exported too, so code that imported them from here keeps working
# (`_WARNED`, `TRACE_COUNTS` and `_UPDATES` are the very objects the optimizers use).
from . import tensor  # noqa: F401
from ._opt.base import (_WARNED, Constant, DecayScheduler, ExponentialDecay, Optimizer,  # noqa: F401
                        _as_array, _check_dtype, _check_number, _compute_dtype, _deprecated, _Entry,
                        _exp_decay, _increment, _is_tracer, _require, _schedule)
from ._opt.builtin import (_LOW_PRECISION, _UPDATES, TRACE_COUNTS, AdaGrad, Adam, RMSProp, SGD,  # noqa: F401
                           _AdamState, _adagrad_build, _adam_build, _Builtin, _chain, _compiled,
                           _rmsprop_build, _sgd_build, _singa_adam, _singa_momentum, _TraceState)
from ._opt.optax_wrapper import Optax  # noqa: F401
from .tensor import Tensor  # noqa: F401

__all__ = ["DecayScheduler", "Constant", "ExponentialDecay", "Optimizer", "SGD", "RMSProp",
           "AdaGrad", "Adam", "Optax"]


def __getattr__(name: str):
    # SINGA exposes DistOpt from singa.opt; it lives in singax.dist (imported lazily: no cycle)
    if name == "DistOpt":
        from .dist import DistOpt
        return DistOpt
    raise AttributeError(f"module 'singax.opt' has no attribute {name!r}")
