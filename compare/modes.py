"""The measurement modes. They run inside a cell's worker process and know a backend only through a
Harness, so the same loop times every framework.

Every mode: warm up (in every thread that will be timed), then `trials` timed windows. In a window each
op is forward + synchronise; an op counts once its synchronise has returned. Throughput of a window is
completed ops / (last completion - first start), so threads that start late or finish early cannot
flatter it. After the trials, every thread checks `verify_ops` outputs against the float64 reference
while all threads run, so results that go wrong only under concurrency are counted as errors.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .cells import Trial
from .verify import rel_error

now = time.perf_counter


class TooSlow(Exception):
    """One op takes longer than a timed window: the cell is reported, not measured."""


class ModeFailed(Exception):
    """A worker thread raised; the first exception is attached as the cause."""


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
    errors: int = 0
    checked: int = 0
    max_err: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, err: float) -> None:
        with self._lock:
            self.checked += 1
            self.errors += err > self.tolerance or not np.isfinite(err)
            self.max_err = max(self.max_err, err) if np.isfinite(err) else float("inf")


def _trial(starts: list[float], ends: list[float], weight: int = 1, hist: Counter | None = None) -> Trial:
    lat = (np.asarray(ends) - np.asarray(starts)) * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99])) if len(lat) else (None,) * 3
    return Trial(ops=len(ends) * weight, seconds=max(ends) - min(starts), lat_p50_ms=p50, lat_p90_ms=p90,
                 lat_p99_ms=p99, batch_hist={str(k): v for k, v in sorted(hist.items())} if hist else None)


def _timed_loop(h: Harness, index: int, deadline: float, starts: list, ends: list) -> None:
    x = h.inputs[index]
    while True:
        t0 = now()
        if t0 >= deadline:
            return
        h.op(x)
        starts.append(t0)
        ends.append(now())


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
    return [_trial([s for th in tr for s in th[0]], [e for th in tr for e in th[1]]) for tr in per_trial]


def _join_all(threads: list[threading.Thread]) -> None:
    for th in threads:
        th.start()
    for th in threads:
        th.join()


# -- batched: N clients, one batcher thread ---------------------------------------------------------
@dataclass
class _Request:
    x: Any
    future: Future


def run_batched(h: Harness, n: int, duration: float, trials: int, warmup: int, verify_ops: int,
                max_batch: int, max_wait_ms: float) -> list[Trial]:
    """Clients submit single requests; the batcher runs one forward of up to max_batch requests, or of
    whatever arrived within max_wait_ms of the first, and hands each client its own rows."""
    check_speed(h, 0, duration)
    requests: queue.Queue[_Request | None] = queue.Queue(maxsize=4 * max(n, max_batch))
    hist: Counter = Counter()
    stop = threading.Event()

    def batcher() -> None:
        while True:
            first = requests.get()
            if first is None:
                return
            batch = [first]
            limit = now() + max_wait_ms / 1e3
            while len(batch) < max_batch:
                try:
                    item = requests.get(timeout=max(0.0, limit - now()))
                except queue.Empty:
                    break
                if item is None:
                    stop.set()
                    break
                batch.append(item)
            try:
                xs = [r.x for r in batch]
                out = h.op(h.concat(xs) if len(xs) > 1 else xs[0])
                parts = h.split(out, [h.rows] * len(batch)) if len(batch) > 1 else [out]
                hist[len(batch)] += 1
                for r, part in zip(batch, parts):
                    r.future.set_result(part)
            except BaseException as e:  # noqa: BLE001 - every waiting client gets the exception
                for r in batch:
                    r.future.set_exception(e)
            if stop.is_set():
                return

    def submit(i: int) -> Any:
        fut: Future = Future()
        requests.put(_Request(h.inputs[i], fut))
        return fut.result()

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

    def client(i: int) -> None:
        try:
            for _ in range(warmup):
                submit(i)
            for t in range(trials):
                barrier.wait()
                starts, ends = per_trial[t][i]
                while (t0 := now()) < window["deadline"]:
                    submit(i)
                    starts.append(t0)
                    ends.append(now())
            barrier.wait()
            for _ in range(verify_ops):
                h.record(h.check(submit(i), i))
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:  # noqa: BLE001
            failures.append(e)
            barrier.abort()

    bt = threading.Thread(target=batcher, name="tb-batcher", daemon=True)
    bt.start()
    try:
        _join_all([threading.Thread(target=client, args=(i,), name=f"tb-client-{i}", daemon=True) for i in range(n)])
    finally:
        requests.put(None)
        bt.join(timeout=10)
    if failures:
        raise ModeFailed(failures[0]) from failures[0]
    return [_trial([s for th in tr for s in th[0]], [e for th in tr for e in th[1]], hist=hists[t] if t < len(hists) else None)
            for t, tr in enumerate(per_trial)]
