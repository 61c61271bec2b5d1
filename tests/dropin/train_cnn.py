"""A `train_cnn.py`-style driver: argparse options, a compiled model, train/eval epochs.

    singax run train_cnn.py [-m EPOCHS] [-b BATCH] [-l LR] [--steps N] [-g] [-d DIST_OPTION]
"""
import argparse
import time

import numpy as np

from singa import device
from singa import opt
from singa import tensor

import cnn
import mnist_data

singa_dtype = {"float16": tensor.float16, "float32": tensor.float32}
np_dtype = {"float16": np.float16, "float32": np.float32}


def accuracy(pred, target):
    """Number of correct predictions in a batch of logits."""
    y = np.argmax(pred, axis=1)
    return (y == target).sum()


def run(max_epoch, batch_size, lr, steps, use_graph, dist_option, spars, precision, seed):
    # a CUDA GPU when there is one; singax falls back to the best JAX device otherwise
    dev = device.create_cuda_gpu()
    dev.SetRandSeed(seed)
    np.random.seed(seed)

    x, y = mnist_data.load(5000, seed=seed)
    n_train = len(x) * 4 // 5
    train_x, train_y, val_x, val_y = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    mean, std = train_x.mean(), train_x.std()
    train_x = ((train_x - mean) / std).astype(np_dtype[precision])
    val_x = ((val_x - mean) / std).astype(np_dtype[precision])

    model = cnn.create_model(num_channels=1, num_classes=10)
    sgd = opt.SGD(lr=lr, momentum=0.9, weight_decay=1e-5, dtype=singa_dtype[precision])

    tx = tensor.Tensor((batch_size, 1, 28, 28), dev, singa_dtype[precision])
    ty = tensor.Tensor((batch_size,), dev, tensor.int32)
    num_train_batch = min(train_x.shape[0] // batch_size, steps)
    num_val_batch = min(val_x.shape[0] // batch_size, max(steps // 2, 2))
    idx = np.arange(train_x.shape[0], dtype=np.int32)

    model.set_optimizer(sgd)
    model.compile([tx], is_train=True, use_graph=use_graph, sequential=False)
    dev.SetVerbosity(0)

    history = []
    for epoch in range(max_epoch):
        start = time.time()
        np.random.shuffle(idx)
        train_correct = np.zeros(shape=[1], dtype=np.float32)
        test_correct = np.zeros(shape=[1], dtype=np.float32)
        train_loss = np.zeros(shape=[1], dtype=np.float32)
        batch_losses = []

        model.train()
        for b in range(num_train_batch):
            x = train_x[idx[b * batch_size:(b + 1) * batch_size]]
            y = train_y[idx[b * batch_size:(b + 1) * batch_size]]
            tx.copy_from_numpy(x)
            ty.copy_from_numpy(y)
            out, loss = model(tx, ty, dist_option, spars)
            train_correct += accuracy(tensor.to_numpy(out), y)
            batch_losses.append(tensor.to_numpy(loss)[0])
            train_loss += batch_losses[-1]
        print("Training loss = %f, training accuracy = %f" %
              (train_loss[0], train_correct[0] / (num_train_batch * batch_size)), flush=True)

        model.eval()
        for b in range(num_val_batch):
            x = val_x[b * batch_size:(b + 1) * batch_size]
            y = val_y[b * batch_size:(b + 1) * batch_size]
            tx.copy_from_numpy(x)
            ty.copy_from_numpy(y)
            out_test = model(tx)
            test_correct += accuracy(tensor.to_numpy(out_test), y)
        val_acc = test_correct[0] / (num_val_batch * batch_size)
        print("Evaluation accuracy = %f, Elapsed Time = %fs" % (val_acc, time.time() - start), flush=True)
        history.append((batch_losses, val_acc))

    dev.PrintTimeProfiling()
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Train a CNN on MNIST (drop-in test)")
    parser.add_argument("-m", "--max-epoch", default=1, type=int, dest="max_epoch")
    parser.add_argument("-b", "--batch-size", default=32, type=int, dest="batch_size")
    parser.add_argument("-l", "--learning-rate", default=0.005, type=float, dest="lr")
    parser.add_argument("--steps", default=mnist_data.steps(40), type=int,
                        help="training batches per epoch")
    parser.add_argument("-g", "--disable-graph", default=True, action="store_false", dest="graph")
    parser.add_argument("-d", "--dist-option", default="plain", dest="dist_option")
    parser.add_argument("-s", "--sparsification", default=0.05, type=float, dest="spars")
    parser.add_argument("-p", "--precision", default="float32", choices=["float32", "float16"])
    parser.add_argument("--seed", default=0, type=int)
    args = parser.parse_args()

    history = run(args.max_epoch, args.batch_size, args.lr, args.steps, args.graph,
                  args.dist_option, args.spars, args.precision, args.seed)
    losses = [v for epoch_losses, _ in history for v in epoch_losses]
    assert np.all(np.isfinite(losses)), losses
    k = max(1, len(losses) // 4)
    assert np.mean(losses[-k:]) < np.mean(losses[:k]), "loss did not decrease: %s" % losses
    if len(losses) >= 40:
        assert history[-1][1] > 0.5, "validation accuracy %.3f" % history[-1][1]
    print("ok: loss %.3f -> %.3f, validation accuracy %.3f"
          % (np.mean(losses[:k]), np.mean(losses[-k:]), history[-1][1]))
