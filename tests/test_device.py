"""singax.device: SINGA's device names over XLA devices, the fallback warning, the
strict mode, and the per-device random key stream."""
import warnings

import jax
import numpy as np
import pytest

from singax import device, tensor
from singax.tensor import Tensor

HAS_GPU = device.get_num_gpus() > 0
cpu_only = pytest.mark.skipif(HAS_GPU, reason="fallback only happens without a GPU")


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(device, "_warned", set())
    monkeypatch.delenv("SINGAX_STRICT_DEVICE", raising=False)


def test_default_device_is_the_host_singleton():
    d = device.get_default_device()
    assert d.id() == -1 and d.platform == "cpu"
    assert device.create_cpu_device() is d and device.get_default_device() is d
    assert d.host() is d
    if not HAS_GPU:
        assert device.get_devices() == [d]


@cpu_only
def test_create_cuda_gpu_falls_back_with_one_warning(fresh_warnings):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = device.create_cuda_gpu()
        second = device.create_cuda_gpu()
        third = device.create_cuda_gpu_on(0)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "no gpu device 0" in msgs[0] and "SINGAX_STRICT_DEVICE" in msgs[0]
    assert first is second is third is device.get_default_device()
    assert first.id() == -1                       # layers pick CPU kernels on id() == -1
    with pytest.warns(UserWarning, match="no gpu device 1"):
        gpus = device.create_cuda_gpus(2)
    assert len(gpus) == 2 and all(g is first for g in gpus)
    assert device.create_cuda_gpus_on([0]) == [first]


@cpu_only
def test_strict_device_raises_listing_platforms(fresh_warnings, monkeypatch):
    monkeypatch.setenv("SINGAX_STRICT_DEVICE", "1")
    with pytest.raises(ValueError, match=r"no gpu device 0 \(SINGAX_STRICT_DEVICE=1\); available platforms: cpu"):
        device.create_cuda_gpu()
    with pytest.raises(ValueError, match="no tpu device 0.*available platforms: cpu"):
        device.create_tpu_device()
    with pytest.raises(ValueError, match="no opencl device 0"):
        device.create_opencl_device()


@cpu_only
def test_gpu_queries_without_a_gpu(fresh_warnings):
    assert device.get_num_gpus() == 0 and device.get_gpu_ids() == []
    with pytest.raises(ValueError, match="get_gpu_mem_size: no GPU 0"):
        device.get_gpu_mem_size(0)
    assert device.device_query(0) == "no GPU 0"
    assert device.get_num_opencl_platforms() == 0 and device.get_num_opencl_devices() == 0
    with pytest.warns(UserWarning, match="no tpu device 0"):
        assert device.create_tpu_device() is device.get_default_device()


def test_set_rand_seed_makes_fills_reproducible():
    dev = device.get_default_device()
    dev.SetRandSeed(123)
    a = tensor.to_numpy(Tensor((64,)).gaussian(0.0, 1.0))
    b = tensor.to_numpy(Tensor((64,)).gaussian(0.0, 1.0))
    dev.SetRandSeed(123)
    np.testing.assert_array_equal(tensor.to_numpy(Tensor((64,)).gaussian(0.0, 1.0)), a)
    np.testing.assert_array_equal(tensor.to_numpy(Tensor((64,)).gaussian(0.0, 1.0)), b)
    assert not np.array_equal(a, b)                    # the stream advances
    dev.SetRandSeed(124)
    assert not np.array_equal(tensor.to_numpy(Tensor((64,)).gaussian(0.0, 1.0)), a)
    dev.Reset()                                        # Reset == SetRandSeed(DEFAULT_SEED)
    r = tensor.to_numpy(Tensor((64,)).gaussian(0.0, 1.0))
    dev.SetRandSeed(device.DEFAULT_SEED)
    np.testing.assert_array_equal(tensor.to_numpy(Tensor((64,)).gaussian(0.0, 1.0)), r)


def test_next_key_is_a_typed_key_and_advances():
    dev = device.get_default_device()
    k1, k2 = dev.next_key(), dev.next_key()
    assert jax.dtypes.issubdtype(k1.dtype, jax.dtypes.prng_key)
    assert not np.array_equal(jax.random.key_data(k1), jax.random.key_data(k2))


def test_sync_and_recorded_settings(capsys):
    dev = device.get_default_device()
    t = Tensor((8,)).uniform(0.0, 1.0)
    assert dev.Sync() is None
    assert t.data.is_ready()
    dev.EnableGraph(True)
    assert dev.graph_enabled()
    dev.EnableGraph(False)
    assert not dev.graph_enabled()
    dev.ResetGraph(); dev.RunGraph(); dev.RunGraph(serial=True)
    dev.SetVerbosity(2); dev.SetSkipIteration(3)
    assert dev._verbosity == 2 and dev._skip_iteration == 3
    dev.PrintTimeProfiling()
    assert "jax.profiler" in capsys.readouterr().out
    dev.SetVerbosity(0); dev.SetSkipIteration(5)
    dev.PrintTimeProfiling()  # silent at SINGA's default verbosity
    assert capsys.readouterr().out == ""
    device.enable_lazy_alloc(True)
    assert "Device(id=-1" in repr(dev)


def test_default_device_is_host_cpu_and_can_be_chosen(monkeypatch):
    monkeypatch.setattr(device, "_default", [])
    assert device.get_default_device() is device.create_cpu_device()
    assert device.get_default_device().id() == -1
    best = device.get_devices()[0]
    assert device.set_default_device(best) is best
    t = tensor.Tensor((2, 3))
    assert t.device is best
    t.to_host()
    assert t.device is device.create_cpu_device()
    device.set_default_device(None)
    assert device.get_default_device() is device.create_cpu_device()


def test_default_device_from_environment(monkeypatch):
    monkeypatch.setattr(device, "_default", [])
    monkeypatch.setenv("SINGAX_DEFAULT_DEVICE", "CPU")
    assert device.get_default_device() is device.create_cpu_device()
    monkeypatch.setattr(device, "_default", [])
    monkeypatch.setenv("SINGAX_DEFAULT_DEVICE", "fpga:0")
    with pytest.raises(ValueError, match="SINGAX_DEFAULT_DEVICE: unknown device 'fpga:0'"):
        device.get_default_device()
    with pytest.raises(ValueError, match="set_default_device: unknown device 'gpu:x'"):
        device.set_default_device("gpu:x")
    with pytest.raises(TypeError, match="set_default_device: expected a singax Device"):
        device.set_default_device(3)
    monkeypatch.setattr(device, "_default", [])


def test_bad_device_ids_and_seeds_are_clear_errors():
    for call, match in ((lambda: device.create_cuda_gpu_on(-1), "create_cuda_gpu_on: device_id must be an int >= 0"),
                        (lambda: device.create_cuda_gpu_on(1.5), "create_cuda_gpu_on: device_id must be an int"),
                        (lambda: device.create_cuda_gpus(-2), "create_cuda_gpus: device_id must be an int >= 0"),
                        (lambda: device.get_gpu_mem_size(-1), "get_gpu_mem_size: device_id must be an int >= 0"),
                        (lambda: device.get_default_device().SetRandSeed(2 ** 70), r"SetRandSeed: the seed must")):
        with pytest.raises(ValueError, match=match):
            call()
