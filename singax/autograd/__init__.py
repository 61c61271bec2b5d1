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
from . import shape as _shape_family  # noqa: E402
from .binary import shape  # noqa: E402,F401  (the op, not the submodule)

# SINGA exports its Operator classes from this module by their class names.
globals().update(CLASSES)

__all__ = list(dict.fromkeys([
    "Operator", "Operation", "Dummy", "backward", "gradients", "infer_dependency", "axis_helper",
    "back_broadcast", "ctensor2numpy", "Op", "OPS", "CLASSES", "register", "BuiltinOperator",
    "CTensor", "training", "check_grads",
    *elementwise.__all__, *binary.__all__, *reduce.__all__, *_shape_family.__all__, *nn.__all__,
    *rnn.__all__, *losses.__all__, *CLASSES,
]))
