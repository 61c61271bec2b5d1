"""One process per worker, started from one parent, as SINGA's train_multiprocess.py does.

Usage: python train_multiprocess.py OUT_DIR WORLD_SIZE {graph|eager} [fork|spawn]
Each worker writes OUT_DIR/rank<R>.npz (see workload.py).
"""
import multiprocessing
import os
import sys

import jax

from singax import dist, opt

import workload


def run(out_dir: str, local_rank: int, world_size: int, nccl_id, graph: bool) -> None:
    before = jax.config.jax_platforms        # the platforms a worker uses until DistOpt starts
    sgd = opt.SGD(lr=0.1, momentum=0.9, weight_decay=1e-4)
    sgd = opt.DistOpt(sgd, nccl_id=nccl_id, local_rank=local_rank, world_size=world_size)
    with open(os.path.join(out_dir, f"platforms{local_rank}.txt"), "w") as f:
        f.write(f"{before} {jax.config.jax_platforms}")
    assert (sgd.global_rank, sgd.local_rank, sgd.world_size) == (local_rank, local_rank, world_size)
    workload.train(sgd, sgd.global_rank, sgd.world_size, os.path.join(out_dir, f"rank{local_rank}.npz"), graph)


if __name__ == "__main__":
    out_dir, world_size, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if len(sys.argv) > 4:
        multiprocessing.set_start_method(sys.argv[4])
    nccl_id = dist.NcclIdHolder()
    workers = [multiprocessing.Process(target=run, args=(out_dir, r, world_size, nccl_id, mode == "graph"))
               for r in range(world_size)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sys.exit(max(abs(w.exitcode) for w in workers))
