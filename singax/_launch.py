"""Start JAX's multi-process runtime the way SINGA's launchers start their workers.

SINGA runs one worker process per device, started either by one parent with
`multiprocessing` (sharing an `NcclIdHolder`) or by `mpiexec`. Each worker here
starts `jax.distributed` with process id = its rank, so the workers form one JAX
job whose devices make up `DistOpt`'s mesh. On CPU hosts the cross-process
collectives run over gloo.
"""
from __future__ import annotations

import hashlib
import importlib.util
import multiprocessing
import multiprocessing.util
import os
import socket
import sys
from typing import Any, Sequence

import jax

from ._fork import backend_started, check_not_forked

__all__ = ["NcclIdHolder", "start_runtime", "mpi_world", "mpi_coordinator"]

MSG_BACKEND_STARTED = (
    "DistOpt: cannot start the {n}-process runtime: JAX already started its devices in this "
    "process, and jax.distributed must start first. ")
MSG_NOT_FORKED = "Create the DistOpt right after its optimizer, before any tensor or model."

# (rank, size, local rank) variables of the MPI launchers: Open MPI, then MPICH/Intel MPI (PMI)
MPI_ENV = (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_LOCAL_SIZE"),
           ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"))
# variables that name one MPI job (the same in all its processes)
MPI_JOB_ENV = ("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "OMPI_MCA_orte_hnp_uri", "PMI_KVSNAME")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class NcclIdHolder:
    """SINGA's shared NCCL id; here it carries the address of the workers' coordinator.

    Create it in the parent before starting the workers: it picks a free TCP port on
    `host` and touches no device, so forking afterwards is safe. It pickles, so it
    can be passed to `multiprocessing.Process` under fork, spawn or forkserver.
    """

    def __init__(self, host: str = "127.0.0.1"):
        self.id = os.urandom(16)
        self.address = f"{host}:{_free_port(host)}"
        multiprocessing.util.register_after_fork(self, NcclIdHolder._in_forked_child)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if getattr(multiprocessing.current_process(), "_inheriting", False):   # a spawned worker
            _host_only_until_runtime()

    def _in_forked_child(self) -> None:
        process = multiprocessing.current_process()
        if any(a is self for a in (*getattr(process, "_args", ()), *getattr(process, "_kwargs", {}).values())):
            _host_only_until_runtime()

    def __repr__(self) -> str:
        return f"NcclIdHolder(address={self.address!r})"


_platforms_before_runtime: list = []   # the jax_platforms a worker restores when its runtime starts


def _host_only_until_runtime() -> None:
    """In a worker before DistOpt: keep JAX on the CPU, so that objects created first
    (SINGA scripts build the optimizer before DistOpt) do not open every GPU of the
    host in every worker. `start_runtime` restores the platforms."""
    if backend_started() or _platforms_before_runtime:
        return
    _platforms_before_runtime.append(jax.config.jax_platforms)
    jax.config.update("jax_platforms", "cpu")


def start_runtime(coordinator: str, world_size: Any, rank: Any, local_rank: Any,
                  keep: Sequence[Any] = ()) -> None:
    """Start `jax.distributed` for process `rank` of `world_size` (idempotent for the same job).

    `local_rank` picks this process's GPU (`local_device_ids=[local_rank]`); CPU hosts
    use gloo for the collectives. If this process already started JAX's devices
    itself (SINGA scripts create the optimizer first), they are restarted and the
    Tensors in `keep` move onto the new devices; any other live array is an error.
    """
    for what, value in (("world_size", world_size), ("local_rank", local_rank), ("rank", rank)):
        if isinstance(value, bool) or not hasattr(value, "__index__") or value < 0:
            raise ValueError(f"DistOpt: {what} must be a non-negative int, got {value!r}")
    world_size, rank, local_rank = int(world_size), int(rank), int(local_rank)
    if world_size < 1 or rank >= world_size:
        raise ValueError(f"DistOpt: rank {rank} is outside 0..{world_size - 1} (world_size={world_size})")
    if jax.distributed.is_initialized():
        if (jax.process_count(), jax.process_index()) != (world_size, rank):
            raise ValueError(f"DistOpt: this process already runs as process {jax.process_index()} of "
                             f"{jax.process_count()}, not {rank} of {world_size}")
        return
    check_not_forked()
    saved = _stop_devices(keep, world_size) if backend_started() else []
    if _platforms_before_runtime:
        jax.config.update("jax_platforms", _platforms_before_runtime.pop())
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes=world_size, process_id=rank,
                               local_device_ids=[local_rank])
    for t, value, platform in saved:
        from . import device
        dev = device.get_default_device() if platform == "cpu" else device._get(platform, 0)
        t.device = dev
        t.data = jax.device_put(value, dev.jax_device)


def _stop_devices(keep: Sequence[Any], world_size: int) -> list:
    """Copy `keep` to the host and shut JAX's devices down, so that they can restart."""
    import numpy as np
    from jax._src import api
    from . import device
    mine = {id(t.data) for t in keep}
    mine |= {id(d._key.data) for d in device._devices.values()}
    stray = [a for a in jax.live_arrays() if id(a) not in mine]
    if stray:
        raise RuntimeError(MSG_BACKEND_STARTED.format(n=world_size) + MSG_NOT_FORKED
                           + f" ({len(stray)} array(s) of shapes {[a.shape for a in stray[:4]]} "
                           "already exist on a device)")
    saved = [(t, np.asarray(t.data), t.device.platform) for t in keep]
    device._devices.clear()
    api.clear_backends()
    return saved


def mpi_world() -> tuple[int, int, int, int | None] | None:
    """(rank, size, local rank, processes on this host) of an MPI launch, or None.

    Read from the launcher's environment variables (Open MPI, PMI); otherwise from
    mpi4py's COMM_WORLD when the script has imported mpi4py.
    """
    env = os.environ
    for rank, size, local, local_size in MPI_ENV:
        if rank in env and size in env:
            r = int(env[rank])
            return (r, int(env[size]), int(env.get(local, r)),
                    int(env[local_size]) if local_size in env else None)
    if "mpi4py" in sys.modules:
        comm = _mpi4py_comm()
        if comm is not None:
            return comm.Get_rank(), comm.Get_size(), comm.Get_rank(), None
    return None


def _mpi4py_comm():
    if "mpi4py" not in sys.modules and importlib.util.find_spec("mpi4py") is None:
        return None
    from mpi4py import MPI
    return MPI.COMM_WORLD


def mpi_coordinator(rank: int, size: int, local_size: int | None) -> str:
    """The coordinator address all processes of this MPI job agree on.

    `SINGAX_COORDINATOR` (host:port) when set; else rank 0's host and a free port,
    broadcast with mpi4py when it is installed; else (all ranks on one host) a
    local port derived from the job's identity: the launcher's job id variables,
    or else the parent process (the launcher's daemon) shared by all ranks.
    """
    if os.environ.get("SINGAX_COORDINATOR"):
        return os.environ["SINGAX_COORDINATOR"]
    comm = _mpi4py_comm()
    if comm is not None:
        host = socket.gethostname()
        return comm.bcast(f"{host}:{_free_port('')}" if rank == 0 else None, root=0)
    if local_size is not None and local_size != size:
        raise RuntimeError(f"DistOpt: this MPI job spans several hosts ({local_size} of {size} processes "
                           "here); set SINGAX_COORDINATOR=<rank 0 host>:<free port> for every process, "
                           "or install mpi4py")
    job = [os.environ[k] for k in MPI_JOB_ENV if os.environ.get(k)] or [f"ppid {os.getppid()}"]
    digest = int(hashlib.sha256("|".join(job).encode()).hexdigest(), 16)
    return f"127.0.0.1:{20000 + digest % 30000}"
