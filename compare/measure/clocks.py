"""The clocks a measurement reads, each passed to what it times (a Harness, a Schedule, a server strategy),
never rebound at run time. Not here: what is timed, or when.

- `process_clock`: perf_counter, the finest clock; its zero is undefined, so its readings compare only
  within one process. The GPU sampler's clock too, so timed spans are recorded on it.
- `shared_clock`: readings that compare across processes (the processes mode, the server's process pool).
  POSIX defines CLOCK_MONOTONIC as one system-wide clock (Linux: time since boot); elsewhere
  time.monotonic, whose sources (QueryPerformanceCounter, GetTickCount64) are system-wide.
- `RealClock` and `SimClock`: a clock with `sleep_until`, as the server's dispatcher needs: real time, or
  simulated time that jumps (deterministic, for tests and the queueing checks)."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

process_clock = time.perf_counter

if hasattr(time, "clock_gettime") and hasattr(time, "CLOCK_MONOTONIC"):
    shared_clock = functools.partial(time.clock_gettime, time.CLOCK_MONOTONIC)
else:  # pragma: no cover - Windows
    shared_clock = time.monotonic


@dataclass
class RealClock:
    """A real clock (process_clock, or shared_clock), and sleep (which releases the GIL; no spinning, which
    would hold it from the workers)."""
    now: Callable[[], float] = process_clock

    def sleep_until(self, t: float) -> None:
        while (left := t - self.now()) > 0:
            time.sleep(left)


@dataclass
class SimClock:
    """Simulated time: it moves only when told (`t`, or `sleep_until`, which jumps to the time asked plus
    `issue_cost` seconds per wake-up: a model of a late dispatcher). `stalls`: (at, seconds) spans in which
    a sleeper does not wake: one asked to wake inside one wakes at its end (a stalled dispatcher, as a busy
    VM or a GIL holder makes one). Deterministic on any machine."""
    t: float = 0.0
    issue_cost: float = 0.0
    stalls: tuple[tuple[float, float], ...] = ()

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        wake = max(self.t, t)
        for at, seconds in self.stalls:
            if at <= wake < at + seconds:
                wake = at + seconds
        self.t = wake + self.issue_cost
