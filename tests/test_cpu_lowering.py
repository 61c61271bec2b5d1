"""CPU lowerings (singax/autograd/_cpu_lowering.py) against XLA's own operators: same values,
same gradients (ties and NaNs included), and the CPU program really uses them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from singax.autograd import _cpu_lowering, nn as nn_mod

POOLS = [((2, 2), (2, 2), ((0, 0), (0, 0))),
         ((3, 3), (2, 2), ((1, 1), (1, 1))),
         ((2, 3), (1, 2), ((1, 0), (0, 1))),
         ((3, 2), (3, 2), ((0, 2), (1, 0)))]


def _reduce_window_pool(x, kernel, strides, padding):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1) + kernel, (1, 1) + strides,
                             ((0, 0), (0, 0)) + padding)


@pytest.mark.parametrize("kernel,strides,padding", POOLS)
def test_max_pool_select_matches_reduce_window_with_ties(kernel, strides, padding):
    rng = np.random.default_rng(0)
    # small integers after a ReLU: most windows hold ties (zeros and repeated values)
    x = np.maximum(rng.integers(-3, 3, (2, 3, 7, 8)), 0).astype(np.float32)
    dy_shape = jax.eval_shape(lambda v: _reduce_window_pool(v, kernel, strides, padding), x).shape
    dy = rng.standard_normal(dy_shape).astype(np.float32)
    got, pull = jax.vjp(lambda v: _cpu_lowering.max_pool_select(v, kernel, strides, padding), x)
    want, pull_want = jax.vjp(lambda v: _reduce_window_pool(v, kernel, strides, padding), x)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_allclose(np.asarray(pull(dy)[0]), np.asarray(pull_want(dy)[0]), rtol=0, atol=1e-6)


def test_max_pool_select_propagates_nan():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 3, 2] = np.nan
    got = np.asarray(_cpu_lowering.max_pool_select(x, (2, 2), (2, 2), ((0, 0), (0, 0))))
    np.testing.assert_array_equal(np.isnan(got), [[[[True, False], [False, True]]]])
    assert got[0, 0, 0, 1] == 7 and got[0, 0, 1, 0] == 13


def test_pooling_row_lowers_without_select_and_scatter_on_cpu():
    handle = nn_mod.PoolingHandle((2, 3, 8, 8), 2, 2, 0, True)

    def loss(x):
        return jnp.sum(nn_mod._pool_forward(x, handle=handle) ** 2)
    x = jax.device_put(np.ones((2, 3, 8, 8), np.float32), jax.devices("cpu")[0])
    hlo = jax.jit(jax.grad(loss)).lower(x).as_text()
    assert "select_and_scatter" not in hlo and "reduce_window" not in hlo


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 5)])
def test_batch_norm_folded_matches_textbook_formula(shape):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    scale, bias = rng.standard_normal(shape[1]).astype(np.float32), rng.standard_normal(shape[1]).astype(np.float32)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    bshape = (1, -1) if len(shape) == 2 else (1, -1, 1, 1)

    def textbook(x, scale, bias):
        mean, var = jnp.mean(x, axes), jnp.var(x, axes)
        y = (x - mean.reshape(bshape)) / jnp.sqrt(var.reshape(bshape) + 1e-5)
        return y * scale.reshape(bshape) + bias.reshape(bshape), mean, var

    def folded(x, scale, bias):
        return _cpu_lowering.batch_norm_folded(x, scale, bias, axes, bshape, 1e-5)
    dy = rng.standard_normal(shape).astype(np.float32)
    got, pull = jax.vjp(lambda *a: folded(*a)[0], x, scale, bias)
    want, pull_want = jax.vjp(lambda *a: textbook(*a)[0], x, scale, bias)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    for a, b in zip(folded(x, scale, bias)[1:], textbook(x, scale, bias)[1:]):
        np.testing.assert_allclose(np.asarray(a).reshape(-1), np.asarray(b), rtol=1e-6, atol=1e-6)
    for a, b in zip(pull(dy), pull_want(dy)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape, axes, bshape", [((4, 3, 5, 6), (0, 2, 3), (1, -1, 1, 1)),
                                                 ((2, 3, 4, 5, 6), (1, 3, 4), (1, -1, 1, 1)),   # 2 groups
                                                 ((7, 5), (0,), (1, -1))])
def test_batch_norm_folded_gradient_of_every_output_in_float64(shape, axes, bshape, x64):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape) * 3 + 2
    channels = shape[-3] if len(bshape) == 4 else shape[-1]
    scale, bias = rng.standard_normal(channels), rng.standard_normal(channels)

    def textbook(x, scale, bias):
        mean, var = jnp.mean(x, axes, keepdims=True), jnp.var(x, axes, keepdims=True)
        y = (x - mean) / jnp.sqrt(var + 1e-5)
        return y * scale.reshape(bshape) + bias.reshape(bshape), mean, var

    cts = [rng.standard_normal(o.shape) for o in textbook(x, scale, bias)]
    _, pull = jax.vjp(lambda *a: _cpu_lowering.batch_norm_folded(*a, axes, bshape, 1e-5), x, scale, bias)
    _, pull_want = jax.vjp(textbook, x, scale, bias)
    for got, want in zip(pull(tuple(cts)), pull_want(tuple(cts))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-9)
