"""Per-op CPU profile of W2-W4: JAX (XLA:CPU) pieces against the same pieces in PyTorch eager.

Each piece (a convolution forward, its input and weight gradients, max pooling and its
gradient, the LSTM over a sequence forward and backward, the optimizer update) is a
separate `jax.jit` function and the matching torch call, on the workloads' shapes.
Pieces are timed in interleaved rounds in one process (median ms per call); torch uses
as many threads as the process may use cores, XLA its default.

    python bench/profile_cpu.py                    # every piece, Markdown to stdout
    python bench/profile_cpu.py --only W2 --rounds 7
    python bench/profile_cpu.py --out bench/results/cpu-profile-<date>.md

Needs torch (not a dependency of singax); without it only the JAX column is filled.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import torch
except ImportError:  # torch is optional
    torch = None


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, per_round: int,
                stat: Callable = statistics.median) -> dict[str, float]:
    """`stat` (median) of the seconds per call of each thunk; every round runs every thunk
    `per_round` times."""
    for fn in fns.values():   # compile and warm up
        for _ in range(2):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: stat(v) for k, v in times.items()}


def _jax_thunk(f, *args):
    f = jax.jit(f)
    args = [jax.device_put(a) for a in args]
    return lambda: jax.block_until_ready(f(*args))


def _torch_thunk(f, *args):
    args = [torch.from_numpy(np.asarray(a)) for a in args]
    def run():
        with torch.no_grad():
            return f(*args)
    return run


# --------------------------------------------------------------------------- pieces
def conv_pieces(tag, N, C, H, O, k, stride, pad, rng):
    """Forward, input-gradient and weight-gradient of one NCHW convolution."""
    from singax.autograd import nn as snn
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    W = (rng.standard_normal((O, C, k, k)) * 0.1).astype(np.float32)
    handle = snn.ConvHandle(x.shape, k, stride, pad, C, O, False)
    ho = (H + 2 * pad - k) // stride + 1
    dy = rng.standard_normal((N, O, ho, ho)).astype(np.float32)

    def ref(x, W):
        return lax.conv_general_dilated(x, W, (stride, stride), [(pad, pad)] * 2,
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"))

    def singax_conv(x, W):
        return snn._conv_forward(x, W, handle=handle)

    out = {}
    for name, f in (("xla", ref), ("singax", singax_conv)):
        out[(f"{tag} fwd", name)] = _jax_thunk(f, x, W)
        out[(f"{tag} dx", name)] = _jax_thunk(lambda x, W, dy, f=f: jax.vjp(lambda x: f(x, W), x)[1](dy)[0],
                                              x, W, dy)
        out[(f"{tag} dW", name)] = _jax_thunk(lambda x, W, dy, f=f: jax.vjp(lambda W: f(x, W), W)[1](dy)[0],
                                              x, W, dy)
    if torch is not None:
        F = torch.nn.functional
        out[(f"{tag} fwd", "torch")] = _torch_thunk(lambda x, W: F.conv2d(x, W, None, stride, pad), x, W)
        bw = torch.ops.aten.convolution_backward
        common = ([0], (stride, stride), (pad, pad), (1, 1), False, (0, 0), 1)
        out[(f"{tag} dx", "torch")] = _torch_thunk(
            lambda x, W, dy: bw(dy, x, W, *common, (True, False, False)), x, W, dy)
        out[(f"{tag} dW", "torch")] = _torch_thunk(
            lambda x, W, dy: bw(dy, x, W, *common, (False, True, False)), x, W, dy)
    return out


def pool_pieces(tag, N, C, H, rng):
    from singax.autograd import nn as snn
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    dy = rng.standard_normal((N, C, H // 2, H // 2)).astype(np.float32)
    handle = snn.PoolingHandle(x.shape, 2, 2, 0, True)

    def ref(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def singax_pool(x):
        return snn._pool_forward(x, handle=handle)

    out = {}
    for name, f in (("xla", ref), ("singax", singax_pool)):
        out[(f"{tag} fwd", name)] = _jax_thunk(f, x)
        out[(f"{tag} grad", name)] = _jax_thunk(lambda x, dy, f=f: jax.vjp(f, x)[1](dy)[0], x, dy)
    if torch is not None:
        F = torch.nn.functional
        out[(f"{tag} fwd", "torch")] = _torch_thunk(lambda x: F.max_pool2d(x, 2, 2), x)

        def tgrad(x, dy):
            with torch.enable_grad():
                x = x.requires_grad_()
                y = F.max_pool2d(x, 2, 2)
                return torch.autograd.grad(y, x, dy)[0]
        out[(f"{tag} grad", "torch")] = _torch_thunk(tgrad, x, dy)
    return out


def batchnorm_pieces(tag, shape, rng):
    """Training-mode batch normalisation, forward and backward (singax's row vs textbook JAX)."""
    from singax.autograd import nn as snn
    x, dy = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    scale, bias = np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)
    c = (slice(None), None, None)

    def ref(x, scale, bias):
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        return (x - mean[c]) * lax.rsqrt(var + 1e-5)[c] * scale[c] + bias[c]

    def singax_bn(x, scale, bias):
        return snn._bn_train((0.9, 1e-5, 1), (x, scale, bias), (bias, scale))[0]
    out = {}
    for name, f in (("xla", ref), ("singax", singax_bn)):
        out[(f"{tag} fwd+bwd", name)] = _jax_thunk(lambda x, s, b, dy, f=f: jax.vjp(f, x, s, b)[1](dy),
                                                   x, scale, bias, dy)
    if torch is not None:
        tx, ts, tb = (torch.from_numpy(a).requires_grad_() for a in (x, scale, bias))
        tdy = torch.from_numpy(dy)
        out[(f"{tag} fwd+bwd", "torch")] = lambda: torch.autograd.grad(
            torch.nn.functional.batch_norm(tx, None, None, ts, tb, training=True), [tx, ts, tb], tdy)
    return out


def lstm_pieces(rng, T=35, B=20, E=128, H=256):
    """The LSTM layer over a whole sequence: forward, and forward + backward."""
    from singax.autograd import rnn as srnn
    x = rng.standard_normal((T, B, E)).astype(np.float32)
    handle = srnn.CudnnRNNHandle(x.shape, H, "lstm")
    W = rng.uniform(-0.06, 0.06, handle.weights_size).astype(np.float32)
    h0 = np.zeros((1, B, H), np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)

    def fwd(x, h0, W):
        return srnn._rnn_forward(x, h0, h0, W, handle=handle, return_sequences=True)

    def fwdbwd(x, h0, W, dy):
        y, pull = jax.vjp(lambda x, W: fwd(x, h0, W), x, W)
        return pull(dy)

    out = {("LSTM T35 B20 H256 fwd", "singax"): _jax_thunk(fwd, x, h0, W),
           ("LSTM T35 B20 H256 fwd+bwd", "singax"): _jax_thunk(fwdbwd, x, h0, W, dy)}
    if torch is not None:
        lstm = torch.nn.LSTM(E, H)
        tx = torch.from_numpy(x)
        tdy = torch.from_numpy(dy)

        def tf():
            with torch.no_grad():
                return lstm(tx)[0]

        def tfb():
            xx = tx.clone().requires_grad_()
            y = lstm(xx)[0]
            return torch.autograd.grad(y, [xx] + list(lstm.parameters()), tdy)
        out[("LSTM T35 B20 H256 fwd", "torch")] = tf
        out[("LSTM T35 B20 H256 fwd+bwd", "torch")] = tfb
    return out


def optimizer_pieces(rng, n=1_700_000):
    """One SGD-momentum update with weight decay over `n` parameters, in place."""
    p, v, g = (rng.standard_normal(n).astype(np.float32) for _ in range(3))

    def sgd(p, v, g):
        v = 0.9 * v + g + 1e-5 * p
        return p - 0.005 * v, v
    name = f"SGD-momentum update {n / 1e6:.2f}M params"
    step = jax.jit(sgd, donate_argnums=(0, 1))   # in place, as in a training step
    state = [jax.device_put(a) for a in (p, v, g)]

    def run():
        state[0], state[1] = jax.block_until_ready(step(*state))
    out = {(name, "xla"): run}
    if torch is not None:
        tp, tv, tg = (torch.from_numpy(a.copy()) for a in (p, v, g))

        def t():
            with torch.no_grad():
                tv.mul_(0.9).add_(tg).add_(tp, alpha=1e-5)
                tp.add_(tv, alpha=-0.005)
        out[(name, "torch")] = t
    return out


def pieces(only: str | None, rng) -> dict:
    groups = {
        "W2": lambda: {**conv_pieces("W2 conv1 1->20 5x5 @28", 64, 1, 28, 20, 5, 1, 0, rng),
                       **pool_pieces("W2 pool1 20x24x24", 64, 20, 24, rng),
                       **conv_pieces("W2 conv2 20->50 5x5 @12", 64, 20, 12, 50, 5, 1, 0, rng),
                       **pool_pieces("W2 pool2 50x8x8", 64, 50, 8, rng),
                       **optimizer_pieces(rng, 431_080)},
        "W3": lambda: {**conv_pieces("W3 conv 64->64 3x3 @32", 32, 64, 32, 64, 3, 1, 1, rng),
                       **conv_pieces("W3 conv 128->128 3x3 @16", 32, 128, 16, 128, 3, 1, 1, rng),
                       **conv_pieces("W3 conv 256->256 3x3 @8", 32, 256, 8, 256, 3, 1, 1, rng),
                       **conv_pieces("W3 conv 512->512 3x3 @4", 32, 512, 4, 512, 3, 1, 1, rng),
                       **conv_pieces("W3 conv 64->128 3x3 s2 @32", 32, 64, 32, 128, 3, 2, 1, rng),
                       **batchnorm_pieces("W3 BN 64x32x32", (32, 64, 32, 32), rng),
                       **batchnorm_pieces("W3 BN 256x8x8", (32, 256, 8, 8), rng),
                       **optimizer_pieces(rng, 11_200_000)},
        "W4": lambda: lstm_pieces(rng),
    }
    out = {}
    for key, make in groups.items():
        if only is None or key in only.split(","):
            out.update(make())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated workloads (W2,W3,W4)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="per-call statistic (min approximates a quiet machine)")
    ap.add_argument("--out", help="also write the Markdown table to this file")
    args = ap.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    fns = pieces(args.only, rng)
    med = interleaved(fns, args.rounds, args.per_round, min if args.stat == "min" else statistics.median)
    impls = [i for i in ("xla", "singax", "torch") if any(k[1] == i for k in med)]
    rows = {}
    for (piece, impl), t in med.items():
        rows.setdefault(piece, {})[impl] = t
    lines = [f"jax {jax.__version__}, torch {torch.__version__ if torch else 'n/a'} "
             f"({args.threads} threads), XLA_FLAGS `{os.environ.get('XLA_FLAGS', '')}`, "
             f"load {os.getloadavg()[0]:.2f}, {args.stat} of {args.rounds}x{args.per_round} calls", "",
             "| piece | " + " | ".join(f"{i} (ms)" for i in impls) + " | best JAX / torch |",
             "|---|" + "---:|" * (len(impls) + 1)]
    for piece, r in rows.items():
        cells = [f"{r[i] * 1e3:.3f}" if i in r else "" for i in impls]
        jx = min(r[i] for i in ("xla", "singax") if i in r)
        ratio = f"{jx / r['torch']:.2f}" if "torch" in r else ""
        lines.append(f"| {piece} | " + " | ".join(cells) + f" | {ratio} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
