"""Hazards: exact loss gradients, half-precision losses, owned buffers, integer range."""
import warnings

import numpy as np
import pytest

from singax import autograd, opt, tensor


def _loss_grad(loss_fn, x, t):
    autograd.training = True
    xt = tensor.from_numpy(x)
    xt.requires_grad, xt.stores_grad = True, True
    loss = loss_fn(xt, t)
    grads = {id(p): g for p, g in autograd.backward(loss)}
    return tensor.to_numpy(loss), tensor.to_numpy(grads[id(xt)])


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("target", [np.array([1]), np.array([[0.0, 1.0, 0.0]], np.float32)])
def test_softmax_cross_entropy_gradient_survives_a_large_logit_gap(target):
    x = np.array([[100.0, 0.0, 0.0]], np.float32)
    loss, dx = _loss_grad(autograd.softmax_cross_entropy, x, target)
    np.testing.assert_allclose(dx, _softmax(x) - np.array([[0, 1, 0]]), atol=1e-6)
    assert loss[0] == pytest.approx(-np.log(np.finfo(np.float32).tiny), rel=1e-6)   # value clamped


def test_sgd_recovers_from_a_large_logit_gap():
    autograd.training = True
    w = tensor.Tensor(data=np.array([[100.0, 0.0, 0.0]], np.float32), requires_grad=True,
                      stores_grad=True, name="w")
    sgd = opt.SGD(lr=1.0)
    for _ in range(50):
        sgd(autograd.softmax_cross_entropy(w, np.array([1])))
    w0, w1, _ = tensor.to_numpy(w)[0]
    assert w0 - w1 < 1.0   # each step closes the gap by about 2 while softmax is saturated


@pytest.mark.parametrize("loss_fn,target", [
    (autograd.softmax_cross_entropy, np.full(2048, 1)),
    (autograd.mse_loss, np.zeros((2048, 3), np.float16)),
    (autograd.cross_entropy, np.tile(np.array([[0, 1, 0]], np.float16), (2048, 1))),
])
def test_float16_losses_reduce_in_float32_and_keep_the_input_dtype(loss_fn, target):
    logits = np.tile(np.array([[40.0, 0.0, 0.0]], np.float16), (2048, 1))
    x = np.abs(logits) / 80 + np.float16(0.25) if loss_fn is autograd.cross_entropy else logits
    x = x.astype(np.float16)
    loss, dx = _loss_grad(loss_fn, x, target)
    expect, _ = _loss_grad(loss_fn, x.astype(np.float32), target.astype(np.float32)
                           if target.dtype.kind == "f" else target)
    assert loss.dtype == np.float16 and dx.dtype == np.float16
    assert np.isfinite(loss).all() and np.isfinite(dx).all()
    np.testing.assert_allclose(loss, expect, rtol=2e-3)


def test_half_reductions_feeding_a_loss_stay_finite():
    x = tensor.Tensor(data=np.full((4096, 4), 40, np.float16), dtype=tensor.float16)
    np.testing.assert_array_equal(tensor.to_numpy(autograd.reduce_mean(x)), [[40.0]])


@pytest.mark.parametrize("n", [4, 64, 1000])
@pytest.mark.parametrize("entry", ["constructor", "from_numpy", "copy_from_numpy", "raw_copy_from_numpy"])
def test_tensors_never_share_the_callers_numpy_buffer(entry, n):
    a = np.arange(n, dtype=np.float32)
    if entry == "constructor":
        t = tensor.Tensor(data=a)
    elif entry == "from_numpy":
        t = tensor.from_numpy(a)
    elif entry == "copy_from_numpy":
        t = tensor.Tensor((n,))
        t.copy_from_numpy(a)
    else:
        t = tensor.Tensor(data=tensor.copy_from_numpy(tensor.Tensor((n,)).data, a))
    a[:] = -1
    np.testing.assert_array_equal(tensor.to_numpy(t), np.arange(n, dtype=np.float32))


@pytest.mark.parametrize("make", [
    lambda: tensor.from_numpy(np.array([2 ** 40])),
    lambda: tensor.Tensor((1,), dtype=tensor.int32).copy_from_numpy(np.array([2 ** 33])),
    lambda: tensor.Tensor(data=np.array([-2 ** 31 - 1]), dtype=tensor.int32),
    lambda: tensor.Tensor(data=np.array([300]), dtype=tensor.uint8),
])
def test_integer_narrowing_that_loses_values_raises_overflow_error(make):
    with pytest.raises(OverflowError, match=r"range \["):
        make()


def test_integer_narrowing_within_range_keeps_the_values():
    np.testing.assert_array_equal(tensor.to_numpy(tensor.from_numpy(np.array([2 ** 31 - 1, -5]))),
                                  [2 ** 31 - 1, -5])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_optimizer_warns_once_when_the_loss_reaches_no_parameter(dtype):
    autograd.training = True
    w = tensor.Tensor(data=np.ones((1, 3), np.float32), requires_grad=True, stores_grad=True, name="w")
    x = tensor.from_numpy(np.array([[1.0, 2.0, 3.0]], dtype))   # not a parameter
    sgd = opt.SGD(lr=0.1)
    losses = [autograd.softmax_cross_entropy(x, np.array([0])) for _ in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for loss in losses:
            sgd(loss)
    messages = [str(c.message) for c in caught if "no path to any parameter" in str(c.message)]
    assert len(messages) == 1 and messages[0].startswith(f"SGD: loss {losses[0].name!r}")
    np.testing.assert_array_equal(tensor.to_numpy(w), np.ones((1, 3)))
