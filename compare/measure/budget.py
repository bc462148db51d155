"""`compare --budget MINUTES`: fit a sweep to a time budget, from what its cells cost. Arithmetic on plans and
saved results: it measures and starts nothing.

Costs come from an earlier results file (`--costs FILE`): a cell's cost is the median wall time of its cell
processes there (each row keeps its cell process's wall_s), a worker process's start-up the median of the
file's worker records (startup_s); a cell the file lacks costs the median of those it has. With them the
sweep keeps every --repeats round and leaves out whole cells, costliest first, until its estimate fits: a
cell is measured in all its processes or not at all, so every interval keeps its level. Without them the
first round is the measurement: it runs whole, and the later rounds that fit in what is left run (a cell
then has fewer processes, and its interval the lower level that count gives: the closing line says it)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from ..cells import Cell
from ..results import row_key
from .plan import WorkerPlan

END_PROBE_S = 5.0   # the host probe at a sweep's end (a matmul and a launch probe): kept out of the budget's reach


@dataclass(frozen=True)
class Costs:
    cells: dict[tuple, float]   # Cell.key() -> seconds per cell process
    startup_s: float            # per worker process

    def of(self, cell: Cell) -> float:
        known = self.cells.get(cell.key())
        return known if known is not None else (statistics.median(self.cells.values()) if self.cells else 1.0)

    def estimate(self, plans: list[WorkerPlan]) -> float:
        return sum(self.startup_s + sum(self.of(c) for c in p.cells) for p in plans)


def costs_from(run: dict) -> Costs:
    """The per-cell and per-worker costs a results file measured."""
    per_process: dict[tuple, dict[int, float]] = {}
    for r in run["rows"]:
        if r.get("wall_s") is not None:
            per_process.setdefault(row_key(r), {})[r.get("repeat") or 0] = float(r["wall_s"])
    cells = {key: statistics.median(walls.values()) for key, walls in per_process.items()}
    starts = [p["startup_s"] for p in run.get("processes", []) if p.get("startup_s") is not None]
    return Costs(cells, statistics.median(starts) if starts else 0.0)


def fit(plans: list[WorkerPlan], costs: Costs, budget_s: float) -> tuple[list[WorkerPlan], list[Cell], float]:
    """(the plans with the cells left out removed, those cells (one per cell, repeat 0), the estimate in s):
    the costliest cells go first, every process of each, until the estimate is within budget_s."""
    cells = {c.key(): replace(c, repeat=0) for p in plans for c in p.cells}
    totals = {k: sum(costs.of(c) for p in plans for c in p.cells if c.key() == k) for k in cells}
    out: set[tuple] = set()
    kept = plans
    for key in sorted(cells, key=lambda k: -totals[k]):
        if costs.estimate(kept) + END_PROBE_S <= budget_s:
            break
        out.add(key)
        kept = [replace(p, cells=tuple(c for c in p.cells if c.key() not in out)) for p in plans]
        kept = [p for p in kept if p.cells]
    return kept, [cells[k] for k in cells if k in out], costs.estimate(kept) + END_PROBE_S


def rounds_that_fit(first_round_s: float, left_s: float, later: int) -> int:
    """How many of `later` rounds fit in left_s when a round costs what the first did."""
    if first_round_s <= 0:
        return later
    return max(0, min(later, int((left_s - END_PROBE_S) // first_round_s)))


def trim(extra: list[Cell], costs: Costs, left_s: float, workers: int) -> list[Cell]:
    """--target-ci's added cell processes that fit in left_s (`workers` worker processes start for them), in
    their order; the rest are not run (the stopping rule's level holds whatever stops a cell)."""
    spent, kept = workers * costs.startup_s + END_PROBE_S, []
    for c in extra:
        spent += costs.of(c)
        if spent > left_s:
            break
        kept.append(c)
    return kept
