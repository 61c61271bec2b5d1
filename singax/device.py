"""SINGA's device API over JAX devices.

A `Device` wraps one `jax.Device` and owns a random key stream (a `Handle`, so a
compiled training step carries it as state). SINGA scripts that ask for a CUDA
GPU run on the best available XLA device when there is none (one warning;
`SINGAX_STRICT_DEVICE=1` makes it an error).

The default device (where tensors go when no device is given) is the host CPU, as in
SINGA. A program may opt into another one with `set_default_device(dev)` or, before it
starts, with the environment variable `SINGAX_DEFAULT_DEVICE` (`cpu`, `gpu`, `gpu:1`,
`cuda:0`, `tpu`).
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import jax

from ._args import is_int
from ._handle import Handle
from ._fork import check_not_forked

__all__ = [
    "Device", "get_default_device", "set_default_device", "create_cpu_device", "create_cuda_gpu",
    "create_cuda_gpu_on", "create_cuda_gpus", "create_cuda_gpus_on", "create_tpu_device",
    "get_devices", "get_num_gpus", "get_gpu_ids", "get_gpu_mem_size", "device_query",
    "enable_lazy_alloc", "create_opencl_device", "get_num_opencl_platforms",
    "get_num_opencl_devices",
]

DEFAULT_SEED = 0


class Device:
    """A SINGA device: one jax.Device plus its random key stream."""

    def __init__(self, jax_device: jax.Device, device_id: int, seed: int = DEFAULT_SEED):
        self.jax_device = jax_device
        self._id = device_id
        self._key = Handle(self._make_key(seed))
        self._graph_enabled = False
        self._verbosity = 0
        self._skip_iteration = 5

    def _make_key(self, seed: int) -> jax.Array:
        if not is_int(seed) or not -2 ** 63 <= seed < 2 ** 63:
            raise ValueError(f"SetRandSeed: the seed must be an int in [-2**63, 2**63), got {seed!r}")
        return jax.device_put(jax.random.key_data(jax.random.PRNGKey(int(seed))), self.jax_device)

    # --- SINGA methods ---------------------------------------------------
    def id(self) -> int:
        """-1 for the host CPU device, the accelerator ordinal otherwise."""
        return self._id

    def SetRandSeed(self, seed: int) -> None:
        """Restart this device's random key stream from `seed`."""
        self._key.data = self._make_key(seed)

    def Sync(self) -> None:
        """Block until all work queued on this device is done."""
        (jax.device_put(0.0, self.jax_device) + 0).block_until_ready()
        for arr in jax.live_arrays():
            if self.jax_device in arr.devices():
                arr.block_until_ready()

    def EnableGraph(self, enable: bool = True) -> None:
        """Recorded only: graph building is `Model.compile`'s job in singax (XLA schedules)."""
        self._graph_enabled = bool(enable)

    def graph_enabled(self) -> bool:
        return self._graph_enabled

    def ResetGraph(self) -> None:
        """No-op: singax keeps no buffered op graph on the device."""

    def RunGraph(self, serial: bool = False) -> None:
        """No-op: compiled steps run when `Model.__call__` is called."""

    def SetVerbosity(self, verbosity: int) -> None:
        """Stored; singax has no per-op profiler (use `jax.profiler`)."""
        self._verbosity = int(verbosity)

    def SetSkipIteration(self, n: int) -> None:
        """Stored; see `SetVerbosity`."""
        self._skip_iteration = int(n)

    def PrintTimeProfiling(self) -> None:
        """With `SetVerbosity(n > 0)`, prints a pointer to jax.profiler (XLA fuses ops, so
        per-op timings do not exist); at the default verbosity 0 it prints nothing, as SINGA."""
        if self._verbosity > 0:
            print(f"singax: no per-op profile on {self}; use jax.profiler.trace() for XLA timings")

    def host(self) -> "Device":
        return create_cpu_device()

    def Reset(self) -> None:
        self.SetRandSeed(DEFAULT_SEED)

    # --- singax ------------------------------------------------------------
    @property
    def platform(self) -> str:
        return self.jax_device.platform

    def next_key(self) -> jax.Array:
        """Split the device key stream; return a fresh typed PRNG key."""
        raw = self._key.data
        if isinstance(raw, jax.core.Tracer):   # the key is state of a compiled step
            new, sub = _split(raw)
        else:   # stays concrete even inside a user's jax.jit, so no tracer leaks into the device
            with jax.ensure_compile_time_eval():
                new, sub = _split(raw)
        self._key.data = new
        return jax.random.wrap_key_data(sub)

    def __repr__(self) -> str:
        return f"Device(id={self._id}, {self.jax_device})"

    def __deepcopy__(self, memo) -> "Device":
        return self   # devices are shared by reference, as in SINGA

    def __copy__(self) -> "Device":
        return self


@jax.jit
def _split(raw):
    keys = jax.random.split(jax.random.wrap_key_data(raw))
    return jax.random.key_data(keys[0]), jax.random.key_data(keys[1])


_devices: dict[tuple[str, int], Device] = {}


def _get(platform: str, index: int) -> Device:
    key = (platform, index)
    if key not in _devices:
        check_not_forked()
        jdev = jax.local_devices(backend=platform)[index]   # this process's devices
        _devices[key] = Device(jdev, -1 if platform == "cpu" else index)
    return _devices[key]


def _platform_devices(platform: str) -> list:
    try:
        return jax.local_devices(backend=platform)
    except RuntimeError:
        return []


_default: list = []   # the chosen default Device, once resolved


def get_default_device() -> Device:
    """The device tensors go to when none is given: the host CPU (SINGA's default, id -1)
    unless `set_default_device` or `SINGAX_DEFAULT_DEVICE` chose another."""
    if not _default:
        _default.append(_from_name(os.environ.get("SINGAX_DEFAULT_DEVICE", "cpu"), "SINGAX_DEFAULT_DEVICE"))
    return _default[0]


def set_default_device(dev: "Device | str | None") -> Device:
    """Make `dev` (a Device, or a name such as "gpu", "gpu:1", "cpu") the default device;
    None restores the host CPU. Returns the new default. Tensors made earlier stay where
    they are.

    SINGA: no such function; its default device is always the host CPU.
    """
    if dev is None:
        dev = create_cpu_device()
    elif isinstance(dev, str):
        dev = _from_name(dev, "set_default_device")
    elif not isinstance(dev, Device):
        raise TypeError(f"set_default_device: expected a singax Device, a device name or None, "
                        f"got {type(dev).__name__}")
    _default[:] = [dev]
    return dev


def _from_name(name: str, what: str) -> Device:
    """`cpu`, `gpu`, `cuda`, `tpu`, optionally with `:N`, as a Device."""
    kind, _, index = name.strip().lower().partition(":")
    kind = {"cuda": "gpu"}.get(kind, kind)
    if kind not in ("cpu", "gpu", "tpu") or not (index == "" or index.isdigit()):
        raise ValueError(f"{what}: unknown device {name!r}; expected cpu, gpu, gpu:N, cuda:N, tpu or tpu:N")
    if kind == "cpu":
        return create_cpu_device()
    return _accelerator(kind, int(index or 0))


def create_cpu_device() -> Device:
    """The host CPU device (id -1)."""
    return _get("cpu", 0)


def _accelerator(platform: str, index: int) -> Device:
    found = _platform_devices(platform)
    if index < len(found):
        return _get(platform, index)
    for i, d in enumerate(found):   # a worker that sees only its own GPU (DistOpt's local_rank)
        if getattr(d, "local_hardware_id", None) == index:
            return _get(platform, i)
    available = sorted({d.platform for d in jax.devices()} | {"cpu"})
    what = f"{platform} device {index}"
    if os.environ.get("SINGAX_STRICT_DEVICE") == "1":
        raise ValueError(f"device: no {what} (SINGAX_STRICT_DEVICE=1); available platforms: {', '.join(available)}")
    best = jax.local_devices()[0]
    dev = _get(best.platform, 0)
    if (platform, index) not in _warned:
        _warned.add((platform, index))
        warnings.warn(f"singax: no {what}; running on {best.platform} instead "
                      f"(set SINGAX_STRICT_DEVICE=1 to make this an error)", stacklevel=_caller_level())
    return dev


_warned: set = set()


def _caller_level() -> int:
    """The warnings stacklevel of the first frame outside singax (the user's call)."""
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    return level


def create_cuda_gpu() -> Device:
    """A CUDA GPU (ordinal 0), or the best available XLA device with a warning."""
    return create_cuda_gpu_on(0)


def _device_id(fn: str, device_id: Any) -> int:
    if not is_int(device_id) or device_id < 0:
        raise ValueError(f"{fn}: device_id must be an int >= 0, got {device_id!r}")
    return int(device_id)


def create_cuda_gpu_on(device_id: int) -> Device:
    return _accelerator("gpu", _device_id("create_cuda_gpu_on", device_id))


def create_cuda_gpus(num: int) -> list[Device]:
    return [create_cuda_gpu_on(i) for i in range(_device_id("create_cuda_gpus", num))]


def create_cuda_gpus_on(device_ids) -> list[Device]:
    return [create_cuda_gpu_on(i) for i in device_ids]


def create_tpu_device(device_id: int = 0) -> Device:
    return _accelerator("tpu", _device_id("create_tpu_device", device_id))


def create_opencl_device() -> Device:
    """SINGA's OpenCL device: the best available XLA device here."""
    return _accelerator("opencl", 0)


def get_num_opencl_platforms() -> int:
    return 0


def get_num_opencl_devices() -> int:
    return 0


def get_devices() -> list[Device]:
    """This process's XLA devices of the default backend, as singax Devices."""
    return [_get(d.platform, i) for i, d in enumerate(jax.local_devices())]


def get_num_gpus() -> int:
    return len(_platform_devices("gpu"))


def get_gpu_ids() -> list[int]:
    return list(range(get_num_gpus()))


def get_gpu_mem_size(device_id: int) -> tuple[int, int]:
    """(free, total) bytes of GPU `device_id`, from XLA's memory stats."""
    gpus = _platform_devices("gpu")
    if _device_id("get_gpu_mem_size", device_id) >= len(gpus):
        raise ValueError(f"get_gpu_mem_size: no GPU {device_id} (found {len(gpus)})")
    stats = gpus[device_id].memory_stats() or {}
    total = int(stats.get("bytes_limit", 0))
    return total - int(stats.get("bytes_in_use", 0)), total


def device_query(device_id: int, verbose: bool = False) -> str:
    gpus = _platform_devices("gpu")
    if _device_id("device_query", device_id) >= len(gpus):
        return f"no GPU {device_id}"
    d = gpus[device_id]
    return f"{d.device_kind} (id {d.id})" + (f" {d.memory_stats()}" if verbose else "")


def enable_lazy_alloc(enable: bool) -> None:
    """No-op: XLA allocates buffers itself."""
