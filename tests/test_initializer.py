"""singax.initializer: distributions, SINGA's fan rules, in-place fills."""
import math

import numpy as np
import pytest

from singax import device, initializer
from singax.tensor import Tensor, to_numpy


def _t(shape, dtype=0):
    return Tensor(shape, dtype=dtype)


# (function, shape, "normal"/"uniform", expected std or bound)
CASES = [
    (initializer.he_normal, (400, 300), "normal", math.sqrt(2 / 400)),
    (initializer.he_uniform, (400, 300), "uniform", math.sqrt(6 / 400)),
    (initializer.lecun_normal, (400, 300), "normal", math.sqrt(1 / 400)),
    (initializer.lecun_uniform, (400, 300), "uniform", math.sqrt(3 / 400)),
    (initializer.glorot_normal, (400, 300), "normal", math.sqrt(2 / 700)),
    (initializer.glorot_uniform, (400, 300), "uniform", math.sqrt(6 / 700)),
    # conv weight (out, in, kh, kw): fan_in = in*kh*kw = 72, fan_out = out*kh*kw = 288
    (initializer.he_normal, (32, 8, 3, 3), "normal", math.sqrt(2 / 72)),
    (initializer.glorot_uniform, (32, 8, 3, 3), "uniform", math.sqrt(6 / (72 + 288))),
    # other ranks: both fans sqrt(size) = sqrt(90000) = 300
    (initializer.lecun_normal, (90000,), "normal", math.sqrt(1 / 300)),
    (initializer.xavier, (400, 300), "uniform", math.sqrt(6 / 700)),
    (initializer.glorot, (400, 300), "normal", math.sqrt(2 / 700)),
    (initializer.msra, (400, 300), "normal", math.sqrt(2 / 400)),
]


@pytest.mark.filterwarnings("ignore:initializer.*is deprecated:DeprecationWarning")
@pytest.mark.parametrize("fn, shape, kind, scale", CASES,
                         ids=[f"{c[0].__name__}-{len(c[1])}d" for c in CASES])
def test_distribution_matches_singa_formula(fn, shape, kind, scale):
    device.get_default_device().SetRandSeed(0)
    t = _t(shape)
    assert fn(t) is None                      # in place, returns None as in SINGA
    v = to_numpy(t)
    assert v.shape == shape and v.dtype == np.float32
    rtol = 4 / math.sqrt(v.size)              # ~4 standard errors of the sample std
    assert abs(v.mean()) < 2 * rtol * scale
    if kind == "normal":
        np.testing.assert_allclose(v.std(), scale, rtol=rtol)
    else:
        assert v.min() >= -scale and v.max() <= scale
        np.testing.assert_allclose(v.std(), scale / math.sqrt(3), rtol=rtol)
        assert v.max() > 0.99 * scale and v.min() < -0.99 * scale


@pytest.mark.filterwarnings("ignore:initializer.gaussian is deprecated:DeprecationWarning")
def test_deprecated_gaussian_fan_rule():
    t = _t((300, 400))
    initializer.gaussian(t, fan_in=30, fan_out=70)            # both set: a = 2
    np.testing.assert_allclose(to_numpy(t).std(), math.sqrt(4 / 100), rtol=0.03)
    initializer.gaussian(t, fan_in=50)                         # one set: a = 1
    np.testing.assert_allclose(to_numpy(t).std(), math.sqrt(2 / 50), rtol=0.03)
    with pytest.raises(ValueError, match="gaussian"):
        initializer.gaussian(t)


@pytest.mark.parametrize("name, use", [("gaussian", "he_normal or glorot_normal"), ("xavier", "glorot_uniform"),
                                       ("glorot", "glorot_normal"), ("msra", "he_normal")])
def test_deprecated_initializers_warn_as_singa_marks_them(name, use):
    kwargs = {"fan_in": 3} if name == "gaussian" else {}
    with pytest.warns(DeprecationWarning, match=f"initializer.{name} is deprecated; use {use}"):
        getattr(initializer, name)(_t((3, 4)), **kwargs)


def test_fills_follow_device_seed_and_keep_dtype():
    dev = device.get_default_device()
    dev.SetRandSeed(7)
    a = _t((3, 4))
    initializer.he_uniform(a)
    dev.SetRandSeed(7)
    b = _t((3, 4))
    initializer.he_uniform(b)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    c = _t((3, 4))
    initializer.he_uniform(c)
    assert not np.array_equal(to_numpy(b), to_numpy(c))
    h = _t((8, 8), dtype=1)   # float16
    initializer.glorot_normal(h)
    assert to_numpy(h).dtype == np.float16 and np.all(np.isfinite(to_numpy(h)))


def test_eye_fills_2d_and_rejects_other_ranks():
    t = _t((3, 5))
    initializer.eye(t)
    np.testing.assert_array_equal(to_numpy(t), np.eye(3, 5, dtype=np.float32))
    with pytest.raises(ValueError, match=r"eye.*\(2, 2, 2\)"):
        initializer.eye(_t((2, 2, 2)))


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5)])
def test_orthogonal_2d(shape):
    t = _t(shape)
    initializer.orthogonal(t, gain=2.0)
    q = to_numpy(t).astype(np.float64) / 2.0
    small = min(shape)
    gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-5)


def test_orthogonal_rejects_non_2d():
    with pytest.raises(ValueError, match="orthogonal"):
        initializer.orthogonal(_t((4,)))
