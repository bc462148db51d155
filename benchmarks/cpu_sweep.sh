#!/usr/bin/env bash
# The published CPU comparison: four `compare` runs, one after another at one revision, into one folder of
# results/runs/, which `publish` shows as one machine section (only the first measures the matmul peak, and
# their cells do not overlap):
#   benchmarks/cpu_sweep.sh [OUT_DIR] [REPEATS] [FREE_THREADED_PYTHON]
#   default: results/runs/cpu, 5 processes per cell, ~/.cache/threadbench/freethreaded/venv/bin/python
#   (benchmarks/build-freethreaded.sh --frameworks builds it; without it the third run has the default
#   interpreter alone).
# 1. block: torch, MLX, ONNX Runtime; sequential, threads, batched, the offline ceiling (k = 8) and processes,
#    at 1 and 2 threads (2 cores: past them, more threads only queue for a core).
# 2. mlp: the same, less threads and processes (run 3 has them).
# 3. mlp threads and processes at 1 and 2 under the default interpreter and a free-threaded CPython 3.13 with
#    the GIL on and off (compare --python): the GIL's share of the answer, one sweep side by side.
# 4. the server scenario on mlp at a 50 ms p99 bound (threads and the batcher x2): the default bound (10x one
#    request, >= 2 ms) is below what a Python dispatcher holds on 2 busy cores.
# 5. the transformer at 2 threads, windows of 1.5 s (about 5 forwards/s here), torch and ONNX Runtime
#    (MLX's reference-BLAS CPU build needs minutes per cell).
# Left out (they do not fit the session's hour on 2 cores): 4 threads, server-processes, block and the
# transformer under the other interpreters.
# Run it on an idle machine: about 40 minutes with 5 repeats on a 2-core machine (at e03b386: 241 s, 98 s,
# 414 s, 738 s and 664 s, the transformer run by hand after the first four at the same revision).
set -u
out=${1:-results/runs/cpu} repeats=${2:-5} ft=${3:-$HOME/.cache/threadbench/freethreaded/venv/bin/python}
mkdir -p "$out"
# Before each run, wait (up to 2 min) for the 1-minute load average to fall under 0.5 per CPU: the run before
# leaves it near the core count, which the next run's start probe would report as a busy machine.
settle() { python -c "import os, time; t = time.time()
while os.getloadavg()[0] > 0.5 * os.cpu_count() and time.time() - t < 120: time.sleep(5)"; }
run() { settle; echo "== $*"; PYTHONUNBUFFERED=1 python cli.py compare --repeats "$repeats" -q "$@"; echo "exit code: $?"; }
common=(-b torch,mlx,ort -t 1,2 --offline-k 8 --duration 0.25)
run "${common[@]}" -w block -m sequential,threads,batched,offline,processes -o "$out/block.json"
run "${common[@]}" -w mlp -m sequential,batched,offline --no-peak-probe -o "$out/mlp.json"
pythons=()
[ -x "$ft" ] && pythons=(--python "$ft") || echo "no free-threaded interpreter at $ft: run 3 has the default alone"
run "${common[@]}" -w mlp -m threads,processes "${pythons[@]}" --no-peak-probe -o "$out/mlp-interpreters.json"
run -b torch,mlx,ort -w mlp -m server-threads,server-batched -t 2 --latency-bound-ms 50 --no-peak-probe \
    -o "$out/server.json"
run -b torch,ort -w transformer -m sequential,threads,batched,processes -t 2 --duration 1.5 --no-peak-probe \
    -o "$out/transformer.json"
