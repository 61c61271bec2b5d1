"""Per-step CPU benchmark: singax's compiled step (and pure JAX) against PyTorch eager on W2-W4.

Every implementation starts from the parameters of one initialised singax model and
trains on the same batch; steps are timed in interleaved rounds in one process
(`common.run_impls`), torch with as many threads as the process may use cores.

    python bench/cpu_vs_torch.py                      # W2,W3,W4
    python bench/cpu_vs_torch.py --workloads W2 --steps 60 --stat min

Needs torch (not a dependency of singax).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import compile as compile_bench  # noqa: E402

import torch  # noqa: E402

F = torch.nn.functional


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).requires_grad_()


def _sgd(params, lr=0.005):
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-5)


def _w2(p):
    w = {k: {n: _t(v) for n, v in d.items()} for k, d in p.items()}

    def forward(x):
        y = F.max_pool2d(F.relu(F.conv2d(x, w["conv1"]["W"], w["conv1"]["b"])), 2, 2)
        y = F.max_pool2d(F.relu(F.conv2d(y, w["conv2"]["W"], w["conv2"]["b"])), 2, 2)
        y = F.relu(y.flatten(1) @ w["linear1"]["W"] + w["linear1"]["b"])
        return y @ w["linear2"]["W"] + w["linear2"]["b"]
    return forward, _sgd([t for d in w.values() for t in d.values()])


def _bn(p):
    return dict(scale=_t(p["scale"]), bias=_t(p["bias"]))


def _w3(p):
    w = {"conv1": _t(p["conv1"]), "bn1": _bn(p["bn1"]), "fc": {n: _t(v) for n, v in p["fc"].items()},
         "blocks": [{k: (_bn(v) if k.startswith("bn") else _t(v)) for k, v in b.items()} for b in p["blocks"]]}
    strides = common._resnet_strides()

    def bn(x, q):
        return F.batch_norm(x, None, None, q["scale"], q["bias"], training=True, eps=1e-5)

    def forward(x):
        h = F.relu(bn(F.conv2d(x, w["conv1"], padding=1), w["bn1"]))
        for b, s in zip(w["blocks"], strides):
            y = F.relu(bn(F.conv2d(h, b["conv1"], stride=s, padding=1), b["bn1"]))
            y = bn(F.conv2d(y, b["conv2"], padding=1), b["bn2"])
            sc = bn(F.conv2d(h, b["conv_sc"], stride=s), b["bn_sc"]) if "conv_sc" in b else h
            h = F.relu(y + sc)
        h = F.avg_pool2d(h, 4, 4).flatten(1)
        return h @ w["fc"]["W"] + w["fc"]["b"]
    params = [w["conv1"], *w["bn1"].values(), *w["fc"].values()]
    for b in w["blocks"]:
        params += [t for v in b.values() for t in (v.values() if isinstance(v, dict) else [v])]
    return forward, _sgd(params)


def _w4(p):
    emb, dense = _t(p["emb"]), {n: _t(v) for n, v in p["dense"].items()}
    lstm = torch.nn.LSTM(emb.shape[1], p["lstm"]["whh"].shape[0], batch_first=True)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(np.array(p["lstm"]["wih"]).T))
        lstm.weight_hh_l0.copy_(torch.from_numpy(np.array(p["lstm"]["whh"]).T))
        lstm.bias_ih_l0.copy_(torch.from_numpy(np.array(p["lstm"]["bih"])))
        lstm.bias_hh_l0.copy_(torch.from_numpy(np.array(p["lstm"]["bhh"])))

    def forward(x):
        h = lstm(emb[x])[0]
        return h.reshape(-1, h.shape[-1]) @ dense["W"] + dense["b"]
    return forward, torch.optim.Adam([emb, *dense.values(), *lstm.parameters()], lr=1e-3, eps=1e-8)


TWINS = {"W2": _w2, "W3": _w3, "W4": _w4}


def torch_impl(wl: common.Workload, ref_model, batch) -> common.Impl:
    params, _ = wl.to_jax(ref_model)
    forward, opt = TWINS[wl.key](params)
    x = torch.from_numpy(batch[0]).long() if wl.key == "W4" else torch.from_numpy(batch[0])
    y = torch.from_numpy(batch[1]).long()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        return loss.detach()
    return common.Impl("PyTorch eager", step, lambda loss: [float(loss)], sync=lambda out: None, key="torch")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="W2,W3,W4")
    ap.add_argument("--impls", default="A,graph,torch")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--out", help="append the Markdown table to this file")
    args = ap.parse_args(argv)
    common.setup("highest")
    torch.set_num_threads(args.threads)
    info = common.machine_info()
    lines = [f"jax {info['jax']}, torch {torch.__version__} ({args.threads} threads), {info['cpu']}, "
             f"{info['cores']} cores, XLA_FLAGS `{info['xla_flags']}`, singax {info['singax']}", "",
             "| workload | impl | median (ms) | min (ms) | / torch (median) | / torch (min) | loss@1 | loss@end |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    wanted = args.impls.split(",")
    for key in args.workloads.split(","):
        wl = common.WORKLOADS[key]
        batch = wl.batch(np.random.default_rng(0))
        ref_model, ref_states = compile_bench.reference_states(wl, batch[0], 0)
        impls = []
        if "A" in wanted:
            impls.append(compile_bench.jax_impl(wl, ref_model, batch))
        if "graph" in wanted:
            impls.append(compile_bench.singax_impl(wl, ref_states, batch, "graph"))
        impls.append(torch_impl(wl, ref_model, batch))
        results = common.run_impls(impls, wl.warmup, args.steps or wl.steps, args.rounds)
        t = common.by_key(results)["torch"]
        for r in results:
            lines.append(f"| {key} | {r.name} | {r.median_s * 1e3:.2f} | {min(r.step_times) * 1e3:.2f} | "
                         f"{r.median_s / t.median_s:.2f} | {min(r.step_times) / min(t.step_times):.2f} | "
                         f"{r.loss1:.5f} | {r.loss_end:.5f} |")
        print("\n".join(lines[-len(results):]), flush=True)
    lines.append(f"\nload average at end {os.getloadavg()[0]:.2f}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
