"""autograd.check_grads on user operators: passes for a right backward, reports a wrong one."""
import jax.numpy as jnp
import numpy as np
import pytest

from singax import autograd, tensor
from singax.tensor import Tensor


class SoftCube(autograd.Operator):
    def forward(self, x):
        return jnp.tanh(x) ** 3


class WrongBackward(autograd.Operator):
    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, dy):
        return dy * self.x          # should be 2 * x * dy


def test_check_grads_passes_for_auto_derived_backward(x64):
    x = Tensor(data=np.array([[0.3, -0.7], [1.1, 0.2]]), dtype=tensor.float64)
    report = autograd.check_grads(lambda t: SoftCube()(t)[0], x, eps=1e-6, tol=1e-7)
    assert report.ok and len(report.rows) == 1 and report.rows[0][4] < 1e-7
    assert not x.stores_grad   # flags restored


def test_check_grads_reports_the_worst_element(x64):
    x = Tensor(data=np.array([0.2, 3.0, 0.4]), dtype=tensor.float64)
    with pytest.raises(AssertionError, match="worst element 1"):
        autograd.check_grads(lambda t: WrongBackward()(t)[0], x, eps=1e-6)
    report = autograd.check_grads(lambda t: WrongBackward()(t)[0], x, eps=1e-6, raise_on_error=False)
    i, idx, tape, numeric, err = report.rows[0]
    assert (idx, tape) == (1, 3.0) and abs(numeric - 6.0) < 1e-6
