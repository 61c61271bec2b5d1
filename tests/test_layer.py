"""singax.layer: names, lazy initialisation, shapes, numerics, gradients, modes, errors."""
import re
from collections import OrderedDict

import numpy as np
import pytest

from singax import autograd, device, layer, tensor
from singax.tensor import Tensor, to_numpy
from _helpers import T, assert_grads_match_fd

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def npy(t):
    return to_numpy(t).astype(np.float64)


def names(layer_):
    return sorted(layer_.get_params())


def mse_to(target):
    return lambda y: autograd.mse_loss(y, target)


# --------------------------------------------------------------------------- naming
class Block(layer.Layer):
    def __init__(self):
        super().__init__()
        self.conv = layer.Conv2d(2, 3, padding=1)
        self.bn = layer.BatchNorm2d()

    def forward(self, x):
        return self.bn(self.conv(x))


class Net(layer.Layer):
    def __init__(self):
        super().__init__()
        self.block = Block()                          # attached after Block.__init__ ran
        self.heads = {"a": layer.Linear(3), "b": layer.Linear(2)}
        self.flat = layer.Flatten()
        self.stack = []
        for i in range(2):                            # filled after the assignment
            self.stack.append(layer.Linear(4))

    def forward(self, x):
        y = self.flat(self.block(x))
        for lin in self.stack:
            y = lin(y)
        return self.heads["a"](y), self.heads["b"](y)


def test_names_follow_attribute_paths_including_containers():
    net = Net()
    a, b = net(T(rand(2, 1, 4, 4)))
    assert a.shape == (2, 3) and b.shape == (2, 2)
    assert names(net) == sorted([
        "block.conv.W", "block.conv.b", "block.bn.scale", "block.bn.bias",
        "heads.a.W", "heads.a.b", "heads.b.W", "heads.b.b",
        "stack.0.W", "stack.0.b", "stack.1.W", "stack.1.b"])
    assert set(net.get_states()) == set(net.get_params()) | {"block.bn.running_mean", "block.bn.running_var"}
    assert net.block.bn.name == "block.bn" and net.stack[1].name == "stack.1"
    assert net.get_params()["stack.0.W"].shape == (2 * 4 * 4, 4)


def test_standalone_layers_use_bare_names_as_singa():
    lin = layer.Linear(3)
    lin(T(rand(2, 5)))
    assert names(lin) == ["W", "b"] and lin.W.name == "W"
    bn = layer.BatchNorm2d()
    bn(T(rand(2, 3)))
    assert sorted(bn.get_states()) == ["bias", "running_mean", "running_var", "scale"]


def test_initialised_block_is_renamed_when_attached_later():
    blk = Block()
    blk(T(rand(1, 1, 3, 3)))
    assert "conv.W" in blk.get_params()
    holder = layer.Layer()
    holder.inner = blk
    assert sorted(holder.get_params()) == ["inner.bn.bias", "inner.bn.scale", "inner.conv.W", "inner.conv.b"]
    assert holder.inner.bn.running_var.name == "inner.bn.running_var"


def test_user_named_tensors_and_helper_made_layers():
    class Helper(layer.Layer):
        def __init__(self):
            super().__init__()
            for i in range(2):
                setattr(self, f"fc{i}", _make())
            self.w = Tensor((3,), requires_grad=True, stores_grad=True)       # dummy name: renamed
            self.kept = Tensor((3,), requires_grad=True, stores_grad=True, name="mine")
            self.ws = [Tensor((2,), requires_grad=True, stores_grad=True)]    # tensor in a list
            self.buf = Tensor((3,), stores_grad=False)                         # not a parameter

        def forward(self, x):
            return self.fc1(self.fc0(x))

    def _make():
        return layer.Linear(2)

    h = Helper()
    h.sub = layer.Layer()
    h.sub.parent_of_this = h.fc0    # a second reference does not duplicate or rename it
    h.sub.owner = h                 # a back-reference is not a sublayer (no cycle)
    h(T(rand(2, 3)))
    assert names(h) == sorted(["w", "mine", "ws.0", "fc0.W", "fc0.b", "fc1.W", "fc1.b"])
    assert h.buf.name == "buf" and h.fc0.name == "fc0"


def test_register_layers_names_and_repeated_calls():
    class ResLike(layer.Layer):
        def __init__(self):
            super().__init__()
            first = [layer.Linear(3), layer.Linear(3)]
            second = [layer.Linear(3)]
            self.register_layers(*first)
            self.register_layers(*second)     # SINGA would overwrite Linear_0
            self.order = first + second

        def forward(self, x):
            for lin in self.order:
                x = lin(x)
            return x

    m = ResLike()
    m(T(rand(2, 3)))
    assert names(m) == sorted(f"Linear_{i}.{p}" for i in range(3) for p in "Wb")
    assert m.Linear_2 is m.order[2]
    d = layer.Layer()
    d.register_layers(OrderedDict(enc=layer.ReLU(), dec=layer.Linear(2)))
    assert d.dec.name == "dec"


def test_separable_conv_names_and_model_subclass():
    from singax import model

    class CNN(model.Model):
        def __init__(self):
            super().__init__()
            self.conv3 = layer.SeparableConv2d(4, 3, padding=1)

        def forward(self, x):
            return self.conv3(x)

    m = CNN()
    y = m.forward(T(rand(2, 2, 5, 5)))
    assert y.shape == (2, 4, 5, 5)
    assert names(m) == ["conv3.depthwise_conv.W", "conv3.point_conv.W"]
    assert m.conv3.depthwise_conv.W.shape == (2, 1, 3, 3) and m.conv3.point_conv.W.shape == (4, 2, 1, 1)


# --------------------------------------------------------------------------- lazy init, get/set
def test_initialize_runs_once_with_the_first_input():
    calls = []

    class Probe(layer.Layer):
        def initialize(self, x):
            calls.append(x.shape)
            self.W = Tensor((x.shape[1], 2), requires_grad=True, stores_grad=True)

        def forward(self, x):
            return autograd.matmul(x, self.W)

    p = Probe()
    assert p.initialize() is None and not p._initialized      # no inputs: no-op, as SINGA
    p(T(rand(3, 4)))
    p(T(rand(5, 4)))
    assert calls == [(3, 4)] and p._initialized
    q = Probe()
    q.initialize(T(rand(1, 6)))                               # explicit initialize marks it
    q(T(rand(2, 6)))
    assert calls[-1] == (1, 6) and len(calls) == 2


def test_get_set_params_round_trip_and_errors():
    lin = layer.Linear(3)
    lin(T(rand(2, 4)))
    before = {k: npy(v) for k, v in lin.get_params().items()}
    new_w = rand(4, 3)
    lin.set_params({"W": new_w, "b": T(np.arange(3, dtype=np.float32))})
    np.testing.assert_array_equal(npy(lin.W), new_w)
    np.testing.assert_array_equal(npy(lin.b), [0, 1, 2])
    lin.set_params({"W": before["W"]})                        # a subset is fine
    np.testing.assert_array_equal(npy(lin.W), before["W"])
    with pytest.raises(ValueError, match=r"Linear.*'W' expects shape \(4, 3\), got \(3, 4\)") as e:
        lin.set_params({"b": np.ones(3), "W": np.ones((3, 4))})
    assert "Nothing was changed" in str(e.value)
    np.testing.assert_array_equal(npy(lin.b), [0, 1, 2])      # b untouched despite coming first
    with pytest.raises(ValueError, match=r"unknown name 'fc.W'.*Known names: 'W', 'b'"):
        lin.set_params({"fc.W": new_w})
    with pytest.raises(TypeError, match="set_params"):
        lin.set_params([new_w])
    with pytest.raises(ValueError, match="run a forward pass"):
        layer.Linear(2).set_params({"W": new_w})


def test_get_set_states_round_trip_and_errors():
    net = Net()
    net(T(rand(2, 1, 4, 4)))
    states = {k: npy(v) for k, v in net.get_states().items()}
    fresh = Net()
    fresh(T(rand(2, 1, 4, 4)))
    fresh.set_states(states)
    for k, v in fresh.get_states().items():
        np.testing.assert_array_equal(npy(v), states[k])
    with pytest.raises(ValueError, match=r"Net.set_states: 'block.bn.running_mean' expects shape \(2,\), got \(4,\)"):
        fresh.set_states({"block.bn.running_mean": np.zeros(4)})
    with pytest.raises(ValueError, match="unknown name 'block.bn.running_mean'"):
        fresh.set_params({"block.bn.running_mean": np.zeros(2)})   # a state, not a param


def test_dtype_and_device_check():
    lin = layer.Linear(2)
    lin(T(rand(3, 4)))
    x16 = T(rand(3, 4).astype(np.float16), dtype=tensor.float16)
    y = lin(x16)
    assert lin.W.dtype == tensor.float16 and y.dtype == tensor.float16
    a, b = T(rand(2)), T(rand(2).astype(np.float16), dtype=tensor.float16)
    lin.dtype_check(a, b)
    assert b.dtype == tensor.float32
    lin.device_check(a, b)
    assert b.device is a.device


def test_train_eval_set_the_global_flag():
    r = layer.ReLU()
    r.train()
    assert autograd.training is True
    r.eval()
    assert autograd.training is False


def test_singa2_names_resolve_through_autograd():
    for name in ("Layer", "Linear", "Conv2d", "SeparableConv2d", "BatchNorm2d", "Pooling2d", "MaxPool2d",
                 "AvgPool2d", "MaxPool1d", "AvgPool1d", "RNN_Base", "RNN", "LSTM"):
        assert getattr(autograd, name) is getattr(layer, name)


# --------------------------------------------------------------------------- constructors
def test_legacy_positional_forms():
    assert layer.Linear(7, 3).out_features == 3 and layer.Linear(7, 3, False).bias is False
    c = layer.Conv2d(1, 20, 5)
    assert (c.nb_kernels, c.kernel_size) == (20, (5, 5))
    c = layer.Conv2d(2, 2)
    assert (c.nb_kernels, c.kernel_size) == (2, (2, 2))
    c = layer.Conv2d(3, 8, 3, 2, 1)
    assert (c.nb_kernels, c.stride, c.padding) == (8, (2, 2), (1, 1))
    s = layer.SeparableConv2d(3, 8, 3, 2, 1)
    assert (s.nb_kernels, s.kernel_size, s.stride, s.padding) == (8, 3, 2, 1)
    c = autograd.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)   # SINGA 2's examples
    assert (c.nb_kernels, c.kernel_size, c.stride, c.padding, c.bias) == (64, (3, 3), (2, 2), (1, 1), False)
    assert c(T(rand(2, 3, 8, 8))).shape == (2, 64, 4, 4)
    c = layer.Conv2d(20, kernel_size=5)
    assert (c.nb_kernels, c.kernel_size) == (20, (5, 5))
    s = layer.SeparableConv2d(3, 8, kernel_size=3)
    assert (s.nb_kernels, s.kernel_size) == (8, 3)
    with pytest.raises(TypeError, match="Conv2d: missing kernel_size"):
        layer.Conv2d(4)
    with pytest.raises(TypeError, match="Conv2d: kernel_size given both by position and by keyword"):
        layer.Conv2d(1, 2, 3, kernel_size=3)
    with pytest.raises(TypeError, match=r"SeparableConv2d: too many positional arguments \(6\)"):
        layer.SeparableConv2d(1, 2, 3, 1, 0, 9)
    assert layer.BatchNorm2d(32).momentum == 0.9
    assert layer.BatchNorm2d(32, momentum=0.5).momentum == 0.5
    assert layer.BatchNorm2d(32, 0.3).momentum == 0.3        # SINGA-2 positional momentum honoured
    assert layer.LSTM(3, 4, "relu").nonlinearity == "relu"
    p = layer.MaxPool2d(3, 1, padding=1)
    assert (p.kernel_size, p.stride, p.padding, p.is_max) == ((3, 3), (1, 1), (1, 1), True)
    assert layer.AvgPool2d(2).stride == (2, 2) and not layer.AvgPool2d(2).is_max
    assert layer.MaxPool1d(3, 2, 1).kernel_size == (1, 3) and layer.MaxPool1d(3).stride == (1, 3)


def test_constructor_errors():
    with pytest.raises(TypeError, match="kernel_size"):
        layer.Conv2d(4, [3, 3])
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        layer.Conv2d(4, 3, foo=1)
    layer.Conv2d(4, 3, cudnn_prefer="fastest", workspace_MB_limit=512)
    with pytest.raises(ValueError, match="activation"):
        layer.Conv2d(4, 3, activation="TANH")
    with pytest.raises(ValueError, match="pad_mode"):
        layer.MaxPool2d(2, pad_mode="SAME")
    with pytest.raises(TypeError, match="padding"):
        layer.Conv2d(4, 3, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="rnn_mode"):
        layer.CudnnRNN(4, rnn_mode="elman")
    for make, match in ((lambda: layer.Conv2d(4, -3), "Conv2d: kernel_size must be positive, got -3"),
                        (lambda: layer.Conv2d(4, 3, stride=0), "Conv2d: stride must be positive, got 0"),
                        (lambda: layer.MaxPool2d(0), "MaxPool2d: kernel_size must be positive, got 0"),
                        (lambda: layer.Conv2d(0, 3), "Conv2d: nb_kernels must be a positive int, got 0"),
                        (lambda: layer.Conv2d(4, 3, padding=(1, 2, 0, -1)), "padding must not be negative"),
                        (lambda: layer.BatchNorm2d(momentum=5), "BatchNorm2d: momentum (the new batch's weight) "
                                                                "must be in [0, 1], got 5")):
        with pytest.raises(ValueError, match=re.escape(match)):
            make()


# --------------------------------------------------------------------------- numerics
def test_linear_and_gemm_match_numpy():
    x = rand(3, 5)
    lin = layer.Linear(4)
    y = lin(T(x))
    np.testing.assert_allclose(npy(y), x @ npy(lin.W) + npy(lin.b), rtol=1e-5, atol=1e-6)
    assert lin.W.shape == (5, 4) and lin.b.shape == (4,)
    g = layer.Gemm(4, alpha=2.0, beta=0.5)
    y = g(T(x))
    assert g.W.shape == (4, 5) and g.b.shape == (1, 4)
    g.set_params({"b": np.ones((1, 4))})
    np.testing.assert_allclose(npy(g(T(x))), 2.0 * x @ npy(g.W).T + 0.5, rtol=1e-5, atol=1e-5)
    g2 = layer.Gemm(4, transA=True, transB=False, bias=False)
    xt = rand(5, 3)
    np.testing.assert_allclose(npy(g2(T(xt))), xt.T @ npy(g2.W), rtol=1e-5, atol=1e-5)
    assert g2.W.shape == (5, 4) and names(g2) == ["W"]


def test_init_distributions():
    # initialize() alone creates the parameters (no forward, nothing to compile)
    device.get_default_device().SetRandSeed(3)
    lin = layer.Linear(200)
    lin.initialize(T(rand(2, 300)))
    assert lin._initialized
    np.testing.assert_allclose(npy(lin.W).std(), np.sqrt(2 / 500), rtol=0.03)
    assert not npy(lin.b).any()
    conv = layer.Conv2d(64, 3, group=2)
    conv.initialize(T(rand(1, 32, 3, 3)))
    np.testing.assert_allclose(npy(conv.W).std(), np.sqrt(2 / (16 * 9 + 64)), rtol=0.05)
    idx = T(np.zeros((1, 1), np.int32))
    emb = layer.Embedding(100, 50, initializer="uniform")
    emb.initialize(idx)
    w = npy(emb.W)
    assert w.min() >= -1 and w.max() <= 1 and abs(w.std() - 1 / np.sqrt(3)) < 0.03
    emb = layer.Embedding(100, 50)
    emb.initialize(idx)
    np.testing.assert_allclose(npy(emb.W).std(), 1.0, rtol=0.05)
    zeros = T(np.zeros((1, 50), np.float32))
    lstm = layer.LSTM(40, 50)
    lstm.initialize([T(rand(1, 40))], (zeros, zeros))
    np.testing.assert_allclose(npy(lstm.Wh_f).std(), 0.01, rtol=0.05)
    rnn = layer.RNN(40, 50)
    rnn.initialize([T(rand(1, 40))], zeros)
    np.testing.assert_allclose(npy(rnn.Wx).std(), 1.0, rtol=0.05)
    cud = layer.CudnnRNN(16, rnn_mode="gru")
    cud.initialize(T(rand(1, 2, 3)))
    w = npy(cud.W)
    assert w.shape == (3 * 16 * (3 + 16 + 2),)
    assert np.abs(w).max() <= 0.25 and np.abs(w).max() > 0.24


def _np_conv(x, W, b, stride, pad, group=1):
    """Reference cross-correlation; pad = (top, bottom, left, right) zeros."""
    x = np.pad(x, ((0, 0), (0, 0), pad[:2], pad[2:]))
    N, C, H, Wd = x.shape
    O, Cg, kh, kw = W.shape
    oh, ow = (H - kh) // stride[0] + 1, (Wd - kw) // stride[1] + 1
    y = np.zeros((N, O, oh, ow))
    og = O // group
    for o in range(O):
        g = o // og
        for i in range(oh):
            for j in range(ow):
                patch = x[:, g * Cg:(g + 1) * Cg, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
                y[:, o, i, j] = np.sum(patch * W[o], axis=(1, 2, 3))
    return y if b is None else y + b.reshape(1, -1, 1, 1)


@pytest.mark.parametrize("kw, pad", [
    (dict(stride=2, padding=1), (1, 1, 1, 1)),
    (dict(padding=(2, 1, 0, 1)), (2, 1, 0, 1)),          # 4-tuple: odd padding
    (dict(padding=(1, 0), group=2, bias=False), (1, 1, 0, 0)),
])
def test_conv2d_matches_numpy(kw, pad):
    x = rand(2, 4, 6, 5)
    conv = layer.Conv2d(6, 3, **kw)
    y = conv(T(x))
    b = npy(conv.b) if conv.bias else None
    ref = _np_conv(x, npy(conv.W), b, conv.stride, pad, conv.group)
    assert y.shape == ref.shape
    np.testing.assert_allclose(npy(y), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode, size, stride, pads", [
    ("SAME_UPPER", 5, 2, (1, 1, 1, 1)),     # total 2: even
    ("SAME_UPPER", 6, 2, (0, 1, 0, 1)),     # total 1: the odd pixel at the end
    ("SAME_LOWER", 6, 2, (1, 0, 1, 0)),     # ... or at the start
])
def test_conv2d_same_padding(mode, size, stride, pads):
    x = rand(1, 2, size, size)
    conv = layer.Conv2d(3, 3, stride=stride, pad_mode=mode, activation="RELU")
    y = conv(T(x))
    assert y.shape[2:] == (-(-size // stride),) * 2
    ref = np.maximum(_np_conv(x, npy(conv.W), npy(conv.b), (stride, stride), pads), 0)
    np.testing.assert_allclose(npy(y), ref, rtol=1e-4, atol=1e-4)


def test_conv2d_handle_follows_input_shape():
    conv = layer.Conv2d(3, 3, stride=2, pad_mode="SAME_UPPER")
    assert conv(T(rand(1, 2, 5, 5))).shape == (1, 3, 3, 3)
    x = rand(2, 2, 6, 6)                                  # new batch and size: SAME padding recomputed
    y = conv(T(x))
    assert conv.handle.batchsize == 2 and conv.odd_padding == (0, 1, 0, 1)
    np.testing.assert_allclose(npy(y), _np_conv(x, npy(conv.W), npy(conv.b), (2, 2), (0, 1, 0, 1)),
                               rtol=1e-4, atol=1e-4)


def _np_pool(x, k, s, p, is_max):
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=np.nan)
    oh, ow = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    y = np.zeros((N, C, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]]
            y[:, :, i, j] = (np.nanmax if is_max else np.nanmean)(win, axis=(2, 3))
    return y


@pytest.mark.parametrize("make, k, s, p, is_max", [
    (lambda: layer.MaxPool2d(3, 1, padding=1), (3, 3), (1, 1), (1, 1), True),
    (lambda: layer.AvgPool2d(3, 1, padding=1), (3, 3), (1, 1), (1, 1), False),
    (lambda: layer.Pooling2d(2, is_max=False), (2, 2), (2, 2), (0, 0), False),
    (lambda: layer.MaxPool1d(2), (1, 2), (1, 2), (0, 0), True),
    (lambda: layer.AvgPool1d(3, 1, 1), (1, 3), (1, 1), (0, 1), False),
])
def test_pooling_matches_numpy(make, k, s, p, is_max):
    shape = (2, 3, 1, 6) if k[0] == 1 else (2, 3, 5, 4)
    x = RNG.permutation(int(np.prod(shape))).reshape(shape).astype(np.float32)
    y = make()(T(x))
    ref = _np_pool(x.astype(np.float64), k, s, p, is_max)
    np.testing.assert_allclose(npy(y), ref, rtol=1e-5)


def test_pooling_odd_padding_repeats_the_border():
    x = RNG.permutation(2 * 3 * 5 * 4).reshape(2, 3, 5, 4).astype(np.float32)
    pool = layer.MaxPool2d(2, 1, padding=(1, 0, 0, 1))
    assert pool.padding == (0, 0) and pool.odd_padding == (1, 0, 0, 1)
    ref = _np_pool(np.pad(x, ((0, 0), (0, 0), (1, 0), (0, 1)), mode="edge").astype(np.float64),
                   (2, 2), (1, 1), (0, 0), True)
    np.testing.assert_allclose(npy(pool(T(x))), ref)


def test_pooling_same_upper_output_shape():
    y = layer.MaxPool2d(3, 2, pad_mode="SAME_UPPER")(T(rand(1, 2, 6, 7)))
    assert y.shape == (1, 2, 3, 4)


def test_batchnorm_train_updates_running_stats_and_eval_uses_them():
    x = rand(4, 3, 2, 2) * 2 + 1
    bn = layer.BatchNorm2d(3, momentum=0.3)
    autograd.training = True
    y = bn(T(x))
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    n = 4 * 2 * 2
    ref = (x - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(npy(y), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(npy(bn.running_mean), 0.7 * 0 + 0.3 * mean, rtol=1e-5)
    np.testing.assert_allclose(npy(bn.running_var), 0.7 * 1 + 0.3 * var * n / (n - 1), rtol=1e-5)
    assert not bn.running_mean.requires_grad and not bn.running_mean.stores_grad
    rm, rv = npy(bn.running_mean), npy(bn.running_var)
    bn.set_params({"scale": np.array([1.0, 2.0, 0.5]), "bias": np.array([0.0, 1.0, -1.0])})
    autograd.training = False
    x2 = rand(2, 3, 2, 2)
    y2 = bn(T(x2))
    ref2 = (x2 - rm.reshape(1, 3, 1, 1)) / np.sqrt(rv.reshape(1, 3, 1, 1) + 1e-5)
    ref2 = ref2 * np.array([1.0, 2.0, 0.5]).reshape(1, 3, 1, 1) + np.array([0.0, 1.0, -1.0]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(npy(y2), ref2, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(npy(bn.running_mean), rm)     # eval leaves them alone
    bn2 = layer.BatchNorm2d()
    autograd.training = True
    y = bn2(T(x[:, :, 0, 0]))                                      # (N, C) input
    np.testing.assert_allclose(npy(bn2.running_mean), 0.9 * x[:, :, 0, 0].mean(0), rtol=1e-5)


def test_dropout_ratio_and_modes():
    x = np.ones((200, 50), np.float32)
    d = layer.Dropout(0.2)
    autograd.training = False
    np.testing.assert_array_equal(npy(d(T(x))), x)
    autograd.training = True
    a, b = npy(d(T(x))), npy(d(T(x)))
    assert set(np.unique(a)) <= {0.0, 1.25}
    assert abs((a == 0).mean() - 0.2) < 0.02
    assert not np.array_equal(a, b)                                # a fresh mask per call
    with pytest.raises(ValueError, match="ratio"):
        layer.Dropout(1.0)


def test_parameterless_layers():
    a, b = rand(2, 3), rand(2, 3)
    np.testing.assert_allclose(npy(layer.ReLU()(T(a))), np.maximum(a, 0))
    np.testing.assert_allclose(npy(layer.Sigmoid()(T(a))), 1 / (1 + np.exp(-a)), rtol=1e-6)
    e = np.exp(a - a.max(1, keepdims=True))
    np.testing.assert_allclose(npy(layer.SoftMax()(T(a))), e / e.sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(npy(layer.Add()(T(a), T(b))), a + b)
    assert layer.Flatten()(T(rand(2, 3, 4))).shape == (2, 12)
    assert layer.Flatten(axis=2)(T(rand(2, 3, 4))).shape == (6, 4)
    assert layer.Cat(1)([T(a), T(b)]).shape == (2, 6) and layer.Cat()([T(a), T(b)]).shape == (4, 3)
    assert layer.Reshape()(T(a), (3, -1)).shape == (3, 2)
    labels = np.array([0, 2], np.int32)
    p = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(npy(layer.SoftMaxCrossEntropy()(T(a), T(labels))),
                               [-np.log(p[[0, 1], labels]).mean()], rtol=1e-5)
    np.testing.assert_allclose(npy(layer.MeanSquareError()(T(a), T(b))), [((a - b) ** 2).mean()], rtol=1e-5)
    q, t = 1 / (1 + np.exp(-a)), (b > 0).astype(np.float32)
    np.testing.assert_allclose(npy(layer.CrossEntropy()(T(q), T(t))), [-(t * np.log(q)).sum() / 2], rtol=1e-5)
    bce = -(t * np.log(q + 1e-4) + (1 - t) * np.log(1.0001 - q)).sum() / 2
    np.testing.assert_allclose(npy(layer.BinaryCrossEntropy()(T(q), T(t))), [bce], rtol=1e-5)


def test_embedding_lookup_and_from_pretrained():
    w = rand(6, 3)
    emb = layer.Embedding(6, 3)
    emb.from_pretrained(w, freeze=True)
    idx = np.array([[0, 5], [2, 2]], np.int32)
    np.testing.assert_allclose(npy(emb(T(idx))), w[idx], rtol=1e-6)
    assert not emb.W.requires_grad and not emb.W.stores_grad and names(emb) == ["W"]
    with pytest.raises(ValueError, match=r"from_pretrained: expected W of shape \(6, 3\)"):
        emb.from_pretrained(rand(3, 6))
    emb2 = layer.Embedding(6, 3)
    emb2(T(idx))
    emb2.from_pretrained(T(w), freeze=False)
    np.testing.assert_array_equal(npy(emb2.W), w)
    assert emb2.W.stores_grad


def _sig(v):
    return 1 / (1 + np.exp(-v))


def test_rnn_matches_cell_equations():
    xs, h0 = [rand(2, 3) for _ in range(3)], rand(2, 4)
    for act, f in (("tanh", np.tanh), ("relu", lambda v: np.maximum(v, 0))):
        rnn = layer.RNN(3, 4, nonlinearity=act)
        out, h = rnn([T(x) for x in xs], T(h0))
        Wx, Wh, b = npy(rnn.Wx), npy(rnn.Wh), npy(rnn.b)
        assert (Wx.shape, Wh.shape, b.shape) == ((3, 4), (4, 4), (4,))
        hr = h0
        for t, x in enumerate(xs):
            hr = f(hr @ Wh + x @ Wx + b)
            np.testing.assert_allclose(npy(out[t]), hr, rtol=1e-4, atol=1e-5)
        assert out[-1] is h
    assert names(rnn) == ["Wh", "Wx", "b"]


def test_lstm_matches_cell_equations():
    xs, h0, c0 = [rand(2, 3) for _ in range(3)], rand(2, 4), rand(2, 4)
    lstm = layer.LSTM(3, 4)
    lstm([T(xs[0])], (T(h0), T(c0)))                                # create params
    lstm.set_params({k: rand(*v.shape) * 0.5 for k, v in lstm.get_params().items()})
    P = {k: npy(v) for k, v in lstm.get_params().items()}
    assert len(P) == 16 and P["Wx_i"].shape == (3, 4) and P["Wh_g"].shape == (4, 4) and P["Bh_o"].shape == (4,)
    out, h, c = lstm([T(x) for x in xs], (T(h0), T(c0)))
    hr, cr = h0, c0
    for t, x in enumerate(xs):
        pre = {g: x @ P[f"Wx_{g}"] + P[f"Bx_{g}"] + hr @ P[f"Wh_{g}"] + P[f"Bh_{g}"] for g in "ifog"}
        cr = _sig(pre["f"]) * cr + _sig(pre["i"]) * np.tanh(pre["g"])
        hr = _sig(pre["o"]) * np.tanh(cr)
        np.testing.assert_allclose(npy(out[t]), hr, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(npy(c), cr, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch_first, return_sequences", [(True, True), (False, False)])
def test_cudnn_rnn_tanh_matches_recurrence(batch_first, return_sequences):
    B, L, F, H = 2, 4, 3, 5
    x = rand(B, L, F) if batch_first else rand(L, B, F)
    rnn = layer.CudnnRNN(H, rnn_mode="tanh", batch_first=batch_first, return_sequences=return_sequences)
    y = rnn(T(x))
    W = npy(rnn.W)
    assert W.shape == (H * F + H * H + 2 * H,)
    wih, whh = W[:H * F].reshape(H, F), W[H * F:H * F + H * H].reshape(H, H)
    bih, bhh = W[H * F + H * H:H * F + H * H + H], W[-H:]
    xt = x.transpose(1, 0, 2) if batch_first else x
    h, ys = np.zeros((B, H)), []
    for t in range(L):
        h = np.tanh(xt[t] @ wih.T + bih + h @ whh.T + bhh)
        ys.append(h)
    ref = np.stack(ys)                                             # (T, B, H)
    if not return_sequences:
        ref = ref[-1]
    elif batch_first:
        ref = ref.transpose(1, 0, 2)
    np.testing.assert_allclose(npy(y), ref, rtol=1e-4, atol=1e-5)


def test_cudnn_rnn_reads_command_line_switches_as_written():
    """Scripts pass argparse strings ('False'); bool('False') would turn the switch on."""
    uni = layer.CudnnRNN(4, bidirectional="False", return_sequences="false")
    assert uni(T(rand(2, 3, 5))).shape == (2, 4)
    bi = layer.CudnnRNN(4, bidirectional="True", return_sequences=" TRUE ")
    assert bi(T(rand(2, 3, 5))).shape == (2, 3, 8)
    assert layer.CudnnRNN(4, bidirectional=np.bool_(True)).bidirectional is True
    with pytest.raises(TypeError, match="CudnnRNN: bidirectional must be a bool, got the string 'yes'"):
        layer.CudnnRNN(4, bidirectional="yes")
    with pytest.raises(TypeError, match="CudnnRNN: return_sequences must be a bool, got NoneType"):
        layer.CudnnRNN(4, return_sequences=None)


def test_cudnn_rnn_lstm_shapes():
    rnn = layer.CudnnRNN(4, num_layers=2, bidirectional=True)
    y = rnn(T(rand(2, 3, 5)))
    assert y.shape == (2, 3, 8) and names(rnn) == ["W"]
    hx = T(np.zeros((4, 2, 4), np.float32))
    assert rnn(T(rand(2, 3, 5)), hx, hx).shape == (2, 3, 8)
    assert rnn(T(rand(3, 6, 5))).shape == (3, 6, 8)               # new batch / length
    masked = layer.CudnnRNN(4, rnn_mode="tanh", use_mask=True)
    lens = T(np.array([3, 1], np.int32))
    y = npy(masked(T(rand(2, 3, 5)), seq_lengths=lens))
    assert y.shape == (2, 3, 4) and not y[1, 1:].any() and y[1, 0].any() and y[0, 2].any()
    with pytest.raises(ValueError, match="use_mask=True needs seq_lengths"):
        masked(T(rand(2, 3, 5)))


# --------------------------------------------------------------------------- errors
def test_wrong_features_after_init_leave_params_unchanged():
    lin = layer.Linear(3)
    lin(T(rand(2, 4)))
    W = npy(lin.W)
    with pytest.raises(ValueError, match=r"Linear: expected input \(N, 4\), got shape \(2, 5\)"):
        lin(T(rand(2, 5)))
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 2, 2\); flatten it first"):
        lin(T(rand(2, 1, 2, 2)))
    np.testing.assert_array_equal(npy(lin.W), W)
    conv = layer.Conv2d(2, 3)
    with pytest.raises(ValueError, match=r"Conv2d: expected input \(N, C, H, W\), got shape \(2, 5\)"):
        conv(T(rand(2, 5)))
    assert not conv._initialized and names(conv) == []
    conv(T(rand(1, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\), got shape \(1, 2, 4, 4\)"):
        conv(T(rand(1, 2, 4, 4)))
    bn = layer.BatchNorm2d()
    bn(T(rand(2, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected input \(N, 3, H, W\) or \(N, 3\)"):
        bn(T(rand(2, 4, 2, 2)))

    class Wrap(layer.Layer):
        def __init__(self):
            super().__init__()
            self.fc = layer.Linear(2)

        def forward(self, x):
            return self.fc(x)

    w = Wrap()
    w(T(rand(1, 3)))
    with pytest.raises(ValueError, match=r"Linear 'fc': expected input \(N, 3\)"):
        w(T(rand(1, 4)))


def test_rnn_states_broadcast_against_the_step_batch():
    lstm = layer.LSTM(3, 4)
    h0, c0 = T(rand(16, 4)), T(rand(16, 4))
    x1 = rand(1, 3)
    _, h, c = lstm([T(x1)], (h0, c0))
    _, h_tiled, c_tiled = lstm([T(np.repeat(x1, 16, axis=0))], (h0, c0))
    assert h.shape == (16, 4) and c.shape == (16, 4)
    np.testing.assert_allclose(tensor.to_numpy(h), tensor.to_numpy(h_tiled), rtol=1e-6)
    np.testing.assert_allclose(tensor.to_numpy(c), tensor.to_numpy(c_tiled), rtol=1e-6)
    rnn = layer.RNN(3, 4)
    xs = rand(5, 3)
    _, h = rnn([T(xs)], T(np.zeros((1, 4), np.float32)))
    _, h_full = rnn([T(xs)], T(np.zeros((5, 4), np.float32)))
    np.testing.assert_allclose(tensor.to_numpy(h), tensor.to_numpy(h_full), rtol=1e-6)


def test_rnn_input_errors():
    rnn = layer.RNN(3, 4)
    h0 = T(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"RNN: expected a non-empty list of \(N, 3\).*Tensor of shape \(5, 2, 3\)"):
        rnn(T(rand(5, 2, 3)), h0)
    assert not rnn._initialized
    with pytest.raises(ValueError, match=r"expected step 1 of shape \(2, 3\), got \(2, 1, 3\)"):
        rnn([T(rand(2, 3)), T(rand(2, 1, 3))], h0)
    with pytest.raises(ValueError, match=r"expected h0 of shape \(2, 4\) or one that broadcasts with it, "
                                         r"got \(2, 5\)"):
        rnn([T(rand(2, 3))], T(np.zeros((2, 5), np.float32)))
    lstm = layer.LSTM(3, 4)
    with pytest.raises(ValueError, match=r"LSTM: expected the initial states as a pair"):
        lstm([T(rand(2, 3))], h0)
    cud = layer.CudnnRNN(4)
    with pytest.raises(ValueError, match=r"CudnnRNN: expected input \(B, T, F\), got shape \(2, 3\)"):
        cud(T(rand(2, 3)))
    cud(T(rand(2, 3, 5)))
    with pytest.raises(ValueError, match=r"expected input \(B, T, 5\), got shape \(2, 3, 4\)"):
        cud(T(rand(2, 3, 4)))
    with pytest.warns(UserWarning, match="num_layers=2 ignored"):
        layer.RNN(3, 4, num_layers=2)


# --------------------------------------------------------------------------- gradients (float64)
def test_grad_linear_gemm_embedding(x64):
    x = T(rand(3, 4, dtype=np.float64), grad=True)
    lin = layer.Linear(2)
    target = rand(3, 2, dtype=np.float64)
    assert_grads_match_fd(lambda: autograd.mse_loss(lin(x), target), [x])
    assert_grads_match_fd(lambda: autograd.mse_loss(lin(x), target), [lin.W, lin.b])
    g = layer.Gemm(2, alpha=1.5, beta=0.5)
    g(x)
    assert_grads_match_fd(lambda: autograd.mse_loss(g(x), target), [x, g.W, g.b])
    emb = layer.Embedding(5, 2)
    idx = T(np.array([[0, 3], [3, 4]], np.int32))
    t2 = rand(2, 2, 2, dtype=np.float64)
    emb(idx)
    emb.W.to_type(tensor.float64)      # float32 by default: indices carry no float dtype
    assert_grads_match_fd(lambda: autograd.mse_loss(emb(idx), t2), [emb.W])


def test_grad_conv_pool_bn(x64):
    x = T(rand(2, 2, 4, 4, dtype=np.float64), grad=True)
    conv = layer.Conv2d(3, 3, stride=1, padding=(1, 0, 1, 1))
    pool = layer.MaxPool2d(2, 1)
    bn = layer.BatchNorm2d()

    def loss():
        return autograd.mse_loss(pool(bn(conv(x))), target)
    target = np.zeros((2, 3, 2, 3))
    loss()
    autograd.training = True
    assert_grads_match_fd(loss, [x, conv.W, conv.b, bn.scale, bn.bias])
    avg = layer.AvgPool2d(3, 1, padding=1)
    assert_grads_match_fd(lambda: autograd.mse_loss(avg(x), np.ones((2, 2, 4, 4))), [x])


def test_grad_rnn_lstm_cudnn(x64):
    xs = [T(rand(2, 3, dtype=np.float64), grad=True) for _ in range(3)]
    h0 = T(rand(2, 4, dtype=np.float64), grad=True)
    c0 = T(rand(2, 4, dtype=np.float64))
    target = rand(6, 4, dtype=np.float64)
    rnn = layer.RNN(3, 4)
    rnn(xs, h0)
    rnn.set_params({k: rand(*v.shape, dtype=np.float64) * 0.4 for k, v in rnn.get_params().items()})
    assert_grads_match_fd(lambda: autograd.mse_loss(autograd.cat(rnn(xs, h0)[0], 0), target),
             [rnn.Wx, rnn.Wh, rnn.b, xs[0], h0])
    lstm = layer.LSTM(3, 4)
    lstm(xs, (h0, c0))
    lstm.set_params({k: rand(*v.shape, dtype=np.float64) * 0.4 for k, v in lstm.get_params().items()})
    assert_grads_match_fd(lambda: autograd.mse_loss(autograd.cat(lstm(xs, (h0, c0))[0], 0), target),
             [lstm.Wx_f, lstm.Wh_g, lstm.Bx_i, lstm.Bh_o, xs[1]])
    cud = layer.CudnnRNN(3, rnn_mode="gru", return_sequences=False)
    xb = T(rand(2, 3, 2, dtype=np.float64), grad=True)
    cud(xb)
    assert_grads_match_fd(lambda: autograd.mse_loss(cud(xb), np.ones((2, 3))), [cud.W, xb])


# --------------------------------------------------------------------------- the seed CNN
@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # sgd.update is SINGA-2 style
def test_seed_cnn_snippet_trains():
    """SINGA-2 style script from the autograd guide: parallel convs, cat, BN, pooling, linear."""
    size = 8
    conv1 = autograd.Conv2d(1, 32, 3, padding=1, bias=False)
    bn1 = autograd.BatchNorm2d(32)
    pooling1 = autograd.MaxPool2d(3, 1, padding=1)
    conv21 = autograd.Conv2d(32, 16, 3, padding=1)
    conv22 = autograd.Conv2d(32, 16, 3, padding=1)
    bn2 = autograd.BatchNorm2d(32)
    linear = autograd.Linear(32 * size * size, 10)
    pooling2 = autograd.AvgPool2d(3, 1, padding=1)

    def forward(x, t):
        y = conv1(x)
        y = autograd.relu(y)
        y = bn1(y)
        y = pooling1(y)
        y1 = conv21(y)
        y2 = conv22(y)
        y = autograd.cat((y1, y2), 1)
        y = autograd.relu(y)
        y = bn2(y)
        y = pooling2(y)
        y = autograd.flatten(y)
        y = linear(y)
        loss = autograd.softmax_cross_entropy(y, t)
        return loss, y

    rng = np.random.default_rng(0)
    inputs = tensor.Tensor(data=rng.standard_normal((4, 1, size, size)).astype(np.float32), stores_grad=False)
    targets = tensor.Tensor(data=np.array([1, 3, 5, 7], np.int32), dtype=tensor.int32,
                            requires_grad=False, stores_grad=False)
    try:
        from singax.opt import SGD
        sgd = SGD(lr=0.02)
        update = sgd.update
    except Exception:   # optimizer not available: plain SGD by hand
        def update(p, g):
            p.data = p.data - 0.02 * g.data
    autograd.training = True
    losses = []
    for _ in range(4):
        loss, y = forward(inputs, targets)
        assert loss.shape == (1,) and y.shape == (4, 10)
        got = []
        for p, gp in autograd.backward(loss):
            assert gp.shape == p.shape
            got.append(p)
            update(p, gp)
        losses.append(float(to_numpy(loss)[0]))
    assert len(got) == 11 and len({id(p) for p in got}) == 11     # conv1 has no bias
    assert losses[-1] < losses[0] * 0.7, losses
    assert conv1.W.shape == (32, 1, 3, 3) and linear.W.shape == (32 * size * size, 10)
