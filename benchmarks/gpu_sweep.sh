#!/usr/bin/env bash
# The H200 publication (issue 19 item 4) as a shard plan: eight parts, each writing one results file that
# stands alone; `python cli.py publish` (or report/diff/plot on the folder) merges the shards of each sweep
# and names any that is missing.
#
#   benchmarks/gpu_sweep.sh run OUTDIR PART [PART ...]   the parts back to back in one device call, each into
#                                                        OUTDIR/h200-closed-Iof5.json, h200-processes.json,
#                                                        h200-server-mlp.json or h200-server-transformer.json,
#                                                        each with its own timeout; a part
#                                                        that dies or is cut does not stop the next. Prints
#                                                        each part's wall time, and at the end each part's exit
#                                                        code (the script, a report, exits 0).
#   benchmarks/gpu_sweep.sh PART OUT_FILE                one part into OUT_FILE (a lost part, re-run alone)
#   benchmarks/gpu_sweep.sh estimate                     prints the plan's arithmetic (below) and exits
#
#   PART: 1..5 = shard PART/5 of the closed-loop sweep, 6 = the processes sweep, 7 and 8 = the server
#   scenario for mlp and for transformer (13+ min together on an H100; SERVER_BUDGET=MINUTES caps each).
#
# Run from the repository root on the device machine (Python 3.12, torch CUDA, MLX-CUDA, JAX through
# plugins/threadbench-jax installed there with `pip install --no-deps -e plugins/threadbench-jax`), e.g.
#   THREADBENCH_REVISION=<git rev-parse --short=12 HEAD, run here> benchmarks/gpu_sweep.sh run $OUT 1 2 3
# THREADBENCH_REVISION names the revision when the device's copy of the tree sits on another .git; every
# part must state the same one (a sweep's id is hashed from its plan and revision: shards of another
# revision are refused by the merge). A lost part is re-run alone with the same PART.
#
# Each part is bounded by `timeout` (PART_SECONDS, default 510 s); `run` also keeps the whole call under
# CALL_SECONDS (default 590 s, under a device call's 10 minutes): a part gets what is left, and one that
# would get less than 60 s is not started (run it in the next call). At its limit a part is interrupted like
# Ctrl-C and keeps every finished cell process (the merge counts what is there).
#
# What the parts share (nothing they measure): CACHE (default /tmp/threadbench-cache) holds the float64
# references outputs are checked against (compare --cache-dir: computed by the first part that needs one,
# read by every later part and worker) and, in CACHE/jax, JAX's persistent compilation cache (a program an
# earlier process compiled, its autotuned kernel choices included, is loaded instead of compiled again;
# every compile, cached or not, happens before the warm-up, outside every timed window; the JAX rows record
# the folder as compilation_cache). Both last as long as the device machine: a fresh machine starts them
# empty, and its first part pays the computing and compiling again.
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
# Estimate (how): the per-cell times of the three H200 shards measured at f11a9c4 (results/supplementary/h200/
# h200-closed-{1,2,3}of5.json, processes[].times, each without a shared cache). Each shard's sweep took
# 172.0, 162.6 and 158.3 s (time_split wall_s; mean 164 s), of which:
# - float64 references 14.1, 14.2, 14.2 s, all in the torch worker (the first to need them; its transformer
#   offline x8 k=8 cell alone 11.2-11.5 s); the MLX and JAX workers read the same files in 0.1 s each. With
#   one CACHE every part after the first reads them too: -14 s per later shard.
# - JAX compiling: the JAX cells' seconds outside build, references, warm-up and timed windows (mode_s less
#   the four) are 59.0, 51.1, 53.7 s, against 12.9, 8.3, 8.1 s for the same cells of MLX; the excess, 51.8,
#   43.2, 47.0 s (mean 47 s), sits in the cells that first meet a shape in their process: transformer
#   batched x8 (34-35 s when it runs before x4: the warm-up's forward at each batch size 2..8, a compile
#   each, about 5 s apiece), x4 (16.7 s), offline k=8 (5-7 s), the first transformer cell at one request
#   (4-5 s), mlp batched x4 and x8 (2-5 s). With the compilation cache, every later shard loads these
#   programs instead; loading was not measured (no device here): counted as 4 s, so -43 s per later shard.
# Shard 1 ~164 s, shards 2-5 ~164 - 14 - 43 = ~107 s each: the closed loop ~592 s, ~9.9 min (5 x 164 s =
# 13.7 min without the caches), if the five shards run on one machine (one or several warm calls, e.g.
# `run OUT 1 2 3`, then `run OUT 4 5`). Part 6, processes x8 for mlp: ~17 s per cell on the H100's scale
# (x1-x8 averaged 13-14 s torch, 6-8 s MLX per cell; x8 starts eight children, each importing its framework
# and making a context; JAX's children now load the mlp programs the shards compiled), 3 cells x 5 rounds
# plus start-ups: ~4.5 min. Parts 7 and 8, the server: the H200 run of it (results/supplementary/h200/h200-server.json) was
# cut at 264 s with torch's 4 cells done in 130 s and MLX's in 107 s; JAX like torch: ~6 min; long steps
# now last at least LoadGen's 10 s (they took ~5 s at these rates): two per cell, +~10 s a cell, ~8 min for
# the 12 cells, LoadGen driving them (carry mlcommons-loadgen). Each call adds its own start (interpreter,
# the planning parent's JAX and CUDA start, host probes), not in wall_s: the `part N: S s` lines below
# measure it. Total ~22 min: over the 20-minute goal unless the caches save more than estimated; if shard 1
# takes more than 170 s, leave part 6 (processes) for another session rather than cut the server.
# Measured (an H100, revision 5a5be10, benchmarks/README.md "the whole plan, measured"): shard 1 172 s cold,
# shards 2-5 102-110 s (the closed loop 9.8 min, as estimated), part 6 121 s, part 7 352 s, part 8 430 s for 3
# of its 6 cells: 24.9 min of compare with the server unfinished. The server's cells took 31-184 s each, not
# ~30 s: its rate steps (16-24 a cell, failures run twice, LoadGen's 10 s long steps, low rates lengthened
# until LoadGen has its queries). The plan fits 20 minutes only with a cheaper server part: SERVER_BUDGET=3.5
# gives parts 7 and 8 3.5 minutes each, planned from the H100's per-cell costs (compare --budget --costs
# results/supplementary/h100-5a5be10/h100-server-<workload>.json; SERVER_COSTS names another folder): compare says before it
# starts which cells, costliest first, it leaves out, and the page shows them missing. With it: closed loop
# ~9.8 + processes ~2.0 + server 7 = ~19 min of compare, plus each call's start.
set -u
cache=${CACHE:-/tmp/threadbench-cache}
call_seconds=${CALL_SECONDS:-590}
part_seconds=${PART_SECONDS:-510}
min_part_seconds=60   # a part given less than this would be cut before its first worker had measured much

# The machine the results name (compare --machine) and the stem of their files: MACHINE if set, else the GPU's
# model from nvidia-smi (H200 or H100: a call for the H200 may be given an H100; another GPU by its full name),
# else (no nvidia-smi) H200.
gpu_model() {
  local name
  name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
  case "$name" in *H100*) echo H100 ;; *H200*|"") echo H200 ;; *) echo "${name// /-}" ;; esac
}
machine=${MACHINE:-$(gpu_model)}
stem=$(echo "$machine" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9\n' '-')

part_file() {   # the results file a part writes in `run`
  case "$1" in
    [1-5]) echo "$stem-closed-$1of5.json" ;;
    6)     echo "$stem-processes.json" ;;
    7)     echo "$stem-server-mlp.json" ;;
    8)     echo "$stem-server-transformer.json" ;;
    *)     return 1 ;;
  esac
}

bad_part() {
  echo "PART: 1..5 (closed-loop shards), 6 (processes), 7 or 8 (the server: mlp, transformer), not $1" >&2
  exit 2
}

# JAX takes 75% of the GPU's memory when its client starts (the planning parent that asks for its devices,
# each JAX worker, each child of a processes cell): on demand instead, so that torch, MLX and eight JAX
# children fit beside each other. The compilation cache keeps every program (no minimum compile time or
# size: the small per-shape concatenations and splits of batched cost a compile each too). Set here for
# every part alike (the plan, and so the sweep, is unchanged).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$cache/jax}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=${JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES:--1}

run_part() {   # PART OUT_FILE SECONDS: one part, its exit code returned
  local part=$1 out=$2 seconds=$3 args rc
  mkdir -p "$(dirname "$out")"
  local common=(--backends torch,mlx,jax --device "${DEVICE:-gpu}" --dtype bfloat16 --threads 2,4,8 --offline-k 8
                --repeats 5 --trials 3 --duration 0.2 --machine "$machine" --quiet --cache-dir "$cache"
                --out "$out")
  case "$part" in
    [1-5]) args=(--workloads mlp,transformer --modes sequential,threads,streams,batched,offline --shard "$part/5") ;;
    6)     args=(--workloads mlp --modes processes --threads 8 --no-peak-probe) ;;
    7|8)   local workload; workload=$([ "$part" = 7 ] && echo mlp || echo transformer)
           args=(--workloads "$workload" --modes server-threads,server-batched --threads 4 --repeats 1
                 --no-peak-probe)
           if [ -n "${SERVER_BUDGET:-}" ]; then   # minutes for this part: the costliest cells left out, said first
             args+=(--budget "$SERVER_BUDGET" --costs "${SERVER_COSTS:-results/supplementary/h100-5a5be10}/h100-server-$workload.json")
           fi ;;
    *)     bad_part "$part" ;;
  esac
  PYTHONUNBUFFERED=1 timeout -s TERM "$seconds" python3 cli.py compare "${common[@]}" "${args[@]}"
  rc=$?
  echo "compare exit code: $rc (part $part; 124/130: cut at ${seconds} s, finished cells kept in $out)"
  return "$rc"
}

now() { date +%s.%N; }
elapsed() {   # seconds since $1 (a `now`), one decimal
  awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'
}

case "${1:?run OUTDIR PART [PART ...], PART OUT_FILE, or estimate}" in
  estimate)
    sed -n '/^# Estimate/,/^set -u/p' "$0" | sed '$d'
    exit 0 ;;
  run)
    outdir=${2:?OUTDIR: the folder of the parts results files}
    shift 2
    [ "$#" -gt 0 ] || { echo "run OUTDIR PART [PART ...]: name at least one PART" >&2; exit 2; }
    for part in "$@"; do part_file "$part" >/dev/null || bad_part "$part"; done
    call_start=$(now)
    summary=""
    for part in "$@"; do
      left=$(awk -v s="$call_seconds" -v e="$(elapsed "$call_start")" 'BEGIN { printf "%d", s - e }')
      seconds=$(( left < part_seconds ? left : part_seconds ))
      if [ "$seconds" -lt "$min_part_seconds" ]; then
        echo "part $part: not started, ${left} s left of CALL_SECONDS=${call_seconds}; run it in the next call"
        summary+=" $part not started;"
        continue
      fi
      start=$(now)
      run_part "$part" "$outdir/$(part_file "$part")" "$seconds"
      rc=$? took=$(elapsed "$start")
      echo "part $part: $took s wall, exit code $rc, $outdir/$(part_file "$part")"
      summary+=" $part $took s (exit $rc);"
    done
    echo "parts $*: $(elapsed "$call_start") s in all;$summary cache $cache"
    ;;
  *)
    part=$1
    part_file "$part" >/dev/null || bad_part "$part"
    run_part "$part" "${2:?OUT_FILE: the results file of this part}" "$part_seconds" || true
    ;;
esac
