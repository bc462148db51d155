#!/usr/bin/env python3
"""What each load generator costs the system it measures (issue 20: why the own dispatcher's peaks sat above
LoadGen's). A report; exits 0; needs the loadgen extra.

    python benchmarks/loadgen_cost.py [-b torch] [-w mlp] [-s threads] [-t 2] [--rates 9000,11000] [--json F]

Two measurements, each generator in turn, interleaved (threadbench's dispatcher, LoadGen, and again):
1. a system under test that answers every query at once, at 10,000 queries/s for 5 s: the CPU time per query
   that the load generator itself spends (this process's CPU clock: the dispatcher's thread, or LoadGen's
   issue thread and its calls into Python, and the completion calls);
2. the cell's model behind the same strategy object (as benchmarks/loadgen_crosscheck.py builds it: same
   weights, inputs, intra-op threads) at each of --rates for --seconds, judged by each generator's own rules:
   p50/p99, the process's cores, and CPU time per query.
On a machine whose cores the model fills, a generator's own CPU is capacity the model does not get."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

import loadgen_crosscheck as crosscheck  # noqa: E402
from compare.measure import mlperf  # noqa: E402
from compare.measure.clocks import RealClock, process_clock  # noqa: E402
from compare.measure.loadgen import issue, poisson_schedule  # noqa: E402
from compare.measure.server import run_real  # noqa: E402

GENERATORS = ("threadbench", "loadgen")
NULL_RATE, NULL_SECONDS = 10_000.0, 5.0


class Answered:
    """A system under test that answers each query as it is submitted."""

    def __init__(self):
        self.done, self.on_done = 0, None

    def submit(self, i: int, t: float) -> None:
        self.done += 1
        if self.on_done is not None:
            self.on_done(i)

    def finish(self, count: int) -> np.ndarray:
        return np.full(count, process_clock())


def timed(run) -> tuple[object, float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    out = run()
    return out, time.process_time() - c0, time.perf_counter() - t0


def null_cost(generator: str, seed: int) -> dict:
    n = int(NULL_RATE * NULL_SECONDS)
    if generator == "threadbench":
        run = lambda: issue(RealClock(process_clock), Answered(), poisson_schedule(NULL_RATE, n, seed), NULL_RATE, 0.05)  # noqa: E731
    else:
        run = lambda: mlperf.run_step(Answered(), False, 64, process_clock, NULL_RATE, 0.05, seed, n)  # noqa: E731
    _, cpu, wall = timed(run)
    return {"generator": generator, "rate": NULL_RATE, "queries": n, "cpu_us_per_query": 1e6 * cpu / n,
            "cores": cpu / wall}


def model_step(model, generator: str, rate: float, seconds: float, bound: float, seed: int) -> dict:
    n = math.ceil(rate * seconds)
    if generator == "threadbench":
        run = lambda: run_real(model.strategy, model.h, model.cell.threads, model.cell, rate, bound, seed, seconds,  # noqa: E731
                               queries=n, pool=model.pool)[0]
    else:
        run = lambda: model.loadgen(rate, bound, seconds, seed)  # noqa: E731
    step, cpu, wall = timed(run)
    return {"generator": generator, "rate": rate, "queries": step.queries, "p50_ms": step.lat_p50_ms,
            "p99_ms": step.lat_p99_ms, "verdict": step.verdict, "cpu_us_per_query": 1e6 * cpu / step.queries,
            "cores": cpu / wall, "load": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-b", "--backend", default="torch")
    ap.add_argument("-w", "--workload", default="mlp")
    ap.add_argument("-s", "--strategy", default="threads")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--intra-op-threads", type=int, default=1)
    ap.add_argument("-d", "--device", default="cpu")
    ap.add_argument("--latency-bound-ms", type=float, default=50.0)
    ap.add_argument("--rates", default="9000,11000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    out = {"machine": f"{os.cpu_count()} CPUs", "load_before": os.getloadavg()[0], "loadgen": crosscheck.mlperf_version(),
           "cell": vars(a) | {"json": None}, "null": [], "model": []}
    print(f"load generators' own cost: an at-once SUT at {NULL_RATE:,.0f}/s for {NULL_SECONDS:g} s, each twice, "
          f"interleaved ({os.cpu_count()} CPUs, load {out['load_before']:.2f})")
    for k in range(2):
        for g in GENERATORS:
            r = null_cost(g, 1 + k)
            out["null"].append(r)
            print(f"  {g:<12} {r['cpu_us_per_query']:5.1f} us of CPU a query ({r['cores']:.2f} cores)", flush=True)
    with tempfile.TemporaryDirectory(prefix="threadbench-cost-") as tmp:
        (Path(tmp) / "refs").mkdir()
        model = crosscheck.Model(a.backend, a.workload, a.strategy, a.device, a, Path(tmp) / "refs")
        print(f"{a.backend} {a.workload} server-{a.strategy} x{a.threads}, intra-op {a.intra_op_threads}, bound "
              f"{a.latency_bound_ms:g} ms, {a.seconds:g} s a rate, generators alternating:")
        try:
            for k, rate in enumerate(float(v) for v in a.rates.split(",")):
                for g in GENERATORS:
                    r = model_step(model, g, rate, a.seconds, a.latency_bound_ms / 1e3, 7 + k)
                    out["model"].append(r)
                    print(f"  {g:<12} {rate:>8,.0f}/s: p50 {r['p50_ms']:8.2f} ms, p99 {r['p99_ms']:8.1f} ms, "
                          f"{r['cpu_us_per_query']:5.0f} us of CPU a query, {r['cores']:.2f} cores, load "
                          f"{r['load']:.2f}: {r['verdict'][:70]}", flush=True)
        finally:
            model.close()
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
