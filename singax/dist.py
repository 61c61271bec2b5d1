"""Data-parallel training on JAX's own engine: SINGA's `DistOpt` over a device mesh.

singax keeps one global view of the model: parameters and optimizer state are
replicated over a `jax.sharding.Mesh` of every device (all processes' devices
after `init_distributed`), and each batch is sharded along its first axis. In
graph mode the whole step is one SPMD program: XLA inserts the gradient
all-reduce itself. Gradients are therefore always those of the global batch,
which is what SINGA computes with its explicit averaging all-reduce.

One process per host; every process feeds its local part of the batch.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from ._mesh import active_mesh, clear_mesh, use_mesh

__all__ = ["DistOpt", "init_distributed", "active_mesh", "use_mesh", "clear_mesh"]

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


class DistOpt:
    """SINGA's distributed optimizer: data parallelism over every device.

    Args:
      opt: the wrapped singax optimizer (default: `opt.SGD()`).
      nccl_id, buffSize: accepted for SINGA scripts; XLA does the communication.
      local_rank: this process's index on its host (default 0).
      world_size: number of processes; must equal `jax.process_count()` when given.
      devices: the devices to use (default: all devices of all processes).

    `world_size`/`global_rank` count processes (one per host, as SINGA counts
    workers); each process uses all its local devices. Gradients are those of the
    global batch. SINGA: BatchNorm statistics are computed over the global batch
    (synchronised), where SINGA keeps per-worker statistics.
    """

    def __init__(self, opt: Any = None, nccl_id: Any = None, local_rank: int | None = None,
                 world_size: int | None = None, buffSize: int = SINGA_BUFFER_SIZE,
                 devices: Sequence[jax.Device] | None = None):
        from .opt import SGD, Optimizer
        opt = SGD() if opt is None else opt
        if not isinstance(opt, Optimizer):
            raise TypeError(f"DistOpt: expected a singax optimizer to wrap, got {type(opt).__name__}")
        processes = jax.process_count()
        if world_size is not None and int(world_size) != processes:
            raise ValueError(f"DistOpt: world_size={world_size} but JAX runs {processes} process(es); "
                             "start one process per host and call singax.dist.init_distributed() first")
        self.opt = opt
        self.world_size = processes
        self.global_rank = jax.process_index()
        self.local_rank = 0 if local_rank is None else int(local_rank)
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

    # --- collectives (the global view already holds reduced values) -----------
    def all_reduce(self, tensor):
        """Sum over workers. In singax's global view every value is already global, so
        this returns its argument (SINGA: sums each worker's local copy in place)."""
        return tensor

    def fused_all_reduce(self, tensors, send: bool = True):
        return tensors

    def all_reduce_half(self, tensor):
        return tensor

    def fused_all_reduce_half(self, tensors, send: bool = True):
        return tensors

    def sparsification(self, tensor, accumulation, spars: float, topK: bool):
        """Sparsify one gradient as SINGA's sparse all-reduce sends it: keep the top `spars`
        fraction (topK) or the elements with abs >= spars; with an `accumulation` Tensor
        the unsent rest is added to it (error feedback). Returns the sparse gradient
        (already global: the all-reduce is the identity here)."""
        grad = tensor.data if hasattr(tensor, "data") else tensor
        if accumulation is not None:
            grad = grad + accumulation.data
        sent = jnp.where(_sparse_mask(grad, spars, topK), grad, 0)
        if accumulation is not None:
            accumulation.data = grad - sent
        if hasattr(tensor, "data"):
            tensor.data = sent
            return tensor
        return sent

    def fused_sparsification(self, tensors, accumulation, spars: float, topK: bool):
        """`sparsification` of each tensor (`accumulation`: a list of Tensors, or None)."""
        accs = accumulation if accumulation is not None else [None] * len(tensors)
        return [self.sparsification(t, a, spars, topK) for t, a in zip(tensors, accs)]

    def wait(self) -> None:
        """Block until queued device work is done."""
        for d in self.mesh.local_devices:
            jax.device_put(0.0, d).block_until_ready()

    # --- training steps --------------------------------------------------------
    def backward_and_update(self, loss, threshold: int = SINGA_FUSION_THRESHOLD) -> None:
        """Backward, then update every parameter with the global-batch gradient."""
        self.opt.call(loss)
        self.opt.step()

    def backward_and_update_half(self, loss, threshold: int = SINGA_FUSION_THRESHOLD, clipping: bool = False,
                                 clip_Value: float = 100) -> None:
        """As `backward_and_update`, with gradients rounded through float16 (SINGA sends
        them in float16) and optionally clipped to [-clip_Value, clip_Value]."""
        from . import autograd
        pairs = []
        for p, g in autograd.backward(loss):
            if p.data.dtype != jnp.float32:
                raise TypeError(f"DistOpt.backward_and_update_half: parameter {p.name} is "
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
        """Update all pairs at once where the optimizer can (global-norm clipping needs it)."""
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
