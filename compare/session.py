"""A compare run from start to finish: plan, run every cell (saving after each), print the tables. The one
place that joins compare.measure (what runs) and compare.render (what is printed); it measures and renders
nothing itself."""
from __future__ import annotations

import os
import sys
from collections import Counter
import time
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import exits
from . import results
from . import shards as sharding
from . import stopping
from .cells import FAILED, OK, UNAVAILABLE, Cell, CellResult, status_label
from .measure import budget as budgeting
from .measure import host
from .measure.env import host_environment
from .measure.lock import locked
from .measure.plan import Settings, WorkerPlan, plan, shard_of, worker_plans
from .measure.runner import Limits, Sweep
from .options import BadInput, writable_out
from .render.format import cause_line
from .render import report
from .stats import median_ci, process_medians, stopping_rule


def run_sweep(settings: Settings, out: Path | None, quiet: bool, argv: list[str],
              limits: Limits | None = None, json_out: bool = False, machine: str | None = None,
              overwrite: bool = False, shard: tuple[int, int] | None = None, budget_min: float | None = None,
              costs: Path | None = None, cache: Path | None = None) -> int:
    """`cache`: the folder of float64 references (compare --cache-dir); None: a temporary one."""
    run = results.new_run(argv, host_environment(), {k: v for k, v in asdict(settings).items() if k != "template"}
                    | {"cell": settings.template.to_dict() if settings.template else None})
    if machine:
        run["machine"] = machine   # the name tables and publish show (default: from the hardware measured)
    path = Path(out) if out else results.default_path(run)
    writable_out(path)
    if out is not None and path.is_file() and not overwrite:
        raise BadInput(f"--out: {path} exists; give another name, add --overwrite to replace it, "
                       f"or --resume {path} to complete it")
    cells, unavailable = plan(settings)
    plans = None
    if shard is not None:
        cells, plans = cut(run, cells, shard, bool(settings.process_per_cell))
    later: list[WorkerPlan] = []
    if budget_min is not None:
        plans = plans or worker_plans(cells, run["run_id"], alone=bool(settings.process_per_cell))
        cells, plans, later = fit_budget(run, cells, plans, budget_min, costs)
    run["plan"] = [c.to_dict() for c in cells]  # what was asked, so --resume knows what is missing
    for cell, why in unavailable:
        results.add_result(run, CellResult(cell=cell, status=UNAVAILABLE, cause=why))
    return execute(run, path, cells, limits or Limits(), quiet, json_out, plans=plans, later=later, cache=cache)


def fit_budget(run: dict, cells: list[Cell], plans: list[WorkerPlan], minutes: float, costs: Path | None):
    """--budget: (the cell processes and worker plans to start with, the later rounds to decide on after the
    first), said on stderr before anything runs and kept in run["budget"] (compare.measure.budget)."""
    console = Console(stderr=True)
    seconds = 60 * minutes
    run["budget"] = {"minutes": minutes, "costs": str(costs) if costs else None}
    if costs is not None:
        try:
            known = budgeting.costs_from(results.load(costs))
        except results.ResultsError as e:
            raise BadInput(f"--costs: {e}") from None
        kept, out, estimate = budgeting.fit(plans, known, seconds)
        gone = {c.key() for c in out}
        cells = [c for c in cells if c.key() not in gone]
        run["budget"] |= {"estimate_s": round(estimate, 1), "left_out": [c.label() for c in out]}
        console.print(f"budget: {minutes:g} min; from the costs in {costs}, {len({c.key() for c in cells})} cells in "
                      f"{len(kept)} worker processes take about {estimate / 60:.1f} min"
                      + (f"; left out, costliest first: {', '.join(c.label() for c in out)}" if out else
                         "; everything fits"), highlight=False, soft_wrap=True)
        return cells, kept, []
    first = min((p.round for p in plans), default=0)
    now = [p for p in plans if p.round == first]
    if len(now) == len(plans):
        console.print(f"budget: {minutes:g} min; one round: it runs whole (no costs to cut by: --costs FILE gives "
                      "them)", highlight=False, soft_wrap=True)
        return cells, plans, []
    console.print(f"budget: {minutes:g} min; the first round ({len(now)} worker processes) measures what a round "
                  f"costs, then the later rounds that fit in what is left run (--costs FILE plans it before "
                  "anything runs)", highlight=False, soft_wrap=True)
    chosen = {(c.key(), c.repeat) for p in now for c in p.cells}
    return [c for c in cells if (c.key(), c.repeat) in chosen], now, [p for p in plans if p.round != first]


def cut(run: dict, cells: list[Cell], shard: tuple[int, int], alone: bool) -> tuple[list[Cell], list[WorkerPlan]]:
    """Shard `shard` = (i, n) of the sweep planned as `cells`: its cell processes (in plan order) and worker
    processes, cut from the whole sweep's worker plans (compare.measure.plan.shard_of), whose shuffles are
    seeded by the sweep's id so that every shard, and a re-run of one, has the order the whole sweep gives
    it. Records the sweep in run["sweep"] (compare.shards.record)."""
    i, n = shard
    revision = run["host"].get("threadbench_revision")
    sid = sharding.sweep_id([c.to_dict() for c in cells], (revision or "").split(" (stated")[0] or None)
    plans = worker_plans(cells, sid, alone=alone)
    owner = shard_of(plans, n)
    run["sweep"] = sharding.record(sid, i, n, revision,
                                   [(p.round, o + 1, [c.to_dict() for c in p.cells]) for p, o in zip(plans, owner)])
    mine = [p for p, o in zip(plans, owner) if o == i - 1]
    chosen = {(c.key(), c.repeat) for p in mine for c in p.cells}
    return [c for c in cells if (c.key(), c.repeat) in chosen], mine


def execute(run: dict, path: Path, cells: list, limits: Limits, quiet: bool, json_out: bool = False,
            plans: list[WorkerPlan] | None = None, later: list[WorkerPlan] = (), cache: Path | None = None) -> int:
    """Run the cell processes `cells` (a cell's --repeats processes, round by round) into `run`, in worker
    processes that each measure a process group's share of a round (compare.measure.plan.worker_plans),
    saving `path` after each cell and when a worker starts or ends; used by a new sweep and by --resume.
    The file records every worker process (run["processes"]) and where the time went (run["time_split"]).
    `plans`: the worker processes already cut (a shard's), instead of cutting `cells` here; `later`: --budget's
    later rounds, of which those that fit in what the first round leaves run (compare.measure.budget);
    `cache`: the folder of float64 references every worker shares (None: a temporary one for this run)."""
    console = Console(stderr=True)
    started = time.monotonic()
    progress = _progress(console, quiet or not console.is_terminal)
    interrupted = False
    earlier = list(run.get("processes", []))
    seed = run["run_id"] + (f"/resumed-{len(run['resumed'])}" if run.get("resumed") else "")
    if plans is None:
        plans = worker_plans(cells, seed, alone=bool(run["settings"].get("process_per_cell")))
    place = {(Cell.from_dict(c).key(), c.get("repeat") or 0): i for i, c in enumerate(run.get("plan", []))}
    sweep = Sweep(plans, limits, first=len(earlier) + 1, cache=cache)
    rule = stopping_rule(run)

    def save() -> None:
        run["processes"] = earlier + [r.to_dict(lambda c: place.get((c.key(), c.repeat))) for r in sweep.records]
        results.save(run, path)

    with locked(path), progress:
        run.setdefault("host_probe", []).append(host.probe("start"))  # calibration + load (compare.measure.host)
        results.save(run, path)
        task = progress.add_task("cell processes", total=len(cells))
        sweep.on_start = lambda c: progress.update(task, description=process_label(c))
        sweep.on_process = save

        pending = list(later)
        seconds = 60 * run["budget"]["minutes"] if run.get("budget") else None

        def more() -> list[WorkerPlan]:   # --budget's later rounds, then --target-ci's, for the cells too wide
            if pending:
                chosen = rounds_within(run, pending, time.monotonic() - started, seconds, console)
                pending.clear()
                extra_cells = [c for p in chosen for c in p.cells]
                run["plan"] += [c.to_dict() for c in extra_cells]
                place.update({(c.key(), c.repeat): len(run["plan"]) - len(extra_cells) + i
                              for i, c in enumerate(extra_cells)})
                progress.update(task, total=progress.tasks[0].total + len(extra_cells))
                if chosen:
                    return chosen
            if rule is None:
                return []
            extra = adaptive_cells(run, rule, run["settings"]["target_ci"])
            if seconds is not None:   # the rounds that would pass the budget are not run
                extra = budgeting.trim(extra, budgeting.costs_from(run), seconds - (time.monotonic() - started),
                                       len({(c.repeat, c.backend, c.device) for c in extra}))
            run["plan"] += [c.to_dict() for c in extra]
            place.update({(c.key(), c.repeat): len(run["plan"]) - len(extra) + i for i, c in enumerate(extra)})
            progress.update(task, total=progress.tasks[0].total + len(extra))
            return worker_plans(extra, f"{seed}/more-{len(run['plan'])}",
                                alone=bool(run["settings"].get("process_per_cell")))
        sweep.more = more if rule is not None or pending else None
        measured = iter(sweep)
        try:
            for result in measured:
                results.add_result(run, result)
                save()  # after every cell: an interrupt or crash loses nothing finished
                progress.advance(task)
                if quiet is False and not console.is_terminal:   # a log: whole words, one line per cell
                    console.print(f"  {progress_line(result)}", highlight=False, markup=False, soft_wrap=True)
                if result.traceback and os.environ.get("THREADBENCH_DEBUG"):  # cli.py --debug
                    console.print(f"{process_label(result.cell)}: {result.traceback}", highlight=False, markup=False)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            measured.close()  # here, under the lock: the running worker is killed and its record saved
        if not interrupted:  # a second Ctrl-C must not land inside the probe
            run["host_probe"].append(host.probe("end"))
        wall = time.monotonic() - started
        split = sweep.split.shares(wall) | {"processes": len(sweep.records), "interrupted": interrupted}
        run.setdefault("time_split", []).append(split)
        save()
    if json_out:  # --json: the run document on stdout for scripts; no tables, progress and log on stderr
        sys.stdout.write(results.dumps(run) + "\n")
        sys.stdout.flush()
    else:
        print_run(run, report.wide_console())
    n_cells = len({Cell.from_dict(c).key() for c in run["cells"]})
    processes = f" ({len(run['cells'])} cell processes)" if len(run["cells"]) != n_cells else ""
    console.print(interval_line(run), highlight=False, soft_wrap=True)
    console.print(time_line(split), highlight=False, soft_wrap=True)
    console.print(f"{n_cells} cells{processes} in {wall:.0f} s; results: {path}", highlight=False)
    if run.get("budget"):
        run["budget"]["used_s"] = round(wall, 1)
        results.save(run, path)
        console.print(f"budget: used {wall / 60:.1f} of {run['budget']['minutes']:g} min", highlight=False)
    if run.get("sweep"):
        s = run["sweep"]
        console.print(f"shard {s['shard']}/{s['shards']} of sweep {s['id']}: report, diff, plot and publish merge "
                      "it with the other shards' files", highlight=False, soft_wrap=True)
    if interrupted:
        console.print(f"interrupted: the {n_cells} finished cells{processes} are kept in {path}; "
                      f"`--resume {path}` runs the rest", style="yellow", highlight=False,
                      soft_wrap=True)
        return exits.INTERRUPTED
    return exits.CELLS_FAILED if any(r["status"] in FAILED for r in run["rows"]) else exits.OK


def rounds_within(run: dict, later: list[WorkerPlan], spent: float, seconds: float, console: Console) -> list[WorkerPlan]:
    """--budget without costs: the later rounds that fit in what the first round (which took `spent`) left,
    said on stderr and kept in run["budget"]."""
    rounds = sorted({p.round for p in later})
    k = budgeting.rounds_that_fit(spent, seconds - spent, len(rounds))
    out = rounds[k:]
    run["budget"] |= {"first_round_s": round(spent, 1), "rounds_left_out": len(out)}
    console.print(f"budget: the first round took {spent:.0f} s; {k} of the {len(rounds)} later rounds fit in the "
                  f"{(seconds - spent) / 60:.1f} min left" + (f", so each cell gets {1 + k} process{'es' if k else ''}, "
                                                             f"not {1 + len(rounds)}" if out else ""),
                  highlight=False, soft_wrap=True)
    return [p for p in later if p.round in rounds[:k]]


def adaptive_cells(run: dict, rule: stopping.Rule, target: float) -> list[Cell]:
    """The cell processes --target-ci adds now (compare.stopping.plan_next): for each planned cell whose
    planned processes all measured ok, as many more as take it to the rule's next look while its interval is
    wider than `target` times its median (and within reach), never past the cap; numbered after its planned
    ones, so worker_plans runs them as further rounds, frameworks taking turns. A failed or skipped cell gets
    none: it has no interval to narrow."""
    planned: dict[tuple, list[dict]] = {}
    for d in run["plan"]:
        planned.setdefault(Cell.from_dict(d).key(), []).append(d)
    rows: dict[tuple, list[dict]] = {}
    for r in run["rows"]:
        rows.setdefault(results.row_key(r), []).append(r)
    out = []
    for key, ds in planned.items():
        mine = rows.get(key, [])
        medians = process_medians(mine)
        if not mine or any(r["status"] != OK for r in mine) or len(medians) < len(ds):
            continue
        need = stopping.plan_next(list(medians.values()), target, rule.first, rule.cap, rule.asked)
        cell = Cell.from_dict(ds[0])
        out += [replace(cell, repeat=len(ds) + i) for i in range(need)]
    return sorted(out, key=lambda c: c.repeat)


def interval_line(run: dict) -> str:
    """What this run's intervals span, in words: over fresh processes (at the level their count gives) or
    over one process's windows only."""
    repeats = max([(c.get("repeat") or 0) + 1 for c in run.get("plan", [])], default=1)
    if (rule := stopping_rule(run)) is not None:
        counts = Counter(Cell.from_dict(c).key() for c in run.get("plan", []))
        added = sum(1 for n in counts.values() if n > rule.first)
        return (f"intervals: over fresh processes, {rule.first} per cell and more (up to {rule.cap}) only while its "
                f"interval was wider than {100 * run['settings']['target_ci']:g}% of its median ({added} of "
                f"{len(counts)} cells got more); each at {100 * rule.level:.1f}%, the stopping rule's level, which "
                "holds whatever made a cell stop (compare/stopping.py)")
    if repeats < 2:
        return ("intervals: over one process's windows only (ci_scope windows): not what a re-run varies by; "
                "--repeats 5 gives intervals over fresh processes")
    level = median_ci(list(range(repeats)))[2]
    return (f"intervals: the median over {repeats} fresh processes per cell and its distribution-free interval "
            f"at {100 * level:.1f}% (ci_scope processes), the processes spread over the sweep in {repeats} rounds")


def time_line(split: dict) -> str:
    """Where the sweep's wall time went (compare.measure.runner.TimeSplit), as one line."""
    share = lambda key: f"{100 * (split[f'{key}_share'] or 0):.0f}%"  # noqa: E731
    detail = split["start_up_detail_s"]
    return (f"time: {split['wall_s']:.0f} s in {split['processes']} worker processes: measuring {share('measuring')}, "
            f"warming up {share('warming_up')}, start-up {share('start_up')} (process start "
            f"{detail['process_start']:.0f} s, builds {detail['builds']:.0f} s, references "
            f"{detail['references']:.0f} s), other {share('other')} (speed checks, output checks, saving, probes)")


def process_label(cell) -> str:
    """A cell's label, plus which of its processes this is when it has several (--repeats)."""
    return cell.label() + (f" (process {cell.repeat + 1})" if cell.repeat else "")


def progress_line(result: CellResult) -> str:
    """One log line per finished cell, its cause cut between words."""
    cause = cause_line(result.cause, 120)
    return f"{process_label(result.cell)}: {status_label(result.status)}" + (f" — {cause}" if cause else "")


def _progress(console: Console, disabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, disable=disabled, transient=True)


def print_run(run: dict, console: Console) -> None:
    """The tables, legend, environment and findings of this run: the same function `report` prints with."""
    report.print_report([run], report.summarize([run]), console)
