"""Fork safety: JAX cannot run in a child forked after the parent started its devices.

`check_not_forked` turns that into a clear error naming the fix, raised by the
first device lookup in such a child.
"""
from __future__ import annotations

import os
import sys

__all__ = ["backend_started", "check_not_forked", "MSG_FORKED"]

MSG_FORKED = (
    "singax: this process was forked from a parent that had already started JAX's devices "
    "(it created a device, tensor, optimizer or model, or read singa_wrap.USE_CUDA), and JAX "
    "cannot run in such a child. Call multiprocessing.set_start_method(\"spawn\") at the top "
    "of the main script, or create nothing on a device in the parent before starting the workers.")


def backend_started() -> bool:
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False


_inherited_backend = False   # this process was forked from one whose JAX devices were running


def _after_fork_in_child() -> None:
    global _inherited_backend
    _inherited_backend = backend_started()
    device = sys.modules.get("singax.device")
    if _inherited_backend and device is not None:
        device._devices.clear()   # the next device lookup raises MSG_FORKED


def check_not_forked() -> None:
    """Raise the fork error in a child forked from a process with running JAX devices."""
    if _inherited_backend:
        raise RuntimeError(MSG_FORKED)


os.register_at_fork(after_in_child=_after_fork_in_child)
