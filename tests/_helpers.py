"""Helpers shared by the tests: tensors from arrays, the finite-difference gradient
check, and the example scripts as modules (SINGA's MNIST CNN is defined once, in
examples/mnist_cnn.py)."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np

from singax import autograd, tensor
from singax.tensor import Tensor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def T(a: Any, dtype: Any = None, grad: bool = False, **kw) -> Tensor:
    """A Tensor holding `a` in its own numpy dtype (or converted to `dtype`); `grad` makes
    it store its gradient (a parameter)."""
    a = np.asarray(a) if dtype is None else np.asarray(a, tensor.to_np_dtype(dtype))
    return Tensor(data=a, dtype=a.dtype, stores_grad=grad, **kw)


def P(a: Any, dtype: Any = None) -> Tensor:
    """A parameter: `T(a, dtype, grad=True)`."""
    return T(a, dtype, grad=True)


def assert_grads_match_fd(loss: Callable[[], Tensor], tensors: Sequence[Tensor], eps: float = 1e-6,
                          tol: float = 1e-5, max_elements: int = 4) -> None:
    """The tape's gradients of the scalar `loss()` for `tensors` against central finite
    differences on `max_elements` entries of each (`autograd.check_grads`; run in float64)."""
    autograd.check_grads(lambda *_: loss(), *tensors, eps=eps, tol=tol, max_elements=max_elements)


def example(name: str):
    """The module of examples/<name>.py, imported with examples/ on `sys.path`."""
    sys.path.insert(0, EXAMPLES)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(EXAMPLES)


def mnist_cnn():
    """SINGA's MNIST CNN, the class examples/mnist_cnn.py trains."""
    return example("mnist_cnn").CNN
