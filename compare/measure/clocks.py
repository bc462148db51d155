"""The clocks a measurement reads, each passed to what it times (a Harness, a Schedule, a server strategy),
never rebound at run time. Not here: what is timed, or when.

- `process_clock`: perf_counter, the finest clock; its zero is undefined, so its readings compare only
  within one process. The GPU sampler's clock too, so timed spans are recorded on it.
- `shared_clock`: readings that compare across processes (the processes mode, the server's process pool).
  POSIX defines CLOCK_MONOTONIC as one system-wide clock (Linux: time since boot); elsewhere
  time.monotonic, whose sources (QueryPerformanceCounter, GetTickCount64) are system-wide.
- `RealClock` and `SimClock`: a clock with `sleep_until`, as the server's dispatcher needs: real time, or
  simulated time that jumps (deterministic, for tests and the queueing checks).
- The CPU clocks the per-request split reads (compare.measure.split): `thread_cpu` (this thread's CPU time:
  a syscall, CLOCK_THREAD_CPUTIME_ID, 0.3-2 us, that keeps the GIL), `process_cpu` (every thread of this
  process), `run_delay` (this thread's time runnable but waiting for a core, where Linux's schedstat says
  it) and `thread_times` (every thread's CPU time and run delay, read from outside them): file reads, which
  release the GIL; and `machine_busy` (the busy CPU time of every core of the machine, all processes:
  psutil, ~60 us)."""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Callable

import psutil

process_clock = time.perf_counter
thread_cpu = time.thread_time
process_cpu = time.process_time
SCHEDSTAT = "/proc/thread-self/schedstat"   # "on-CPU ns, runqueue-wait ns, timeslices" of the calling thread
TASKS = "/proc/self/task"                    # every thread of this process: TASKS/<tid>/schedstat


def run_delay() -> float | None:
    """Seconds this thread has spent runnable but not running (waiting for a core) since it started, from
    Linux's schedstat; None where there is none (macOS, Windows, a kernel without CONFIG_SCHED_INFO). Time
    blocked on a lock, the GIL, a sleep or I/O is not in it: a blocked thread is not runnable."""
    try:
        with open(SCHEDSTAT, "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def thread_times() -> dict[int, tuple[float, float]]:
    """(CPU time, run delay) in seconds of every thread of this process, by native thread id
    (threading.get_native_id), read from outside them (a window's boundary, while they wait); {} where
    schedstat is missing. Its CPU time is the thread's CPU clock (the scheduler's sum_exec_runtime)."""
    out = {}
    try:
        tids = os.listdir(TASKS)
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{TASKS}/{tid}/schedstat", "rb") as f:
                on_cpu, delay = f.read().split()[:2]
            out[int(tid)] = (int(on_cpu) / 1e9, int(delay) / 1e9)
        except (OSError, ValueError):  # a thread that ended meanwhile
            pass
    return out


def has_thread_times() -> bool:
    """thread_times() can read this process's threads here (Linux with schedstat)."""
    return os.path.exists(SCHEDSTAT)


def machine_busy() -> float:
    """Busy CPU seconds of every core of the machine since boot, all processes: user, nice, system, irq,
    softirq and steal (a vCPU the hypervisor did not run was not free either); guest time is inside user."""
    t = psutil.cpu_times()
    return sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))

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
