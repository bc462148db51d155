"""The server scenario run for real in a cell: the live strategies a query can go to (STRATEGIES: N worker
threads taking queries from one FIFO queue; the dynamic batcher; a pool of N spawned processes taking them
from one multiprocessing queue), one rate step on the real clock (run_real), and the cell itself
(measure_server_cell: calibrate, warm, search, verify). The rules it obeys are compare.measure.loadgen's.

The dispatcher runs in the cell's process, in its own thread ("tb-dispatch"), so a query reaches a worker
the way it would in a Python server (one queue put, no pickling, no socket). It shares the GIL with the
strategy's threads; when they hold it, the dispatcher wakes late, and the step's lag p99 records exactly
that. The batcher's forwards run on the main thread, as in `batched` mode. The process pool is started and
warmed once per cell and serves every rate step; its completion times are read on clocks.shared_clock,
which the dispatcher then reads too. Not here: a network server."""
from __future__ import annotations

import os
import queue
import threading
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backends.base import Unsupported

from ..cells import LOADGEN, Cell, Trial
from . import mlperf
from .batcher import Batcher, Request
from .build import CellContext, memory, memory_facts, process_harness
from .clocks import RealClock, process_clock, shared_clock
from .loadgen import (MAX_STEPS, MIN_SECONDS, Search, Step, default_bound, dispatcher_lag_p99, issue, judge,
                      poisson_schedule, search_steps, step_queries)
from .host import device_topology
from .procs import SPAWN, Pin, Processes, intra_op_plan, replica_pins, watch_parent
from .schedule import check_speed

CALIBRATE_S = 1.0        # seconds of one-at-a-time requests on the main thread that set the default bound
CALIBRATE_MIN_OPS = 30   # ...and at least this many, so the p50 is not one op's noise
START_FRACTION = 0.5     # the search starts at this share of N servers' capacity (N / single-request p50):
                         # from above, since a step needs 459 queries and slow rates cost the most time
FLOOR_FRACTION = 1 / 64  # ...and gives up below this share of one server's capacity
POOL_WAIT_S = 5.0        # how often a wait on the process pool wakes to look again (it decides nothing)


# -- the live strategies: submit(i, t), done, finish(count) -> completion times; `outputs` when kept --------
class ThreadsServer:
    """N worker threads, each taking the next query from one FIFO queue and running it through the op.

    A step's threads are new threads, so each first applies the harness's per-thread setting (torch's
    intra-op threads are per thread) and runs one untimed op, and the step starts only when all are ready:
    a framework's per-thread first use (a CUDA stream or library handle, an OpenMP pool) is not a query's
    latency. (Without it, each new thread's first query is over the bound: N per step, which fails early
    stopping even at rates far below the peak.)"""

    def __init__(self, h, servers: int, keep: bool = False):
        self.h, self.keep = h, keep
        self.on_done: Callable[[int], None] | None = None  # told each query's end (LoadGen's SUT: mlperf.py)
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.ends: dict[int, float] = {}
        self.outputs: dict[int, Any] = {}
        self.failure: BaseException | None = None
        self.ready = threading.Barrier(servers + 1)
        self.threads = [threading.Thread(target=self._work, args=(k,), name=f"tb-server-{k}", daemon=True)
                        for k in range(servers)]
        for th in self.threads:
            th.start()
        self.ready.wait()  # every thread set up and warmed: only now may the dispatcher start

    def _work(self, k: int) -> None:
        op, inputs, clock, q = self.h.op, self.h.inputs, process_clock, self.q
        try:
            if getattr(self.h, "thread_setup", None) is not None:
                self.h.thread_setup()
            op(inputs[k % len(inputs)])
        except BaseException as e:  # noqa: BLE001 - the step fails with it (after the barrier)
            self.failure = self.failure or e
        finally:
            self.ready.wait()
        while (i := q.get()) is not None:
            try:
                y = op(inputs[i % len(inputs)])
            except BaseException as e:  # noqa: BLE001 - the step fails with it
                self.failure = self.failure or e
                y = None
            self.ends[i] = clock()
            if self.keep:
                self.outputs[i] = y
            if self.on_done is not None:
                self.on_done(i)

    @property
    def done(self) -> int:
        return len(self.ends)

    def submit(self, i: int, t: float) -> None:
        self.q.put(i)

    def finish(self, count: int) -> np.ndarray:
        for _ in self.threads:
            self.q.put(None)
        for th in self.threads:
            th.join()
        if self.failure is not None:
            raise self.failure
        return np.array([self.ends[i] for i in range(count)])


class BatchedServer:
    """The dynamic batcher of `batched` mode (batcher.Batcher) on open-loop queries: its loop runs on the
    calling (main) thread, started by `run` and ended by `close`; a query completes when its batch is split.
    A forward that raises fails the step (raised from `run`)."""

    def __init__(self, h, max_batch: int, max_wait: float, keep: bool = False):
        self.h, self.keep = h, keep
        self.batcher = Batcher(h, max_batch, max_wait, self._answer, process_clock)
        self.hist = self.batcher.hist
        self.ends: dict[int, float] = {}
        self.outputs: dict[int, Any] = {}
        self.done = 0
        self.on_done: Callable[[int], None] | None = None  # told each query's end (LoadGen's SUT: mlperf.py)

    def submit(self, i: int, t: float) -> None:
        self.batcher.put(Request(self.h.inputs[i % len(self.h.inputs)], t, i))

    def close(self) -> None:
        self.batcher.close()

    def run(self) -> None:
        self.batcher.run()

    def _answer(self, batch: list[Request], parts: list, error: BaseException | None) -> None:
        if error is not None:
            raise error
        t = process_clock()
        for r, part in zip(batch, parts):
            self.ends[r.index] = t
            if self.keep:
                self.outputs[r.index] = part
        self.done += len(batch)
        if self.on_done is not None:
            for r in batch:
                self.on_done(r.index)

    def finish(self, count: int) -> np.ndarray:
        return np.array([self.ends[i] for i in range(count)])


def _pool_process(i: int, cell_dict: dict, cache: str, parent: int, intra_op: int, jobs, pin: Pin | None,
                  conn) -> None:
    """Process i of a server pool: build as a processes-mode process does, warm up, say ("ready", intra-op
    threads), then take (step, query, request index, check) jobs from the one shared queue until None,
    answering each with ("done", step, query, completion time on the shared clock, relative error or None);
    at None, ("result", its Memory) and exit; a raise is sent as ("raised", cause, traceback). `pin`: a
    replica's device and cores (server-replicas), applied before its framework starts."""
    watch_parent(parent=parent)
    try:
        if pin is not None:
            pin.apply()
        cell = Cell.from_dict(cell_dict)
        backend, h = process_harness(cell, Path(cache), intra_op, shared_clock)
        for _ in range(cell.warmup):
            h.op(h.inputs[i % len(h.inputs)])
        conn.send(("ready", backend.describe(cell.device).get("intra_op_threads")))
        op, inputs = h.op, h.inputs
        while (job := jobs.get()) is not None:
            step, q, idx, keep = job
            y = op(inputs[idx % len(inputs)])
            t = shared_clock()
            conn.send(("done", step, q, t, h.check(y, idx % len(inputs)) if keep else None))
        conn.send(("result", asdict(memory(backend, cell.device, unique=True))))
    except BaseException as e:  # noqa: BLE001 - the cell's cause, sent to the worker
        conn.send(("raised", f"{type(e).__name__}: {e}", traceback.format_exc()))
    finally:
        conn.close()


class ProcessPool:
    """N spawned processes serving queries, started and warmed once per cell and reused by every rate step.
    The dispatcher puts jobs on one multiprocessing queue that all take from (one FIFO, as ThreadsServer's
    threads share one); a collector thread reads their answers (procs.Processes.read): a process that dies
    or raises sets `failure` (CellFailed, "process 2 of 4 killed by SIGSEGV"), which the next submit or
    finish raises. stop() ends them in order and returns each one's Memory; close() kills and reaps them.
    (The worker keeps a model of its own as well, for the speed check and the single-request calibration
    that sets the default bound and the search's first rate.) `pins`: one per process, a pool of replicas
    (server-replicas), one per device; `facts`: what the cell records about its devices then."""

    def __init__(self, cell: Cell, cache: str, pins: list[Pin] | None = None):
        self.n = n = cell.threads
        intra_op, self.rule = intra_op_plan(cell, pins)
        # a replica pool's devices; its GPU utilisation is not sampled per replica (the worker's own sampler
        # reads only its first GPU, so the cell shows none rather than that one)
        self.facts = {} if pins is None else {**device_topology(pins, cell.device), "gpu_util_mean": None,
                                              "gpu_util_max": None}
        self.jobs = SPAWN.Queue()
        self.processes = Processes(n, _pool_process, lambda i: (i, cell.to_dict(), cache, os.getpid(), intra_op,
                                                                self.jobs, None if pins is None else pins[i]))
        self.cond = threading.Condition()
        self.ready: dict[int, int | None] = {}
        self.failure: BaseException | None = None
        self.closing = False
        self.reports: dict[int, dict] = {}
        self.step, self.ends, self.errs = 0, {}, {}
        self.on_done: Callable[[int], None] | None = None  # told each query's end in this step (PoolStep.on_done)
        self.collector = None
        try:
            self.processes.start()
            self.collector = threading.Thread(target=self._collect, name="tb-pool-collect", daemon=True)
            self.collector.start()
            with self.cond:
                while len(self.ready) < n and self.failure is None:
                    self.cond.wait(POOL_WAIT_S)
            if self.failure is not None:
                raise self.failure
        except BaseException:
            self.close()
            raise

    @property
    def intra_op_ran(self) -> int | None:
        return self.ready.get(0)

    def _fail(self, e: BaseException) -> None:
        with self.cond:
            if not self.closing:
                self.failure = self.failure or e
            self.cond.notify_all()

    def _collect(self) -> None:
        try:
            self.processes.read(self._read)
        except BaseException as e:  # noqa: BLE001 - the pool's failure, raised in the dispatcher's next call
            self._fail(e)

    def _read(self, i: int, msg: tuple) -> None:
        if msg[0] == "done":
            _, step, q, t, err = msg
            with self.cond:
                current, on_done = step == self.step, self.on_done
                if current:
                    self.ends[q] = t
                    if err is not None:
                        self.errs[q] = err
                    self.cond.notify_all()
            if current and on_done is not None:
                on_done(q)
        elif msg[0] == "ready":
            with self.cond:
                self.ready[i] = msg[1]
                self.cond.notify_all()
        elif msg[0] == "result":
            with self.cond:
                self.reports[i] = msg[1]
                self.cond.notify_all()

    def begin(self, keep: bool = False) -> "PoolStep":
        """A fresh rate step over the same processes (answers to an earlier step are ignored)."""
        with self.cond:
            if self.failure is not None:
                raise self.failure
            self.step += 1
            self.ends, self.errs, self.on_done = {}, {}, None
        return PoolStep(self, self.step, keep)

    def stop(self) -> list[dict]:
        """Ask every process to end, wait for each one's report, close(); the reports in process order."""
        for _ in range(self.n):
            self.jobs.put(None)
        with self.cond:
            while len(self.reports) < self.n and self.failure is None:
                self.cond.wait(POOL_WAIT_S)
            failure = self.failure
        self.close()
        if failure is not None:
            raise failure
        return [self.reports[i] for i in range(self.n)]

    def close(self) -> None:
        with self.cond:
            if self.closing:
                return
            self.closing = True
        self.processes.stop()
        if self.collector is not None:
            self.collector.join()
        self.processes.close()
        self.jobs.cancel_join_thread()  # jobs left unread must not hold the worker's exit
        self.jobs.close()


class PoolStep:
    """One rate step of a ProcessPool, as a strategy. `now` is the shared clock, which the dispatcher then
    reads too, so latencies compare times of one timeline across processes. `checked`: query -> relative
    error, for the queries sent with keep (checked in the process that ran them; outputs never cross back,
    so `outputs` stays empty)."""

    def __init__(self, pool: ProcessPool, step: int, keep: bool):
        self.pool, self.step, self.keep = pool, step, keep
        self.now = shared_clock
        self.outputs: dict = {}

    @property
    def done(self) -> int:
        return len(self.pool.ends)

    @property
    def checked(self) -> dict:
        return self.pool.errs

    @property
    def on_done(self) -> Callable[[int], None] | None:
        return self.pool.on_done

    @on_done.setter
    def on_done(self, tell: Callable[[int], None] | None) -> None:  # the pool's collector tells it each end
        self.pool.on_done = tell

    def submit(self, i: int, t: float) -> None:
        if self.pool.failure is not None:
            raise self.pool.failure
        self.pool.jobs.put((self.step, i, i, self.keep))

    def finish(self, count: int) -> np.ndarray:
        pool = self.pool
        with pool.cond:
            while pool.failure is None and len(pool.ends) < count:
                pool.cond.wait(POOL_WAIT_S)
            if pool.failure is not None:
                raise pool.failure
            return np.array([pool.ends[i] for i in range(count)])


@dataclass
class Strategy:
    """How a server strategy runs for real: `make(h, n, cell, pool)` builds it for one rate step; `batcher`
    says whether it needs the main thread (then the dispatcher runs beside it in a thread); `pool(cell,
    ctx)`, where given, starts what the cell's steps share (the ProcessPool), once, before the search;
    `refusal`: why it cannot run yet."""
    make: Callable[..., Any] | None
    batcher: bool = False
    refusal: str = ""
    pool: Callable[..., Any] | None = None


STRATEGIES: dict[str, Strategy] = {
    "threads": Strategy(lambda h, n, cell, pool: ThreadsServer(h, n)),
    "batched": Strategy(lambda h, n, cell, pool: BatchedServer(h, cell.max_batch or n, cell.max_wait_ms / 1e3),
                        batcher=True),
    "processes": Strategy(lambda h, n, cell, pool: pool.begin(),
                          pool=lambda cell, ctx: ProcessPool(cell, str(ctx.cache))),
    "replicas": Strategy(lambda h, n, cell, pool: pool.begin(),
                         pool=lambda cell, ctx: ProcessPool(cell, str(ctx.cache), replica_pins(cell))),
}


# -- one rate step, and the cell ------------------------------------------------------------------------
def run_real(strategy: str, h, n: int, cell, rate: float, bound: float, seed: int, min_seconds: float,
             keep: bool = False, sched_rel: np.ndarray | None = None, pool=None,
             queries: int | None = None) -> tuple[Step, Any]:
    """One rate step on the real clock: the dispatcher in its own thread, the strategy's work in its threads
    (and, for the batcher, this thread); `queries` Poisson arrivals (default step_queries), or `sched_rel`.
    Returns the Step and the strategy (its outputs when `keep`)."""
    spec = STRATEGIES[strategy]
    srv = spec.make(h, n, cell, pool)
    srv.keep = keep
    clock = RealClock(getattr(srv, "now", process_clock))
    if sched_rel is None:
        sched_rel = poisson_schedule(rate, queries or step_queries(rate, min_seconds), seed)
    out = _Issued()

    def dispatcher() -> None:
        try:
            out.sched, out.issued, out.overloaded = issue(clock, srv, sched_rel, rate, bound)
        except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
            out.error = e
        finally:
            if spec.batcher:
                srv.close()

    th = threading.Thread(target=dispatcher, name="tb-dispatch", daemon=True)
    th.start()
    if spec.batcher:
        srv.run()
    th.join()
    if out.error is not None:
        raise out.error
    ends = srv.finish(len(out.sched))
    return judge(rate, out.sched, out.issued, ends, bound, out.overloaded, getattr(srv, "hist", None)), srv


@dataclass
class _Issued:
    """What the dispatcher thread hands back: issue()'s result, or the exception it met."""
    sched: np.ndarray | None = None
    issued: np.ndarray | None = None
    overloaded: bool = False
    error: BaseException | None = None


def measure_server_cell(cell: Cell, ctx: CellContext):
    """A server-* cell (compare.measure.registry). Does the work that can fail before any rate runs
    (refusal, build, one op slower than a step, calibration, warm-up) at once, then returns a generator of
    one Trial per rate step: the worker writes each to the events file as it comes, so a cell that times
    out or fails mid-search keeps every finished rate. Verification runs after the last step, inside it."""
    strategy = cell.mode.removeprefix("server-")
    spec = STRATEGIES[strategy]
    if spec.make is None:
        raise Unsupported(f"{cell.mode}: {spec.refusal}")
    h = ctx.build_harness()
    min_seconds = max(MIN_SECONDS, cell.duration)
    check_speed(h, 0, min_seconds)
    for _ in range(cell.warmup):
        h.op(h.inputs[0])
    lat, began = [], process_clock()
    while len(lat) < CALIBRATE_MIN_OPS or process_clock() - began < CALIBRATE_S:
        t0 = process_clock()
        h.op(h.inputs[0])
        lat.append(process_clock() - t0)
    single = float(np.median(lat))
    lag = dispatcher_lag_p99(cell.seed) if cell.latency_bound_ms is None else 0.0
    bound = default_bound(single, cell.latency_bound_ms, lag)
    n = cell.threads
    if strategy == "batched":  # every batch size once: frameworks that compile per shape must not do it in a step
        for size in range(2, min(cell.max_batch or n, 64) + 1):
            xs = [h.inputs[i % len(h.inputs)] for i in range(size)]
            h.split(h.op(h.concat(xs)), [h.rows] * size)
    pool = spec.pool(cell, ctx) if spec.pool else None  # started and warmed once, for every step
    try:
        if pool is not None:
            ctx.facts.update(intra_op_ran=pool.intra_op_ran, intra_op_rule=pool.rule, **pool.facts)
        run_real(strategy, h, n, cell, 1.0, 1e9, cell.seed, min_seconds, sched_rel=np.zeros(n * max(cell.warmup, 1)),
                 pool=pool)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    capacity = 1.0 / single

    def steps():
        try:
            step_seeds = iter(range(cell.seed + 1, cell.seed + MAX_STEPS + 1))

            def measure(r: float, queries: int) -> Step:  # one rate step; its span is where the GPU sampler reads
                t0 = process_clock()
                if cell.load_generator == LOADGEN:  # LoadGen issues and judges; the strategy is the same
                    srv = spec.make(h, n, cell, pool)
                    step = mlperf.run_step(srv, spec.batcher, len(h.inputs), getattr(srv, "now", process_clock), r,
                                           bound, next(step_seeds), queries)
                else:
                    step = run_real(strategy, h, n, cell, r, bound, next(step_seeds), min_seconds, pool=pool,
                                    queries=queries)[0]
                h.measured.timed_spans.append((t0, process_clock()))
                return step

            for step in search_steps(measure, START_FRACTION * n * capacity, process_clock, Search(),
                                     min_seconds=min_seconds, floor=FLOOR_FRACTION * capacity):
                yield Trial(ops=step.queries, seconds=step.seconds, lat_p50_ms=step.lat_p50_ms,
                            lat_p90_ms=step.lat_p90_ms, lat_p99_ms=step.lat_p99_ms, batch_hist=step.batch_hist,
                            rate=step.rate, lag_p99_ms=step.lag_p99_ms, bound_ms=step.bound_ms, verdict=step.verdict,
                            step_kind=step.kind)
            # verification: verify_ops queries per server, all issued at once, each output against the reference
            # (a process pool checks each in the process that ran it and sends the error back)
            _, srv = run_real(strategy, h, n, cell, 1.0, 1e9, cell.seed, min_seconds, keep=True,
                              sched_rel=np.zeros(n * max(cell.verify_ops, 1)), pool=pool)
            for i, y in sorted(srv.outputs.items()):
                h.record(h.check(y, i % len(h.inputs)))
            for _, err in sorted(getattr(srv, "checked", {}).items()):
                h.record(err)
            if pool is not None:  # each process's memory, as the processes mode records it
                ctx.facts.update(memory_facts(pool.stop()))
        finally:
            if pool is not None:
                pool.close()

    return steps()
