"""SINGA's multi-process launchers on CPU: 2 worker processes joined by jax.distributed (gloo).

Each run trains tests/dist/workload.py's MLP on its half of every global batch; the
parameters of both ranks must be bit-identical after every step and equal (to float32
noise) to one process training on the whole batch.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.join(os.path.dirname(__file__), "dist")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
    [ROOT, HERE] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
ENV.pop("XLA_FLAGS", None)


def _single(tmp_path, graph: bool):
    """The reference: one process, whole batch (run here, in a child for a clean JAX)."""
    code = ("import sys, workload; from singax import opt; "
            "workload.train(opt.SGD(lr=0.1, momentum=0.9, weight_decay=1e-4), 0, 1, sys.argv[1], "
            f"{graph})")
    out = tmp_path / "single.npz"
    done = subprocess.run([sys.executable, "-c", code, str(out)], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out)


def _check_ranks(tmp_path, graph: bool):
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    single = _single(tmp_path, graph)
    for r in ranks:
        np.testing.assert_array_equal(r["reduced"], [1.0 + 2.0])   # rank r contributed r + 1
    params = [k for k in single.files if not k.startswith("loss/")]
    assert len(params) == 4 * 4          # 4 parameters after each of 4 steps
    for k in params:
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k], err_msg=k)
        np.testing.assert_allclose(ranks[0][k], single[k], rtol=1e-5, atol=1e-6, err_msg=k)
    return ranks, single


def _losses(npz):
    return [float(npz[f"loss/{s}"].reshape(-1)[0]) for s in range(4)]


@pytest.mark.parametrize("mode", ["graph", "eager"])
def test_nccl_id_workers_from_multiprocessing_train_in_step(tmp_path, mode):
    done = subprocess.run([sys.executable, os.path.join(HERE, "train_multiprocess.py"), str(tmp_path), "2", mode],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks, single = _check_ranks(tmp_path, mode == "graph")
    if mode == "eager":   # each worker reports the loss of its own half, as SINGA's do
        assert _losses(ranks[0]) != _losses(ranks[1])
        np.testing.assert_allclose(np.add(_losses(ranks[0]), _losses(ranks[1])) / 2, _losses(single), rtol=1e-5)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_workers_stay_on_the_host_until_distopt(tmp_path, start):
    """Workers keep JAX on the CPU until DistOpt restores the platforms (no GPU opened early)."""
    env = {k: v for k, v in ENV.items() if k != "JAX_PLATFORMS"}
    done = subprocess.run([sys.executable, os.path.join(HERE, "train_multiprocess.py"), str(tmp_path), "2",
                           "graph", start], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    for r in range(2):
        assert (tmp_path / f"platforms{r}.txt").read_text() == "cpu None"
    if start == "spawn":
        _check_ranks(tmp_path, True)


@pytest.mark.parametrize("launcher", [("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", None),
                                      ("PMI_RANK", "PMI_SIZE", "PMI_KVSNAME")])
def test_mpi_environment_launch_trains_in_step(tmp_path, launcher):
    """Open MPI's variables (ranks share their parent, as under mpiexec's daemon), and
    PMI's with a job name (the coordinator port comes from it)."""
    rank_var, size_var, job_var = launcher
    job = {job_var: f"kvs_{os.getpid()}_{tmp_path.name}"} if job_var else {}
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "train_mpi.py"), str(tmp_path), "graph"],
                              env=dict(ENV, **{rank_var: str(r), size_var: "2"}, **job),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
    _check_ranks(tmp_path, True)


FORK_AFTER_JAX = r'''
import multiprocessing, sys
import jax
from singax import dist, opt
def worker(nccl_id, q):
    try:
        opt.DistOpt(opt.SGD(0.1), nccl_id=nccl_id, local_rank=0, world_size=1)
        q.put("started")
    except RuntimeError as err:
        q.put(str(err))
if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    jax.devices()                      # the parent starts JAX's devices before forking
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=worker, args=(dist.NcclIdHolder(), q))
    p.start()
    print(q.get(timeout=60))
    p.join()
'''


def test_fork_after_the_parent_used_jax_raises_naming_spawn():
    done = subprocess.run([sys.executable, "-c", FORK_AFTER_JAX], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'multiprocessing.set_start_method("spawn")' in done.stdout, done.stdout


LAZY = r'''
import pickle
from jax._src import xla_bridge
import singax
singa = singax.install_as_singa()
from singa import singa_wrap
holder = singa_wrap.NcclIdHolder()
copy = pickle.loads(pickle.dumps(holder))
assert copy.address == holder.address and copy.id == holder.id
assert not xla_bridge.backends_are_initialized()
assert isinstance(singa_wrap.USE_CUDA, bool)        # reading the flag may start JAX
print(holder.address)
'''


def test_nccl_id_holder_and_singa_wrap_start_no_devices():
    done = subprocess.run([sys.executable, "-c", LAZY], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    host, port = done.stdout.strip().rsplit(":", 1)
    assert host == "127.0.0.1" and 0 < int(port) < 65536


def test_distopt_argument_errors():
    from singax import opt
    from singax.dist import NcclIdHolder
    with pytest.raises(TypeError, match="NcclIdHolder"):
        opt.DistOpt(opt.SGD(0.1), nccl_id=b"\x00" * 16, local_rank=0, world_size=2)
    with pytest.raises(ValueError, match="local_rank and world_size"):
        opt.DistOpt(opt.SGD(0.1), nccl_id=NcclIdHolder(), world_size=2)
    with pytest.raises(ValueError, match="outside 0..1"):
        opt.DistOpt(opt.SGD(0.1), nccl_id=NcclIdHolder(), local_rank=2, world_size=2)
    with pytest.raises(ValueError, match="local_rank must be a non-negative int"):
        opt.DistOpt(opt.SGD(0.1), nccl_id=NcclIdHolder(), local_rank=-1, world_size=2)


SINGA_SPAWN_SCRIPT = r'''
import multiprocessing
from singa import singa_wrap, opt, tensor
import numpy as np


def run(local_rank, world_size, nccl_id, q):
    sgd = opt.DistOpt(opt.SGD(lr=0.1), nccl_id=nccl_id, local_rank=local_rank, world_size=world_size)
    t = tensor.from_numpy(np.array([local_rank + 1.0], np.float32))
    sgd.all_reduce(t)
    q.put((sgd.global_rank, sgd.world_size, float(tensor.to_numpy(t)[0])))


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    nccl_id = singa_wrap.NcclIdHolder()
    q = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=run, args=(r, 2, nccl_id, q)) for r in range(2)]
    for w in workers:
        w.start()
    print(sorted(q.get(timeout=60) for _ in workers))
    for w in workers:
        w.join()
'''


def test_singax_run_script_with_spawned_workers_imports_singa_in_them(tmp_path):
    script = tmp_path / "spawn_script.py"
    script.write_text(SINGA_SPAWN_SCRIPT)
    done = subprocess.run([sys.executable, "-m", "singax", "run", str(script)], env=ENV, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[(0, 2, 3.0), (1, 2, 3.0)]"


RESTART = r'''
import numpy as np
from singax import dist, opt, tensor
sgd = opt.SGD(lr=0.5, momentum=0.9)            # starts JAX's devices before DistOpt, as SINGA scripts do
d = opt.DistOpt(sgd, nccl_id=dist.NcclIdHolder(), local_rank=0, world_size=1)
w = tensor.from_numpy(np.array([1.0, -2.0], np.float32))
g = tensor.from_numpy(np.array([0.5, 0.25], np.float32))
d.update(w, g)
d.step()
print(tensor.to_numpy(w).tolist(), tensor.to_numpy(sgd.step_counter).tolist(), d.world_size, d.global_rank)
x = tensor.from_numpy(np.zeros(3, np.float32))
try:
    opt.DistOpt(opt.SGD(0.1), nccl_id=dist.NcclIdHolder(), local_rank=0, world_size=2)
except ValueError as err:
    print("second:", err)
'''

LATE = r'''
import numpy as np
from singax import dist, opt, tensor
x = tensor.from_numpy(np.zeros((2, 3), np.float32))   # a tensor before DistOpt cannot move
sgd = opt.SGD(lr=0.5)
try:
    opt.DistOpt(sgd, nccl_id=dist.NcclIdHolder(), local_rank=0, world_size=1)
except RuntimeError as err:
    print(err)
'''


def test_one_worker_moves_its_optimizer_onto_the_started_runtime():
    done = subprocess.run([sys.executable, "-c", RESTART], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = done.stdout.strip().splitlines()[-2:]
    assert first == f"{[1.0 - 0.5 * 0.5, -2.0 - 0.5 * 0.25]} [1.0] 1 0"
    assert second == "second: DistOpt: this process already runs as process 0 of 1, not 0 of 2"


def test_tensors_created_before_distopt_give_a_clear_error():
    done = subprocess.run([sys.executable, "-c", LATE], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Create the DistOpt right after its optimizer" in done.stdout
    assert "(2, 3)" in done.stdout
