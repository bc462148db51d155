"""The per-request time split: where each request's time goes, read by the one timed loop
(compare.measure.schedule) and pooled into a window's Trial fields. Framework-free; not a profiler.

What is read, and how often:
- every op: the end of the framework call (forward until it returns), one more reading of the op clock
  between its start and its end, so a request's wall time splits into call and synchronise;
- every process, around each window: its CPU time, each measuring thread's CPU time and time runnable
  but waiting for a core (Linux's schedstat), the machine's busy CPU time and, where the backend has a
  timer that knows it, the device's busy time. Threads of one process have these read at the window's
  boundary while they all wait (`Snapshot`, compare.measure.schedule.Boundaries), so that a thread reads
  nothing but the op clock as its loop begins and ends: read by each thread there (file reads that release
  the GIL, syscalls at which a woken herd of threads is preempted holding it) they held 8 threads' first
  ops up to 0.2 s apart. Without schedstat (macOS) each thread reads its own CPU clock there
  (clocks.thread_cpu). A process of its own (the processes mode) reads its gauges at the ends of its loop
  (`Gauges`), as nothing there competes for its GIL;
- a sampled subset of ops, every `stride`-th (SPLIT_BUDGET keeps their cost, sample_cost, under 0.2% of an
  op, counted as CONTENDED_SAMPLE_S per thread where threads share a GIL; WINDOW_SAMPLES keeps a few in every
  window): the thread's CPU time in the call and in synchronise, and the device time the backend's timer marks
  around the call (compare.measure.harness.Harness.timer). A CPU-clock read is a syscall (0.3-2 us, a few
  times a 20 us op's share), so it is not read around every op.

What it can tell: how much of a request its thread was on a CPU (running), runnable but without a core
(waiting for a core; Linux only), or neither (blocked: on the GIL, a lock, a sleep, I/O, a device, or
another thread doing its work); whether the cell's process kept more cores busy than its measuring
threads did (work done for them on the framework's own threads); whether the machine's cores were all
busy; the device's busy share and time per request where a timer gives them. What it cannot: tell the
GIL from any other lock or wait a blocked thread sits in (compare.render.analysis infers the GIL from about
one of the measuring threads being runnable at a time while the others are blocked), or attribute a
process's other threads' CPU to a request. Nor does synchronise mean the device's wait: it is what the request
paid in the backend's synchronize, and a framework's wait releases the GIL, so with several threads it holds
the turn the thread then waits for the GIL on its way out (benchmarks/sync_gil.py: a synchronize that waits
for nothing took 0.06 ms at x1 and 2.5 ms at x8 on a 2-core CPU, tested in tests/test_split.py); a profiler's
cudaStreamSynchronize times only the framework's own wait."""
from __future__ import annotations

import functools
import math
import os
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

from ..cells import SPLIT_FIELDS
from .clocks import machine_busy, process_clock, process_cpu, run_delay, thread_cpu, thread_times

SPLIT_BUDGET = 0.002   # the sampled reads may cost at most 0.2% of an op on average: a sample (3 CPU-clock
#                        reads, and the device timer's marks) costs 1-6 us alone, so ops of 20 us are sampled
#                        about one in 90, and ops of 3 ms and more every time
CONTENDED_SAMPLE_S = 20e-6  # what a sample costs per thread among threads that share a GIL, at the least: its
#                        reads are syscalls, at which a thread holding the GIL can be preempted while the others
#                        wait for it. Measured on the idle 2-core guest (benchmarks/split_cost_parts.py, torch
#                        CPU mlp x4, one op in 68 sampled): ~85 us of the cell's time per sample, 5% of its
#                        throughput, against the 5 us four threads' reads alone would cost; so N threads count
#                        N x 20 us a sample, and sample about 1 op in 1,000 of 35 us ops at x4 (0.2-0.5%)
MAX_STRIDE = 1024      # at least one op in 1024 is sampled, however short the op (a do-nothing backend)
WINDOW_SAMPLES = 8     # and a window of the shortest length (--duration) at the speed check's op time, its
#                        participants' ops serialised (the fewest it can hold), holds at least 8 sampled ops
SAMPLE_READS = 3       # CPU-clock reads per sampled op: before the call, after it, after synchronise
COST_PROBE_READS = 31  # reads timed to learn what one costs here (once per process; about 10-60 us)


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity, which a container or taskset narrows), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_read_s(cpu: Callable[[], float] = thread_cpu) -> float:
    """What one read of the thread's CPU clock costs here, in seconds of wall time on the op clock, as an op's
    cost is counted (the median of COST_PROBE_READS reads, once per process and clock)."""
    return _read_cost(cpu)


@functools.cache
def _read_cost(cpu: Callable[[], float]) -> float:
    gaps = []
    for _ in range(COST_PROBE_READS):
        t0 = process_clock()
        cpu()
        gaps.append(process_clock() - t0)
    return statistics.median(gaps)


def sample_cost(timer: Any = None, cpu: Callable[[], float] = thread_cpu, marks: int = 5) -> float:
    """What sampling one op costs here, in seconds: SAMPLE_READS reads of the CPU clock, and the device timer's
    start and stop where there is one (the median of `marks` pairs, timed now: CUDA events cost microseconds)."""
    cost = SAMPLE_READS * cpu_read_s(cpu)
    if timer is not None:
        took = []
        for _ in range(marks):
            t0 = process_clock()
            timer.stop(timer.start())
            took.append(process_clock() - t0)
        cost += statistics.median(took)
    return cost


def stride(op_s: float, sample_s: float, sharing: int = 1, window_s: float | None = None) -> int:
    """Every how many ops one is sampled: a sample's cost over the op time stays within SPLIT_BUDGET, between
    1 (every op) and MAX_STRIDE; `sharing` threads share one GIL, where a sample costs each of them at least
    CONTENDED_SAMPLE_S; and a window of `window_s` seconds (the shortest timed window) holds WINDOW_SAMPLES."""
    if op_s <= 0 or not math.isfinite(op_s):
        return MAX_STRIDE
    cost = sample_s if sharing <= 1 else sharing * max(sample_s, CONTENDED_SAMPLE_S)
    every = max(1, min(MAX_STRIDE, math.ceil(cost / (SPLIT_BUDGET * op_s) - 1e-9)))   # (- rounding error)
    if window_s is not None and window_s > 0:
        every = min(every, max(1, int(window_s / op_s / WINDOW_SAMPLES)))
    return every


@dataclass
class Gauges:
    """One reading at one end of a participant's timed loop: the op clock; its thread's CPU time where no
    Snapshot has it (Reader.own_cpu); and, for a participant that is a process of its own
    (Reader.whole_process), what a Snapshot holds for it."""
    t: float                      # the op clock
    cpu: float | None = None      # this thread's CPU time
    run_delay: float | None = None  # this thread's time runnable, waiting for a core (Linux schedstat)
    proc: float | None = None     # the process's CPU time, every thread
    machine: float | None = None  # the machine's busy CPU time, every core, every process
    device: float | None = None   # the device's busy time (a backend timer that knows it)


@dataclass
class Snapshot:
    """The process-wide gauges at a window's boundary, read while its threads wait there (Boundaries): the op
    clock, the process's CPU time, every thread's (CPU time, run delay) by native id ({} without schedstat),
    the machine's busy CPU time, the device's busy time (None: not known)."""
    t: float
    proc: float
    threads: dict[int, tuple[float, float]]
    machine: float
    device: float | None = None


def snapshot(clock: Callable[[], float], busy: Callable[[], float | None] | None = None) -> Snapshot:
    return Snapshot(t=clock(), proc=process_cpu(), threads=thread_times(), machine=machine_busy(),
                    device=busy() if busy is not None else None)


@dataclass(frozen=True)
class Reader:
    """How one participant reads its gauges and marks its sampled ops: its clocks (passed in, never rebound),
    whether it is a process of its own that reads its process's gauges itself (else a Snapshot at the window's
    boundary does), the backend's device timer for the marks (None: its ops are not forwards, or there is no
    timer) and the device's busy clock (the timer's busy)."""
    clock: Callable[[], float]
    cpu: Callable[[], float] = thread_cpu
    whole_process: bool = False
    timer: Any = None
    busy: Callable[[], float | None] | None = None
    own_cpu: bool = True   # it reads its thread's CPU clock itself (no Snapshot has it)

    def gauges(self) -> Gauges:
        g = Gauges(t=self.clock(), cpu=self.cpu() if self.own_cpu or self.whole_process else None)
        if self.whole_process:
            g.run_delay, g.proc, g.machine = run_delay(), process_cpu(), machine_busy()
            g.device = self.busy() if self.busy is not None else None
        return g


@dataclass
class Lap:
    """What one participant did in one timed window: each op's start, the end of its call and its end (op
    clock); for each sampled op (call CPU, synchronise CPU, device mark or seconds); the gauges read at both
    ends of its loop. Plain lists, so a process can send it to the worker once its marks are resolved."""
    starts: list[float] = field(default_factory=list)
    mids: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    samples: list[tuple] = field(default_factory=list)
    before: Gauges | None = None
    after: Gauges | None = None
    tid: int | None = None       # its thread's native id (a Snapshot's run delays are by it)

    def resolve(self, timer: Any) -> "Lap":
        """The device marks of the sampled ops turned into seconds (outside the clock, after synchronise)."""
        if timer is not None:
            self.samples = [(c, s, None if m is None else timer.elapsed(m)) for c, s, m in self.samples]
        return self


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1e3


def _delta(laps: list[Lap], name: str) -> list[tuple[float, float]]:
    """(change of a gauge, seconds between the readings) of every lap that read it at both ends."""
    out = []
    for lap in laps:
        a, b = getattr(lap.before, name, None), getattr(lap.after, name, None)
        if a is not None and b is not None and lap.after.t > lap.before.t:
            out.append((b - a, lap.after.t - lap.before.t))
    return out


def pool(laps: list[Lap], read_s: float = 0.0,
         around: tuple[Snapshot, Snapshot] | None = None) -> dict[str, float | None]:
    """One window's split, every participant pooled, as Trial fields (compare.cells.Trial): per op the mean
    call, synchronise and thread-CPU time and time waiting for a core (ms); over the window the cores the
    measuring threads, their processes and the whole machine kept busy, the device's busy share; from the
    sampled ops the mean CPU time in call and in synchronise and the mean device time (ms). `read_s`: what
    one CPU-clock read costs, taken off each sampled CPU figure (each spans about one read of its own).
    `around`: the Snapshots at the window's two boundaries (threads of one process), where the laps' own
    gauges hold no process-wide figures. Fields nothing measured are None (an empty window, a loop that
    records no split, no timer)."""
    laps = [lap for lap in laps if lap is not None]
    ops = sum(len(lap.ends) for lap in laps)
    out: dict[str, float | None] = dict.fromkeys(SPLIT_FIELDS)
    if not ops:
        return out
    if all(len(lap.mids) == len(lap.ends) for lap in laps):   # a thread starved of ops adds none
        call = sum(m - s for lap in laps for s, m in zip(lap.starts, lap.mids))
        sync = sum(e - m for lap in laps for m, e in zip(lap.mids, lap.ends))
        out.update(call_ms=call / ops * 1e3, sync_ms=sync / ops * 1e3)
    cpu = _delta(laps, "cpu")
    if len(cpu) == len(laps):
        out["cpu_ms"] = sum(d for d, _ in cpu) / ops * 1e3
        first, last = min(lap.before.t for lap in laps), max(lap.after.t for lap in laps)
        out["own_cores"] = sum(d for d, _ in cpu) / (last - first) if last > first else None
    if around is not None:
        _around(out, laps, ops, *around)
        return _sampled(out, laps, read_s)
    delay = _delta(laps, "run_delay")
    if delay and len(delay) == len(laps):
        out["core_wait_ms"] = sum(d for d, _ in delay) / ops * 1e3
    proc = _delta(laps, "proc")
    if proc:   # each is one process: their cores add up
        out["proc_cores"] = sum(d / s for d, s in proc)
    machine = _delta(laps, "machine")
    if machine:   # every process sees the same machine: their readings are averaged
        out["host_cores"] = _mean([d / s for d, s in machine])
    device = _delta(laps, "device")
    if device:   # each process's own device (the stand-in's); with one process, the one device
        out["device_busy"] = min(1.0, _mean([d / s for d, s in device]))
    return _sampled(out, laps, read_s)


def _around(out: dict, laps: list[Lap], ops: int, before: Snapshot, after: Snapshot) -> None:
    """The process-wide fields of a window of threads from the Snapshots at its boundaries, and its threads'
    CPU time and run delay where the Snapshots hold them (Linux)."""
    span = after.t - before.t
    if span <= 0:
        return
    mine = [(after.threads[lap.tid], before.threads[lap.tid]) for lap in laps
            if lap.tid in after.threads and lap.tid in before.threads]
    if mine and len(mine) == len(laps):
        cpu = sum(a[0] - b[0] for a, b in mine)
        out["cpu_ms"], out["own_cores"] = cpu / ops * 1e3, cpu / span
        out["core_wait_ms"] = sum(a[1] - b[1] for a, b in mine) / ops * 1e3
    out["proc_cores"] = (after.proc - before.proc) / span
    out["host_cores"] = (after.machine - before.machine) / span
    if after.device is not None and before.device is not None:
        out["device_busy"] = min(1.0, (after.device - before.device) / span)


def _sampled(out: dict, laps: list[Lap], read_s: float) -> dict:
    """The fields the sampled ops give, into `out`."""
    samples = [x for lap in laps for x in lap.samples]
    if samples:
        out["call_cpu_ms"] = _ms(_mean([max(0.0, c - read_s) for c, _, _ in samples]))
        out["sync_cpu_ms"] = _ms(_mean([max(0.0, s - read_s) for _, s, _ in samples]))
        out["device_ms"] = _ms(_mean([d for _, _, d in samples if d is not None]))
        out["split_samples"] = len(samples)
    return out

