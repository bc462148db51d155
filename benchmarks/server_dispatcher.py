#!/usr/bin/env python3
"""How fast the server scenario's dispatcher can issue on this machine, with the workers busy the way each
strategy keeps them (a report, not a test; exits 0).

    python benchmarks/server_dispatcher.py [--rates 1000,2000,5000,10000,15000,20000,25000] [--op-us 40]
                                           [--threads 2] [--seconds 2] [--only NAME,...]   # ~4 min

At each rate (up to 25k/s: the highest published CPU peak is 24k), one step of Poisson queries of
--seconds through the real dispatcher (compare.measure.server.run_real, what a server cell runs; a bound
so large that no step stops early), and its lag p99 (actual - scheduled issue time), which a cell's rate
must keep within LAG_FRACTION of its bound: 5 ms for the 50 ms of the published CPU sweep, 0.2 ms for the
2 ms of the H100's. Settings, side by side:
  - alone: the dispatcher thread with nothing behind it (submit does nothing): sleep and wake-up cost.
  - idle xN: N worker threads taking the queries (server-threads) whose op returns at once.
  - GIL xN: ... whose op holds the GIL for --op-us (a Python loop), as torch's Python-level dispatch and
    eager ops do: the dispatcher must win the GIL back from them for every query (the interpreter hands it
    over every sys.getswitchinterval(), 5 ms).
  - no-GIL xN: ... whose op runs --op-us in C with the GIL released (hashlib over a buffer sized for it), as
    ONNX Runtime's run does: the dispatcher competes for a core, not for the GIL.
  - processes xN: a pool of N processes (server-processes) running numpy's mlp: one multiprocessing queue
    put per query (pickling, a feeder thread) in the dispatcher's process.
Offered rates above the workers' capacity queue up: the lag is the dispatcher's, the latency is not shown.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compare.cells import Cell  # noqa: E402
from compare.measure import loadgen  # noqa: E402
from compare.measure.clocks import RealClock  # noqa: E402
from compare.measure.server import ProcessPool, run_real  # noqa: E402

NO_EARLY_STOP = 1e9   # the step's bound: never overloaded, so every query is issued and its lag counted
LIMITS_MS = (5.0, 0.2)   # LAG_FRACTION of the published bounds, 50 ms (CPU) and 2 ms (H100)


class Harness:
    """A Harness-shaped fake whose op is `work` (inputs are their own index)."""
    def __init__(self, work):
        self.inputs, self.rows, self.op = list(range(8)), 1, work


class Alone:
    """Takes a query and does nothing: the dispatcher's own cost."""
    def __init__(self):
        self.done = 0

    def submit(self, i: int, t: float) -> None:
        self.done += 1

    def finish(self, count: int):
        return np.zeros(count)


def hold_gil(seconds: float):
    def op(x):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return x
    return op


def release_gil(seconds: float):
    """hashlib releases the GIL for buffers over 2 KiB: a buffer that takes `seconds` to hash."""
    size, took = 1 << 16, 0.0
    while took < seconds:
        size *= 2
        buf = bytes(size)
        t0 = time.perf_counter()
        for _ in range(5):
            hashlib.sha256(buf).digest()
        took = (time.perf_counter() - t0) / 5
    buf = bytes(int(size * seconds / took))
    return lambda x: (hashlib.sha256(buf).digest(), x)[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="1000,2000,5000,10000,15000,20000,25000")
    ap.add_argument("--op-us", type=float, default=40.0, help="the busy workers' op, in microseconds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0, help="per step")
    ap.add_argument("--only", help="comma-separated settings: alone, idle, GIL, no-GIL, processes")
    a = ap.parse_args()
    rates = [float(r) for r in a.rates.split(",")]
    n, op = a.threads, a.op_us / 1e6
    cell = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="server-processes", threads=n,
                knobs=(("batch", 1),), intra_op_threads=1, max_batch=0, max_wait_ms=2.0)

    def threads_with(work):
        return lambda r, seed: run_real("threads", Harness(work), n, cell, r, NO_EARLY_STOP, seed, a.seconds)[0]

    settings = {
        "alone": lambda r, seed: loadgen.measure_rate(RealClock(), Alone, r, NO_EARLY_STOP, seed, a.seconds),
        f"idle x{n}": threads_with(lambda x: x),
        f"GIL x{n}": threads_with(hold_gil(op)),
        f"no-GIL x{n}": threads_with(release_gil(op)),
        f"processes x{n}": None,   # started below, once
    }
    chosen = [s for s in settings if not a.only or s.split(" x")[0] in a.only.split(",")]
    print(f"lag p99 ms per offered rate ({a.seconds:g} s steps, workers' op {a.op_us:g} us); a cell's rate must keep "
          f"it under {LIMITS_MS[0]:g} ms (50 ms bound) or {LIMITS_MS[1]:g} ms (2 ms bound)\n")
    print("| setting | " + " | ".join(f"{r:,.0f}/s" for r in rates) + " | every rate under 5 ms up to | under 0.2 ms |")
    print("|---|" + "---|" * (len(rates) + 2))
    with tempfile.TemporaryDirectory(prefix="threadbench-dispatch-") as cache:
        for name in chosen:
            pool = None
            measure = settings[name]
            if measure is None:
                pool = ProcessPool(cell, cache)
                measure = lambda r, seed, pool=pool: run_real("processes", None, n, cell, r, NO_EARLY_STOP, seed,  # noqa: E731
                                                              a.seconds, pool=pool)[0]
            try:
                lags = [measure(r, k).lag_p99_ms for k, r in enumerate(rates, 1)]
            finally:
                if pool is not None:
                    pool.close()
            under = [_up_to(rates, lags, limit) for limit in LIMITS_MS]
            print(f"| {name} | " + " | ".join(f"{lag:.3g}" for lag in lags) + " | "
                  + " | ".join(f"{u:,.0f}/s" if u else "none" for u in under) + " |", flush=True)
    return 0


def _up_to(rates: list[float], lags: list[float], limit: float) -> float | None:
    """The highest rate below which every rate asked kept the lag p99 within `limit` (None: not the first)."""
    ok = None
    for r, lag in zip(rates, lags):
        if lag > limit:
            break
        ok = r
    return ok


if __name__ == "__main__":
    sys.exit(main())
