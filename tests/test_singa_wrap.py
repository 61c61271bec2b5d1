"""SINGA's low-level API: public Operator.backward, CTensor views and singa_wrap functions."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from singax import autograd, singa_wrap, tensor
from singax._ctensor import CTensor, attach_to_jax_arrays
from singax.tensor import Tensor

RNG = np.random.default_rng(7)


def _t(a):
    return Tensor(data=np.asarray(a, np.float32))


@pytest.fixture(autouse=True)
def _training():
    autograd.training = True
    yield


def test_one_input_operator_backward_returns_a_bare_ctensor():
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    dy = RNG.standard_normal((3, 4)).astype(np.float32)
    y = autograd.relu(_t(x))
    dx = y.creator.backward(jnp.asarray(dy))
    assert isinstance(dx, CTensor)
    assert dx.shape() == (3, 4) and dx.Size() == 12 and dx.nDim() == 2
    np.testing.assert_allclose(dx.GetFloatValue(12), (dy * (x > 0)).ravel())
    np.testing.assert_allclose(tensor.to_numpy(tensor.from_raw_tensor(dx)), dy * (x > 0))


def test_two_input_operator_backward_returns_a_tuple_and_takes_ctensor_dy():
    a, b = RNG.standard_normal((2, 3)).astype(np.float32), RNG.standard_normal((3, 5)).astype(np.float32)
    dy = RNG.standard_normal((2, 5)).astype(np.float32)
    y = autograd.matmul(_t(a), _t(b))
    da, db = y.creator.backward(CTensor.view(jnp.asarray(dy)))
    np.testing.assert_allclose(np.asarray(da), dy @ b.T, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(db), a.T @ dy, rtol=1e-5)


def test_backward_without_dy_defaults_to_one():
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    y = autograd.reduce_sum(_t(x), None, 0)
    dx = y.creator.backward()
    np.testing.assert_allclose(np.asarray(dx), np.ones_like(x))


def test_public_backward_leaves_the_tape_usable():
    w = Tensor(data=np.ones((2, 2), np.float32), stores_grad=True)
    y = autograd.reduce_sum(autograd.mul(w, _t(np.full((2, 2), 3.0))), None, 0)
    y.creator.backward()
    (_, g), = autograd.backward(y)
    np.testing.assert_allclose(np.asarray(g.data), 3.0)


def test_ctensor_arithmetic_comparisons_and_in_place_writes():
    a = CTensor((2, 2))
    assert np.asarray(a).dtype == np.float32 and a.data_type() == singa_wrap.kFloat32
    a.SetFloatValue(2.0)
    a += 1.0
    np.testing.assert_allclose(np.asarray(a * a - a / 3.0), np.full((2, 2), 9.0 - 1.0))
    np.testing.assert_allclose(np.asarray(1.0 - a), -2.0)
    np.testing.assert_allclose(np.asarray(a > 2.5), 1.0)
    a.CopyFloatDataFromHostPtr(np.array([1, 2, 3, 4], np.float32))
    np.testing.assert_allclose(a.GetFloatValue(3), [1, 2, 3])
    assert a.Reshape([4]).shape() == (4,) and a.T().GetFloatValue(4).tolist() == [1, 3, 2, 4]


def test_singa_wrap_functions_follow_their_argument_kind():
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    raw = singa_wrap.ReLU(jnp.asarray(x))
    assert isinstance(raw, jax.Array)
    np.testing.assert_allclose(np.asarray(raw), np.maximum(x, 0))
    view = singa_wrap.GTFloat(CTensor.view(jnp.asarray(x)), 0.2)
    assert isinstance(view, CTensor)
    np.testing.assert_allclose(np.asarray(view), (x > 0.2).astype(np.float32))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(np.asarray(singa_wrap.SoftMax(jnp.asarray(x))), e / e.sum(1, keepdims=True),
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(singa_wrap.__mul__(jnp.asarray(x), jnp.asarray(x))), x * x)
    assert singa_wrap.MultFloat(jnp.asarray(x), 2).dtype == jnp.float32
    with pytest.raises(ValueError, match=r"singa_wrap.Mult: cannot apply to \(\(3, 4\), \(3, 4\)\)"):
        singa_wrap.Mult(jnp.asarray(x), jnp.asarray(x))


def test_gaussian_fills_a_ctensor_in_place():
    t = singa_wrap.Tensor([200, 50])
    singa_wrap.Gaussian(1.0, 2.0, t)
    v = np.asarray(t)
    assert v.shape == (200, 50)
    assert abs(v.mean() - 1.0) < 0.1 and abs(v.std() - 2.0) < 0.1


def test_user_operator_written_with_singa_wrap_calls():
    class Clip01(autograd.Operator):
        def forward(self, x):
            self.mask = singa_wrap.__mul__(singa_wrap.GEFloat(x, 0.0), singa_wrap.LEFloat(x, 1.0))
            return singa_wrap.__mul__(x, self.mask)

        def backward(self, dy):
            return singa_wrap.__mul__(dy, self.mask)

    x = RNG.uniform(-1, 2, (4, 3)).astype(np.float32)
    w = Tensor(data=x, stores_grad=True)
    y = autograd.reduce_sum(Clip01()(w)[0], None, 0)
    (_, g), = autograd.backward(y)
    np.testing.assert_allclose(np.asarray(g.data), ((x >= 0) & (x <= 1)).astype(np.float32))


def test_tensor_accepts_ctensor_data_and_handles_accept_ctensors():
    c = CTensor.view(jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3))
    t = Tensor(data=c)
    assert t.shape == (2, 3) and float(t.data[1, 2]) == 5.0
    x = CTensor((4, 3, 5, 5))
    assert singa_wrap.BatchNormHandle(0.9, x).channels == 3


def test_jax_arrays_get_read_only_ctensor_queries():
    attach_to_jax_arrays()
    a = jnp.arange(5, dtype=jnp.float32)
    np.testing.assert_allclose(a.GetFloatValue(3), [0, 1, 2])
    assert a.Size() == 5


def test_use_cuda_is_computed_on_first_read_only():
    code = ("import singax.singa_wrap as w; from jax._src import xla_bridge as b; "
            "before = bool(b._backends); flag = w.USE_CUDA; "
            "print(before, bool(b._backends), isinstance(flag, bool))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]


def test_inputs_without_gradient_get_zeros_from_the_public_backward():
    idx = Tensor(data=np.array([[0, 2], [1, 1]], np.int32))
    w = RNG.standard_normal((3, 4)).astype(np.float32)
    y = autograd.embedding(idx, Tensor(data=w))
    dy = RNG.standard_normal((2, 2, 4)).astype(np.float32)
    dx, dw = y.creator.backward(jnp.asarray(dy))
    assert dx.shape() == (2, 2) and not np.asarray(dx).any()
    expected = np.zeros_like(w)
    np.add.at(expected, np.array([[0, 2], [1, 1]]), dy)
    np.testing.assert_allclose(np.asarray(dw), expected, rtol=1e-6)
