"""PyTorch eager rows of the benchmarks, run only when `torch` is importable (never required).

Each workload's PyTorch twin is written with `torch.nn.functional` over the very arrays
the pure-JAX row (A) starts from (`Workload.to_jax` of the initialised singax model), so
its step-1 loss must equal A's. The step is what a PyTorch user writes:
`zero_grad(set_to_none=True)`, forward, `loss.backward()`, `optimizer.step()`, with
`torch.optim.SGD`/`Adam` configured as the workload's optimizer. It runs on CUDA when
JAX's first device is a GPU and torch sees one, else on the CPU. With matmul precision
`highest` TF32 is switched off in torch too, so both compute in float32.

    import torch_rows
    if torch_rows.available():
        impls.append(torch_rows.torch_impl(wl, params, state, batch, precision))
"""
from __future__ import annotations

import importlib.util
import time
from typing import Any, Callable

import numpy as np

import harness

NAME = "PyTorch eager (torch.nn.functional + torch.optim)"
COMPILED_NAME = "PyTorch torch.compile (forward + backward; torch.optim eager)"


def available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _device(torch, jax_platform: str):
    return torch.device("cuda:0" if jax_platform == "gpu" and torch.cuda.is_available() else "cpu")


def _tensors(torch, tree, dev, grad: bool):
    """A nested dict/list of numpy arrays as torch tensors (fresh copies)."""
    if isinstance(tree, dict):
        return {k: _tensors(torch, v, dev, grad) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_tensors(torch, v, dev, grad) for v in tree]
    return torch.tensor(np.array(tree), device=dev, requires_grad=grad)


def _leaves(tree) -> list:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _leaves(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in _leaves(v)]
    return [tree]


# --------------------------------------------------------------------------- forwards
def _w1(F, p, s, x, y):
    h = F.relu(x @ p["linear1"]["W"] + p["linear1"]["b"])
    return F.cross_entropy(h @ p["linear2"]["W"] + p["linear2"]["b"], y)


def _w2(F, p, s, x, y):
    h = F.max_pool2d(F.relu(F.conv2d(x, p["conv1"]["W"], p["conv1"]["b"])), 2, 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2"]["W"], p["conv2"]["b"])), 2, 2)
    h = F.relu(h.flatten(1) @ p["linear1"]["W"] + p["linear1"]["b"])
    return F.cross_entropy(h @ p["linear2"]["W"] + p["linear2"]["b"], y)


def _bn(F, x, p, s):
    # SINGA's momentum 0.9 weighs the batch statistic, as torch's momentum does
    return F.batch_norm(x, s["running_mean"], s["running_var"], p["scale"], p["bias"],
                        training=True, momentum=0.9, eps=1e-5)


def _w3(F, p, s, x, y):
    from workloads import RESNET18_STAGES
    strides = [st if j == 0 else 1 for _, st in RESNET18_STAGES for j in range(2)]
    h = F.relu(_bn(F, F.conv2d(x, p["conv1"], padding=1), p["bn1"], s["bn1"]))
    for bp, bs, st in zip(p["blocks"], s["blocks"], strides):
        z = F.relu(_bn(F, F.conv2d(h, bp["conv1"], stride=st, padding=1), bp["bn1"], bs["bn1"]))
        z = _bn(F, F.conv2d(z, bp["conv2"], padding=1), bp["bn2"], bs["bn2"])
        sc = _bn(F, F.conv2d(h, bp["conv_sc"], stride=st), bp["bn_sc"], bs["bn_sc"]) if "conv_sc" in bp else h
        h = F.relu(z + sc)
    h = F.avg_pool2d(h, 4, 4).flatten(1)
    return F.cross_entropy(h @ p["fc"]["W"] + p["fc"]["b"], y)


def _w4(F, p, s, x, y):
    import torch
    lstm = p["lstm"]
    e = F.embedding(x, p["emb"])                                  # (B, T, E)
    H = lstm["whh"].shape[1]
    zeros = torch.zeros((1, x.shape[0], H), device=e.device, dtype=e.dtype)
    # what nn.LSTM(batch_first=True) runs (cuDNN on a GPU): weights (4H, E), (4H, H), gates i, f, g, o
    out = torch._VF.lstm(e, (zeros, zeros), [lstm["wih"], lstm["whh"], lstm["bih"], lstm["bhh"]],
                         True, 1, 0.0, True, False, True)[0]
    h = out.reshape(-1, H)
    return F.cross_entropy(h @ p["dense"]["W"] + p["dense"]["b"], y)


FORWARDS: dict[str, Callable] = {"W1": _w1, "W2": _w2, "W3": _w3, "W4": _w4}
OPTIMIZERS = {  # workload -> (torch.optim class name, keyword arguments), as its singax optimizer
    "W1": ("SGD", dict(lr=0.05, momentum=0.9)),
    "W2": ("SGD", dict(lr=0.005, momentum=0.9, weight_decay=1e-5)),
    "W3": ("SGD", dict(lr=0.005, momentum=0.9, weight_decay=1e-5)),
    "W4": ("Adam", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)),
}


def torch_impl(key: str, params: Any, state: Any, batch: tuple, precision: str = "highest",
               jax_platform: str = "cpu", compiled: bool = False) -> harness.Impl:
    """The PyTorch eager row of workload `key`, from A's initial (params, state) numpy trees;
    with `compiled`, the forward (and so its backward) goes through `torch.compile`'s default
    Inductor backend."""
    import torch
    import torch.nn.functional as F
    t0 = time.perf_counter()
    dev = _device(torch, jax_platform)
    if precision == "highest":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if key == "W4":  # torch's LSTM layout: (4H, E) and (4H, H)
        lstm = params["lstm"]
        params = {**params, "lstm": {**lstm, "wih": lstm["wih"].T, "whh": lstm["whh"].T}}
    p = _tensors(torch, params, dev, grad=True)
    s = _tensors(torch, state, dev, grad=False)
    x, y = (torch.tensor(b, device=dev) for b in batch)
    y = y.long()
    if key == "W4":
        x = x.long()
    cls, kw = OPTIMIZERS[key]
    optimizer = getattr(torch.optim, cls)(_leaves(p), **kw)
    forward = FORWARDS[key]
    loss_fn = lambda p, s, x, y: forward(F, p, s, x, y)  # noqa: E731
    if compiled:
        loss_fn = torch.compile(loss_fn)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(p, s, x, y)
        loss.backward()
        optimizer.step()
        return loss

    def sync(loss):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return ()

    def memory():
        if dev.type == "cuda":
            return int(torch.cuda.max_memory_allocated(dev)), "torch CUDA peak"
        return harness.peak_memory_bytes()

    name = f"{dev}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
    return harness.Impl(COMPILED_NAME if compiled else NAME, step, losses=lambda loss: [float(loss.item())],
                        sync=sync, init_s=time.perf_counter() - t0, key="tcompile" if compiled else "torch",
                        device=name, memory=memory)
