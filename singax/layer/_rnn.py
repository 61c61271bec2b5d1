"""Recurrent layers: step-by-step RNN and LSTM, and the whole-sequence CudnnRNN."""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from .. import autograd
from ..autograd.rnn import CudnnRNNHandle
from ..initializer import _uniform
from ..tensor import Tensor
from ._base import Layer, _gauss, _need_rank, _new, _unlogged_data


# --------------------------------------------------------------------------- recurrent
class RNN_Base(Layer):
    """Base of the step-by-step recurrent layers RNN and LSTM."""

    def step_forward(self, x=None, h=None, c=None, Wx=None, Wh=None, Bx=None, Bh=None, b=None):
        raise NotImplementedError(f"{type(self).__name__} must define step_forward")

    def _check_steps(self, xs: Any, states: Sequence[Tensor]) -> list:
        """xs must be a non-empty list of (N, input_size) tensors; states (N, hidden_size)."""
        label = self._label()
        if isinstance(xs, Tensor) or not isinstance(xs, (list, tuple)) or not xs:
            got = f"a Tensor of shape {xs.shape}" if isinstance(xs, Tensor) else repr(type(xs).__name__)
            raise ValueError(f"{label}: expected a non-empty list of (N, {self.input_size}) tensors, one per "
                             f"time step, got {got}; split the sequence, or use CudnnRNN for (T, N, F) input")
        n = xs[0].shape[0] if isinstance(xs[0], Tensor) and xs[0].ndim() >= 1 else None
        for t, x in enumerate(xs):
            if not isinstance(x, Tensor) or x.shape != (n, self.input_size):
                got = x.shape if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"{label}: expected step {t} of shape ({n}, {self.input_size}), got {got}")
        for what, h in zip(("h0", "c0"), states):
            if not isinstance(h, Tensor) or not _broadcasts(h.shape, (n, self.hidden_size)):
                got = h.shape if isinstance(h, Tensor) else type(h).__name__
                raise ValueError(f"{label}: expected {what} of shape ({n}, {self.hidden_size}) or one "
                                 f"that broadcasts with it, got {got}")
        return list(xs)


def _broadcasts(state: tuple, expected: tuple) -> bool:
    """Whether a 2-D state broadcasts with (N, hidden_size) in the step's additions, as SINGA
    allows (e.g. sampling one sequence from a state kept at the training batch)."""
    return len(state) == 2 and all(a == b or a == 1 or b == 1 for a, b in zip(state, expected))


def _warn_unused(owner: str, num_layers, bias, batch_first, dropout, bidirectional) -> None:
    unused = [f"{k}={v!r}" for k, v, default in (("num_layers", num_layers, 1), ("bias", bias, True),
                                                 ("batch_first", batch_first, False), ("dropout", dropout, 0),
                                                 ("bidirectional", bidirectional, False)) if v != default]
    if unused:
        warnings.warn(f"{owner}: {', '.join(unused)} ignored: {owner} is a single-layer, unidirectional "
                      f"step-by-step cell as in SINGA; use CudnnRNN for the others", stacklevel=3)


class RNN(RNN_Base):
    """Vanilla RNN over a list of time steps: h_t = act(h_{t-1} @ Wh + x_t @ Wx + b).

    `RNN(input_size, hidden_size, num_layers=1, nonlinearity="tanh", ...)`;
    `forward(xs, h0)` with xs a list of (N, input_size) tensors and h0 (N, hidden_size)
    returns `(list_of_h, h_last)`. A state whose batch (or width) is 1, or x's batch
    1 against a larger state batch, broadcasts as in SINGA. Wx (in, H) and Wh (H, H) ~ N(0, 1), b (H,) zeros.
    Only one unidirectional layer, as in SINGA (other arguments warn and are ignored).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0, bidirectional: bool = False):
        super().__init__()
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        _warn_unused("RNN", num_layers, bias, batch_first, dropout, bidirectional)
        self.input_size, self.hidden_size, self.nonlinearity = input_size, hidden_size, nonlinearity

    def initialize(self, xs: Sequence[Tensor], h0: Tensor) -> None:
        x = self._check_steps(xs, (h0,))[0]
        self.Wx = _gauss(_new((self.input_size, self.hidden_size), x), 1.0)
        self.Wh = _gauss(_new((self.hidden_size, self.hidden_size), x), 1.0)
        self.b = _new((self.hidden_size,), x)

    def forward(self, xs: Sequence[Tensor], h0: Tensor):
        xs = self._check_steps(xs, (h0,))
        self.device_check(xs[0], self.Wx, self.Wh, self.b)
        h, out = h0, []
        for x in xs:
            h = self.step_forward(x, h, self.Wx, self.Wh, self.b)
            out.append(h)
        return out, h

    def step_forward(self, x, h, Wx, Wh, b):
        y = autograd.add(autograd.matmul(h, Wh), autograd.matmul(x, Wx))
        y = autograd.add_bias(y, b, axis=0)
        return autograd.tanh(y) if self.nonlinearity == "tanh" else autograd.relu(y)


_GATES = ("i", "f", "o", "g")


class LSTM(RNN_Base):
    """LSTM over a list of time steps.

    `LSTM(input_size, hidden_size, nonlinearity="tanh", num_layers=1, ...)` (nonlinearity
    is the 3rd positional, unlike RNN; it is unused as in SINGA). `forward(xs, (h0, c0))`
    returns `(list_of_h, h_T, c_T)` with, per step,
    i, f, o = sigmoid(x @ Wx_* + Bx_* + h @ Wh_* + Bh_*), g = tanh(...),
    c' = f * c + i * g, h' = o * tanh(c'). Weights ~ N(0, 0.01), biases zeros.
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0, bidirectional: bool = False):
        super().__init__()
        _warn_unused("LSTM", num_layers, bias, batch_first, dropout, bidirectional)
        self.input_size, self.hidden_size, self.nonlinearity = input_size, hidden_size, nonlinearity

    def initialize(self, xs: Sequence[Tensor], h0_c0: Sequence[Tensor]) -> None:
        x = self._check_steps(xs, _pair_states(self, h0_c0))[0]
        I, H = self.input_size, self.hidden_size
        for g in _GATES:
            setattr(self, f"Wx_{g}", _gauss(_new((I, H), x), 0.01))
        for g in _GATES:
            setattr(self, f"Wh_{g}", _gauss(_new((H, H), x), 0.01))
        for g in _GATES:
            setattr(self, f"Bx_{g}", _new((H,), x))
        for g in _GATES:
            setattr(self, f"Bh_{g}", _new((H,), x))

    def forward(self, xs: Sequence[Tensor], h0_c0: Sequence[Tensor]):
        h, c = _pair_states(self, h0_c0)
        xs = self._check_steps(xs, (h, c))
        d = self.__dict__
        self.device_check(xs[0], *(d[f"{kind}_{g}"] for kind in ("Wx", "Wh", "Bx", "Bh") for g in _GATES))
        out = []
        for x in xs:
            h, c = self.step_forward(x, h, c)
            out.append(h)
        return out, h, c

    def _gate(self, g: str, x: Tensor, h: Tensor) -> Tensor:
        d = self.__dict__
        a = autograd.add_bias(autograd.matmul(x, d[f"Wx_{g}"]), d[f"Bx_{g}"], axis=0)
        b = autograd.add_bias(autograd.matmul(h, d[f"Wh_{g}"]), d[f"Bh_{g}"], axis=0)
        s = autograd.add(a, b)
        return autograd.tanh(s) if g == "g" else autograd.sigmoid(s)

    def step_forward(self, x, h, c):
        i, f, o, g = (self._gate(k, x, h) for k in _GATES)
        c = autograd.add(autograd.mul(f, c), autograd.mul(i, g))
        return autograd.mul(o, autograd.tanh(c)), c


def _pair_states(layer: Layer, h0_c0: Any) -> tuple:
    if isinstance(h0_c0, Tensor) or not isinstance(h0_c0, (tuple, list)) or len(h0_c0) != 2:
        raise ValueError(f"{layer._label()}: expected the initial states as a pair (h0, c0), "
                         f"got {type(h0_c0).__name__}")
    return tuple(h0_c0)


def _flag(name: str, value: Any) -> bool:
    """A CudnnRNN switch as a bool; the strings "True"/"False" (any case) are read as
    written, as command-line scripts pass them (`bool("False")` would be True)."""
    if isinstance(value, str):
        if value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise TypeError(f"CudnnRNN: {name} must be a bool, got the string {value!r}")
    if isinstance(value, (bool, int, np.bool_, np.integer)):
        return bool(value)
    raise TypeError(f"CudnnRNN: {name} must be a bool, got {type(value).__name__}")


class CudnnRNN(Layer):
    """Multi-layer (bidirectional) RNN, LSTM or GRU over a whole sequence in one op
    (`lax.scan`), with cuDNN's flat weight vector `W`.

    `CudnnRNN(hidden_size, activation="tanh", num_layers=1, bias=True, batch_first=True,
    dropout=0, bidirectional=False, rnn_mode="lstm", use_mask=False, return_sequences=True)`.
    `forward(x, hx=None, cx=None, seq_lengths=None)`: x (B, T, F) if batch_first else
    (T, B, F); hx, cx (num_layers * D, B, H) default to zeros. Returns y (B, T, H * D) /
    (T, B, H * D), or the last time step (B, H * D) without return_sequences.
    `rnn_mode` is "lstm", "gru", "tanh" (or "vanilla") or "relu"; `activation` is unused.
    W ~ U(-1/sqrt(H), 1/sqrt(H)). The flat layout is described in `autograd.CudnnRNNHandle`.

    The bool switches also take the strings "True"/"False" (any case).

    SINGA: CUDA only; singax runs everywhere and applies no dropout between layers. SINGA
    took any non-empty string switch as true.
    """

    def __init__(self, hidden_size: int, activation: str = "tanh", num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0, bidirectional: bool = False,
                 rnn_mode: str = "lstm", use_mask: bool = False, return_sequences: bool = True):
        super().__init__()
        if rnn_mode not in ("lstm", "gru", "tanh", "vanilla", "relu"):
            raise ValueError(f"CudnnRNN: rnn_mode must be 'lstm', 'gru', 'tanh', 'vanilla' or 'relu', "
                             f"got {rnn_mode!r}")
        self.hidden_size, self.activation, self.num_layers = hidden_size, activation, num_layers
        self.bias, self.batch_first = _flag("bias", bias), _flag("batch_first", batch_first)
        self.dropout, self.rnn_mode = dropout, rnn_mode
        self.bidirectional = _flag("bidirectional", bidirectional)
        self.use_mask, self.return_sequences = _flag("use_mask", use_mask), _flag("return_sequences", return_sequences)

    def _time_major(self, shape: tuple) -> tuple:
        return (shape[1], shape[0], shape[2]) if self.batch_first else shape

    def initialize(self, x: Tensor, hx: Tensor | None = None, cx: Tensor | None = None,
                   seq_lengths: Tensor | None = None) -> None:
        _need_rank(self, x, (3,), "(B, T, F)" if self.batch_first else "(T, B, F)")
        self.input_size = x.shape[2]
        self._build(x.shape)
        W = _new((self.handle.weights_size,), x)
        k = 1.0 / math.sqrt(self.hidden_size)
        _uniform(W, -k, k)
        self.W = W

    def _build(self, shape: tuple) -> None:
        self.handle = CudnnRNNHandle(self._time_major(shape), self.hidden_size, self.rnn_mode,
                                         self.num_layers, self.bias, self.dropout, self.bidirectional)
        self._shape = shape

    def forward(self, x: Tensor, hx: Tensor | None = None, cx: Tensor | None = None,
                seq_lengths: Tensor | None = None) -> Tensor:
        shape = x.shape
        if shape != self._shape:
            if len(shape) != 3 or shape[2] != self.input_size:
                layout = "(B, T, {})" if self.batch_first else "(T, B, {})"
                raise ValueError(f"{self._label()}: expected input {layout.format(self.input_size)}, "
                                 f"got shape {shape}")
            self._build(shape)
        if self.use_mask and seq_lengths is None:
            raise ValueError(f"{self._label()}: use_mask=True needs seq_lengths")
        self.device_check(x, self.W)
        self.dtype_check(x, self.W)
        if self.batch_first:
            x = autograd.transpose(x, (1, 0, 2))
        D = 2 if self.bidirectional else 1
        state = (self.num_layers * D, x.shape[1], self.hidden_size)
        zeros = None
        if hx is None or cx is None:
            dtype = _unlogged_data(self.W).dtype
            zeros = Tensor(device=x.device, data=jnp.zeros(state, dtype), requires_grad=False)
        hx, cx = (zeros if hx is None else hx), (zeros if cx is None else cx)
        op = autograd._RNN(self.handle, self.return_sequences, self.use_mask, seq_lengths)
        y = op(x, hx, cx, self.W)[0]
        if self.return_sequences and self.batch_first:
            y = autograd.transpose(y, (1, 0, 2))
        return y
