#!/usr/bin/env bash
# Run singax's two benchmarks on a GPU machine in under 6 minutes.
#
# Needs a Python with a CUDA-enabled jax, optax and numpy (the lent H100/H200 image's
# `python3` has them); singax itself is used from this checkout (PYTHONPATH), nothing
# is installed or downloaded. Reports go to $OUT/results when OUT is set, else to
# bench/results; full logs go beside them.
#
#   bash bench/gpu.sh                 # from the repository root or anywhere
#   PYTHON=/path/to/python bash bench/gpu.sh
#   ALLOW_CPU=1 bash bench/gpu.sh --quick   # dry run of this script on a CPU machine
#
# Extra arguments are passed to both benchmarks.
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
"$PY" - <<'PY' || { echo "gpu.sh: jax does not see a GPU; nothing run" >&2; exit 2; }
import jax
dev = jax.devices()[0]
print("jax", jax.__version__, "device", dev, dev.device_kind)
import os
assert dev.platform == "gpu" or os.environ.get("ALLOW_CPU"), dev.platform
PY

status=0
# compile.py: W1-W4 x (A, graph, eager) + K-step on W1; about 3-4 minutes on an H100
timeout 260 "$PY" bench/compile.py --out "$DEST" --json "$DEST/compile.json" "$@" 2>&1 | tee "$DEST/compile.log" || status=1
# eager.py: seed MLP and MNIST CNN, singax eager vs jit and op-by-op JAX; about 1 minute
timeout 110 "$PY" bench/eager.py --out "$DEST" --json "$DEST/eager.json" "$@" 2>&1 | tee "$DEST/eager.log" || status=1
ls -l "$DEST"
exit $status
