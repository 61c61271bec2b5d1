"""Benchmark: singax's compiled training step (Model.compile, graph mode) against pure JAX.

For each workload (W1 MLP, W2 SINGA's MNIST CNN, W3 ResNet-18, W4 LSTM LM) this times,
in one process, from the same initial parameters and data:

  A      a hand-written pure JAX + optax step, one `jax.jit` with donated buffers
  graph  the singax Model compiled with `use_graph=True`
  eager  the same Model with `use_graph=False`
  kstep  `Model.train_steps`: K steps in one dispatch (W1 only by default)
  torch  PyTorch eager from A's initial arrays, when `torch` is importable
  tcompile  the same PyTorch step with its forward under `torch.compile` (opt-in)

Every singax row runs on the device a SINGA script would pick: the first accelerator
(`device.create_cuda_gpu()`) when JAX has one, else the host CPU; A uses the same
device, and the report names each row's device.

and writes a Markdown report to bench/results/<machine>-<date>-compile.md.

    python bench/compile.py                       # all workloads, full step counts
    python bench/compile.py --workloads W1,W2 --steps 50
    python bench/compile.py --quick --workloads W1  # seconds: a smoke run
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
import torch_rows  # noqa: E402
import workloads  # noqa: E402

IMPL_NAMES = {
    "A": "A JAX+optax, one jax.jit step, donated",
    "graph": "singax graph (use_graph=True)",
    "eager": "singax eager (use_graph=False)",
    "kstep": "singax K-step (train_steps, K={k})",
    "torch": torch_rows.NAME,
    "tcompile": torch_rows.COMPILED_NAME,
}
TARGETS = {"graph_vs_A": {"W1": 1.05, "W2": 1.05, "W3": 1.02, "W4": 1.02}, "compile_vs_A": 1.5,
           "eager_vs_A_cpu": {"W1": 2.0, "W2": 1.2}}


# --------------------------------------------------------------------------- implementations
def reference_states(wl: workloads.Workload, x_np: np.ndarray, seed: int):
    """Initialise the singax model once; its states (numpy) seed every implementation."""
    dev = harness.bench_device()
    dev.SetRandSeed(seed)
    model = wl.make_model()
    model.compile([_on_bench_device(x_np)], is_train=True, use_graph=False)
    states = {name: np.array(t.data) for name, t in model.get_states().items()}
    # a weight matrix of zeros means initialisation did not happen: the run would be meaningless
    zero = [name for name, v in states.items() if v.ndim >= 2 and not np.any(v)]
    if zero:
        raise RuntimeError(f"{wl.key}: after Model.compile these weights are all zeros (parameters "
                           f"were not initialised): {', '.join(zero)}")
    return model, states


def jax_impl(wl: workloads.Workload, ref_model, batch, jit: bool = True, key: str = "A",
             name: str | None = None) -> harness.Impl:
    """The pure-JAX twin: same parameters (fresh buffers), same data."""
    t0 = time.perf_counter()
    params, state = wl.to_jax(ref_model)
    jdev = harness.bench_device().jax_device
    params, state = jax.device_put((params, state), jdev)   # committed, as singax's
    step = workloads.jax_step(wl.loss_fn, wl.tx())
    compiled = jax.jit(step, donate_argnums=(0, 1, 2)) if jit else step
    runner = workloads.JaxRunner(compiled, params, state, wl.tx(), batch)
    init_s = time.perf_counter() - t0

    def program():
        return compiled.lower(runner.params, runner.state, runner.opt_state, *runner.batch).compile()
    return harness.Impl(name or IMPL_NAMES[key], runner, lambda loss: [float(np.asarray(loss))],
                       sync=runner.sync, program=program if jit else None, init_s=init_s, key=key,
                       device=harness.device_name(jdev))


def singax_model(wl: workloads.Workload, ref_states: dict, x_np: np.ndarray, use_graph: bool):
    """A fresh singax model, compiled as SINGA scripts do, holding the reference states."""
    model = wl.make_model()
    model.compile([_on_bench_device(x_np)], is_train=True, use_graph=use_graph)
    states = model.get_states()
    if set(states) != set(ref_states):
        raise RuntimeError(f"{wl.key}: state names differ between two builds of the model: "
                           f"{sorted(set(states) ^ set(ref_states))}")
    for name, t in states.items():
        t.copy_from_numpy(ref_states[name])   # a new committed buffer: graph mode donates its state
    return model, list(states.values())


def _on_bench_device(a: np.ndarray):
    """A singax Tensor holding `a` on the benchmark's device."""
    from singax import tensor
    return tensor.from_numpy(a, harness.bench_device())


def _graph_program(model):
    for graph in model.__dict__.get("_graphs", {}).values():
        for entry in graph.cache.values():
            return entry.compiled
    return None


def singax_impl(wl: workloads.Workload, ref_states: dict, batch, mode: str, k: int = 10) -> harness.Impl:
    """mode: "graph", "eager" or "kstep" (K copies of the batch stacked, one dispatch)."""
    t0 = time.perf_counter()
    model, states = singax_model(wl, ref_states, batch[0], use_graph=(mode != "eager"))
    if mode == "kstep":
        inputs = [_on_bench_device(np.stack([b] * k)) for b in batch]

        def step():
            return model.train_steps(*inputs)
    else:
        inputs = [_on_bench_device(b) for b in batch]

        def step():
            return model(*inputs)
    init_s = time.perf_counter() - t0
    return harness.Impl(
        IMPL_NAMES[mode].format(k=k), step,
        losses=lambda out: np.asarray(out[1].data, dtype=np.float64).reshape(-1),
        sync=lambda out: [t.data for t in states] + [out[1].data],
        steps_per_call=k if mode == "kstep" else 1,
        program=(lambda: _graph_program(model)) if mode != "eager" else None,
        init_s=init_s, key=mode, device=harness.device_name(states[0].device.jax_device))


# --------------------------------------------------------------------------- report
def check_targets(key: str, res: dict) -> list[str]:
    """One line per target: measured ratio, the target, and whether it is met."""
    lines = []
    a = res.get("A")

    def verdict(ok):
        return "met" if ok else "**not met**"
    if a is not None and "graph" in res:
        g, t = res["graph"], TARGETS["graph_vs_A"][key]
        ratio = g.median_s / a.median_s
        lines.append(f"- graph step / A: {ratio:.3f}× (target ≤ {t:.2f}×): {verdict(ratio <= t)}")
        if a.jax_compile_s > 0:
            c, t = g.jax_compile_s / a.jax_compile_s, TARGETS["compile_vs_A"]
            est = f"; est. compile {g.compile_s / a.compile_s:.2f}×" if a.compile_s > 0 else ""
            lines.append(f"- graph compile / A compile: {c:.2f}× (JAX trace + lower + XLA compile: "
                         f"{g.jax_compile_s:.2f} s vs {a.jax_compile_s:.2f} s{est}; target ≤ {t:.1f}×): "
                         f"{verdict(c <= t)}")
    if a is not None and "eager" in res:
        ratio = res["eager"].median_s / a.median_s
        t = TARGETS["eager_vs_A_cpu"].get(key) if a.device.startswith("cpu") else None
        lines.append(f"- eager step / A: {ratio:.2f}×" + (f" (CPU target ≤ {t:.1f}×): {verdict(ratio <= t)}"
                                                           if t else ""))
    for ref, label in (("torch", "PyTorch eager"), ("tcompile", "torch.compile")):
        for k in ("graph", "eager") if ref in res else ():
            if k in res:
                ratio = res[k].median_s / res[ref].median_s
                lines.append(f"- {k} step / {label}: {ratio:.2f}× (target ≤ 1): {verdict(ratio <= 1)}")
    if a is not None and "kstep" in res:
        ks = res["kstep"]
        ratio = ks.median_s / a.median_s
        lines.append(f"- K-step per step / A: {ratio:.3f}× (target < 1): {verdict(ratio < 1)}")
    if a is not None:
        for k in ("graph", "eager", "kstep", "torch", "tcompile"):
            if k in res:
                d1 = abs(res[k].loss1 - a.loss1)
                lines.append(f"- loss@1 {k} − A: {d1:.2e}" + ("" if d1 <= 1e-4 * max(1.0, abs(a.loss1))
                                                              else " **disagree**"))
    busy = [r.load.cores() for r in res.values() if r.load.cores() is not None]
    if busy and max(busy) > 0.25:
        lines.append(f"- note: other processes used up to {max(busy):.2f} cores while rows were timed; "
                     "the ratios are rough")
    bad = [r.key for r in res.values() if r.traces_after_warmup or r.compiles_after_warmup]
    lines.append("- traces/compiles during timed steps: " + (f"**{', '.join(bad)}**" if bad else "none"))
    return lines


def summary(results: list[harness.Result]) -> dict:
    """Per row: the numbers the smoke test and other tools read (JSON-ready)."""
    return {r.key: {"name": r.name, "init_s": r.init_s, "median_ms": r.median_s * 1e3,
                    "min_ms": min(r.step_times) * 1e3, "step1_s": r.step1_s, "compile_s": r.compile_s,
                    "jax_compile_s": r.jax_compile_s, "loss1": r.loss1, "loss_end": r.loss_end,
                    "steps_run": r.steps_run, "peak_bytes": r.peak_bytes, "program_bytes": r.program_bytes,
                    "traces": r.traces_after_warmup, "compiles": r.compiles_after_warmup}
            for r in results}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="W1,W2,W3,W4", help="comma-separated subset of W1,W2,W3,W4")
    p.add_argument("--impls", default="A,graph,eager,kstep,torch",
                   help="subset of A,graph,eager,kstep,torch,tcompile (torch rows run only when "
                        "torch is importable; tcompile is torch.compile's Inductor, needs a C++ compiler)")
    p.add_argument("--kstep-workloads", default="W1", help="workloads that also run K-step mode")
    p.add_argument("--k", type=int, default=10, help="steps per dispatch in K-step mode")
    p.add_argument("--steps", type=int, help="timed steps per implementation (default per workload)")
    p.add_argument("--warmup", type=int, help="warm-up steps, steps 1 and 2 included")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--quick", action="store_true", help="tiny step counts (CI smoke run)")
    p.add_argument("--precision", default="highest", help="jax_default_matmul_precision")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="folder for the Markdown report (default bench/results; $OUT/results if set)")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--json", help="also write a JSON summary here")
    args = p.parse_args(argv)

    harness.setup(args.precision)
    if args.quick:
        args.steps, args.warmup, args.rounds, args.k = args.steps or 4, args.warmup or 2, 2, 2
    info = harness.machine_info()
    impls_wanted = args.impls.split(",")
    lines, out_json = [], {}
    for key in args.workloads.split(","):
        wl = workloads.WORKLOADS[key]
        # ResNet-18 takes over a second a step on a 2-core CPU; elsewhere it gets the usual 30
        default_steps = wl.steps if (key != "W3" or info["platform"] == "cpu") else 30
        steps, warmup = args.steps or default_steps, args.warmup or wl.warmup
        use_k = "kstep" in impls_wanted and key in args.kstep_workloads.split(",")
        if use_k:  # same number of steps in every implementation, so loss@end compares
            warmup = max(warmup, 2 * args.k)
            warmup = -(-warmup // args.k) * args.k
            steps = max(steps, args.rounds * args.k)
            steps = -(-steps // (args.rounds * args.k)) * args.rounds * args.k
        print(f"{key}: {wl.title}", flush=True)
        batch = wl.batch(np.random.default_rng(args.seed))
        t0 = time.perf_counter()
        ref_model, ref_states = reference_states(wl, batch[0], args.seed)
        ref_s = time.perf_counter() - t0
        impls = []
        if "A" in impls_wanted:
            impls.append(jax_impl(wl, ref_model, batch))
        for mode in ("graph", "eager", "kstep"):
            if mode in impls_wanted and (mode != "kstep" or use_k):
                impls.append(singax_impl(wl, ref_states, batch, mode, args.k))
        for mode in ("torch", "tcompile"):
            if mode in impls_wanted and torch_rows.available():
                params, state = wl.to_jax(ref_model)
                impls.append(torch_rows.torch_impl(key, params, state, batch, args.precision, info["platform"],
                                                   compiled=mode == "tcompile"))
        results = harness.run_impls(impls, warmup, steps, args.rounds)
        res = harness.by_key(results)
        lines += [f"## {key}: {wl.title}", ""]
        lines += harness.table(harness.RESULT_HEADERS, harness.result_rows(results))
        lines += [""] + check_targets(key, res)
        lines.append(f"- the first singax model's build + `Model.compile([x])` (the placeholder forward "
                     f"that creates the parameters): {ref_s:.2f} s")
        lines.append("")
        out_json[key] = summary(results)
        print("\n".join(harness.short_table(results, ["median (ms)", "× A (median)", "loss@1", "loss@end",
                                                      "device"])))
        print("\n".join(check_targets(key, res)), flush=True)

    config = (f"warm-up {args.warmup or 5} steps (W1 with K-step: {max(args.warmup or 10, 2 * args.k)}), "
              f"timed steps {args.steps or 'W1 100, W3 12 on CPU, else 30'} in {args.rounds} interleaved rounds; "
              f"K={args.k}; seed {args.seed}"
              + ("; QUICK (smoke run, numbers meaningless)" if args.quick else ""))
    doc = harness.header("singax Model.compile benchmark", info, config) + [
        "Columns: see bench/README.md. × A is the median step time over the pure-JAX jit step's; "
        "est. compile = steps 1 and 2 above the median; peak memory is the process-wide high-water "
        "mark after that row's warm-up (rows run in order, so it only grows); XLA program = the "
        "compiled step's arguments + outputs + temporaries − donated aliases.", ""] + lines
    text = "\n".join(doc) + "\n"
    harness.write_report(args, info, text, out_json, "compile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
