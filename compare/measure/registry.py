"""How each mode measures a cell: the table from a mode's name to its function, as compare.cells.MODES is the
table of what each mode is. Adding a mode = one entry there and one here. A function takes the Cell and its
CellContext and returns (or yields, as the server modes do) the timed trials; verification is tallied in
the context's Checks. Not here: the modes' own code."""
from __future__ import annotations

from typing import Callable, Iterable

from ..cells import Cell, Trial
from .batcher import run_batched
from .build import CellContext
from .harness import Harness
from .processes import run_processes, run_replicas
from .server import measure_server_cell
from .threads import run_sequential, run_threads

Measure = Callable[[Cell, CellContext], Iterable[Trial]]


def _window_settings(cell: Cell) -> dict:
    return dict(duration=cell.duration, trials=cell.trials, warmup=cell.warmup, verify_ops=cell.verify_ops,
                cap=cell.window_cap)


def _sequential(cell: Cell, ctx: CellContext) -> list[Trial]:
    """sequential, and offline: one thread (the main one) or, offline xN, N threads each running k-request
    forwards; either way counted in requests."""
    if cell.threads > 1:
        return run_threads(ctx.build_harness(), cell.threads, weight=cell.requests_per_forward,
                           **_window_settings(cell))
    return run_sequential(ctx.build_harness(), weight=cell.requests_per_forward, **_window_settings(cell))


def _threads(cell: Cell, ctx: CellContext) -> list[Trial]:
    return run_threads(ctx.build_harness(), cell.threads, use_streams=cell.mode == "streams",
                       **_window_settings(cell))


def _batched(cell: Cell, ctx: CellContext) -> list[Trial]:
    return run_batched(ctx.build_harness(), cell.threads, max_batch=cell.max_batch or cell.threads,
                       max_wait_ms=cell.max_wait_ms, **_window_settings(cell))


MEASURES: dict[str, Measure] = {
    "sequential": _sequential,
    "threads": _threads,
    "streams": _threads,
    "batched": _batched,
    "offline": _sequential,
    "processes": run_processes,
    "replicas": run_replicas,
    "server-threads": measure_server_cell,
    "server-batched": measure_server_cell,
    "server-processes": measure_server_cell,
    "server-replicas": measure_server_cell,
}


def run_mode(h: Harness, cell: Cell) -> list[Trial]:
    """Run the cell's mode on a Harness already built (a mode that runs in this process): the timed trials;
    TooSlow may escape. What tests and benchmarks/harness.py time the modes through."""
    return list(MEASURES[cell.mode](cell, CellContext(build_harness=lambda: h, checks=h.checks, measured=h.measured)))
