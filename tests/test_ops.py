"""One table drives every operator test: forward vs numpy, backward vs central
finite differences (float64), tape vs the operator's own backward."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from singax import autograd
from singax.tensor import Tensor
from op_specs import DOMAINS, TESTS


def cases():
    for spec in autograd.OPS.values():
        t = TESTS[spec.name]
        shape_cases = t.shapes or [((3, 4),) * (spec.inputs or 2)]
        for si, shapes in enumerate(shape_cases):
            for ai, attrs in enumerate(t.samples or [{}]):
                yield pytest.param(spec, shapes, attrs, id=f"{spec.name}-s{si}-a{ai}")


def sample_inputs(spec, shapes, attrs, seed=0):
    t = TESTS[spec.name]
    rng = np.random.default_rng(seed)
    if t.sample is not None:
        return [np.asarray(a) for a in t.sample(rng, attrs)]
    out = []
    for i, s in enumerate(shapes):
        if i in t.int_inputs:
            out.append(rng.integers(0, 3, s).astype(np.int32))
        else:
            out.append(DOMAINS[t.domain](rng, s))
    return out


def test_every_operator_has_test_metadata():
    """A new row needs its `OpTest` (tests/op_specs), and every entry names a row."""
    rows = set(autograd.OPS)
    assert rows - TESTS.keys() == set(), f"operators without an entry in tests/op_specs: {sorted(rows - TESTS.keys())}"
    assert TESTS.keys() - rows == set(), f"tests/op_specs entries naming no operator: {sorted(TESTS.keys() - rows)}"


def _first_case(name):
    return next(p.values for p in cases() if p.values[0].name == name)


def test_public_functions_are_the_rows_functions():
    """A row with SINGA's own signature names its wrapper in the `function` column."""
    for name, spec in autograd.OPS.items():
        if name in autograd.__all__:
            assert getattr(autograd, name) is spec.function, name


@pytest.mark.parametrize("name", [n for n, s in autograd.OPS.items() if s.in_place is not None])
def test_in_place_rows_write_into_their_input(name):
    spec, shapes, attrs = _first_case(name)
    arrays = sample_inputs(spec, shapes, attrs)
    xs = [Tensor(data=a.astype(np.float32)) for a in arrays]
    ys = spec.op_class(**attrs)(*xs)
    assert xs[spec.in_place].data is ys[0].data
    np.testing.assert_allclose(np.asarray(ys[0].data), TESTS[name].ref(*arrays, **attrs), rtol=1e-5)


@pytest.mark.parametrize("name", [n for n, s in autograd.OPS.items() if s.eager])
def test_eager_rows_refuse_tracing(name):
    spec, shapes, attrs = _first_case(name)
    arrays = [jnp.asarray(a) for a in sample_inputs(spec, shapes, attrs)]
    op = spec.op_class(**attrs)
    np.testing.assert_array_equal(np.asarray(op._forward_raw(*arrays)), spec.pure(*arrays, **attrs))
    with pytest.raises(ValueError, match=f"{name}: the output shape depends on the input values"):
        jax.jit(lambda *xs: op._forward_raw(*xs))(*arrays)


def run_op(spec, attrs, arrays, dtype):
    autograd.training = True
    xs = [Tensor(data=a.astype(dtype) if a.dtype.kind == "f" else a,
                 dtype=dtype if a.dtype.kind == "f" else a.dtype, stores_grad=a.dtype.kind == "f")
          for a in arrays]
    op = spec.op_class(**attrs)
    return op, op(*xs)


def as_tuple(y):
    return y if isinstance(y, tuple) else (y,)


@pytest.mark.parametrize("spec,shapes,attrs", list(cases()))
def test_forward_matches_numpy(spec, shapes, attrs):
    ref = TESTS[spec.name].ref
    if ref is None:
        pytest.skip(f"{spec.name}: no numpy reference (checked elsewhere)")
    arrays = sample_inputs(spec, shapes, attrs)
    _, ys = run_op(spec, attrs, arrays, np.float32)
    want = as_tuple(ref(*[a.astype(np.float32) if a.dtype.kind == "f" else a for a in arrays], **attrs))
    assert len(ys) == len(want)
    for y, w in zip(ys, want):
        w = np.asarray(w)
        assert y.shape == w.shape, f"{spec.name}: shape {y.shape} != numpy {w.shape}"
        np.testing.assert_allclose(np.asarray(y.data, np.float64), w.astype(np.float64), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec,shapes,attrs", list(cases()))
def test_backward_matches_finite_differences(spec, shapes, attrs, x64):
    if not spec.differentiable:
        op, ys = run_op(spec, attrs, sample_inputs(spec, shapes, attrs), np.float64)
        with pytest.raises(RuntimeError):
            op._backward_raw(*[y.data for y in ys])
        if spec.public_backward is None:
            with pytest.raises(RuntimeError):
                op.backward(*[y.data for y in ys])
        return
    arrays = sample_inputs(spec, shapes, attrs)
    op, ys = run_op(spec, attrs, arrays, np.float64)
    rng = np.random.default_rng(1)
    dys = [rng.standard_normal(y.shape) for y in ys]
    dxs = op._do_backward(*[jnp.asarray(d) for d in dys])
    assert len(dxs) == len(arrays)
    full = {**dict(spec.attrs), **attrs}
    forward = jax.jit(lambda xs: as_tuple(spec.forward(*xs, **full)))   # one compile per case
    eps = 1e-6
    for i, a in enumerate(arrays):
        if a.dtype.kind != "f" or (spec.diff is not None and i not in spec.diff):
            continue
        assert dxs[i] is not None, f"{spec.name}: no gradient for input {i}"
        assert dxs[i].shape == a.shape, f"{spec.name}: gradient {i} shape {dxs[i].shape} != {a.shape}"
        v = rng.standard_normal(a.shape)

        def f(delta):
            xs = [jnp.asarray(b) for b in arrays]
            xs[i] = jnp.asarray(arrays[i] + delta * v)
            return forward(xs)
        plus, minus = f(eps), f(-eps)
        fd = sum(np.sum(d * (np.asarray(p) - np.asarray(m))) for d, p, m in zip(dys, plus, minus)) / (2 * eps)
        an = float(np.sum(np.asarray(dxs[i]) * v))
        tol = TESTS[spec.name].tol or 1e-5
        assert abs(fd - an) <= tol * max(1.0, abs(fd)), f"{spec.name}: input {i}: finite diff {fd} vs backward {an}"


@pytest.mark.parametrize("spec,shapes,attrs", list(cases()))
def test_tape_matches_operator_backward(spec, shapes, attrs):
    """autograd.backward through the op yields the op's gradient for each stored input."""
    if not spec.differentiable:
        pytest.skip("no backward")
    arrays = sample_inputs(spec, shapes, attrs)
    op, ys = run_op(spec, attrs, arrays, np.float32)
    loss = ys[0] if len(ys) == 1 else autograd.add(ys[0], ys[1]) if len(ys) == 2 and ys[0].shape == ys[1].shape else None
    if loss is None:
        pytest.skip("multi-output op: covered by the finite-difference test")
    dy = np.random.default_rng(2).standard_normal(loss.shape).astype(np.float32)
    got = {id(p): g for p, g in autograd.backward(loss, Tensor(data=dy))}
    op2, ys2 = run_op(spec, attrs, arrays, np.float32)
    dxs = op2._do_backward(*[jnp.asarray(dy)] * len(ys2))
    for x, dx in zip([s[2] for s in op.src], dxs):
        if x is None or dx is None:
            continue
        np.testing.assert_allclose(np.asarray(got[id(x)].data), np.asarray(dx), rtol=1e-5, atol=1e-6)
