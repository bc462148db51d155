"""The `processes` mode: N worker processes, each with its own copy of the model, timed as one.

The cell's worker (compare.measure.worker) starts N processes through multiprocessing's spawn context: a
fresh interpreter each, as a process pool gets on macOS and Windows, and never a fork of a process whose
framework already runs threads or holds a GPU context. Each builds its model from the workload's seeded
weights through the worker's own build_model and make_harness, so op, inputs, synchronise and output check
are those of `threads`; process i runs input i, as thread i does. Once all are built, process 1 runs the
one-op speed check while the others wait (as threads does before it starts its threads); then all warm up
and meet at one cross-process barrier per timed window, whose last arrival opens the window (deadline = now
+ duration, on a clock every process shares) for all; after the last window all check `verify_ops` outputs
while all run. The worker pools every process's (start, end) op times of a window into one Trial exactly as
threads pools its threads' (completed ops / (last completion - first start)), merges their verification
tallies into the cell's Checks, and records each one's memory and intra-op threads in `build.facts`.

Intra-op threads: unless --intra-op-threads says otherwise, each process runs max(1, cores // N) of them, so
processes x intra-op threads stay within the cores, as in a threads cell, whose one process runs the
framework's own default (about one per core): the two compare at equal total threads, and the result's
intra_op_rule says so.

What it is not: a pool serving requests (no dispatcher: each process loops on its own input, as a thread
does), and the worker never builds a model itself. The server scenario's pool (ServerPool, the `processes`
strategy of compare.measure.server) is built here too, from the same pieces: spawned processes that build
through the worker's build_model and make_harness with intra_op_plan's threads, watch_parent, the shared
`clock`, and failures read from pipes and exit sentinels as _gather reads them.

Failure: a process that dies (signal, exit) or raises fails the cell with its cause ("process 3 of 4 killed
by SIGSEGV"); the others are killed at once and reaped. Every process stays in the cell's process group,
which the runner kills whole on timeout or interrupt, and ends itself if the worker dies (watch_parent). A
process that hangs holds the others at the next barrier until the runner's cell timeout ends the group; the
worker logs where each process last said it was, and the timeout's cause quotes that line.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
import psutil

import backends
from backends.base import apply_configure
import workloads
from ..cells import Cell, Trial
from . import modes, worker
from .runner import _exit_cause
from .verify import tolerance

# A clock whose readings compare across processes. Python documents the reference point of perf_counter
# (and of monotonic) as undefined, promising only differences within one process; POSIX defines
# CLOCK_MONOTONIC as one system-wide clock (Linux: time since boot), so every process reads one timeline.
# Elsewhere (Windows) time.monotonic, whose sources (QueryPerformanceCounter, GetTickCount64) are system-wide.
if hasattr(time, "clock_gettime") and hasattr(time, "CLOCK_MONOTONIC"):
    clock = functools.partial(time.clock_gettime, time.CLOCK_MONOTONIC)
else:  # pragma: no cover - Windows
    clock = time.monotonic

# While no process has said anything for this long, the worker logs where each one is, so that a cell the
# runner times out names the process that hung (its last log line joins the cause). Only a note: it
# decides nothing, so a busy machine that makes it fire costs one log line.
QUIET_NOTE_S = 5.0


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity, which a container or taskset narrows), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def intra_op_plan(cell: Cell) -> tuple[int, str]:
    """(intra-op threads each process asks its framework for, why that many)."""
    if cell.intra_op_threads:
        return cell.intra_op_threads, "--intra-op-threads"
    cores = usable_cores()
    return max(1, cores // cell.threads), (f"equal total threads: {cores} cores // {cell.threads} "
                                           + ("process" if cell.threads == 1 else "processes"))


def pool(windows: list[list[tuple]]) -> list[Trial]:
    """windows[process][trial] = (starts, ends[, window length, ...]) -> one Trial per window, pooled over the
    processes exactly as modes pools threads: completed ops / (last completion - first start)."""
    out = []
    for t in range(len(windows[0]) if windows else 0):
        per = [w[t] for w in windows]
        out.append(modes._trial([s for p in per for s in p[0]], [e for p in per for e in p[1]],
                                window_s=per[0][2] if len(per[0]) > 2 else None,
                                min_thread_ops=min(len(p[1]) for p in per)))
    return out


# -- in each process ----------------------------------------------------------------------------------
class Plan:
    """The window schedule of compare.measure.modes.Schedule, kept in shared memory because its threads are
    processes here: the same constants and rules (warm-up windows until two in a row agree within
    STEADY_REL or for WARMUP_CAP_DURATIONS x --duration; then timed windows long enough for
    WINDOW_SAFETY x MIN_OPS_PER_WINDOW ops per process at the rate warm-up ended with, up to the cap;
    a timed window in which a process fell short lengthens the ones after it). `advance` is the barrier's
    action: it runs in the last process to arrive, while every other one waits, so nothing it does is
    timed. Each process adds its window's ops to `ops` and lowers `min_ops`; a window opens (its deadline
    is set) when the first process starts work, as in modes.Window.open."""
    FIELDS = ("phase", "length", "deadline", "ops", "min_ops", "rate", "prev_rate", "started", "warmup_windows",
              "warmup_s", "steady", "window_s", "trial", "per_rate", "too_slow_need", "timed_from", "timed_to")
    WARM, TIMED, DONE, TOO_SLOW = 0.0, 1.0, 2.0, 3.0

    def __init__(self, ctx, cell: Cell):
        self.v = ctx.RawArray("d", len(self.FIELDS))
        self.lock = ctx.Lock()
        self.n, self.duration, self.trials, self.cap = cell.threads, cell.duration, cell.trials, cell.window_cap

    def __getattr__(self, name):
        if name in Plan.FIELDS:
            return self.v[Plan.FIELDS.index(name)]
        raise AttributeError(name)

    def set(self, **kw) -> None:
        for k, val in kw.items():
            self.v[Plan.FIELDS.index(k)] = val

    def start(self, op_s: float) -> None:
        """Before the first window: the per-process rate assumed until warm-up measures one."""
        self.set(per_rate=1.0 / (op_s * self.n) if op_s > 0 else 1e9, phase=self.WARM, started=0.0, trial=-1,
                 length=0.0)

    def open(self) -> float:
        with self.lock:
            if self.deadline == 0.0:
                t = clock()
                self.set(deadline=t + self.length)
                if self.phase == self.TIMED and self.timed_from == 0.0:  # the first timed window opens
                    self.set(timed_from=t)
            return self.deadline

    def add(self, ops: int) -> None:
        with self.lock:
            self.set(ops=self.ops + ops, min_ops=min(self.min_ops, ops))

    def advance(self) -> None:
        """Close the window just run (its rate), then plan the next: the action of every barrier, so it does
        nothing before start() (the barrier after building) or after the last window (before verification)."""
        if self.per_rate == 0.0 or self.phase in (self.DONE, self.TOO_SLOW):
            return
        if self.phase == self.TIMED:  # a timed window just closed: the timed span reaches here
            self.set(timed_to=clock())
        if self.length > 0 and self.ops:
            self.set(per_rate=self.ops / self.n / self.length)
        if self.phase == self.WARM and self.length > 0:  # (length 0: nothing run yet)
            self.set(prev_rate=self.rate, rate=self.ops / self.length, warmup_windows=self.warmup_windows + 1)
        elif self.phase == self.TIMED and self.min_ops < modes.MIN_OPS_PER_WINDOW:
            self.set(window_s=min(self.cap, self.window_s * modes.WINDOW_SAFETY * modes.MIN_OPS_PER_WINDOW
                                  / max(self.min_ops, 1)))
        self._next()

    def _steady(self) -> bool:
        r, q = self.rate, self.prev_rate
        return self.warmup_windows >= 2 and min(r, q) > 0 and abs(r - q) <= modes.STEADY_REL * max(r, q)

    def _next(self) -> None:
        t = clock()
        if self.phase == self.WARM:
            if self.started == 0.0:
                self.set(started=t)
            elapsed = t - self.started
            if not self._steady() and elapsed < modes.WARMUP_CAP_DURATIONS * self.duration:
                length = max(modes.WARMUP_WINDOW_SHARE * self.duration, modes.WARMUP_MIN_OPS / self.per_rate)
                self.set(length=min(length, self.cap), deadline=0.0, ops=0.0, min_ops=1e18)
                return
            need = modes.MIN_OPS_PER_WINDOW / self.per_rate
            self.set(warmup_s=elapsed, steady=float(self._steady()))
            if need > self.cap:
                self.set(phase=self.TOO_SLOW, too_slow_need=need)
                return
            self.set(phase=self.TIMED, window_s=min(self.cap, max(self.duration, modes.WINDOW_SAFETY * need)))
        self.set(trial=self.trial + 1)
        if self.trial >= self.trials:
            self.set(phase=self.DONE)
            return
        self.set(length=self.window_s, deadline=0.0, ops=0.0, min_ops=1e18)


def _tally(checks: modes.Checks | None) -> tuple[int, int, float]:
    return (checks.errors, checks.checked, checks.max_err) if checks else (0, 0, 0.0)


def _build(cell_dict: dict, cache: str, intra_op: int):
    """What every process of a cell (processes mode, server pool) does first: its backend configured with its
    intra-op threads, its model and Harness built through the worker's own functions, so op, inputs,
    synchronise and check are those of `threads`; this process's thread settings applied.
    Returns (cell, backend, checks, harness)."""
    cell = Cell.from_dict(cell_dict)
    backend = backends.load(cell.backend)
    apply_configure(backend, cell.fp32_precision, intra_op, dict(cell.backend_options))
    spec = workloads.make(cell.workload, **dict(cell.knobs))
    params = spec.init_weights(cell.seed)
    checks = modes.Checks(tolerance(backend.effective_precision(cell.device, cell.dtype, cell.fp32_precision)))
    h = worker.make_harness(backend, worker.build_model(backend, cell, spec, params), cell, spec, params,
                            Path(cache), checks)
    if h.thread_setup is not None:
        h.thread_setup()
    return cell, backend, checks, h


def _child(i: int, cell_dict: dict, cache: str, parent: int, intra_op: int, barrier, plan: Plan, conn) -> None:
    """Process i of the cell: build, then the speed check (process 1), warm-up, windows and verification
    in step with the others; sends the worker ("ready", ...), ("at", where it is) at each step, then one of
    ("result", ...), ("too_slow", ...), ("error", ...) or ("aborted",) (another process broke the barrier)."""
    worker.watch_parent(parent=parent)  # the cell's worker died (e.g. SIGKILL): so do we
    checks = None
    try:
        modes.now = clock  # every clock read of the shared loop code on one timeline across processes
        cell, backend, checks, h = _build(cell_dict, cache, intra_op)
        conn.send(("ready", backend.describe(cell.device).get("intra_op_threads")))
        barrier.wait()  # every process has built its model
        if i == 0:
            plan.start(modes.check_speed(h, 0, cell.window_cap))  # raises TooSlow: the cell is too slow
        conn.send(("at", "warm-up"))
        x = h.inputs[i]  # process i sends request i, as thread i does
        for _ in range(cell.warmup):
            h.op(x)
        windows = []
        while True:
            conn.send(("at", f"the barrier before window {len(windows) + 1} of {cell.trials}"
                             if plan.phase == Plan.TIMED else "the barrier before a warm-up window"))
            barrier.wait()  # the last to arrive has planned this window (Plan.advance)
            if plan.phase in (Plan.DONE, Plan.TOO_SLOW):
                break
            timed = plan.phase == Plan.TIMED
            starts: list[float] = []
            ends: list[float] = []
            samples = modes._timed_loop(h.op, x, plan.open(), starts, ends)
            plan.add(len(ends))
            if timed:  # outputs produced inside the window, checked outside the clock (modes.Schedule)
                windows.append((starts, ends, plan.length, None))
                for y in samples[:1] if samples[0] is samples[1] else samples:
                    if y is not None:
                        h.record(h.check(y, i))
        if plan.phase == Plan.TOO_SLOW:
            raise modes.TooSlow(f"{plan.per_rate:.3g} ops/s per process at the end of warm-up, so "
                                f"{modes.MIN_OPS_PER_WINDOW} ops per process need {plan.too_slow_need:.3g} s, more "
                                f"than the {plan.cap:g} s longest window; raise --duration")
        conn.send(("at", "the barrier before verification"))
        barrier.wait()  # verification while every process runs
        conn.send(("at", "verification"))
        for _ in range(cell.verify_ops):
            h.record(h.check(h.op(x), i))
        try:
            uss = psutil.Process().memory_full_info().uss / 2**20
        except (psutil.Error, AttributeError):
            uss = None
        conn.send(("result", {"windows": windows, "tally": _tally(checks), "rss_mb": worker.peak_rss_mb(),
                              "uss_mb": uss, "device_mb": worker._mb(backend.peak_device_memory(cell.device))}))
    except threading.BrokenBarrierError:
        conn.send(("aborted",))
    except modes.TooSlow as e:
        barrier.abort()
        conn.send(("too_slow", str(e), _tally(checks)))
    except BaseException as e:  # noqa: BLE001 - the cell's cause, sent to the worker
        barrier.abort()
        conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))
    finally:
        conn.close()


# -- in the cell's worker -------------------------------------------------------------------------
def run_processes(cell: Cell, build: modes.Build) -> list[Trial]:
    """The runner (compare.measure.modes.RUNNERS["processes"]). Never calls build(): the processes build."""
    with tempfile.TemporaryDirectory(prefix="threadbench-procrefs-") as own_cache:
        return _run(cell, build, str(build.cache or own_cache))


def _run(cell: Cell, build: modes.Build, cache: str) -> list[Trial]:
    n = cell.threads
    ctx = mp.get_context("spawn")
    plan = Plan(ctx, cell)
    barrier = ctx.Barrier(n, action=plan.advance)
    intra_op, rule = intra_op_plan(cell)
    pipes = [ctx.Pipe(duplex=False) for _ in range(n)]
    procs = [ctx.Process(target=_child, name=f"tb-process-{i + 1}", daemon=True,
                         args=(i, cell.to_dict(), cache, os.getpid(), intra_op, barrier, plan, send))
             for i, (_, send) in enumerate(pipes)]
    readers = [recv for recv, _ in pipes]
    try:
        for p in procs:
            p.start()
        for _, send in pipes:
            send.close()  # only the process writes to its pipe: once it ends, the worker reads EOF
        reports, reported_intra = _gather(procs, readers, build.checks)
        for i, p in enumerate(procs):  # each said its result; now it must also exit cleanly
            p.join()
            if p.exitcode != 0:  # as the runner says of a worker that dies in its framework's teardown
                how = _exit_cause(p.exitcode) if p.exitcode < 0 else f"exited with code {p.exitcode}"
                raise modes.CellFailed("crash", f"process {i + 1} of {n} {how} after reporting its result (at exit)")
    finally:
        for p in procs:
            if p.pid is None:  # never started (an earlier start failed)
                continue
            if p.is_alive():
                p.kill()
            p.join()
        for r in readers:
            r.close()
    for r in reports:
        build.checks.merge(*r["tally"])
    if build.measured is not None:  # how the cell was measured: the shared schedule's record
        build.measured.warmup_s, build.measured.warmup_windows = plan.warmup_s, int(plan.warmup_windows)
        build.measured.steady, build.measured.window_s = bool(plan.steady), plan.window_s or None
        if plan.timed_to > plan.timed_from > 0.0:  # one span from the first timed window to the last, moved
            shift = time.perf_counter() - clock()  # from the processes' shared clock to the sampler's
            build.measured.timed_spans.append((plan.timed_from + shift, plan.timed_to + shift))
    device = [r["device_mb"] for r in reports]
    build.facts.update(
        intra_op_ran=reported_intra, intra_op_rule=rule,
        process_rss_mb=[r["rss_mb"] for r in reports], process_uss_mb=[r["uss_mb"] for r in reports],
        process_device_mb=device if any(d is not None for d in device) else None)
    return pool([r["windows"] for r in reports])


def _gather(procs: list, readers: list, checks: modes.Checks) -> tuple[list[dict], int | None]:
    """Every process's report, in process order, and the intra-op threads the first one's framework said
    it runs. Raises, as soon as one process fails, the cell's failure (TooSlow or CellFailed)."""
    n = len(procs)
    reports: dict[int, dict] = {}
    aborted: set[int] = set()
    intra: dict[int, int | None] = {}
    at = {i: "start-up (spawn, imports, build)" for i in range(n)}  # where each process last said it was
    live = {r: i for i, r in enumerate(readers)}
    ends = {p.sentinel: i for i, p in enumerate(procs)}

    def read(i: int, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            intra[i] = msg[1]
            at[i] = "the barrier after building"
        elif kind == "at":
            at[i] = msg[1]
        elif kind == "result":
            reports[i] = msg[1]
        elif kind == "aborted":
            aborted.add(i)
        elif kind == "too_slow":
            checks.merge(*msg[2])
            raise modes.TooSlow(msg[1])
        elif kind == "error":
            raise modes.CellFailed("error", f"process {i + 1} of {n}: {msg[1]}", msg[2])

    def drain(conn, i: int) -> None:
        try:
            while conn.poll():
                read(i, conn.recv())
        except (EOFError, OSError):
            live.pop(conn, None)

    while ends:
        ready = wait([*live, *ends], timeout=QUIET_NOTE_S)
        if not ready:
            print(f"processes: none heard from in {QUIET_NOTE_S:g} s; " + "; ".join(
                f"process {i + 1} of {n} (pid {procs[i].pid}) at {at[i]}" for i in sorted(ends.values())),
                file=sys.stderr, flush=True)
        for obj in ready:
            if obj in live:
                drain(obj, live[obj])
            elif obj in ends:  # a process ended: first read what it said, then ask how it ended
                i = ends.pop(obj)
                drain(readers[i], i)
                if i not in reports and i not in aborted:
                    procs[i].join()
                    raise modes.CellFailed("crash", f"process {i + 1} of {n} {_exit_cause(procs[i].exitcode)}")
    if len(reports) < n:  # pragma: no cover - a broken barrier always has a failed process behind it
        raise modes.CellFailed("error", f"{n - len(reports)} of {n} processes stopped at a broken barrier, "
                                        "with no process reporting why")
    return [reports[i] for i in range(n)], intra.get(0)


# -- the server scenario's `processes` strategy (compare.measure.server) ------------------------------
def _server_child(i: int, cell_dict: dict, cache: str, parent: int, intra_op: int, jobs, conn) -> None:
    """Process i of a server pool: build as a processes-mode process does, warm up, say ("ready", intra-op
    threads), then take (step, query, request index, check) jobs from the one shared queue until None,
    answering each with ("done", step, query, completion time on the shared clock, relative error or None);
    at None, ("result", its memory) and exit; a raise is sent as ("error", cause, traceback)."""
    worker.watch_parent(parent=parent)
    try:
        cell, backend, checks, h = _build(cell_dict, cache, intra_op)
        for _ in range(cell.warmup):
            h.op(h.inputs[i % len(h.inputs)])
        conn.send(("ready", backend.describe(cell.device).get("intra_op_threads")))
        op, inputs = h.op, h.inputs
        while (job := jobs.get()) is not None:
            step, q, idx, keep = job
            y = op(inputs[idx % len(inputs)])
            t = clock()
            conn.send(("done", step, q, t, h.check(y, idx % len(inputs)) if keep else None))
        try:
            uss = psutil.Process().memory_full_info().uss / 2**20
        except (psutil.Error, AttributeError):
            uss = None
        conn.send(("result", {"rss_mb": worker.peak_rss_mb(), "uss_mb": uss,
                              "device_mb": worker._mb(backend.peak_device_memory(cell.device))}))
    except BaseException as e:  # noqa: BLE001 - the cell's cause, sent to the worker
        conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))
    finally:
        conn.close()


class ServerPool:
    """N spawned processes serving the server scenario's queries, started and warmed once per cell and reused
    by every rate step. The dispatcher (in the worker) puts jobs on one multiprocessing queue that all take
    from (one FIFO, as ThreadsServer's threads share one); each process answers on its own pipe, which a
    collector thread in the worker reads, together with every process's exit sentinel, as _gather does:
    a process that dies or raises sets `failure` (CellFailed, "process 2 of 4 killed by SIGSEGV"), which
    the next submit or finish raises. stop() ends them in order and returns what each reports (its memory);
    close() kills and reaps every process. (The worker keeps a model of its own as well, for the speed check
    and the single-request calibration that sets the default bound and the search's first rate.)"""

    def __init__(self, cell: Cell, cache: str):
        self.n = n = cell.threads
        ctx = mp.get_context("spawn")
        intra_op, self.rule = intra_op_plan(cell)
        self.jobs = ctx.Queue()
        pipes = [ctx.Pipe(duplex=False) for _ in range(n)]
        self.procs = [ctx.Process(target=_server_child, name=f"tb-process-{i + 1}", daemon=True,
                                  args=(i, cell.to_dict(), cache, os.getpid(), intra_op, self.jobs, send))
                      for i, (_, send) in enumerate(pipes)]
        self.readers = [recv for recv, _ in pipes]
        self.cond = threading.Condition()
        self.ready: dict[int, int | None] = {}
        self.failure: BaseException | None = None
        self.closing = False
        self.reports: dict[int, dict] = {}
        self.step, self.ends, self.errs = 0, {}, {}
        self.collector = None
        try:
            for p in self.procs:
                p.start()
            for _, send in pipes:
                send.close()  # only the process writes to its pipe: once it ends, the worker reads EOF
            self.collector = threading.Thread(target=self._collect, name="tb-pool-collect", daemon=True)
            self.collector.start()
            with self.cond:
                while len(self.ready) < n and self.failure is None:
                    self.cond.wait(QUIET_NOTE_S)
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

    def _read(self, i: int, msg: tuple) -> None:
        if msg[0] == "done":
            _, step, q, t, err = msg
            with self.cond:
                if step == self.step:
                    self.ends[q] = t
                    if err is not None:
                        self.errs[q] = err
                    self.cond.notify_all()
        elif msg[0] == "ready":
            with self.cond:
                self.ready[i] = msg[1]
                self.cond.notify_all()
        elif msg[0] == "result":
            with self.cond:
                self.reports[i] = msg[1]
                self.cond.notify_all()
        elif msg[0] == "error":
            self._fail(modes.CellFailed("error", f"process {i + 1} of {self.n}: {msg[1]}", msg[2]))

    def _collect(self) -> None:
        live = {r: i for i, r in enumerate(self.readers)}
        ends = {p.sentinel: i for i, p in enumerate(self.procs)}

        def drain(conn, i: int) -> None:
            try:
                while conn.poll():
                    self._read(i, conn.recv())
            except (EOFError, OSError):
                live.pop(conn, None)

        while ends:
            for obj in wait([*live, *ends]):
                if obj in live:
                    drain(obj, live[obj])
                elif obj in ends:  # a process ended: first read what it said, then ask how it ended
                    i = ends.pop(obj)
                    drain(self.readers[i], i)
                    self.procs[i].join()
                    if i not in self.reports:  # ended without being asked to (stop)
                        self._fail(modes.CellFailed("crash", f"process {i + 1} of {self.n} "
                                                             f"{_exit_cause(self.procs[i].exitcode)}"))

    def begin(self, keep: bool = False) -> "PoolStep":
        """A fresh rate step over the same processes (answers to an earlier step are ignored)."""
        with self.cond:
            if self.failure is not None:
                raise self.failure
            self.step += 1
            self.ends, self.errs = {}, {}
        return PoolStep(self, self.step, keep)

    def stop(self) -> list[dict]:
        """Ask every process to end, wait for each one's report, close(); the reports in process order."""
        for _ in self.procs:
            self.jobs.put(None)
        with self.cond:
            while len(self.reports) < self.n and self.failure is None:
                self.cond.wait(QUIET_NOTE_S)
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
        for p in self.procs:
            if p.pid is None:  # never started
                continue
            if p.is_alive():
                p.kill()
            p.join()
        if self.collector is not None:
            self.collector.join()
        for r in self.readers:
            r.close()
        self.jobs.cancel_join_thread()  # jobs left unread must not hold the worker's exit
        self.jobs.close()


class PoolStep:
    """One rate step of a ServerPool, with the interface of compare.measure.server's strategies: submit(i, t),
    done, finish(count) -> completion times. `now` is the shared clock, which the dispatcher then reads
    too, so latencies compare times of one timeline across processes. `checked`: query -> relative error,
    for the queries sent with keep (checked in the process that ran them; outputs never cross back, so
    `outputs` stays empty)."""

    def __init__(self, pool: ServerPool, step: int, keep: bool):
        self.pool, self.step, self.keep = pool, step, keep
        self.now = clock
        self.outputs: dict = {}

    @property
    def done(self) -> int:
        return len(self.pool.ends)

    @property
    def checked(self) -> dict:
        return self.pool.errs

    def submit(self, i: int, t: float) -> None:
        if self.pool.failure is not None:
            raise self.pool.failure
        self.pool.jobs.put((self.step, i, i, self.keep))

    def finish(self, count: int) -> np.ndarray:
        pool = self.pool
        with pool.cond:
            while pool.failure is None and len(pool.ends) < count:
                pool.cond.wait(QUIET_NOTE_S)
            if pool.failure is not None:
                raise pool.failure
            return np.array([pool.ends[i] for i in range(count)])
