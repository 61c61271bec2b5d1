"""Smoke runs of the benchmarks: they finish, and singax and pure JAX start from the same loss.

A benchmark whose implementations disagree at step 1 compares different models, so
these tests guard the benchmark's own correctness (not its speed).
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
sys.path.insert(0, BENCH)
import workloads  # noqa: E402

RTOL = 1e-5   # step 1 is a forward pass from identical float32 parameters


def _run(script: str, args: list, tmp_path) -> dict:
    out = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), "--quick", "--no-write",
                           "--json", str(out), *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


def _assert_agree(rows: dict, keys: list):
    a = rows["A"]["loss1"]
    assert a == pytest.approx(a)  # a real number, not NaN
    for k in keys:
        assert rows[k]["loss1"] == pytest.approx(a, rel=RTOL), (k, rows[k]["loss1"], a)


@pytest.mark.skipif(workloads.singax_missing("W1") is not None,
                    reason=f"singax pieces for W1 missing: {workloads.singax_missing('W1')}")
def test_compile_bench_w1_quick(tmp_path):
    rows = _run("compile.py", ["--workloads", "W1"], tmp_path)["W1"]
    assert set(rows) - {"torch"} == {"A", "graph", "eager", "kstep"}
    _assert_agree(rows, ["graph", "eager", "kstep"] + (["torch"] if "torch" in rows else []))
    # every implementation ran the same number of steps, so the final losses compare too
    assert len({r["steps_run"] for r in rows.values()}) == 1
    for k in ("graph", "eager", "kstep"):
        assert rows[k]["loss_end"] == pytest.approx(rows["A"]["loss_end"], rel=1e-3, abs=1e-5), k
    assert rows["graph"]["traces"] == rows["graph"]["compiles"] == 0
    assert rows["kstep"]["traces"] == rows["kstep"]["compiles"] == 0
    assert all(r["median_ms"] > 0 for r in rows.values())


@pytest.mark.skipif(workloads.singax_missing("W2") is not None,
                    reason=f"singax pieces for the CNN missing: {workloads.singax_missing('W2')}")
def test_eager_bench_quick(tmp_path):
    result = _run("eager.py", [], tmp_path)
    for name in ("seed-MLP", "CNN"):
        rows = result[name]
        assert set(rows) - {"torch"} == {"A", "B", "eager"}
        _assert_agree(rows, ["B", "eager"])
        # after warm-up the eager step must not trace or compile anything
        assert rows["eager"]["traces"] == 0, name
        assert rows["eager"]["compiles"] == 0, name


def test_step_costs_sums_onednn_verbose_lines_of_both_formats():
    import step_costs
    old = "onednn_verbose,exec,cpu,convolution,jit:avx512_core,forward_training,src_f32::blocked:abcd::f0,,,mb32,4.0"
    new = ("onednn_verbose,v1,primitive,exec,cpu,reorder,jit:blk,undef,src:f32::blocked:aBcd16b::f0 "
           "dst:f32::blocked:abcd::f0,attr-scratchpad:user,,32x64x32x32,3.0")
    text = "\n".join([old, step_costs.START, old, new, old, new, new, "other output", step_costs.END, old])
    kinds, reorders = step_costs.summarize_verbose(text, steps=2)
    assert kinds == {"convolution forward_training (jit:avx512_core)": 4.0, "reorder": 4.5}
    assert reorders == {"4-D aBcd16b -> abcd": 4.5}
