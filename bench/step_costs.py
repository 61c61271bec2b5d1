"""Where a CPU training step's time goes outside the kernels' arithmetic: page faults and
oneDNN primitive time, singax graph against PyTorch eager on the same workload.

    python bench/step_costs.py faults W3       # minor page faults, user and system CPU per step
    python bench/step_costs.py onednn W3       # oneDNN time per step by primitive and reorder

`faults` runs both rows in one process, interleaved (3 warm-up and 5 measured steps per
round, 2 rounds). `onednn` runs each row in its own subprocess with `ONEDNN_VERBOSE=1`
and sums the primitives' reported times over two steps after three warm-up steps; the
singax row needs the `cpu-fast` extra, the PyTorch rows need torch (never a singax
dependency). Pin with `taskset -c N` and `OMP_NUM_THREADS=1` for one-core numbers.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import resource
import subprocess
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import compile as bench_compile  # noqa: E402
import harness  # noqa: E402
import torch_rows  # noqa: E402
import workloads  # noqa: E402

START, END = "=====STEPS-START", "=====STEPS-END"


def step_functions(key: str, which: tuple[str, ...]) -> dict:
    """{"graph": step, "torch": step}: each runs one synchronised training step of `key`."""
    harness.setup("highest")
    wl = workloads.WORKLOADS[key]
    batch = wl.batch(np.random.default_rng(0))
    ref_model, ref_states = bench_compile.reference_states(wl, batch[0], 0)
    steps = {}
    if "graph" in which:
        g = bench_compile.singax_impl(wl, ref_states, batch, "graph")
        steps["graph"] = lambda: jax.block_until_ready(g.sync(g.step()))
    if "torch" in which and torch_rows.available():
        params, state = wl.to_jax(ref_model)
        t = torch_rows.torch_impl(key, params, state, batch, "highest", "cpu")
        steps["torch"] = lambda: t.sync(t.step())
    return steps


def faults(key: str) -> list[str]:
    steps = step_functions(key, ("graph", "torch"))
    lines = ["| row | round | minor faults / step | wall ms | user ms | system ms |", "|---|---:|---:|---:|---:|---:|"]
    for rnd in (1, 2):
        for name, step in steps.items():
            for _ in range(3):
                step()
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for _ in range(5):
                step()
            wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
            lines.append(f"| {name} | {rnd} | {(r1.ru_minflt - r0.ru_minflt) / 5:.0f} | {wall / 5e-3:.1f} | "
                         f"{(r1.ru_utime - r0.ru_utime) / 5e-3:.1f} | {(r1.ru_stime - r0.ru_stime) / 5e-3:.1f} |")
    return lines


def _run_marked(key: str, row: str) -> None:
    step = step_functions(key, (row,))[row]
    for _ in range(3):
        step()
    print(START, flush=True)
    for _ in range(2):
        step()
    print(END, flush=True)


def summarize_verbose(text: str, steps: int = 2) -> tuple[dict[str, float], dict[str, float]]:
    """(ms per step by primitive kind, ms per step by reorder direction) from oneDNN's
    verbose lines between the step markers."""
    kinds: dict[str, float] = collections.defaultdict(float)
    reorders: dict[str, float] = collections.defaultdict(float)
    inside = False
    for line in text.splitlines():
        if line.startswith(START):
            inside = True
        elif line.startswith(END):
            break
        elif inside and line.startswith("onednn_verbose") and ",exec," in line:
            f = line.split(",")
            i = f.index("exec")
            prim, impl, prop, ms = f[i + 2], f[i + 3], f[i + 4], float(f[-1]) / steps
            if prim == "reorder":
                tags = re.findall(r"blocked:(\w+)", f[i + 5])
                rank = len(f[-2].split("x"))
                reorders[f"{'4-D' if rank == 4 else f'{rank}-D'} {tags[0]} -> {tags[1]}"] += ms
                kinds["reorder"] += ms
            else:
                kinds[f"{prim} {prop} ({impl})"] += ms
    return dict(kinds), dict(reorders)


def onednn(key: str) -> list[str]:
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    tables = {}
    for row in ("graph", "torch"):
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "_marked", key, "--row", row],
                              env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0 or START not in done.stdout:
            tables[row] = ({}, {})
            print(f"{row}: no oneDNN trace ({done.stderr.strip().splitlines()[-1:] or 'no output'})", file=sys.stderr)
            continue
        tables[row] = summarize_verbose(done.stdout)
    lines = ["| oneDNN ms per step | singax graph | PyTorch eager |", "|---|---:|---:|"]
    for part in (0, 1):
        names = sorted({k for row in tables.values() for k in row[part]},
                       key=lambda k: -max(row[part].get(k, 0.0) for row in tables.values()))
        for name in names:
            cells = [f"{tables[row][part].get(name, 0.0):.1f}" for row in ("graph", "torch")]
            lines.append(f"| {'reorder ' if part else ''}{name} | {cells[0]} | {cells[1]} |")
        if part == 0:
            totals = [f"**{sum(tables[row][0].values()):.1f}**" for row in ("graph", "torch")]
            lines.append(f"| total | {totals[0]} | {totals[1]} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("faults", "onednn", "_marked"))
    p.add_argument("workload", choices=sorted(workloads.WORKLOADS))
    p.add_argument("--row", choices=("graph", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.what == "_marked":
        _run_marked(args.workload, args.row)
        return 0
    print("\n".join(faults(args.workload) if args.what == "faults" else onednn(args.workload)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
