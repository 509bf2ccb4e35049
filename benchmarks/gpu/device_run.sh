#!/usr/bin/env bash
# Run THERE (the GPU machine), in the repository root, with .whl/ carried
# (benchmarks/gpu/fetch_wheels.sh made it): installs the carried wheels into
# /tmp/site, then runs the benchmark once (at most 8 minutes; it enforces
# that itself). Results go to $OUT (the device tool's folder) or ./gpu_out.
set -uo pipefail
out="${OUT:-gpu_out}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    > "$out/nvidia-smi.csv" 2>&1 || true
python3 -m benchmarks.gpu.run --out "$out/gpu.json" "$@" 2>&1 | tee "$out/gpu.log"
exit "${PIPESTATUS[0]}"
