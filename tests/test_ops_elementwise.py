"""Semantics of the element-wise and binary operators that the op table can't
express: in-place add_bias, SINGA's softmax axis, onehot, casts, rounding,
ties, comparison dtypes, gemm flags, kink conventions and error messages."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from singax import autograd, tensor
from singax.autograd import binary
from _helpers import P, T


def grads(loss, dy=None):
    return {id(p): np.asarray(g.data) for p, g in autograd.backward(loss, dy)}


@pytest.fixture(autouse=True)
def _train():
    autograd.training = True


# --- add_bias ---------------------------------------------------------------

def test_add_bias_mutates_x_and_returns_the_result():
    x = T(np.arange(6).reshape(2, 3))
    y = autograd.add_bias(x, T([10, 20, 30]))
    want = np.arange(6).reshape(2, 3) + [10, 20, 30]
    np.testing.assert_allclose(y.data, want)
    np.testing.assert_allclose(x.data, want)   # SINGA: x itself sees the bias
    assert y is not x and y.creator.__class__.__name__ == "AddBias"


def test_add_bias_accepts_row_bias_and_un_broadcasts_its_gradient():
    x, b = P(np.ones((2, 3))), P([[1.0, 2.0, 3.0]])   # (1, n) as in SINGA's MLP guide
    y = autograd.add_bias(x, b)
    np.testing.assert_allclose(y.data, [[2, 3, 4], [2, 3, 4]])
    dy = np.arange(6, dtype=np.float32).reshape(2, 3)
    g = grads(y, T(dy))
    assert g[id(b)].shape == (1, 3)
    np.testing.assert_allclose(g[id(b)], dy.sum(0, keepdims=True))
    np.testing.assert_allclose(g[id(x)], dy)


def test_add_bias_axis1_adds_per_row_and_sums_grad_over_columns():
    x, b = P(np.zeros((2, 3))), P([1.0, -1.0])
    y = autograd.add_bias(x, b, axis=1)
    np.testing.assert_allclose(y.data, [[1, 1, 1], [-1, -1, -1]])
    dy = np.arange(6, dtype=np.float32).reshape(2, 3)
    g = grads(y, T(dy))
    np.testing.assert_allclose(g[id(b)], dy.sum(1))   # SINGA would sum over rows (wrong length)


def test_add_bias_errors_leave_x_unchanged():
    x = T(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"add_bias: x of shape \(2, 3\) with axis=0 needs a bias of 3"):
        autograd.add_bias(x, T([1.0, 2.0]))
    with pytest.raises(ValueError, match="add_bias: axis must be 0"):
        autograd.add_bias(x, T([1.0, 2.0, 3.0]), axis=2)
    with pytest.raises(ValueError, match="add_bias: x must be 2-D"):
        autograd.add_bias(T(np.ones(3)), T([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(x.data, np.ones((2, 3)))


def test_seed_guide_mlp_trains_with_matmul_add_bias_relu():
    """The MLP of SINGA's autograd guide, operation functions only."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((8, 2)).astype(np.float32)
    label = np.eye(2, dtype=np.float32)[(data[:, 0] * data[:, 1] > 0).astype(int)]
    w0, b0 = P(rng.normal(0, 0.1, (2, 3))), P(np.zeros((1, 3)))
    w1, b1 = P(rng.normal(0, 0.1, (3, 2))), P(np.zeros((1, 2)))
    params = [w0, b0, w1, b1]
    inputs, target = T(data), T(label)

    def reference_loss(w0, b0, w1, b1):
        h = jax.nn.relu(data @ w0 + b0) @ w1 + b1
        return -jnp.mean(jnp.sum(label * jax.nn.log_softmax(h, axis=1), axis=1))

    losses = []
    for _ in range(3):
        x = autograd.matmul(inputs, w0)
        x = autograd.add_bias(x, b0)
        x = autograd.relu(x)
        x = autograd.matmul(x, w1)
        x = autograd.add_bias(x, b1)
        loss = autograd.softmax_cross_entropy(x, target)
        values = [jnp.asarray(p.data) for p in params]
        want_loss = reference_loss(*values)
        want_grads = jax.grad(reference_loss, argnums=(0, 1, 2, 3))(*values)
        np.testing.assert_allclose(np.asarray(loss.data).item(), float(want_loss), rtol=1e-5)
        g = grads(loss)
        assert set(g) == {id(p) for p in params}
        for p, w in zip(params, want_grads):
            assert g[id(p)].shape == p.shape
            np.testing.assert_allclose(g[id(p)], w, rtol=1e-4, atol=1e-6)
        for p in params:
            p.data = p.data - 0.5 * g[id(p)]
        losses.append(float(want_loss))
    assert losses[2] < losses[0]
    np.testing.assert_allclose(inputs.data, data)   # add_bias mutated only the matmul outputs


# --- softmax ------------------------------------------------------------------

def _np_softmax(x, axes):
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


@pytest.mark.parametrize("axis,axes", [(1, (1, 2, 3)), (2, (2, 3)), (-1, (3,)), (0, (0, 1, 2, 3))])
def test_softmax_normalises_the_trailing_block_on_4d(axis, axes):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    x = P(a)
    y = autograd.softmax(x, axis)
    want = _np_softmax(a.astype(np.float64), axes)
    np.testing.assert_allclose(y.data, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(y.data).sum(axis=axes), 1.0, rtol=1e-5)
    dy = rng.standard_normal(a.shape)
    (_, g), = autograd.backward(y, T(dy))
    want_dx = want * (dy - (dy * want).sum(axis=axes, keepdims=True))
    np.testing.assert_allclose(g.data, want_dx, rtol=1e-4, atol=1e-6)


def test_softmax_axis_is_a_public_attribute_read_at_call_time():
    op = autograd.SoftMax()
    assert op.axis == 1
    op.axis = -1
    a = np.random.default_rng(4).standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(op(T(a))[0].data, _np_softmax(a, (2,)), rtol=1e-5)
    with pytest.raises(ValueError, match="softmax: axis 3 out of range for a 3-D input"):
        autograd.softmax(T(a), 3)


# --- onehot, cast, shape, nonzero, constant_of_shape ---------------------------

def test_onehot_axis_first_wraps_indices_and_uses_values():
    y = autograd.onehot(-1, T([0, 2, -1, 4], np.float32), 3, [-1.0, 5.0])
    want = np.array([[5, -1, -1], [-1, -1, 5], [-1, -1, 5], [-1, 5, -1]], np.float32)
    np.testing.assert_array_equal(y.data, want)
    assert y.dtype == tensor.float32


def test_onehot_inserts_the_new_dim_at_axis():
    idx = T([[0, 1, 2], [2, 1, 0]], np.int32)
    assert autograd.onehot(0, idx, 4, [0, 1]).shape == (4, 2, 3)
    assert autograd.onehot(1, idx, 4, [0, 1]).shape == (2, 4, 3)
    y = autograd.onehot(1, idx, 4, [0, 1])
    np.testing.assert_array_equal(np.asarray(y.data)[1, :, 0], [0, 0, 1, 0])


def test_onehot_attributes_may_be_set_after_construction():
    op = autograd.OneHot(-1, 2, [0.0, 1.0])
    assert (op.axis, op.depth, list(op.values)) == (-1, 2, [0.0, 1.0])
    op.depth = np.array([4])   # as SINGA's ONNX backend does
    assert op(T([3.0]))[0].shape == (1, 4)
    with pytest.raises(ValueError, match="onehot: depth must be a positive int"):
        autograd.OneHot(-1, None, [0, 1])(T([1.0]))


def test_cast_truncates_toward_zero_and_keeps_to():
    op = autograd.Cast(tensor.int32)
    y = op(T([-1.7, -0.5, 1.7, 2.9]))[0]
    assert op.to == tensor.int32 and y.dtype == tensor.int32
    np.testing.assert_array_equal(y.data, [-1, 0, 1, 2])
    assert autograd.cast(T([1, 2], np.int32), tensor.float32).dtype == tensor.float32


def test_shape_nonzero_constant_of_shape():
    x = T([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]])
    # autograd.shape is the submodule until __init__ rebinds it; call the op itself
    s = binary.shape(x)
    np.testing.assert_array_equal(s.data, [2, 3])
    assert s.dtype == tensor.int32
    nz = autograd.nonzero(x)
    np.testing.assert_array_equal(nz.data, [[0, 1, 1], [1, 0, 2]])
    assert nz.dtype == tensor.int32
    c = autograd.constant_of_shape(s, 2.5)
    assert c.shape == (2, 3) and c.dtype == tensor.float32
    np.testing.assert_array_equal(c.data, np.full((2, 3), 2.5))
    assert autograd.ConstantOfShape().value == 0.0
    with pytest.raises(ValueError, match=r"constant_of_shape: dims must be >= 0, got \[2, -1\]"):
        autograd.constant_of_shape(tensor.from_numpy(np.array([2, -1], np.int32)))
    with pytest.raises(ValueError, match=r"constant_of_shape: dims \[1000000, 1000000, 4\] ask for 4000000000000"):
        autograd.constant_of_shape(tensor.from_numpy(np.array([1000000, 1000000, 4], np.int32)))


# --- rounding, kinks ----------------------------------------------------------

def test_round_halves_away_from_zero_and_rounde_to_even():
    x = T([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, -0.49999997])
    np.testing.assert_array_equal(autograd.round(x).data, [-3, -2, -1, 1, 2, 3, 0, 0])
    np.testing.assert_array_equal(autograd.rounde(x).data, [-2, -2, 0, 0, 2, 2, 0, 0])


@pytest.mark.parametrize("fn,x,want", [
    (autograd.relu, [-1.0, 0.0, 2.0], [0, 0, 1]),
    (lambda t: autograd.leakyrelu(t, 0.1), [-1.0, 0.0, 2.0], [0.1, 0, 1]),
    (autograd.abs, [-1.0, 0.0, 2.0], [-1, 0, 1]),
    (lambda t: autograd.clip(t, -1.0, 1.0), [-1.5, -1.0, 0.0, 1.0, 1.5], [0, 1, 1, 1, 0]),
    (lambda t: autograd.clip(t, None, 0.0), [-2.0, 0.0, 3.0], [1, 1, 0]),
    # z = 0.25x + 0.5 is exactly 0 at x=-2 and 1 at x=2: strict bounds, so 0 there
    (lambda t: autograd.hardsigmoid(t, 0.25, 0.5), [-2.0, 0.0, 2.0, 3.0], [0, 0.25, 0, 0]),
    (autograd.sign, [-1.0, 2.0], [0, 0]),
    (autograd.floor, [-1.3, 2.7], [0, 0]),
])
def test_singa_gradient_conventions_at_kinks(fn, x, want):
    p = P(x)
    (_, g), = autograd.backward(fn(p), T(np.ones(len(x))))
    np.testing.assert_allclose(g.data, want, rtol=1e-6)


def test_gradient_scales_with_dy():
    p = P([-1.0, 2.0])
    (_, g), = autograd.backward(autograd.leakyrelu(p, 0.1), T([3.0, -2.0]))
    np.testing.assert_allclose(g.data, [0.3, -2.0], rtol=1e-6)


def test_erf_gradient_is_the_true_derivative():
    a = np.array([-0.7, 0.0, 1.2], np.float32)
    p = P(a)
    (_, g), = autograd.backward(autograd.erf(p), T([2.0, 1.0, -1.0]))
    np.testing.assert_allclose(g.data, np.array([2, 1, -1]) * 2 / np.sqrt(np.pi) * np.exp(-a ** 2), rtol=1e-5)


def test_parameterised_activations_keep_public_attributes():
    assert autograd.LeakyRelu(0.2).a == 0.2
    c = autograd.Clip(-1.0, 1.0)
    assert (c.min, c.max) == (-1.0, 1.0)
    c.max = np.array(0.5, np.float32)   # ONNX backends set bounds as arrays
    np.testing.assert_allclose(c(T([-2.0, 0.7]))[0].data, [-1.0, 0.5])
    assert autograd.Elu().alpha == 1.0
    s = autograd.SeLU()
    assert (s.alpha, s.gamma) == (1.67326, 1.0507)
    h = autograd.HardSigmoid(0.3, 0.4)
    assert (h.alpha, h.gamma) == (0.3, 0.4)
    assert autograd.AddBias(1).axis == 1


def test_prelu_channel_slope_gradients():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    s = np.array([0.1, 0.2, 0.3], np.float32).reshape(3, 1, 1)
    x, slope = P(a), P(s)
    y = autograd.prelu(x, slope)
    np.testing.assert_allclose(y.data, np.where(a >= 0, a, s * a), rtol=1e-6)
    dy = rng.standard_normal(a.shape).astype(np.float32)
    g = grads(y, T(dy))
    np.testing.assert_allclose(g[id(x)], dy * np.where(a >= 0, 1, s), rtol=1e-5)
    np.testing.assert_allclose(g[id(slope)], (dy * a * (a < 0)).sum(axis=(0, 2, 3)).reshape(3, 1, 1),
                               rtol=1e-5, atol=1e-6)


# --- n-ary --------------------------------------------------------------------

def test_max_min_ties_go_to_the_earlier_input_and_grads_scale_with_dy():
    a, b, c = P([1.0, 2.0, 3.0]), P([1.0, 5.0, 3.0]), P([0.0, 5.0, 3.0])
    dy = T([2.0, 3.0, 4.0])
    y = autograd.max(a, b, c)
    np.testing.assert_allclose(y.data, [1, 5, 3])
    g = grads(y, dy)
    np.testing.assert_allclose(g[id(a)], [2, 0, 4])
    np.testing.assert_allclose(g[id(b)], [0, 3, 0])
    np.testing.assert_allclose(g[id(c)], [0, 0, 0])
    y = autograd.min(a, b, c)
    np.testing.assert_allclose(y.data, [0, 2, 3])
    g = grads(y, dy)
    np.testing.assert_allclose(g[id(a)], [0, 3, 4])
    np.testing.assert_allclose(g[id(c)], [2, 0, 0])


def test_single_input_max_passes_dy_through():
    a = P([1.0, -2.0])
    (_, g), = autograd.backward(autograd.max(a), T([3.0, 4.0]))
    np.testing.assert_allclose(g.data, [3, 4])


def test_sum_and_mean_work_through_backward():
    a, b, c = P([1.0, 2.0]), P([3.0, 4.0]), P([5.0, 6.0])
    y = autograd.sum(a, b, c)
    np.testing.assert_allclose(y.data, [9, 12])
    g = grads(y, T([1.0, 2.0]))
    assert all(np.allclose(g[id(p)], [1, 2]) for p in (a, b, c))
    y = autograd.mean(a, b, c)
    np.testing.assert_allclose(y.data, [3, 4])
    g = grads(y, T([3.0, 6.0]))
    assert all(np.allclose(g[id(p)], [1, 2]) for p in (a, b, c))


@pytest.mark.parametrize("n", [1, 2, 4])
def test_add_all_sums_any_number_of_inputs(n):
    ps = [P([float(i), 1.0]) for i in range(n)]
    y = autograd.add_all(*ps)
    np.testing.assert_allclose(y.data, [sum(range(n)), n])
    if n > 1:
        g = grads(y, T([1.0, 2.0]))
        assert all(np.allclose(g[id(p)], [1, 2]) for p in ps)
    with pytest.raises(TypeError, match="add_all"):
        autograd.add_all()


# --- matmul, gemm ---------------------------------------------------------------

@pytest.mark.parametrize("xs,ws", [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2))])
def test_matmul_gradients_match_jax_including_batched(xs, ws):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    x, w = P(a), P(b)
    y = autograd.matmul(x, w)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    g = grads(y, T(dy))
    _, pull = jax.vjp(jnp.matmul, a, b)
    want_x, want_w = pull(dy)
    np.testing.assert_allclose(g[id(x)], want_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g[id(w)], want_w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("transA", [0, 1])
@pytest.mark.parametrize("transB", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (3, 5)])
def test_gemm_trans_flags_and_bias_shapes(transA, transB, c_shape):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((4, 3) if transA else (3, 4)).astype(np.float32)
    b = rng.standard_normal((5, 4) if transB else (4, 5)).astype(np.float32)
    ins = [a, b] if c_shape is None else [a, b, rng.standard_normal(c_shape).astype(np.float32)]
    ps = [P(v) for v in ins]

    def ref(a, b, c=None):
        y = 0.5 * ((a.T if transA else a) @ (b.T if transB else b))
        return y if c is None else y - 2.0 * c
    y = autograd.gemm(*ps[:2], ps[2] if c_shape else None, 0.5, -2.0, transA, transB)
    assert y.shape == (3, 5)
    np.testing.assert_allclose(y.data, ref(*ins), rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal((3, 5)).astype(np.float32)
    g = grads(y, T(dy))
    _, pull = jax.vjp(ref, *ins)
    for p, want in zip(ps, pull(dy)):
        assert g[id(p)].shape == p.shape
        np.testing.assert_allclose(g[id(p)], want, rtol=1e-5, atol=1e-5)
    op = y.creator
    assert (op.alpha, op.beta, op.transA, op.transB) == (0.5, -2.0, transA, transB)


# --- comparisons and logic --------------------------------------------------------

def test_comparisons_return_floats_and_broadcast():
    x, y = T([[1.0, 2.0, 3.0]]), T([[2.0], [1.0]])
    for fn, want in [(autograd.less, [[1, 0, 0], [0, 0, 0]]), (autograd.greater, [[0, 0, 1], [0, 1, 1]]),
                     (autograd.equal, [[0, 1, 0], [1, 0, 0]])]:
        r = fn(x, y)
        assert r.dtype == tensor.float32
        np.testing.assert_array_equal(r.data, want)
    r = autograd.less(T([1, 5], np.int32), T([3, 3], np.int32))
    assert r.dtype == tensor.float32
    np.testing.assert_array_equal(r.data, [1, 0])


def test_logical_ops_treat_non_zero_as_true():
    a, b = T([0.0, 0.0, 2.0, -3.0]), T([0.0, 0.5, 0.0, 1.0])
    np.testing.assert_array_equal(autograd._and(a, b).data, [0, 0, 0, 1])
    np.testing.assert_array_equal(autograd._or(a, b).data, [0, 1, 1, 1])
    np.testing.assert_array_equal(autograd._xor(a, b).data, [0, 1, 1, 0])
    np.testing.assert_array_equal(autograd._not(a).data, [1, 1, 0, 0])
    assert autograd._not(T([0, 3], np.int32)).dtype == tensor.float32


def test_comparisons_have_no_backward():
    op = autograd.Greater()
    y = op(P([1.0]), P([0.0]))[0]
    with pytest.raises(RuntimeError, match="Greater: this operator has no gradient"):
        op.backward(y.data)


def test_shape_backward_returns_the_shape_of_dy():
    x = P(np.ones((3, 2), np.float32))
    s = binary.shape(x)
    assert s.creator.backward(np.ones((4, 5, 6), np.float32)) == [4, 5, 6]
    assert s.creator.backward(T(np.zeros((2, 7))).data) == [2, 7]
    assert s.creator.backward() == []   # SINGA's default dy = 1.0 has no dims
    # the tape's own backward of Shape is unchanged: no gradient
    with pytest.raises(RuntimeError, match="Shape: this operator has no gradient"):
        s.creator._backward_raw(np.ones(2, np.float32))


# --- dtypes -------------------------------------------------------------------------

def test_int_results_follow_singa():
    i, f = T([7, -7], np.int32), T([2.0, 2.0])
    assert autograd.mul(i, T([1.5, 1.5])).dtype == tensor.int32
    np.testing.assert_array_equal(autograd.mul(i, T([1.5, 1.5])).data, [10, -10])
    d = autograd.div(i, f)
    assert d.dtype == tensor.int32
    np.testing.assert_array_equal(d.data, [3, -3])   # computed in float, truncated
    assert autograd.sub(i, T([0.5, 0.5])).dtype == tensor.int32
    assert autograd.sub(f, i).dtype == tensor.float32
    assert autograd.add(i, i).dtype == tensor.int32


# --- error messages -------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: autograd.matmul(T(np.ones((3, 4))), T(np.ones((5, 6)))),
     r"matmul: x of shape \(3, 4\) has 4 columns but w of shape \(5, 6\) has 5 rows"),
    (lambda: autograd.matmul(T(np.ones((2, 3, 4))), T(np.ones((3, 4, 2)))),
     r"matmul: batch dimensions of x \(2, 3, 4\) and w \(3, 4, 2\) do not broadcast"),
    (lambda: autograd.add(T(np.ones((3, 4))), T(np.ones(5))), r"add: .*\(3, 4\).*\(5,\)"),
    (lambda: autograd.pow(T(np.ones((3, 4))), T(np.ones((2, 4)))), r"pow: .*\(3, 4\).*\(2, 4\)"),
    (lambda: autograd.gemm(T(np.ones((3, 4))), T(np.ones((3, 5)))), r"gemm: A' \(3, 4\) and B' \(3, 5\)"),
    (lambda: autograd.gemm(T(np.ones((3, 4))), T(np.ones((4, 5))), T(np.ones(3))),
     r"gemm: C of shape \(3,\) does not broadcast to the output shape \(3, 5\)"),
    (lambda: autograd.onehot(3, T([1.0]), 2, [0, 1]), r"onehot: axis 3 out of range"),
    (lambda: autograd.cast(T([1.0]), None), r"cast: `to`"),
])
def test_bad_inputs_raise_value_errors_naming_the_op(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_max_and_min_propagate_nan_whatever_the_input_order():
    a, b = T([np.nan, 1.0, 3.0]), T([2.0, np.nan, 1.0])
    for fn, ref in ((autograd.max, np.maximum), (autograd.min, np.minimum)):
        np.testing.assert_array_equal(fn(a, b).data, ref(a.data, b.data))
        np.testing.assert_array_equal(fn(b, a).data, ref(b.data, a.data))
