"""DistOpt on 4 simulated CPU devices (subprocesses) equals single-device training."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(__file__)
SCRIPT = os.path.join(HERE, "dist", "train.py")


def run(*args, devices=4, env=None, timeout=240):
    e = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu", **(env or {}))
    out = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=e,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_distopt_on_four_devices_equals_one_device(kind):
    single = run(kind, "single", devices=1)
    dist = run(kind, "dist", devices=4)
    np.testing.assert_allclose(dist["losses"], single["losses"], rtol=1e-4, atol=1e-5)
    assert set(dist["states"]) == set(single["states"])
    for name, value in single["states"].items():
        np.testing.assert_allclose(dist["states"][name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    assert dist["compiles"] == 1


def test_batchnorm_statistics_are_each_workers_own_in_a_compiled_step():
    """Four workers (devices) in one compiled step: each normalises its quarter of the batch
    with its own statistics, as SINGA's per-process BatchNorm; the update uses the average
    of the workers' gradients, and the running statistics the average of theirs."""
    code = r'''
import numpy as np
from singax import autograd, layer, model, opt, tensor
from singax.dist import DistOpt, clear_mesh

class Net(model.Model):
    def __init__(self):
        super().__init__()
        self.bn = layer.BatchNorm2d(momentum=0.8)
        self.loss = layer.MeanSquareError()
    def forward(self, x):
        return self.bn(x)
    def train_one_batch(self, x, t):
        y = self.forward(x)
        loss = self.loss(y, t)
        self.optimizer(loss)
        return y, loss

rng = np.random.default_rng(0)
x = (rng.standard_normal((8, 3, 2, 2)) * np.arange(1, 9).reshape(8, 1, 1, 1)).astype(np.float32)
t = rng.standard_normal((8, 3, 2, 2)).astype(np.float32)

def build(dist, rows):
    clear_mesh()
    m = Net()
    m.optimizer = DistOpt(opt.SGD(0.5)) if dist else opt.SGD(0.5)
    m.compile([tensor.from_numpy(x[rows])], is_train=True, use_graph=dist)
    return m

multi = build(True, slice(0, 8))
y, _ = multi(tensor.from_numpy(x), tensor.from_numpy(t))
workers = [build(False, slice(2 * w, 2 * w + 2)) for w in range(4)]
ys, grads = [], {}
for w, m in enumerate(workers):
    out = m.forward(tensor.from_numpy(x[2 * w:2 * w + 2]))
    ys.append(tensor.to_numpy(out))
    loss = m.loss(out, tensor.from_numpy(t[2 * w:2 * w + 2]))
    for p, g in autograd.backward(loss):
        grads.setdefault(p.name.split(".")[-1], []).append(tensor.to_numpy(g))
np.testing.assert_allclose(tensor.to_numpy(y), np.concatenate(ys), rtol=1e-5, atol=1e-5)
quarter = x[:2]
want = (quarter - quarter.mean((0, 2, 3), keepdims=True)) / np.sqrt(quarter.var((0, 2, 3), keepdims=True) + 1e-5)
np.testing.assert_allclose(tensor.to_numpy(y)[:2], want, rtol=1e-4, atol=1e-4)
states = {k.split(".")[-1]: tensor.to_numpy(v) for k, v in multi.get_states().items()}
for stat in ("running_mean", "running_var"):
    avg = np.mean([tensor.to_numpy(getattr(m.bn, stat)) for m in workers], axis=0)
    np.testing.assert_allclose(states[stat], avg, rtol=1e-5, atol=1e-6, err_msg=stat)
for name in ("scale", "bias"):
    np.testing.assert_allclose(states[name], 1.0 * (name == "scale") - 0.5 * np.mean(grads[name], axis=0),
                               rtol=1e-5, atol=1e-6, err_msg=name)
print("OK")
'''
    e = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=240)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed_equal_one_process():
    single = run("mlp", "single", devices=1)
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
                   SINGAX_COORDINATOR=f"127.0.0.1:{port}", SINGAX_NUM_PROCESSES="2", SINGAX_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen([sys.executable, SCRIPT, "mlp", "dist2proc"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("2-process jax.distributed run timed out")
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    result = json.loads(outs[0].strip().splitlines()[-1])
    np.testing.assert_allclose(result["losses"], single["losses"], rtol=1e-4, atol=1e-5)


def test_k_steps_on_four_devices_equal_single_steps_on_one():
    code = r'''
import json, numpy as np
from singax import device, layer, model, opt, tensor
from singax.dist import DistOpt, clear_mesh
class MLP(model.Model):
    def __init__(self):
        super().__init__()
        self.l1, self.relu, self.l2 = layer.Linear(8), layer.ReLU(), layer.Linear(3)
        self.loss = layer.SoftMaxCrossEntropy()
    def forward(self, x):
        return self.l2(self.relu(self.l1(x)))
    def train_one_batch(self, x, y):
        out = self.forward(x)
        loss = self.loss(out, y)
        self.optimizer(loss)
        return out, loss
rng = np.random.default_rng(0)
xs = rng.standard_normal((3, 8, 5)).astype(np.float32)
ys = rng.integers(0, 3, (3, 8)).astype(np.int32)
def build(dist):
    clear_mesh()
    device.get_default_device().SetRandSeed(0)
    m = MLP()
    sgd = opt.SGD(0.1, momentum=0.9)
    m.optimizer = DistOpt(sgd) if dist else sgd
    m.compile([tensor.from_numpy(xs[0])], is_train=True, use_graph=True)
    return m
single = build(False)
ref = [float(tensor.to_numpy(single(tensor.from_numpy(x), tensor.from_numpy(y))[1])[0]) for x, y in zip(xs, ys)]
multi = build(True)
_, losses = multi.train_steps(tensor.from_numpy(xs), tensor.from_numpy(ys))
np.testing.assert_allclose(tensor.to_numpy(losses).reshape(-1), ref, rtol=1e-4)
print("OK")
'''
    e = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=240)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_bad_inputs_raise_clear_errors():
    code = r'''
import numpy as np, pytest
from singax import opt, tensor, layer, model
from singax.dist import DistOpt, clear_mesh
with pytest.raises(TypeError, match="optimizer"):
    DistOpt(object())
with pytest.raises(ValueError, match="world_size"):
    DistOpt(opt.SGD(0.1), world_size=3)
for step in ("__call__", "backward_and_update_half", "backward_and_sparse_update"):
    with pytest.raises(TypeError, match="expected the loss Tensor"):
        getattr(DistOpt(opt.SGD(0.1)), step)(2.0)
from singax._mesh import shard_batch, use_mesh
mesh = use_mesh()
with pytest.raises(ValueError, match="does not divide"):
    shard_batch(np.ones((6, 2), np.float32), mesh)
print("OK")
'''
    e = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def _one_param_problem():
    from singax import autograd
    from singax.tensor import Tensor
    autograd.training = True
    w = Tensor(data=np.array([0.5, -2.0, 0.1, 3.0, -0.05, 1.0], np.float32), stores_grad=True, name="w")
    target = np.zeros(6, np.float32)
    loss = lambda: autograd.mse_loss(w, Tensor(data=target))  # noqa: E731  grad = 2 w / 6
    return w, loss


def test_sparse_update_sends_top_fraction_and_keeps_the_residual():
    from singax import opt
    from singax.dist import DistOpt, clear_mesh
    try:
        w, loss = _one_param_problem()
        w0 = np.array(w.data)
        d = DistOpt(opt.SGD(lr=1.0))
        d.backward_and_sparse_update(loss(), spars=2 / 6, topK=True, corr=True)
        g = 2 * w0 / 6
        sent = np.where(np.abs(g) >= np.sort(np.abs(g))[-2], g, 0)     # the two largest
        np.testing.assert_allclose(np.array(w.data), w0 - sent, rtol=1e-6)
        (acc,) = d.gradAccumulation.values()
        np.testing.assert_allclose(np.array(acc.data), g - sent, rtol=1e-6)
        # threshold mode: elements with abs(g + residual) >= spars are sent
        w1 = np.array(w.data)
        d.backward_and_sparse_update(loss(), spars=0.2, topK=False, corr=True)
        g2 = 2 * w1 / 6 + (g - sent)
        sent2 = np.where(np.abs(g2) >= 0.2, g2, 0)
        np.testing.assert_allclose(np.array(w.data), w1 - sent2, rtol=1e-5)
    finally:
        clear_mesh()


def test_half_update_rounds_gradients_through_float16_and_clips():
    from singax import opt
    from singax.dist import DistOpt, clear_mesh
    try:
        w, loss = _one_param_problem()
        w0 = np.array(w.data)
        DistOpt(opt.SGD(lr=1.0)).backward_and_update_half(loss(), clipping=True, clip_Value=0.5)
        g = np.clip((2 * w0 / 6).astype(np.float16), -0.5, 0.5).astype(np.float32)
        np.testing.assert_allclose(np.array(w.data), w0 - g, rtol=1e-6)
    finally:
        clear_mesh()


def test_sparsification_takes_raw_arrays_and_one_flat_accumulation_as_singa_scripts_pass_them():
    from singax import opt, tensor
    from singax.dist import DistOpt, clear_mesh
    f32 = lambda a: tensor.from_numpy(np.array(a, np.float32))
    try:
        d = DistOpt(opt.SGD(0.1))
        g, acc = f32([0.01, 0.5, -0.7, 0.02]), f32([0.0, 0.0, 0.1, 0.0])
        out = d.sparsification(g.data, acc.data, 0.5, True)      # SINGA: (g.data, acc.data, ...)
        np.testing.assert_allclose(np.asarray(out), [0, 0.5, -0.6, 0], rtol=1e-6)
        np.testing.assert_allclose(tensor.to_numpy(g), [0, 0.5, -0.6, 0], rtol=1e-6)   # in place
        np.testing.assert_allclose(tensor.to_numpy(acc), [0.01, 0, 0, 0.02], rtol=1e-6)
        # fused: top-k over the concatenation, one flat residual buffer
        a, b, acc = f32([[0.3, -0.05]]), f32([0.9, 0.1]), f32([0.0, 0.0, 0.0, 0.1])
        d.fused_sparsification([a, b], acc, 0.5, True)
        np.testing.assert_allclose(tensor.to_numpy(a), [[0.3, 0]])
        np.testing.assert_allclose(tensor.to_numpy(b), [0.9, 0])
        np.testing.assert_allclose(tensor.to_numpy(acc), [0, -0.05, 0, 0.2], rtol=1e-6)
        before = tensor.to_numpy(a)
        with pytest.raises(ValueError, match=r"accumulation sizes \[3\] do not match the gradients' \[2, 2\]"):
            d.fused_sparsification([a, b], f32([0, 0, 0]), 0.5, True)
        with pytest.raises(TypeError, match="accumulation must be a Tensor or a Tensor's .data"):
            d.fused_sparsification([a, b], np.zeros(4, np.float32), 0.5, True)
        np.testing.assert_array_equal(tensor.to_numpy(a), before)
    finally:
        clear_mesh()


def test_sparsification_keeps_top_fraction_and_accumulates():
    from singax import opt, tensor
    from singax.dist import DistOpt, clear_mesh
    try:
        d = DistOpt(opt.SGD(0.1))
        g = tensor.from_numpy(np.array([0.1, -3.0, 0.5, 2.0], np.float32))
        acc = tensor.from_numpy(np.zeros(4, np.float32))
        out = d.sparsification(g, acc, 0.5, True)
        np.testing.assert_array_equal(tensor.to_numpy(out), [0, -3.0, 0, 2.0])
        np.testing.assert_array_equal(tensor.to_numpy(acc), np.array([0.1, 0, 0.5, 0], np.float32))
        (a, b) = d.fused_sparsification([tensor.from_numpy(np.array([1.0, 0.2], np.float32)),
                                         tensor.from_numpy(np.array([0.3, 0.9], np.float32))], None, 0.5, False)
        np.testing.assert_array_equal(tensor.to_numpy(a), [1.0, 0])
        np.testing.assert_array_equal(tensor.to_numpy(b), np.array([0, 0.9], np.float32))
    finally:
        clear_mesh()
