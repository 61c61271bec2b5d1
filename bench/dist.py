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

from singax import device, opt, tensor
from workloads import example_cnn
from singax.dist import DistOpt, clear_mesh


CNN = example_cnn()


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
