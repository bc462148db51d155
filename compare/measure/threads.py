"""The modes whose ops run in threads of the cell's process: `sequential` and `offline` x1 (the main thread
alone), `threads`, `streams` and `offline` xN (N threads, each with its own input, sharing one model). Each
runs the one Schedule (compare.measure.schedule); offline counts the k requests of each forward. Not here:
the dynamic batcher (compare.measure.batcher) or anything about processes."""
from __future__ import annotations

import threading

from ..cells import WINDOW_CAP_DURATIONS, Trial
from .harness import Harness, ModeFailed
from .schedule import DONE, TOO_SLOW, Boundaries, Schedule, check_speed, reader_of, take_part
from .split import sample_cost


def run_sequential(h: Harness, duration: float, trials: int, warmup: int, verify_ops: int, weight: int = 1,
                   cap: float | None = None) -> list[Trial]:
    """The caller's thread alone. `weight` = requests per op (offline mode runs k requests in one forward)."""
    cap = cap or WINDOW_CAP_DURATIONS * duration
    op_s = check_speed(h, 0, cap)
    for _ in range(warmup):
        h.op(h.inputs[0])
    sched = Schedule(1, duration, trials, cap, h.clock)
    sched.start(op_s, sample_cost(h.timer, h.cpu_clock))
    boundaries = Boundaries(h, sched, weight)
    take_part(sched, boundaries, h.call, h.sync, h.inputs[0], boundaries.keeper(0), reader_of(h))  # no barrier
    if sched.phase == TOO_SLOW:
        raise sched.too_slow()
    for _ in range(verify_ops):
        h.record(h.check(h.op(h.inputs[0]), 0))
    return boundaries.trials


def run_threads(h: Harness, n: int, duration: float, trials: int, warmup: int, verify_ops: int,
                use_streams: bool = False, weight: int = 1, cap: float | None = None) -> list[Trial]:
    """N threads, thread i on input i, meeting at one barrier per window boundary."""
    cap = cap or WINDOW_CAP_DURATIONS * duration
    op_s = check_speed(h, 0, cap)
    sched = Schedule(n, duration, trials, cap, h.clock)
    sched.start(op_s, sample_cost(h.timer, h.cpu_clock))
    boundaries = Boundaries(h, sched, weight)
    barrier = threading.Barrier(n, action=boundaries)
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
                take_part(sched, barrier.wait, h.call, h.sync, x, boundaries.keeper(i),
                          reader_of(h))
                if sched.phase == DONE:
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

    join_all([threading.Thread(target=worker, args=(i,), name=f"tb-{i}", daemon=True) for i in range(n)])
    if sched.phase == TOO_SLOW:
        raise sched.too_slow()
    raise_first(failures)
    return boundaries.trials


def raise_first(failures: list[BaseException]) -> None:
    """The first exception a measuring thread met, as the mode's failure."""
    if failures:
        raise ModeFailed(failures[0]) from failures[0]


def join_all(threads: list[threading.Thread]) -> None:
    for th in threads:
        th.start()
    for th in threads:
        th.join()
