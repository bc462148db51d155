"""The `processes` mode: N spawned processes, each with its own copy of the model and its own input, timed
as one. They run the one Schedule (compare.measure.schedule) with its state in shared memory: process 1
runs the speed check while the others wait, all warm up, and they meet at one cross-process barrier per
window boundary whose action plans the next window; all read one clock (clocks.shared_clock). The worker
pools every process's op times of a window into one Trial, as threads pool theirs, merges their checks,
and records each one's memory and intra-op threads (procs.intra_op_plan: equal total threads).

The `replicas` mode is the same mode with each process pinned (procs.Pin) to one device of Cell.devices
and to its share of the host's cores before its framework starts: one model replica per device, the
closed loop spread over them; each replica also samples its own GPU's utilisation over its timed windows,
and the cell records the devices' names and their link (host.device_topology).

Not here: a pool serving requests (the server's, compare.measure.server); each process loops on its own
input, as a thread does. The worker never builds a model itself. A process that dies or raises fails the
cell with its cause ("process 3 of 4 killed by SIGSEGV"); one that hangs holds the others at the next
barrier until the runner's cell timeout ends the group, and the worker's log says where each one was."""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import traceback
from dataclasses import asdict
from pathlib import Path

from ..cells import CRASH, ERROR, Cell, Trial
from .build import CellContext, memory, memory_facts, process_harness
from .clocks import process_clock, shared_clock
from .harness import CellFailed, TooSlow
from .host import GpuSampler, device_topology
from .procs import SPAWN, Pin, Processes, exit_cause, intra_op_plan, replica_pins, watch_parent
from .schedule import TIMED, TOO_SLOW, Schedule, SharedState, Window, check_speed, reader_of, take_part
from .split import Lap, sample_cost, usable_cores

# While no process has said anything for this long, the worker logs where each one is, so that a cell the
# runner times out names the process that hung (its last log line joins the cause). Only a note: it
# decides nothing, so a busy machine that makes it fire costs one log line.
QUIET_NOTE_S = 5.0


def _child(i: int, cell_dict: dict, cache: str, parent: int, intra_op: int, barrier, sched: Schedule,
           pin: Pin | None, conn) -> None:
    """Process i of the cell: build, then the speed check (process 1), warm-up, windows and verification
    in step with the others; sends the worker ("ready", ...), ("at", where it is) at each step, then one of
    ("result", ...), ("slow", ...), ("raised", ...) or ("aborted",) (another process broke the barrier).
    `pin`: a replica's device and cores, applied before anything starts its framework."""
    watch_parent(parent=parent)  # the cell's worker died (e.g. SIGKILL): so do we
    h = None
    util: dict = {}
    sampler = None
    try:
        cell = Cell.from_dict(cell_dict)
        if pin is not None:
            pin.apply()
            sampler = GpuSampler(cell.device, lambda _, **event: util.update(event)).start()  # its own GPU
        backend, h = process_harness(cell, Path(cache), intra_op, shared_clock)
        conn.send(("ready", backend.describe(cell.device).get("intra_op_threads")))
        barrier.wait()  # every process has built its model
        if i == 0:
            sched.start(check_speed(h, 0, cell.window_cap), sample_cost(h.timer, h.cpu_clock))  # TooSlow: too slow
        conn.send(("at", "warm-up"))
        x = h.inputs[i]  # process i sends request i, as thread i does
        for _ in range(cell.warmup):
            h.op(x)
        windows = []

        def wait() -> None:
            conn.send(("at", f"the barrier before window {len(windows) + 1} of {cell.trials}"
                             if sched.phase == TIMED else "the barrier before a warm-up window"))
            barrier.wait()  # the last to arrive plans the next window (Schedule.advance)

        spans = []  # the timed windows, in this process's perf_counter (its GPU sampler's clock)

        def keep(lap: Lap, first, last) -> None:
            windows.append((lap.resolve(h.timer), sched.state.length))  # device marks to seconds: picklable
            if (span := Window.of([windows[-1][0]]).span()) is not None:
                shift = process_clock() - shared_clock()
                spans.append((span[0] + shift, span[1] + shift))
            for y in (first,) if first is last else (first, last):  # checked outside the clock
                if y is not None:
                    h.record(h.check(y, i))

        take_part(sched, wait, h.call, h.sync, x, keep, reader_of(h, whole_process=True))  # nothing shares its GIL
        if sched.phase == TOO_SLOW:
            raise sched.too_slow()
        conn.send(("at", "the barrier before verification"))
        barrier.wait()  # verification while every process runs
        conn.send(("at", "verification"))
        for _ in range(cell.verify_ops):
            h.record(h.check(h.op(x), i))
        if sampler is not None:
            sampler.stop(spans)
        conn.send(("result", {"windows": windows, "tally": h.checks.tally(), "util_mean": util.get("mean"),
                              "util_max": util.get("max"), **asdict(memory(backend, cell.device, unique=True))}))
    except threading.BrokenBarrierError:
        conn.send(("aborted",))
    except TooSlow as e:
        barrier.abort()
        conn.send(("slow", str(e), h.checks.tally() if h else (0, 0, 0.0)))
    except BaseException as e:  # noqa: BLE001 - the cell's cause, sent to the worker
        barrier.abort()
        conn.send(("raised", f"{type(e).__name__}: {e}", traceback.format_exc()))
    finally:
        conn.close()


# -- in the cell's worker -------------------------------------------------------------------------
def run_processes(cell: Cell, ctx: CellContext) -> list[Trial]:
    """The mode's entry (compare.measure.registry). Never calls ctx.build_harness(): the processes build."""
    with tempfile.TemporaryDirectory(prefix="threadbench-procrefs-") as own_cache:
        return _run(cell, ctx, str(ctx.cache or own_cache))


def run_replicas(cell: Cell, ctx: CellContext) -> list[Trial]:
    """The replicas mode's entry (compare.measure.registry): processes, one per device of cell.devices, each
    pinned to its device and its equal share of the host's cores, with as many intra-op threads as that
    share holds (unless --intra-op-threads says otherwise)."""
    pins = replica_pins(cell)
    ctx.facts.update(device_topology(pins, cell.device))
    with tempfile.TemporaryDirectory(prefix="threadbench-procrefs-") as own_cache:
        return _run(cell, ctx, str(ctx.cache or own_cache), pins)


def _run(cell: Cell, ctx: CellContext, cache: str, pins: list[Pin] | None = None) -> list[Trial]:
    n = cell.threads
    sched = Schedule(n, cell.duration, cell.trials, cell.window_cap, shared_clock, SharedState(SPAWN), SPAWN.Lock(),
                     participant="process" if pins is None else "replica")
    barrier = SPAWN.Barrier(n, action=sched.advance)
    intra_op, rule = intra_op_plan(cell, pins)
    procs = Processes(n, _child, lambda i: (i, cell.to_dict(), cache, os.getpid(), intra_op, barrier, sched,
                                            None if pins is None else pins[i]))
    try:
        procs.start()
        reports, reported_intra = _gather(procs, ctx)
        for i, p in enumerate(procs.procs):  # each said its result; now it must also exit cleanly
            p.join()
            if p.exitcode != 0:  # as the runner says of a worker that dies in its framework's teardown
                how = exit_cause(p.exitcode) if p.exitcode < 0 else f"exited with code {p.exitcode}"
                raise CellFailed(CRASH, f"process {i + 1} of {n} {how} after reporting its result (at exit)")
    finally:
        procs.close()
    for r in reports:
        ctx.checks.merge(*r["tally"])
    sched.record(ctx.measured)
    trials = []
    shift = process_clock() - shared_clock()  # the spans move to the GPU sampler's clock
    ctx.measured.cores = usable_cores()
    for t in range(len(reports[0]["windows"])):
        window = Window.of([r["windows"][t][0] for r in reports])
        trials.append(window.trial(window_s=reports[0]["windows"][t][1]))
        if (span := window.span()) is not None:
            ctx.measured.timed_spans.append((span[0] + shift, span[1] + shift))
    ctx.facts.update(intra_op_ran=reported_intra, intra_op_rule=rule, **memory_facts(reports))
    if pins is not None:  # each replica's own GPU; the cell's figure: their mean, and the busiest read
        util = [r["util_mean"] for r in reports]
        every = all(u is not None for u in util)  # else none: the worker's own sampler read only GPU 0
        ctx.facts.update(process_util_mean=util if any(u is not None for u in util) else None,
                         gpu_util_mean=sum(util) / n if every else None,
                         gpu_util_max=max(r["util_max"] for r in reports) if every else None)
    return trials


def _gather(procs: Processes, ctx: CellContext) -> tuple[list[dict], int | None]:
    """Every process's report, in process order, and the intra-op threads the first one's framework said
    it runs. Raises, as soon as one process fails, the cell's failure (TooSlow or CellFailed)."""
    n = procs.n
    reports: dict[int, dict] = {}
    intra: dict[int, int | None] = {}
    at = {i: "start-up (spawn, imports, build)" for i in range(n)}  # where each process last said it was

    def on_message(i: int, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            intra[i] = msg[1]
            at[i] = "the barrier after building"
        elif kind == "at":
            at[i] = msg[1]
        elif kind == "result":
            reports[i] = msg[1]
        elif kind == "slow":
            ctx.checks.merge(*msg[2])
            raise TooSlow(msg[1])

    def on_quiet(running: list[int]) -> None:
        print(f"processes: none heard from in {QUIET_NOTE_S:g} s; " + "; ".join(
            f"process {i + 1} of {n} (pid {procs.procs[i].pid}) at {at[i]}" for i in running),
            file=sys.stderr, flush=True)

    procs.read(on_message, QUIET_NOTE_S, on_quiet)
    if len(reports) < n:  # pragma: no cover - a broken barrier always has a failed process behind it
        raise CellFailed(ERROR, f"{n - len(reports)} of {n} processes stopped at a broken barrier, "
                                "with no process reporting why")
    return [reports[i] for i in range(n)], intra.get(0)
