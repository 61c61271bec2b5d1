"""Test metadata of the reduce operator rows (see `OpTest`)."""
import numpy as np

from singax.autograd.reduce import _gap_axes

from ._spec import OpTest


def _reducer_ref(fn):
    def ref(x, axes=None, keepdims=1):
        ax = None if axes is None else tuple([axes] if isinstance(axes, int) else axes)
        y = np.asarray(fn(x, axis=ax, keepdims=bool(keepdims)))
        return y.reshape(1, 1) if y.ndim == 0 else y
    return ref


_REDUCE_SAMPLES = [dict(axes=None, keepdims=1), dict(axes=None, keepdims=0),
                   dict(axes=[1], keepdims=0), dict(axes=[-1], keepdims=1),
                   dict(axes=[0, 2], keepdims=0), dict(axes=[-3, -1], keepdims=1),
                   dict(axes=[2, 0, 1], keepdims=0), dict(axes=1, keepdims=1)]


TESTS = {
    "reduce_sum": OpTest(shapes=[((2, 3, 4),)], samples=_REDUCE_SAMPLES, ref=_reducer_ref(np.sum)),
    "reduce_mean": OpTest(shapes=[((2, 3, 4),)], samples=_REDUCE_SAMPLES, ref=_reducer_ref(np.mean)),
    "reduce_max": OpTest(shapes=[((2, 3, 4),)], samples=_REDUCE_SAMPLES, ref=_reducer_ref(np.max)),
    "globalaveragepool": OpTest(
        shapes=[((2, 3, 4, 5),), ((2, 3, 4),)],
        samples=[dict(data_format="channels_first"), dict(data_format="channels_last")],
        ref=lambda x, data_format="channels_first": np.mean(x, axis=_gap_axes(x.ndim, data_format),
                                                            keepdims=True)),
}
