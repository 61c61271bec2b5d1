"""`OpTest`: how the operator tests sample and check one row of `autograd.OPS`."""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

DOMAINS: dict[str, Callable[[np.random.Generator, tuple], np.ndarray]] = {
    "default": lambda rng, s: rng.standard_normal(s),
    "positive": lambda rng, s: rng.uniform(0.5, 2.0, s),
    "small": lambda rng, s: rng.uniform(-1.0, 1.0, s),
    "unit": lambda rng, s: rng.uniform(-0.9, 0.9, s),
    "nonzero": lambda rng, s: rng.choice([-1.0, 1.0], s) * rng.uniform(0.3, 2.0, s),
    "above1": lambda rng, s: rng.uniform(1.5, 3.0, s),
}


class OpTest(NamedTuple):
    """Test metadata of one operator row.

    Attributes:
      domain: the key in `DOMAINS` float inputs are drawn from.
      shapes: input shape tuples to test (default: (3, 4) for each input).
      samples: attribute dicts to test (default: the row's defaults).
      tol: gradient-check tolerance override (default 1e-5).
      int_inputs: indices of inputs drawn as small ints.
      ref: numpy reference `ref(*np_arrays, **attrs)` of the forward (None: checked elsewhere).
      sample: `sample(rng, attrs) -> list of np arrays` replacing the default sampler.
    """

    domain: str = "default"
    shapes: Sequence[tuple] | None = None
    samples: Sequence[dict] | None = None
    tol: float | None = None
    int_inputs: Sequence[int] = ()
    ref: Callable | None = None
    sample: Callable | None = None
