"""The tape itself: backward's walk, accumulation, flags, custom operators."""
import jax.numpy as jnp
import numpy as np
import pytest

from singax import autograd
from singax.autograd import Op, register
from singax.tensor import Tensor

_scale = register(Op("_test_scale", lambda x, factor: x * factor, attrs=(("factor", 2.0),),
                     cls="_TestScale"))
_sum1 = register(Op("_test_sum1", lambda x: jnp.sum(x).reshape(1), cls="_TestSum1"))
_add_pair = register(Op("_test_add", lambda a, b: a + b, inputs=2, cls="_TestAdd"))
autograd.OPS.pop("_test_add")
autograd.OPS.pop("_test_scale"); autograd.OPS.pop("_test_sum1")  # keep them out of the op table


class Sine(autograd.Operator):
    def forward(self, x):
        return jnp.sin(x)


class Cube(autograd.Operator):
    def forward(self, x):
        self.x = x
        return x ** 3

    def backward(self, dy):
        return 30.0 * self.x ** 2 * dy   # deliberately 10x: proves the user's backward runs


def test_operator_call_records_tape_and_returns_tuple():
    autograd.training = True
    x = Tensor(data=np.ones((2, 2)), stores_grad=True, name="x")
    ys = autograd.CLASSES["_TestScale"](3.0)(x)
    assert isinstance(ys, tuple) and len(ys) == 1
    y = ys[0]
    assert y.creator.src[0][1] == id(x) and y.creator.y_id2idx == {id(y): 0}
    assert y.name == y.creator.name + ":0" and y.requires_grad
    np.testing.assert_allclose(y.data, 3.0)


def test_shared_tensor_gradients_accumulate_and_yield_once():
    autograd.training = True
    x = Tensor(data=np.array([1.0, 2.0]), stores_grad=True, name="x")
    a = _scale(x, 2.0)
    b = _scale(x, 3.0)
    total = _sum1(_add_pair(a, b))
    pairs = list(autograd.backward(total))
    assert len(pairs) == 1 and pairs[0][0] is x
    np.testing.assert_allclose(pairs[0][1].data, [5.0, 5.0])


def test_params_without_stores_grad_are_not_yielded():
    autograd.training = True
    w = Tensor(data=np.ones(3), stores_grad=True, name="w")
    c = Tensor(data=np.ones(3), stores_grad=False)
    pairs = list(autograd.backward(_sum1(_scale(w, 1.0))))
    assert [p.name for p, _ in pairs] == ["w"]
    assert list(autograd.backward(_sum1(_scale(c, 1.0)))) == []


def test_user_operator_gets_backward_from_jax_vjp():
    autograd.training = True
    x = Tensor(data=np.array([0.1, 0.7, -1.2]), stores_grad=True)
    (p, g), = autograd.backward(_sum1(Sine()(x)[0]))
    np.testing.assert_allclose(g.data, np.cos([0.1, 0.7, -1.2]), rtol=1e-6)


def test_user_operator_backward_is_used_when_defined():
    autograd.training = True
    x = Tensor(data=np.array([1.0, 2.0]), stores_grad=True)
    (p, g), = autograd.backward(_sum1(Cube()(x)[0]))
    np.testing.assert_allclose(g.data, [30.0, 120.0])


def test_backward_after_eval_forward_is_a_clear_error():
    autograd.training = False
    x = Tensor(data=np.ones(2), stores_grad=True)
    y = _sum1(_scale(x, 1.0))
    assert y.creator.__dict__.get("_saved") is None
    with pytest.raises(RuntimeError, match="training"):
        list(autograd.backward(y))


def test_backward_needs_scalar_or_dy():
    autograd.training = True
    x = Tensor(data=np.ones((2, 2)), stores_grad=True)
    with pytest.raises(ValueError, match="one element"):
        list(autograd.backward(_scale(x, 1.0)))
    (p, g), = autograd.backward(_scale(x, 3.0), Tensor(data=np.full((2, 2), 2.0)))
    np.testing.assert_allclose(g.data, 6.0)


def test_second_backward_over_the_same_graph_gives_the_same_gradients():
    autograd.training = True
    rng = np.random.default_rng(0)
    w = Tensor(data=rng.standard_normal((3, 2)).astype(np.float32), stores_grad=True)
    x = Tensor(data=rng.standard_normal((4, 3)).astype(np.float32))
    y = _sum1(autograd.tanh(autograd.matmul(x, w)))
    first = {id(p): np.asarray(g.data) for p, g in autograd.backward(y)}
    second = {id(p): np.asarray(g.data) for p, g in autograd.backward(y)}
    expected = x.data.T @ (1 - np.tanh(x.data @ w.data) ** 2)
    np.testing.assert_allclose(first[id(w)], expected, rtol=1e-5)
    np.testing.assert_allclose(second[id(w)], first[id(w)], rtol=0, atol=0)


def test_saved_values_are_freed_with_the_graph():
    import gc
    import weakref
    autograd.training = True
    x = Tensor(data=np.ones(2), stores_grad=True)
    y = _sum1(_scale(x, 2.0))
    list(autograd.backward(y))
    op = weakref.ref(y.creator)
    del y
    gc.collect()
    assert op() is None


def test_infer_dependency_counts_consumers():
    autograd.training = True
    x = Tensor(data=np.ones(2), stores_grad=True)
    a = _scale(x, 2.0)
    y = _sum1(a)
    ops, tensors = autograd.infer_dependency(y.creator)
    assert tensors[id(a)] == 1 and tensors[id(x)] == 1
    assert ops[a.creator] == 1


def test_helpers_axis_helper_and_back_broadcast():
    assert autograd.axis_helper((2, 3, 4), (3, 1)) == (0, 2)
    g = autograd.back_broadcast((2, 3, 4), (3, 1), jnp.ones((2, 3, 4)))
    assert g.shape == (3, 1) and float(g[0, 0]) == 8.0


def test_tape_does_not_grow_over_1000_steps():
    import gc
    import jax
    autograd.training = True
    w = Tensor(data=np.ones((4, 3), np.float32) * 0.1, stores_grad=True, name="w")
    x = Tensor(data=np.ones((2, 4), np.float32))

    def step():
        loss = _sum1(_scale(autograd.matmul(x, w), 0.5))
        for p, g in autograd.backward(loss):
            p.data = p.data - 0.01 * g.data

    for _ in range(20):
        step()
    gc.collect()
    before = len(jax.live_arrays())
    for _ in range(1000):
        step()
    gc.collect()
    assert len(jax.live_arrays()) <= before + 2


def test_whole_backward_in_one_program_matches_the_op_by_op_walk(monkeypatch):
    from singax import autograd as ag
    from singax.autograd import _op
    ag.training = True
    rng = np.random.default_rng(4)
    x = Tensor(data=rng.normal(size=(6, 5)).astype(np.float32))
    labels = Tensor(data=rng.integers(0, 3, 6).astype(np.int32))
    w1 = Tensor(data=rng.normal(size=(5, 4)).astype(np.float32), stores_grad=True, requires_grad=True)
    w2 = Tensor(data=rng.normal(size=(4, 3)).astype(np.float32), stores_grad=True, requires_grad=True)
    b = Tensor(data=rng.normal(size=(3,)).astype(np.float32), stores_grad=True, requires_grad=True)

    def loss():
        h = ag.relu(ag.matmul(x, w1))
        h = ag.add(h, ag.mul(h, h))            # h used three times: gradients add up
        return ag.softmax_cross_entropy(ag.add_bias(ag.matmul(h, w2), b), labels)

    y = loss()
    assert _op._plan(y.creator) is not None   # this tape runs as one program
    fused_pairs = list(ag.backward(y))
    fused = {id(p): np.array(g.data) for p, g in fused_pairs}
    monkeypatch.setattr(_op, "fused_backward", lambda root, dy: None)
    walk_pairs = list(ag.backward(loss()))
    walk = {id(p): np.array(g.data) for p, g in walk_pairs}
    assert set(fused) == set(walk) == {id(w1), id(w2), id(b)}
    # SINGA's order (a stack walked from the loss): b, w2, w1, on both paths
    assert [p for p, _ in fused_pairs] == [p for p, _ in walk_pairs] == [b, w2, w1]
    for k in walk:
        np.testing.assert_allclose(fused[k], walk[k], rtol=1e-5, atol=1e-6)


def test_backward_yields_in_singa_stack_order_not_declaration_order(monkeypatch):
    from singax.autograd import _op
    autograd.training = True

    def chain():
        p1, p2, p3 = (Tensor(data=np.ones(s, np.float32), stores_grad=True, name=n)
                      for s, n in [((1, 2), "p1"), ((2, 2), "p2"), ((2, 2), "p3")])
        return autograd.reduce_mean(autograd.matmul(autograd.matmul(p1, p2), p3))

    assert [p.name for p, _ in autograd.backward(chain())] == ["p3", "p1", "p2"]
    monkeypatch.setattr(_op, "fused_backward", lambda root, dy: None)
    assert [p.name for p, _ in autograd.backward(chain())] == ["p3", "p1", "p2"]


def test_src_records_each_input_as_a_named_source_that_is_still_a_tuple():
    w = Tensor(data=np.ones((2, 2), np.float32), stores_grad=True, requires_grad=True)
    x = Tensor(data=np.full((2, 2), 3.0, np.float32), requires_grad=False)
    y = autograd.matmul(x, w)
    (sx, sw) = y.creator.src
    assert isinstance(sw, tuple) and len(sw) == 4
    assert sw.op is w.creator and sw.x_id == id(w) and sw.tensor is w and sw.stores_grad
    assert sx.tensor is None and not sx.stores_grad
    creator, x_id, t, stores = sw   # SINGA code unpacks the 4-tuple
    assert (creator, x_id, t, stores) == (w.creator, id(w), w, True)


def test_generated_functions_take_tensor_inputs_by_keyword_too():
    """SINGA's wrappers are plain functions (`prelu(x, slope)`), so keywords work there."""
    x = Tensor(data=np.array([[-1.0, 2.0]], np.float32))
    s = Tensor(data=np.array([[0.5, 0.25]], np.float32))
    np.testing.assert_allclose(autograd.relu(x=x).data, [[0.0, 2.0]])
    np.testing.assert_allclose(autograd.prelu(x, slope=s).data, [[-0.5, 2.0]])
    np.testing.assert_allclose(autograd.sub(y=s, x=x).data, [[-1.5, 1.75]])   # x is the first input
    np.testing.assert_allclose(autograd.matmul(x, w=Tensor(data=np.array([[1.0], [2.0]], np.float32))).data, [[3.0]])
    np.testing.assert_allclose(autograd.reduce_sum(x=x, axes=[1], keepdims=0).data, [1.0])
    with pytest.raises(TypeError, match="sub: expected 2 tensor inputs, got 1"):
        autograd.sub(x)


def test_leaf_gradients_are_named_after_the_tensor_and_unnamed_tensors_count():
    autograd.training = True
    before = Tensor.tensor_count
    anon = Tensor(data=np.ones(2, np.float32))
    assert anon.name == f"Dummy#{before}" and Tensor.tensor_count == before + 1
    w = Tensor(data=np.ones(2, np.float32), stores_grad=True, name="W")
    (p, g), = autograd.backward(autograd.reduce_sum(autograd.mul(w, anon), keepdims=0))
    assert p is w and g.name == "W_g" == w.creator.grad_name(0)


def test_backward_dy_must_fit_y():
    autograd.training = True
    w = Tensor(data=np.ones((2, 2), np.float32), stores_grad=True, name="w")
    loss = autograd.mse_loss(w, Tensor(data=np.zeros((2, 2), np.float32)))      # shape (1,)
    (_, g), = autograd.backward(loss, Tensor(data=np.ones((1, 1), np.float32)))  # SINGA's losses ignore dy
    np.testing.assert_allclose(g.data, np.full((2, 2), 0.5))
    y = autograd.mul(w, w)
    with pytest.raises(autograd.OperandError, match=r"backward: dy of shape \(4,\) does not fit y of shape \(2, 2\)"):
        list(autograd.backward(y, Tensor(data=np.ones(4, np.float32))))
    with pytest.raises(AssertionError, match="exactly one element"):
        list(autograd.backward(y))
