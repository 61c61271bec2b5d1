"""One worker of an MPI-style launch: `DistOpt(sgd)` learns its rank from the launcher.

Usage (per process, with OMPI_COMM_WORLD_RANK/SIZE or PMI_RANK/SIZE set, as
`mpiexec -np N` sets them): python train_mpi.py OUT_DIR {graph|eager}
"""
import os
import sys

from singax import opt

import workload

if __name__ == "__main__":
    out_dir, mode = sys.argv[1], sys.argv[2]
    sgd = opt.DistOpt(opt.SGD(lr=0.1, momentum=0.9, weight_decay=1e-4))
    workload.train(sgd, sgd.global_rank, sgd.world_size,
                   os.path.join(out_dir, f"rank{sgd.global_rank}.npz"), mode == "graph")
