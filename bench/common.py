"""Shared pieces of singax's benchmarks: the timing protocol, memory, machine header, tables.

The protocol follows `shared/anchors`: every implementation starts from the same
parameters and data; steps 1 and 2 are timed alone (they include tracing and
compilation); after a warm-up, the timed steps are interleaved over several rounds
(each round runs every implementation in turn) so slow drifts of a shared machine
hit all of them alike; every step is synchronised with `jax.block_until_ready`.
The second half defines the workloads: each singax model (written against SINGA's
public API) and its hand-written pure-JAX + optax twin, which reads its initial
parameters from an initialised singax model (same names, same layouts).
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
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
        "numpy": _version("numpy"), "singax": _git_commit(),
        "precision": str(jax.config.jax_default_matmul_precision),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load_start": os.getloadavg(),
    }


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
        f"optax {info['optax']}, numpy {info['numpy']}, singax {info['singax']}",
        f"- matmul precision `{info['precision']}`" + (f"; XLA_FLAGS `{info['xla_flags']}`"
                                                       if info["xla_flags"] else ""),
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
    """

    name: str
    step: Callable[[], Any]
    losses: Callable[[Any], Sequence[float]]
    sync: Callable[[Any], Any] = lambda out: out
    steps_per_call: int = 1
    program: Callable[[], Any] | None = None
    init_s: float | None = None
    key: str = ""


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
        peak, kind = peak_memory_bytes()
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
            traces_after_warmup=traces, compiles_after_warmup=compiles, load=st["load"]))
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
                  "other load (cores)"]


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
            f"{r.traces_after_warmup} / {r.compiles_after_warmup}", fmt(r.load.cores(), 2),
        ])
    return rows


def short_table(results: Sequence[Result], columns: Sequence[str]) -> list[str]:
    """A table of some of `RESULT_HEADERS`' columns (for the console)."""
    idx = [RESULT_HEADERS.index(c) for c in columns]
    return table(["impl"] + list(columns), [[row[0]] + [row[i] for i in idx] for row in result_rows(results)])


def by_key(results: Sequence[Result]) -> dict[str, Result]:
    return {r.key: r for r in results}


# =========================================================================== workloads
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402

NEEDS = {  # singax pieces each workload uses (module, names)
    "W1": ("layer", ("Linear", "ReLU", "SoftMaxCrossEntropy")),
    "W2": ("layer", ("Conv2d", "MaxPool2d", "Flatten", "Linear", "ReLU", "SoftMaxCrossEntropy")),
    "W3": ("layer", ("Conv2d", "BatchNorm2d", "ReLU", "Add", "AvgPool2d", "Flatten", "Linear",
                     "SoftMaxCrossEntropy")),
    "W4": ("layer", ("Embedding", "Linear", "SoftMaxCrossEntropy")),
}


def singax_missing(key: str) -> str | None:
    """Why workload `key` cannot build its singax model yet (None when it can)."""
    try:
        from singax import layer, model, opt  # noqa: F401
    except Exception as err:  # noqa: BLE001
        return f"singax import failed: {err}"
    _, names = NEEDS[key]
    missing = [n for n in names if not hasattr(layer, n)]
    missing += [f"opt.{n}" for n in ("SGD", "Adam") if not hasattr(opt, n)]
    if not hasattr(getattr(model, "Model", None), "compile"):
        missing.append("model.Model.compile")
    if key == "W4" and not (hasattr(layer, "CudnnRNN") or hasattr(layer, "LSTM")):
        missing.append("CudnnRNN or LSTM")
    return f"singax lacks {', '.join(missing)}" if missing else None


# --------------------------------------------------------------------------- pure-JAX pieces
def _np(t) -> np.ndarray:
    """A host copy of a singax Tensor's value (a fresh buffer for every implementation)."""
    return np.array(t.data)


def _dense(p, x):
    return x @ p["W"] + p["b"]           # singax Linear: W is (in, out)


def _conv(x, W, b=None, stride=1, padding=0):
    y = lax.conv_general_dilated(x, W, (stride, stride), [(padding, padding)] * 2,
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y if b is None else y + b[None, :, None, None]


def _max_pool(x, k, s):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, k, k), (1, 1, s, s), "VALID")


def _avg_pool(x, k, s):
    return lax.reduce_window(x, 0.0, lax.add, (1, 1, k, k), (1, 1, s, s), "VALID") / (k * k)


def _batchnorm(x, p, s, momentum=0.9, eps=1e-5):
    """SINGA's training-mode BatchNorm2d; returns (y, new running stats)."""
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
    n = x.size // x.shape[1]
    c = (slice(None), None, None)
    y = (x - mean[c]) * lax.rsqrt(var + eps)[c] * p["scale"][c] + p["bias"][c]
    new = {"running_mean": (1 - momentum) * s["running_mean"] + momentum * mean,
           "running_var": (1 - momentum) * s["running_var"] + momentum * var * (n / (n - 1))}
    return y, new


def _cross_entropy(logits, labels):
    """Mean softmax cross-entropy with integer labels (SINGA's SoftMaxCrossEntropy)."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels.reshape(-1, 1), axis=1))


def sgd_tx(lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """SINGA's SGD in optax: g + wd*p, then v = m*v + g (v starts at 0), p -= lr*v."""
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    return optax.chain(*parts, optax.sgd(lr, momentum=momentum or None))


def adam_tx(lr: float) -> optax.GradientTransformation:
    """SINGA's Adam (L2-free, epsilon outside the root) in optax."""
    return optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)


def jax_step(loss_fn: Callable, tx: optax.GradientTransformation) -> Callable:
    """`step(params, state, opt_state, *batch) -> (params, state, opt_state, loss)` (not jitted)."""

    def step(params, state, opt_state, *batch):
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss
    return step


class JaxRunner:
    """Holds a pure-JAX training state and advances it one step per call."""

    def __init__(self, step: Callable, params, state, tx, batch: Sequence[Any]):
        self.step, self.params, self.state = step, params, state
        self.opt_state = tx.init(params)
        self.batch = [jax.device_put(b, jax.devices()[0]) for b in batch]

    def __call__(self):
        self.params, self.state, self.opt_state, loss = self.step(
            self.params, self.state, self.opt_state, *self.batch)
        return loss

    def sync(self, loss):
        return (self.params, self.state, self.opt_state, loss)


# --------------------------------------------------------------------------- workload table
@dataclasses.dataclass
class Workload:
    """One benchmark workload: data, the singax model, and its pure-JAX twin.

    Args:
      make_model: builds the singax Model (optimizer set, not yet compiled).
      batch: rng -> the numpy inputs passed to `train_one_batch` (x, y).
      to_jax: an initialised singax model -> (params, state) pytrees for `loss_fn`.
      loss_fn: pure `(params, state, x, y) -> (loss, new_state)`.
      tx: the optax twin of the singax optimizer.
    """

    key: str
    title: str
    make_model: Callable[[], Any]
    batch: Callable[[np.random.Generator], tuple]
    to_jax: Callable[[Any], tuple]
    loss_fn: Callable
    tx: Callable[[], optax.GradientTransformation]
    steps: int = 30
    warmup: int = 5


def _models():
    """The singax models, built only when singax's layers exist."""
    from singax import autograd, layer, model, opt

    class MLP(model.Model):
        """W1: 784-100-10 perceptron (the seed document's Model example, MNIST-sized)."""

        def __init__(self, hidden=100, classes=10):
            super().__init__()
            self.linear1 = layer.Linear(hidden)
            self.relu = layer.ReLU()
            self.linear2 = layer.Linear(classes)
            self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

        def forward(self, x):
            return self.linear2(self.relu(self.linear1(x)))

        def train_one_batch(self, x, y):
            out = self.forward(x)
            loss = self.softmax_cross_entropy(out, y)
            self.optimizer(loss)
            return out, loss

        def set_optimizer(self, optimizer):
            self.optimizer = optimizer

    class CNN(model.Model):
        """W2: SINGA's examples/cnn MNIST CNN (convs with fused ReLU, as in SINGA)."""

        def __init__(self, classes=10, channels=1):
            super().__init__()
            self.conv1 = layer.Conv2d(channels, 20, 5, padding=0, activation="RELU")
            self.conv2 = layer.Conv2d(20, 50, 5, padding=0, activation="RELU")
            self.linear1 = layer.Linear(500)
            self.linear2 = layer.Linear(classes)
            self.pooling1 = layer.MaxPool2d(2, 2, padding=0)
            self.pooling2 = layer.MaxPool2d(2, 2, padding=0)
            self.relu = layer.ReLU()
            self.flatten = layer.Flatten()
            self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

        def forward(self, x):
            y = self.pooling1(self.conv1(x))
            y = self.pooling2(self.conv2(y))
            y = self.relu(self.linear1(self.flatten(y)))
            return self.linear2(y)

        def train_one_batch(self, x, y, dist_option="fp32", spars=None):
            out = self.forward(x)
            loss = self.softmax_cross_entropy(out, y)
            if dist_option == "fp32":
                self.optimizer(loss)
            return out, loss

        def set_optimizer(self, optimizer):
            self.optimizer = optimizer

    class BasicBlock(layer.Layer):
        def __init__(self, planes, stride=1, shortcut=False):
            super().__init__()
            self.conv1 = layer.Conv2d(planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = layer.BatchNorm2d()
            self.relu1 = layer.ReLU()
            self.conv2 = layer.Conv2d(planes, 3, stride=1, padding=1, bias=False)
            self.bn2 = layer.BatchNorm2d()
            self.add = layer.Add()
            self.relu2 = layer.ReLU()
            self.has_shortcut = shortcut
            if shortcut:
                self.conv_sc = layer.Conv2d(planes, 1, stride=stride, bias=False)
                self.bn_sc = layer.BatchNorm2d()

        def forward(self, x):
            y = self.relu1(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            sc = self.bn_sc(self.conv_sc(x)) if self.has_shortcut else x
            return self.relu2(self.add(y, sc))

    class ResNet18(model.Model):
        """W3: ResNet-18 for 32x32 inputs (3x3 stem, no stem pooling), BatchNorm everywhere."""

        def __init__(self, classes=10):
            super().__init__()
            self.conv1 = layer.Conv2d(64, 3, stride=1, padding=1, bias=False)
            self.bn1 = layer.BatchNorm2d()
            self.relu = layer.ReLU()
            self.block_names = []
            for i, (planes, stride) in enumerate(RESNET18_STAGES):
                for j in range(2):
                    name = f"layer{i + 1}_{j}"
                    s = stride if j == 0 else 1
                    setattr(self, name, BasicBlock(planes, s, shortcut=(j == 0 and (s != 1 or i > 0))))
                    self.block_names.append(name)
            self.avgpool = layer.AvgPool2d(4, 4)
            self.flatten = layer.Flatten()
            self.fc = layer.Linear(classes)
            self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            for name in self.block_names:
                y = getattr(self, name)(y)
            return self.fc(self.flatten(self.avgpool(y)))

        def train_one_batch(self, x, y):
            out = self.forward(x)
            loss = self.softmax_cross_entropy(out, y)
            self.optimizer(loss)
            return out, loss

        def set_optimizer(self, optimizer):
            self.optimizer = optimizer

    class LSTMLM(model.Model):
        """W4: embedding -> one LSTM layer -> linear over the vocabulary, every position scored."""

        def __init__(self, vocab=1000, emb=128, hidden=256):
            super().__init__()
            self.hidden = hidden
            self.embedding = layer.Embedding(vocab, emb)
            self.cudnn = hasattr(layer, "CudnnRNN")
            if self.cudnn:
                self.rnn = layer.CudnnRNN(hidden, batch_first=True, rnn_mode="lstm", return_sequences=True)
            else:
                self.rnn = layer.LSTM(emb, hidden)
            self.dense = layer.Linear(vocab)
            self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

        def initialize(self, x):
            if not self.cudnn:  # SINGA's char-rnn pattern: the initial states are made here
                from singax import tensor
                self.hx = tensor.Tensor((x.shape[0], self.hidden), x.device)
                self.cx = tensor.Tensor((x.shape[0], self.hidden), x.device)

        def forward(self, x):                       # x: (B, T) token ids
            e = self.embedding(x)                   # (B, T, E)
            B, T = x.shape
            if self.cudnn:
                h = self.rnn(e)                     # (B, T, H)
            else:  # SINGA's LSTM layer takes a list of time steps, each (B, E)
                steps = autograd.split(autograd.transpose(e, (1, 0, 2)), 0, [1] * T)
                xs = [autograd.reshape(s, (B, -1)) for s in steps]
                hs, _, _ = self.rnn(xs, (self.hx, self.cx))
                h = autograd.transpose(autograd.cat([autograd.reshape(s, (1, B, -1)) for s in hs], 0),
                                       (1, 0, 2))
            return self.dense(autograd.reshape(h, (B * T, self.hidden)))

        def train_one_batch(self, x, y):            # y: (B*T,) next-token ids, batch-major
            out = self.forward(x)
            loss = self.softmax_cross_entropy(out, y)
            self.optimizer(loss)
            return out, loss

        def set_optimizer(self, optimizer):
            self.optimizer = optimizer

    return dict(MLP=MLP, CNN=CNN, ResNet18=ResNet18, LSTMLM=LSTMLM, opt=opt)


RESNET18_STAGES = [(64, 1), (128, 2), (256, 2), (512, 2)]


# --------------------------------------------------------------------------- W1 MLP
def _w1_model():
    m = _models()
    model = m["MLP"]()
    model.set_optimizer(m["opt"].SGD(lr=0.05, momentum=0.9))
    return model


def _w1_to_jax(model):
    params = {k: {"W": _np(getattr(model, k).W), "b": _np(getattr(model, k).b)}
              for k in ("linear1", "linear2")}
    return params, {}


def _w1_loss(p, s, x, y):
    h = jax.nn.relu(_dense(p["linear1"], x))
    return _cross_entropy(_dense(p["linear2"], h), y), s


def _w1_batch(rng):
    return (rng.standard_normal((64, 784)).astype(np.float32),
            rng.integers(0, 10, 64).astype(np.int32))


# --------------------------------------------------------------------------- W2 CNN
def _w2_model():
    m = _models()
    model = m["CNN"]()
    model.set_optimizer(m["opt"].SGD(lr=0.005, momentum=0.9, weight_decay=1e-5))
    return model


def _w2_to_jax(model):
    layers = ("conv1", "conv2", "linear1", "linear2")
    return {k: {"W": _np(getattr(model, k).W), "b": _np(getattr(model, k).b)} for k in layers}, {}


def _w2_loss(p, s, x, y):
    y1 = _max_pool(jax.nn.relu(_conv(x, p["conv1"]["W"], p["conv1"]["b"])), 2, 2)
    y2 = _max_pool(jax.nn.relu(_conv(y1, p["conv2"]["W"], p["conv2"]["b"])), 2, 2)
    h = jax.nn.relu(_dense(p["linear1"], y2.reshape(y2.shape[0], -1)))
    return _cross_entropy(_dense(p["linear2"], h), y), s


def _w2_batch(rng):
    return (rng.standard_normal((64, 1, 28, 28)).astype(np.float32),
            rng.integers(0, 10, 64).astype(np.int32))


# --------------------------------------------------------------------------- W3 ResNet-18
def _w3_model():
    m = _models()
    model = m["ResNet18"]()
    model.set_optimizer(m["opt"].SGD(lr=0.005, momentum=0.9, weight_decay=1e-5))
    return model


def _bn_of(bn):
    return {"scale": _np(bn.scale), "bias": _np(bn.bias)}, \
        {"running_mean": _np(bn.running_mean), "running_var": _np(bn.running_var)}


def _w3_to_jax(model):
    params, state = {"conv1": _np(model.conv1.W), "fc": {"W": _np(model.fc.W), "b": _np(model.fc.b)},
                     "blocks": []}, {"blocks": []}
    params["bn1"], state["bn1"] = _bn_of(model.bn1)
    for name in model.block_names:
        blk = getattr(model, name)
        p, s = {"conv1": _np(blk.conv1.W), "conv2": _np(blk.conv2.W)}, {}
        p["bn1"], s["bn1"] = _bn_of(blk.bn1)
        p["bn2"], s["bn2"] = _bn_of(blk.bn2)
        if blk.has_shortcut:
            p["conv_sc"] = _np(blk.conv_sc.W)
            p["bn_sc"], s["bn_sc"] = _bn_of(blk.bn_sc)
        params["blocks"].append(p)
        state["blocks"].append(s)
    return params, state


def _resnet_strides():
    return [stride if j == 0 else 1 for _, stride in RESNET18_STAGES for j in range(2)]


def _w3_loss(p, s, x, labels):
    new = {"blocks": []}
    h, new["bn1"] = _batchnorm(_conv(x, p["conv1"], padding=1), p["bn1"], s["bn1"])
    h = jax.nn.relu(h)
    for bp, bs, stride in zip(p["blocks"], s["blocks"], _resnet_strides()):
        ns = {}
        y, ns["bn1"] = _batchnorm(_conv(h, bp["conv1"], stride=stride, padding=1), bp["bn1"], bs["bn1"])
        y, ns["bn2"] = _batchnorm(_conv(jax.nn.relu(y), bp["conv2"], padding=1), bp["bn2"], bs["bn2"])
        if "conv_sc" in bp:
            sc, ns["bn_sc"] = _batchnorm(_conv(h, bp["conv_sc"], stride=stride), bp["bn_sc"], bs["bn_sc"])
        else:
            sc = h
        h = jax.nn.relu(y + sc)
        new["blocks"].append(ns)
    h = _avg_pool(h, 4, 4).reshape(h.shape[0], -1)
    return _cross_entropy(_dense(p["fc"], h), labels), new


def _w3_batch(rng):
    return (rng.standard_normal((32, 3, 32, 32)).astype(np.float32),
            rng.integers(0, 10, 32).astype(np.int32))


# --------------------------------------------------------------------------- W4 LSTM LM
W4_SHAPE = dict(vocab=1000, emb=128, hidden=256, seq=35, batch=20)


def _w4_model():
    m = _models()
    model = m["LSTMLM"](W4_SHAPE["vocab"], W4_SHAPE["emb"], W4_SHAPE["hidden"])
    model.set_optimizer(m["opt"].Adam(lr=1e-3))
    return model


def _w4_to_jax(model):
    H = model.hidden
    params = {"emb": _np(model.embedding.W), "dense": {"W": _np(model.dense.W), "b": _np(model.dense.b)}}
    if model.cudnn:  # flat cuDNN layout: W_ih (4H, E), W_hh (4H, H), b_ih, b_hh; gates i, f, g, o
        flat = _np(model.rnn.W)
        E = params["emb"].shape[1]
        sizes = [4 * H * E, 4 * H * H, 4 * H, 4 * H]
        wih, whh, bih, bhh = np.split(flat, np.cumsum(sizes)[:-1])
        params["lstm"] = {"wih": wih.reshape(4 * H, E).T.copy(), "whh": whh.reshape(4 * H, H).T.copy(),
                          "bih": bih.copy(), "bhh": bhh.copy()}
    else:  # SINGA's LSTM layer: per-gate (in, H) matrices and two biases per gate
        r = model.rnn
        gates = "ifgo"
        params["lstm"] = {
            "wih": np.concatenate([_np(getattr(r, f"Wx_{g}")) for g in gates], axis=1),
            "whh": np.concatenate([_np(getattr(r, f"Wh_{g}")) for g in gates], axis=1),
            "bih": np.concatenate([_np(getattr(r, f"Bx_{g}")) for g in gates]),
            "bhh": np.concatenate([_np(getattr(r, f"Bh_{g}")) for g in gates])}
    return params, {}


def _w4_loss(p, s, x, y):
    B, T = x.shape
    e = p["emb"][x]                                           # (B, T, E)
    lstm = p["lstm"]
    # the input projection of all steps at once; the two biases stay two parameters, as in the model
    xp = jnp.einsum("bte,eg->tbg", e, lstm["wih"]) + lstm["bih"] + lstm["bhh"]
    H = lstm["whh"].shape[0]

    def cell(hc, xp_t):
        h, c = hc
        i, f, g, o = jnp.split(xp_t + h @ lstm["whh"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((B, H), xp.dtype)
    _, hs = lax.scan(cell, (zeros, zeros), xp)                # (T, B, H)
    h = jnp.swapaxes(hs, 0, 1).reshape(B * T, H)
    return _cross_entropy(_dense(p["dense"], h), y), s


def _w4_batch(rng):
    c = W4_SHAPE
    tokens = rng.integers(0, c["vocab"], (c["batch"], c["seq"] + 1)).astype(np.int32)
    return tokens[:, :-1].copy(), tokens[:, 1:].reshape(-1).copy()


WORKLOADS = {
    "W1": Workload("W1", "MLP 784-100-10, batch 64, SGD(0.05, m=0.9)", _w1_model, _w1_batch,
                   _w1_to_jax, _w1_loss, lambda: sgd_tx(0.05, 0.9), steps=100, warmup=10),
    "W2": Workload("W2", "SINGA MNIST CNN, batch 64, SGD(0.005, m=0.9, wd=1e-5)", _w2_model, _w2_batch,
                   _w2_to_jax, _w2_loss, lambda: sgd_tx(0.005, 0.9, 1e-5)),
    "W3": Workload("W3", "ResNet-18 CIFAR (BN train), batch 32, SGD(0.005, m=0.9, wd=1e-5)", _w3_model,
                   _w3_batch, _w3_to_jax, _w3_loss, lambda: sgd_tx(0.005, 0.9, 1e-5), steps=12),
    "W4": Workload("W4", "LSTM LM V=1000 E=128 H=256 T=35 B=20, Adam(1e-3)", _w4_model, _w4_batch,
                   _w4_to_jax, _w4_loss, lambda: adam_tx(1e-3)),
}
