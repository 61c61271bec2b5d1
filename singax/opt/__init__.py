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
from ._base import Constant, DecayScheduler, ExponentialDecay, Optimizer
from ._builtin import SGD, AdaGrad, Adam, RMSProp
from ._optax import Optax

__all__ = ["DecayScheduler", "Constant", "ExponentialDecay", "Optimizer", "SGD", "RMSProp",
           "AdaGrad", "Adam", "Optax"]
