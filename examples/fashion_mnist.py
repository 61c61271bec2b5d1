"""A small CNN with BatchNorm on Fashion-MNIST (Model API, graph mode).

    python examples/fashion_mnist.py              # 60k/10k, about 89% test accuracy in 2 epochs
    python examples/fashion_mnist.py --steps 20   # a quick check

The IDX files come from the Debian package `dataset-fashion-mnist`
(`sudo apt-get install dataset-fashion-mnist`; `dpkg -L dataset-fashion-mnist`
lists them), or from any folder given with `--data DIR` or `$SINGAX_FASHION_MNIST`.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import _common
from singax import data, device, layer, model, opt

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Training-set pixel statistics in [0, 1].
MEAN, STD = 0.2860, 0.3530


class FashionCNN(model.Model):
    """conv 32 3x3 -> BN -> relu -> pool -> conv 32 3x3 -> BN -> relu -> pool -> 128 -> 10."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = layer.Conv2d(32, 3, padding=1)
        self.bn1 = layer.BatchNorm2d()
        self.conv2 = layer.Conv2d(32, 3, padding=1)
        self.bn2 = layer.BatchNorm2d()
        self.pool = layer.MaxPool2d(2, 2)
        self.relu = layer.ReLU()
        self.flatten = layer.Flatten()
        self.linear1 = layer.Linear(128)
        self.linear2 = layer.Linear(num_classes)
        self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        y = self.pool(self.relu(self.bn1(self.conv1(x))))
        y = self.pool(self.relu(self.bn2(self.conv2(y))))
        y = self.relu(self.linear1(self.flatten(y)))
        return self.linear2(y)

    def train_one_batch(self, x, y):
        out = self.forward(x)
        loss = self.softmax_cross_entropy(out, y)
        self.optimizer(loss)
        return out, loss

    def set_optimizer(self, optimizer) -> None:
        self.optimizer = optimizer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, metavar="DIR",
                   help="folder with the four Fashion-MNIST IDX files [the Debian package's]")
    _common.add_training_args(p, checkpoint="fashion_mnist.zip", plot="fashion_mnist.png",
                              epochs=2, batch_size=64, lr=0.05)
    args = p.parse_args(argv)
    try:
        (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist(path=args.data)
    except data.DatasetNotFoundError as err:
        if "apt-get" not in str(err):
            err = f"{err}\nFashion-MNIST comes from the Debian package 'dataset-fashion-mnist': " \
                  "sudo apt-get install dataset-fashion-mnist"
        return _common.dataset_missing(err)
    norm = lambda a: (a - np.float32(MEAN)) / np.float32(STD)
    device.get_default_device().SetRandSeed(args.seed)
    sgd = opt.SGD(lr=args.lr, momentum=0.9, weight_decay=1e-5)
    return _common.fit(FashionCNN(), sgd, (norm(x_train), y_train), (norm(x_test), y_test), args,
                       f"Fashion-MNIST CNN on singax (batch {args.batch_size}, lr {args.lr})")


if __name__ == "__main__":
    sys.exit(main())
