"""A worker process that measures cells one after another: `python -m compare.measure.worker EVENTS_FILE CACHE_DIR`.

It reads cells from stdin, one JSON line each ({"index": i, "cell": {...}}), measures each in turn, and ends
when stdin closes. It appends one JSON line per event to EVENTS_FILE as it goes (begin, env, each trial,
verification, its time split, status), every event naming its cell's index, so a crash or hang loses only
what had not happened yet. The parent (compare.measure.runner) sends the next cell once it has the last
one's status, and turns the lines and the exit status into one CellResult per cell. The process keeps its
backend, weights, references and built models for its later cells (compare.measure.build.Held); settings
that are per call (the float32 matmul setting where it is a global switch) are applied per cell. An
exception in a cell is that cell's error and the process goes on; a cell that leaves threads running ends
the process after its status, so that the next cell starts in a fresh one.

Framework-free: it reaches the framework only through the Backend; and free of polars, typer and rich, so
that it can run under an interpreter that has only the measuring stack."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from backends.base import Unsupported, apply_configure

from ..cells import ERROR, OK, TOO_SLOW, UNAVAILABLE, UNSUPPORTED, WRONG, Cell
from .build import CellContext, Held, make_harness, memory, reset_peak_rss
from .harness import CellFailed, Checks, Measured, ModeFailed, TooSlow
from .host import GpuSampler
from .interpreters import GilWatch, gil_enabled, this_interpreter
from .procs import watch_parent
from .registry import MEASURES
from .verify import tolerance

LEFTOVER_JOIN_S = 1.0  # how long the threads a cell started get to end after it, before they count as left running


class Events:
    """The events file, one fsync'd JSON line per event; `cell`: the index every event of this emitter names."""

    def __init__(self, path: str | None = None, cell: int | None = None, file: IO | None = None):
        self.f = file if file is not None else open(path, "a", buffering=1)
        self.cell = cell

    def for_cell(self, index: int) -> "Events":
        return Events(cell=index, file=self.f)

    def emit(self, event: str, **data) -> None:
        line = {"event": event, **({} if self.cell is None else {"cell": self.cell}), **data}
        self.f.write(json.dumps(line, default=str) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())


@dataclass
class Outcome:
    status: str
    cause: str = ""
    traceback: str = ""


def run_cell(cell: Cell, events: Events, cache: Path, held: Held | None = None,
             gil_watch: GilWatch | None = None) -> None:
    """Measure one cell and emit its events, its time split and, last, its status (the parent's sign that
    the cell is over). `held`: what this process keeps between its cells (a new Held: a cell on its own).
    `gil_watch`: the modules that re-enabled the GIL in this process, for the cell's interpreter event."""
    held = held or Held(cache)
    began, build_s, refs_s = time.perf_counter(), held.build_s, held.refs_s()
    times = {}
    try:
        outcome = _measure(cell, events, held, times)
    except CellFailed as e:
        outcome = Outcome(e.status, e.cause, e.traceback)
    except ModeFailed as e:
        cause = e.__cause__ or e
        outcome = Outcome(ERROR, f"{type(cause).__name__}: {cause}", "".join(traceback.format_exception(cause)))
    except Exception as e:  # noqa: BLE001 - the cell's result, not the process's end
        outcome = Outcome(ERROR, f"{type(e).__name__}: {e}", traceback.format_exc())
    # what ran the cell, and whether its GIL was off after the framework's import and after the cell: a
    # GIL-off cell whose GIL came back on is labelled so, and never counts as free-threaded
    events.emit("interpreter", **{k: v for k, v in this_interpreter().items() if k != "gil_enabled"},
                gil_asked=os.environ.get("PYTHON_GIL"), gil_import=times.pop("gil_import", None),
                gil_after=gil_enabled(), gil_reenabled_by=", ".join(gil_watch.modules) if gil_watch else None)
    events.emit("times", cell_s=time.perf_counter() - began, build_s=held.build_s - build_s,
                refs_s=held.refs_s() - refs_s, **times)
    events.emit("status", status=outcome.status, cause=outcome.cause,
                **({"traceback": outcome.traceback} if outcome.traceback else {}))


def _measure(cell: Cell, events: Events, held: Held, times: dict) -> Outcome:
    """The cell's measurement; `times` gets its warm-up, timed windows and mode seconds as they are known."""
    backend = held.backend(cell.backend)
    times["gil_import"] = gil_enabled()  # the framework imported (held.backend imports it)
    why = held.status[cell.backend].get(cell.device, f"{cell.backend} has no device {cell.device!r}")
    if why is not None:
        return Outcome(UNAVAILABLE, why)
    if cell.dtype not in backend.dtypes:
        return Outcome(UNSUPPORTED, f"{cell.backend} supports {', '.join(backend.dtypes)}, not {cell.dtype}")
    apply_configure(backend, cell.fp32_precision, cell.intra_op_threads, dict(cell.backend_options))
    env = {**backend.describe(cell.device), "sync_waits": bool(getattr(backend, "sync_waits", False))}
    events.emit("env", env=env)
    precision = backend.effective_precision(cell.device, cell.dtype, cell.fp32_precision)
    events.emit("result", precision=precision)

    built = held.workload(cell)
    spec, params = built.spec, built.params
    events.emit("spec", flops_per_op=spec.flops(), size=spec.label())

    if cell.mode == "streams":
        try:
            with backend.stream(cell.device):  # fail early, in the main thread, if there are none
                pass
        except Unsupported as e:
            return Outcome(UNSUPPORTED, str(e))

    backend.reset_peak_device_memory(cell.device)  # this cell's peak, not the process's
    checks, measured = Checks(tolerance(precision)), Measured()
    ctx = CellContext(
        build_harness=lambda: make_harness(backend, held.model(backend, cell), cell, spec, params, held.cache,
                                           checks, measured, refs=built.refs),
        checks=checks, measured=measured, cache=held.cache,
        facts={"intra_op_ran": env.get("intra_op_threads"),
               "intra_op_rule": "--intra-op-threads" if cell.intra_op_threads else "framework default"})

    started = time.perf_counter()
    try:
        sampler = GpuSampler(cell.device, events.emit).start()  # GPU utilisation: one event
        try:
            # each trial is written as it comes (a server cell yields its rate steps one by one: a cell that
            # fails later keeps them)
            for t in MEASURES[cell.mode](cell, ctx):
                events.emit("trial", **asdict(t))
        finally:
            sampler.stop(measured.timed_spans)  # over the timed windows only
            times.update(mode_s=time.perf_counter() - started, warmup_s=measured.warmup_s,
                         timed_s=sum(end - start for start, end in measured.timed_spans))
    except Unsupported as e:
        return Outcome(UNSUPPORTED, str(e))
    except TooSlow as e:  # not measured; but an output already checked wrong makes it a wrong cell
        events.emit("result", **asdict(measured))
        events.emit("verify", errors=checks.errors, checked=checks.checked, rel_err=checks.max_err)
        return (Outcome(WRONG, f"{_wrong(checks)}; and {e}") if checks.errors else Outcome(TOO_SLOW, str(e)))
    events.emit("result", **asdict(measured))
    events.emit("facts", **ctx.facts)
    events.emit("verify", errors=checks.errors, checked=checks.checked, rel_err=checks.max_err)
    used = memory(backend, cell.device)
    events.emit("memory", peak_rss_mb=used.rss_mb, peak_device_mb=used.device_mb)
    return Outcome(WRONG, _wrong(checks)) if checks.errors else Outcome(OK)


def _wrong(checks: Checks) -> str:
    return (f"{checks.errors} of {checks.checked} checked outputs off the reference "
            f"(max rel. error {checks.max_err:.3g}, tolerance {checks.tolerance:g})")


def _left_running(before: set[threading.Thread]) -> list[str]:
    """The threads a cell started that are still running after it (given LEFTOVER_JOIN_S to end)."""
    deadline = time.monotonic() + LEFTOVER_JOIN_S
    left = [t for t in threading.enumerate() if t not in before]
    for t in left:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in left if t.is_alive()]


def main(argv: list[str]) -> int:
    watch_parent()
    gil_watch = GilWatch().install()
    events = Events(argv[0])
    held = Held(Path(argv[1]))
    events.emit("start", pid=os.getpid(), t=time.time())
    for line in sys.stdin:
        message = json.loads(line)
        cell, own = Cell.from_dict(message["cell"]), events.for_cell(message["index"])
        own.emit("begin", t=time.time())
        before = set(threading.enumerate())
        reset_peak_rss()  # this cell's peak RSS (which includes what the process holds for its other cells)
        run_cell(cell, own, held.cache, held, gil_watch)
        left = _left_running(before)
        if left:  # a cell that left threads running would share the machine with the next: end here
            events.emit("leaving", cause=f"{cell.label()} left {len(left)} thread(s) running "
                                         f"({', '.join(sorted(left)[:4])})")
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
