"""GraphFunction: state discovery, one compile per input signature, eager agreement."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from singax import autograd, device
from singax._compile import GraphFunction
from singax.autograd import Op, register
from singax.tensor import Tensor

_mm = register(Op("_c_matmul", jnp.matmul, inputs=2, cls="_CMatmul"))
_sq = register(Op("_c_sqsum", lambda x: jnp.sum(x ** 2).reshape(1), cls="_CSqSum"))
for _n in ("_c_matmul", "_c_sqsum"):
    autograd.OPS.pop(_n)


class Trainer:
    """A hand-written momentum-SGD loop with lazily created slots and a random draw."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.w = Tensor(data=rng.standard_normal((3, 4)).astype(np.float32), stores_grad=True, name="w")
        self.slots = {}
        self.dev = device.get_default_device()

    def step(self, x):
        loss = _sq(_mm(x, self.w))
        for p, g in autograd.backward(loss):
            if id(p) not in self.slots:
                with jax.ensure_compile_time_eval():
                    self.slots[id(p)] = Tensor(data=jnp.zeros(p.shape, jnp.float32))
            m = self.slots[id(p)]
            m.data = 0.9 * m.data + g.data
            p.data = p.data - 0.01 * m.data
        noise = jax.random.normal(self.dev.next_key(), (2,))
        return loss, Tensor(data=noise)


def run(compiled, steps=6, batch=5):
    autograd.training = True
    device.get_default_device().SetRandSeed(7)
    tr = Trainer()
    fn = GraphFunction(tr.step) if compiled else tr.step
    xs = np.random.default_rng(3).standard_normal((steps, batch, 3)).astype(np.float32)
    outs = [fn(Tensor(data=x)) for x in xs]
    return tr, fn, [(np.array(l.data), np.array(n.data)) for l, n in outs]


def test_compiled_matches_eager_including_state_and_random_stream():
    tr_e, _, eager = run(False)
    tr_g, fn, graph = run(True)
    for (le, ne), (lg, ng) in zip(eager, graph):
        np.testing.assert_allclose(lg, le, rtol=1e-5)
        np.testing.assert_allclose(ng, ne, rtol=1e-6)
    np.testing.assert_allclose(tr_g.w.data, tr_e.w.data, rtol=1e-5)
    (se,), (sg,) = tr_e.slots.values(), tr_g.slots.values()
    np.testing.assert_allclose(sg.data, se.data, rtol=1e-5)
    assert fn.compile_count == 1


def test_state_discovery_and_retrace_only_on_new_signature():
    autograd.training = True
    tr = Trainer()
    fn = GraphFunction(tr.step)
    for _ in range(10):
        fn(Tensor(data=np.ones((5, 3), np.float32)))
    assert fn.compile_count == 1
    fn(Tensor(data=np.ones((2, 3), np.float32)))   # smaller last batch
    assert fn.compile_count == 2
    fn(Tensor(data=np.ones((5, 3), np.float32)))
    assert fn.compile_count == 2


def test_outputs_of_earlier_steps_are_not_overwritten():
    autograd.training = True
    tr = Trainer()
    fn = GraphFunction(tr.step)
    x = Tensor(data=np.ones((5, 3), np.float32))
    l1, _ = fn(x)
    v1 = np.array(l1.data)
    l2, _ = fn(x)
    np.testing.assert_array_equal(np.array(l1.data), v1)
    assert float(l2.data[0]) != float(v1[0])


def test_no_tracer_leaks_into_tensors():
    autograd.training = True
    tr = Trainer()
    fn = GraphFunction(tr.step)
    with jax.checking_leaks():
        fn(Tensor(data=np.ones((5, 3), np.float32)))
    for t in [tr.w, *tr.slots.values()]:
        assert not isinstance(t.data, jax.core.Tracer)
    assert not isinstance(tr.dev._key.data, jax.core.Tracer)


def test_reading_a_value_inside_the_step_explains_the_fix():
    autograd.training = True
    w = Tensor(data=np.ones((3, 4), np.float32), stores_grad=True)

    def step(x):
        loss = _sq(_mm(x, w))
        if float(loss.data[0]) > 0:
            return loss
    with pytest.raises(RuntimeError, match="use_graph=False"):
        GraphFunction(step)(Tensor(data=np.ones((2, 3), np.float32)))
    assert not isinstance(w.data, jax.core.Tracer)


def test_k_steps_in_one_dispatch_match_k_single_steps():
    autograd.training = True
    xs = np.random.default_rng(5).standard_normal((4, 5, 3)).astype(np.float32)
    device.get_default_device().SetRandSeed(1)
    single = Trainer()
    fn = GraphFunction(single.step)
    losses = [np.array(fn(Tensor(data=x))[0].data) for x in xs]
    device.get_default_device().SetRandSeed(1)
    multi = Trainer()
    fk = GraphFunction(multi.step)
    stacked_loss, stacked_noise = fk.scan(Tensor(data=xs))
    assert stacked_loss.shape == (4, 1) and stacked_noise.shape == (4, 2)
    np.testing.assert_allclose(np.array(stacked_loss.data)[:, 0], np.concatenate(losses), rtol=1e-5)
    np.testing.assert_allclose(multi.w.data, single.w.data, rtol=1e-5)
    assert fk.compile_count == 1
    with pytest.raises(ValueError, match="leading"):
        fk.scan(Tensor(data=xs), Tensor(data=np.ones((3, 2), np.float32)))


def _plain_sgd_step(w, x):
    """One eager-formula step of `Trainer` without momentum history (for expected values)."""
    g = 2 * x.T @ (x @ w)
    return w - 0.01 * g


def test_state_written_between_steps_is_what_the_next_step_reads():
    autograd.training = True
    tr = Trainer()
    fn = GraphFunction(tr.step)
    x = np.ones((5, 3), np.float32)
    fn(Tensor(data=x))
    # the user overwrites a parameter and its momentum slot between two compiled steps
    w_new = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    tr.w.copy_from_numpy(w_new)
    (slot,) = tr.slots.values()
    slot.data = jnp.zeros((3, 4), jnp.float32)
    fn(Tensor(data=x))
    np.testing.assert_allclose(np.array(tr.w.data), _plain_sgd_step(w_new, x), rtol=1e-5)
    assert fn.compile_count == 1


def test_aliased_state_buffers_are_copied_not_donated_twice():
    autograd.training = True
    tr = Trainer()
    fn = GraphFunction(tr.step)
    x = Tensor(data=np.ones((5, 3), np.float32))
    fn(x)
    (slot,) = tr.slots.values()
    slot.data = tr.w.data            # two state tensors now share one buffer
    w_before = np.array(tr.w.data)
    fn(x)
    expected = w_before - 0.01 * (0.9 * w_before + 2 * np.ones((3, 5)) @ (np.ones((5, 3)) @ w_before))
    np.testing.assert_allclose(np.array(tr.w.data), expected, rtol=1e-5)


def test_state_tensors_copy_with_their_current_value():
    import copy
    autograd.training = True
    tr = Trainer()
    fn = GraphFunction(tr.step)
    x = Tensor(data=np.ones((5, 3), np.float32))
    for _ in range(2):
        fn(x)
    now = np.array(tr.w.data)
    for clone in (copy.copy(tr.w), copy.deepcopy(tr.w)):
        np.testing.assert_array_equal(np.array(clone.data), now)
        assert clone.shape == (3, 4) and clone.name == "w"
    fn(x)   # the copies do not follow the original
    assert not np.array_equal(np.array(tr.w.data), now)


@pytest.mark.skipif(len(jax.local_devices()) < 2, reason="needs a second device")
def test_a_model_on_a_non_default_device_compiles_with_its_optimizer_state_moved():
    from singax import layer, model, opt
    autograd.training = True
    dev = device.get_devices()[1]

    class Net(model.Model):
        def __init__(self):
            super().__init__()
            self.fc = layer.Linear(3)
            self.loss = layer.SoftMaxCrossEntropy()

        def forward(self, x):
            return self.fc(x)

        def train_one_batch(self, x, y):
            out = self.forward(x)
            loss = self.loss(out, y)
            self.optimizer(loss)
            return out, loss

    dev.SetRandSeed(0)
    net = Net()
    net.optimizer = opt.SGD(0.1, momentum=0.9)   # its counter is made on the default device
    x = Tensor(data=np.ones((4, 5), np.float32), device=dev)
    y = Tensor(data=np.array([0, 1, 2, 0], np.int32), device=dev)
    net.compile([x], is_train=True, use_graph=True)
    _, loss = net(x, y)
    assert loss.data.devices() == {dev.jax_device}
    assert net.optimizer.step_counter.data.devices() == {dev.jax_device}
