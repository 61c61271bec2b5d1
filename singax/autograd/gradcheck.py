"""`check_grads`: compare the tape's gradients with central finite differences."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

import jax.numpy as jnp
import numpy as np

from ..tensor import Tensor
from ._tape import backward


@dataclass
class GradReport:
    """Per-input worst disagreement between the tape and finite differences."""

    ok: bool
    tol: float
    rows: list = field(default_factory=list)   # (input index, flat index, tape, numeric, error)

    def __str__(self) -> str:
        lines = [f"check_grads: {'OK' if self.ok else 'FAILED'} (tol {self.tol:g})"]
        for i, idx, tape, num, err in self.rows:
            lines.append(f"  input {i}: worst element {idx}: tape {tape:.6g}, finite difference {num:.6g}, "
                         f"error {err:.3g}")
        return "\n".join(lines)


def _scalar(y) -> float:
    if isinstance(y, (tuple, list)):
        y = y[0]
    if not isinstance(y, Tensor):
        raise TypeError(f"check_grads: fn must return a Tensor, got {type(y).__name__}")
    return float(np.sum(np.asarray(y.data, np.float64)))


def check_grads(fn: Callable, *inputs: Tensor, eps: float = 1e-3, tol: float = 1e-2,
                max_elements: int = 64, seed: int = 0, raise_on_error: bool = True) -> GradReport:
    """Check `fn`'s tape gradients against central finite differences.

    `fn(*inputs)` must return a Tensor; its elements are summed into the scalar whose
    gradient is checked. Each input is treated as a parameter (its `stores_grad` is
    set while checking). At most `max_elements` elements per input are probed (chosen
    at random). Error is `abs(tape - numeric) / max(1, abs(numeric))`. Run in float64
    (`jax.config.update("jax_enable_x64", True)`) for tight tolerances.

    Returns:
      a `GradReport`; raises AssertionError with the report when a check fails and
      `raise_on_error` is True.

    >>> report = check_grads(lambda x: autograd.tanh(x), Tensor(data=np.ones(3)))
    """
    autograd = sys.modules["singax.autograd"]
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"check_grads: input {i} must be a Tensor, got {type(x).__name__}")
    saved_flags = [(x.requires_grad, x.stores_grad) for x in inputs]
    saved_training = autograd.training
    autograd.training = True
    try:
        for x in inputs:
            x.requires_grad = x.stores_grad = True
        y = fn(*inputs)
        y = y[0] if isinstance(y, (tuple, list)) else y
        dy = Tensor(data=np.ones(y.shape), dtype=y.dtype, requires_grad=False)
        grads = {id(p): np.asarray(g.data, np.float64) for p, g in backward(y, dy)}
        rng = np.random.default_rng(seed)
        report = GradReport(ok=True, tol=tol)
        for i, x in enumerate(inputs):
            tape = grads.get(id(x), np.zeros(x.shape))
            original = x.data
            flat = np.asarray(original).reshape(-1)
            n = flat.size
            probe = rng.choice(n, size=min(n, max_elements), replace=False) if n else []
            worst = (0, 0.0, 0.0, -1.0)
            try:
                for k in probe:
                    values = []
                    for sign in (1, -1):
                        moved = flat.copy()
                        moved[k] += sign * eps
                        x.data = jnp.asarray(moved.reshape(x.shape).astype(flat.dtype))
                        values.append(_scalar(fn(*inputs)))
                    numeric = (values[0] - values[1]) / (2 * eps)
                    t = float(tape.reshape(-1)[k])
                    err = abs(t - numeric) / max(1.0, abs(numeric))
                    if err > worst[3]:
                        worst = (int(k), t, numeric, err)
            finally:
                x.data = original
            if worst[3] >= 0:
                report.rows.append((i, *worst))
                report.ok = report.ok and worst[3] <= tol
    finally:
        autograd.training = saved_training
        for x, (rg, sg) in zip(inputs, saved_flags):
            x.requires_grad, x.stores_grad = rg, sg
    if raise_on_error and not report.ok:
        raise AssertionError(str(report))
    return report
