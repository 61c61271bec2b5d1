#!/usr/bin/env bash
# Run singax's two benchmarks on a GPU machine in one call (about 6 minutes).
#
# Needs a Python with a CUDA-enabled jax, optax and numpy (the lent H200 image's
# `python3` has them, and torch, which adds the PyTorch eager rows); singax itself is
# used from this checkout (PYTHONPATH), nothing is installed or downloaded. Every
# singax row runs on the GPU through `device.create_cuda_gpu()`, as SINGA scripts do,
# and the reports name each row's device. Reports go to $OUT/results when OUT is set,
# else to bench/results; full logs and JSON summaries go beside them.
#
#   bash bench/gpu.sh                 # from the repository root or anywhere
#   PYTHON=/path/to/python bash bench/gpu.sh
#   ALLOW_CPU=1 bash bench/gpu.sh --quick   # dry run on a CPU machine (W1, W2 only)
#
# Extra arguments are passed to both benchmarks; COMPILE_ARGS only to compile.py.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# let the benchmark see the whole card; JAX's default preallocation hides peak memory
export XLA_PYTHON_CLIENT_PREALLOCATE=false
DEST=${OUT:+$OUT/results}
DEST=${DEST:-bench/results}
mkdir -p "$DEST"

command -v nvidia-smi >/dev/null && nvidia-smi -L
PLATFORM=$("$PY" - <<'PY'
import importlib.util, jax
dev = jax.devices()[0]
torch = "torch " + __import__("torch").__version__ if importlib.util.find_spec("torch") else "no torch"
print("jax", jax.__version__, "device", dev, dev.device_kind, "|", torch, flush=True)
print(dev.platform)
PY
) || { echo "gpu.sh: jax failed to start" >&2; exit 2; }
echo "$PLATFORM" | head -1
PLATFORM=$(echo "$PLATFORM" | tail -1)
if [ "$PLATFORM" != gpu ]; then
    [ -n "${ALLOW_CPU:-}" ] || { echo "gpu.sh: jax does not see a GPU ($PLATFORM); nothing run" >&2; exit 2; }
    COMPILE_ARGS=${COMPILE_ARGS:---workloads W1,W2}   # ResNet-18 takes minutes a step on a small CPU
fi

status=0
# compile.py: W1-W4 x (A, graph, eager, PyTorch) + K-step on W1; about 4 minutes on an H200
timeout 300 "$PY" bench/compile.py --out "$DEST" --json "$DEST/compile.json" ${COMPILE_ARGS:-} "$@" 2>&1 \
    | tee "$DEST/compile.log" || status=1
# eager.py: seed MLP and MNIST CNN, singax eager vs jit, op-by-op JAX and PyTorch; about 1 minute
timeout 120 "$PY" bench/eager.py --out "$DEST" --json "$DEST/eager.json" "$@" 2>&1 | tee "$DEST/eager.log" || status=1
ls -l "$DEST"
exit $status
