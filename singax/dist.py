"""Data-parallel training on JAX's own engine: SINGA's `DistOpt` over a device mesh.

singax keeps one global view of the model: parameters and optimizer state are
replicated over a `jax.sharding.Mesh` of every device (all processes' devices
after `init_distributed`), and each batch is sharded along its first axis. In
graph mode the whole step is one SPMD program: XLA inserts the gradient
all-reduce itself. Gradients are the average of the workers' gradients, as
SINGA's averaging all-reduce gives; BatchNorm normalises each worker's part of the
batch with that part's own statistics (see `autograd.nn._bn_train`).

Every process feeds its local part of the batch: one process per host using all
its devices, or one process per device as SINGA's launchers start them
(`NcclIdHolder` with `multiprocessing`, or `mpiexec`; see `singax._launch`).
"""
from __future__ import annotations

import gc
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._handle import Handle
from ._launch import NcclIdHolder, mpi_coordinator, mpi_world, start_runtime
from ._mesh import active_mesh, clear_mesh, use_mesh
from ._messages import TypeAssertionError

__all__ = ["DistOpt", "NcclIdHolder", "init_distributed", "active_mesh", "use_mesh", "clear_mesh"]

# SINGA's defaults for its communication buffer and fusion threshold (elements); accepted
# and ignored, since XLA fuses and schedules the all-reduce itself
SINGA_BUFFER_SIZE = 4194304
SINGA_FUSION_THRESHOLD = 2097152


def init_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, local_device_ids: Sequence[int] | None = None) -> None:
    """Start multi-host JAX (`jax.distributed.initialize`), one process per host.

    Arguments default to the environment variables `SINGAX_COORDINATOR`
    (host:port), `SINGAX_NUM_PROCESSES` and `SINGAX_PROCESS_ID`; with none of them
    set, JAX's own cluster detection (SLURM, Open MPI, TPU pods) is used.
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("SINGAX_COORDINATOR")
    if num_processes is None and "SINGAX_NUM_PROCESSES" in env:
        num_processes = int(env["SINGAX_NUM_PROCESSES"])
    if process_id is None and "SINGAX_PROCESS_ID" in env:
        process_id = int(env["SINGAX_PROCESS_ID"])
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"init_distributed: process id {process_id} is outside 0..{num_processes - 1}")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, local_device_ids=local_device_ids)


def _tensors_of(opt: Any) -> list:
    """The Tensors an optimizer holds directly or in its lists, tuples and dicts."""
    from .tensor import Tensor
    found: dict = {}
    for value in vars(opt).values():
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            for t in item if isinstance(item, tuple) else (item,):
                if isinstance(t, Tensor):
                    found[id(t)] = t
    return list(found.values())


def _start_workers(nccl_id: Any, local_rank: Any, world_size: Any, keep: list) -> int:
    """Start the multi-process runtime that SINGA's launchers imply; return the local rank.

    With `nccl_id` (a `NcclIdHolder` from the parent): process `local_rank` of
    `world_size` on this host. Under an MPI launcher: the MPI rank and size.
    """
    if nccl_id is not None:
        address = getattr(nccl_id, "address", None)
        if not isinstance(address, str):
            raise TypeError("DistOpt: nccl_id must be the singa_wrap.NcclIdHolder() created in the parent "
                            f"process before starting the workers, got {type(nccl_id).__name__}")
        if local_rank is None or world_size is None:
            raise ValueError("DistOpt: with nccl_id, also pass local_rank and world_size")
        start_runtime(address, world_size, local_rank, local_rank, keep)
        return int(local_rank)
    world = mpi_world()
    if world is None:
        return 0 if local_rank is None else int(local_rank)
    rank, size, local, local_size = world
    if size > 1 and not jax.distributed.is_initialized():
        start_runtime(mpi_coordinator(rank, size, local_size), size, rank, local, keep)
    return local if local_rank is None else int(local_rank)


_REDUCERS: dict = {}


def _across_processes(arrays: list, mean: bool) -> list:
    """Sum (or average) each process-local array over all processes: SINGA's all-reduce,
    run eagerly. Every process must call it with arrays of the same shapes, in the same order."""
    firsts: dict = {}
    for d in jax.devices():
        firsts.setdefault(d.process_index, d)
    devs = [firsts[p] for p in sorted(firsts)]
    key = (tuple(devs), mean)
    if key not in _REDUCERS:
        mesh = Mesh(np.array(devs), ("proc",))
        reduce = (lambda x: jnp.mean(x, axis=0)) if mean else (lambda x: jnp.sum(x, axis=0))
        _REDUCERS[key] = (mesh, jax.jit(lambda xs: [reduce(x) for x in xs],
                                        out_shardings=NamedSharding(mesh, PartitionSpec())))
    mesh, reducer = _REDUCERS[key]
    mine = devs[jax.process_index()]
    stacked = NamedSharding(mesh, PartitionSpec("proc"))
    inputs = [jax.make_array_from_single_device_arrays((len(devs),) + a.shape, stacked,
                                                       [jax.device_put(a[None], mine)]) for a in arrays]
    return [jax.device_put(r.addressable_shards[0].data, next(iter(a.devices())))
            for r, a in zip(reducer(inputs), arrays)]


def _eager_multiprocess(array: Any) -> bool:
    """True where values are this process's own (eager, several processes); inside a
    compiled step every value is already global."""
    return jax.process_count() > 1 and not isinstance(array, jax.core.Tracer)


def _owner(array: Any) -> Any:
    """The Tensor whose data is `array`, or the array itself. SINGA scripts reduce
    `t.data` (a device buffer there) in place; a jax array is immutable, so the
    all-reduce writes its result into the Tensor holding it instead."""
    for ref in gc.get_referrers(array):
        if isinstance(ref, dict) and ref.get("_data") is array:
            for owner in gc.get_referrers(ref):
                if isinstance(owner, Handle) and owner.__dict__ is ref:
                    return owner
    return array


def _sum_over_workers(tensors: list, half: bool) -> list:
    """Sum Tensors (in place) or arrays over processes; optionally sent in float16."""
    arrays = [t.data if isinstance(t, Handle) else t for t in tensors]
    if not arrays or not _eager_multiprocess(arrays[0]):
        return tensors
    sent = [jnp.asarray(a, jnp.float16) for a in arrays] if half else [jnp.asarray(a) for a in arrays]
    summed = [s.astype(a.dtype) for s, a in zip(_across_processes(sent, mean=False), arrays)]
    for t, a in zip(tensors, summed):
        owner = t if isinstance(t, Handle) else _owner(t)
        if isinstance(owner, Handle):
            owner.data = a
    return [t if isinstance(t, Handle) else a for t, a in zip(tensors, summed)]


def _array_of(t: Any):
    return t.data if isinstance(t, Handle) else jnp.asarray(t)


def _writable(buffer: Any, what: str) -> Handle:
    """The Tensor to update in place: `buffer` itself, or the Tensor holding the raw array."""
    owner = buffer if isinstance(buffer, Handle) else _owner(buffer)
    if not isinstance(owner, Handle):
        raise TypeError(f"DistOpt.sparsification: the {what} must be a Tensor or a Tensor's .data "
                        f"(it is updated in place), got {type(buffer).__name__}")
    return owner


class DistOpt:
    """SINGA's distributed optimizer: data parallelism over every device.

    Args:
      opt: the wrapped singax optimizer (default: `opt.SGD()`).
      nccl_id: the `NcclIdHolder` the parent created; with it this process starts
        `jax.distributed` as worker `local_rank` of `world_size` (SINGA's
        multiprocessing launcher). Without it, an MPI launch (Open MPI or PMI
        environment variables, or an imported mpi4py) starts it from the MPI rank.
      local_rank: this process's index on its host (default 0, or the MPI local rank).
      world_size: number of worker processes.
      buffSize: accepted for SINGA scripts; XLA does the communication.
      devices: the devices to use (default: all devices of all processes).

    `world_size`/`global_rank` count processes. Gradients are the average of the
    workers': XLA's all-reduce inside a compiled step, an explicit average over
    processes in eager mode. BatchNorm normalises each worker's batch with its own
    statistics in both modes, as SINGA does. SINGA: each worker keeps its own running
    statistics; a compiled step keeps them replicated (the workers' average).
    """

    def __init__(self, opt: Any = None, nccl_id: Any = None, local_rank: int | None = None,
                 world_size: int | None = None, buffSize: int = SINGA_BUFFER_SIZE,
                 devices: Sequence[jax.Device] | None = None):
        from .opt import SGD, Optimizer
        opt = SGD() if opt is None else opt
        if not isinstance(opt, Optimizer):
            raise TypeError(f"DistOpt: expected a singax optimizer to wrap, got {type(opt).__name__}")
        local_rank = _start_workers(nccl_id, local_rank, world_size, _tensors_of(opt))
        processes = jax.process_count()
        if world_size is not None and int(world_size) != processes:
            raise ValueError(f"DistOpt: world_size={world_size} but JAX runs {processes} process(es); "
                             "pass nccl_id=NcclIdHolder() from the parent, launch with mpiexec, or "
                             "call singax.dist.init_distributed() first")
        self.opt = opt
        self.world_size = processes
        self.global_rank = jax.process_index()
        self.local_rank = local_rank
        self.communicator = None
        self.buffSize = buffSize
        self.mesh = use_mesh(devices)
        self.gradAccumulation: dict = {}
        self.partial = 0

    # --- the wrapped optimizer's interface -----------------------------------
    def __getattr__(self, name: str):
        if name == "opt":
            raise AttributeError(name)
        return getattr(self.opt, name)

    def __call__(self, loss):
        return self.backward_and_update(loss)

    def update(self, param, grad) -> None:
        """Apply a (global) gradient with the wrapped optimizer."""
        self.opt.apply(param.name, param, grad)

    def step(self) -> None:
        self.opt.step()

    # --- collectives ------------------------------------------------------------
    def all_reduce(self, tensor):
        """Sum over worker processes, in place (as SINGA does): a Tensor, or the Tensor
        holding a raw array (scripts pass `t.data`); the sum is also returned. Inside a
        compiled step and in one process every value is already global, so the
        argument comes back as it is."""
        return self.fused_all_reduce([tensor])[0]

    def fused_all_reduce(self, tensors, send: bool = True):
        """`all_reduce` of each Tensor (or array) in `tensors`, in one collective."""
        return _sum_over_workers(list(tensors), half=False)

    def all_reduce_half(self, tensor):
        return self.fused_all_reduce_half([tensor])[0]

    def fused_all_reduce_half(self, tensors, send: bool = True):
        """`fused_all_reduce` with the values sent in float16, as SINGA sends them."""
        return _sum_over_workers(list(tensors), half=True)

    def sparsification(self, tensor, accumulation, spars: float, topK: bool):
        """Sparsify one gradient as SINGA's sparse all-reduce sends it: keep the top `spars`
        fraction (topK) or the elements with abs >= spars; with an `accumulation` the unsent
        rest is added to it (error feedback). `tensor` and `accumulation` are Tensors or the
        raw arrays of Tensors (`t.data`, as SINGA scripts pass them); both are updated in
        place, and `accumulation` may be flat. Returns the sparse gradient (a Tensor for a
        Tensor; already global: the all-reduce is the identity here)."""
        return self.fused_sparsification([tensor], accumulation, spars, topK)[0]

    def fused_sparsification(self, tensors, accumulation, spars: float, topK: bool):
        """`sparsification` over the concatenation of `tensors`, as SINGA fuses them;
        `accumulation` is None, one flat buffer of their total size (SINGA's form), or a
        list with one buffer per tensor."""
        tensors = list(tensors)
        flat = jnp.concatenate([_array_of(t).reshape(-1) for t in tensors])
        buffers = [] if accumulation is None else (
            list(accumulation) if isinstance(accumulation, (list, tuple)) else [accumulation])
        owners = [_writable(b, "accumulation") for b in buffers]
        sizes = [int(np.prod(o.data.shape)) for o in owners]
        if owners and (sum(sizes) != flat.size or (len(owners) > 1 and len(owners) != len(tensors))):
            raise ValueError(f"DistOpt.sparsification: accumulation sizes {sizes} do not match the "
                             f"gradients' {[int(np.prod(_array_of(t).shape)) for t in tensors]}")
        if owners:
            flat = flat + jnp.concatenate([o.data.reshape(-1) for o in owners]).astype(flat.dtype)
        sent = jnp.where(_sparse_mask(flat, spars, topK), flat, 0)
        rest, offset = flat - sent, 0
        for o, n in zip(owners, sizes):
            o.data = rest[offset:offset + n].reshape(o.data.shape).astype(o.data.dtype)
            offset += n
        out, offset = [], 0
        for t in tensors:
            a = _array_of(t)
            part = sent[offset:offset + a.size].reshape(a.shape).astype(a.dtype)
            offset += a.size
            owner = t if isinstance(t, Handle) else _owner(t)
            if isinstance(owner, Handle):
                owner.data = part
            out.append(t if isinstance(t, Handle) else part)
        return out

    def wait(self) -> None:
        """Block until queued device work is done."""
        for d in self.mesh.local_devices:
            jax.device_put(0.0, d).block_until_ready()

    # --- training steps --------------------------------------------------------
    def backward_and_update(self, loss, threshold: int = SINGA_FUSION_THRESHOLD) -> None:
        """Backward, then update every parameter with the gradient averaged over workers."""
        self.opt._require_loss(loss)
        if _eager_multiprocess(loss.data):
            from . import autograd
            self._apply(list(autograd.backward(loss)))
            return
        self.opt(loss)

    def backward_and_update_half(self, loss, threshold: int = SINGA_FUSION_THRESHOLD, clipping: bool = False,
                                 clip_Value: float = 100) -> None:
        """As `backward_and_update`, with gradients rounded through float16 (SINGA sends
        them in float16) and optionally clipped to [-clip_Value, clip_Value]."""
        from . import autograd
        self.opt._require_loss(loss)
        pairs = []
        for p, g in autograd.backward(loss):
            if p.data.dtype != jnp.float32:
                raise TypeAssertionError(f"DistOpt.backward_and_update_half: parameter {p.name} is "
                                         f"{p.data.dtype}; it needs float32 parameters")
            h = g.data.astype(jnp.float16)
            if clipping:
                h = jnp.clip(h, -clip_Value, clip_Value)
            g.data = h.astype(jnp.float32)
            pairs.append((p, g))
        self._apply(pairs)

    def backward_and_partial_update(self, loss, threshold: int = SINGA_FUSION_THRESHOLD) -> None:
        """SINGA applies local gradients and averages one slice of the parameters per
        call. With global gradients every replica is identical, so averaging a slice
        changes nothing: this equals `backward_and_update` (the cycling slice index
        `partial` still advances, as in SINGA)."""
        self.backward_and_update(loss, threshold)
        self.partial += 1

    def backward_and_sparse_update(self, loss, threshold: int = SINGA_FUSION_THRESHOLD, spars: float = 0.05,
                                   topK: bool = False, corr: bool = True) -> None:
        """Update with a sparsified gradient, as SINGA's sparse all-reduce does.

        topK=True keeps the `spars` fraction of elements with the largest magnitude;
        otherwise elements with abs(g) >= spars. With `corr`, the unsent remainder is
        accumulated per parameter and added to the next gradient (error feedback).
        """
        from . import autograd
        from .tensor import Tensor
        self.opt._require_loss(loss)
        pairs = []
        for p, g in autograd.backward(loss):
            grad = g.data
            if corr:
                acc = self.gradAccumulation.get(id(p))
                if acc is None:
                    with jax.ensure_compile_time_eval():
                        zeros = jnp.zeros(p.shape, grad.dtype)
                    acc = self.gradAccumulation[id(p)] = Tensor(data=zeros, requires_grad=False,
                                                                name=f"{p.name}.residual")
                grad = grad + acc.data
            keep = _sparse_mask(grad, spars, topK)
            sent = jnp.where(keep, grad, 0)
            if corr:
                acc.data = grad - sent
            g.data = sent
            pairs.append((p, g))
        self._apply(pairs)

    def _apply(self, pairs: list) -> None:
        """Average eager gradients over processes, then update all pairs at once where the
        optimizer can (global-norm clipping needs it)."""
        if pairs and _eager_multiprocess(pairs[0][1].data):
            for (_, g), mean in zip(pairs, _across_processes([g.data for _, g in pairs], mean=True)):
                g.data = mean
        apply_all = getattr(self.opt, "_apply_all", None)
        if apply_all is not None:
            apply_all([(p.name, p, g) for p, g in pairs])
        else:
            for p, g in pairs:
                self.update(p, g)
        self.opt.step()


def _sparse_mask(grad, spars: float, topK: bool):
    magnitude = jnp.abs(grad)
    if not topK:
        return magnitude >= spars
    k = max(1, int(round(spars * grad.size)))
    kth = jax.lax.top_k(magnitude.reshape(-1), k)[0][-1]
    return magnitude >= kth
