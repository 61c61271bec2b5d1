"""SINGA's autograd: the tape, every operator, and the `training` flag.

`training` (default False) is read by operators at call time: while it is True
they keep what backward needs; BatchNorm and Dropout switch behaviour on it.
"""
from ._tape import (Operator, Operation, Dummy, backward, gradients, infer_dependency,
                    axis_helper, back_broadcast, ctensor2numpy, OperandError)
from ._op import Op, OPS, CLASSES, register, BuiltinOperator
from ..tensor import CTensor

training = False

from .elementwise import *  # noqa: E402,F401,F403
from .binary import *  # noqa: E402,F401,F403
from .reduce import *  # noqa: E402,F401,F403
from .shape import *  # noqa: E402,F401,F403
from .nn import *  # noqa: E402,F401,F403
from .rnn import *  # noqa: E402,F401,F403
from .losses import *  # noqa: E402,F401,F403
from .gradcheck import check_grads  # noqa: E402,F401
from .binary import shape  # noqa: E402,F401  (the op, not the submodule)

# SINGA exports its Operator classes from this module by their class names.
globals().update(CLASSES)


def __getattr__(name):
    # SINGA-2 layer names (autograd.Conv2d, autograd.Linear, ...) live in singax.layer.
    from .. import layer
    if name in _LAYER_ALIASES and hasattr(layer, name):
        return getattr(layer, name)
    raise AttributeError(f"module 'singax.autograd' has no attribute {name!r}")


_LAYER_ALIASES = ("Layer", "Linear", "Conv2d", "SeparableConv2d", "BatchNorm2d", "Pooling2d",
                  "MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d", "RNN_Base", "RNN", "LSTM")
