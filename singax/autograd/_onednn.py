"""Optional oneDNN convolutions for CPU programs (the `cpu-fast` extra).

With the oneDNN wheels of `pip install -e '.[cpu-fast]'` and a C++ compiler, the first
float32 convolution builds `_onednn_conv.cc` into a shared library in the user cache
(`$XDG_CACHE_HOME/singax`, else `~/.cache/singax`; one file per source, jaxlib and oneDNN),
registers its three XLA FFI targets (forward, input gradient, weight gradient) and CPU
programs call them instead of XLA:CPU's convolutions (under a multi-device mesh, each device
on its part of the batch). Without the wheels or the compiler, or with
`SINGAX_CPU_KERNELS=xla`, nothing changes: every convolution is XLA's. Nothing here raises:
a failed build leaves the reason in `status()`. A cache directory or library that another
user owns or could write is never loaded from.

    python -c "from singax.autograd import _onednn; print(_onednn.status())"   # which, and why
"""
from __future__ import annotations

import ctypes
import functools
import glob
import hashlib
import os
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
from typing import Callable

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec

from .. import _mesh

ENV = "SINGAX_CPU_KERNELS"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_onednn_conv.cc")
TARGETS = {"forward": "SingaxConvForward", "input_grad": "SingaxConvInputGrad",
           "weight_grad": "SingaxConvWeightGrad"}

_lock = threading.Lock()
_active: bool | None = None   # None until the first convolution asks
_reason = "not tried yet"
_sharded_call: Callable | None = None   # set by `_load`


def status() -> tuple[str, str]:
    """("onednn" or "xla", why) for float32 CPU convolutions; builds the kernels if needed."""
    return ("onednn" if available() else "xla"), _reason


def available() -> bool:
    """Whether the oneDNN kernels are built and registered (the first call tries once)."""
    global _active, _reason
    if _active is None:
        with _lock:
            if _active is None:
                try:
                    _reason = _load()
                    _active = True
                except Exception as err:  # a missing wheel or compiler must never break singax
                    _reason = f"{type(err).__name__}: {err}"
                    _active = False
    return _active


def _find_onednn() -> tuple[str, str]:
    """(include dir, lib dir) of the oneDNN wheels in this environment's data prefixes."""
    prefixes = [sysconfig.get_paths()["data"], sys.prefix, sys.base_prefix, site.getuserbase()]
    for prefix in dict.fromkeys(prefixes):
        include, lib = os.path.join(prefix, "include"), os.path.join(prefix, "lib")
        if (os.path.exists(os.path.join(include, "oneapi", "dnnl", "dnnl.hpp"))
                and glob.glob(os.path.join(lib, "libdnnl.so*"))):
            return include, lib
    raise FileNotFoundError("oneDNN headers and libdnnl.so not found under "
                            f"{', '.join(dict.fromkeys(prefixes))}; install singax[cpu-fast]")


def _cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "singax")


def _private(path: str) -> None:
    """Refuse a cache directory or library that another user could have written."""
    st = os.stat(path)
    if (hasattr(os, "getuid") and st.st_uid != os.getuid()) or st.st_mode & 0o022:
        raise PermissionError(f"{path} is not owned by this user or is writable by others; "
                              "not loading code from it (fix its permissions or set XDG_CACHE_HOME)")


def _load() -> str:
    """Build the library if the cache lacks it, load it and register the FFI targets."""
    if os.environ.get(ENV, "").lower() == "xla":
        raise RuntimeError(f"turned off by {ENV}=xla")
    include, lib = _find_onednn()
    compiler = shlex.split(os.environ.get("CXX", "g++")) or ["g++"]
    if shutil.which(compiler[0]) is None:
        raise FileNotFoundError(f"C++ compiler {compiler[0]!r} not found (set CXX)")
    with open(SOURCE, "rb") as f:
        source = f.read()
    libdnnl = os.path.realpath(sorted(glob.glob(os.path.join(lib, "libdnnl.so*")))[0])
    key = hashlib.sha256(b"\0".join([source, jax.__version__.encode(), jaxlib.__version__.encode(),
                                     libdnnl.encode(), " ".join(compiler).encode()])).hexdigest()[:16]
    path = os.path.join(_cache_dir(), f"onednn_conv-{key}.so")
    os.makedirs(_cache_dir(), mode=0o700, exist_ok=True)
    _private(_cache_dir())
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=_cache_dir())
        os.close(fd)
        cmd = [*compiler, "-O3", "-shared", "-fPIC", "-std=c++17", "-w", "-I", jax.ffi.include_dir(),
               "-I", include, SOURCE, "-L", lib, "-ldnnl", f"-Wl,-rpath,{lib}", "-o", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)   # atomic: concurrent processes never load a partial file
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    _private(path)
    global _sharded_call
    _sharded_call = _make_sharded_call()
    library = ctypes.cdll.LoadLibrary(path)
    for symbol in TARGETS.values():
        jax.ffi.register_ffi_target(symbol, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    return f"loaded {path}"


def handles(x, W, group: int) -> bool:
    """Whether a convolution of `x` with `W` goes to oneDNN on CPU (float32, one group, no
    empty input; under a multi-device mesh, a batch that splits evenly over it)."""
    mesh = _mesh.active_mesh()
    return (group == 1 and x.dtype == np.float32 and W.dtype == np.float32 and x.ndim == 4
            and min(x.shape) > 0 and (mesh is None or x.shape[0] % mesh.devices.size == 0)
            and available())


def _out_size(size: int, kernel: int, stride: int, pads: tuple[int, int], dilation: int) -> int:
    return (size + pads[0] + pads[1] - dilation * (kernel - 1) - 1) // stride + 1


def _call(a, b, kind: str, geometry, spatial):
    """One FFI call; `spatial` is the result's (H, W) for the gradients (None: forward)."""
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = geometry
    if kind == "forward":
        shape = (a.shape[0], b.shape[0], _out_size(a.shape[2], b.shape[2], sh, (pt, pb), dh),
                 _out_size(a.shape[3], b.shape[3], sw, (pl, pr), dw))
    else:   # (dy, W) -> dx or (x, dy) -> dW
        shape = ((a.shape[0], b.shape[1]) if kind == "input_grad" else (b.shape[1], a.shape[1])) + spatial
    return jax.ffi.ffi_call(TARGETS[kind], jax.ShapeDtypeStruct(shape, jnp.float32),
                            vmap_method="sequential")(
        a, b, stride_h=sh, stride_w=sw, pad_top=pt, pad_bottom=pb, pad_left=pl, pad_right=pr,
        dilation_h=dh, dilation_w=dw)


# Under a multi-device mesh each device calls oneDNN on its part of the batch: x, dy, y and
# dx are split along the batch, W is replicated, and dW is summed over the devices.
_RULES = {"forward": "n c h w, o c k l -> n o y z", "input_grad": "n o y z, o c k l -> n c h w",
          "weight_grad": "n c h w, n o y z -> o c k l"}


def _shardings(kind: str, mesh):
    batch, whole = NamedSharding(mesh, PartitionSpec(_mesh.AXIS)), NamedSharding(mesh, PartitionSpec())
    return (batch, batch if kind == "weight_grad" else whole), (whole if kind == "weight_grad" else batch)


def _partition(kind, geometry, spatial, mesh, _context_mesh, arg_shapes, result_shape):
    def per_device(a, b):
        out = _call(a, b, kind, geometry, spatial)
        return lax.psum(out, _mesh.AXIS) if kind == "weight_grad" else out
    args, result = _shardings(kind, mesh)
    return mesh, per_device, result, args


def _sharding_rule(kind, geometry, spatial, mesh, _context_mesh, operand_types, result_types):
    factors = _RULES[kind].replace(",", " ").replace("->", " ").split()
    return _RULES[kind], dict(reduction_factors=("n",) if kind == "weight_grad" else (),
                              need_replication_factors=tuple(dict.fromkeys(f for f in factors if f != "n")))


def _make_sharded_call() -> Callable:
    """`_call` split over a mesh: `(a, b, kind, geometry, spatial, mesh)`."""
    call = custom_partitioning(lambda a, b, kind, geometry, spatial, mesh: _call(a, b, kind, geometry, spatial),
                               static_argnums=(2, 3, 4, 5))
    call.def_partition(
        _partition, sharding_rule=_sharding_rule,
        infer_sharding_from_operands=lambda kind, geometry, spatial, mesh, *_: _shardings(kind, mesh)[1])
    return call


def _dispatch(a, b, kind: str, geometry, spatial=None):
    mesh = _mesh.active_mesh()
    if mesh is None or mesh.devices.size == 1:
        return _call(a, b, kind, geometry, spatial)
    return _sharded_call(a, b, kind, geometry, spatial, mesh)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x, W, geometry):
    """NCHW/OIHW float32 cross-correlation; `geometry` = (strides, ((top, bottom), (left,
    right)) padding, dilation), hashable. Only in programs lowered for CPU."""
    return _dispatch(x, W, "forward", geometry)


def _conv2d_fwd(x, W, geometry):
    return conv2d(x, W, geometry), (x, W)


def _conv2d_bwd(geometry, residuals, dy):
    x, W = residuals
    return (_dispatch(dy, W, "input_grad", geometry, x.shape[2:]),
            _dispatch(x, dy, "weight_grad", geometry, W.shape[2:]))


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)
