"""The measurement modes. They run inside a cell's worker process and know a backend only through a
Harness, so the same loop times every framework.

Every mode: warm up (in every thread that will be timed), then `trials` timed windows. In a window each
op is forward + synchronise; an op counts once its synchronise has returned. Throughput of a window is
completed ops / (last completion - first start), so threads that start late or finish early cannot
flatter it. After the trials, every thread checks `verify_ops` outputs against the float64 reference
while all threads run, so results that go wrong only under concurrency are counted as errors.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..cells import Trial
from . import server as _server
from .verify import rel_error

now = time.perf_counter


class TooSlow(Exception):
    """One op takes longer than a timed window: the cell is reported, not measured."""


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
    processes, which send theirs to be merged) did the checking."""
    tolerance: float
    errors: int = 0
    checked: int = 0
    max_err: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, err: float) -> None:
        with self._lock:
            self.checked += 1
            self.errors += err > self.tolerance or not np.isfinite(err)
            self.max_err = max(self.max_err, err) if np.isfinite(err) else float("inf")

    def merge(self, errors: int, checked: int, max_err: float) -> None:
        with self._lock:
            self.errors += errors
            self.checked += checked
            self.max_err = max(self.max_err, max_err)


@dataclass
class Harness:
    """What a mode needs: the op, how to check an output, and the per-thread inputs."""
    op: Callable[[Any], Any]                     # forward + synchronise; returns the output
    check: Callable[[Any, int], float]           # (output, input index) -> relative error
    inputs: list[Any]                            # device inputs, one per request index
    tolerance: float
    stream: Callable[[], Any] | None = None      # per-thread stream context factory (streams mode)
    concat: Callable[[list], Any] | None = None
    split: Callable[[Any, list], list] | None = None
    rows: int = 1                                # batch rows per request
    checks: Checks | None = None                 # where record() tallies; its own when not given

    def __post_init__(self) -> None:
        if self.checks is None:
            self.checks = Checks(self.tolerance)

    def record(self, err: float) -> None:
        self.checks.record(err)

    errors = property(lambda self: self.checks.errors)
    checked = property(lambda self: self.checks.checked)
    max_err = property(lambda self: self.checks.max_err)


def _trial(starts: list[float], ends: list[float], weight: int = 1, hist: Counter | None = None) -> Trial:
    lat = (np.asarray(ends) - np.asarray(starts)) * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99])) if len(lat) else (None,) * 3
    return Trial(ops=len(ends) * weight, seconds=max(ends) - min(starts), lat_p50_ms=p50, lat_p90_ms=p90,
                 lat_p99_ms=p99, batch_hist={str(k): v for k, v in sorted(hist.items())} if hist else None)


def _timed_loop(h: Harness, index: int, deadline: float, starts: list, ends: list, clock=now) -> None:
    """`clock`: a process's own by default; the processes mode passes one that every process shares."""
    op, x = h.op, h.inputs[index]  # locals: the loop's own cost stays far below any op's
    started, ended = starts.append, ends.append
    while True:
        t0 = clock()
        if t0 >= deadline:
            return
        op(x)
        started(t0)
        ended(clock())


def check_speed(h: Harness, index: int, duration: float) -> None:
    """One op to compile and load kernels, then one timed: raise TooSlow if it exceeds the window."""
    h.op(h.inputs[index])
    t0 = now()
    h.record(h.check(h.op(h.inputs[index]), index))
    took = now() - t0
    if took > duration:
        raise TooSlow(f"one op takes {took:.2f} s, longer than the {duration:g} s window; raise --duration to measure it")


# -- sequential and offline: one thread, the caller's ----------------------------------------------
def run_sequential(h: Harness, duration: float, trials: int, warmup: int, verify_ops: int, weight: int = 1) -> list[Trial]:
    """`weight` = requests per op (offline mode runs k requests in one forward)."""
    check_speed(h, 0, duration)
    for _ in range(warmup):
        h.op(h.inputs[0])
    out = []
    for _ in range(trials):
        starts, ends = [], []
        _timed_loop(h, 0, now() + duration, starts, ends)
        out.append(_trial(starts, ends, weight))
    for _ in range(verify_ops):
        h.record(h.check(h.op(h.inputs[0]), 0))
    return out


# -- threads and streams: N threads, each with its own input ----------------------------------------
def run_threads(h: Harness, n: int, duration: float, trials: int, warmup: int, verify_ops: int,
                use_streams: bool = False) -> list[Trial]:
    check_speed(h, 0, duration)
    window = {"deadline": 0.0}
    barrier = threading.Barrier(n, action=lambda: window.update(deadline=now() + duration))
    per_trial = [[[[], []] for _ in range(n)] for _ in range(trials)]
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            ctx = h.stream() if use_streams else None
            if ctx is not None:
                ctx.__enter__()
            try:
                for _ in range(warmup):
                    h.op(h.inputs[i])
                for t in range(trials):
                    barrier.wait()
                    _timed_loop(h, i, window["deadline"], *per_trial[t][i])
                barrier.wait()
                for _ in range(verify_ops):
                    h.record(h.check(h.op(h.inputs[i]), i))
            finally:
                if ctx is not None:
                    ctx.__exit__(None, None, None)
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:  # noqa: BLE001 - reported as the cell's cause
            failures.append(e)
            barrier.abort()

    _join_all([threading.Thread(target=worker, args=(i,), name=f"tb-{i}", daemon=True) for i in range(n)])
    if failures:
        raise ModeFailed(failures[0]) from failures[0]
    return _pooled(per_trial)


def _pooled(per_trial: list, hists: list[Counter] | None = None) -> list[Trial]:
    """One Trial per window from every thread's (starts, ends), with that window's batch histogram."""
    return [_trial([s for th in tr for s in th[0]], [e for th in tr for e in th[1]],
                   hist=hists[t] if hists and t < len(hists) else None) for t, tr in enumerate(per_trial)]


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
                max_batch: int, max_wait_ms: float) -> list[Trial]:
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
    check_speed(h, 0, duration)
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

    window = {"deadline": 0.0, "started": False}
    hists: list[Counter] = []

    def next_window() -> None:  # runs once per barrier: closes the last trial's histogram, opens a window
        if window["started"]:
            hists.append(Counter(hist))
        hist.clear()
        window.update(deadline=now() + duration, started=True)

    barrier = threading.Barrier(n, action=next_window)
    per_trial = [[[[], []] for _ in range(n)] for _ in range(trials)]
    failures: list[BaseException] = []

    live = [n]

    def client(i: int) -> None:
        try:
            for _ in range(warmup):
                submit(i, now())
            for t in range(trials):
                barrier.wait()
                starts, ends = per_trial[t][i]
                deadline = window["deadline"]
                while (t0 := now()) < deadline:
                    submit(i, t0)
                    starts.append(t0)
                    ends.append(now())
            barrier.wait()
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
    if failures:
        raise ModeFailed(failures[0]) from failures[0]
    return _pooled(per_trial, hists)


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

    def __call__(self) -> Harness:
        return self.make()


def _sequential(cell, build) -> list[Trial]:
    common = dict(duration=cell.duration, trials=cell.trials, warmup=cell.warmup, verify_ops=cell.verify_ops)
    return run_sequential(build(), weight=cell.requests_per_forward, **common)


def _threads(cell, build) -> list[Trial]:
    return run_threads(build(), cell.threads, duration=cell.duration, trials=cell.trials, warmup=cell.warmup,
                       verify_ops=cell.verify_ops, use_streams=cell.mode == "streams")


def _batched(cell, build) -> list[Trial]:
    return run_batched(build(), cell.threads, duration=cell.duration, trials=cell.trials, warmup=cell.warmup,
                       verify_ops=cell.verify_ops, max_batch=cell.max_batch or cell.threads,
                       max_wait_ms=cell.max_wait_ms)


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
