"""Model API: graph mode = one program, eager/graph agreement, checkpoints, errors."""
import io
import json
import os
import zipfile

import jax
import numpy as np
import pytest

from singax import autograd, device, layer, model, opt, tensor
from singax.model import CheckpointExistsError


class MLP(model.Model):
    def __init__(self, hidden=8, classes=3):
        super().__init__()
        self.l1 = layer.Linear(hidden)
        self.relu = layer.ReLU()
        self.l2 = layer.Linear(classes)
        self.loss_fn = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        return self.l2(self.relu(self.l1(x)))

    def train_one_batch(self, x, y):
        out = self.forward(x)
        loss = self.loss_fn(out, y)
        self.optimizer(loss)
        return out, loss

    def set_optimizer(self, optimizer):
        self.optimizer = optimizer


class CNN(MLP):
    def __init__(self):
        model.Model.__init__(self)
        self.conv = layer.Conv2d(4, 3, padding=1)
        self.bn = layer.BatchNorm2d()
        self.relu = layer.ReLU()
        self.pool = layer.MaxPool2d(2, 2)
        self.flat = layer.Flatten()
        self.drop = layer.Dropout(0.3)
        self.fc = layer.Linear(3)
        self.loss_fn = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        y = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(self.drop(self.flat(y)))


class LSTMNet(MLP):
    def __init__(self):
        model.Model.__init__(self)
        self.rnn = layer.CudnnRNN(6, batch_first=True, rnn_mode="lstm", return_sequences=False)
        self.fc = layer.Linear(3)
        self.loss_fn = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        return self.fc(self.rnn(x))


def batches(kind, steps, n=8, seed=0):
    rng = np.random.default_rng(seed)
    shape = {"mlp": (n, 5), "cnn": (n, 2, 6, 6), "lstm": (n, 4, 3)}[kind]
    return [(rng.standard_normal(shape).astype(np.float32), rng.integers(0, 3, n).astype(np.int32))
            for _ in range(steps)]


def build(kind, use_graph, optimizer=None, n=8):
    device.get_default_device().SetRandSeed(42)
    net = {"mlp": MLP, "cnn": CNN, "lstm": LSTMNet}[kind]()
    net.set_optimizer(optimizer or opt.SGD(lr=0.05, momentum=0.9, weight_decay=1e-4))
    x, _ = batches(kind, 1, n)[0]
    tx = tensor.Tensor(x.shape)
    net.compile([tx], is_train=True, use_graph=use_graph)
    return net


def train(net, data):
    tx = tensor.Tensor(data[0][0].shape)
    ty = tensor.Tensor(data[0][1].shape, dtype=tensor.int32)
    losses = []
    for x, y in data:
        tx.copy_from_numpy(x)
        ty.copy_from_numpy(y)
        _, loss = net(tx, ty)
        losses.append(tensor.to_numpy(loss)[0])
    return np.array(losses)


@pytest.mark.parametrize("kind,make_opt", [("mlp", None), ("cnn", None),
                                           ("lstm", lambda: opt.Adam(lr=0.01))])
def test_eager_and_graph_agree_over_20_steps(kind, make_opt):
    data = batches(kind, 20)
    eager = build(kind, False, make_opt() if make_opt else None)   # build re-seeds the device
    le = train(eager, data)
    graph = build(kind, True, make_opt() if make_opt else None)
    lg = train(graph, data)
    np.testing.assert_allclose(lg, le, rtol=1e-5, atol=1e-5)
    se, sg = eager.get_states(), graph.get_states()
    assert set(se) == set(sg)
    for name in se:   # parameters and BatchNorm statistics
        np.testing.assert_allclose(tensor.to_numpy(sg[name]), tensor.to_numpy(se[name]),
                                   rtol=1e-5, atol=1e-5, err_msg=name)
    oe, og = eager.optimizer.get_states(), graph.optimizer.get_states()
    assert oe["step_counter"] == og["step_counter"] == 20
    for slot in ("moments", "m", "v"):
        for name, t in oe.get(slot, {}).items():
            np.testing.assert_allclose(tensor.to_numpy(og[slot][name]), tensor.to_numpy(t),
                                       rtol=1e-5, atol=1e-6, err_msg=f"{slot} {name}")
    assert graph.compile_count == 1 and eager.compile_count == 0


def test_compile_creates_randomly_initialised_parameters():
    net = build("cnn", True)
    params = net.get_params()
    assert {"conv.W", "conv.b", "bn.scale", "bn.bias", "fc.W", "fc.b"} <= set(params)
    for name in ("conv.W", "fc.W"):
        w = tensor.to_numpy(params[name])
        assert w.std() > 0.01 and np.isfinite(w).all(), name
    states = net.get_states()
    np.testing.assert_array_equal(tensor.to_numpy(states["bn.running_var"]), 1.0)


def test_a_model_never_compiled_trains_in_graph_mode_after_one_eager_step():
    device.get_default_device().SetRandSeed(3)
    net = MLP()
    net.set_optimizer(opt.SGD(0.1))
    net.train()   # sets autograd.training, as compile(is_train=True) would
    data = batches("mlp", 4)
    losses = train(net, data)
    assert np.isfinite(losses).all() and net.compile_count == 1
    assert tensor.to_numpy(net.get_params()["l1.W"]).std() > 0.01


def test_one_compile_for_fixed_shapes_and_one_more_for_a_smaller_last_batch():
    net = build("mlp", True)
    data = batches("mlp", 50)
    train(net, data)
    assert net.compile_count == 1
    x, y = batches("mlp", 1, n=5)[0]
    out, loss = net(tensor.from_numpy(x), tensor.from_numpy(y))   # new Tensors, smaller batch
    assert out.shape == (5, 3) and net.compile_count == 2
    train(net, data[:3])
    assert net.compile_count == 2


def test_outputs_are_new_tensors_each_step():
    net = build("mlp", True)
    (x1, y1), (x2, y2) = batches("mlp", 2)
    tx, ty = tensor.from_numpy(x1), tensor.from_numpy(y1)
    out1, loss1 = net(tx, ty)
    v1 = tensor.to_numpy(loss1).copy()
    tx.copy_from_numpy(x2)
    ty.copy_from_numpy(y2)
    out2, loss2 = net(tx, ty)
    assert out1 is not out2
    np.testing.assert_array_equal(tensor.to_numpy(loss1), v1)


def test_eval_mode_forward_is_compiled_and_uses_running_stats():
    net = build("cnn", True)
    train(net, batches("cnn", 3))
    net.eval()
    x, _ = batches("cnn", 1, seed=5)[0]
    out_graph = tensor.to_numpy(net(tensor.from_numpy(x)))
    out_eager = tensor.to_numpy(net.forward(tensor.from_numpy(x)))
    np.testing.assert_allclose(out_graph, out_eager, rtol=1e-5, atol=1e-6)
    out_again = tensor.to_numpy(net(tensor.from_numpy(x)))
    np.testing.assert_array_equal(out_again, out_graph)   # eval changes nothing (no dropout, stats fixed)


def test_k_steps_in_one_dispatch_equal_single_steps():
    data = batches("mlp", 6)
    single = build("mlp", True)
    losses = train(single, data)
    multi = build("mlp", True)
    xs = tensor.from_numpy(np.stack([x for x, _ in data]))
    ys = tensor.from_numpy(np.stack([y for _, y in data]))
    outs, ls = multi.train_steps(xs, ys)
    assert outs.shape == (6, 8, 3)
    np.testing.assert_allclose(tensor.to_numpy(ls).reshape(-1), losses, rtol=1e-5)
    for name, t in single.get_params().items():
        np.testing.assert_allclose(tensor.to_numpy(multi.get_params()[name]), tensor.to_numpy(t), rtol=1e-5)


def test_reading_values_inside_a_compiled_step_says_how_to_fix_it():
    class Peeking(MLP):
        def train_one_batch(self, x, y):
            out, loss = super().train_one_batch(x, y)
            print(tensor.to_numpy(loss))
            return out, loss
    device.get_default_device().SetRandSeed(0)
    net = Peeking()
    net.set_optimizer(opt.SGD(0.1))
    x, y = batches("mlp", 1)[0]
    net.compile([tensor.from_numpy(x)], is_train=True, use_graph=True)
    before = {k: tensor.to_numpy(v).copy() for k, v in net.get_params().items()}
    with pytest.raises(RuntimeError, match="use_graph=False"):
        net(tensor.from_numpy(x), tensor.from_numpy(y))
    for k, v in net.get_params().items():
        assert not isinstance(v.data, jax.core.Tracer)
        np.testing.assert_array_equal(tensor.to_numpy(v), before[k])


def test_compile_runs_a_forward_that_reads_values():
    class Peeks(MLP):
        def forward(self, x):
            self.seen = float(tensor.to_numpy(x).sum())   # a value read: no abstract pass possible
            return super().forward(x)
    net = Peeks()
    net.set_optimizer(opt.SGD(0.1))
    x = np.ones((4, 5), np.float32)
    net.compile([tensor.from_numpy(x)], is_train=True, use_graph=False)
    assert net.seen == 20.0 and tensor.to_numpy(net.get_params()["l1.W"]).std() > 0.01
    out, loss = net(tensor.from_numpy(x), tensor.from_numpy(np.zeros(4, np.int32)))
    assert np.isfinite(tensor.to_numpy(loss)).all()


def test_compile_rejects_bad_inputs():
    net = MLP()
    with pytest.raises(ValueError, match="non-empty list of Tensors"):
        net.compile([], is_train=True)
    with pytest.raises(ValueError, match="non-empty list of Tensors"):
        net.compile(np.ones((2, 5)), is_train=True)


# --- checkpoints ---------------------------------------------------------------

def test_checkpoint_format_is_singas(tmp_path):
    net = build("cnn", True)
    train(net, batches("cnn", 2))
    path = str(tmp_path / "ckpt.zip")
    net.save_states(path, aux_states={"epoch": tensor.from_numpy(np.array([3], np.int32))})
    with zipfile.ZipFile(path) as z:
        assert z.namelist()[:2] == ["tensor_dict.npz", "states_attr.json"]
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
        attrs = json.loads(z.read("states_attr.json"))
        arrays = np.load(io.BytesIO(z.read("tensor_dict.npz")))
    states = net.get_states()
    for name, t in states.items():
        assert attrs[name] == {"state_type": 0, "shape": list(t.shape), "dtype": t.dtype}
        np.testing.assert_array_equal(arrays[name], tensor.to_numpy(t))
    assert attrs["epoch"] == {"state_type": 1, "shape": [1], "dtype": tensor.int32}
    assert "bn.running_mean" in attrs and "conv.W" in attrs
    with pytest.raises(CheckpointExistsError):
        net.save_states(path)
    with pytest.raises(AssertionError):   # SINGA asserts; the same except clause still works
        net.save_states(path)


def test_resumed_training_is_identical_to_uninterrupted(tmp_path):
    data = batches("mlp", 8)
    straight = build("mlp", True)
    straight_losses = train(straight, data)
    first = build("mlp", True)
    train(first, data[:4])
    path = str(tmp_path / "half.zip")
    first.save_states(path, aux_states={"note": tensor.from_numpy(np.ones(2, np.float32))})
    second = build("mlp", True)
    aux = second.load_states(path)
    assert set(aux) == {"note"}
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)
    predictor = build("mlp", True)
    predictor.optimizer = None          # a model without optimizer loads the same file
    predictor.load_states(path)
    rest = train(second, data[4:])
    np.testing.assert_array_equal(rest, straight_losses[4:])
    for name, t in straight.get_params().items():
        np.testing.assert_array_equal(tensor.to_numpy(second.get_params()[name]), tensor.to_numpy(t))


def _singa_zip(path, arrays, attrs):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("tensor_dict.npz", buf.getvalue())
        z.writestr("states_attr.json", json.dumps(attrs))


def test_loads_a_file_written_the_way_singa_writes_it(tmp_path):
    net = build("mlp", True)
    rng = np.random.default_rng(1)
    arrays = {k: rng.standard_normal(v.shape).astype(np.float64) for k, v in net.get_states().items()}
    attrs = {k: {"state_type": 0, "shape": list(v.shape), "dtype": 0} for k, v in arrays.items()}
    arrays["opt1"] = np.arange(4.0).reshape(2, 2)
    attrs["opt1"] = {"state_type": 1, "shape": [2, 2], "dtype": 0}
    path = str(tmp_path / "singa.zip")
    _singa_zip(path, arrays, attrs)
    aux = net.load_states(path)
    for k, v in net.get_states().items():
        np.testing.assert_allclose(tensor.to_numpy(v), arrays[k].astype(np.float32))
    assert list(aux) == ["opt1"] and aux["opt1"].dtype == tensor.float32
    np.testing.assert_array_equal(tensor.to_numpy(aux["opt1"]), np.arange(4.0).reshape(2, 2))


def test_load_validates_everything_before_changing_anything(tmp_path):
    net = build("mlp", True)
    before = {k: tensor.to_numpy(v).copy() for k, v in net.get_states().items()}
    arrays = {k: np.zeros(v.shape, np.float32) for k, v in net.get_states().items()}
    arrays["l1.W"] = np.zeros((7, 7), np.float32)
    arrays["unknown.W"] = np.zeros(3, np.float32)
    del arrays["l2.b"]
    attrs = {k: {"state_type": 0, "shape": list(v.shape), "dtype": 0} for k, v in arrays.items()}
    path = str(tmp_path / "bad.zip")
    _singa_zip(path, arrays, attrs)
    with pytest.raises(ValueError) as err:
        net.load_states(path)
    msg = str(err.value)
    assert "l1.W" in msg and "(7, 7)" in msg and "l2.b: missing" in msg and "unknown.W" in msg
    for k, v in net.get_states().items():
        np.testing.assert_array_equal(tensor.to_numpy(v), before[k])


def test_truncated_or_foreign_files_give_clear_errors(tmp_path):
    net = build("mlp", True)
    good = str(tmp_path / "good.zip")
    net.save_states(good)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(open(good, "rb").read()[:100])
    with pytest.raises(ValueError, match="truncated or not a checkpoint"):
        net.load_states(str(truncated))
    foreign = str(tmp_path / "foreign.zip")
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="not a SINGA checkpoint"):
        net.load_states(foreign)
    with pytest.raises(FileNotFoundError):
        net.load_states(str(tmp_path / "missing.zip"))


def test_graph_model_samples_one_sequence_from_states_kept_at_the_training_batch():
    from singax import autograd as ag
    from singax.tensor import Tensor

    class Stateful(model.Model):
        def __init__(self):
            super().__init__()
            self.lstm = layer.LSTM(3, 5)
            self.head = layer.Linear(3)
            self.optimizer = opt.SGD(0.1)

        def initialize(self, xs, *rest):
            n = xs[0].shape[0]
            self.h, self.c = Tensor((n, 5)), Tensor((n, 5))

        def forward(self, xs, *rest):
            _, h, c = self.lstm(xs, (self.h, self.c))
            self.h.copy_data(h)
            self.c.copy_data(c)
            return self.head(h)

        def train_one_batch(self, xs, y):
            out = self.forward(xs)
            loss = ag.softmax_cross_entropy(out, y)
            self.optimizer(loss)
            return out, loss

    rng = np.random.default_rng(1)
    m = Stateful()
    m.graph(True, False)
    m.train()
    for _ in range(2):
        xs = [Tensor(data=rng.standard_normal((4, 3)).astype(np.float32)) for _ in range(2)]
        m(xs, Tensor(data=np.array([0, 1, 2, 1], np.int32)))
    m.eval()
    x1 = rng.standard_normal((1, 3)).astype(np.float32)
    m.h.set_value(0.0)
    m.c.set_value(0.0)
    one = tensor.to_numpy(m([Tensor(data=x1)]))
    m.h.set_value(0.0)
    m.c.set_value(0.0)
    tiled = tensor.to_numpy(m([Tensor(data=np.repeat(x1, 4, axis=0))]))
    assert one.shape == (4, 3)
    np.testing.assert_allclose(one, tiled, rtol=1e-5, atol=1e-6)


def test_checks_singa_makes_with_assert_are_also_assertion_errors(tmp_path):
    """SINGA asserts these; singax raises ValueError/TypeError/FileNotFoundError that are
    also AssertionErrors, so either `except` works."""
    net = build("mlp", use_graph=False)
    with pytest.raises(ValueError, match="non-empty list of Tensors") as info:
        net.compile([], is_train=True, use_graph=False)
    assert isinstance(info.value, AssertionError)
    with pytest.raises(TypeError, match="aux state 'n' must be a Tensor, got int") as info:
        net.save_states(str(tmp_path / "a.zip"), aux_states={"n": 3})
    assert isinstance(info.value, AssertionError) and not (tmp_path / "a.zip").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint at") as info:
        net.load_states(str(tmp_path / "missing.zip"))
    assert isinstance(info.value, AssertionError)
    with pytest.raises(TypeError, match="Constant: step must be a Tensor, got int") as info:
        opt.Constant(0.3)(5)
    assert isinstance(info.value, AssertionError)
    sgd = opt.SGD(0.1)
    w = tensor.from_numpy(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"SGD.apply: gradient shape \(3,\) does not match") as info:
        sgd.apply("w", w, tensor.from_numpy(np.ones(3, np.float32)))
    assert isinstance(info.value, AssertionError)
    np.testing.assert_array_equal(tensor.to_numpy(w), np.ones((2, 3)))
