"""The benchmark workloads W1-W4: each singax model (written against SINGA's public API)
and its hand-written pure-JAX + optax twin, which reads its initial parameters from an
initialised singax model (same names, same layouts).
"""
from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
NEEDS = {  # singax pieces each workload uses (module, names)
    "W1": ("layer", ("Linear", "ReLU", "SoftMaxCrossEntropy")),
    "W2": ("layer", ("Conv2d", "MaxPool2d", "Flatten", "Linear", "ReLU", "SoftMaxCrossEntropy")),
    "W3": ("layer", ("Conv2d", "BatchNorm2d", "ReLU", "Add", "AvgPool2d", "Flatten", "Linear",
                     "SoftMaxCrossEntropy")),
    "W4": ("layer", ("Embedding", "Linear", "SoftMaxCrossEntropy")),
}


def singax_missing(key: str) -> str | None:
    """Why workload `key` cannot build its singax model yet (None when it can)."""
    try:
        from singax import layer, model, opt  # noqa: F401
    except Exception as err:  # noqa: BLE001
        return f"singax import failed: {err}"
    _, names = NEEDS[key]
    missing = [n for n in names if not hasattr(layer, n)]
    missing += [f"opt.{n}" for n in ("SGD", "Adam") if not hasattr(opt, n)]
    if not hasattr(getattr(model, "Model", None), "compile"):
        missing.append("model.Model.compile")
    if key == "W4" and not (hasattr(layer, "CudnnRNN") or hasattr(layer, "LSTM")):
        missing.append("CudnnRNN or LSTM")
    return f"singax lacks {', '.join(missing)}" if missing else None


# --------------------------------------------------------------------------- pure-JAX pieces
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example_cnn() -> type:
    """W2's model: SINGA's MNIST CNN as examples/mnist_cnn.py defines it (one definition for
    the example, the tests and the benchmarks)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        return importlib.import_module("mnist_cnn").CNN
    finally:
        sys.path.remove(str(EXAMPLES))


def _np(t) -> np.ndarray:
    """A host copy of a singax Tensor's value (a fresh buffer for every implementation)."""
    return np.array(t.data)


def _dense(p, x):
    return x @ p["W"] + p["b"]           # singax Linear: W is (in, out)


def _conv(x, W, b=None, stride=1, padding=0):
    y = lax.conv_general_dilated(x, W, (stride, stride), [(padding, padding)] * 2,
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y if b is None else y + b[None, :, None, None]


def _max_pool(x, k, s):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, k, k), (1, 1, s, s), "VALID")


def _avg_pool(x, k, s):
    return lax.reduce_window(x, 0.0, lax.add, (1, 1, k, k), (1, 1, s, s), "VALID") / (k * k)


def _batchnorm(x, p, s, momentum=0.9, eps=1e-5):
    """SINGA's training-mode BatchNorm2d; returns (y, new running stats)."""
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
    n = x.size // x.shape[1]
    c = (slice(None), None, None)
    y = (x - mean[c]) * lax.rsqrt(var + eps)[c] * p["scale"][c] + p["bias"][c]
    new = {"running_mean": (1 - momentum) * s["running_mean"] + momentum * mean,
           "running_var": (1 - momentum) * s["running_var"] + momentum * var * (n / (n - 1))}
    return y, new


def _cross_entropy(logits, labels):
    """Mean softmax cross-entropy with integer labels (SINGA's SoftMaxCrossEntropy)."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels.reshape(-1, 1), axis=1))


def sgd_tx(lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """SINGA's SGD in optax: g + wd*p, then v = m*v + g (v starts at 0), p -= lr*v."""
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    return optax.chain(*parts, optax.sgd(lr, momentum=momentum or None))


def adam_tx(lr: float) -> optax.GradientTransformation:
    """SINGA's Adam (L2-free, epsilon outside the root) in optax."""
    return optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)


def jax_step(loss_fn: Callable, tx: optax.GradientTransformation) -> Callable:
    """`step(params, state, opt_state, *batch) -> (params, state, opt_state, loss)` (not jitted)."""

    def step(params, state, opt_state, *batch):
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss
    return step


class JaxRunner:
    """Holds a pure-JAX training state and advances it one step per call."""

    def __init__(self, step: Callable, params, state, tx, batch: Sequence[Any]):
        self.step, self.params, self.state = step, params, state
        self.opt_state = tx.init(params)
        self.batch = [jax.device_put(b, jax.devices()[0]) for b in batch]

    def __call__(self):
        self.params, self.state, self.opt_state, loss = self.step(
            self.params, self.state, self.opt_state, *self.batch)
        return loss

    def sync(self, loss):
        return (self.params, self.state, self.opt_state, loss)


# --------------------------------------------------------------------------- workload table
@dataclasses.dataclass
class Workload:
    """One benchmark workload: data, the singax model, and its pure-JAX twin.

    Args:
      make_model: builds the singax Model (optimizer set, not yet compiled).
      batch: rng -> the numpy inputs passed to `train_one_batch` (x, y).
      to_jax: an initialised singax model -> (params, state) pytrees for `loss_fn`.
      loss_fn: pure `(params, state, x, y) -> (loss, new_state)`.
      tx: the optax twin of the singax optimizer.
    """

    key: str
    title: str
    make_model: Callable[[], Any]
    batch: Callable[[np.random.Generator], tuple]
    to_jax: Callable[[Any], tuple]
    loss_fn: Callable
    tx: Callable[[], optax.GradientTransformation]
    steps: int = 30
    warmup: int = 5


def _models():
    """The singax models, built only when singax's layers exist."""
    from singax import autograd, layer, model, opt

    class MLP(model.Model):
        """W1: 784-100-10 perceptron (the seed document's Model example, MNIST-sized)."""

        def __init__(self, hidden=100, classes=10):
            super().__init__()
            self.linear1 = layer.Linear(hidden)
            self.relu = layer.ReLU()
            self.linear2 = layer.Linear(classes)
            self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

        def forward(self, x):
            return self.linear2(self.relu(self.linear1(x)))

        def train_one_batch(self, x, y):
            out = self.forward(x)
            loss = self.softmax_cross_entropy(out, y)
            self.optimizer(loss)
            return out, loss

        def set_optimizer(self, optimizer):
            self.optimizer = optimizer

    CNN = example_cnn()

    class BasicBlock(layer.Layer):
        def __init__(self, planes, stride=1, shortcut=False):
            super().__init__()
            self.conv1 = layer.Conv2d(planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = layer.BatchNorm2d()
            self.relu1 = layer.ReLU()
            self.conv2 = layer.Conv2d(planes, 3, stride=1, padding=1, bias=False)
            self.bn2 = layer.BatchNorm2d()
            self.add = layer.Add()
            self.relu2 = layer.ReLU()
            self.has_shortcut = shortcut
            if shortcut:
                self.conv_sc = layer.Conv2d(planes, 1, stride=stride, bias=False)
                self.bn_sc = layer.BatchNorm2d()

        def forward(self, x):
            y = self.relu1(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            sc = self.bn_sc(self.conv_sc(x)) if self.has_shortcut else x
            return self.relu2(self.add(y, sc))

    class ResNet18(model.Model):
        """W3: ResNet-18 for 32x32 inputs (3x3 stem, no stem pooling), BatchNorm everywhere."""

        def __init__(self, classes=10):
            super().__init__()
            self.conv1 = layer.Conv2d(64, 3, stride=1, padding=1, bias=False)
            self.bn1 = layer.BatchNorm2d()
            self.relu = layer.ReLU()
            self.block_names = []
            for i, (planes, stride) in enumerate(RESNET18_STAGES):
                for j in range(2):
                    name = f"layer{i + 1}_{j}"
                    s = stride if j == 0 else 1
                    setattr(self, name, BasicBlock(planes, s, shortcut=(j == 0 and (s != 1 or i > 0))))
                    self.block_names.append(name)
            self.avgpool = layer.AvgPool2d(4, 4)
            self.flatten = layer.Flatten()
            self.fc = layer.Linear(classes)
            self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            for name in self.block_names:
                y = getattr(self, name)(y)
            return self.fc(self.flatten(self.avgpool(y)))

        def train_one_batch(self, x, y):
            out = self.forward(x)
            loss = self.softmax_cross_entropy(out, y)
            self.optimizer(loss)
            return out, loss

        def set_optimizer(self, optimizer):
            self.optimizer = optimizer

    class LSTMLM(model.Model):
        """W4: embedding -> one LSTM layer -> linear over the vocabulary, every position scored."""

        def __init__(self, vocab=1000, emb=128, hidden=256):
            super().__init__()
            self.hidden = hidden
            self.embedding = layer.Embedding(vocab, emb)
            self.cudnn = hasattr(layer, "CudnnRNN")
            if self.cudnn:
                self.rnn = layer.CudnnRNN(hidden, batch_first=True, rnn_mode="lstm", return_sequences=True)
            else:
                self.rnn = layer.LSTM(emb, hidden)
            self.dense = layer.Linear(vocab)
            self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

        def initialize(self, x):
            if not self.cudnn:  # SINGA's char-rnn pattern: the initial states are made here
                from singax import tensor
                self.hx = tensor.Tensor((x.shape[0], self.hidden), x.device)
                self.cx = tensor.Tensor((x.shape[0], self.hidden), x.device)

        def forward(self, x):                       # x: (B, T) token ids
            e = self.embedding(x)                   # (B, T, E)
            B, T = x.shape
            if self.cudnn:
                h = self.rnn(e)                     # (B, T, H)
            else:  # SINGA's LSTM layer takes a list of time steps, each (B, E)
                steps = autograd.split(autograd.transpose(e, (1, 0, 2)), 0, [1] * T)
                xs = [autograd.reshape(s, (B, -1)) for s in steps]
                hs, _, _ = self.rnn(xs, (self.hx, self.cx))
                h = autograd.transpose(autograd.cat([autograd.reshape(s, (1, B, -1)) for s in hs], 0),
                                       (1, 0, 2))
            return self.dense(autograd.reshape(h, (B * T, self.hidden)))

        def train_one_batch(self, x, y):            # y: (B*T,) next-token ids, batch-major
            out = self.forward(x)
            loss = self.softmax_cross_entropy(out, y)
            self.optimizer(loss)
            return out, loss

        def set_optimizer(self, optimizer):
            self.optimizer = optimizer

    return dict(MLP=MLP, CNN=CNN, ResNet18=ResNet18, LSTMLM=LSTMLM, opt=opt)


RESNET18_STAGES = [(64, 1), (128, 2), (256, 2), (512, 2)]


# --------------------------------------------------------------------------- W1 MLP
def _w1_model():
    m = _models()
    model = m["MLP"]()
    model.set_optimizer(m["opt"].SGD(lr=0.05, momentum=0.9))
    return model


def _w1_to_jax(model):
    params = {k: {"W": _np(getattr(model, k).W), "b": _np(getattr(model, k).b)}
              for k in ("linear1", "linear2")}
    return params, {}


def _w1_loss(p, s, x, y):
    h = jax.nn.relu(_dense(p["linear1"], x))
    return _cross_entropy(_dense(p["linear2"], h), y), s


def _w1_batch(rng):
    return (rng.standard_normal((64, 784)).astype(np.float32),
            rng.integers(0, 10, 64).astype(np.int32))


# --------------------------------------------------------------------------- W2 CNN
def _w2_model():
    m = _models()
    model = m["CNN"]()
    model.set_optimizer(m["opt"].SGD(lr=0.005, momentum=0.9, weight_decay=1e-5))
    return model


def _w2_to_jax(model):
    layers = ("conv1", "conv2", "linear1", "linear2")
    return {k: {"W": _np(getattr(model, k).W), "b": _np(getattr(model, k).b)} for k in layers}, {}


def _w2_loss(p, s, x, y):
    y1 = _max_pool(jax.nn.relu(_conv(x, p["conv1"]["W"], p["conv1"]["b"])), 2, 2)
    y2 = _max_pool(jax.nn.relu(_conv(y1, p["conv2"]["W"], p["conv2"]["b"])), 2, 2)
    h = jax.nn.relu(_dense(p["linear1"], y2.reshape(y2.shape[0], -1)))
    return _cross_entropy(_dense(p["linear2"], h), y), s


def _w2_batch(rng):
    return (rng.standard_normal((64, 1, 28, 28)).astype(np.float32),
            rng.integers(0, 10, 64).astype(np.int32))


# --------------------------------------------------------------------------- W3 ResNet-18
def _w3_model():
    m = _models()
    model = m["ResNet18"]()
    model.set_optimizer(m["opt"].SGD(lr=0.005, momentum=0.9, weight_decay=1e-5))
    return model


def _bn_of(bn):
    return {"scale": _np(bn.scale), "bias": _np(bn.bias)}, \
        {"running_mean": _np(bn.running_mean), "running_var": _np(bn.running_var)}


def _w3_to_jax(model):
    params, state = {"conv1": _np(model.conv1.W), "fc": {"W": _np(model.fc.W), "b": _np(model.fc.b)},
                     "blocks": []}, {"blocks": []}
    params["bn1"], state["bn1"] = _bn_of(model.bn1)
    for name in model.block_names:
        blk = getattr(model, name)
        p, s = {"conv1": _np(blk.conv1.W), "conv2": _np(blk.conv2.W)}, {}
        p["bn1"], s["bn1"] = _bn_of(blk.bn1)
        p["bn2"], s["bn2"] = _bn_of(blk.bn2)
        if blk.has_shortcut:
            p["conv_sc"] = _np(blk.conv_sc.W)
            p["bn_sc"], s["bn_sc"] = _bn_of(blk.bn_sc)
        params["blocks"].append(p)
        state["blocks"].append(s)
    return params, state


def _resnet_strides():
    return [stride if j == 0 else 1 for _, stride in RESNET18_STAGES for j in range(2)]


def _w3_loss(p, s, x, labels):
    new = {"blocks": []}
    h, new["bn1"] = _batchnorm(_conv(x, p["conv1"], padding=1), p["bn1"], s["bn1"])
    h = jax.nn.relu(h)
    for bp, bs, stride in zip(p["blocks"], s["blocks"], _resnet_strides()):
        ns = {}
        y, ns["bn1"] = _batchnorm(_conv(h, bp["conv1"], stride=stride, padding=1), bp["bn1"], bs["bn1"])
        y, ns["bn2"] = _batchnorm(_conv(jax.nn.relu(y), bp["conv2"], padding=1), bp["bn2"], bs["bn2"])
        if "conv_sc" in bp:
            sc, ns["bn_sc"] = _batchnorm(_conv(h, bp["conv_sc"], stride=stride), bp["bn_sc"], bs["bn_sc"])
        else:
            sc = h
        h = jax.nn.relu(y + sc)
        new["blocks"].append(ns)
    h = _avg_pool(h, 4, 4).reshape(h.shape[0], -1)
    return _cross_entropy(_dense(p["fc"], h), labels), new


def _w3_batch(rng):
    return (rng.standard_normal((32, 3, 32, 32)).astype(np.float32),
            rng.integers(0, 10, 32).astype(np.int32))


# --------------------------------------------------------------------------- W4 LSTM LM
W4_SHAPE = dict(vocab=1000, emb=128, hidden=256, seq=35, batch=20)


def _w4_model():
    m = _models()
    model = m["LSTMLM"](W4_SHAPE["vocab"], W4_SHAPE["emb"], W4_SHAPE["hidden"])
    model.set_optimizer(m["opt"].Adam(lr=1e-3))
    return model


def _w4_to_jax(model):
    H = model.hidden
    params = {"emb": _np(model.embedding.W), "dense": {"W": _np(model.dense.W), "b": _np(model.dense.b)}}
    if model.cudnn:  # flat cuDNN layout: W_ih (4H, E), W_hh (4H, H), b_ih, b_hh; gates i, f, g, o
        flat = _np(model.rnn.W)
        E = params["emb"].shape[1]
        sizes = [4 * H * E, 4 * H * H, 4 * H, 4 * H]
        wih, whh, bih, bhh = np.split(flat, np.cumsum(sizes)[:-1])
        params["lstm"] = {"wih": wih.reshape(4 * H, E).T.copy(), "whh": whh.reshape(4 * H, H).T.copy(),
                          "bih": bih.copy(), "bhh": bhh.copy()}
    else:  # SINGA's LSTM layer: per-gate (in, H) matrices and two biases per gate
        r = model.rnn
        gates = "ifgo"
        params["lstm"] = {
            "wih": np.concatenate([_np(getattr(r, f"Wx_{g}")) for g in gates], axis=1),
            "whh": np.concatenate([_np(getattr(r, f"Wh_{g}")) for g in gates], axis=1),
            "bih": np.concatenate([_np(getattr(r, f"Bx_{g}")) for g in gates]),
            "bhh": np.concatenate([_np(getattr(r, f"Bh_{g}")) for g in gates])}
    return params, {}


def _w4_loss(p, s, x, y):
    B, T = x.shape
    e = p["emb"][x]                                           # (B, T, E)
    lstm = p["lstm"]
    # the input projection of all steps at once; the two biases stay two parameters, as in the model
    xp = jnp.einsum("bte,eg->tbg", e, lstm["wih"]) + lstm["bih"] + lstm["bhh"]
    H = lstm["whh"].shape[0]

    def cell(hc, xp_t):
        h, c = hc
        i, f, g, o = jnp.split(xp_t + h @ lstm["whh"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((B, H), xp.dtype)
    _, hs = lax.scan(cell, (zeros, zeros), xp)                # (T, B, H)
    h = jnp.swapaxes(hs, 0, 1).reshape(B * T, H)
    return _cross_entropy(_dense(p["dense"], h), y), s


def _w4_batch(rng):
    c = W4_SHAPE
    tokens = rng.integers(0, c["vocab"], (c["batch"], c["seq"] + 1)).astype(np.int32)
    return tokens[:, :-1].copy(), tokens[:, 1:].reshape(-1).copy()


WORKLOADS = {
    "W1": Workload("W1", "MLP 784-100-10, batch 64, SGD(0.05, m=0.9)", _w1_model, _w1_batch,
                   _w1_to_jax, _w1_loss, lambda: sgd_tx(0.05, 0.9), steps=100, warmup=10),
    "W2": Workload("W2", "SINGA MNIST CNN, batch 64, SGD(0.005, m=0.9, wd=1e-5)", _w2_model, _w2_batch,
                   _w2_to_jax, _w2_loss, lambda: sgd_tx(0.005, 0.9, 1e-5)),
    "W3": Workload("W3", "ResNet-18 CIFAR (BN train), batch 32, SGD(0.005, m=0.9, wd=1e-5)", _w3_model,
                   _w3_batch, _w3_to_jax, _w3_loss, lambda: sgd_tx(0.005, 0.9, 1e-5), steps=12),
    "W4": Workload("W4", "LSTM LM V=1000 E=128 H=256 T=35 B=20, Adam(1e-3)", _w4_model, _w4_batch,
                   _w4_to_jax, _w4_loss, lambda: adam_tx(1e-3)),
}
