"""The optional oneDNN convolutions (singax/autograd/_onednn.py, the `cpu-fast` extra):
forward and both gradients against float64 references and finite differences, the CPU
program really calls them, training matches XLA's convolutions; and without the extra
(or with SINGAX_CPU_KERNELS=xla) every convolution stays XLA's."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from singax.autograd import _onednn, nn as nn_mod
from _helpers import ROOT

needs_onednn = pytest.mark.skipif(not _onednn.available(), reason=f"oneDNN kernels: {_onednn.status()[1]}")

# (x shape, out channels, kernel, strides, ((top, bottom), (left, right)), dilation)
CASES = [
    ((2, 3, 9, 10), 4, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((3, 5, 11, 9), 6, (3, 2), (2, 2), ((1, 0), (0, 2)), (1, 1)),
    ((2, 3, 12, 13), 4, (3, 3), (2, 1), ((2, 1), (1, 2)), (2, 1)),
    ((4, 1, 12, 12), 5, (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((2, 16, 6, 6), 32, (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1)),
]


def _xla_conv(x, W, strides, padding, dilation):
    return lax.conv_general_dilated(x, W, strides, padding, rhs_dilation=dilation,
                                    dimension_numbers=("NCHW", "OIHW", "NCHW"))


def _inputs(case, seed=0):
    shape, O, k, strides, padding, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    W = rng.standard_normal((O, shape[1]) + k).astype(np.float32)
    geometry = (strides, padding, dilation)
    y_shape = jax.eval_shape(lambda x, W: _xla_conv(x, W, *geometry), x, W).shape
    dy = rng.standard_normal(y_shape).astype(np.float32)
    return x, W, dy, geometry


@needs_onednn
@pytest.mark.parametrize("case", CASES)
def test_forward_and_gradients_match_float64(case, x64):
    x, W, dy, geometry = _inputs(case)
    y, pull = jax.vjp(lambda x, W: _onednn.conv2d(x, W, geometry), x, W)
    dx, dW = pull(dy)
    assert y.dtype == dx.dtype == dW.dtype == jnp.float32
    want_y, pull64 = jax.vjp(lambda x, W: _xla_conv(x, W, *geometry), x.astype(np.float64), W.astype(np.float64))
    want_dx, want_dW = pull64(dy.astype(np.float64))
    for got, want in [(y, want_y), (dx, want_dx), (dW, want_dW)]:
        want = np.asarray(want)
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-6 * np.abs(want).max() * np.sqrt(x.size))


@needs_onednn
@pytest.mark.parametrize("case", CASES[:3])
def test_gradients_match_finite_differences(case):
    # the convolution is linear in x and in W, so central differences are exact up to rounding
    x, W, dy, geometry = _inputs(case, seed=1)
    rng = np.random.default_rng(2)
    loss = jax.jit(lambda x, W: jnp.vdot(_onednn.conv2d(x, W, geometry), dy))
    dx, dW = jax.grad(loss, (0, 1))(x, W)
    for d in range(3):
        vx, vW = rng.standard_normal(x.shape).astype(np.float32), rng.standard_normal(W.shape).astype(np.float32)
        eps = np.float32(0.5)
        fd = (float(loss(x + eps * vx, W + eps * vW)) - float(loss(x - eps * vx, W - eps * vW))) / (2 * eps)
        tape = float(np.vdot(dx, vx) + np.vdot(dW, vW))
        assert abs(fd - tape) <= 1e-4 * (abs(tape) + np.abs(dx).sum() + np.abs(dW).sum())


@needs_onednn
def test_cpu_program_calls_onednn_for_the_row_and_its_gradients():
    handle = nn_mod.ConvHandle((2, 3, 8, 8), 3, 1, 1, 3, 4, True)
    x, W, b = np.ones((2, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32), np.ones(4, np.float32)
    loss = lambda x, W, b: jnp.sum(jnp.sin(nn_mod._conv_forward(x, W, b, handle=handle)))  # noqa: E731
    hlo = jax.jit(jax.grad(loss, (0, 1, 2))).lower(*(jax.device_put(a, jax.devices("cpu")[0]) for a in (x, W, b))).as_text()
    assert all(name in hlo for name in _onednn.TARGETS.values())
    assert "convolution" not in hlo


@needs_onednn
def test_gpu_programs_keep_xla_convolutions():
    handle = nn_mod.ConvHandle((2, 3, 8, 8), 3, 1, 1, 3, 4, False)
    loss = lambda x, W: jnp.sum(jnp.sin(nn_mod._conv_forward(x, W, handle=handle)))  # noqa: E731
    shapes = (jax.ShapeDtypeStruct((2, 3, 8, 8), jnp.float32), jax.ShapeDtypeStruct((4, 3, 3, 3), jnp.float32))
    module = jax.export.export(jax.jit(jax.grad(loss, (0, 1))), platforms=["cuda"])(*shapes).mlir_module()
    assert "convolution" in module and "SingaxConv" not in module


@needs_onednn
@pytest.mark.parametrize("group,batch,dtype", [(2, 1, np.float32), (1, 0, np.float32), (1, 1, np.float64)])
def test_grouped_empty_and_float64_convolutions_keep_xla(group, batch, dtype, x64):
    handle = nn_mod.ConvHandle((batch, 4, 6, 6), 3, 1, 1, 4, 4, False, group)
    hlo = jax.jit(lambda x, W: nn_mod._conv_forward(x, W, handle=handle)).lower(
        np.ones((batch, 4, 6, 6), dtype), np.ones((4, 4 // group, 3, 3), dtype)).as_text()
    assert "convolution" in hlo and "SingaxConv" not in hlo


_TRAIN = """
import json, numpy as np, jax
from singax import autograd, opt, tensor
from singax.autograd import _onednn
from _helpers import mnist_cnn
model = mnist_cnn()()
model.set_optimizer(opt.SGD(lr=0.005))
rng = np.random.default_rng(0)
x = tensor.from_numpy(rng.standard_normal((8, 1, 28, 28)).astype(np.float32))
y = tensor.from_numpy(np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)])
model.compile([x], is_train=True, use_graph=True)
losses = [float(tensor.to_numpy(model(x, y)[1]).sum()) for _ in range(5)]
print(json.dumps([_onednn.status()[0], losses]))
"""


def _run(script, **env):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), **env)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_onednn
def test_compiled_training_matches_xla_convolutions():
    kernels, losses = _run(_TRAIN)
    xla_kernels, xla_losses = _run(_TRAIN, SINGAX_CPU_KERNELS="xla")
    assert (kernels, xla_kernels) == ("onednn", "xla")
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(losses, xla_losses, rtol=1e-4)


_SHARDED = """
import json, jax, jax.numpy as jnp, numpy as np
from jax import lax
from singax import _mesh
from singax.autograd import nn
mesh = _mesh.use_mesh()
h = nn.ConvHandle((8, 3, 10, 10), 3, 2, 1, 3, 4, True)
rng = np.random.default_rng(0)
x, W, b = (rng.standard_normal(s).astype(np.float32) for s in [(8, 3, 10, 10), (4, 3, 3, 3), (4,)])
loss = lambda x, W, b: jnp.sum(jnp.sin(nn._conv_forward(x, W, b, handle=h)))
xla = lambda x, W, b: jnp.sum(jnp.sin(lax.conv_general_dilated(x, W, (2, 2), [(1, 1)] * 2,
                              dimension_numbers=("NCHW", "OIHW", "NCHW")) + b.reshape(1, -1, 1, 1)))
want = jax.grad(xla, (0, 1, 2))(x, W, b)
args = (_mesh.shard_batch(x, mesh), jax.device_put(W, _mesh.replicated(mesh)), jax.device_put(b, _mesh.replicated(mesh)))
step = jax.jit(jax.grad(loss, (0, 1, 2)))
got = step(*args)
hlo = step.lower(*args).compile().as_text()
odd = jax.jit(lambda x, W: nn._conv_forward(x, W, handle=h)).lower(np.ones((5, 3, 10, 10), np.float32), W).as_text()
print(json.dumps([jax.device_count(), [float(np.abs(np.asarray(g) - w).max()) for g, w in zip(got, want)],
                  tuple(got[0].sharding.spec), hlo.count("SingaxConv"), "all-gather" in hlo, "SingaxConv" in odd]))
"""


@needs_onednn
def test_batch_sharded_over_devices_calls_onednn_per_device():
    devices, errors, dx_spec, calls, gathers, odd_batch = _run(
        _SHARDED, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert devices == 2 and max(errors) < 1e-4
    assert dx_spec == ["data"] and calls >= 3 and not gathers
    assert not odd_batch   # a batch of 5 does not split over 2 devices: XLA's convolution


def test_without_onednn_every_convolution_stays_xla(tmp_path):
    script = """
import json, jax, numpy as np
from singax.autograd import _onednn, nn
h = nn.ConvHandle((1, 2, 5, 5), 3, 1, 1, 2, 3, False)
hlo = jax.jit(lambda x, W: nn._conv_forward(x, W, handle=h)).lower(np.ones((1, 2, 5, 5), np.float32),
                                                                   np.ones((3, 2, 3, 3), np.float32)).as_text()
print(json.dumps([*_onednn.status(), "convolution" in hlo, "SingaxConv" in hlo]))
"""
    for env in (dict(SINGAX_CPU_KERNELS="xla"), dict(CXX="singax-no-such-compiler"), dict(CXX="false")):
        kernels, reason, xla_conv, custom = _run(script, XDG_CACHE_HOME=str(tmp_path), **env)
        assert (kernels, xla_conv, custom) == ("xla", True, False), reason


def test_a_cache_others_could_write_is_not_loaded_from(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by others"):
        _onednn._private(str(shared))
    own = tmp_path / "own"
    own.mkdir()
    own.chmod(0o700)
    _onednn._private(str(own))
