"""The benchmarks' harness: timing protocol, memory, compile counting, machine header, tables.

The protocol follows `shared/anchors`: every implementation starts from the same
parameters and data; steps 1 and 2 are timed alone (they include tracing and
compilation); after a warm-up, the timed steps are interleaved over several rounds
(each round runs every implementation in turn) so slow drifts of a shared machine
hit all of them alike; every step is synchronised (`Impl.sync`).
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

MiB = 1024 * 1024


# --------------------------------------------------------------------------- environment
def setup(precision: str = "highest") -> None:
    """Process-wide JAX settings shared by every implementation (so losses agree)."""
    jax.config.update("jax_default_matmul_precision", precision)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001  (a missing module is reported, not fatal)
        return "n/a"


def _git_commit() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) or "n/a"
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def _torch_version() -> str:
    """torch's version and intra-op threads, or "not installed" (it is never required)."""
    if importlib.util.find_spec("torch") is None:
        return "not installed"
    import torch
    return f"{torch.__version__} ({torch.get_num_threads()} threads)"


def first_jit_s() -> float:
    """Seconds for the first `jax.jit` call of the process (backend start-up), so later rows don't pay it."""
    t0 = time.perf_counter()
    jax.block_until_ready(jax.jit(lambda x: x + 1)(np.float32(1)))
    return time.perf_counter() - t0


def machine_info() -> dict:
    """CPU, cores, device and library versions of this process (also starts the backend)."""
    first = first_jit_s()
    dev = jax.devices()[0]
    return {
        "first_jit_s": first,
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "device": f"{dev.platform}:{dev.id} ({dev.device_kind})",
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "python": platform.python_version(),
        "jax": _version("jax"), "jaxlib": _version("jaxlib"), "optax": _version("optax"),
        "numpy": _version("numpy"), "singax": _git_commit(), "torch": _torch_version(),
        "precision": str(jax.config.jax_default_matmul_precision),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "cpu_convolutions": _cpu_convolutions(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load_start": os.getloadavg(),
    }


def _cpu_convolutions() -> str:
    """Which kernels singax's float32 CPU convolutions use: oneDNN (the `cpu-fast` extra) or XLA's."""
    try:
        from singax.autograd import _onednn
    except ImportError:
        return "n/a"
    kind, why = _onednn.status()
    return kind if kind == "onednn" else f"xla ({why})"


def bench_device():
    """The singax Device every row runs on, chosen as SINGA scripts do: the first
    accelerator through `device.create_cuda_gpu()` (or `create_tpu_device()`) when JAX
    has one, else the host CPU (`device.get_default_device()`)."""
    from singax import device
    platform = jax.devices()[0].platform
    if platform == "gpu":
        return device.create_cuda_gpu()
    if platform == "tpu":
        return device.create_tpu_device()
    return device.get_default_device()


def device_name(jax_device) -> str:
    """`cpu:0`, `cuda:0 (NVIDIA H200)`: how the report names a device."""
    kind = "" if jax_device.platform == "cpu" else f" ({jax_device.device_kind})"
    return f"{jax_device.platform}:{jax_device.id}{kind}"


def machine_slug(info: dict) -> str:
    """Short name of the machine for result files: `cpu-2core`, `gpu-nvidia-h100-80gb-hbm3`."""
    if info["platform"] == "cpu":
        return f"cpu-{info['cores']}core"
    return f"{info['platform']}-" + re.sub(r"[^a-z0-9]+", "-", info["device_kind"].lower()).strip("-")


def header(title: str, info: dict, config: str) -> list[str]:
    """Markdown lines describing the machine, the versions and the benchmark settings."""
    load_end = os.getloadavg()
    lines = [
        f"# {title}", "",
        f"- machine: {info['cpu']}, {info['cores']} usable cores; JAX device `{info['device']}`",
        f"- versions: python {info['python']}, jax {info['jax']}, jaxlib {info['jaxlib']}, "
        f"optax {info['optax']}, numpy {info['numpy']}, torch {info['torch']}, singax {info['singax']}",
        f"- matmul precision `{info['precision']}`" + (f"; XLA_FLAGS `{info['xla_flags']}`"
                                                       if info["xla_flags"] else "")
        + f"; singax CPU convolutions: {info.get('cpu_convolutions', 'n/a')}",
        f"- date {info['date']}; load average start {_fmt_load(info['load_start'])}, "
        f"end {_fmt_load(load_end)}; first jax.jit in process {info['first_jit_s']:.2f} s",
        f"- config: {config}",
    ]
    return lines + [""]


def _fmt_load(load: Sequence[float]) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in load) + "]"


def result_path(info: dict, out_dir: str | None = None, suffix: str = "") -> str:
    """`<out_dir>/<machine>-<date><suffix>.md` (default folder: bench/results)."""
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(out_dir, exist_ok=True)
    date = datetime.date.today().isoformat()
    return os.path.join(out_dir, f"{machine_slug(info)}-{date}{suffix}.md")


def write_report(args, info: dict, text: str, summary: dict, kind: str) -> None:
    """Write the Markdown report (unless --no-write) and the JSON summary (if --json)."""
    if not args.no_write:
        out_dir = args.out or (os.path.join(os.environ["OUT"], "results") if os.environ.get("OUT") else None)
        path = result_path(info, out_dir, f"-{kind}" + ("-quick" if args.quick else ""))
        with open(path, "w") as f:
            f.write(text)
        print(f"wrote {path}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


# --------------------------------------------------------------------------- memory
def peak_memory_bytes() -> tuple[int | None, str]:
    """Peak memory so far: the device allocator's peak where JAX reports one, else process peak RSS.

    Both are high-water marks of the whole process (they never go down).
    """
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001  (backends without allocator statistics)
        stats = None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device peak"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) * (1 if sys.platform == "darwin" else 1024), "process peak RSS"


def program_bytes(compiled: Any) -> int | None:
    """Memory one compiled XLA program needs: arguments + outputs + temporaries - donated aliases."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001  (not every backend implements it)
        return None
    if m is None:
        return None
    peak = getattr(m, "peak_memory_in_bytes", 0) or 0
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    return int(max(peak, total))


# --------------------------------------------------------------------------- compile counting
class CompileCounter:
    """Counts JAX traces and backend compilations in this process (via `jax.monitoring`),
    and adds up the seconds spent tracing, lowering and compiling."""

    TRACE = "/jax/core/compile/jaxpr_trace_duration"
    LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
    COMPILE = "/jax/core/compile/backend_compile_duration"
    _counts: collections.Counter = collections.Counter()
    _seconds: collections.Counter = collections.Counter()
    _installed = False

    @classmethod
    def install(cls) -> None:
        if not cls._installed:
            def listener(name, secs, **kw):
                cls._counts[name] += 1
                cls._seconds[name] += secs
            jax.monitoring.register_event_duration_secs_listener(listener)
            cls._installed = True

    @classmethod
    def snapshot(cls) -> tuple[int, int]:
        """(traces, compilations) so far."""
        return cls._counts[cls.TRACE], cls._counts[cls.COMPILE]

    @classmethod
    def seconds(cls) -> float:
        """Seconds spent so far tracing to jaxprs, lowering to MLIR and compiling with XLA."""
        return cls._seconds[cls.TRACE] + cls._seconds[cls.LOWER] + cls._seconds[cls.COMPILE]


CompileCounter.install()


# --------------------------------------------------------------------------- other load
class OtherLoad:
    """CPU time used by *other* processes while timed sections run (in cores)."""

    _TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self):
        self.other_s = 0.0
        self.wall_s = 0.0

    @classmethod
    def _busy_s(cls) -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
        busy = sum(fields[:8]) - idle                                # guest time is inside user
        return busy / cls._TICK

    @staticmethod
    def _own_s() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def __enter__(self):
        self._t, self._busy, self._own = time.perf_counter(), self._busy_s(), self._own_s()
        return self

    def __exit__(self, *exc):
        busy = self._busy_s()
        self.wall_s += time.perf_counter() - self._t
        if busy is not None and self._busy is not None:
            self.other_s += max(0.0, (busy - self._busy) - (self._own_s() - self._own))

    def cores(self) -> float | None:
        # /proc/stat ticks are 10 ms: below a quarter second the estimate is noise
        return self.other_s / self.wall_s if self.wall_s >= 0.25 else None


# --------------------------------------------------------------------------- timing protocol
@dataclasses.dataclass
class Impl:
    """One implementation of a workload.

    Args:
      name: row label.
      step: runs one call (one training step, or K steps for K-step mode); returns its output.
      losses: output of one call -> the loss of each step in it (floats).
      sync: output -> what to `block_until_ready` on (default: the output itself).
      steps_per_call: K for K-step mode.
      program: returns the compiled XLA program (for its memory analysis), or None.
      init_s: time spent building the model and its parameters (reported, not part of step 1).
      device: the device the row computes on (reported).
      memory: () -> (peak bytes, kind) for rows whose memory JAX does not see (PyTorch).
    """

    name: str
    step: Callable[[], Any]
    losses: Callable[[Any], Sequence[float]]
    sync: Callable[[Any], Any] = lambda out: out
    steps_per_call: int = 1
    program: Callable[[], Any] | None = None
    init_s: float | None = None
    key: str = ""
    device: str = ""
    memory: Callable[[], tuple[int | None, str]] | None = None


@dataclasses.dataclass
class Result:
    name: str
    key: str
    steps_per_call: int
    init_s: float | None
    step1_s: float
    step2_s: float
    jax_compile_s: float
    call_times: list[float]
    loss1: float
    loss_end: float
    steps_run: int
    peak_bytes: int | None
    peak_kind: str
    program_bytes: int | None
    traces_after_warmup: int
    compiles_after_warmup: int
    load: OtherLoad
    device: str = ""

    @property
    def step_times(self) -> list[float]:
        return [t / self.steps_per_call for t in self.call_times]

    @property
    def median_s(self) -> float:
        return statistics.median(self.step_times)

    @property
    def compile_s(self) -> float:
        """Steps 1 and 2 above the median call (tracing, compiling, first-touch allocation)."""
        median_call = statistics.median(self.call_times)
        return max(0.0, self.step1_s - median_call) + max(0.0, self.step2_s - median_call)


def _timed(impl: Impl) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = impl.step()
    jax.block_until_ready(impl.sync(out))
    return time.perf_counter() - t0, out


def run_impls(impls: Sequence[Impl], warmup: int, steps: int, rounds: int,
              log: Callable[[str], None] = print) -> list[Result]:
    """Time every implementation with the anchors' protocol; see the module docstring.

    Args:
      warmup: untimed steps per implementation, steps 1 and 2 included (at least 2 calls).
      steps: timed steps per implementation, spread over `rounds` interleaved rounds.
    """
    state = []
    for impl in impls:
        k = impl.steps_per_call
        jax_s = CompileCounter.seconds()
        t1, out = _timed(impl)
        first = out
        t2, out = _timed(impl)
        for _ in range(max(0, -(-warmup // k) - 2)):
            _, out = _timed(impl)
        jax_s = CompileCounter.seconds() - jax_s
        peak, kind = impl.memory() if impl.memory is not None else peak_memory_bytes()
        prog = None
        if impl.program is not None:
            try:
                prog = program_bytes(impl.program())
            except Exception:  # noqa: BLE001  (memory analysis is best effort)
                prog = None
        state.append(dict(t1=t1, t2=t2, jax_s=jax_s, first=first, out=out, peak=peak, kind=kind, prog=prog,
                          calls=[], load=OtherLoad(),
                          done=k * max(2, -(-warmup // k))))
        log(f"  {impl.name}: step 1 {t1:.3f} s, step 2 {t2:.3f} s")
    traces0 = {}
    for r in range(rounds):
        for impl, st in zip(impls, state):
            total = max(1, steps // impl.steps_per_call)   # timed calls over all rounds
            calls = total * (r + 1) // rounds - total * r // rounds
            if calls == 0:
                continue
            before = CompileCounter.snapshot()
            with st["load"]:
                for _ in range(calls):
                    dt, st["out"] = _timed(impl)
                    st["calls"].append(dt)
            after = CompileCounter.snapshot()
            prev = traces0.get(impl.name, (0, 0))
            traces0[impl.name] = (prev[0] + after[0] - before[0], prev[1] + after[1] - before[1])
            st["done"] += calls * impl.steps_per_call
    results = []
    for impl, st in zip(impls, state):
        first_losses, last_losses = impl.losses(st["first"]), impl.losses(st["out"])
        traces, compiles = traces0[impl.name]
        results.append(Result(
            name=impl.name, key=impl.key or impl.name, steps_per_call=impl.steps_per_call,
            init_s=impl.init_s, step1_s=st["t1"], step2_s=st["t2"], jax_compile_s=st["jax_s"],
            call_times=st["calls"],
            loss1=float(first_losses[0]), loss_end=float(last_losses[-1]), steps_run=st["done"],
            peak_bytes=st["peak"], peak_kind=st["kind"], program_bytes=st["prog"],
            traces_after_warmup=traces, compiles_after_warmup=compiles, load=st["load"],
            device=impl.device))
    return results


# --------------------------------------------------------------------------- Markdown
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> list[str]:
    """A Markdown table; columns from `numeric_from` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(headers))]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return out


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def fmt_mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / MiB:.1f}"


RESULT_HEADERS = ["impl", "step 1 (s)", "step 2 (s)", "est. compile (s)", "JAX compile (s)", "median (ms)",
                  "min (ms)", "max (ms)", "n", "× A (median)", "loss@1", "loss@end", "steps run",
                  "peak mem (MiB)", "XLA program (MiB)", "traces / compiles in timed steps",
                  "other load (cores)", "device"]


def result_rows(results: Sequence[Result], baseline: str = "A") -> list[list[str]]:
    """Rows for `RESULT_HEADERS`; × is relative to the result whose key is `baseline`."""
    base = next((r for r in results if r.key == baseline), None)
    rows = []
    for r in results:
        times = r.step_times
        ratio = r.median_s / base.median_s if base is not None else None
        rows.append([
            r.name, fmt(r.step1_s), fmt(r.step2_s), fmt(r.compile_s, 2), fmt(r.jax_compile_s, 2),
            fmt(r.median_s * 1e3, 2), fmt(min(times) * 1e3, 2), fmt(max(times) * 1e3, 2), len(times),
            fmt(ratio, 2), f"{r.loss1:.5f}", f"{r.loss_end:.5f}", r.steps_run,
            fmt_mib(r.peak_bytes), fmt_mib(r.program_bytes),
            f"{r.traces_after_warmup} / {r.compiles_after_warmup}", fmt(r.load.cores(), 2), r.device,
        ])
    return rows


def short_table(results: Sequence[Result], columns: Sequence[str]) -> list[str]:
    """A table of some of `RESULT_HEADERS`' columns (for the console)."""
    idx = [RESULT_HEADERS.index(c) for c in columns]
    return table(["impl"] + list(columns), [[row[0]] + [row[i] for i in idx] for row in result_rows(results)])


def by_key(results: Sequence[Result]) -> dict[str, Result]:
    return {r.key: r for r in results}
