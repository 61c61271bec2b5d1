"""cuDNN-style recurrent networks (`_RNN`): a flat weight vector,
multi-layer and bidirectional RNN/LSTM/GRU over `lax.scan`."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._op import CLASSES, BuiltinOperator, Op, register
from .nn import _Handle, _shape_of
from ..tensor import Tensor

__all__ = ["CudnnRNNHandle", "_RNN"]


_RNN_MODES = {"relu": 0, "tanh": 1, "vanilla": 1, "lstm": 2, "gru": 3}
_RNN_GATES = {0: 1, 1: 1, 2: 4, 3: 3}


class CudnnRNNHandle(_Handle):
    """Configuration of a multi-layer RNN with a flat weight vector (SINGA's `CudnnRNNHandle`).

    `CudnnRNNHandle(x, hidden_size, mode=0, num_layers=1, bias=True, dropout=0.0,
    bidirectional=False)`.

    Args:
      x: the input (seq_length, batch_size, feature_size): a Tensor, an array or its shape.
      hidden_size: H.
      mode: cuDNN code 0 relu, 1 tanh, 2 lstm, 3 gru, or one of the strings
        "relu", "tanh"/"vanilla", "lstm", "gru"; stored as the int code.
      num_layers, bias, bidirectional: as in cuDNN (bias = two bias vectors per gate).
      dropout: stored only (singax applies no dropout between RNN layers).

    Attributes: `mode, num_layers, hidden_size, feature_size, bidirectional, dropout,
    bias, weights_size, batch_size, seq_length`.

    Flat weight layout of `W` (`weights_size` elements): for each layer l, for each
    direction d (forward, then backward), one block
    `[W_ih (G*H, in_l), W_hh (G*H, H), b_ih (G*H,), b_hh (G*H,)]`, each row-major, where
    in_l = feature_size for l = 0 and H * num_directions above, and G gates stacked in
    cuDNN order (LSTM: i, f, g, o; GRU: r, z, n; plain RNN: one). Without bias the
    b blocks are absent.
    """

    _fields = ("mode", "num_layers", "hidden_size", "feature_size", "bidirectional", "bias", "dropout")

    def __init__(self, x: Any, hidden_size: int, mode: Any = 0, num_layers: int = 1, bias: bool = True,
                 dropout: float = 0.0, bidirectional: bool = False):
        shape = _shape_of(x)
        if len(shape) != 3:
            raise ValueError(f"CudnnRNNHandle: expected input (seq_length, batch_size, feature_size), "
                             f"got shape {shape}")
        if isinstance(mode, str):
            if mode not in _RNN_MODES:
                raise ValueError(f"CudnnRNNHandle: unknown mode {mode!r}; expected one of {sorted(_RNN_MODES)}")
            mode = _RNN_MODES[mode]
        if int(mode) not in _RNN_GATES:
            raise ValueError(f"CudnnRNNHandle: unknown mode {mode!r}; expected 0 relu, 1 tanh, 2 lstm, 3 gru")
        self.mode, self.hidden_size, self.num_layers = int(mode), int(hidden_size), int(num_layers)
        self.bias, self.dropout, self.bidirectional = bool(bias), float(dropout), bool(bidirectional)
        self.seq_length, self.batch_size, self.feature_size = shape
        self.weights_size = sum(size for _, size in _rnn_blocks(self))


def _rnn_blocks(h: CudnnRNNHandle):
    """(shape, size) of each weight block in flat-layout order."""
    G, H, D = _RNN_GATES[h.mode], h.hidden_size, 2 if h.bidirectional else 1
    out = []
    for layer in range(h.num_layers):
        fin = h.feature_size if layer == 0 else H * D
        for _ in range(D):
            shapes = [(G * H, fin), (G * H, H)] + ([(G * H,), (G * H,)] if h.bias else [])
            out += [(s, int(np.prod(s))) for s in shapes]
    return out


# --------------------------------------------------------------------------- RNN
def _rnn_unflatten(W, h: CudnnRNNHandle):
    """Per (layer, direction): (W_ih, W_hh, b_ih, b_hh) views of the flat weights."""
    layout = _rnn_blocks(h)
    # one split (its gradient is one concatenate; separate slices would cost a pad per block)
    cuts = np.cumsum([size for _, size in layout])[:-1].tolist()
    parts = [p.reshape(shape) for p, (shape, _) in zip(jnp.split(W, cuts), layout)]
    n = 4 if h.bias else 2
    blocks = [parts[i:i + n] for i in range(0, len(parts), n)]
    if not h.bias:
        blocks = [b + [jnp.zeros(b[0].shape[0], W.dtype)] * 2 for b in blocks]
    return blocks


def _rnn_cell(mode: int, xp, hc, whh, bhh):
    """One step for all directions at once: xp (D, B, G*H) is the input projection (with
    the recurrent bias already added when `bhh` is None)."""
    h, c = hc
    # whh is pre-transposed (D, H, G*H); one direction is a plain matmul (faster on CPU)
    hp = (h[0] @ whh[0])[None] if whh.shape[0] == 1 else jnp.einsum("dbh,dhg->dbg", h, whh)
    if bhh is not None:
        hp = hp + bhh[:, None, :]
    if mode == 2:
        i, f, g, o = jnp.split(xp + hp, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c
    if mode == 3:
        xr, xz, xn = jnp.split(xp, 3, axis=-1)
        hr, hz, hn = jnp.split(hp, 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        return (1 - z) * n + z * h, c
    pre = xp + hp
    return (jnp.tanh(pre) if mode == 1 else jnp.maximum(pre, 0)), c


def _rnn_forward(x, hx, cx, W, seq_lengths=None, *, handle, return_sequences=False, use_mask=False):
    h = handle
    T, B, _ = x.shape
    D = 2 if h.bidirectional else 1
    blocks = _rnn_unflatten(W, h)
    mask = None
    if seq_lengths is not None:
        mask = jnp.arange(T)[:, None] < seq_lengths.reshape(1, B)   # (T, B)
        mask = jnp.stack([mask, jnp.flip(mask, 0)][:D], axis=1)[..., None]  # (T, D, B, 1)
    inp = x
    for layer in range(h.num_layers):
        wih, whh, bih, bhh = (jnp.stack(z) for z in zip(*blocks[layer * D:(layer + 1) * D]))
        whh = jnp.swapaxes(whh, 1, 2)   # transposed once, outside the time loop
        if D == 1:   # a plain matmul: XLA:CPU threads it, where a batched dot runs on one core
            xp = (inp @ wih[0].T)[:, None] + bih[None, :, None, :]      # (T, 1, B, G*H)
        else:
            xs = jnp.stack([inp, jnp.flip(inp, 0)], axis=1)            # (T, D, B, in)
            xp = jnp.einsum("tdbi,dgi->tdbg", xs, wih) + bih[None, :, None, :]  # one matmul for all steps
        if h.mode != 3:   # GRU scales the recurrent bias by its reset gate; the others just add it
            xp, bhh = xp + bhh[None, :, None, :], None
        carry = (hx[layer * D:(layer + 1) * D], cx[layer * D:(layer + 1) * D])

        def step(hc, t_in, whh=whh, bhh=bhh):
            xp_t, m = t_in
            new = _rnn_cell(h.mode, xp_t, hc, whh, bhh)
            if m is not None:  # padded steps keep the state and output zeros
                new = tuple(jnp.where(m, n, o) for n, o in zip(new, hc))
                return new, jnp.where(m, new[0], 0)
            return new, new[0]
        _, ys = lax.scan(step, carry, (xp, mask))                       # (T, D, B, H)
        inp = ys[:, 0] if D == 1 else jnp.concatenate([ys[:, 0], jnp.flip(ys[:, 1], 0)], axis=-1)
    return inp if return_sequences else inp[-1]


def _rnn_check(x, hx, cx, W, seq_lengths=None, *, handle, return_sequences=False, use_mask=False):
    h = handle
    if not isinstance(h, CudnnRNNHandle):
        raise TypeError(f"_RNN: expected a CudnnRNNHandle, got {type(h).__name__}")
    D = 2 if h.bidirectional else 1
    state = (h.num_layers * D, x.shape[1] if x.ndim == 3 else -1, h.hidden_size)
    if x.ndim != 3 or x.shape[2] != h.feature_size:
        raise ValueError(f"_RNN: expected x (seq_length, batch, {h.feature_size}), got {tuple(x.shape)}")
    for what, v in (("hx", hx), ("cx", cx)):
        if tuple(v.shape) != state:
            raise ValueError(f"_RNN: expected {what} of shape {state}, got {tuple(v.shape)}")
    if tuple(W.shape) != (h.weights_size,):
        raise ValueError(f"_RNN: expected flat W of shape ({h.weights_size},), got {tuple(W.shape)}")
    if seq_lengths is not None and seq_lengths.size != x.shape[1]:
        raise ValueError(f"_RNN: expected seq_lengths of {x.shape[1]} entries, got {tuple(seq_lengths.shape)}")


class _RNNOperator(BuiltinOperator):
    """Multi-layer (bidirectional) RNN/LSTM/GRU over a flat weight vector, via `lax.scan`.

    `_RNN(handle, return_sequences=False, use_mask=False, seq_lengths=None)(x, hx, cx, W)`
    with x (T, B, F), hx and cx (num_layers * D, B, H) and W the flat weights laid out as
    in `CudnnRNNHandle`. Returns y (T, B, H * D), or its last time step (B, H * D) when
    `return_sequences` is False; the final states are not returned. With `use_mask`,
    `seq_lengths` (B,) ints: steps past a sequence's length keep its state and output 0.
    Backward: (dx, dhx, dcx, dW) through `jax.vjp`.

    SINGA: CUDA only, and `handle.dropout` is applied between layers by cuDNN; singax runs
    everywhere and applies no RNN dropout.
    """

    def __init__(self, handle: CudnnRNNHandle, return_sequences: bool = False, use_mask: bool = False,
                 seq_lengths: Any = None, name: str | None = None):
        super().__init__(handle, return_sequences, use_mask, name=name)
        self.seq_lengths = seq_lengths

    def _forward_raw(self, *xs):
        if self.use_mask and len(xs) == 4:
            lens = self.seq_lengths
            if lens is None:
                raise ValueError("_RNN: use_mask=True needs seq_lengths")
            xs = xs + (jnp.asarray(lens.data if isinstance(lens, Tensor) else lens).astype(jnp.int32),)
        return super()._forward_raw(*xs)

    def _backward_raw(self, *dys):
        return super()._backward_raw(*dys)[:4]


register(Op("_rnn", _rnn_forward, cls="_RNN", inputs=None,
            attrs=(("handle", None), ("return_sequences", False), ("use_mask", False)),
            check=_rnn_check, base=_RNNOperator))
_RNN = CLASSES["_RNN"]
