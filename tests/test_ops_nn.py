"""Neural-network operators and losses against numpy loops,
finite differences and SINGA's formulas. The op table (tests/test_ops.py) covers
the rows again with its own samples."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from singax import autograd, device, tensor
from singax._compile import GraphFunction
from singax.autograd import nn as nn_mod
from singax.autograd import rnn as rnn_mod
from singax.tensor import Tensor
from _helpers import P, T, assert_grads_match_fd


def grads_of(y, dy, *xs):
    """Tape gradients of <y, dy> for the tensors xs (None where not yielded)."""
    dy = np.asarray(dy, np.asarray(y.data).dtype)
    got = {id(p): np.asarray(g.data) for p, g in autograd.backward(y, Tensor(data=dy, dtype=dy.dtype))}
    return [got.get(id(x)) for x in xs]


def weighted(forward, dy):
    """The loss <forward(), dy> as a closure for `assert_grads_match_fd`."""
    w = Tensor(data=np.asarray(dy), requires_grad=False)
    return lambda: autograd.mul(forward(), w)


# ----------------------------------------------------------------------------- numpy loops
def np_conv(x, W, b, stride, pad, odd=(0, 0, 0, 0), group=1, dil=(1, 1)):
    x = np.pad(x, ((0, 0), (0, 0), (pad[0] + odd[0], pad[0] + odd[1]), (pad[1] + odd[2], pad[1] + odd[3])))
    N, C, H, Wd = x.shape
    O, Cg, KH, KW = W.shape
    OH = (H - dil[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (Wd - dil[1] * (KW - 1) - 1) // stride[1] + 1
    out = np.zeros((N, O, OH, OW))
    og = O // group
    for o in range(O):
        g = o // og
        for i in range(OH):
            for j in range(OW):
                for kh in range(KH):
                    for kw in range(KW):
                        patch = x[:, g * Cg:(g + 1) * Cg, i * stride[0] + kh * dil[0], j * stride[1] + kw * dil[1]]
                        out[:, o, i, j] += patch @ W[o, :, kh, kw]
    return out if b is None else out + b[None, :, None, None]


def np_pool(x, k, s, p, is_max, odd=(0, 0, 0, 0)):
    x = np.pad(x, ((0, 0), (0, 0), odd[:2], odd[2:]), mode="edge")
    N, C, H, W = x.shape
    OH, OW = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    out = np.zeros((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            r0, c0 = i * s[0] - p[0], j * s[1] - p[1]
            win = x[:, :, max(r0, 0):min(r0 + k[0], H), max(c0, 0):min(c0 + k[1], W)]
            out[:, :, i, j] = win.max(axis=(2, 3)) if is_max else win.mean(axis=(2, 3))
    return out


# ----------------------------------------------------------------------------- handles
def test_handles_expose_singa_attributes_and_hash_by_configuration():
    x = Tensor(data=np.zeros((2, 4, 9, 8), np.float32))
    h = autograd.ConvHandle(x, (3, 2), 2, (1, 0), 4, 6, True, 2)
    assert (h.kernel_h, h.kernel_w, h.stride_h, h.stride_w, h.pad_h, h.pad_w) == (3, 2, 2, 2, 1, 0)
    assert (h.channels, h.num_filters, h.group, h.bias_term, h.batchsize) == (4, 6, 2, True, 2)
    assert (h.dilation_h, h.dilation_w, h.conv_height, h.conv_width) == (1, 1, 5, 4)
    assert h == autograd.ConvHandle((5, 4, 9, 8), (3, 2), 2, (1, 0), 4, 6, True, 2)
    assert hash(h) == hash(autograd.ConvHandle((5, 4, 9, 8), (3, 2), 2, (1, 0), 4, 6, True, 2))
    assert h != autograd.ConvHandle(x, (3, 2), 1, (1, 0), 4, 6, True, 2)
    p = autograd.PoolingHandle(x.data, 3, 2, 1, is_max=False)
    assert (p.kernel_h, p.stride_w, p.pad_h, p.is_max_pooling, p.batchsize) == (3, 2, 1, False, 2)
    assert (p.pooled_height, p.pooled_width) == (5, 4)
    b = autograd.BatchNormHandle(0.9, x)
    assert b.factor == 0.9 and b.batchsize == 2
    r = autograd.CudnnRNNHandle((5, 3, 4), 6, mode="lstm", num_layers=2, bidirectional=True)
    assert (r.mode, r.num_layers, r.hidden_size, r.feature_size, r.bidirectional) == (2, 2, 6, 4, True)
    assert (r.batch_size, r.seq_length, r.dropout) == (3, 5, 0.0)
    # cuDNN double-bias size: per layer and direction 4H*(in + H + 2)
    assert r.weights_size == 2 * 24 * (4 + 6 + 2) + 2 * 24 * (12 + 6 + 2)
    with pytest.raises(ValueError, match="ConvHandle"):
        autograd.ConvHandle(x, 3, 1, 0, 3, 6, True)


def test_handle_rebinding_changes_its_hash():
    h = autograd.PoolingHandle((1, 1, 4, 4), 2, 2, 0)
    before = hash(h)
    h.stride_h = 1
    assert hash(h) != before and h == autograd.PoolingHandle((1, 1, 4, 4), 2, (1, 2), 0)


# ----------------------------------------------------------------------------- conv
CONV_CASES = [
    # (x shape, O, kernel, stride, pad, odd, group, dilation, bias)
    ((2, 3, 5, 6), 4, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 1, (1, 1), True),
    ((1, 2, 7, 6), 3, (3, 2), (2, 2), (0, 1), (0, 0, 0, 0), 1, (1, 1), False),
    ((1, 2, 6, 6), 2, (2, 2), (2, 2), (0, 0), (1, 0, 0, 1), 1, (1, 1), True),
    ((2, 4, 5, 5), 6, (3, 3), (1, 2), (1, 0), (0, 0, 0, 0), 2, (1, 1), True),
    ((1, 2, 7, 8), 2, (3, 2), (1, 1), (2, 1), (0, 1, 1, 0), 1, (2, 3), False),
]


def _conv_inputs(case, dtype=np.float32):
    shape, O, k, s, p, odd, g, dil, bias = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    W = rng.standard_normal((O, shape[1] // g) + k)
    b = rng.standard_normal(O) if bias else None
    h = autograd.ConvHandle(shape, k, s, p, shape[1], O, bias, g, dilation=dil)
    return h, x, W, b


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_numpy_loops(case):
    h, x, W, b = _conv_inputs(case)
    _, _, _, s, p, odd, g, dil, _ = case
    y = autograd.conv2d(h, P(x, np.float32), P(W, np.float32),
                        None if b is None else P(b, np.float32), odd)
    np.testing.assert_allclose(np.asarray(y.data), np_conv(x, W, b, s, p, odd, g, dil), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[3], CONV_CASES[4]])
def test_conv2d_gradients_match_finite_differences(case, x64):
    autograd.training = True
    h, x, W, b = _conv_inputs(case)
    _, _, _, s, p, odd, g, dil, _ = case
    xs = [x, W] + ([b] if b is not None else [])
    ts = [P(a) for a in xs]
    y = autograd.conv2d(h, *ts[:2], ts[2] if b is not None else None, odd)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    got = grads_of(y, dy, *ts)
    assert all(gr is not None and gr.shape == a.shape for gr, a in zip(got, xs))
    conv = lambda: autograd.conv2d(h, *ts[:2], ts[2] if b is not None else None, odd)  # noqa: E731
    assert_grads_match_fd(weighted(conv, dy), ts, tol=1e-6, max_elements=8)


def test_conv2d_without_bias_returns_two_gradients():
    autograd.training = True
    h, x, W, _ = _conv_inputs(CONV_CASES[1])
    y = autograd.conv2d(h, P(x, np.float32), P(W, np.float32))
    assert len(y.creator.backward(jnp.ones(y.shape))) == 2


def test_conv2d_wrong_channel_count_names_op_and_shapes():
    h = autograd.ConvHandle((1, 3, 5, 5), 3, 1, 0, 3, 2, False)
    x = Tensor(data=np.zeros((1, 4, 5, 5), np.float32))
    W = Tensor(data=np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: expected input \(N, 3, H, W\).*\(1, 4, 5, 5\)"):
        autograd.conv2d(h, x, W)
    with pytest.raises(ValueError, match=r"conv2d: expected W of shape \(2, 3, 3, 3\), got \(2, 3, 2, 2\)"):
        autograd.conv2d(h, Tensor(data=np.zeros((1, 3, 5, 5), np.float32)),
                        Tensor(data=np.zeros((2, 3, 2, 2), np.float32)))


def test_conv2d_compiles_once_per_configuration():
    h, x, W, b = _conv_inputs(CONV_CASES[0])
    spec = autograd.OPS["conv2d"]
    xt, Wt, bt = (P(a, np.float32) for a in (x, W, b))
    autograd.conv2d(h, xt, Wt, bt)
    fwd = spec.compiled((h, (0, 0, 0, 0)))[0]
    n_keys, n_traces = len(spec._compiled), fwd._cache_size()
    h2 = autograd.ConvHandle(x.shape, 3, 1, 1, 3, 4, True)  # equal configuration, new object
    for _ in range(3):
        autograd.conv2d(h2, xt, Wt, bt)
    assert len(spec._compiled) == n_keys and fwd._cache_size() == n_traces


# ----------------------------------------------------------------------------- pooling
POOL_CASES = [
    # (x shape, kernel, stride, pad, is_max, odd)
    ((2, 2, 6, 6), (2, 2), (2, 2), (0, 0), True, (0, 0, 0, 0)),
    ((1, 2, 5, 7), (3, 3), (2, 2), (1, 1), True, (0, 0, 0, 0)),
    ((1, 2, 5, 7), (3, 3), (2, 2), (1, 1), False, (0, 0, 0, 0)),
    ((1, 1, 5, 6), (3, 2), (1, 2), (1, 1), False, (1, 0, 0, 1)),
    ((1, 1, 5, 5), (2, 2), (2, 2), (0, 0), True, (0, 1, 0, 1)),
]


def _pool_x(shape):
    return np.random.default_rng(0).permutation(int(np.prod(shape))).reshape(shape) * 0.37


@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling_2d_matches_numpy_loops(case):
    shape, k, s, p, is_max, odd = case
    x = _pool_x(shape)
    h = autograd.PoolingHandle(shape, k, s, p, is_max)
    y = autograd.pooling_2d(h, P(x, np.float32), odd)
    np.testing.assert_allclose(np.asarray(y.data), np_pool(x, k, s, p, is_max, odd), rtol=1e-5, atol=1e-5)


def test_average_pooling_excludes_padding_and_odd_padding_duplicates_border():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    h = autograd.PoolingHandle(x.shape, 2, 2, 1, is_max=False)
    y = np.asarray(autograd.pooling_2d(h, P(x)).data)
    assert y[0, 0, 0, 0] == 0.0              # the corner window holds one real element
    assert y[0, 0, 0, 1] == (1 + 2) / 2      # two real elements, padding not counted
    x = x[:, :, :3]
    h = autograd.PoolingHandle(x.shape, 2, 2, 0, is_max=False)
    y = np.asarray(autograd.pooling_2d(h, P(x), (0, 1, 0, 0)).data)
    np.testing.assert_array_equal(y[0, 0, 1], [8.5, 10.5])   # bottom row duplicated, not zeros


@pytest.mark.parametrize("case", [POOL_CASES[1], POOL_CASES[3], POOL_CASES[4]])
def test_pooling_2d_gradients_match_finite_differences(case, x64):
    autograd.training = True
    shape, k, s, p, is_max, odd = case
    x = _pool_x(shape)
    xt = P(x)
    y = autograd.pooling_2d(autograd.PoolingHandle(shape, k, s, p, is_max), xt, odd)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    (g,) = grads_of(y, dy, xt)
    pool = lambda: autograd.pooling_2d(autograd.PoolingHandle(shape, k, s, p, is_max), xt, odd)  # noqa: E731
    assert_grads_match_fd(weighted(pool, dy), [xt], eps=1e-4, tol=1e-6, max_elements=8)
    if is_max and not any(odd):  # max routes each dy to exactly one arg-max element
        assert np.isclose(g.sum(), dy.sum())


# ----------------------------------------------------------------------------- batchnorm
def np_bn(x, scale, bias):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    mean, var = x.mean(axes), x.var(axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5)
    return y * scale.reshape(shape) + bias.reshape(shape), mean, var


def _bn_setup(shape, momentum=0.9, dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 2 + 1
    scale, bias = rng.uniform(0.5, 1.5, shape[1]), rng.standard_normal(shape[1])
    rm0, rv0 = rng.standard_normal(shape[1]), rng.uniform(0.5, 2, shape[1])
    ts = [P(a, dtype) for a in (x, scale, bias)]
    rm, rv = T(rm0, dtype), T(rv0, dtype)
    return (x, scale, bias, rm0, rv0), ts, rm, rv, autograd.BatchNormHandle(momentum, ts[0])


@pytest.mark.parametrize("shape", [(4, 3, 2, 3), (5, 4)])
def test_batchnorm_training_output_and_running_stats(shape):
    autograd.training = True
    (x, scale, bias, rm0, rv0), ts, rm, rv, h = _bn_setup(shape, momentum=0.9)
    y = autograd.batchnorm_2d(h, *ts, rm, rv)
    want, mean, var = np_bn(x, scale, bias)
    np.testing.assert_allclose(np.asarray(y.data), want, rtol=1e-4, atol=1e-4)
    n = x.size // shape[1]
    np.testing.assert_allclose(np.asarray(rm.data), 0.1 * rm0 + 0.9 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(rv.data), 0.1 * rv0 + 0.9 * var * n / (n - 1), rtol=1e-5, atol=1e-6)


def test_batchnorm_eval_uses_running_stats_and_leaves_them():
    autograd.training = False
    (x, scale, bias, rm0, rv0), ts, rm, rv, h = _bn_setup((3, 2, 2, 2))
    y = autograd.batchnorm_2d(h, *ts, rm, rv)
    s = (1, -1, 1, 1)
    want = (x - rm0.reshape(s)) / np.sqrt(rv0.reshape(s) + 1e-5) * scale.reshape(s) + bias.reshape(s)
    np.testing.assert_allclose(np.asarray(y.data), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(rm.data), rm0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(rv.data), rv0, rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 2, 2, 3), (6, 3)])
def test_batchnorm_gradients_match_finite_differences(shape, x64):
    autograd.training = True
    _, ts, rm, rv, h = _bn_setup(shape, dtype=np.float64)
    y = autograd.batchnorm_2d(h, *ts, rm, rv)
    dy = np.random.default_rng(2).standard_normal(shape)
    assert y.creator.running_mean is rm and len(y.creator.src) == 3
    assert_grads_match_fd(weighted(lambda: autograd.batchnorm_2d(h, *ts, rm, rv), dy), ts, tol=1e-6,
                          max_elements=8)


def test_batchnorm_shape_mismatch_is_a_clear_error():
    autograd.training = True
    _, ts, rm, rv, h = _bn_setup((2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"batchnorm_2d: .*scale of shape \(C,\).*\(2, 3, 2, 2\).*\(4,\)"):
        autograd.batchnorm_2d(h, ts[0], P(np.ones(4, np.float32)), ts[2], rm, rv)
    np.testing.assert_allclose(np.asarray(rm.data), np.asarray(_bn_setup((2, 3, 2, 2))[2].data))


# ----------------------------------------------------------------------------- dropout
def test_dropout_eval_is_identity():
    autograd.training = False
    x = P(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32))
    y = autograd.dropout(x, 0, 0.5)
    np.testing.assert_array_equal(np.asarray(y.data), np.asarray(x.data))


def test_dropout_training_scales_kept_units_and_is_unbiased():
    autograd.training = True
    ratio = 0.3
    x = np.random.default_rng(0).uniform(1, 2, (200, 100)).astype(np.float32)
    y = np.asarray(autograd.dropout(P(x), 0, ratio).data)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - ratio), rtol=1e-6)
    assert abs(kept.mean() - (1 - ratio)) < 0.01
    assert abs(y.mean() / x.mean() - 1) < 0.02      # E[y] = x


def test_dropout_backward_uses_the_same_mask():
    autograd.training = True
    x = P(np.ones((6, 7), np.float32))
    y = autograd.dropout(x, 0, 0.25)
    dy = np.random.default_rng(1).standard_normal((6, 7)).astype(np.float32)
    (g,) = grads_of(y, dy, x)
    np.testing.assert_allclose(g, dy * np.asarray(y.data), rtol=1e-6)   # y = mask / 0.75 here


def test_dropout_fresh_mask_each_call_and_reproducible_after_set_rand_seed():
    autograd.training = True
    dev = device.get_default_device()
    x = P(np.ones((8, 16), np.float32))
    dev.SetRandSeed(42)
    a, b = (np.asarray(autograd.dropout(x).data) for _ in range(2))
    assert not np.array_equal(a, b)
    dev.SetRandSeed(42)
    np.testing.assert_array_equal(np.asarray(autograd.dropout(x).data), a)
    # the op's seed does not reseed the device (SINGA's reseed made every mask equal)
    c, d = (np.asarray(autograd.Dropout(seed=5)(x)[0].data) for _ in range(2))
    assert not np.array_equal(c, d)


def test_dropout_old_signature_takes_ratio_from_seed():
    op = autograd.Dropout(0.2)
    assert op.ratio == 0.2 and op.seed == 0
    autograd.training = True
    y = np.asarray(autograd.dropout(P(np.ones((50, 50), np.float32)), 0.2).data)
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.8], rtol=1e-6)
    with pytest.raises(ValueError, match="Dropout: ratio"):
        autograd.Dropout(ratio=1.0)


# ----------------------------------------------------------------------------- embedding, cossim
def test_embedding_lookup_and_scatter_add_gradient():
    autograd.training = True
    w = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    idx = np.array([[0, 2, 2], [4, 0, 2]], np.float32)   # float indices, as SINGA allows
    xt, wt = P(idx), P(w)
    y = autograd.embedding(xt, wt)
    np.testing.assert_array_equal(np.asarray(y.data), w[idx.astype(int)])
    dy = np.random.default_rng(1).standard_normal((2, 3, 3)).astype(np.float32)
    gx, gw = grads_of(y, dy, xt, wt)
    want = np.zeros_like(w)
    np.add.at(want, idx.astype(int).ravel(), dy.reshape(-1, 3))
    np.testing.assert_allclose(gw, want, rtol=1e-6)
    assert gx is None
    with pytest.raises(ValueError, match=r"embedding: indices must be in \[0, 5\)"):
        autograd.embedding(T(np.array([[5]], np.int32)), wt)


def test_cossim_matches_numpy_and_finite_differences(x64):
    autograd.training = True
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    at, bt = P(a), P(b)
    y = autograd.cossim(at, bt)
    f = lambda a, b: np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # noqa: E731
    np.testing.assert_allclose(np.asarray(y.data), f(a, b), rtol=1e-12)
    dy = rng.standard_normal(4)
    assert_grads_match_fd(weighted(lambda: autograd.cossim(at, bt), dy), [at, bt], tol=1e-6, max_elements=8)


# ----------------------------------------------------------------------------- RNN
def np_rnn_loop(x, hx, cx, W, mode, H, L, bidir, bias=True, lens=None):
    """Independent reference: unpacks the documented flat layout itself."""
    T_, B, F = x.shape
    G, D = {"relu": 1, "tanh": 1, "lstm": 4, "gru": 3}[mode], 2 if bidir else 1
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    lens = np.full(B, T_) if lens is None else lens
    off, inp = 0, x

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        off += n
        return W[off - n:off].reshape(shape)
    for layer in range(L):
        fin = F if layer == 0 else H * D
        outs = []
        for d in range(D):
            wih, whh = take(G * H, fin), take(G * H, H)
            bih, bhh = (take(G * H), take(G * H)) if bias else (np.zeros(G * H),) * 2
            h, c = hx[layer * D + d].copy(), cx[layer * D + d].copy()
            out = np.zeros((T_, B, H))
            steps = range(T_) if d == 0 else range(T_ - 1, -1, -1)
            for t in steps:
                gx, gh = inp[t] @ wih.T + bih, h @ whh.T + bhh
                if mode == "lstm":
                    i, f, g, o = (gx + gh)[:, :H], (gx + gh)[:, H:2 * H], (gx + gh)[:, 2 * H:3 * H], (gx + gh)[:, 3 * H:]
                    c_new = sig(f) * c + sig(i) * np.tanh(g)
                    h_new = sig(o) * np.tanh(c_new)
                elif mode == "gru":
                    r = sig(gx[:, :H] + gh[:, :H])
                    z = sig(gx[:, H:2 * H] + gh[:, H:2 * H])
                    n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
                    h_new, c_new = (1 - z) * n + z * h, c
                else:
                    pre = gx + gh
                    h_new, c_new = (np.tanh(pre) if mode == "tanh" else np.maximum(pre, 0)), c
                for bi in range(B):
                    if t < lens[bi]:
                        h[bi], c[bi], out[t, bi] = h_new[bi], c_new[bi], h_new[bi]
            outs.append(out)
        inp = np.concatenate(outs, -1)
    assert off == W.size
    return inp


RNN_CASES = [
    ("lstm", 1, False), ("gru", 1, False), ("tanh", 1, False), ("relu", 1, True),
    ("lstm", 2, True), ("gru", 2, False),
]


def _rnn_setup(mode, L, bidir, T_=4, B=3, F=3, H=2, bias=True, dtype=np.float32):
    rng = np.random.default_rng(0)
    h = autograd.CudnnRNNHandle((T_, B, F), H, mode, L, bias, 0.0, bidir)
    D = 2 if bidir else 1
    arrays = [rng.standard_normal((T_, B, F)), rng.standard_normal((L * D, B, H)) * 0.5,
              rng.standard_normal((L * D, B, H)) * 0.5, rng.uniform(-0.7, 0.7, h.weights_size)]
    return h, arrays, [P(a, dtype) for a in arrays]


@pytest.mark.parametrize("mode,L,bidir", RNN_CASES)
def test_rnn_forward_matches_numpy_step_loop(mode, L, bidir):
    h, arrays, ts = _rnn_setup(mode, L, bidir)
    want = np_rnn_loop(*arrays, mode, 2, L, bidir)
    y = autograd._RNN(h, return_sequences=True)(*ts)[0]
    np.testing.assert_allclose(np.asarray(y.data), want, rtol=1e-4, atol=1e-5)
    last = autograd._RNN(h)(*ts)[0]
    np.testing.assert_allclose(np.asarray(last.data), want[-1], rtol=1e-4, atol=1e-5)


def test_rnn_without_bias_and_with_mask():
    h, arrays, ts = _rnn_setup("lstm", 1, True, bias=False)
    np.testing.assert_allclose(np.asarray(autograd._RNN(h, True)(*ts)[0].data),
                               np_rnn_loop(*arrays, "lstm", 2, 1, True, bias=False), rtol=1e-4, atol=1e-5)
    h, arrays, ts = _rnn_setup("gru", 2, True)
    lens = np.array([4, 2, 1], np.int32)
    y = autograd._RNN(h, True, True, Tensor(data=lens, dtype=tensor.int32))(*ts)[0]
    want = np_rnn_loop(*arrays, "gru", 2, 2, True, lens=lens)
    np.testing.assert_allclose(np.asarray(y.data), want, rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(y.data)[2:, 1] == 0)
    with pytest.raises(ValueError, match="seq_lengths"):
        autograd._RNN(h, True, True)(*ts)


@pytest.mark.parametrize("mode,L,bidir", [("lstm", 2, True), ("gru", 1, False), ("tanh", 1, True)])
def test_rnn_gradients_match_finite_differences(mode, L, bidir, x64):
    autograd.training = True
    h, arrays, ts = _rnn_setup(mode, L, bidir, T_=3, B=2, dtype=np.float64)
    y = autograd._RNN(h, return_sequences=True)(*ts)[0]
    dy = np.random.default_rng(4).standard_normal(y.shape)
    assert len(y.creator.backward(jnp.asarray(dy))) == 4
    got = grads_of(y, dy, *ts)
    fed = ts if mode == "lstm" else ts[:2] + ts[3:]   # cx feeds only LSTMs
    rnn = lambda: autograd._RNN(h, return_sequences=True)(*ts)[0]  # noqa: E731
    assert_grads_match_fd(weighted(rnn, dy), fed, tol=1e-6, max_elements=8)
    if mode != "lstm":
        np.testing.assert_array_equal(got[2], 0)


def test_rnn_uses_scan_and_rejects_wrong_weight_size():
    h, arrays, ts = _rnn_setup("lstm", 1, False)
    jaxpr = jax.make_jaxpr(lambda *a: rnn_mod._rnn_forward(*a, handle=h))(*[jnp.asarray(a) for a in arrays])
    assert "scan" in str(jaxpr)
    with pytest.raises(ValueError, match=rf"_RNN: expected flat W of shape \({h.weights_size},\)"):
        autograd._RNN(h)(*ts[:3], P(np.zeros(5, np.float32)))


# ----------------------------------------------------------------------------- losses
def np_softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_sce(x, t):
    p = np_softmax(x)
    if t.size == x.shape[0]:
        return -np.mean(np.log(p[np.arange(len(x)), t.astype(int).ravel()]))
    t = t / t.sum(1, keepdims=True)
    return -np.sum(t * np.log(p)) / x.shape[0]


def _targets(rng, n=4, c=5):
    return {"ids": rng.integers(0, c, n), "ids_col": rng.integers(0, c, (n, 1)),
            "dense": rng.uniform(0, 1, (n, c))}


LOSSES = {   # name: (function, numpy reference, input sampler, target sampler)
    "cross_entropy": (autograd.cross_entropy, lambda x, t: -np.sum(t * np.log(x)) / x.shape[0],
                      lambda r: np_softmax(r.standard_normal((4, 5))), lambda r: r.uniform(0, 1, (4, 5))),
    "binary_cross_entropy": (
        autograd.binary_cross_entropy,
        lambda x, t: -np.sum(t * np.log(x + 1e-4) + (1 - t) * np.log(1.0001 - x)) / x.shape[0],
        lambda r: r.uniform(0.1, 0.9, (4, 3)), lambda r: r.integers(0, 2, (4, 3)).astype(float)),
    "mse_loss": (autograd.mse_loss, lambda x, t: np.sum((x - t) ** 2) / x.size,
                 lambda r: r.standard_normal((3, 4)), lambda r: r.standard_normal((3, 4))),
}


@pytest.mark.parametrize("form", ["ids", "ids_col", "dense"])
def test_softmax_cross_entropy_forward_and_gradients(form, x64):
    autograd.training = True
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((4, 5)) * 2, _targets(rng)[form]
    tt = Tensor(data=t, dtype=tensor.int32 if form != "dense" else tensor.float64)
    xt = P(x)
    loss = autograd.softmax_cross_entropy(xt, tt)
    assert loss.shape == (1,)
    np.testing.assert_allclose(np.asarray(loss.data), [np_sce(x, t)], rtol=1e-10)
    (g,) = grads_of(loss, np.array([1.0]), xt)
    onehot = np.eye(5)[t.ravel()] if form != "dense" else t / t.sum(1, keepdims=True)
    np.testing.assert_allclose(g, (np_softmax(x) - onehot) / 4, rtol=1e-8, atol=1e-12)  # SINGA's formula
    assert_grads_match_fd(lambda: autograd.softmax_cross_entropy(xt, tt), [xt], tol=1e-6, max_elements=8)
    assert len(loss.creator.src) == 1     # the target is not an op input


def test_softmax_cross_entropy_clamps_at_flt_min_and_rejects_bad_labels():
    x = P(np.array([[0.0, 200.0], [0.0, 0.0]], np.float32))
    loss = autograd.softmax_cross_entropy(x, T(np.array([0, 1], np.int32)))
    want = (-np.log(np.finfo(np.float32).tiny) + np.log(2)) / 2
    np.testing.assert_allclose(np.asarray(loss.data), [want], rtol=1e-5)
    for bad in ([0, 2], [-1, 0]):
        with pytest.raises(ValueError, match=r"SoftMaxCrossEntropy: labels must be integers in \[0, 2\)"):
            autograd.softmax_cross_entropy(x, T(np.array(bad, np.int32)))
    with pytest.raises(ValueError, match="SoftMaxCrossEntropy: expected 2 int labels or a dense target"):
        autograd.softmax_cross_entropy(x, T(np.zeros((2, 3), np.float32)))


@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_match_numpy_and_finite_differences(name, x64):
    autograd.training = True
    fn, ref, xs, ts = LOSSES[name]
    rng = np.random.default_rng(0)
    x, t = xs(rng), ts(rng)
    xt = P(x)
    loss = fn(xt, T(t))
    assert loss.shape == (1,)
    np.testing.assert_allclose(np.asarray(loss.data), [ref(x, t)], rtol=1e-10)
    assert isinstance(loss.creator.t, jax.Array) and len(loss.creator.src) == 1
    (g,) = grads_of(loss, np.array([1.0]), xt)
    assert_grads_match_fd(lambda: fn(xt, T(t)), [xt], tol=1e-6, max_elements=8)


def test_binary_cross_entropy_gradient_is_exact_derivative_not_singas():
    autograd.training = True
    x, t = np.array([[0.3, 0.8]]), np.array([[1.0, 0.0]])
    loss = autograd.binary_cross_entropy(P(x, np.float32), t)
    dx = np.asarray(loss.creator.backward(1.0))
    exact = -(t / (x + 1e-4) - (1 - t) / (1.0001 - x))
    np.testing.assert_allclose(dx, exact, rtol=1e-5)


def test_ranking_loss_and_gradients():
    autograd.training = True
    pos, neg = np.array([0.9, 0.1, 0.5, 0.3]), np.array([0.2, 0.4, 0.45, 0.0])
    pt, nt = P(pos, np.float32), P(neg, np.float32)
    loss = autograd.ranking_loss(pt, nt, 0.2)
    active = (0.2 - pos + neg) > 0
    np.testing.assert_allclose(np.asarray(loss.data), [np.sum((0.2 - pos + neg)[active]) / 4], rtol=1e-6)
    gp, gn = grads_of(loss, np.array([1.0]), pt, nt)
    np.testing.assert_allclose(gp, -active.astype(float) / 4)
    np.testing.assert_allclose(gn, active / 4)
    assert autograd.RankingLoss(0.5).M == 0.5


@pytest.mark.parametrize("make", [
    lambda x: autograd.softmax_cross_entropy(x, np.array([1, 0, 2])),
    lambda x: autograd.mse_loss(x, np.ones((3, 3))),
    lambda x: autograd.ranking_loss(x, autograd.transpose(x, (1, 0))),
])
def test_loss_gradients_scale_with_dy(make):
    autograd.training = True
    x = P(np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32) * 0.1)
    (g1,) = grads_of(make(x), np.array([1.0], np.float32), x)
    (g3,) = grads_of(make(x), np.array([3.0], np.float32), x)
    np.testing.assert_allclose(g3, 3 * g1, rtol=1e-6)


def test_loss_target_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"MeanSquareError: expected target of shape \(2, 3\) or one that "
                                         r"broadcasts to it, got \(3, 2\)"):
        autograd.mse_loss(P(np.zeros((2, 3), np.float32)), np.zeros((3, 2)))


def test_mse_target_broadcasts_against_the_prediction():
    autograd.training = True
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal((2, 1)).astype(np.float32)
    xt = T(x)
    loss = autograd.mse_loss(xt, t)
    np.testing.assert_allclose(tensor.to_numpy(loss), [((x - t) ** 2).sum() / x.size], rtol=1e-6)
    xt.stores_grad = True
    (g,) = grads_of(autograd.mse_loss(xt, t), np.ones(1), xt)
    np.testing.assert_allclose(g, 2 * (x - t) / x.size, rtol=1e-6)


# ----------------------------------------------------------------------------- compiled (traced) use
def test_traced_step_matches_eager_and_updates_running_stats():
    """Conv + BN + pool + dropout + loss inside GraphFunction (tracers, vjp residual path)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    labels = np.array([0, 1, 2, 1], np.int32)

    class Net:
        def __init__(self):
            w = np.random.default_rng(1).standard_normal((3, 2, 3, 3))
            self.W = P(w.astype(np.float32) * 0.3)
            self.b = P(np.zeros(3, np.float32))
            self.s, self.o = P(np.ones(3, np.float32)), P(np.zeros(3, np.float32))
            self.rm, self.rv = T(np.zeros(3, np.float32)), T(np.ones(3, np.float32))

        def step(self, xt, yt):
            ch = autograd.ConvHandle(xt, 3, 1, 1, 2, 3, True)
            y = autograd.conv2d(ch, xt, self.W, self.b)
            y = autograd.batchnorm_2d(autograd.BatchNormHandle(0.9, y), y, self.s, self.o, self.rm, self.rv)
            y = autograd.pooling_2d(autograd.PoolingHandle(y, 2, 2, 0), y)
            y = autograd.dropout(y, 0, 0.2)
            loss = autograd.softmax_cross_entropy(autograd.flatten(y), yt)
            for p, g in autograd.backward(loss):
                p.data = p.data - 0.1 * g.data
            return loss

    autograd.training = True
    results = []
    dev = device.get_default_device()
    for compiled in (False, True):
        dev.SetRandSeed(3)
        net = Net()
        run = GraphFunction(net.step) if compiled else net.step
        losses = [float(np.asarray(run(T(x), T(labels)).data)[0]) for _ in range(3)]
        results.append((losses, np.asarray(net.rm.data), np.asarray(net.W.data)))
    (l0, rm0, w0), (l1, rm1, w1) = results
    np.testing.assert_allclose(l1, l0, rtol=1e-4)
    np.testing.assert_allclose(rm1, rm0, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(w1, w0, rtol=1e-4, atol=1e-6)
    assert not np.allclose(rm0, 0)


def test_side_effect_ops_and_losses_compile_once_per_configuration():
    autograd.training = True
    _, ts, rm, rv, h = _bn_setup((4, 3, 2, 2))
    fwd_bn, bwd_bn = nn_mod._jitted(nn_mod._bn_train)
    fwd_ce = nn_mod._jitted(autograd.SoftMaxCrossEntropy._fn)[0]
    rng = np.random.default_rng(0)

    def step():
        y = autograd.batchnorm_2d(h, *ts, rm, rv)
        x = P(rng.standard_normal((4, 3)).astype(np.float32))
        loss = autograd.softmax_cross_entropy(x, rng.integers(0, 3, 4).astype(np.int32))
        list(autograd.backward(loss))
        list(autograd.backward(y, Tensor(data=np.ones(y.shape, np.float32))))
    step()
    sizes = (fwd_bn._cache_size(), bwd_bn._cache_size(), fwd_ce._cache_size())
    for _ in range(3):
        step()
    assert (fwd_bn._cache_size(), bwd_bn._cache_size(), fwd_ce._cache_size()) == sizes


@pytest.mark.parametrize("call", [
    lambda a, b, c: autograd.softmax_cross_entropy(b, c),
    lambda a, b, c: autograd.mse_loss(b, c),
    lambda a, b, c: autograd.add_bias(b, a, 3),
    lambda a, b, c: autograd.ranking_loss(b, a),
])
def test_operand_errors_are_value_and_assertion_errors(call):
    a, b, c = (Tensor(data=np.zeros(s, np.float32)) for s in ((4,), (4, 4), (4, 4, 4)))
    with pytest.raises(autograd.OperandError) as info:
        call(a, b, c)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AssertionError)
