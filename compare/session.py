"""A compare run from start to finish: plan, run every cell (saving after each), print the tables."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from . import exits
from . import results as R
from .cells import FAILED, UNAVAILABLE, Cell, CellResult
from .measure.env import host_environment
from .measure.lock import locked
from .options import writable_out
from .measure.plan import Settings, plan
from .measure.runner import Limits, sweep



def run_sweep(settings: Settings, out: Path | None, quiet: bool, argv: list[str],
              limits: Limits | None = None, json_out: bool = False) -> int:
    run = R.new_run(argv, host_environment(), {k: v for k, v in asdict(settings).items() if k != "template"}
                    | {"cell": settings.template.to_dict() if settings.template else None})
    path = Path(out) if out else R.default_path(run)
    writable_out(path)
    cells, unavailable = plan(settings)
    run["plan"] = [c.to_dict() for c in cells]  # what was asked, so --resume knows what is missing
    for cell, why in unavailable:
        R.add_result(run, CellResult(cell=cell, status=UNAVAILABLE, cause=why))
    return execute(run, path, cells, limits or Limits(), quiet, json_out)


def execute(run: dict, path: Path, cells: list, limits: Limits, quiet: bool, json_out: bool = False) -> int:
    """Run the cell processes `cells` (a cell's --repeats processes interleaved over the sweep) into `run`,
    saving `path` after each process; used by a new sweep and by --resume."""
    console = Console(stderr=True)
    started = time.monotonic()
    progress = _progress(console, quiet or not console.is_terminal)
    interrupted = False
    with locked(path), progress:
        R.save(run, path)
        task = progress.add_task("cell processes", total=len(cells))
        try:
            for result in sweep(cells, limits,
                                on_start=lambda c: progress.update(task, description=process_label(c))):
                R.add_result(run, result)
                R.save(run, path)  # after every cell: an interrupt or crash loses nothing finished
                progress.advance(task)
                if quiet is False and not console.is_terminal:
                    console.print(f"  {process_label(result.cell)}: {result.status} {result.cause[:100]}",
                                  highlight=False)
        except KeyboardInterrupt:
            interrupted = True
    wall = time.monotonic() - started
    if json_out:  # --json: the run document on stdout for scripts; no tables, progress and log on stderr
        sys.stdout.write(R.dumps(run) + "\n")
        sys.stdout.flush()
    else:
        print_run(run, wide_console())
    n_cells = len({Cell.from_dict(c).key() for c in run["cells"]})
    processes = f" ({len(run['cells'])} processes)" if len(run["cells"]) != n_cells else ""
    console.print(f"{n_cells} cells{processes} in {wall:.0f} s; results: {path}", highlight=False)
    if interrupted:
        console.print(f"interrupted: the {n_cells} finished cells{processes} are kept in {path}; "
                      f"`--resume {path}` runs the rest", style="yellow", highlight=False,
                      soft_wrap=True)
        return exits.INTERRUPTED
    return exits.CELLS_FAILED if any(r["status"] in FAILED for r in run["rows"]) else exits.OK


def process_label(cell) -> str:
    """A cell's label, plus which of its processes this is when it has several (--repeats)."""
    return cell.label() + (f" (process {cell.repeat + 1})" if cell.repeat else "")


def wide_console() -> Console:
    """Tables are wide; when stdout is a file or pipe, do not squeeze them into 80 columns."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=220)


def _progress(console: Console, disabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, disable=disabled, transient=True)


def print_run(run: dict, console: Console) -> None:
    try:
        from . import stats
        from .render import tables
    except ImportError as e:  # e.g. polars missing on a borrowed machine: the results file is complete
        console.print(f"tables not rendered ({e}); render them later with `report`", highlight=False)
        return
    summary = stats.summarize(run["rows"])
    for t in tables.build(summary):
        console.print(tables.to_rich(t))
        for note in t.notes:
            console.print(f"  • {note}", highlight=False, soft_wrap=True)
    print_environment(run, console)


def print_environment(run: dict, console: Console) -> None:
    host = run["host"]
    console.print(f"[bold]Environment[/bold]: {host['os']}, {host['cpu']} ({host['cpu_count']} CPUs), "
                  f"Python {host['python']} (GIL {'on' if host['gil_enabled'] else 'off'})", highlight=False)
    for key, env in run["backend_env"].items():
        console.print(f"  {key}: {env.get('framework')} {env.get('version')} on {env.get('device_name')}; "
                      f"math: {env.get('math_library')}; intra-op threads: {env.get('intra_op_threads')}"
                      + (f"; fp32 matmul: {env['fp32_precision']}" if env.get("fp32_precision") else ""),
                      highlight=False)
        for w in env.get("warnings", []):
            console.print(f"  [yellow]warning[/yellow] ({key}): {w}", highlight=False)
