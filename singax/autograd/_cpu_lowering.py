"""CPU-specific lowerings of operators whose XLA:CPU code is slow.

Max pooling: the gradient of `reduce_window` max is `select_and_scatter`, which XLA:CPU
runs as a scalar loop. On CPU, max pooling is a chain of selects over the window's
strided slices instead; its gradient is then a few fused elementwise kernels. It is
plain `jax.numpy`, so every transformation applies. `cpu_or_default` picks the lowering
when the program is lowered for a platform, so GPU and TPU programs keep `reduce_window`.

Batch normalisation: the same two-pass statistics, with the centred input feeding only
the variance's reduction, and y = x * a + b with per-channel a = scale / sigma and
b = bias - mean * a (as PyTorch's CPU kernel computes it). XLA:CPU then never writes the
centred input out, and the gradient takes fewer, cheaper passes than the textbook
expression's.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
from jax import lax


def cpu_or_default(cpu: Callable, default: Callable, *args):
    """`cpu(*args)` in programs lowered for CPU, else `default(*args)`."""
    return lax.platform_dependent(*args, cpu=cpu, default=default)


def max_pool_select(x, kernel: tuple[int, int], strides: tuple[int, int], padding):
    """NCHW max pooling with -inf `padding` ((top, bottom), (left, right)) as selects.

    Ties go to the first maximum in row-major window order, as with `reduce_window`'s
    `select_and_scatter` gradient; NaNs propagate as in `lax.max`.
    """
    x = jnp.pad(x, ((0, 0), (0, 0)) + tuple(padding), constant_values=-jnp.inf)
    (kh, kw), (sh, sw) = kernel, strides
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    best = None
    for i in range(kh):
        for j in range(kw):
            s = lax.slice(x, (0, 0, i, j), (x.shape[0], x.shape[1], i + (oh - 1) * sh + 1,
                                            j + (ow - 1) * sw + 1), (1, 1, sh, sw))
            best = s if best is None else jnp.where((s > best) | jnp.isnan(s), s, best)
    return best


def batch_norm_folded(x, scale, bias, axes: tuple[int, ...], shape: tuple[int, ...], eps: float):
    """Training-mode batch normalisation over `axes`: (y, batch mean, biased batch variance),
    the statistics with `axes` kept; `shape` broadcasts scale and bias against x's trailing axes."""
    mean = jnp.mean(x, axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axes, keepdims=True)
    factor = lax.rsqrt(var + eps) * scale.reshape(shape)
    y = x * factor + (bias.reshape(shape) - mean * factor)
    return y, mean, var
