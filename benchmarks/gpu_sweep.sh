#!/usr/bin/env bash
# The published GPU comparison, one framework (or one dtype) per invocation so that each fits one
# borrowed-machine call:
#   benchmarks/gpu_sweep.sh BACKEND OUT_FILE [SECONDS] [more compare options, e.g. --dtype bfloat16]
# By default: float32 with both matmul settings where the backend has the switch (torch, jax; MLX runs as
# it must) and bfloat16; every mode; 1, 2, 4, 8 threads; offline ceiling at 8 and 64 requests per forward.
# Options after SECONDS override those defaults (the last value of an option wins).
# SECONDS bounds the sweep: at the limit it is interrupted like Ctrl-C and keeps every finished cell.
# On a borrowed machine whose copy of the tree sits on an older .git, name the revision here first:
#   THREADBENCH_REVISION=<git rev-parse --short=12 HEAD, run here> benchmarks/gpu_sweep.sh ...
set -u
backend=$1 out=$2 budget=${3:-540}
shift $(( $# < 3 ? $# : 3 ))
mkdir -p "$(dirname "$out")"
PYTHONUNBUFFERED=1 timeout -s TERM "$budget" python3 cli.py compare --backends "$backend" --device "${DEVICE:-gpu}" \
  --dtype float32,bfloat16 --fp32-precision highest,high --modes all --threads 1,2,4,8 --offline-k 8,64 \
  --trials 5 --duration 0.2 --quiet --out "$out" "$@"
echo "compare exit code: $?"
