#!/usr/bin/env python3
"""What the split's "synchronise" holds besides the device's wait: the GIL's turn on the way out (issue 22).

    python benchmarks/sync_gil.py [--threads 1,2,4,8] [--duration 0.3]

Runs, in this process as a worker runs a cell, a `threads` cell of tests/split_plugin's `split-gilsync`: a
forward that holds the GIL for ~0.35 ms of pure Python, and a synchronize that releases the GIL and waits for
nothing (time.sleep(0)), as a framework's wait on its device releases it. Prints, per thread count, the
split's call, synchronise and the CPU time inside synchronise, with the cell's verdict. If synchronise were
the device's wait it would stay ~0; it grows with the threads by the others' GIL-holding turns. On the H100
the split's synchronise read 573 us at x8 where torch.profiler's cudaStreamSynchronize took 16
(benchmarks/README.md, profiler_crosscheck.py). A report: always exits 0; one process, so its figures are
indicative (no interval).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "split_plugin")]

import workloads  # noqa: E402
from compare import results as R  # noqa: E402
from compare import stats  # noqa: E402
from compare.cells import Cell, CellResult  # noqa: E402
from compare.measure.build import build_model, make_harness  # noqa: E402
from compare.measure.registry import run_mode  # noqa: E402
from compare.render import analysis  # noqa: E402

TINY = (("hidden", 32), ("out", 16), ("width", 32))   # the model's compute is noise beside the known costs


def cell_record(backend, threads: int, duration: float, tmp: Path) -> dict:
    cell = Cell(backend=backend.name, device="cpu", dtype="float64", workload="mlp", mode="threads",
                threads=threads, knobs=TINY, duration=duration, trials=3, warmup=2, verify_ops=1,
                intra_op_threads=1)
    backend.configure(intra_op_threads=1)
    spec = workloads.make("mlp", **dict(TINY))
    params = spec.init_weights(0)
    h = make_harness(backend, build_model(backend, cell, spec, params), cell, spec, params, tmp)
    trials = run_mode(h, cell)
    run = R.new_run([], {"host": "here"}, {})
    R.add_result(run, CellResult(cell=cell, status="ok", trials=trials, cores=h.measured.cores, checked=h.checked,
                                 errors=h.errors))
    (rec,) = stats.summarize(run["rows"]).to_dicts()
    return rec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2,4,8")
    p.add_argument("--duration", type=float, default=0.3)
    a = p.parse_args()
    import threadbench_split
    backend = threadbench_split.GilSyncBackend()
    print(f"split-gilsync: a {threadbench_split.GIL_ITERATIONS:,}-iteration GIL-holding forward, a synchronize "
          "that releases the GIL and waits for nothing; per request (ms):")
    print(f"{'threads':>7} {'req/s':>8} {'call':>7} {'synchronise':>11} {'its CPU':>7}  verdict")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in a.threads.split(",")):
            r = cell_record(backend, n, a.duration, Path(tmp))
            print(f"{n:>7} {r['ops_per_s']:>8,.0f} {r['call_ms']:>7.3f} {r['sync_ms']:>11.3f} "
                  f"{r['sync_cpu_ms']:>7.3f}  {analysis.why(r)}")


if __name__ == "__main__":
    main()
