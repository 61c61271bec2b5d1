"""Train a small model with or without DistOpt; print the final parameters as JSON.

Usage: python train.py MODEL MODE [STEPS]   (MODEL: mlp | cnn; MODE: single | dist | dist2proc)
Run with XLA_FLAGS=--xla_force_host_platform_device_count=4 for 4 simulated devices.
"""
import json
import os
import sys

import numpy as np

from singax import autograd, device, layer, model, opt, tensor
from singax.dist import DistOpt, init_distributed


class MLP(model.Model):
    def __init__(self):
        super().__init__()
        self.l1 = layer.Linear(16)
        self.relu = layer.ReLU()
        self.l2 = layer.Linear(4)
        self.loss = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        return self.l2(self.relu(self.l1(x)))

    def train_one_batch(self, x, y):
        out = self.forward(x)
        loss = self.loss(out, y)
        self.optimizer(loss)
        return out, loss


class CNN(MLP):
    def __init__(self):
        model.Model.__init__(self)
        self.conv = layer.Conv2d(4, 3, padding=1)
        self.relu = layer.ReLU()
        self.flat = layer.Flatten()
        self.fc = layer.Linear(4)
        self.loss = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        return self.fc(self.flat(self.relu(self.conv(x))))


def main():
    kind, mode = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    rank, nproc = 0, 1
    if mode == "dist2proc":
        import jax
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        init_distributed()
        rank, nproc = jax.process_index(), jax.process_count()
    rng = np.random.default_rng(0)
    shape = (16, 8) if kind == "mlp" else (16, 2, 6, 6)
    xs = rng.standard_normal((steps,) + shape).astype(np.float32)
    ys = rng.integers(0, 4, (steps, 16)).astype(np.int32)
    device.get_default_device().SetRandSeed(0)
    net = MLP() if kind == "mlp" else CNN()
    sgd = opt.SGD(lr=0.1, momentum=0.9, weight_decay=1e-4)
    net.optimizer = DistOpt(sgd) if mode.startswith("dist") else sgd
    per = 16 // nproc
    tx = tensor.Tensor((per,) + shape[1:])
    ty = tensor.Tensor((per,), dtype=tensor.int32)
    net.compile([tx], is_train=True, use_graph=True)
    losses = []
    for x, y in zip(xs, ys):
        tx.copy_from_numpy(x[rank * per:(rank + 1) * per])
        ty.copy_from_numpy(y[rank * per:(rank + 1) * per])
        _, loss = net(tx, ty)
        losses.append(float(tensor.to_numpy(loss).reshape(-1)[0]))
    states = {k: tensor.to_numpy(v).tolist() for k, v in net.get_states().items()}
    if rank == 0:
        print(json.dumps({"losses": losses, "states": states, "compiles": net.compile_count}))


if __name__ == "__main__":
    main()
