#!/usr/bin/env python3
"""How fast the server scenario's dispatcher can issue on this machine (a report, not a test; exits 0).

    python benchmarks/server_dispatcher.py [--bound-ms 2] [--threads 2] [--only alone|threads]  # ~3 min

With a do-nothing backend (the op returns its input at once), it searches (compare.measure.loadgen.search,
the real clock) for the highest Poisson rate at which the dispatcher's lag p99 (actual - scheduled issue
time) stays within LAG_FRACTION of the bound: the ceiling any server figure on this machine could show
before the load generator, not the server, sets the latency. Two settings, side by side:
  - "alone": the dispatcher thread with nothing behind it (submit does nothing): sleep and wake-up cost.
  - "threads xN": N do-nothing worker threads taking the queries, as in server-threads: the dispatcher now
    shares the GIL with them, and each query costs a queue hand-off and a worker wake-up.
The bound defaults to BOUND_FLOOR_MS, the smallest default bound a server cell uses.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compare.measure import loadgen  # noqa: E402
from compare.measure.clocks import RealClock  # noqa: E402
from compare.measure.server import run_real  # noqa: E402


BUDGET_S = 90.0  # per setting; a step that would outlast what is left is not started


class NullHarness:
    inputs, rows = [0], 1
    op = staticmethod(lambda x: x)


class Alone:
    """Takes a query and does nothing: the dispatcher's own cost."""
    servers = 1

    def __init__(self):
        self.ends: list[float] = []

    def submit(self, i: int, t: float) -> None:
        self.ends.append(time.perf_counter())

    @property
    def done(self) -> int:
        return len(self.ends)

    def finish(self, count: int):
        import numpy as np
        return np.asarray(self.ends[:count])


def measure_alone(rate: float, bound: float, seed: int, queries: int) -> loadgen.Step:
    return loadgen.measure_rate(RealClock(), Alone, rate, bound, seed, queries=queries)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bound-ms", type=float, default=loadgen.BOUND_FLOOR_MS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=("alone", "threads"), help="run one of the two settings")
    a = ap.parse_args()
    bound = a.bound_ms / 1e3
    print(f"dispatcher lag limit: p99 <= {loadgen.LAG_FRACTION:.0%} of a {a.bound_ms:g} ms bound = "
          f"{loadgen.LAG_FRACTION * a.bound_ms * 1e3:.0f} us; steps of >= {loadgen.MIN_SECONDS:g} s and >= "
          f"{loadgen.queries_needed(0)} queries")

    class Cell:
        max_batch, max_wait_ms = 0, 2.0

    settings = {
        "alone": lambda r, k, n: measure_alone(r, bound, k, n),
        f"threads x{a.threads}": lambda r, k, n: run_real("threads", NullHarness(), a.threads, Cell(), r, bound, k,
                                                             loadgen.MIN_SECONDS, queries=n)[0],
    }
    for name, measure in settings.items():
        if a.only and not name.startswith(a.only):
            continue
        k = iter(range(1, 100))
        began = time.perf_counter()
        res = loadgen.search(lambda r, n: measure(r, next(k), n), 1000.0, time.perf_counter, budget_s=BUDGET_S)
        print(f"\n{name}: highest rate with lag p99 within the limit: {res.peak and round(res.peak)} /s "
              f"(bracket [{res.peak and round(res.peak)}, {res.above and round(res.above)}), "
              f"{len(res.steps)} steps, {time.perf_counter() - began:.0f} s) {res.note}")
        for s in sorted(res.steps, key=lambda s: s.rate):
            print(f"  {s.rate:9.0f}/s  lag p99 {s.lag_p99_ms * 1e3:7.0f} us  latency p99 {s.lat_p99_ms * 1e3:7.0f} us"
                  f"  {s.verdict[:60]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
