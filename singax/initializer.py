"""SINGA's parameter initializers: each fills a Tensor in place.

Random values come from the tensor's device key stream (as `Tensor.gaussian` /
`Tensor.uniform` do), so `device.SetRandSeed` makes them reproducible.

Fans follow SINGA: a 2-D tensor is (fan_in, fan_out), which matches Linear's
(in, out) weight; a 3-5-D tensor is channels-first, (out, in, *receptive); any
other rank uses sqrt(size) for both.
"""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .tensor import Tensor

__all__ = [
    "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "glorot_normal",
    "glorot_uniform", "eye", "orthogonal", "gaussian", "xavier", "glorot", "msra",
]


def _gaussian(t: Tensor, mean: float, std: float) -> None:
    t.gaussian(mean, std)


def _uniform(t: Tensor, low: float, high: float) -> None:
    t.uniform(low, high)


def _check(fn: str, t) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"initializer.{fn}: expected a Tensor, got {type(t).__name__}")
    if t.size() == 0:
        raise ValueError(f"initializer.{fn}: cannot fill an empty tensor of shape {t.shape}")


def _compute_fans(shape: tuple) -> tuple[float, float]:
    """(fan_in, fan_out) by SINGA's rules."""
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) in (3, 4, 5):
        receptive = int(np.prod(shape[2:]))
        return shape[1] * receptive, shape[0] * receptive
    fan = math.sqrt(float(np.prod(shape)))
    return fan, fan


def _random_fill(fn: str, t: Tensor, scale: float, mode: str, distribution: str) -> None:
    _check(fn, t)
    fan_in, fan_out = _compute_fans(t.shape)
    n = {"fan_in": max(1.0, fan_in), "fan_out": max(1.0, fan_out),
         "fan_avg": max(1.0, (fan_in + fan_out) / 2.0)}[mode]
    if distribution == "normal":
        _gaussian(t, 0.0, math.sqrt(scale / n))   # not truncated, as in SINGA
    else:
        limit = math.sqrt(3.0 * scale / n)
        _uniform(t, -limit, limit)


def he_normal(t: Tensor) -> None:
    """Fill `t` from N(0, sqrt(2 / fan_in))."""
    _random_fill("he_normal", t, 2.0, "fan_in", "normal")


def he_uniform(t: Tensor) -> None:
    """Fill `t` from U(-sqrt(6 / fan_in), +sqrt(6 / fan_in))."""
    _random_fill("he_uniform", t, 2.0, "fan_in", "uniform")


def lecun_normal(t: Tensor) -> None:
    """Fill `t` from N(0, sqrt(1 / fan_in))."""
    _random_fill("lecun_normal", t, 1.0, "fan_in", "normal")


def lecun_uniform(t: Tensor) -> None:
    """Fill `t` from U(-sqrt(3 / fan_in), +sqrt(3 / fan_in))."""
    _random_fill("lecun_uniform", t, 1.0, "fan_in", "uniform")


def glorot_normal(t: Tensor) -> None:
    """Fill `t` from N(0, sqrt(2 / (fan_in + fan_out)))."""
    _random_fill("glorot_normal", t, 1.0, "fan_avg", "normal")


def glorot_uniform(t: Tensor) -> None:
    """Fill `t` from U(-sqrt(6 / (fan_in + fan_out)), +sqrt(6 / (fan_in + fan_out)))."""
    _random_fill("glorot_uniform", t, 1.0, "fan_avg", "uniform")


def _require_2d(fn: str, t: Tensor) -> None:
    _check(fn, t)
    if t.ndim() != 2:
        raise ValueError(f"initializer.{fn}: only 2-D tensors are supported, got shape {t.shape}")


def eye(t: Tensor) -> None:
    """Fill a 2-D `t` with the identity (ones on the main diagonal).

    SINGA: its guard is inverted, so it rejects exactly the 2-D tensors it could fill.
    """
    _require_2d("eye", t)
    t.data = jax.device_put(jnp.eye(*t.shape, dtype=t.data.dtype), t.device.jax_device)


def orthogonal(t: Tensor, gain: float = 1.0) -> None:
    """Fill a 2-D `t` with a (semi-)orthogonal matrix times `gain`.

    The matrix is a singular-vector factor of a Gaussian matrix drawn from the
    device key stream, so its rows (or columns, whichever are fewer) are orthonormal.

    SINGA: its guard is inverted, so it rejects exactly the 2-D tensors it could fill.
    """
    _require_2d("orthogonal", t)
    a = jax.random.normal(t.device.next_key(), t.shape, jnp.float32)
    u, _, vt = jnp.linalg.svd(a, full_matrices=False)
    q = u if u.shape == t.shape else vt
    t.data = jax.device_put((q * gain).astype(t.data.dtype), t.device.jax_device)


def _deprecated(name: str, use: str) -> None:
    warnings.warn(f"initializer.{name} is deprecated; use {use}", DeprecationWarning, stacklevel=3)


def gaussian(t: Tensor, fan_in: int = 0, fan_out: int = 0) -> None:
    """Deprecated: N(0, sqrt(2a / (fan_in + fan_out))), a = 2 if both fans are set, else 1."""
    _deprecated("gaussian", "he_normal or glorot_normal")
    _check("gaussian", t)
    if fan_in <= 0 and fan_out <= 0:
        raise ValueError("initializer.gaussian: fan_in and fan_out cannot both be 0")
    avg = 2 if fan_in > 0 and fan_out > 0 else 1
    _gaussian(t, 0.0, math.sqrt(2.0 * avg / (fan_in + fan_out)))


def _first_two(fn: str, t: Tensor) -> tuple[int, int]:
    _check(fn, t)
    if t.ndim() < 2:
        raise ValueError(f"initializer.{fn}: needs a tensor with at least 2 dims, got shape {t.shape}")
    return t.shape[0], t.shape[1]


def xavier(t: Tensor) -> None:
    """Deprecated: U(-sqrt(6 / (shape[0] + shape[1])), +sqrt(6 / (shape[0] + shape[1])))."""
    _deprecated("xavier", "glorot_uniform")
    a, b = _first_two("xavier", t)
    limit = math.sqrt(6.0 / (a + b))
    _uniform(t, -limit, limit)


def glorot(t: Tensor) -> None:
    """Deprecated: N(0, 1) * sqrt(2 / (shape[0] + shape[1]))."""
    _deprecated("glorot", "glorot_normal")
    a, b = _first_two("glorot", t)
    _gaussian(t, 0.0, math.sqrt(2.0 / (a + b)))


def msra(t: Tensor) -> None:
    """Deprecated: N(0, sqrt(2 / shape[0]))."""
    _deprecated("msra", "he_normal")
    _check("msra", t)
    _gaussian(t, 0.0, math.sqrt(2.0 / t.shape[0]))
