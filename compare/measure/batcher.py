"""The one dynamic batcher, and the `batched` mode that measures it: N client threads submit single requests;
the batcher runs one forward of up to max_batch of them, or of whatever arrived within max_wait of the
first, and hands each its own rows. The server scenario's `batched` strategy (compare.measure.server)
runs the same Batcher on open-loop traffic. Not here: the schedule of windows (compare.measure.schedule)."""
from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any, Callable

from ..cells import WINDOW_CAP_DURATIONS, Trial
from .harness import Harness, ModeFailed
from .schedule import DONE, TOO_SLOW, Boundaries, Schedule, check_speed, reader_of, take_part
from .split import sample_cost
from .threads import raise_first

EMPTY, FILLING = "empty", "filling"  # what a sleeping batcher waits for: a first request, or a full batch


class Request:
    """One request to the batcher: its input, when it arrived, which query it is (server), and its answer:
    `out` (its rows) or `error` (what its batch's forward raised). `ready`, where asked for, is held until
    the answer is there (a client waits on it)."""
    __slots__ = ("x", "arrived", "index", "out", "error", "ready")

    def __init__(self, x: Any = None, arrived: float = 0.0, index: int = 0, waits: bool = False):
        self.x, self.arrived, self.index, self.out, self.error = x, arrived, index, None, None
        self.ready = threading.Lock() if waits else None
        if waits:
            self.ready.acquire()


class Batcher:
    """Forms batches from the requests put to it and runs them through the Harness's op; run() is its loop,
    in the caller's thread, the process's main thread, where sequential and offline run their forwards too:
    the ceiling and the batcher then run the model alike (torch on CPU runs a forward several times slower
    from a second thread on small machines, an effect that belongs to the threads mode's figures).

    The hand-off costs as few thread wake-ups as the policy allows, so that a mode measures batching rather
    than the harness: the batcher takes a batch at once when max_batch requests are waiting; else it sleeps
    until the first request (if none is waiting) or the one that fills the batch rings for it, or until
    max_wait after the first arrived. `answer(batch, parts, error)` hands a batch its rows, or the exception
    its forward raised (every request of the batch gets it). close() ends run() once the queue is drained."""

    def __init__(self, h: Harness, max_batch: int, max_wait: float,
                 answer: Callable[[list[Request], list, BaseException | None], None], clock: Callable[[], float]):
        self.h, self.full, self.max_wait, self.answer, self.clock = h, max(1, max_batch), max_wait, answer, clock
        self.pending: deque[Request] = deque()
        self.mutex = threading.Lock()   # guards pending, asleep and closed
        self.bell = threading.Lock()    # held, except between a ring and the batcher waking on it
        self.bell.acquire()
        self.asleep: str | None = None  # None (awake), EMPTY or FILLING
        self.closed = False
        self.hist: Counter = Counter()  # forwards by batch size

    def put(self, r: Request) -> None:
        with self.mutex:
            self.pending.append(r)
            if self.asleep == EMPTY or len(self.pending) >= self.full:
                self._ring()

    def close(self) -> None:
        with self.mutex:
            self.closed = True
            self._ring()

    def _ring(self) -> None:  # with mutex held
        if self.asleep:
            self.asleep = None
            self.bell.release()

    def _take(self) -> list[Request] | None:
        """The next batch, once it is full or its first request has waited max_wait; None when closed."""
        pending, now, full, max_wait = self.pending, self.clock, self.full, self.max_wait
        while True:
            with self.mutex:
                if len(pending) >= full or (pending and (self.closed or now() >= pending[0].arrived + max_wait)):
                    return [pending.popleft() for _ in range(min(full, len(pending)))]
                if self.closed:
                    return None
                self.asleep = FILLING if pending else EMPTY
                wait = max(pending[0].arrived + max_wait - now(), 1e-6) if pending else -1  # -1: no timeout
            if not self.bell.acquire(timeout=wait):
                with self.mutex:
                    if self.asleep:
                        self.asleep = None
                    else:  # rung just after the timeout: take the ring, so the bell is held again
                        self.bell.acquire()

    def run(self) -> None:
        """The batcher's loop: returns once closed and drained."""
        h = self.h
        while (batch := self._take()) is not None:
            error = None
            try:
                xs = [r.x for r in batch]
                out = h.op(h.concat(xs) if len(xs) > 1 else xs[0])
                parts = h.split(out, [h.rows] * len(batch)) if len(batch) > 1 else [out]
                if len(parts) != len(batch):
                    raise ValueError(f"split returned {len(parts)} parts for a batch of {len(batch)}")
                self.hist[len(batch)] += 1
            except BaseException as e:  # noqa: BLE001 - every request of the batch gets the exception
                parts, error = [None] * len(batch), e
            self.answer(batch, parts, error)


def _hand_back(batch: list[Request], parts: list, error: BaseException | None) -> None:
    """The closed loop's answer: each waiting client gets its rows (or the error) and is woken."""
    for r, part in zip(batch, parts):
        r.out, r.error = part, error
        r.ready.release()


class _Clients:
    """How many clients still run; the last one out closes the batcher, which ends its loop."""

    def __init__(self, n: int, batcher: Batcher):
        self.left, self.batcher, self.lock = n, batcher, threading.Lock()

    def leave(self) -> None:
        with self.lock:
            self.left -= 1
            last = self.left == 0
        if last:
            self.batcher.close()


def run_batched(h: Harness, n: int, duration: float, trials: int, warmup: int, verify_ops: int,
                max_batch: int, max_wait_ms: float, cap: float | None = None) -> list[Trial]:
    """The `batched` mode: N client threads, each waiting for its own rows, and the Batcher on this thread.

    Warm-up also runs one forward at every batch size the batcher can form (1 to min(max_batch, N)):
    frameworks that compile per input shape (JAX's jit) would otherwise compile inside timed windows."""
    cap = cap or WINDOW_CAP_DURATIONS * duration
    op_s = check_speed(h, 0, cap)
    now = h.clock
    batcher = Batcher(h, max_batch, max_wait_ms / 1e3, _hand_back, now)

    def submit(x: Any) -> Request:
        """A client's call: its request into the batcher's queue (a fresh one each time, so that the first
        and last of a window can both be checked)."""
        r = Request(x, now(), waits=True)
        batcher.put(r)
        return r

    def wait(r: Request) -> None:
        """A client's synchronise: until its rows (or its batch's error) are back."""
        r.ready.acquire()
        if r.error is not None:
            raise r.error

    def ask(i: int) -> Any:
        r = submit(h.inputs[i])
        wait(r)
        return r.out

    sched = Schedule(n, duration, trials, cap, now)
    sched.start(op_s, sample_cost(None, h.cpu_clock))  # a client's sampled ops carry no device marks
    boundaries = Boundaries(h, sched, hist=batcher.hist)
    barrier = threading.Barrier(n, action=boundaries)
    clients = _Clients(n, batcher)
    failures: list[BaseException] = []

    def client(i: int) -> None:
        keep = boundaries.keeper(i)

        def keep_rows(lap, first: Request | None, last: Request | None) -> None:  # the requests' own rows
            keep(lap, first and first.out, last and last.out)
        try:
            for _ in range(warmup):
                ask(i)
            # no device marks: a client's op is no forward (its process's gauges, the batcher's CPU in them,
            # are read at the window's boundaries)
            take_part(sched, barrier.wait, submit, wait, h.inputs[i], keep_rows, reader_of(h, forwards=False))
            if sched.phase == DONE:
                for _ in range(verify_ops):
                    h.record(h.check(ask(i), i))
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:  # noqa: BLE001
            failures.append(e)
            barrier.abort()
        finally:
            clients.leave()

    if warmup:  # every batch size the batcher can form, so that per-shape compilation (JAX's jit) is not timed
        try:
            for size in range(2, min(batcher.full, n) + 1):
                h.split(h.op(h.concat(h.inputs[:size])), [h.rows] * size)
        except BaseException as e:  # noqa: BLE001 - as if a client had met it
            raise ModeFailed(e) from e
    threads = [threading.Thread(target=client, args=(i,), name=f"tb-client-{i}", daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    batcher.run()  # returns once the last client has closed the queue
    for th in threads:
        th.join()
    if sched.phase == TOO_SLOW:
        raise sched.too_slow()
    raise_first(failures)
    return boundaries.trials
