"""Test metadata of the rnn operator rows (see `OpTest`)."""
import jax.numpy as jnp
import numpy as np

from singax.autograd.rnn import CudnnRNNHandle, _rnn_unflatten

from ._spec import OpTest


def _np_rnn(x, hx, cx, W, seq_lengths=None, *, handle, return_sequences=False, use_mask=False):
    """numpy reference: a plain loop over layers, directions and time steps."""
    h = handle
    T, B, _ = x.shape
    H, D = h.hidden_size, 2 if h.bidirectional else 1
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    lens = np.full(B, T) if seq_lengths is None else np.asarray(seq_lengths).reshape(B)
    blocks = [[np.asarray(p) for p in b] for b in _rnn_unflatten(jnp.asarray(W), h)]
    inp = x
    for layer in range(h.num_layers):
        outs = []
        for d in range(D):
            wih, whh, bih, bhh = blocks[layer * D + d]
            hs, cs = hx[layer * D + d].copy(), cx[layer * D + d].copy()
            out = np.zeros((T, B, H))
            for t in (range(T) if d == 0 else reversed(range(T))):
                a, r = inp[t] @ wih.T + bih, hs @ whh.T + bhh
                if h.mode == 2:
                    i, f, g, o = np.split(a + r, 4, axis=1)
                    cn = sig(f) * cs + sig(i) * np.tanh(g)
                    hn = sig(o) * np.tanh(cn)
                elif h.mode == 3:
                    (ar, az, an), (rr, rz, rn) = np.split(a, 3, axis=1), np.split(r, 3, axis=1)
                    rg, z = sig(ar + rr), sig(az + rz)
                    hn, cn = (1 - z) * np.tanh(an + rg * rn) + z * hs, cs
                else:
                    hn, cn = (np.tanh(a + r) if h.mode == 1 else np.maximum(a + r, 0)), cs
                live = (t < lens)[:, None]
                hs, cs = np.where(live, hn, hs), np.where(live, cn, cs)
                out[t] = np.where(live, hn, 0)
            outs.append(out)
        inp = np.concatenate(outs, axis=-1)
    return inp if return_sequences else inp[-1]


def _rnn_sample(rng, attrs):
    h = attrs["handle"]
    D = 2 if h.bidirectional else 1
    state = (h.num_layers * D, h.batch_size, h.hidden_size)
    return [rng.standard_normal((h.seq_length, h.batch_size, h.feature_size)),
            rng.standard_normal(state) * 0.5, rng.standard_normal(state) * 0.5,
            rng.uniform(-0.6, 0.6, h.weights_size)]


TESTS = {
    "_rnn": OpTest(
        shapes=[()],
        samples=[dict(handle=CudnnRNNHandle((4, 2, 3), 3, "lstm"), return_sequences=True),
                 dict(handle=CudnnRNNHandle((3, 2, 3), 2, "gru", num_layers=2, bidirectional=True)),
                 dict(handle=CudnnRNNHandle((3, 2, 2), 3, "tanh", bias=False), return_sequences=True),
                 dict(handle=CudnnRNNHandle((3, 1, 2), 2, "relu", bidirectional=True),
                      return_sequences=True)],
        sample=_rnn_sample,
        ref=_np_rnn),
}
