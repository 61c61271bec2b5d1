"""A small ResNet (6n+2 layers) on CIFAR-10 with the Model API in graph mode.

    python examples/resnet_cifar.py --data ~/cifar-10-batches-py   # the real data set
    python examples/resnet_cifar.py                                 # SYNTHETIC images (see below)
    python examples/resnet_cifar.py --steps 10                      # a quick check

`--data` is the folder of CIFAR-10's "python version" (`data_batch_1` ... `data_batch_5`,
`test_batch`; pickled dicts of uint8 rows), which you download yourself. Without it
the script trains on SYNTHETIC data: ten random colour templates, shifted and noised,
so the loss and accuracy only show that the network learns, not CIFAR-10 results.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys

import numpy as np

import _common
from singax import autograd, device, layer, model, opt

# Per-channel CIFAR-10 training-set statistics of pixels in [0, 1].
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32).reshape(1, 3, 1, 1)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], np.float32).reshape(1, 3, 1, 1)


class BasicBlock(layer.Layer):
    """conv3x3 -> BN -> relu -> conv3x3 -> BN, plus the (projected) input, then relu."""

    def __init__(self, channels: int, stride: int = 1, project: bool = False):
        super().__init__()
        self.conv1 = layer.Conv2d(channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = layer.BatchNorm2d()
        self.conv2 = layer.Conv2d(channels, 3, padding=1, bias=False)
        self.bn2 = layer.BatchNorm2d()
        self.relu = layer.ReLU()
        self.add = layer.Add()
        self.project = project
        if project:  # 1x1 conv when the shape changes
            self.shortcut = layer.Conv2d(channels, 1, stride=stride, bias=False)
            self.shortcut_bn = layer.BatchNorm2d()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        identity = self.shortcut_bn(self.shortcut(x)) if self.project else x
        return self.relu(self.add(y, identity))


class ResNet(model.Model):
    """CIFAR ResNet: a 16-channel stem, three stages (16, 32, 64 channels) of n blocks each."""

    def __init__(self, blocks_per_stage: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv = layer.Conv2d(16, 3, padding=1, bias=False)
        self.bn = layer.BatchNorm2d()
        self.relu = layer.ReLU()
        blocks, channels_in = [], 16
        for channels, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(blocks_per_stage):
                s = stride if i == 0 else 1
                blocks.append(BasicBlock(channels, s, project=(s != 1 or channels != channels_in)))
                channels_in = channels
        self.blocks = blocks   # a list of layers: parameters named blocks.0.conv1.W, ...
        self.flatten = layer.Flatten()
        self.linear = layer.Linear(num_classes)
        self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        y = self.relu(self.bn(self.conv(x)))
        for block in self.blocks:
            y = block(y)
        y = autograd.globalaveragepool(y)   # (N, 64, 1, 1)
        return self.linear(self.flatten(y))

    def train_one_batch(self, x, y):
        out = self.forward(x)
        loss = self.softmax_cross_entropy(out, y)
        self.optimizer(loss)
        return out, loss

    def set_optimizer(self, optimizer) -> None:
        self.optimizer = optimizer


def load_cifar10(folder: str):
    """Read CIFAR-10's python batches: ((x_train, y_train), (x_test, y_test)), x in [0, 1] NCHW."""

    def read(name: str):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"resnet_cifar: no {name} in {folder!r}; --data must be the "
                                    "folder 'cifar-10-batches-py' of CIFAR-10's python version")
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        return x.astype(np.float32) / 255.0, np.asarray(d[b"labels"], np.int32)

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read("test_batch")
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])), (x_test, y_test)


def synthetic_cifar(n_train: int, n_test: int, seed: int = 0):
    """Ten random smooth colour templates; each image is one of them, shifted and noised."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.3, 0.7, size=(10, 3, 8, 8)).astype(np.float32)  # low contrast
    templates = coarse.repeat(4, axis=2).repeat(4, axis=3)          # (10, 3, 32, 32)

    def make(n):
        y = rng.integers(0, 10, size=n).astype(np.int32)
        x = templates[y]
        shifts = rng.integers(-3, 4, size=(n, 2))
        x = np.stack([np.roll(img, tuple(s), axis=(1, 2)) for img, s in zip(x, shifts)])
        x = x + rng.normal(0, 0.5, size=x.shape).astype(np.float32)
        return np.clip(x, 0, 1).astype(np.float32), y

    return make(n_train), make(n_test)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, metavar="DIR",
                   help="CIFAR-10 python-version folder (cifar-10-batches-py); synthetic data if omitted")
    p.add_argument("--blocks", type=int, default=1,
                   help="blocks per stage: 1 = ResNet-8, 3 = ResNet-20 [1]")
    p.add_argument("--synthetic-size", type=int, default=4000,
                   help="synthetic training images (plus a quarter as many test images) [4000]")
    _common.add_training_args(p, checkpoint="resnet_cifar.zip", plot="resnet_cifar.png",
                              epochs=2, batch_size=32, lr=0.05)
    args = p.parse_args(argv)
    if args.data:
        try:
            train, test = load_cifar10(args.data)
        except (OSError, pickle.UnpicklingError, KeyError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        source = "CIFAR-10"
    else:
        print("=" * 78 + "\nWARNING: no --data folder given: training on SYNTHETIC images, not CIFAR-10.\n"
              "The numbers below only show that the network learns. Download CIFAR-10's\n"
              "python version yourself and pass --data DIR/cifar-10-batches-py for real results.\n"
              + "=" * 78, flush=True)
        train, test = synthetic_cifar(args.synthetic_size, max(args.synthetic_size // 4, 100), args.seed)
        source = "SYNTHETIC data"
    norm = lambda a: (a - CIFAR_MEAN) / CIFAR_STD
    device.get_default_device().SetRandSeed(args.seed)
    sgd = opt.SGD(lr=args.lr, momentum=0.9, weight_decay=5e-4)
    net = ResNet(args.blocks)
    return _common.fit(net, sgd, (norm(train[0]), train[1]), (norm(test[0]), test[1]), args,
                       f"ResNet-{6 * args.blocks + 2} on {source} (batch {args.batch_size}, lr {args.lr})")


if __name__ == "__main__":
    sys.exit(main())
