"""Test metadata of the losses operator rows (see `OpTest`)."""
import numpy as np

from ._spec import OpTest


TESTS = {
    "ranking_loss": OpTest(
        shapes=[((4, 1), (4, 1)), ((5,), (5,))],
        samples=[{}, {"M": 0.5}],
        ref=lambda pos, neg, M=0.2: (np.sum(np.maximum(0.0, M - pos + neg)) / pos.shape[0]).reshape(1)),
}
