#!/usr/bin/env bash
# The H200 publication (issue 19 item 4) as a shard plan: six parts, each one device call (`run`) that
# writes one results file and stands alone; `python cli.py publish` (or report/diff/plot on the folder)
# merges the shards of each sweep and names any that is missing.
#
#   benchmarks/gpu_sweep.sh PART OUT_FILE        PART: 1..5 = shard PART/5 of the closed-loop sweep,
#                                                       6    = the processes sweep (one call, not sharded),
#                                                       7    = the server scenario (one call, not sharded)
#   benchmarks/gpu_sweep.sh estimate              prints the plan's arithmetic (below) and exits
#
# Run from the repository root on the device machine (Python 3.12, torch CUDA, MLX-CUDA, JAX through
# plugins/threadbench-jax installed there with `pip install --no-deps -e plugins/threadbench-jax`), e.g.
#   THREADBENCH_REVISION=<git rev-parse --short=12 HEAD, run here> benchmarks/gpu_sweep.sh 1 $OUT/h200-closed-1of5.json
# THREADBENCH_REVISION names the revision when the device's copy of the tree sits on another .git; every
# part must state the same one (a sweep's id is hashed from its plan and revision: shards of another
# revision are refused by the merge). A lost part is re-run alone with the same PART.
#
# Each part is bounded by `timeout` (PART_SECONDS, default 510 s: under a 9-minute call); at the limit it is
# interrupted like Ctrl-C and keeps every finished cell process (the merge counts what is there).
#
# The closed-loop sweep: torch, MLX and JAX on the GPU, bfloat16 (the one precision all three have, so
# every framework is compared at equal precision), mlp and transformer, sequential, threads, streams, batched
# and the offline ceiling (k = 8 at 2 and 8 threads), threads 2, 4, 8 (sequential is the one-thread figure); 5 fresh processes per cell (an
# interval over processes at 93.8%), one per round; --shard i/5 cuts it by rounds, so each shard is one
# round of every framework (torch, MLX, JAX processes taking turns) and a lost shard costs every cell one of
# its five processes, not its figures. The processes sweep: processes x8 for mlp, the same settings. The
# server scenario: mlp and transformer, server-threads and server-batched x4 at the default p99 bound, one
# process per cell (its answer is the search's confirmed bracket, not an interval over processes).
#
# Left out, because they do not fit 20 device-minutes at 5 processes per cell (estimate below): float32
# exact and TF32 (another 2 x the torch and JAX cells, 1.5 x the MLX cells), the block workload (+50%), the
# offline k = 64 configurations (30-37 s per transformer cell on the H100), processes at 1, 2, 4 threads and
# for transformer, server-processes and more than one process per server cell (9-34 s per cell and rate
# search on the H100).
#
# Estimate (how): per-cell times of the H100 runs (results/runs/h100/*.json, wall_s per cell, when each
# cell ran in a process of its own, trials 5 x 0.2 s), less their timed windows and warm-up, less the
# start-up a worker now pays once per round (about 4 s torch, 1.5 s MLX: the CPU's split in
# benchmarks/README.md "Where a sweep's time goes" gives start-up's share before and after), leave about
# 1.3 s (torch) and 0.9 s (MLX) of checks per cell; with 3 windows of 0.2 s and ~0.2 s of warm-up that is
# ~2.0 s per torch or JAX cell and ~1.6 s per MLX cell (JAX assumed like torch; its streams cells are
# refused at once, JAX having no stream API). One round (the planner's count: 32 cells per framework, 2 of
# them the matmul and launch probes, ~3 s each once the worker has started): torch 30 cells ~60 s, MLX 30
# ~48 s, JAX 22 ~44 s, probes ~18 s, three worker start-ups (import, CUDA context, model builds) ~25 s, the
# shard's interpreter and host probes ~15 s: ~210 s per shard, 5 shards ~17.5 min. Part 6, processes x8
# for mlp: ~17 s per cell on the H100's scale (x1-x8 averaged 13-14 s torch, 6-8 s MLX per cell; x8
# starts eight children, each importing its framework and making a context), 3 cells x 5 rounds plus
# start-ups: ~4.5 min. Total ~22 min +-30%: the H200 and the workers' per-cell checks were not measured
# here (no device in this session), so the 20-minute goal is met only if the estimate is high.
# Shard 1's closing `time:` line is the first measurement: if it took more than 200 s, leave part 6 out
# (the closed-loop sweep alone answers the page's threads vs streams vs batcher and framework questions);
# if more than 240 s, the five shards alone pass 20 min: cut --threads or --workloads in every part alike
# and start again (a changed plan is another sweep, refused beside the first one's shards).
set -u
part=${1:?PART: 1..6 or estimate}
if [ "$part" = estimate ]; then
  sed -n '/^# Estimate/,/^set -u/p' "$0" | sed '$d'
  exit 0
fi
out=${2:?OUT_FILE: the results file of this part}
seconds=${PART_SECONDS:-510}
mkdir -p "$(dirname "$out")"
common=(--backends torch,mlx,jax --device "${DEVICE:-gpu}" --dtype bfloat16 --threads 2,4,8 --offline-k 8
        --repeats 5 --trials 3 --duration 0.2 --machine "${MACHINE:-H200}" --quiet --out "$out")
case "$part" in
  [1-5]) args=(--workloads mlp,transformer --modes sequential,threads,streams,batched,offline --shard "$part/5") ;;
  6)     args=(--workloads mlp --modes processes --threads 8 --no-peak-probe) ;;
  7)     args=(--workloads mlp,transformer --modes server-threads,server-batched --threads 4 --repeats 1
               --no-peak-probe) ;;
  *)     echo "PART: 1..5 (closed-loop shards), 6 (processes) or 7 (server), not $part" >&2; exit 2 ;;
esac
# JAX takes 75% of the GPU's memory when its client starts (the planning parent that asks for its devices,
# each JAX worker, each child of a processes cell): on demand instead, so that torch, MLX and eight JAX
# children fit beside each other. Set here for every part alike (the plan, and so the sweep, is unchanged).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
PYTHONUNBUFFERED=1 timeout -s TERM "$seconds" python3 cli.py compare "${common[@]}" "${args[@]}"
echo "compare exit code: $? (part $part; 124/130: cut at ${seconds} s, finished cells kept in $out)"
