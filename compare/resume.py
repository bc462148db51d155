"""`compare --resume FILE`: run only the planned cells that FILE lacks or that failed there; keep the rest.

A sweep stores its planned cells in the run document (run["plan"]) before the first cell starts, and saves
after every cell, so an interrupted, crashed or killed sweep leaves a file that says exactly what is
missing. A cell whose status compare.cells.STATUSES marks resumable (every failure, and interrupted) runs
again, as does one never run; every other status is kept as it is; cells marked superseded (measured again
in a later run) are not run.

A cell measured in several processes (--repeats) is complete when every one of its planned processes is:
only the processes that are missing or failed run again, and the cell's finished processes are kept. They
run in new worker processes (compare.measure.plan.worker_plans, shuffled by a seed of their own), numbered
after the worker processes the file already records."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.console import Console

from . import results
from .cells import STATUSES, Cell
from .measure.env import host_environment
from .measure.runner import Limits
from .options import BadInput, writable_out
from .session import execute

KEEP = tuple(name for name, spec in STATUSES.items() if not spec.resumable)  # kept as they are


def planned_cells(run: dict, path: Path) -> list[Cell]:
    plan = run.get("plan")
    if not isinstance(plan, list):
        raise BadInput(f"--resume: {path} has no list of planned cells (written by an older threadbench); "
                       "run the sweep again instead")
    try:
        return [Cell.from_dict(c) for c in plan]
    except (TypeError, ValueError, AttributeError) as e:
        raise BadInput(f"--resume: {path}: the planned cells are not readable ({e})") from None


def cells_to_rerun(run: dict, path: Path = Path("results file")) -> list[Cell]:
    """Planned cell processes with no kept result, in plan (interleaved) order."""
    kept = {results.process_key(r) for r in run["rows"] if r["status"] in KEEP}
    superseded = results.superseded_keys(run)
    return [c for c in planned_cells(run, path)
            if (*c.key(), c.repeat) not in kept and c.key() not in superseded]


def resume_sweep(file: Path, out: Path | None, limits: Limits, quiet: bool, argv: list[str],
                 json_out: bool = False, cache: Path | None = None) -> int:
    try:
        run = results.load(file)
    except results.ResultsError as e:
        raise BadInput(f"--resume: {e}") from None
    todo = cells_to_rerun(run, file)
    here, there = host_environment().get("host"), run["host"].get("host")
    if here != there:
        raise BadInput(f"--resume: {file} was measured on {there!r}, this is {here!r}; "
                       "resuming here would mix two machines in one run")
    path = Path(out) if out else Path(file)
    writable_out(path)
    results.drop_processes(run, {(*c.key(), c.repeat) for c in todo})  # failed rows are replaced by the new attempt
    run.setdefault("resumed", []).append(
        {"command": argv, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cells": len(todo),
         "threadbench_revision": host_environment().get("threadbench_revision")})  # the code of the new cells
    what = "cell processes" if any(c.get("repeat") for c in run["plan"]) else "cells"  # with --repeats
    Console(stderr=True).print(f"resuming {file}: {len(todo)} of {len(run['plan'])} planned {what} to run",
                               highlight=False, soft_wrap=True)
    return execute(run, path, todo, limits, quiet, json_out, cache=cache)
