"""Benchmark: singax's eager (op-by-op, tape) training step against pure JAX.

Two models, each timed in one process from the same parameters and data:

  seed-MLP   the seed document's autograd example (2-3-2 perceptron on 400 points,
             `autograd.matmul/add_bias/relu/softmax_cross_entropy`, `sgd.update`)
  CNN        SINGA's MNIST CNN (bench/workloads.py W2), a `Model` with `use_graph=False`

against (A) the hand-written pure-JAX + optax step in one `jax.jit` and (B) the same JAX
code without jit (op by op). It also counts JAX traces and compilations during the timed
steps, which must be 0 for singax: every operator's forward and backward are jitted once
per configuration. Target: eager CNN step ≤ 2.5× A on CPU.

    python bench/eager.py           # full run, report in bench/results/<machine>-<date>-eager.md
    python bench/eager.py --quick   # seconds: a smoke run
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch_rows  # noqa: E402
import workloads  # noqa: E402
from compile import jax_impl, reference_states, singax_impl, summary  # noqa: E402

TARGET_CNN = 2.5


# --------------------------------------------------------------------------- the seed's MLP
def seed_data(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Points on both sides of the line y = 5x + 1 (with noise), one-hot labels (n, 2)."""
    x = rng.uniform(-1, 1, n)
    y = 5 * x + 1 + 2 * rng.standard_normal(n)
    data = np.stack([x, y], axis=1).astype(np.float32)
    label = (5 * x + 1 > y).astype(np.int64)
    return data, np.eye(2, dtype=np.float32)[label]


class SeedMLP:
    """The seed document's operator-level MLP, one eager training step per call."""

    def __init__(self, data: np.ndarray, target: np.ndarray):
        from singax import autograd, opt, tensor
        self.autograd = autograd
        dev = harness.bench_device()

        def T(**kw):
            return tensor.Tensor(device=dev, **kw)
        self.w0 = T(shape=(2, 3), requires_grad=True, stores_grad=True)
        self.w0.gaussian(0.0, 0.1)
        self.b0 = T(shape=(1, 3), requires_grad=True, stores_grad=True)
        self.b0.set_value(0.0)
        self.w1 = T(shape=(3, 2), requires_grad=True, stores_grad=True)
        self.w1.gaussian(0.0, 0.1)
        self.b1 = T(shape=(1, 2), requires_grad=True, stores_grad=True)
        self.b1.set_value(0.0)
        self.inputs = T(data=data)
        self.target = T(data=target)
        self.sgd = opt.SGD(0.05)
        self.params = [self.w0, self.b0, self.w1, self.b1]

    def __call__(self):
        ag = self.autograd
        x = ag.relu(ag.add_bias(ag.matmul(self.inputs, self.w0), self.b0))
        x = ag.add_bias(ag.matmul(x, self.w1), self.b1)
        loss = ag.softmax_cross_entropy(x, self.target)
        for p, g in ag.backward(loss):
            self.sgd.update(p, g)
        return loss


def _seed_loss(p, s, x, t):
    h = jax.nn.relu(x @ p["w0"] + p["b0"])
    logits = h @ p["w1"] + p["b1"]
    t = t / t.sum(axis=1, keepdims=True)      # SINGA normalises dense targets per row
    return -jnp.mean(jnp.sum(t * jax.nn.log_softmax(logits), axis=1)), s


SEED = workloads.Workload(
    "seed-MLP", "seed document MLP 2-3-2, 400 points, SGD(0.05)", make_model=None,
    batch=seed_data, to_jax=lambda m: ({k: workloads._np(getattr(m, k)) for k in ("w0", "b0", "w1", "b1")}, {}),
    loss_fn=_seed_loss, tx=lambda: workloads.sgd_tx(0.05), steps=100, warmup=5)


def seed_impls(seed: int) -> list[harness.Impl]:
    data, target = seed_data(np.random.default_rng(seed))
    harness.bench_device().SetRandSeed(seed)
    t0 = time.perf_counter()
    mlp = SeedMLP(data, target)
    init_s = time.perf_counter() - t0
    eager = harness.Impl("singax eager (seed: autograd ops + sgd.update)", mlp,
                        losses=lambda loss: [float(np.asarray(loss.data).reshape(-1)[0])],
                        sync=lambda loss: [t.data for t in mlp.params] + [loss.data],
                        init_s=init_s, key="eager", device=harness.device_name(mlp.w0.device.jax_device))
    batch = (data, target)
    return [jax_impl(SEED, mlp, batch, key="A"),
            jax_impl(SEED, mlp, batch, jit=False, key="B", name=B_NAME), eager]


B_NAME = "B JAX op-by-op (grad without jit)"


def cnn_impls(seed: int, precision: str = "highest") -> list[harness.Impl]:
    wl = workloads.WORKLOADS["W2"]
    batch = wl.batch(np.random.default_rng(seed))
    ref_model, ref_states = reference_states(wl, batch[0], seed)
    impls = [jax_impl(wl, ref_model, batch, key="A"),
             jax_impl(wl, ref_model, batch, jit=False, key="B", name=B_NAME),
             singax_impl(wl, ref_states, batch, "eager")]
    if torch_rows.available():
        params, state = wl.to_jax(ref_model)
        impls.append(torch_rows.torch_impl("W2", params, state, batch, precision,
                                           jax.devices()[0].platform))
    return impls


def check(name: str, res: dict, target: float | None) -> list[str]:
    a, e = res["A"], res["eager"]
    lines = []
    ratio = e.median_s / a.median_s
    line = f"- singax eager / A (jit): {ratio:.2f}×"
    if target is not None:
        line += f" (target ≤ {target}× on CPU): " + ("met" if ratio <= target else "**not met**")
    lines.append(line)
    if "B" in res:
        lines.append(f"- singax eager / B (JAX op-by-op): {e.median_s / res['B'].median_s:.2f}×")
    if "torch" in res:
        lines.append(f"- singax eager / PyTorch eager: {e.median_s / res['torch'].median_s:.2f}×")
    lines.append(f"- singax eager traces / compilations during timed steps: "
                 f"{e.traces_after_warmup} / {e.compiles_after_warmup} (must be 0 / 0)"
                 + ("" if e.traces_after_warmup == e.compiles_after_warmup == 0 else " **FAIL**"))
    busy = [r.load.cores() for r in res.values() if r.load.cores() is not None]
    if busy and max(busy) > 0.25:
        lines.append(f"- note: other processes used up to {max(busy):.2f} cores while rows were timed; "
                     "the ratios are rough")
    for k in ("B", "eager", "torch"):
        if k in res:
            d = abs(res[k].loss1 - a.loss1)
            lines.append(f"- loss@1 {k} − A: {d:.2e}" + ("" if d <= 1e-4 * max(1.0, abs(a.loss1))
                                                         else " **disagree**"))
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="seed-MLP,CNN")
    p.add_argument("--steps", type=int, help="timed steps (default: seed-MLP 100, CNN 30)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="tiny step counts (CI smoke run)")
    p.add_argument("--precision", default="highest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="folder for the Markdown report (default bench/results; $OUT/results if set)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--json", help="also write a JSON summary here")
    args = p.parse_args(argv)

    harness.setup(args.precision)
    if args.quick:
        args.steps, args.warmup, args.rounds = args.steps or 4, 2, 2
    info = harness.machine_info()
    from singax import autograd
    autograd.training = True
    lines, out_json = [], {}
    for name in args.models.split(","):
        if name == "CNN" and workloads.singax_missing("W2"):
            print(f"CNN: skipped ({workloads.singax_missing('W2')})")
            continue
        title = SEED.title if name == "seed-MLP" else workloads.WORKLOADS["W2"].title
        print(f"{name}: {title}", flush=True)
        impls = seed_impls(args.seed) if name == "seed-MLP" else cnn_impls(args.seed, args.precision)
        steps = args.steps or (100 if name == "seed-MLP" else 30)
        results = harness.run_impls(impls, args.warmup, steps, args.rounds)
        res = harness.by_key(results)
        target = TARGET_CNN if name == "CNN" and info["platform"] == "cpu" else None
        lines += [f"## {name}: {title}", ""] + harness.table(harness.RESULT_HEADERS, harness.result_rows(results))
        lines += [""] + check(name, res, target) + [""]
        out_json[name] = summary(results)
        print("\n".join(harness.short_table(results, ["median (ms)", "× A (median)", "loss@1", "loss@end",
                                                     "traces / compiles in timed steps"])))
        print("\n".join(check(name, res, target)), flush=True)

    config = (f"warm-up {args.warmup} steps, timed steps {args.steps or 'seed-MLP 100, CNN 30'} in "
              f"{args.rounds} interleaved rounds; seed {args.seed}"
              + ("; QUICK (smoke run, numbers meaningless)" if args.quick else ""))
    doc = harness.header("singax eager-step benchmark", info, config) + [
        "Columns: see bench/README.md. traces / compiles = JAX traces and XLA compilations "
        "while that row's timed steps ran (jax.monitoring events); singax eager must show 0 / 0.", ""] + lines
    text = "\n".join(doc) + "\n"
    harness.write_report(args, info, text, out_json, "eager")
    return 0


if __name__ == "__main__":
    sys.exit(main())
