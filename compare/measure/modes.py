"""The measurement modes. They run inside a cell's worker process and know a backend only through a
Harness, so the same loop times every framework. Not here: building models (compare.measure.worker),
statistics over trials (compare.stats).

Every mode runs the same schedule of windows (Schedule) in its own concurrent loop:
  1. the speed check: one op to compile and load kernels, then the median of a few ops. If the
     minimum of completed ops per thread (MIN_OPS_PER_WINDOW) cannot fit in the longest window allowed
     (Cell.window_cap), the cell is too slow and says so with its numbers;
  2. warm-up windows, in the mode's own loop with all its threads, until two consecutive windows agree
     within STEADY_REL, or for WARMUP_CAP_DURATIONS x --duration; what it took is recorded, never dropped;
  3. `trials` timed windows, each long enough that every thread completes MIN_OPS_PER_WINDOW ops at the
     rate warm-up ended with (never shorter than --duration, never longer than the cap).
Windows open behind a start barrier; a window's clock starts with the first thread to begin work (a
window that opened at the barrier could be empty on a busy machine, its threads waking after its end). In
a window each op is forward + synchronise; an op counts once its synchronise has returned, and only ops
that started before the deadline count. Throughput of a window is completed ops / (last completion -
first start). Each thread keeps its first and last output of every timed window; they are checked against
the float64 reference after the window closes, outside the clock, so outputs that go wrong only under
concurrency are caught where they were timed.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import psutil

from ..cells import WINDOW_CAP_DURATIONS, Trial
from . import server as _server

now = time.perf_counter  # every clock read in this module goes through this name (tests put a simulated clock here)

MIN_OPS_PER_WINDOW = 10   # completed ops per thread per timed window: with fewer, where one op starts and ends
#                           in the window moves its rate by more than 10%, and the window measures placement
SPEED_PROBE_OPS = 5       # timed ops the speed check takes the median of (after one op that compiles and loads)
WINDOW_SAFETY = 1.5       # a timed window is planned to hold 1.5x the minimum at warm-up's last rate, so a
#                           window somewhat slower than warm-up still holds the minimum
STEADY_REL = 0.05         # warm-up is steady when two consecutive warm-up windows' throughputs agree within 5%
WARMUP_WINDOW_SHARE = 0.25  # a warm-up window lasts a quarter of --duration ...
WARMUP_MIN_OPS = 3        # ... or long enough for 3 ops per thread at the last rate seen, whichever is longer
WARMUP_CAP_DURATIONS = 4  # warm-up ends unsteady after 4 x --duration: on a busy machine it may never settle,
#                           and the result says so (Measured.steady) instead of warming up forever


class TooSlow(Exception):
    """The minimum of ops per window does not fit in the longest window allowed: reported, not measured."""


class ModeFailed(Exception):
    """A worker thread raised; the first exception is attached as the cause."""


class CellFailed(Exception):
    """The mode ran its work in processes of its own (compare.measure.processes), saw one fail, and states
    the cell's status ("crash", "error") and cause itself, e.g. "process 3 of 4 killed by SIGSEGV"."""

    def __init__(self, status: str, cause: str, traceback: str = ""):
        super().__init__(cause)
        self.status, self.cause, self.traceback = status, cause, traceback


@dataclass
class Checks:
    """The tally of outputs checked against the reference: a cell's verification, whichever threads (or
    processes, which send theirs to be merged) did the checking. One check of an offline batch is k
    requests, each recorded on its own."""
    tolerance: float
    errors: int = 0
    checked: int = 0
    max_err: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, err: float | Sequence[float]) -> None:
        with self._lock:
            for e in (err if isinstance(err, (list, tuple)) else (err,)):
                self.checked += 1
                self.errors += e > self.tolerance or not np.isfinite(e)
                self.max_err = max(self.max_err, e) if np.isfinite(e) else float("inf")

    def merge(self, errors: int, checked: int, max_err: float) -> None:
        with self._lock:
            self.errors += errors
            self.checked += checked
            self.max_err = max(self.max_err, max_err)


@dataclass
class Measured:
    """How a cell was measured, as data on its result: the warm-up it took, the window it used, the OS
    threads its process ran."""
    warmup_s: float = 0.0            # wall time of the warm-up windows
    warmup_windows: int = 0
    steady: bool = False             # the warm-up ended by stability (else by its time cap)
    window_s: float | None = None    # the timed window's planned length (the last one, if lengthened)
    op_s: float | None = None        # the speed check's median single op
    os_threads: int | None = None    # most OS threads the process ran at the end of any timed window
    timed_spans: list = field(default_factory=list)  # (first start, last end) of each timed window, in
    #                                                  time.perf_counter's clock: what GpuSampler averages over


@dataclass
class Harness:
    """What a mode needs: the op, how to check an output, and the per-thread inputs."""
    op: Callable[[Any], Any]                     # forward + synchronise; returns the output
    check: Callable[[Any, int], Any]             # (output, input index) -> relative error(s), one per request
    inputs: list[Any]                            # device inputs, one per thread (client); offline: k requests each
    tolerance: float
    stream: Callable[[], Any] | None = None      # per-thread stream context factory (streams mode)
    thread_setup: Callable[[], None] | None = None  # first call in every measuring thread (per-thread settings)
    concat: Callable[[list], Any] | None = None
    split: Callable[[Any, list], list] | None = None
    rows: int = 1                                # batch rows per request
    checks: Checks | None = None                 # where record() tallies; its own when not given
    measured: Measured = field(default_factory=Measured)

    def __post_init__(self) -> None:
        if self.checks is None:
            self.checks = Checks(self.tolerance)

    def record(self, err) -> None:
        self.checks.record(err)

    errors = property(lambda self: self.checks.errors)
    checked = property(lambda self: self.checks.checked)
    max_err = property(lambda self: self.checks.max_err)


def _trial(starts: list[float], ends: list[float], weight: int = 1, hist: Counter | None = None,
           window_s: float | None = None, min_thread_ops: int | None = None) -> Trial:
    lat = (np.asarray(ends) - np.asarray(starts)) * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99])) if len(lat) else (None,) * 3
    return Trial(ops=len(ends) * weight, seconds=max(ends) - min(starts) if ends else 0.0, lat_p50_ms=p50,
                 lat_p90_ms=p90, lat_p99_ms=p99,
                 batch_hist={str(k): v for k, v in sorted(hist.items())} if hist else None,
                 window_s=window_s, min_thread_ops=min_thread_ops)


def _timed_loop(op: Callable, x: Any, deadline: float, starts: list, ends: list) -> tuple:
    """Ops until the deadline: an op counts if it started before it. Returns (first, last) output."""
    clock = now  # locals: the loop's own cost stays far below any op's
    started, ended = starts.append, ends.append
    first = last = None
    while True:
        t0 = clock()
        if t0 >= deadline:
            return first, last
        last = op(x)
        ended(clock())
        started(t0)
        if first is None:
            first = last


def check_speed(h: Harness, index: int, cap: float) -> float:
    """One op to compile and load kernels, then the median of SPEED_PROBE_OPS timed ops, stopping early
    once the median is known to be over the limit, or once the first op and a timed one each took longer
    than the whole longest window (an op of seconds is not timed five times to learn it is too slow).
    Raises TooSlow when MIN_OPS_PER_WINDOW such ops do not fit in `cap`, the longest window allowed; returns
    the median op time. Its first output is checked."""
    t0 = now()
    h.record(h.check(h.op(h.inputs[index]), index))
    first = now() - t0
    limit, took = cap / MIN_OPS_PER_WINDOW, []
    while len(took) < SPEED_PROBE_OPS and sum(t > limit for t in took) <= SPEED_PROBE_OPS // 2:
        t0 = now()
        h.op(h.inputs[index])
        took.append(now() - t0)
        if first > cap and took[-1] > cap:
            break
    op_s = statistics.median(took)
    h.measured.op_s = op_s
    if op_s > limit:
        raise TooSlow(f"one op takes {op_s:.3g} s (median of {len(took)}), so {MIN_OPS_PER_WINDOW} ops need "
                      f"{op_s * MIN_OPS_PER_WINDOW:.3g} s, more than the {cap:g} s longest window; raise --duration")
    return op_s


@dataclass
class Window:
    trial: int | None          # None: a warm-up window
    length: float
    n: int
    deadline: float | None = None  # set by the first thread to start: the window opens when work does
    starts: list = field(default_factory=list)
    ends: list = field(default_factory=list)
    samples: list = field(default_factory=list)   # per thread: (first, last) output

    def __post_init__(self) -> None:
        self.starts = [[] for _ in range(self.n)]
        self.ends = [[] for _ in range(self.n)]
        self.samples = [(None, None)] * self.n

    def open(self, lock: threading.Lock) -> float:
        """The deadline, fixed by the first thread to get here. A window that opened when the barrier
        released would be empty on a busy machine whose threads wake later than its length."""
        if self.deadline is None:
            with lock:
                if self.deadline is None:
                    self.deadline = now() + self.length
        return self.deadline

    def min_ops(self) -> int:
        return min(map(len, self.ends))

    def rate(self) -> float:
        ends = [e for th in self.ends for e in th]
        starts = [s for th in self.starts for s in th]
        return len(ends) / (max(ends) - min(starts)) if ends and max(ends) > min(starts) else 0.0


class Schedule:
    """The windows a mode runs, one after another: warm-up until steady (or capped), then the timed trials.
    `advance()` closes the current window and opens the next; a mode calls it once per window boundary,
    with every thread of the window waiting (a barrier's action), so nothing it does is timed.

    The next window's length comes from the per-thread rate the last window showed (its ops shared out
    over its threads); a timed window in which some thread still fell short of the minimum (a thread the
    GIL or the OS starved) lengthens the windows after it."""

    def __init__(self, h: Harness, n: int, duration: float, trials: int, cap: float, op_s: float,
                 weight: int = 1, index: Callable[[int], int] = lambda i: i):
        self.h, self.n, self.duration, self.trials, self.cap, self.weight, self.index = (
            h, n, duration, trials, cap, weight, index)
        self.per_thread_rate = 1.0 / (op_s * n) if op_s > 0 else float("inf")  # before warm-up: threads serialised
        self.warmup_rates: list[float] = []
        self.warmup_started: float | None = None
        self.window_s: float | None = None        # the timed windows' length, once warm-up has ended
        self.current: Window | None = None
        self.results: list[Trial] = []
        self.hists: list[Counter] = []            # batched: a histogram per timed window, given by the mode
        self.opening = threading.Lock()           # Window.open: one deadline per window

    def advance(self) -> None:
        if self.current is not None:
            self._close(self.current)
        self.current = self._plan()

    def _close(self, w: Window) -> None:
        ops = sum(map(len, w.ends))
        if ops and w.length > 0:  # the mean thread's rate: what the threads can do together, shared out.
            # (No op at all means no thread was scheduled before the deadline, since an op that starts in
            # time always completes and counts: that window says nothing about the rate.)
            self.per_thread_rate = ops / self.n / w.length
        if w.trial is None:
            self.warmup_rates.append(w.rate())
            return
        m = self.h.measured
        try:
            threads = psutil.Process().num_threads()
            m.os_threads = max(m.os_threads or 0, threads)
        except psutil.Error:
            pass
        for i, outs in enumerate(w.samples):  # outputs produced inside the window, checked outside the clock
            for y in outs[:1] if outs[0] is outs[1] else outs:
                if y is not None:
                    self.h.record(self.h.check(y, self.index(i)))
        hist = self.hists[w.trial] if w.trial < len(self.hists) else None
        starts, ends = [s for th in w.starts for s in th], [e for th in w.ends for e in th]
        if ends:
            m.timed_spans.append((min(starts), max(ends)))
        self.results.append(_trial(starts, ends, self.weight, hist, window_s=w.length, min_thread_ops=w.min_ops()))

    def _steady(self) -> bool:
        r = self.warmup_rates
        return len(r) >= 2 and min(r[-2:]) > 0 and abs(r[-1] - r[-2]) <= STEADY_REL * max(r[-2:])

    def _plan(self) -> Window | None:
        m, t = self.h.measured, now()
        if self.window_s is None:  # warming up
            if self.warmup_started is None:
                self.warmup_started = t
            elapsed = t - self.warmup_started
            if not self._steady() and elapsed < WARMUP_CAP_DURATIONS * self.duration:
                length = max(WARMUP_WINDOW_SHARE * self.duration, WARMUP_MIN_OPS / self.per_thread_rate)
                return Window(None, min(length, self.cap), self.n)
            m.warmup_s, m.warmup_windows, m.steady = elapsed, len(self.warmup_rates), self._steady()
            need = MIN_OPS_PER_WINDOW / self.per_thread_rate
            if need > self.cap:
                raise TooSlow(f"{self.per_thread_rate:.3g} ops/s per thread at the end of warm-up, so "
                              f"{MIN_OPS_PER_WINDOW} ops per thread need {need:.3g} s, more than the {self.cap:g} s "
                              f"longest window; raise --duration")
            self.window_s = min(self.cap, max(self.duration, WINDOW_SAFETY * need))
        elif self.results and (short := self.results[-1].min_thread_ops) < MIN_OPS_PER_WINDOW:
            # a thread fell short of the minimum in the last window: the next ones are longer, up to the cap
            # (the short window stays a trial, and says so in its min_thread_ops)
            self.window_s = min(self.cap, self.window_s * WINDOW_SAFETY * MIN_OPS_PER_WINDOW / max(short, 1))
        m.window_s = self.window_s
        done = len(self.results)
        return Window(done, self.window_s, self.n) if done < self.trials else None


def _run_window(h: Harness, sched: Schedule, w: Window, i: int, x: Any) -> None:
    w.samples[i] = _timed_loop(h.op, x, w.open(sched.opening), w.starts[i], w.ends[i])


# -- sequential and offline x1: one thread, the caller's ---------------------------------------------
def run_sequential(h: Harness, duration: float, trials: int, warmup: int, verify_ops: int, weight: int = 1,
                   cap: float | None = None) -> list[Trial]:
    """`weight` = requests per op (offline mode runs k requests in one forward)."""
    cap = cap or WINDOW_CAP_DURATIONS * duration
    op_s = check_speed(h, 0, cap)
    for _ in range(warmup):
        h.op(h.inputs[0])
    sched = Schedule(h, 1, duration, trials, cap, op_s, weight)
    sched.advance()
    while (w := sched.current) is not None:
        _run_window(h, sched, w, 0, h.inputs[0])
        sched.advance()
    for _ in range(verify_ops):
        h.record(h.check(h.op(h.inputs[0]), 0))
    return sched.results


# -- threads, streams and offline xN: N threads, each with its own input -------------------------------
def run_threads(h: Harness, n: int, duration: float, trials: int, warmup: int, verify_ops: int,
                use_streams: bool = False, weight: int = 1, cap: float | None = None) -> list[Trial]:
    cap = cap or WINDOW_CAP_DURATIONS * duration
    op_s = check_speed(h, 0, cap)
    sched = Schedule(h, n, duration, trials, cap, op_s, weight)
    barrier = threading.Barrier(n, action=sched.advance)
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            if h.thread_setup is not None:
                h.thread_setup()
            ctx = h.stream() if use_streams else None
            if ctx is not None:
                ctx.__enter__()
            try:
                x = h.inputs[i]
                for _ in range(warmup):
                    h.op(x)
                while True:
                    barrier.wait()  # every window opens for all threads at once
                    if (w := sched.current) is None:
                        break
                    _run_window(h, sched, w, i, x)
                for _ in range(verify_ops):
                    h.record(h.check(h.op(x), i))
            finally:
                if ctx is not None:
                    ctx.__exit__(None, None, None)
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:  # noqa: BLE001 - reported as the cell's cause
            failures.append(e)
            barrier.abort()

    _join_all([threading.Thread(target=worker, args=(i,), name=f"tb-{i}", daemon=True) for i in range(n)])
    _raise_first(failures)
    return sched.results


def _raise_first(failures: list[BaseException]) -> None:
    if not failures:
        return
    first = next((e for e in failures if isinstance(e, TooSlow)), failures[0])
    if isinstance(first, TooSlow):
        raise first
    raise ModeFailed(first) from first


def _join_all(threads: list[threading.Thread]) -> None:
    for th in threads:
        th.start()
    for th in threads:
        th.join()


# -- batched: N clients, one batcher thread ---------------------------------------------------------
class _Slot:
    """One client's request and its hand-back: `ready` is held until the batcher has the answer."""
    __slots__ = ("x", "arrived", "out", "error", "ready")

    def __init__(self) -> None:
        self.x: Any = None
        self.arrived = 0.0
        self.out: Any = None
        self.error: BaseException | None = None
        self.ready = threading.Lock()
        self.ready.acquire()


def run_batched(h: Harness, n: int, duration: float, trials: int, warmup: int, verify_ops: int,
                max_batch: int, max_wait_ms: float, cap: float | None = None) -> list[Trial]:
    """Clients submit single requests; the batcher runs one forward of up to max_batch requests, or of
    whatever arrived within max_wait_ms of the first, and hands each client its own rows.

    The batcher runs in the caller's thread, the process's main thread, where sequential and offline
    run their forwards too: the ceiling and the batcher then run the model alike (torch on CPU runs a
    forward several times slower from a second thread on small machines, an effect that belongs to the
    threads mode's figures, not to batching). The clients are N further threads.

    The hand-off costs as few thread wake-ups as the policy allows, so that the mode measures batching
    rather than the harness: the batcher takes a batch at once when max_batch requests are waiting; else
    it sleeps until the first request (if none is waiting) or the one that fills the batch rings for it,
    or until max_wait_ms after the first arrived; each client waits on its own lock for its rows. The
    last client to finish closes the queue, which ends the batcher.

    Warm-up also runs one forward at every batch size the batcher can form (1 to min(max_batch, N)):
    frameworks that compile per input shape (JAX's jit) would otherwise compile inside timed windows."""
    cap = cap or WINDOW_CAP_DURATIONS * duration
    op_s = check_speed(h, 0, cap)
    full = max(1, max_batch)
    max_wait = max_wait_ms / 1e3
    pending: deque[_Slot] = deque()
    mutex = threading.Lock()       # guards pending and state
    bell = threading.Lock()        # held, except between a ring and the batcher waking on it
    bell.acquire()
    state: dict[str, Any] = {"asleep": None, "closed": False}  # asleep: None, "empty" or "filling"
    hist: Counter = Counter()

    def ring_if(wanted: bool) -> None:  # with mutex held
        if wanted and state["asleep"]:
            state["asleep"] = None
            bell.release()

    def take() -> list[_Slot] | None:
        """The next batch, once it is full or its first request has waited max_wait; None when closed."""
        while True:
            with mutex:
                if len(pending) >= full or (pending and (state["closed"] or now() >= pending[0].arrived + max_wait)):
                    return [pending.popleft() for _ in range(min(full, len(pending)))]
                if state["closed"]:
                    return None
                state["asleep"] = "filling" if pending else "empty"
                wait = max(pending[0].arrived + max_wait - now(), 1e-6) if pending else -1  # -1: no timeout
            if not bell.acquire(timeout=wait):
                with mutex:
                    if state["asleep"]:
                        state["asleep"] = None
                    else:  # rung just after the timeout: take the ring, so the bell is held again
                        bell.acquire()

    def batcher() -> None:
        while (batch := take()) is not None:
            try:
                xs = [r.x for r in batch]
                out = h.op(h.concat(xs) if len(xs) > 1 else xs[0])
                parts = h.split(out, [h.rows] * len(batch)) if len(batch) > 1 else [out]
                if len(parts) != len(batch):
                    raise ValueError(f"split returned {len(parts)} parts for a batch of {len(batch)}")
                hist[len(batch)] += 1
            except BaseException as e:  # noqa: BLE001 - every waiting client gets the exception
                parts = [None] * len(batch)
                for r in batch:
                    r.error = e
            for r, part in zip(batch, parts):
                r.out = part
                r.ready.release()

    slots = [_Slot() for _ in range(n)]

    def submit(i: int, t0: float) -> Any:
        slot = slots[i]
        slot.x, slot.arrived, slot.error = h.inputs[i], t0, None
        with mutex:
            pending.append(slot)
            ring_if(state["asleep"] == "empty" or len(pending) >= full)
        slot.ready.acquire()
        if slot.error is not None:
            raise slot.error
        return slot.out

    sched = Schedule(h, n, duration, trials, cap, op_s)
    hist = hist

    def boundary() -> None:  # once per barrier: the closing trial window's batch histogram, then the next window
        if sched.current is not None and sched.current.trial is not None:
            sched.hists.append(Counter(hist))
        hist.clear()
        sched.advance()

    barrier = threading.Barrier(n, action=boundary)
    failures: list[BaseException] = []

    live = [n]

    def client(i: int) -> None:
        request = lambda x: submit(i, now())  # noqa: E731 - the client's op: its own rows back from a batch
        try:
            for _ in range(warmup):
                submit(i, now())
            while True:
                barrier.wait()
                if (w := sched.current) is None:
                    break
                w.samples[i] = _timed_loop(request, None, w.open(sched.opening), w.starts[i], w.ends[i])
            for _ in range(verify_ops):
                h.record(h.check(submit(i, now()), i))
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:  # noqa: BLE001
            failures.append(e)
            barrier.abort()
        finally:
            with mutex:  # the last client out closes the queue, which ends the batcher
                live[0] -= 1
                if live[0] == 0:
                    state["closed"] = True
                    ring_if(True)

    if warmup:  # every batch size the batcher can form, so that per-shape compilation (JAX's jit) is not timed
        try:
            for size in range(2, min(full, n) + 1):
                h.split(h.op(h.concat(h.inputs[:size])), [h.rows] * size)
        except BaseException as e:  # noqa: BLE001 - as if a client had met it
            raise ModeFailed(e) from e
    clients = [threading.Thread(target=client, args=(i,), name=f"tb-client-{i}", daemon=True) for i in range(n)]
    for th in clients:
        th.start()
    batcher()  # returns once the last client has closed the queue
    for th in clients:
        th.join()
    _raise_first(failures)
    return sched.results


# -- the table of modes: how each one runs (what each one is: compare.cells.MODES) --------------------
# A runner takes the cell and `build`, which builds the model and its Harness in the calling process (a
# mode that runs in other processes has them build their own), and returns the timed trials. Verification
# is tallied in the Checks that `build`'s Harness records into.
Runner = Callable[[Any, Callable[[], Harness]], list]


@dataclass
class Build:
    """The `build` a runner gets: calling it builds the model and its Harness in this process. A mode that
    builds in processes of its own (processes) calls it never and uses the rest: the cell's Checks, to merge
    its processes' tallies into; the sweep's reference cache, which they share; and `facts`, what it learned
    about the processes that ran (memory per process, intra-op threads), which the worker records."""
    make: Callable[[], Harness]
    checks: Checks
    cache: Any = None
    facts: dict = field(default_factory=dict)
    measured: Measured | None = None   # how the cell was measured (warm-up, window), recorded by the worker

    def __call__(self) -> Harness:
        return self.make()


def _common(cell) -> dict:
    return dict(duration=cell.duration, trials=cell.trials, warmup=cell.warmup, verify_ops=cell.verify_ops,
                cap=cell.window_cap)


def _sequential(cell, build) -> list[Trial]:
    """sequential, and offline: one thread (the main one) or, offline xN, N threads each running k-request
    forwards; either way counted in requests."""
    if cell.threads > 1:
        return run_threads(build(), cell.threads, weight=cell.requests_per_forward, **_common(cell))
    return run_sequential(build(), weight=cell.requests_per_forward, **_common(cell))


def _threads(cell, build) -> list[Trial]:
    return run_threads(build(), cell.threads, use_streams=cell.mode == "streams", **_common(cell))


def _batched(cell, build) -> list[Trial]:
    return run_batched(build(), cell.threads, max_batch=cell.max_batch or cell.threads,
                       max_wait_ms=cell.max_wait_ms, **_common(cell))


def _processes(cell, build) -> list[Trial]:
    from .processes import run_processes  # its own module: spawn, a cross-process barrier, memory per process
    return run_processes(cell, build)


RUNNERS: dict[str, Runner] = {
    "sequential": _sequential,
    "threads": _threads,
    "streams": _threads,
    "batched": _batched,
    "offline": _sequential,
    "processes": _processes,
    "server-threads": _server.runner,
    "server-batched": _server.runner,
    "server-processes": _server.runner,
}
