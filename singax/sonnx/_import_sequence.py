"""Import of ONNX sequence values (a Python list of Tensors) and optional values (None
when empty): Identity of any value, SplitToSequence, SequenceAt."""
from __future__ import annotations

import numpy as np

from ._importers import Imported, _ints, _op, importer


@importer("Identity")
def _identity(node, opset):
    op = _op("Identity", node=node)

    def run(x):
        if x is None or isinstance(x, list):   # an optional or a sequence passes as it is
            return (x,)
        return op(x)
    return Imported(node, run, op)


@importer("SplitToSequence")
def _split_to_sequence(node, opset):
    axis = int(node.getattr("axis", 0))
    keepdims = bool(node.getattr("keepdims", 1))
    op = _op("Split", node=node, axis=axis, parts=None, num_output=None)
    drop = _op("Reshape", shape=())

    def run(x, split=None):
        a = axis % len(x.shape)
        n = x.shape[a]
        if split is None:   # pieces of 1; keepdims=0 removes the split axis
            sizes = [1] * n
        elif np.ndim(split) == 0:   # pieces of `split`, the last one shorter
            size = int(split)
            sizes = [size] * (n // size) + ([n % size] if n % size else [])
        else:
            sizes = _ints(split)
        if sum(sizes) != n or min(sizes, default=1) < 1:
            raise ValueError(f"SplitToSequence: split {sizes} does not cut axis {a} of input {x.shape} "
                             "into positive sizes")
        op.parts = tuple(sizes)
        pieces = list(op(x))
        if split is None and not keepdims:
            drop.shape = tuple(s for i, s in enumerate(x.shape) if i != a)
            pieces = [drop(p)[0] for p in pieces]
        return (pieces,)
    return Imported(node, run, op, values=(1,))


@importer("SequenceAt")
def _sequence_at(node, opset):
    def run(seq, position):
        i = int(np.asarray(position).reshape(()))
        if not -len(seq) <= i < len(seq):
            raise ValueError(f"SequenceAt: position {i} is outside a sequence of {len(seq)} tensors")
        return (seq[i],)
    return Imported(node, run, None, values=(1,))
