"""float16 / bfloat16 training: float32 master weights, dynamic loss scaling, no NaN."""
import jax.numpy as jnp
import numpy as np
import pytest

from singax import autograd, device, layer, model, opt, tensor


class SmallCNN(model.Model):
    def __init__(self):
        super().__init__()
        self.conv = layer.Conv2d(4, 3, padding=1)
        self.relu = layer.ReLU()
        self.pool = layer.MaxPool2d(2, 2)
        self.flat = layer.Flatten()
        self.fc = layer.Linear(3)
        self.loss_fn = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.relu(self.conv(x)))))

    def train_one_batch(self, x, y):
        out = self.forward(x)
        loss = self.loss_fn(out, y)
        self.optimizer(loss)
        return out, loss


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    x = rng.standard_normal((n, 1, 6, 6)).astype(np.float32) * 0.5
    x[np.arange(n), 0, y, y] += 3.0      # a learnable class signal
    return x, y


@pytest.mark.parametrize("code,use_graph", [(tensor.float16, True), (tensor.bfloat16, True),
                                            (tensor.float16, False)])
def test_half_precision_cnn_trains_without_nan(code, use_graph):
    device.get_default_device().SetRandSeed(0)
    x, y = data()
    net = SmallCNN()
    net.optimizer = opt.SGD(lr=0.1, momentum=0.9, dtype=code)
    tx = tensor.Tensor(x.shape, dtype=code)
    ty = tensor.Tensor(y.shape, dtype=tensor.int32)
    tx.copy_from_numpy(x)
    ty.copy_from_numpy(y)
    net.compile([tx], is_train=True, use_graph=use_graph)
    losses = []
    for _ in range(15):
        _, loss = net(tx, ty)
        losses.append(float(tensor.to_numpy(loss).astype(np.float32).reshape(-1)[0]))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses
    params = net.get_params()
    assert all(p.dtype == code for p in params.values())
    masters = net.optimizer.master
    assert len(masters) == len(params) and all(m.data.dtype == jnp.float32 for m in masters.values())
    for name, p in params.items():   # the parameter is its master weight, rounded
        np.testing.assert_array_equal(np.asarray(p.data), np.asarray(masters[name].data.astype(p.data.dtype)))


def test_overflowing_step_is_skipped_and_scale_halves():
    autograd.training = True
    w = tensor.Tensor(data=np.array([1.0, 2.0], np.float16), dtype=tensor.float16, stores_grad=True, name="w")
    sgd = opt.SGD(lr=0.1, momentum=0.9, dtype=tensor.float16)
    big = tensor.Tensor(data=np.array([60000.0, 60000.0], np.float16), dtype=tensor.float16)
    loss = autograd.reduce_sum(autograd.mul(w, big), keepdims=0)   # grad * scale overflows float16
    sgd(loss)
    np.testing.assert_array_equal(np.asarray(w.data, np.float32), [1.0, 2.0])
    assert float(sgd.loss_scaler.scale.data[0]) == 2.0 ** 14
    np.testing.assert_array_equal(np.asarray(sgd.moments["w"].data), [0.0, 0.0])
    small = tensor.Tensor(data=np.array([0.5, 0.25], np.float16), dtype=tensor.float16)
    sgd(autograd.reduce_sum(autograd.mul(w, small), keepdims=0))
    np.testing.assert_allclose(np.asarray(w.data, np.float32), [1.0 - 0.05, 2.0 - 0.025], rtol=1e-3)
    states = sgd.get_states()
    assert float(np.asarray(states["loss_scale"].data)[0]) == 2.0 ** 14
