"""Half-precision training support: dynamic loss scaling and masked (skippable) updates.

float16 has a narrow exponent range, so small gradients underflow. The optimizer
multiplies the loss gradient by a scale S before backward, divides the gradients by
S, and skips the update (parameters and slots unchanged) when any gradient is not
finite, halving S; after `growth_interval` good steps S doubles. Everything is
array arithmetic, so it runs inside a compiled step without host syncs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .tensor import Tensor

# float16 dy must stay finite: 2**15 is the largest power of two below float16's max
MAX_SCALE = 2.0 ** 15


class DynamicLossScale:
    """Scale S (shape (1,) float32) and the count of finite steps since S last changed."""

    def __init__(self, device, init_scale: float = MAX_SCALE, growth_interval: int = 2000):
        self.growth_interval = int(growth_interval)
        with jax.ensure_compile_time_eval():   # concrete even when created mid-trace
            self.scale = Tensor(device=device, data=jnp.full((1,), init_scale, jnp.float32),
                                requires_grad=False, name="loss_scale")
            self.good_steps = Tensor(device=device, data=jnp.zeros((1,), jnp.int32),
                                     requires_grad=False, name="loss_scale_good_steps")

    def update(self, finite) -> None:
        s, n = self.scale.data, self.good_steps.data
        grow = finite & (n + 1 >= self.growth_interval)
        self.scale.data = jnp.where(finite, jnp.where(grow, jnp.minimum(s * 2, MAX_SCALE), s),
                                    jnp.maximum(s / 2, 1.0))
        self.good_steps.data = jnp.where(finite & ~grow, n + 1, 0)


def all_finite(arrays) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


def keep_if(finite, new, old):
    """`new` where the step was finite, else `old` (the update is skipped)."""
    return jnp.where(finite, new, old)
