#!/usr/bin/env bash
# The published CPU comparison: three `compare` runs, one after another at one revision, into one folder of
# results/runs/, which `publish` shows as one machine section (only the first measures the matmul peak, and
# their cells do not overlap):
#   benchmarks/cpu_sweep.sh [OUT_DIR] [REPEATS]        # default results/runs/cpu, 5 processes per cell
# 1. mlp and block, every closed-loop mode, 1/2/4 threads, offline ceilings at 8 and 64 requests per forward.
# 2. transformer with windows of 1.5 s, up to 6 s (about 5 forwards/s here; torch batched x2 gives each client
#    1.75/s, so 10 per client need 5.7 s), 2 threads, torch and ONNX Runtime (MLX's reference-BLAS CPU build
#    needs minutes per cell); no offline, whose 8-request forward needs ~20 s windows.
# 3. the server scenario on mlp at a 50 ms p99 bound: the default bound (10x one request, >= 2 ms) is below
#    what a Python dispatcher holds on 2 busy cores, so no rate is valid at it (README, server scenario).
# Run it on an idle machine; it takes about an hour with 5 repeats on a 2-core machine.
set -u
out=${1:-results/runs/cpu} repeats=${2:-5}
mkdir -p "$out"
# Before each run, wait (up to 2 min) for the 1-minute load average to fall under 0.5 per CPU: the run before
# leaves it near the core count, which the next run's start probe would report as a busy machine.
settle() { python -c "import os, time; t = time.time()
while os.getloadavg()[0] > 0.5 * os.cpu_count() and time.time() - t < 120: time.sleep(5)"; }
run() { settle; echo "== $*"; PYTHONUNBUFFERED=1 python cli.py compare --repeats "$repeats" -q "$@"; echo "exit code: $?"; }
run -b torch,mlx,ort -w mlp,block -m sequential,threads,batched,offline,processes -t 1,2,4 --offline-k 8,64 \
    --duration 0.25 -o "$out/closed-loop.json"
run -b torch,ort -w transformer -m sequential,threads,batched,processes -t 2 --duration 1.5 --no-peak-probe \
    -o "$out/transformer.json"
run -b torch,mlx,ort -w mlp -m server-threads,server-batched,server-processes -t 2 --latency-bound-ms 50 \
    --no-peak-probe -o "$out/server.json"
