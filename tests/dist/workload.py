"""The training job the multi-process tests run: a small MLP on a fixed global batch.

`train(sgd, rank, world_size, out, graph)` trains on rank `rank`'s rows of each
global batch and saves the parameters after every step to `out` (an .npz file).
"""
import numpy as np

from singax import device, tensor

from train import MLP

STEPS, BATCH, FEATURES, CLASSES = 4, 16, 8, 4   # MLP: 8 -> 16 -> 4


def data():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((STEPS, BATCH, FEATURES)).astype(np.float32)
    ys = rng.integers(0, CLASSES, (STEPS, BATCH)).astype(np.int32)
    return xs, ys


def train(sgd, rank: int, world_size: int, out: str, graph: bool) -> None:
    dev = device.get_default_device()
    dev.SetRandSeed(0)
    net = MLP()
    net.optimizer = sgd
    per = BATCH // world_size
    tx = tensor.Tensor((per, FEATURES), dev)
    ty = tensor.Tensor((per,), dev, tensor.int32)
    net.compile([tx], is_train=True, use_graph=graph, sequential=True)
    saved = {}
    for step, (x, y) in enumerate(zip(*data())):
        tx.copy_from_numpy(x[rank * per:(rank + 1) * per])
        ty.copy_from_numpy(y[rank * per:(rank + 1) * per])
        _, loss = net(tx, ty)
        saved[f"loss/{step}"] = tensor.to_numpy(loss)
        for name, value in net.get_params().items():
            saved[f"{name}/{step}"] = tensor.to_numpy(value)
    if world_size > 1:   # SINGA's scripts sum metrics over workers with all_reduce(t.data)
        reducer = tensor.Tensor((1,), dev)
        reducer.copy_from_numpy(np.array([rank + 1.0], np.float32))
        sgd.all_reduce(reducer.data)
        saved["reduced"] = tensor.to_numpy(reducer)
    np.savez(out, **saved)
