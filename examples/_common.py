"""Helpers shared by the example scripts: progress bar, training epoch, evaluation,
checkpoint and plot.

Only the examples import this file (each script's folder is on `sys.path` when it
runs), so it may use the optional packages `tqdm` and `matplotlib` when they are
installed (`pip install -e '.[examples]'`) and falls back to plain output otherwise.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Iterable

import numpy as np

from singax import data, tensor

try:  # optional: a live progress bar
    from tqdm import tqdm as _tqdm
except ImportError:
    _tqdm = None


class Progress:
    """A progress bar with the running mean loss: tqdm when installed, plain lines otherwise.

    Plain mode prints at most ten lines per epoch, so logs stay short.
    """

    def __init__(self, total: int, desc: str, plain: bool = False):
        self.total, self.desc, self.count = total, desc, 0
        self.loss_sum, self.loss_count = 0.0, 0
        self.start = time.time()
        self.bar = None if (plain or _tqdm is None) else _tqdm(total=total, desc=desc,
                                                               leave=False, dynamic_ncols=True)
        self.every = max(1, total // 10)
        self.last_print = self.start

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(1, self.loss_count)

    def update(self, steps: int, losses: Iterable[float] = ()) -> None:
        """Advance `steps` steps and add their `losses` to the running mean."""
        for v in losses:
            self.loss_sum += float(v)
            self.loss_count += 1
        before, self.count = self.count, self.count + steps
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix(loss=f"{self.mean_loss:.4f}")
        elif (before // self.every != self.count // self.every and self.count < self.total
              and time.time() - self.last_print >= 2.0):
            # at most ten lines an epoch, two seconds apart; the epoch's summary line follows
            self.last_print = time.time()
            print(f"  {self.desc} {self.count:>6d}/{self.total}  loss {self.mean_loss:.4f}  "
                  f"{time.time() - self.start:6.1f} s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_epoch(model, tx: tensor.Tensor, ty: tensor.Tensor, x: np.ndarray, y: np.ndarray,
                batch_size: int, epoch: int, max_steps: int | None = None,
                plain: bool = False, refresh: int = 10) -> list[float]:
    """One pass over (x, y) through `model(tx, ty)`; returns the loss of every step.

    Each batch is copied into the placeholders `tx`, `ty` (the SINGA idiom: the
    compiled step keeps one input signature). Losses are read back every `refresh`
    steps, not every step, so the host does not wait on each step.
    """
    total = len(x) // batch_size
    if max_steps is not None:
        total = min(total, max_steps)
    progress = Progress(total, f"epoch {epoch}", plain)
    losses, pending = [], []
    for step, (xb, yb) in enumerate(data.batches(x, y, batch_size, shuffle=True, seed=epoch)):
        if step >= total:
            break
        tx.copy_from_numpy(xb)
        ty.copy_from_numpy(yb)
        _, loss = model(tx, ty)
        pending.append(loss)
        if len(pending) == refresh or step + 1 == total:
            values = [float(tensor.to_numpy(t).reshape(-1)[0]) for t in pending]
            losses += values
            progress.update(len(values), values)
            pending = []
    progress.close()
    return losses


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Accuracy of `model` (eval mode, compiled forward) on (x, y).

    The last batch is padded to `batch_size`, so evaluation compiles one program.
    """
    model.eval()
    try:
        dev = model_device(model)
        tx = tensor.Tensor((batch_size, *x.shape[1:]), dev, tensor.float32)
        correct = 0
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            n = len(xb)
            if n < batch_size:
                xb = np.concatenate([xb, np.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
            tx.copy_from_numpy(np.ascontiguousarray(xb))
            logits = tensor.to_numpy(model(tx))[:n]
            correct += int((logits.argmax(axis=1) == y[start:start + n]).sum())
    finally:
        model.train()
    return correct / max(1, len(x))


def model_device(model):
    """The device of the model's parameters (the default device before they exist)."""
    from singax import device
    for t in model.get_params().values():
        return t.device
    return device.get_default_device()


def save_checkpoint(model, path: str) -> None:
    """`model.save_states(path)`, replacing an older checkpoint at `path`.

    `save_states` never overwrites (as in SINGA), so write beside it and rename.
    """
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    if os.path.exists(tmp):
        os.remove(tmp)
    model.save_states(tmp)
    os.replace(tmp, path)
    print(f"checkpoint saved to {path}", flush=True)


def save_plot(path: str, step_losses: list[float], epoch_acc: list[float], title: str,
              steps_per_epoch: int | None = None) -> None:
    """Write a PNG with the training loss per step and the test accuracy per epoch.

    Does nothing (and says so) when matplotlib is not installed.
    """
    if not path:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no plot written ({path}); "
              "install it with: pip install matplotlib", flush=True)
        return
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.arange(1, len(step_losses) + 1)
    ax_loss.plot(steps, step_losses, lw=0.6, alpha=0.5, label="per step")
    if len(step_losses) >= 20:
        k = max(5, len(step_losses) // 50)
        smooth = np.convolve(step_losses, np.ones(k) / k, mode="valid")
        ax_loss.plot(steps[k - 1:], smooth, lw=1.5, label=f"mean of {k}")
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("log" if min(step_losses, default=1) > 0 else "linear")
    ax_loss.legend()
    epochs = np.arange(1, len(epoch_acc) + 1)
    ax_acc.plot(epochs, [100 * a for a in epoch_acc], "o-")
    for e, a in zip(epochs, epoch_acc):
        ax_acc.annotate(f"{100 * a:.2f}%", (e, 100 * a), textcoords="offset points", xytext=(0, 6),
                        ha="center")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_xticks(epochs)
    ax_acc.margins(y=0.2)  # room for the labels
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot saved to {path}", flush=True)


def finite(values: Iterable[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def dataset_missing(err: Exception) -> int:
    """Print a missing-dataset error (it names the package and install command); exit code 2."""
    print(f"error: {err}", file=sys.stderr, flush=True)
    return 2


def add_training_args(p, checkpoint: str, plot: str, epochs: int, batch_size: int, lr: float) -> None:
    """The options every Model-API example shares."""
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help=f"SGD learning rate [{lr}]")
    p.add_argument("--steps", type=int, default=None,
                   help="short mode: stop each epoch after N steps and test on --eval-size samples")
    p.add_argument("--eval-size", type=int, default=1000, help="test samples used in short mode [1000]")
    p.add_argument("--eager", action="store_true", help="run without graph mode (use_graph=False)")
    p.add_argument("--checkpoint", default=checkpoint,
                   help=f"where to save the model after each epoch ('' to skip) [{checkpoint}]")
    p.add_argument("--plot", default=plot,
                   help="loss/accuracy PNG, written when matplotlib is installed ('' to skip)")
    p.add_argument("--plain", action="store_true", help="plain progress lines even with tqdm")
    p.add_argument("--seed", type=int, default=0)


def fit(net, optimizer, train: tuple, test: tuple, args, title: str) -> int:
    """Compile `net` in graph mode, train it for `args.epochs`, test after every epoch.

    Prints one summary line per epoch, saves a checkpoint after each and a plot at
    the end. Returns the process exit code.
    """
    from singax import device
    (x_train, y_train), (x_test, y_test) = train, test
    if args.steps is not None:
        x_test, y_test = x_test[:args.eval_size], y_test[:args.eval_size]
    print(f"data: {len(x_train)} train / {len(x_test)} test samples of shape {x_train.shape[1:]}",
          flush=True)
    dev = device.get_default_device()
    net.set_optimizer(optimizer)
    tx = tensor.Tensor((args.batch_size, *x_train.shape[1:]), dev, tensor.float32)
    ty = tensor.Tensor((args.batch_size,), dev, tensor.int32)
    net.compile([tx], is_train=True, use_graph=not args.eager, sequential=False)
    print(f"device: {dev}, graph mode: {not args.eager}, batch size {args.batch_size}, "
          f"lr {args.lr}", flush=True)
    step_losses, accuracies = [], []
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        losses = train_epoch(net, tx, ty, x_train, y_train, args.batch_size, epoch,
                             max_steps=args.steps, plain=args.plain)
        train_time = time.time() - start
        if not finite(losses):
            print(f"epoch {epoch}: the loss is not finite; lower --lr", file=sys.stderr)
            return 1
        accuracy = evaluate(net, x_test, y_test, batch_size=min(500, len(x_test)))
        step_losses += losses
        accuracies.append(accuracy)
        print(f"epoch {epoch}: train loss {np.mean(losses):.4f}, test accuracy "
              f"{100 * accuracy:.2f}% ({len(x_test)} samples), {len(losses)} steps in "
              f"{train_time:.1f} s, eval {time.time() - start - train_time:.1f} s", flush=True)
        save_checkpoint(net, args.checkpoint)
    save_plot(args.plot, step_losses, accuracies, title)
    return 0
