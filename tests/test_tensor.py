"""singax.tensor against numpy: every Tensor method, operator and module function,
SINGA's dtype codes and promotion rules, the (1, 1) reductions, in-place semantics
(same object, `.data` rebound) and the bad-input errors."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from singax import autograd, device, tensor
from singax.tensor import Tensor
from _helpers import T

RNG = np.random.default_rng(0)
A = RNG.standard_normal((2, 3)).astype(np.float32)
B = RNG.uniform(0.5, 2.0, (2, 3)).astype(np.float32)


def npy(t):
    return tensor.to_numpy(t)


def close(t, ref, **kw):
    np.testing.assert_allclose(npy(t), ref, rtol=kw.get("rtol", 1e-6), atol=kw.get("atol", 1e-6))


def fresh_flags(t):
    """A method result: new default flags, a Dummy creator, no autograd history."""
    return t.requires_grad and not t.stores_grad and isinstance(t.creator, autograd.Dummy) and t.is_dummy()


# --- dtypes ------------------------------------------------------------------
def test_dtype_codes_and_names():
    assert (tensor.float32, tensor.float16, tensor.int32) == (0, 1, 2)
    assert tensor.dtype_name[0] == "float32" and tensor.dtype_name[2] == "int32"
    assert Tensor.dtype_name is tensor.dtype_name and tensor.dtype_name[tensor.bfloat16] == "bfloat16"
    for code, np_dt in [(tensor.float32, np.float32), (tensor.float16, np.float16), (tensor.int32, np.int32),
                        (tensor.int8, np.int8), (tensor.uint8, np.uint8), (tensor.bool_, np.bool_)]:
        t = Tensor((2,), dtype=code)
        assert t.dtype == code and npy(t).dtype == np_dt and tensor.sizeof(code) == np.dtype(np_dt).itemsize
    assert Tensor((1,), dtype=tensor.bfloat16).dtype == tensor.bfloat16
    assert tensor.sizeof(tensor.float16) == 2
    assert tensor.to_code(np.int32) == tensor.int32 and tensor.to_code("float") == tensor.float32
    assert tensor.to_np_dtype("int") == np.int32


def test_bad_dtypes_raise():
    with pytest.raises(ValueError, match="Tensor: unknown dtype code 42"):
        Tensor((2,), dtype=42)
    with pytest.raises(TypeError, match="as_type: unsupported dtype"):
        T(A).as_type("complex64")
    with pytest.raises(ValueError, match="sizeof: unknown dtype code 99"):
        tensor.sizeof(99)
    with pytest.raises(TypeError, match="Tensor: unsupported numpy dtype <U1"):
        Tensor(data=np.array(["a"]))
    with pytest.raises(TypeError, match="from_numpy: unsupported numpy dtype object"):
        tensor.from_numpy(np.array([object()]))
    with pytest.raises(TypeError, match="from_numpy: unsupported dtype uint32"):
        tensor.from_numpy(np.ones(2, np.uint32))


# --- constructor and protocol -----------------------------------------------------
def test_constructor_defaults_and_conversion_by_value():
    t = Tensor((2, 3))
    assert t.shape == (2, 3) and t.dtype == tensor.float32 and (npy(t) == 0).all()
    assert t.requires_grad and not t.stores_grad and t.is_dummy() and t.device.id() == -1
    assert isinstance(t.creator, autograd.Dummy)
    # numpy data is converted by value into `dtype` (SINGA reinterprets bytes)
    np.testing.assert_array_equal(npy(Tensor(data=np.array([1, 2, 3], np.int32))), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(npy(Tensor(data=np.array([1.7, -1.7]), dtype=tensor.int32)), [1, -1])
    named = Tensor((1,), name="w")
    assert not named.is_dummy() and named.name == "w"
    with pytest.raises(ValueError, match="Tensor: negative dimension"):
        Tensor((2, -1))


def test_hashable_by_identity_truthy_and_eq_none():
    a, b = T(A), T(A)
    assert len({a, b}) == 2 and {a: 1}[a] == 1
    assert bool(Tensor((0,)))                  # always truthy, as in SINGA
    assert (a == None) is False                # noqa: E711
    assert (a != None) is True                 # noqa: E711
    assert (a != b) is False                   # SINGA: no __ne__, Python negates the truthy __eq__
    assert (a == "x") is False                 # non-numeric: falls back to identity


def test_attributes():
    t = Tensor((2, 3, 4), dtype=tensor.float16)
    assert t.ndim() == 3 and t.size() == 24 and t.memsize() == 48
    assert not t.is_empty() and Tensor(()).is_empty() and not t.is_transpose()
    assert Tensor(()).size() == 1


# --- shape methods: copies, not views --------------------------------------------
def test_transpose_T_reshape_contiguous_are_copies():
    src = Tensor(data=np.arange(24, dtype=np.float32).reshape(2, 3, 4), stores_grad=True)
    ref = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    tr, tt = src.transpose((1, 0, 2)), src.T()
    rs, rs2, ct = src.reshape((4, 6)), src.reshape([-1, 8]), src.contiguous()
    close(tr, ref.transpose(1, 0, 2)); close(tt, ref.T); close(rs, ref.reshape(4, 6))
    close(rs2, ref.reshape(3, 8)); close(ct, ref)
    close(tensor.transpose(src), ref.T); close(tensor.reshape(src, (24,)), ref.ravel())
    close(tensor.contiguous(src), ref)
    for r in (tr, tt, rs, rs2, ct):
        assert r is not src and fresh_flags(r)
    # SINGA's views share storage; here an in-place update of the source is not seen
    src += 1.0
    close(rs, ref.reshape(4, 6)); close(ct, ref)
    assert src.reshape((24,)).data is not src.data
    assert src.reshape(src.shape).data is not src.data  # never the source's buffer


def test_reshape_and_transpose_errors_leave_tensor_unchanged():
    t = T(A)
    with pytest.raises(ValueError, match=r"Tensor.reshape: cannot reshape \(2, 3\) \(6 elements\) into \(4, 2\)"):
        t.reshape((4, 2))
    with pytest.raises(ValueError, match="at most one -1"):
        t.reshape((-1, -1))
    with pytest.raises(ValueError, match="cannot reshape"):
        t.reshape((-1, 4))
    with pytest.raises(ValueError, match="Tensor.transpose: axes"):
        t.transpose((0,))
    with pytest.raises(ValueError, match="not a permutation"):
        t.transpose((0, 0))
    assert t.shape == (2, 3)
    close(t, A)


def test_reset_like():
    t = T(A)
    ref = Tensor((4,), dtype=tensor.int32)
    assert t.reset_like(ref) is None
    assert t.shape == (4,) and t.dtype == tensor.int32 and t.device is ref.device


# --- dtype and device --------------------------------------------------------------
def test_as_type_and_to_type():
    t = T(np.array([1.7, -1.7, 2.5], np.float32))
    i = t.as_type(tensor.int32)
    assert i.dtype == tensor.int32 and fresh_flags(i)
    np.testing.assert_array_equal(npy(i), [1, -1, 2])           # truncates toward 0
    assert t.as_type("int").dtype == tensor.int32 and i.as_type("float").dtype == tensor.float32
    assert t.as_type(tensor.float16).dtype == tensor.float16
    same = t.as_type(tensor.float32)
    assert same is not t and same.data is not t.data
    data_before = t.data
    assert t.to_type(tensor.int32) is t and t.dtype == tensor.int32 and t.data is not data_before
    with pytest.raises(ValueError, match="to_type: unknown dtype code 17"):
        t.to_type(17)
    assert t.dtype == tensor.int32


def test_to_device_and_to_host():
    host = device.get_default_device()
    t = T(A)
    assert t.to_device(host) is None and t.device is host
    t.to_host()
    assert t.device is host and t.data.devices() == {host.jax_device}
    h = tensor.to_host(t)
    assert h is not t and h.device is host
    close(h, A)
    with pytest.raises(TypeError, match="to_device: expected a singax Device"):
        t.to_device("cpu")


# --- norms ------------------------------------------------------------------------
def test_l1_is_mean_abs_and_l2_is_norm_over_size():
    t = T(A)
    assert isinstance(t.l1(), float) and isinstance(t.l2(), float)
    assert t.l1() == pytest.approx(np.abs(A).sum() / A.size, rel=1e-6)
    assert t.l2() == pytest.approx(np.sqrt((A.astype(np.float64) ** 2).sum()) / A.size, rel=1e-6)
    assert T(np.array([3, 4], np.int32)).l2() == pytest.approx(2.5)   # 5 / 2, not the RMS 3.54


# --- fills ------------------------------------------------------------------------
def test_set_value_in_place():
    t = T(A)
    before = t.data
    assert t.set_value(2.5) is t and t.data is not before
    close(t, np.full((2, 3), 2.5))
    i = Tensor((2,), dtype=tensor.int32).set_value(2.7)
    np.testing.assert_array_equal(npy(i), [2, 2])
    with pytest.raises(NotImplementedError):
        t.set_value(1.0, inplace=False)
    with pytest.raises(TypeError, match="set_value: expected a number"):
        t.set_value("x")
    close(t, np.full((2, 3), 2.5))


def test_random_fills_statistics_and_reproducibility():
    dev = device.get_default_device()
    dev.SetRandSeed(7)
    g = Tensor((4000,)).gaussian(1.0, 2.0)
    u = Tensor((4000,)).uniform(-1.0, 3.0)
    b = Tensor((4000,)).bernoulli(0.3)
    gv, uv, bv = npy(g), npy(u), npy(b)
    assert abs(gv.mean() - 1.0) < 0.15 and abs(gv.std() - 2.0) < 0.15
    assert uv.min() >= -1.0 and uv.max() < 3.0 and abs(uv.mean() - 1.0) < 0.1
    assert set(np.unique(bv)) == {0.0, 1.0} and abs(bv.mean() - 0.3) < 0.05
    dev.SetRandSeed(7)
    np.testing.assert_array_equal(npy(Tensor((4000,)).gaussian(1.0, 2.0)), gv)
    # module forms fill in place and return the tensor
    t = Tensor((3,))
    assert tensor.gaussian(0.0, 1.0, t) is t and tensor.uniform(0.0, 1.0, t) is t
    assert tensor.bernoulli(1.0, t) is t
    close(t, np.ones(3))
    r = tensor.random((50,))
    assert r.dtype == tensor.float32 and 0.0 <= npy(r).min() and npy(r).max() < 1.0
    for m in (t.gaussian, t.uniform):
        with pytest.raises(NotImplementedError):
            m(0.0, 1.0, inplace=False)
    with pytest.raises(NotImplementedError):
        t.bernoulli(0.5, inplace=False)
    ints = Tensor((100,), dtype=tensor.int32).uniform(0.0, 3.0)
    assert ints.dtype == tensor.int32 and set(np.unique(npy(ints))) <= {0, 1, 2}


# --- copies -------------------------------------------------------------------------
def test_copy_from_numpy_size_rule_and_conversion():
    t = Tensor((2, 3))
    t.copy_from_numpy(np.arange(6).reshape(3, 2))          # same size, other shape, int→float
    close(t, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert t.shape == (2, 3) and t.dtype == tensor.float32
    before = t.data
    with pytest.raises(ValueError, match=r"copy_from_numpy: array of shape \(4,\) \(4 elements\) does not "
                                         r"fit a tensor of shape \(2, 3\)"):
        t.copy_from_numpy(np.ones(4))
    with pytest.raises(TypeError, match="copy_from_numpy: unsupported numpy dtype"):
        t.copy_from_numpy(np.array(["a"] * 6))
    assert t.data is before


def test_copy_data_copy_from_and_clones():
    src = T(B)
    dst = Tensor((3, 2))
    dst.copy_data(src)
    close(dst, B.reshape(3, 2))
    assert dst.data is not src.data
    with pytest.raises(ValueError, match="copy_data: source shape"):
        dst.copy_data(Tensor((5,)))
    with pytest.raises(TypeError, match="copy_data: source dtype int32 differs"):
        dst.copy_data(Tensor((6,), dtype=tensor.int32))
    close(dst, B.reshape(3, 2))
    dst.copy_from(T(A)); close(dst, A.reshape(3, 2))
    dst.copy_from(B); close(dst, B.reshape(3, 2))
    with pytest.raises(ValueError, match="copy_from: expected a Tensor or a numpy array"):
        dst.copy_from([1.0] * 6)
    for c in (src.clone(), src.deepcopy(), src.copy()):
        assert c is not src and c.data is not src.data and fresh_flags(c)
        close(c, B)
    cp, deep = src.copy(), src.deepcopy()
    src += 1.0
    close(cp, B + 1.0)
    close(deep, B)
    cp.copy_from_numpy(A)
    close(src, A.reshape(src.shape))
    close(deep, B)


def test_copy_shares_values_until_the_group_is_gone():
    import copy
    import gc
    t = T(np.zeros((2, 3), np.float32))
    c1 = t.copy()
    c2 = c1.copy()
    t.set_value(2.0)
    for x in (t, c1, c2):
        close(x, np.full((2, 3), 2.0))
        assert x.data is not t.data or x is t
    independent = copy.deepcopy(c1)
    independent += 1.0
    close(t, np.full((2, 3), 2.0))
    del c1
    gc.collect()
    c2 *= 3.0
    close(t, np.full((2, 3), 6.0))


def test_repeat():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = T(x)
    close(t.repeat(2, 0), np.repeat(x, 2, 0))
    close(t.repeat(2, None), np.repeat(x, 2))
    close(t.repeat([1, 0, 2], 1), np.repeat(x, [1, 0, 2], 1))
    close(t.repeat(3, -1), np.repeat(x, 3, -1))
    close(tensor.repeat(t, 2), np.repeat(x, 2))
    with pytest.raises(ValueError, match="needs an axis"):
        t.repeat([1, 2], None)
    with pytest.raises(ValueError, match="3 repeats for axis 0 of size 2"):
        t.repeat([1, 1, 1], 0)
    with pytest.raises(ValueError, match="repeats must be >= 0"):
        t.repeat(-1, 0)
    with pytest.raises(ValueError, match="repeats must be an int"):
        t.repeat(1.5, 0)
    with pytest.raises(ValueError, match="axis 2 out of range"):
        t.repeat(1, 2)


# --- indexing -------------------------------------------------------------------------
def test_getitem_keeps_axis_wraps_and_ignores_step():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = Tensor(data=x, stores_grad=True)
    assert t[1].shape == (1, 3, 4)
    close(t[1], x[1:2]); close(t[-1], x[1:2])
    close(t[0, 1:], x[0:1, 1:]); close(t[:, -2:, 1:3], x[:, 1:, 1:3])
    close(t[:, ::2], x)                                   # step ignored (SINGA)
    close(t[0:2, 0, -1], x[0:2, 0:1, 3:4])
    r = t[0]
    assert fresh_flags(r) and r.data is not t.data
    assert t[:].data is not t.data
    rows = [row.shape for row in t]                      # iteration stops at the end
    assert rows == [(1, 3, 4), (1, 3, 4)]
    assert issubclass(tensor.IndexValueError, ValueError) and issubclass(tensor.IndexValueError, IndexError)


@pytest.mark.parametrize("key", [2, -3, slice(1, 1), slice(0, 3), slice(-5, None), slice(1, 0),
                                 (0, 0, 0, 0), 1.0, None, [0], True, slice(0.5, 1)])
def test_getitem_errors_are_value_errors(key):
    t = T(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="Tensor.__getitem__"):
        t[key]


# --- deprecated column/row ops ------------------------------------------------------------
@pytest.mark.parametrize("name,fn,column", [
    ("add_column", np.add, True), ("add_row", np.add, False), ("div_column", np.divide, True),
    ("div_row", np.divide, False), ("mult_column", np.multiply, True), ("mult_row", np.multiply, False)])
def test_column_row_methods_in_place(name, fn, column):
    v = np.array([2.0, 4.0], np.float32) if column else np.array([1.0, 2.0, 4.0], np.float32)
    t = T(A)
    with pytest.warns(DeprecationWarning, match=name):
        out = getattr(t, name)(T(v))
    assert out is t
    close(t, fn(A, v[:, None] if column else v[None, :]))
    bad = T(np.ones(5, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match=f"Tensor.{name}: v of shape"):
            getattr(t, name)(bad)
        with pytest.raises(ValueError, match="expected a 2-D tensor"):
            getattr(T(np.ones(3, np.float32)), name)(T(v))


# --- operators ------------------------------------------------------------------------
@pytest.mark.parametrize("op,ref", [
    ("__add__", np.add), ("__sub__", np.subtract), ("__mul__", np.multiply), ("__truediv__", np.divide),
    ("__floordiv__", lambda a, b: np.floor(a / b)), ("__lt__", np.less), ("__le__", np.less_equal),
    ("__gt__", np.greater), ("__ge__", np.greater_equal), ("__eq__", np.equal)])
def test_binary_operators_match_numpy(op, ref):
    b_row = B[:1]                                           # broadcast (2,3) ⊕ (1,3)
    for rhs, rhs_np in [(T(B), B), (T(b_row), b_row), (1.5, np.float32(1.5))]:
        out = getattr(T(A), op)(rhs)
        assert out.dtype == tensor.float32 and fresh_flags(out)
        close(out, ref(A, rhs_np).astype(np.float32), rtol=1e-5)
    eq = T(np.array([1.0, 2.0], np.float32)) == T(np.array([1.0, 3.0], np.float32))
    np.testing.assert_array_equal(npy(eq), [1.0, 0.0])     # comparisons give floats, not bools


def test_reflected_operators_and_foreign_lhs():
    t = T(B)
    close(2.0 + t, 2.0 + B); close(2.0 - t, 2.0 - B); close(2.0 * t, 2.0 * B)
    close(2.0 / t, 2.0 / B, rtol=1e-6)
    close(3 < t, (B > 3).astype(np.float32))
    close(np.float32(2.0) * t, 2.0 * B)                   # numpy scalar on the left
    close(np.ones((2, 3), np.float32) - t, 1.0 - B)        # numpy array on the left
    close(jnp.ones(3) * t, B)                              # jax array on the left
    out = 1 - t
    assert isinstance(out, Tensor) and out.dtype == tensor.float32
    with pytest.raises(TypeError):
        t + "a"
    with pytest.raises(TypeError):
        "a" - t


def test_operator_shape_and_device_errors():
    with pytest.raises(ValueError, match=r"Tensor.__add__: shapes \(2, 3\) and \(4,\) do not broadcast"):
        T(A) + T(np.ones(4, np.float32))
    with pytest.raises(TypeError, match="add: rhs must be a Tensor or a number"):
        tensor.add(T(A), "x")


@pytest.mark.parametrize("da,db,expect", [
    (np.float32, np.float32, np.float32), (np.int32, np.int32, np.int32),
    (np.int32, np.float32, np.float32), (np.float16, np.float16, np.float32),
    (np.float16, np.float32, np.float32), (np.int8, np.int8, np.int8), (np.bool_, np.bool_, np.int32)])
def test_promotion_tensor_tensor(da, db, expect):
    a, b = T(np.array([3, 1], da)), T(np.array([2, 1], db))
    for op in ("__add__", "__mul__", "__lt__", "__eq__"):
        out = getattr(a, op)(b)
        assert npy(out).dtype == expect, (op, da, db)
    assert npy(tensor.pow(a, b)).dtype == expect


@pytest.mark.parametrize("dt", [np.float32, np.float16, np.int32, tensor.bfloat16])
def test_promotion_tensor_scalar_is_float32(dt):
    t = Tensor(data=np.array([1, 2]), dtype=dt)
    for out in (t + 1, 1 + t, t * 2.0, t / 2, t < 2, 3 - t, t // 2, tensor.pow(t, 2)):
        assert out.dtype == tensor.float32
    np.testing.assert_array_equal(npy(t < 2), [1.0, 0.0])


def test_integer_division_rules():
    a, b = T(np.array([7, -7], np.int32)), T(np.array([2, 2], np.int32))
    q = a / b
    assert q.dtype == tensor.int32
    np.testing.assert_array_equal(npy(q), [3, -3])          # int/int truncates toward 0 (SINGA)
    np.testing.assert_array_equal(npy(a // b), [3, -4])     # floor
    np.testing.assert_array_equal(npy(a / 2), [3.5, -3.5])  # int/scalar is float32
    np.testing.assert_array_equal(npy(a // 2), [3.0, -4.0])
    m = T(np.array([[7, -7, 9], [1, 2, -3]], np.int32))
    r = T(np.array([2, 3, -2], np.int32))                   # int/int broadcasts like every binary op
    want = np.trunc(npy(m) / npy(r)).astype(np.int32)
    np.testing.assert_array_equal(npy(m / r), want)
    np.testing.assert_array_equal(npy(tensor.div(m, r)), want)
    np.testing.assert_array_equal(npy(r / m), np.trunc(npy(r) / npy(m)).astype(np.int32))
    m /= r
    np.testing.assert_array_equal(npy(m), want)


def test_in_place_operators_rebind_data_on_the_same_object():
    t = Tensor(data=A.copy(), stores_grad=True, name="w")
    before, creator = t.data, t.creator
    t2 = t
    t += T(B); t -= 0.5; t *= T(B[:1]); t /= 2.0
    assert t is t2 and t.data is not before and t.name == "w" and t.stores_grad and t.creator is creator
    close(t, ((A + B - 0.5) * B[:1]) / 2.0, rtol=1e-5)
    i = T(np.array([5, -5], np.int32))
    i /= 2                                                  # keeps int32, truncating
    assert i.dtype == tensor.int32
    np.testing.assert_array_equal(npy(i), [2, -2])
    i += 1.7
    np.testing.assert_array_equal(npy(i), [3, 0])          # 3.7, -0.3 truncated
    before = t.data
    with pytest.raises(ValueError, match=r"__iadd__: result of shape \(2, 2, 3\).*into shape \(2, 3\)"):
        t += T(np.ones((2, 1, 3), np.float32))
    with pytest.raises(ValueError, match="__imul__: shapes"):
        t *= T(np.ones(4, np.float32))
    assert t.data is before


def test_operators_are_not_tracked_by_autograd():
    autograd.training = True
    w = Tensor(data=A, stores_grad=True)
    for out in (w + 1, 2 * w, w * w, w[0], w.reshape((6,)), w.clone(), tensor.sum(w), tensor.exp(w),
                tensor.mult(w, w.T()), tensor.concatenate([w, w], 0)):
        assert fresh_flags(out) and out.creator.src == []


# --- tracers: in-place math inside jax transformations -----------------------------------
def test_in_place_methods_work_on_tracers():
    def step(x):
        t = Tensor(data=x)
        t += 1.0
        t *= Tensor(data=x)
        t.add_row(Tensor(data=x[0]))
        u = t[0].reshape((3,)).T()
        tensor.axpy(2.0, Tensor(data=x), t)
        tensor.copy_data_to_from(t, Tensor(data=x), 2, 0, 1)
        s = Tensor(data=x).set_value(x[0, 0])
        g = Tensor((2, 3)).gaussian(x[0, 1], 0.0)          # traced mean, std 0
        return t.data, u.data, tensor.sum(t).data, s.data, g.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        got = jax.jit(step)(jnp.asarray(A))
    ref = (A + 1) * A + A[0][None, :] + 2 * A
    u_ref = ((A + 1) * A + A[0][None, :])[0]
    ref_flat = ref.ravel().copy()
    ref_flat[0:2] = A.ravel()[1:3]
    np.testing.assert_allclose(got[0], ref_flat.reshape(2, 3), rtol=1e-5)
    np.testing.assert_allclose(got[1], u_ref, rtol=1e-5)
    np.testing.assert_allclose(got[2], ref_flat.sum().reshape(1, 1), rtol=1e-5)
    np.testing.assert_allclose(got[3], np.full((2, 3), A[0, 0]))
    np.testing.assert_allclose(got[4], np.full((2, 3), A[0, 1]))


def test_values_inside_a_trace_are_helpful_errors():
    def f(x):
        t = Tensor(data=x)
        for read in (lambda: tensor.to_numpy(t), t.l1, t.l2, lambda: tensor.average(t)):
            with pytest.raises(RuntimeError, match="compiled"):
                read()
        return x
    jax.jit(f)(jnp.ones(3))


# --- module functions ------------------------------------------------------------------
def test_from_numpy_dtype_rules_and_to_numpy():
    cases = [(np.float64, np.float32), (np.int64, np.int32), (np.float32, np.float32),
             (np.float16, np.float16), (np.int32, np.int32), (np.bool_, np.bool_), (np.uint8, np.uint8)]
    for src, dst in cases:
        arr = np.array([[1, 0, 3]], src)
        t = tensor.from_numpy(arr)
        out = tensor.to_numpy(t)
        assert out.dtype == dst and out.shape == (1, 3)
        np.testing.assert_array_equal(out, arr.astype(dst))
    t = tensor.from_numpy(A)
    out = tensor.to_numpy(t)
    out[0, 0] = 100.0                                        # a copy
    close(t, A)
    assert tensor.from_numpy(A, device.get_default_device()).device.id() == -1
    j = jnp.asarray(A)
    tj = tensor.from_numpy(j)
    assert tj.data is not j
    close(tj, A)


def test_raw_tensor_wrappers_and_likes():
    raw = jnp.asarray(A)
    t = tensor.from_raw_tensor(raw)
    assert t.data is raw and fresh_flags(t) and t.device is device.get_default_device()
    ts = tensor.from_raw_tensors([raw, raw])
    assert len(ts) == 2 and all(isinstance(x, Tensor) for x in ts)
    assert isinstance(t.data, tensor.CTensor) and tensor.PlaceHolder is Tensor
    with pytest.raises(TypeError, match="from_raw_tensor"):
        tensor.from_raw_tensor(A)
    i = Tensor((2, 2), dtype=tensor.int32)
    zl, ol = tensor.zeros_like(i), tensor.ones_like(i)
    assert zl.dtype == ol.dtype == tensor.int32 and zl.shape == (2, 2)
    np.testing.assert_array_equal(npy(ol), np.ones((2, 2)))
    z, o = tensor.zeros((2, 1)), tensor.ones([3])
    assert z.dtype == o.dtype == tensor.float32
    close(z, np.zeros((2, 1))); close(o, np.ones(3))


def test_product_and_sizeof():
    assert tensor.product((2, 3, 4)) == 24 and tensor.product([5]) == 5
    with pytest.raises(TypeError, match="product: empty shape"):
        tensor.product(())
    assert tensor.sizeof(tensor.int32) == 4 and tensor.sizeof(tensor.float64) == 8


def test_copy_data_to_from():
    dst, src = T(np.zeros(6, np.float32)), T(np.arange(5, dtype=np.float32) + 1)
    before = dst
    assert tensor.copy_data_to_from(dst, src, 3, dst_offset=2, src_offset=1) is None
    assert dst is before
    np.testing.assert_array_equal(npy(dst), [0, 0, 2, 3, 4, 0])
    with pytest.raises(ValueError, match="copy_data_to_from: cannot copy 3 elements from offset 3"):
        tensor.copy_data_to_from(dst, src, 3, 0, 3)
    with pytest.raises(TypeError, match="copy_data_to_from: src dtype int32"):
        tensor.copy_data_to_from(dst, Tensor((6,), dtype=tensor.int32), 1)
    np.testing.assert_array_equal(npy(dst), [0, 0, 2, 3, 4, 0])


@pytest.mark.parametrize("name,ref", [
    ("abs", np.abs), ("exp", np.exp), ("ceil", np.ceil), ("log", np.log),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))), ("sign", np.sign), ("sqrt", np.sqrt),
    ("square", np.square), ("tanh", np.tanh)])
def test_unary_functions(name, ref):
    x = B if name in ("log", "sqrt") else A
    out = getattr(tensor, name)(T(x))
    assert out.dtype == tensor.float32 and out.shape == x.shape and fresh_flags(out)
    close(out, ref(x.astype(np.float64)), rtol=1e-5)
    i = getattr(tensor, name)(T(np.array([1, 4], np.int32)))
    keeps = name in ("abs", "ceil", "sign", "square")
    assert i.dtype == (tensor.int32 if keeps else tensor.float32)
    close(i, ref(np.array([1.0, 4.0])), rtol=1e-5)


def test_sum_one_by_one_rules_and_out():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = T(x)
    s = tensor.sum(t)
    assert s.shape == (1, 1) and float(npy(s)[0, 0]) == x.sum()
    assert tensor.sum(T(np.arange(4, dtype=np.float32)), axis=0).shape == (1, 1)  # 1-D: still (1, 1)
    close(tensor.sum(t, 1), x.sum(1)); close(tensor.sum(t, -1), x.sum(-1))
    close(tensor.sum(t, (0, 2)), x.sum((0, 2)))
    assert tensor.sum(t, (0, 1, 2)).shape == (1, 1)
    assert tensor.sum(T(np.array([1, 2], np.int32))).dtype == tensor.int32
    out = Tensor((3,))
    assert tensor.sum(t, (0, 2), out=out) is out
    close(out, x.sum((0, 2)))
    with pytest.raises(ValueError, match="sum: result shape"):
        tensor.sum(t, 0, out=Tensor((3,)))
    with pytest.raises(ValueError, match="sum: axis 3 out of range"):
        tensor.sum(t, 3)
    with pytest.raises(ValueError, match="repeated axis"):
        tensor.sum(t, (1, 1))


def test_pow_average_softmax():
    close(tensor.pow(T(B), 2.0), B ** 2, rtol=1e-5)
    close(tensor.pow(T(B), T(B[:1])), B ** B[:1], rtol=1e-5)
    out = Tensor((2, 3))
    assert tensor.pow(T(B), 3, out=out) is out
    close(out, B ** 3, rtol=1e-5)
    v = tensor.average(T(np.array([1.0, 2.0, 6.0], np.float32)))
    assert isinstance(v, float) and v == pytest.approx(3.0)
    close(tensor.average(T(A), 0), A.mean(0)); close(tensor.average(T(A), 1), A.mean(1))
    assert tensor.average(T(A), 0).shape == (3,)
    assert tensor.average(T(A)) == pytest.approx(A.mean(), rel=1e-6)
    e = np.exp(A - A.max(1, keepdims=True))
    close(tensor.softmax(T(A)), e / e.sum(1, keepdims=True))
    v1 = np.exp(A[0]) / np.exp(A[0]).sum()
    close(tensor.softmax(T(A[0])), v1)
    out = Tensor((2, 3))
    assert tensor.softmax(T(A), out=out) is out
    with pytest.raises(ValueError, match="softmax: expected a tensor of rank <= 2"):
        tensor.softmax(Tensor((2, 2, 2)))


def test_comparison_functions():
    for name, ref in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                      ("ge", np.greater_equal), ("eq", np.equal)]:
        close(getattr(tensor, name)(T(A), T(B)), ref(A, B).astype(np.float32))
        close(getattr(tensor, name)(T(A), 0.0), ref(A, 0.0).astype(np.float32))


@pytest.mark.parametrize("name,ref", [("add", np.add), ("sub", np.subtract),
                                      ("eltwise_mult", np.multiply), ("div", np.divide)])
def test_arithmetic_functions_with_ret(name, ref):
    fn = getattr(tensor, name)
    close(fn(T(A), T(B)), ref(A, B), rtol=1e-6)
    close(fn(T(A), 2.0), ref(A, 2.0), rtol=1e-6)
    ret = Tensor((2, 3))
    assert fn(T(A), T(B[:1]), ret) is ret
    close(ret, ref(A, B[:1]), rtol=1e-6)
    with pytest.raises(ValueError, match=f"{name}: result shape"):
        fn(T(A), T(B), Tensor((3, 2)))


def test_mult_cases():
    a, b = RNG.standard_normal((2, 3)).astype(np.float32), RNG.standard_normal((3, 4)).astype(np.float32)
    close(tensor.mult(T(a), T(b)), a @ b, rtol=1e-5)
    v = np.array([1.0, 2.0, 3.0], np.float32)
    mv = tensor.mult(T(a), T(v))
    assert mv.shape == (2,)                                   # GEMV
    close(mv, a @ v, rtol=1e-5)
    a3, b3 = RNG.standard_normal((2, 3, 4)).astype(np.float32), RNG.standard_normal((2, 4, 5)).astype(np.float32)
    close(tensor.mult(T(a3), T(b3)), a3 @ b3, rtol=1e-5)
    a4, b4 = RNG.standard_normal((2, 2, 3, 4)).astype(np.float32), RNG.standard_normal((2, 2, 4, 1)).astype(np.float32)
    close(tensor.mult(T(a4), T(b4)), a4 @ b4, rtol=1e-5)
    close(tensor.mult(T(a3), T(b3[0])), a3 @ b3[0], rtol=1e-5)   # lower-rank operand broadcasts
    c = RNG.standard_normal((2, 4)).astype(np.float32)
    C = T(c)
    assert tensor.mult(T(a), T(b), C, alpha=2.0, beta=0.5) is C
    close(C, 2.0 * a @ b + 0.5 * c, rtol=1e-5)
    close(tensor.mult(T(a), T(b), alpha=3.0), 3.0 * a @ b, rtol=1e-5)
    with pytest.raises(ValueError, match=r"mult: inner dimensions differ: \(2, 3\) @ \(4, 3\)"):
        tensor.mult(T(a), T(b.T))
    with pytest.raises(ValueError, match="mult: batch dimensions"):
        tensor.mult(T(a3), T(np.ones((3, 4, 5), np.float32)))
    with pytest.raises(ValueError, match=r"mult: C has shape \(2, 3\)"):
        tensor.mult(T(a), T(b), T(A))


def test_einsum_and_tensordot():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.arange(12, dtype=np.float32).reshape(3, 4)
    close(tensor.einsum("ij,jk->ik", T(x), T(y)), x @ y)
    close(tensor.einsum("ki,ki->ki", T(x), T(x)), x * x)
    close(tensor.einsum("ki,kj->kij", T(x), T(x)), np.einsum("ki,kj->kij", x, x))
    z = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    close(tensor.einsum("kia,kja->kij", T(z), T(z)), np.einsum("kia,kja->kij", z, z))
    assert tensor.einsum("ij,ij->", T(x), T(x)).shape == (1, 1)
    with pytest.raises(ValueError, match="exactly two operands"):
        tensor.einsum("ij->ij", T(x))
    with pytest.raises(ValueError, match="subscripts must look like"):
        tensor.einsum("ij,jk", T(x), T(y))
    with pytest.raises(ValueError, match="do not match shapes"):
        tensor.einsum("ijk,jk->ik", T(x), T(y))
    a = RNG.standard_normal((3, 2, 4)).astype(np.float32)
    b = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    close(tensor.tensordot(T(a), T(b)), np.tensordot(a, b), rtol=1e-5)
    c = RNG.standard_normal((4, 2, 5)).astype(np.float32)
    close(tensor.tensordot(T(a), T(c), ([1, 2], [1, 0])), np.tensordot(a, c, ([1, 2], [1, 0])), rtol=1e-5)
    close(tensor.tensordot(T(a), T(c), (2, 0)), np.tensordot(a, c, (2, 0)), rtol=1e-5)
    full = tensor.tensordot(T(a), T(a), 3)
    assert full.shape == (1, 1)
    close(full, np.reshape((a * a).sum(), (1, 1)), rtol=1e-5)
    with pytest.raises(ValueError, match="tensordot: shape mismatch"):
        tensor.tensordot(T(a), T(c), 2)


def test_concatenate_axpy_add_column_row_sum_columns_rows():
    close(tensor.concatenate([T(A), T(B)], 0), np.concatenate([A, B], 0))
    close(tensor.concatenate([T(A), T(B[:, :1])], 1), np.concatenate([A, B[:, :1]], 1))
    one = T(A)
    assert tensor.concatenate([one], 0).data is not one.data
    with pytest.raises(ValueError, match="concatenate: shapes"):
        tensor.concatenate([T(A), T(B[:, :1])], 0)
    y = T(B)
    yid = y
    assert tensor.axpy(2.0, T(A), y) is yid
    close(y, B + 2.0 * A, rtol=1e-6)
    M = T(A)
    assert tensor.add_column(2.0, T(np.array([1.0, 2.0], np.float32)), 0.5, M) is M
    close(M, 2.0 * np.array([[1.0], [2.0]]) + 0.5 * A, rtol=1e-6)
    M = T(A)
    assert tensor.add_row(2.0, T(np.array([1.0, 2.0, 3.0], np.float32)), 3.0, M) is M
    close(M, 2.0 * np.array([[1.0, 2.0, 3.0]]) + 3.0 * A, rtol=1e-6)
    with pytest.raises(ValueError, match="add_row: v of shape"):
        tensor.add_row(1.0, T(np.ones(2, np.float32)), 1.0, M)
    sc, sr = tensor.sum_columns(T(A)), tensor.sum_rows(T(A))
    assert sc.shape == (2, 1) and sr.shape == (1, 3)
    close(sc, A.sum(1, keepdims=True), rtol=1e-6); close(sr, A.sum(0, keepdims=True), rtol=1e-6)
    with pytest.raises(ValueError, match="sum_rows: expected a 2-D tensor"):
        tensor.sum_rows(T(np.ones(3, np.float32)))


def test_module_copy_from_numpy_on_tensor_and_raw():
    t = Tensor((2, 2))
    assert tensor.copy_from_numpy(t, np.arange(4)) is t
    close(t, np.arange(4.0).reshape(2, 2))
    raw = jnp.zeros((2, 2), jnp.int32)
    new = tensor.copy_from_numpy(raw, np.array([1.9, 2, 3, 4]))
    assert new.dtype == jnp.int32 and new.shape == (2, 2)
    np.testing.assert_array_equal(np.asarray(new), [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="copy_from_numpy: array of shape"):
        tensor.copy_from_numpy(raw, np.ones(3))


def test_repr():
    assert repr(T(np.array([1.0, 2.0], np.float32))) == "[1. 2.], float32"
    assert repr(T(np.array([1, 2], np.int32))).endswith(", int32")


@pytest.mark.parametrize("shape", [(2.5, 3), (True, 3), "ab", (None, 2)])
def test_shapes_must_be_ints_not_truncated(shape):
    with pytest.raises(TypeError, match="Tensor: shape must be a sequence of ints"):
        tensor.Tensor(shape)


def test_device_must_be_a_device():
    with pytest.raises(TypeError, match="Tensor: device must be a singax Device .* got str"):
        tensor.Tensor((2,), device="cpu")


@pytest.mark.parametrize("fill, match", [
    (lambda t: t.uniform(1, 0), r"Tensor.uniform: low must be <= high, got 1.0 and 0.0"),
    (lambda t: t.gaussian(0, -1), r"Tensor.gaussian: std must be >= 0, got -1.0"),
    (lambda t: t.bernoulli(2), r"Tensor.bernoulli: p must be in \[0, 1\], got 2.0"),
    (lambda t: t.bernoulli(float("nan")), r"Tensor.bernoulli: p must be in \[0, 1\], got nan"),
])
def test_random_fills_refuse_impossible_distributions(fill, match):
    t = tensor.from_numpy(np.arange(3, dtype=np.float32))
    with pytest.raises(ValueError, match=match):
        fill(t)
    np.testing.assert_array_equal(tensor.to_numpy(t), [0, 1, 2])
