"""The data-parallel device mesh and the placement of arrays on it.

`singax.dist` (DistOpt) makes a mesh active; a compiled step (`_compile`) replicates
its state and shards each input's batch axis over the active mesh.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"
_mesh: Mesh | None = None


def use_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Make data parallelism over `devices` (default: all) the active mode."""
    global _mesh
    devs = list(devices) if devices is not None else jax.devices()
    _mesh = Mesh(np.array(devs), (AXIS,))
    return _mesh


def clear_mesh() -> None:
    """Back to single-device execution."""
    global _mesh
    _mesh = None


def active_mesh() -> Mesh | None:
    return _mesh


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(AXIS))


def shard_batch(array: Any, mesh: Mesh, what: str = "input") -> jax.Array:
    """Place one process's part of a batch as the global batch sharded over `mesh`."""
    array = jnp.asarray(array) if not isinstance(array, jax.Array) else array
    if array.ndim == 0:
        return jax.device_put(array, replicated(mesh))
    n_local = len(mesh.local_devices)
    if array.shape[0] % n_local:
        raise ValueError(f"DistOpt: the batch of {what} has {array.shape[0]} rows, which does not divide "
                         f"evenly over {n_local} devices; use a batch size that is a multiple of {n_local}")
    if jax.process_count() == 1:
        return jax.device_put(array, batch_sharded(mesh))
    return jax.make_array_from_process_local_data(batch_sharded(mesh), np.asarray(array))


def batch_sharded_axis(array: Any, mesh: Mesh, axis: int, what: str = "input") -> jax.Array:
    """Shard `axis` (the batch axis of stacked K-step inputs) over the mesh."""
    spec = PartitionSpec(*([None] * axis + [AXIS]))
    if array.ndim <= axis or array.shape[axis] % len(mesh.devices.flat):
        raise ValueError(f"DistOpt: {what} of shape {tuple(array.shape)} cannot be split over "
                         f"{len(mesh.devices.flat)} devices along axis {axis}")
    return jax.device_put(array, NamedSharding(mesh, spec))


def process_local(array: jax.Array) -> jax.Array:
    """This process's view of a step output: the whole value if replicated, else the
    local rows of a batch-sharded one (what each SINGA worker would hold)."""
    if array.is_fully_addressable:
        return array
    if array.sharding.is_fully_replicated:
        return array.addressable_shards[0].data
    shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
    first = shards[0].device
    return jnp.concatenate([jax.device_put(s.data, first) for s in shards], axis=0)


def replicate(array: Any, mesh: Mesh) -> jax.Array:
    sharding = replicated(mesh)
    if isinstance(array, jax.Array) and array.sharding == sharding:
        return array
    if jax.process_count() == 1:
        return jax.device_put(array, sharding)
    return jax.make_array_from_process_local_data(sharding, np.asarray(array))
