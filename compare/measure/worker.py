"""One cell, in its own process: `python -m compare.measure.worker CELL_JSON EVENTS_FILE CACHE_DIR`.

It appends one JSON line per event to EVENTS_FILE as it goes (env, each trial, verification, done), so a
crash or hang loses only what had not happened yet. The parent (compare.measure.runner) turns the lines and
the exit status into a CellResult. Framework-free: it reaches the framework only through the Backend; and
free of polars, typer and rich, so that it can run under an interpreter that has only the measuring stack."""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import backends
import workloads
from backends.base import Unsupported, apply_configure

from ..cells import ERROR, OK, TOO_SLOW, UNAVAILABLE, UNSUPPORTED, WRONG, Cell
from .build import CellContext, build_model, make_harness, memory
from .harness import CellFailed, Checks, Measured, ModeFailed, TooSlow
from .host import GpuSampler
from .procs import watch_parent
from .registry import MEASURES
from .verify import tolerance


class Events:
    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1)

    def emit(self, event: str, **data) -> None:
        self.f.write(json.dumps({"event": event, **data}, default=str) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())


def run_cell(cell: Cell, events: Events, cache: Path) -> None:
    backend = backends.load(cell.backend)
    why = backend.device_status().get(cell.device, f"{cell.backend} has no device {cell.device!r}")
    if why is not None:
        events.emit("status", status=UNAVAILABLE, cause=why)
        return
    if cell.dtype not in backend.dtypes:
        events.emit("status", status=UNSUPPORTED,
                    cause=f"{cell.backend} supports {', '.join(backend.dtypes)}, not {cell.dtype}")
        return
    apply_configure(backend, cell.fp32_precision, cell.intra_op_threads, dict(cell.backend_options))
    env = backend.describe(cell.device)
    events.emit("env", env=env)
    precision = backend.effective_precision(cell.device, cell.dtype, cell.fp32_precision)
    events.emit("result", precision=precision)

    spec = workloads.make(cell.workload, **dict(cell.knobs))
    params = spec.init_weights(cell.seed)
    events.emit("spec", flops_per_op=spec.flops(), size=spec.label())

    if cell.mode == "streams":
        try:
            with backend.stream(cell.device):  # fail early, in the main thread, if there are none
                pass
        except Unsupported as e:
            events.emit("status", status=UNSUPPORTED, cause=str(e))
            return

    checks, measured = Checks(tolerance(precision)), Measured()
    ctx = CellContext(
        build_harness=lambda: make_harness(backend, build_model(backend, cell, spec, params), cell, spec, params,
                                           cache, checks, measured),
        checks=checks, measured=measured, cache=cache,
        facts={"intra_op_ran": env.get("intra_op_threads"),
               "intra_op_rule": "--intra-op-threads" if cell.intra_op_threads else "framework default"})

    try:
        sampler = GpuSampler(cell.device, events.emit).start()  # GPU utilisation: one event
        try:
            # each trial is written as it comes (a server cell yields its rate steps one by one: a cell that
            # fails later keeps them)
            for t in MEASURES[cell.mode](cell, ctx):
                events.emit("trial", **asdict(t))
        finally:
            sampler.stop(measured.timed_spans)  # over the timed windows only
    except Unsupported as e:
        events.emit("status", status=UNSUPPORTED, cause=str(e))
        return
    except TooSlow as e:  # not measured; but an output already checked wrong makes it a wrong cell
        events.emit("result", **asdict(measured))
        events.emit("verify", errors=checks.errors, checked=checks.checked, rel_err=checks.max_err)
        events.emit("status", status=WRONG if checks.errors else TOO_SLOW,
                    cause=f"{_wrong(checks)}; and {e}" if checks.errors else str(e))
        return
    events.emit("result", **asdict(measured))
    events.emit("facts", **ctx.facts)
    events.emit("verify", errors=checks.errors, checked=checks.checked, rel_err=checks.max_err)
    used = memory(backend, cell.device)
    events.emit("memory", peak_rss_mb=used.rss_mb, peak_device_mb=used.device_mb)
    events.emit("status", status=WRONG if checks.errors else OK, cause=_wrong(checks) if checks.errors else "")


def _wrong(checks: Checks) -> str:
    return (f"{checks.errors} of {checks.checked} checked outputs off the reference "
            f"(max rel. error {checks.max_err:.3g}, tolerance {checks.tolerance:g})")


def main(argv: list[str]) -> int:
    watch_parent()
    cell = Cell.from_dict(json.loads(Path(argv[0]).read_text()))
    events = Events(argv[1])
    events.emit("start", pid=os.getpid(), t=time.time())
    try:
        run_cell(cell, events, Path(argv[2]))
    except CellFailed as e:
        events.emit("status", status=e.status, cause=e.cause, traceback=e.traceback)
    except ModeFailed as e:
        cause = e.__cause__ or e
        events.emit("status", status=ERROR, cause=f"{type(cause).__name__}: {cause}",
                    traceback="".join(traceback.format_exception(cause)))
    except Exception as e:  # noqa: BLE001 - the cell's result, not the sweep's end
        events.emit("status", status=ERROR, cause=f"{type(e).__name__}: {e}",
                    traceback=traceback.format_exc())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
