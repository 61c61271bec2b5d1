"""DistOpt scaling benchmark: step time of data-parallel training over 1..N devices.

On a CPU machine run it with simulated devices (it then only proves that the
sharded step runs and matches; the devices share the same cores):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python bench/dist.py

On a multi-GPU machine it uses the real GPUs. Prints a Markdown table (median ms
per step, speed-up against one device, final loss) for the CNN of SINGA's MNIST
example with a fixed global batch.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import numpy as np

from singax import device, layer, model, opt, tensor
from singax.dist import DistOpt, clear_mesh


class CNN(model.Model):
    def __init__(self):
        super().__init__()
        self.conv1 = layer.Conv2d(20, 5)
        self.pool1 = layer.MaxPool2d(2, 2)
        self.conv2 = layer.Conv2d(50, 5)
        self.pool2 = layer.MaxPool2d(2, 2)
        self.relu = layer.ReLU()
        self.flat = layer.Flatten()
        self.fc1 = layer.Linear(500)
        self.fc2 = layer.Linear(10)
        self.loss_fn = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        y = self.pool1(self.relu(self.conv1(x)))
        y = self.pool2(self.relu(self.conv2(y)))
        return self.fc2(self.relu(self.fc1(self.flat(y))))

    def train_one_batch(self, x, y):
        out = self.forward(x)
        loss = self.loss_fn(out, y)
        self.optimizer(loss)
        return out, loss


def run(n_devices: int, batch: int, steps: int) -> tuple[float, float]:
    clear_mesh()
    device.get_default_device().SetRandSeed(0)
    net = CNN()
    sgd = opt.SGD(lr=0.005, momentum=0.9, weight_decay=1e-5)
    net.optimizer = DistOpt(sgd, devices=jax.devices()[:n_devices]) if n_devices > 1 else sgd
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    tx, ty = tensor.from_numpy(x), tensor.from_numpy(y)
    net.compile([tx], is_train=True, use_graph=True)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        _, loss = net(tx, ty)
        loss.data.block_until_ready()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    clear_mesh()
    return statistics.median(times) * 1e3, float(tensor.to_numpy(loss).reshape(-1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    devs = jax.devices()
    print(f"# DistOpt scaling — {platform.processor() or platform.machine()}, {len(devs)} x "
          f"{devs[0].device_kind}, jax {jax.__version__}\n")
    print("| devices | median ms/step | speed-up | loss@end |\n|---:|---:|---:|---:|")
    base = None
    n = 1
    while n <= len(devs):
        if args.batch % n == 0:
            ms, loss = run(n, args.batch, args.steps)
            base = base or ms
            print(f"| {n} | {ms:.2f} | {base / ms:.2f} | {loss:.5f} |")
        n *= 2


if __name__ == "__main__":
    main()
