"""singax.opt: every optimizer row against its formula written out in numpy (float64)."""
import gc
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from singax import autograd, opt, tensor
from singax._compile import GraphFunction
from singax.opt._base import _WARNED
from singax.opt._builtin import TRACE_COUNTS
from singax.autograd import Op, register
from singax.tensor import Tensor

# test-only loss operators, kept out of the op table that test_ops walks
_quad = register(Op("_test_opt_quad", lambda w, x: jnp.sum((w * x) ** 2).reshape(1), inputs=2,
                    cls="_TestOptQuad"))
_lin = register(Op("_test_opt_lin", lambda w, b, x: jnp.sum(jnp.tanh(x @ w + b) ** 2).reshape(1),
                   inputs=3, cls="_TestOptLin"))
autograd.OPS.pop("_test_opt_quad"); autograd.OPS.pop("_test_opt_lin")

Exp = opt.ExponentialDecay


# --- the formulas, in numpy float64 ------------------------------------------------

def sched(v, step):
    """A hyper-parameter's value at `step`: numbers are constant; ExponentialDecay as documented."""
    if isinstance(v, (int, float)):
        return float(v)
    e = step / v.decay_steps
    return v.init_value * v.decay_rate ** (math.floor(e) if v.staircase else e)


def init0(v):
    return v if isinstance(v, (int, float)) else v.init_value


def ref_sgd(p, grads, lr=0.1, momentum=0, dampening=0, weight_decay=0, nesterov=False):
    p, buf, out = p.copy(), np.zeros_like(p), []
    for s, g in enumerate(grads):
        if init0(weight_decay) != 0:
            g = g + sched(weight_decay, s) * p
        if init0(momentum) != 0:
            mu = sched(momentum, s)
            buf = mu * buf + (1 - sched(dampening, s)) * g
            g = g + mu * buf if nesterov else buf
        p = p - sched(lr, s) * g
        out.append(p)
    return out


def ref_rmsprop(p, grads, lr=0.1, rho=0.9, epsilon=1e-8, weight_decay=0):
    p, r, out = p.copy(), np.zeros_like(p), []
    for s, g in enumerate(grads):
        if init0(weight_decay) != 0:
            g = g + sched(weight_decay, s) * p
        rh = sched(rho, s)
        r = rh * r + (1 - rh) * g * g
        p = p - sched(lr, s) * g / np.sqrt(r + sched(epsilon, s))
        out.append(p)
    return out


def ref_adagrad(p, grads, lr=0.1, epsilon=1e-8, weight_decay=0):
    p, h, out = p.copy(), np.zeros_like(p), []
    for s, g in enumerate(grads):
        if init0(weight_decay) != 0:
            g = g + sched(weight_decay, s) * p
        h = h + g * g
        p = p - sched(lr, s) * g / np.sqrt(h + sched(epsilon, s))
        out.append(p)
    return out


def ref_adam(p, grads, lr=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0):
    p, m, v, out = p.copy(), np.zeros_like(p), np.zeros_like(p), []
    for s, g in enumerate(grads):
        if init0(weight_decay) != 0:
            g = g + sched(weight_decay, s) * p
        b1, b2, t = sched(beta_1, s), sched(beta_2, s), s + 1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - sched(lr, s) * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + sched(epsilon, s))
        out.append(p)
    return out


REF = {opt.SGD: ref_sgd, opt.RMSProp: ref_rmsprop, opt.AdaGrad: ref_adagrad, opt.Adam: ref_adam}

# one row per optimizer option: (optimizer, keyword arguments)
ROWS = [
    (opt.SGD, dict()),
    (opt.SGD, dict(lr=0.05)),
    (opt.SGD, dict(momentum=0.9)),
    (opt.SGD, dict(momentum=0.8, dampening=0.3)),
    (opt.SGD, dict(momentum=0.9, nesterov=True)),
    (opt.SGD, dict(weight_decay=0.2)),
    (opt.SGD, dict(lr=0.03, momentum=0.7, dampening=0.1, weight_decay=0.05)),
    (opt.SGD, dict(momentum=0.9, weight_decay=0.01, nesterov=True)),
    (opt.SGD, dict(lr=Exp(0.1, 2, 0.5), momentum=0.9)),
    (opt.SGD, dict(lr=Exp(0.2, 2, 0.5, staircase=True), momentum=Exp(0.9, 3, 0.9),
                   weight_decay=Exp(0.1, 1, 0.7))),
    (opt.RMSProp, dict()),
    (opt.RMSProp, dict(lr=0.01, rho=0.8, epsilon=1e-4, weight_decay=0.1)),
    (opt.RMSProp, dict(lr=Exp(0.01, 2, 0.5), rho=Exp(0.9, 2, 0.95), epsilon=1e-6)),
    (opt.AdaGrad, dict()),
    (opt.AdaGrad, dict(lr=0.02, epsilon=1e-3, weight_decay=0.3)),
    (opt.AdaGrad, dict(lr=Exp(0.1, 1, 0.8, staircase=True))),
    (opt.Adam, dict()),
    (opt.Adam, dict(lr=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6, weight_decay=0.1)),
    (opt.Adam, dict(lr=Exp(0.01, 2, 0.5), beta_1=Exp(0.9, 2, 0.9))),
]


def _row_id(row):
    cls, kw = row
    return cls.__name__ + "-" + "-".join(f"{k}" + ("~" if isinstance(v, opt.DecayScheduler) else f"={v}")
                                         for k, v in kw.items())


def _data(seed, steps=5, shape=(2, 3)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), [rng.normal(size=shape) for _ in range(steps)]


@pytest.mark.parametrize("row", ROWS, ids=[_row_id(r) for r in ROWS])
def test_optimizer_matches_formula_in_float64(row, x64):
    cls, kw = row
    p0, grads = _data(0)
    o = cls(**kw, dtype=tensor.float64)
    p = Tensor(data=p0, dtype=tensor.float64, name="W")
    for s, (g, want) in enumerate(zip(grads, REF[cls](p0, grads, **kw))):
        o.apply("W", p, Tensor(data=g, dtype=tensor.float64))
        o.step()
        np.testing.assert_allclose(np.asarray(p.data), want, rtol=1e-12, atol=1e-15,
                                   err_msg=f"step {s}")
    assert o.step_counter.data.dtype == jnp.float32 and float(o.step_counter.data[0]) == 5.0


# --- SINGA's own first-step expectations (float32) -----------------------------------

W0 = np.array([[0.1, -0.2, 0.3], [1.0, -1.5, 2.0]], np.float32)
G = np.array([[0.5, 0.1, -0.4], [0.2, -0.3, 1.2]], np.float32)


def _steps(o, n, w0=W0, g=G):
    w = Tensor(data=w0, name="w")
    for _ in range(n):
        o.apply("w", w, Tensor(data=g))
        o.step()
    return np.asarray(w.data)


def test_singa_first_steps():
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # noqa: E731
    close(_steps(opt.SGD(), 1), W0 - 0.1 * G)
    close(_steps(opt.SGD(momentum=0.9), 2), (W0 - 0.1 * G) - 0.1 * (G + 0.9 * G))
    close(_steps(opt.SGD(weight_decay=0.2), 1), W0 - 0.1 * (G + 0.2 * W0))
    close(_steps(opt.SGD(momentum=0.9, nesterov=True), 1), W0 - 0.1 * (G + 0.9 * G))
    close(_steps(opt.SGD(momentum=0.9, dampening=0.5), 1), W0 - 0.1 * 0.5 * G)   # zero buffer
    close(_steps(opt.RMSProp(), 1), W0 - 0.1 * G / np.sqrt(0.1 * G * G + 1e-8))
    close(_steps(opt.AdaGrad(), 1), W0 - 0.1 * G / np.sqrt(G * G + 1e-8))
    close(_steps(opt.Adam(), 1), W0 - 0.1 * G / (np.abs(G) + 1e-8))


def test_apply_without_step_keeps_adam_at_t1_and_hypers_at_step0():
    o = opt.Adam(lr=Exp(0.1, 1, 0.5))
    w = Tensor(data=W0)
    for _ in range(2):
        o.apply("w", w, Tensor(data=G))
    m = 0.1 * G * (1 + 0.9)
    v = 0.001 * G * G * (1 + 0.999)
    want = W0 - 0.1 * G / (np.abs(G) + 1e-8) - 0.1 * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)
    np.testing.assert_allclose(np.asarray(w.data), want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(o.lr_value.data), [0.1])


# --- schedules -------------------------------------------------------------------------

def test_schedule_values_over_steps():
    smooth, stair, const = Exp(0.1, 3, 0.5), Exp(0.1, 3, 0.5, staircase=True), opt.Constant(0.25)
    for s in range(8):
        step = Tensor(data=np.array([s], np.float32))
        for sc in (smooth, stair, const):
            out = sc(step)
            assert isinstance(out, Tensor) and out.shape == (1,) and out.dtype == tensor.float32
            np.testing.assert_allclose(np.asarray(out.data), [sched(sc.init_value if sc is const else sc, s)],
                                       rtol=1e-6)
    assert float(stair(Tensor(data=np.array([5.0]))).data[0]) == pytest.approx(0.05)
    with pytest.raises(TypeError, match="ExponentialDecay: step must be a Tensor"):
        smooth(3)


def test_schedules_work_on_traced_steps_and_drive_lr_value():
    sc = Exp(0.1, 2, 0.5)
    got = jax.jit(lambda s: sc(Tensor(data=s)).data)(jnp.array([4.0], jnp.float32))
    np.testing.assert_allclose(np.asarray(got), [0.025], rtol=1e-6)
    o = opt.SGD(lr=sc, momentum=Exp(0.9, 1, 0.5, staircase=True))
    for s in range(4):
        np.testing.assert_allclose(float(o.lr_value.data[0]), 0.1 * 0.5 ** (s / 2), rtol=1e-6)
        np.testing.assert_allclose(float(o.mom_value.data[0]), 0.9 * 0.5 ** s, rtol=1e-6)
        o.step()


class _Halving(opt.DecayScheduler):
    """A user scheduler written SINGA's way: `call` on Tensors."""

    def call(self, step):
        return Tensor(data=self.init_value * 0.5 ** step.data)


def test_user_scheduler_subclass():
    o = opt.SGD(lr=_Halving(0.4))
    o.step(); o.step()
    np.testing.assert_allclose(np.asarray(o.lr_value.data), [0.1])
    np.testing.assert_allclose(_steps(opt.SGD(lr=_Halving(0.4)), 2), W0 - 0.4 * G - 0.2 * G, rtol=1e-6)


def test_state_is_strongly_typed():
    o = opt.Adam(lr=Exp(0.1, 2, 0.5))
    w = Tensor(data=W0)
    o.apply("w", w, Tensor(data=G)); o.step()
    for t in (o.step_counter, o.lr_value, o.beta_1_value, o.m["w"], o.v["w"]):
        assert not t.data.weak_type and t.data.dtype == jnp.float32 and t.requires_grad is False
    assert o.step_counter.shape == (1,) and o.lr_value.shape == (1,)


# --- interface ------------------------------------------------------------------------------

def _quad_setup(seed=1):
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=(3, 2)).astype(np.float32)
    x = Tensor(data=rng.normal(size=(3, 2)).astype(np.float32), requires_grad=False)
    return w0, x


def _quad_grad(w, x):
    return jax.grad(lambda w: jnp.sum((w * x.data) ** 2))(w)


@pytest.mark.parametrize("make", [lambda: opt.SGD(0.05, momentum=0.9, weight_decay=0.01),
                                  lambda: opt.Adam(lr=Exp(0.01, 2, 0.5)),
                                  lambda: opt.RMSProp(0.01), lambda: opt.AdaGrad(0.1)])
def test_opt_loss_equals_update_then_step(make):
    autograd.training = True
    w0, x = _quad_setup()
    a, b = make(), make()
    wa = Tensor(data=w0, stores_grad=True, name="W")
    wb = Tensor(data=w0, stores_grad=True, name="W")
    for _ in range(3):
        a(_quad(wa, x))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            b.update(wb, Tensor(data=_quad_grad(wb.data, x)))
        b.step()
    np.testing.assert_allclose(np.asarray(wa.data), np.asarray(wb.data), rtol=1e-6, atol=1e-7)
    assert float(a.step_counter.data[0]) == 3.0


def test_deprecated_methods_warn_once():
    autograd.training = True
    _WARNED.clear()
    w0, x = _quad_setup()
    o = opt.SGD()
    w = Tensor(data=w0, stores_grad=True, name="W")
    with pytest.warns(DeprecationWarning, match="update is deprecated"):
        o.update(w, Tensor(data=np.ones((3, 2), np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o.update(w, Tensor(data=np.ones((3, 2), np.float32)))   # second call: silent
    with pytest.warns(DeprecationWarning, match="backward_and_update is deprecated"):
        o.backward_and_update(_quad(w, x))
    assert float(o.step_counter.data[0]) == 1.0


def test_get_set_states_resume_bit_identically():
    autograd.training = True
    w0, x = _quad_setup()

    def make():
        return opt.Adam(lr=Exp(0.01, 2, 0.5), weight_decay=0.01)
    a = make()
    wa = Tensor(data=w0, stores_grad=True, name="W")
    for _ in range(3):
        a(_quad(wa, x))
    states = a.get_states()
    assert states["step_counter"] == 3.0 and set(states) == {"step_counter", "m", "v"}
    assert set(states["m"]) == {"W"}
    # a fresh optimizer (slots not created yet) and one that has already stepped
    b, c = make(), make()
    wb = Tensor(data=np.asarray(wa.data), stores_grad=True, name="W")
    wc = Tensor(data=np.asarray(wa.data), stores_grad=True, name="W")
    c(_quad(wc, x))
    wc.data = jnp.asarray(np.asarray(wa.data))
    b.set_states(states)
    c.set_states({**states, "step_counter": Tensor(data=np.array([3.0], np.float32))})  # as load_states gives
    assert float(b.lr_value.data[0]) == float(a.lr_value.data[0])
    for _ in range(2):
        for o, w in ((a, wa), (b, wb), (c, wc)):
            o(_quad(w, x))
    for o, w in ((b, wb), (c, wc)):
        np.testing.assert_array_equal(np.asarray(w.data), np.asarray(wa.data))
        np.testing.assert_array_equal(np.asarray(o.m["W"].data), np.asarray(a.m["W"].data))
        np.testing.assert_array_equal(np.asarray(o.v["W"].data), np.asarray(a.v["W"].data))
        assert o.get_states()["step_counter"] == 5.0
    assert b.m["W"].data is not a.m["W"].data


def test_params_with_the_same_name_keep_separate_slots():
    o = opt.SGD(0.1, momentum=0.9)
    p1, p2 = Tensor(data=W0, name="W"), Tensor(data=-W0, name="W")
    g1, g2 = G, 2 * G + 1
    for _ in range(3):
        o.apply("W", p1, Tensor(data=g1))
        o.apply("W", p2, Tensor(data=g2))
        o.step()
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    np.testing.assert_allclose(np.asarray(p1.data), ref_sgd(f64(W0), [f64(g1)] * 3, momentum=0.9)[-1], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(p2.data), ref_sgd(-f64(W0), [f64(g2)] * 3, momentum=0.9)[-1], rtol=1e-5)
    assert set(o.get_states()["moments"]) == {"W", "W#1"}
    # restoring by name in the same first-use order gives each param its own slot back
    o2 = opt.SGD(0.1, momentum=0.9)
    o2.set_states(o.get_states())
    q1, q2 = Tensor(data=np.asarray(p1.data), name="W"), Tensor(data=np.asarray(p2.data), name="W")
    for o_, a, b in ((o, p1, p2), (o2, q1, q2)):
        o_.apply("W", a, Tensor(data=g1)); o_.apply("W", b, Tensor(data=g2))
    np.testing.assert_array_equal(np.asarray(q1.data), np.asarray(p1.data))
    np.testing.assert_array_equal(np.asarray(q2.data), np.asarray(p2.data))


def test_sgd_dtype_low_precision_and_mismatch():
    w16 = Tensor(data=W0, dtype=tensor.float16)
    o = opt.SGD(0.1, momentum=0.5, dtype=tensor.float16)
    o.apply("w", w16, Tensor(data=G, dtype=tensor.float16))
    want = (W0.astype(np.float16).astype(np.float32)
            - np.float32(0.1) * G.astype(np.float16).astype(np.float32)).astype(np.float16)
    assert w16.data.dtype == jnp.float16 and o.moments["w"].data.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(w16.data), want)
    with pytest.raises(TypeError, match="SGD.apply: parameter 'w' has dtype float16 .* dtype=float32"):
        opt.SGD().apply("w", w16, Tensor(data=G, dtype=tensor.float16))
    bf = Tensor(data=W0, dtype=tensor.bfloat16)
    opt.Adam(0.1).apply("b", bf, Tensor(data=G, dtype=tensor.bfloat16))
    assert bf.data.dtype == jnp.bfloat16


def test_apply_rejects_mismatched_gradient():
    with pytest.raises(ValueError, match=r"SGD.apply: gradient shape \(3,\) does not match the shape \(2, 3\)"):
        opt.SGD().apply("w", Tensor(data=W0), Tensor(data=np.ones(3)))


BAD = [
    (lambda: opt.SGD(lr=-0.1), "SGD: invalid learning rate -0.1 (must be >= 0)"),
    (lambda: opt.SGD(momentum=1.0), "SGD: invalid momentum 1.0 (must be in [0, 1))"),
    (lambda: opt.SGD(momentum=-0.5), "SGD: invalid momentum -0.5"),
    (lambda: opt.SGD(momentum=0.9, dampening=1.5), "SGD: invalid dampening 1.5"),
    (lambda: opt.SGD(weight_decay=-1), "SGD: invalid weight_decay -1 (must be >= 0)"),
    (lambda: opt.SGD(nesterov=True), "SGD: nesterov momentum requires momentum > 0 and dampening = 0 "
                                     "(got momentum=0, dampening=0)"),
    (lambda: opt.SGD(momentum=0.9, dampening=0.1, nesterov=True), "dampening=0.1"),
    (lambda: opt.SGD(lr=Exp(-0.1, 2, 0.5)), "SGD: invalid learning rate -0.1"),
    (lambda: opt.RMSProp(rho=1.5), "RMSProp: invalid rho 1.5"),
    (lambda: opt.RMSProp(epsilon=-1e-8), "RMSProp: invalid epsilon -1e-08"),
    (lambda: opt.AdaGrad(lr=-1), "AdaGrad: invalid learning rate -1"),
    (lambda: opt.AdaGrad(weight_decay=-0.1), "AdaGrad: invalid weight_decay -0.1"),
    (lambda: opt.Adam(beta_1=1.0), "Adam: invalid beta_1 1.0"),
    (lambda: opt.Adam(beta_2=-0.1), "Adam: invalid beta_2 -0.1"),
    (lambda: opt.Adam(epsilon=-1.0), "Adam: invalid epsilon -1.0"),
    (lambda: opt.ExponentialDecay(0.1, 0, 0.5), "ExponentialDecay: invalid decay_steps 0"),
    (lambda: opt.SGD(dtype=tensor.int32), "SGD: dtype must be"),
]


@pytest.mark.parametrize("make,msg", BAD, ids=[m for _, m in BAD])
def test_invalid_hyper_parameters_raise_value_error(make, msg):
    with pytest.raises(ValueError) as err:
        make()
    assert msg in str(err.value)


@pytest.mark.parametrize("value", ["0.1", np.float64(0.1), None, True, [0.1]])
def test_hyper_parameters_must_be_numbers_or_schedulers(value):
    with pytest.raises(TypeError, match="SGD: learning rate must be a float, an int or a DecayScheduler"):
        opt.SGD(lr=value)
    with pytest.raises(TypeError, match="Adam: beta_1 must be"):
        opt.Adam(beta_1=value)


# --- compiled use -------------------------------------------------------------------------------

def test_lr_schedule_does_not_retrace_the_jitted_update():
    o = opt.SGD(lr=Exp(0.1, 1, 0.5), momentum=0.9, weight_decay=0.01)
    key = ("SGD", True, True, False)
    p0, grads = _data(3, steps=6, shape=(5, 7, 3))   # a shape no other test uses
    p = Tensor(data=p0.astype(np.float32))
    before = TRACE_COUNTS[key]
    for g in grads:
        o.apply("w", p, Tensor(data=g.astype(np.float32)))
        o.step()
    assert TRACE_COUNTS[key] - before == 1
    want = ref_sgd(p0, grads, lr=Exp(0.1, 1, 0.5), momentum=0.9, weight_decay=0.01)[-1]
    np.testing.assert_allclose(np.asarray(p.data), want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: opt.Adam(lr=Exp(0.05, 1, 0.5), weight_decay=0.01),
    lambda: opt.SGD(lr=Exp(0.05, 1, 0.5), momentum=0.9, nesterov=True),
    lambda: opt.Optax(optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(0.05))),
    lambda: opt.Optax(optax.adamw, lr=Exp(0.05, 1, 0.5)),
], ids=["Adam", "SGD", "Optax", "Optax-factory"])
def test_compiled_train_step_matches_eager_and_compiles_once(make):
    autograd.training = True
    w0, x = _quad_setup(4)

    def run(compiled):
        o = make()
        w = Tensor(data=w0, stores_grad=True, name="W")

        def train_one_batch(x):
            loss = _quad(w, x)
            o(loss)
            return loss
        step = GraphFunction(train_one_batch) if compiled else train_one_batch
        losses = [float(np.asarray(step(x).data)[0]) for _ in range(4)]
        return w, o, losses, step
    we, oe, le, _ = run(False)
    wc, oc, lc, graph = run(True)
    assert graph.compile_count == 1
    np.testing.assert_allclose(lc, le, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(wc.data), np.asarray(we.data), rtol=1e-5, atol=1e-7)
    slots = lambda o: jax.tree.leaves({k: v for k, v in o.get_states().items() if k != "step_counter"})  # noqa: E731
    for a, b in zip(slots(oc), slots(oe), strict=True):
        np.testing.assert_allclose(np.asarray(a.data), np.asarray(b.data), rtol=1e-5, atol=1e-8)
    assert float(oc.step_counter.data[0]) == 4.0
    if oc.lr_value is not None:
        np.testing.assert_allclose(float(oc.lr_value.data[0]), 0.05 * 0.5 ** 4, rtol=1e-6)


# --- optax wrapper ---------------------------------------------------------------------------

def _lin_problem(seed=5):
    rng = np.random.default_rng(seed)
    w0 = (2 * rng.normal(size=(4, 3))).astype(np.float32)
    b0 = rng.normal(size=(3,)).astype(np.float32)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    return {"w": w0, "b": b0}, x


def _plain_optax(tx, params, x, steps):
    loss = lambda p: jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2)  # noqa: E731
    params = jax.tree.map(jnp.asarray, params)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state
    for _ in range(steps):
        params, state = step(params, state)
    return params


def _run_wrapper(o, params, x, steps):
    """Train `params` (a dict of arrays, or of Tensors to continue) with `o(loss)`."""
    autograd.training = True
    w, b = (params[k] if isinstance(params[k], Tensor) else
            Tensor(data=params[k], stores_grad=True, name=n) for k, n in (("w", "W"), ("b", "b")))
    xt = Tensor(data=x, requires_grad=False)
    for _ in range(steps):
        o(_lin(w, b, xt))
    return {"w": w, "b": b}


def _np(params):
    return {k: np.asarray(v.data) for k, v in params.items()}


@pytest.mark.parametrize("name,make", [
    ("clip+adamw", lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, weight_decay=1e-2))),
    ("clip+wd+lion", lambda: optax.chain(optax.clip_by_global_norm(0.5), optax.add_decayed_weights(1e-2),
                                         optax.lion(1e-3))),
])
def test_optax_wrapper_matches_plain_optax(name, make):
    params, x = _lin_problem()
    # the global norm of the first gradient is well above the clip threshold
    g = jax.grad(lambda p: jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2))(params)
    assert float(optax.tree.norm(g)) > 1.0
    o = opt.Optax(make())
    got = _np(_run_wrapper(o, params, x, 4))
    want = _plain_optax(make(), params, x, 4)
    for k in ("w", "b"):
        np.testing.assert_allclose(got[k], np.asarray(want[k]), rtol=1e-5, atol=1e-7)
    assert o.trace_count == 1 and float(o.step_counter.data[0]) == 4.0


def test_optax_factory_with_singa_schedule_matches_optax_schedule():
    params, x = _lin_problem(6)
    o = opt.Optax(optax.adamw, lr=Exp(1e-2, 2, 0.5))
    got = _np(_run_wrapper(o, params, x, 5))
    want = _plain_optax(optax.adamw(optax.exponential_decay(1e-2, 2, 0.5)), params, x, 5)
    for k in ("w", "b"):
        np.testing.assert_allclose(got[k], np.asarray(want[k]), rtol=1e-5, atol=1e-7)
    assert o.trace_count == 1


def test_optax_get_set_states_round_trip():
    params, x = _lin_problem(7)
    make = lambda: opt.Optax(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)))  # noqa: E731
    a = make()
    live = _run_wrapper(a, params, x, 2)
    states = a.get_states()
    assert set(states["state"]) == {"W", "b"}
    assert any(k.endswith(".count") for k in states["state"]["W"])
    b = make()
    b.set_states(states)
    got = _np(_run_wrapper(b, _np(live), x, 2))
    ref = _np(_run_wrapper(a, live, x, 2))
    for k in ("w", "b"):
        np.testing.assert_array_equal(got[k], ref[k])
    assert b.state["W"].keys() == a.state["W"].keys()


def test_recreated_param_with_a_dead_params_name_inherits_its_slots():
    o = opt.SGD(0.1, momentum=0.9)
    w = Tensor(data=W0, name="W")
    o.apply("W", w, Tensor(data=G))
    buf = np.asarray(o.moments["W"].data)
    w = Tensor(data=np.asarray(w.data), name="W")
    gc.collect()   # the old one dies (a Tensor and its Dummy creator form a cycle)
    o.apply("W", w, Tensor(data=G))
    np.testing.assert_allclose(np.asarray(o.moments["W"].data), 0.9 * buf + G, rtol=1e-6)
    assert list(o.get_states()["moments"]) == ["W"]


def test_optax_wrapper_rejects_bad_transform():
    with pytest.raises(TypeError, match="Optax: transform must be an optax.GradientTransformation"):
        opt.Optax(optax.adam)
    with pytest.raises(TypeError, match="Optax: with lr=..., transform must be a factory"):
        opt.Optax(optax.adam(1e-3), lr=0.1)


def test_state_follows_the_parameters_device():
    """Params on a second device: counter, hyper values and slots move there (GPU scripts)."""
    code = """
import numpy as np, optax
from singax import opt, device
from singax.tensor import Tensor
d1 = device.get_devices()[1]
for o in [opt.Adam(opt.ExponentialDecay(0.1, 2, 0.5)), opt.Optax(optax.adamw(1e-2)), opt.SGD(0.1, momentum=0.9)]:
    p = Tensor(device=d1, data=np.ones((2, 2), np.float32), name='W')
    for _ in range(2):
        o.apply('W', p, Tensor(device=d1, data=np.ones((2, 2), np.float32)))
        o.step()
    tensors = [p, o.step_counter] + [t for _, t in o._hypers] + [t for e in o._entries.values() for t in e.tensors]
    assert all(t.data.devices() == {d1.jax_device} and t.device is d1 for t in tensors), type(o).__name__
print("ok")
"""
    import os
    import subprocess
    import sys
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_apply_then_call_on_the_same_loss_steps_twice_with_the_same_gradient():
    """A GAN discriminator step: apply() each yielded gradient, then optimizer(loss)
    runs backward again over the same graph (its saved values are still there)."""
    autograd.training = True
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal((3, 2)).astype(np.float32)
    xv = rng.standard_normal((4, 3)).astype(np.float32)
    w = tensor.Tensor(data=w0.copy(), stores_grad=True, name="dis.W")
    x = tensor.Tensor(data=xv)
    loss = autograd.reduce_sum(autograd.sigmoid(autograd.matmul(x, w)), None, 0)
    sgd = opt.SGD(lr=0.1)
    for p, g in autograd.backward(loss):
        sgd.apply(p.name, p, g)
    sgd(loss)
    s = 1 / (1 + np.exp(-(xv @ w0)))
    grad = xv.T @ (s * (1 - s))
    np.testing.assert_allclose(tensor.to_numpy(w), w0 - 2 * 0.1 * grad, rtol=1e-5, atol=1e-6)


def test_one_program_updates_all_parameters_like_apply_and_keeps_held_slots_readable():
    autograd.training = True
    rng = np.random.default_rng(5)
    w0, v0 = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)
    x = Tensor(data=rng.normal(size=(3, 2)).astype(np.float32), requires_grad=False)
    a, b = opt.SGD(0.05, momentum=0.9), opt.SGD(0.05, momentum=0.9)
    wa, va = Tensor(data=w0, stores_grad=True, name="w"), Tensor(data=v0, stores_grad=True, name="v")
    wb, vb = Tensor(data=w0, stores_grad=True, name="w"), Tensor(data=v0, stores_grad=True, name="v")
    held = []
    for step in range(3):
        a(autograd.add(_quad(wa, x), _quad(va, x)))
        if step == 1:
            held.append((a.moments["w"].data, np.array(a.moments["w"].data)))
        for p, q in ((wb, vb), (vb, wb)):
            b.apply(p.name, p, Tensor(data=_quad_grad(p.data, x)))
        b.step()
    for p, q in ((wa, wb), (va, vb)):
        np.testing.assert_allclose(np.asarray(p.data), np.asarray(q.data), rtol=1e-6, atol=1e-7)
    array, value = held[0]   # the user's reference to an old slot array still reads its value
    np.testing.assert_array_equal(np.asarray(array), value)



class _Identity(autograd.Operator):
    """A user operator (its backward derived by jax.vjp): the tape cannot fuse through it."""

    def forward(self, x):
        return x


@pytest.mark.parametrize("cls,ref,hyper", [
    (opt.SGD, ref_sgd, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    (opt.Adam, ref_adam, dict(lr=Exp(0.01, 2, 0.5)))])
def test_fused_step_equals_the_tape_walk_and_traces_once(cls, ref, hyper):
    """opt(loss) over built-in operators runs backward, update and counter as one program;
    with a user operator in the tape it walks the tape. Both follow the formula."""
    autograd.training = True
    rng = np.random.default_rng(7)
    w0 = rng.normal(size=(5, 3, 2)).astype(np.float32)   # a shape no other test uses: a fresh trace
    x = Tensor(data=rng.normal(size=(5, 3, 2)).astype(np.float32), requires_grad=False)
    fused, walked = cls(**hyper), cls(**hyper)
    wf = Tensor(data=w0, stores_grad=True, name="W")
    ww = Tensor(data=w0, stores_grad=True, name="W")
    key = ("fused",) + fused._cfg[0]
    before = TRACE_COUNTS[key]
    grads, p = [], w0.astype(np.float64)
    for _ in range(3):
        grads.append(2 * p * np.asarray(x.data, np.float64) ** 2)
        p = ref(w0.astype(np.float64), grads, **hyper)[-1]
        fused(_quad(wf, x))
        walked(_quad(_Identity()(ww)[0], x))
    assert TRACE_COUNTS[key] - before == 1
    np.testing.assert_allclose(np.asarray(wf.data), p, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ww.data), np.asarray(wf.data), rtol=1e-6, atol=1e-7)
    assert float(fused.step_counter.data[0]) == float(walked.step_counter.data[0]) == 3.0


def test_call_without_step_does_not_advance_the_counter():
    autograd.training = True
    w0, x = _quad_setup(8)
    o = opt.SGD(0.1)
    w = Tensor(data=w0, stores_grad=True, name="W")
    o.call(_quad(w, x))
    assert float(o.step_counter.data[0]) == 0.0
    np.testing.assert_allclose(np.asarray(w.data), w0 - 0.1 * np.asarray(_quad_grad(w0, x)), rtol=1e-6)


def test_overridden_step_still_runs_on_opt_loss():
    autograd.training = True
    w0, x = _quad_setup(9)
    seen = []

    class Logged(opt.SGD):
        def step(self):
            seen.append(float(self.step_counter.data[0]))
            super().step()
    o = Logged(0.1)
    w = Tensor(data=w0, stores_grad=True, name="W")
    for _ in range(2):
        o(_quad(w, x))
    assert seen == [0.0, 1.0] and float(o.step_counter.data[0]) == 2.0


@pytest.mark.parametrize("make", [lambda: opt.SGD(0.1), lambda: opt.Adam(0.1), lambda: opt.RMSProp(0.1),
                                  lambda: opt.AdaGrad(0.1), lambda: opt.Optax(optax.sgd(0.1))])
@pytest.mark.parametrize("bad", [3.0, np.ones(3, np.float32), None])
def test_stepping_from_something_not_a_tensor_says_so(make, bad):
    o = make()
    for step in (o, o.call):
        with pytest.raises(TypeError, match="expected the loss Tensor to step from, got"):
            step(bad)
    assert float(o.step_counter.data[0]) == 0.0


@pytest.mark.parametrize("gate, platform", [("_gated_by_conditional", None), ("_gated_by_select", None),
                                            ("_gated", None), ("_gated", "cpu"), ("_gated", "gpu")])
def test_a_failed_step_guard_keeps_parameters_and_slots(gate, platform):
    import functools
    from singax.opt import _builtin
    gated = getattr(_builtin, gate)
    if platform is not None:
        gated = functools.partial(gated, platform=platform)
    p, s, g = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.25]), jnp.array([0.1, 0.3])

    def sgd_momentum():
        v = 0.9 * s + g
        return [p - 0.1 * v], [(v,)]

    run = jax.jit(lambda ok: gated(ok, sgd_momentum, ([p], [(s,)])))
    (kept_p,), ((kept_s,),) = run(jnp.bool_(False))
    np.testing.assert_array_equal(kept_p, p)
    np.testing.assert_array_equal(kept_s, s)
    (new_p,), ((new_s,),) = run(jnp.bool_(True))
    v = 0.9 * np.array([0.5, 0.25]) + np.array([0.1, 0.3])
    np.testing.assert_allclose(new_s, v, rtol=1e-6)
    np.testing.assert_allclose(new_p, np.array([1.0, -2.0]) - 0.1 * v, rtol=1e-6)


def test_set_states_names_the_optimizer_and_key_for_a_bad_counter():
    sgd = opt.SGD(0.1)
    sgd.set_states({"step_counter": 4})
    with pytest.raises(ValueError, match=r"SGD.set_states: 'step_counter' must be one finite number >= 0, got 'a'"):
        sgd.set_states({"step_counter": "a"})
    for bad in (float("nan"), np.zeros((2, 3)), -1):
        with pytest.raises(ValueError, match="must be one finite number"):
            sgd.set_states({"step_counter": bad})
    assert float(np.asarray(sgd.get_states()["step_counter"]).reshape(-1)[0]) == 4.0   # unchanged
