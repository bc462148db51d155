"""A compare run from start to finish: plan, run every cell (saving after each), print the tables."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from . import results as R
from .cells import FAILED, UNAVAILABLE, CellResult
from .env import host_environment
from .options import BadInput
from .plan import Settings, plan
from .runner import Limits, sweep

EXIT_OK, EXIT_CELLS_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def _check_writable(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"--out: cannot create folder {folder}: {e.strerror}") from None
    if path.is_dir():
        raise BadInput(f"--out: {path} is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise BadInput(f"--out: folder {folder} is not writable")


def run_sweep(settings: Settings, out: Path | None, quiet: bool, argv: list[str]) -> int:
    console = Console(stderr=True)
    cells, unavailable = plan(settings)
    run = R.new_run(argv, host_environment(), {k: v for k, v in asdict(settings).items() if k != "template"}
                    | {"cell": settings.template.to_dict() if settings.template else None})
    path = Path(out) if out else R.default_path(run)
    _check_writable(path)
    for cell, why in unavailable:
        R.add_result(run, CellResult(cell=cell, status=UNAVAILABLE, cause=why))
    R.save(run, path)

    started = time.monotonic()
    progress = _progress(console, quiet or not console.is_terminal)
    interrupted = False
    with progress:
        task = progress.add_task("cells", total=len(cells))
        try:
            for result in sweep(cells, Limits(),
                                on_start=lambda c: progress.update(task, description=c.label())):
                R.add_result(run, result)
                R.save(run, path)  # after every cell: an interrupt or crash loses nothing finished
                progress.advance(task)
                if quiet is False and not console.is_terminal:
                    console.print(f"  {result.cell.label()}: {result.status} {result.cause[:100]}", highlight=False)
        except KeyboardInterrupt:
            interrupted = True
    wall = time.monotonic() - started
    print_run(run, wide_console())
    n_cells = len(run["cells"])
    console.print(f"{n_cells} cells in {wall:.0f} s; results: {path}", highlight=False)
    if interrupted:
        console.print(f"interrupted: the {n_cells} finished cells are kept in {path}", style="yellow")
        return EXIT_INTERRUPTED
    failed = {tuple(R.row_key(r)) for r in run["rows"] if r["status"] in FAILED}
    return EXIT_CELLS_FAILED if failed else EXIT_OK


def wide_console() -> Console:
    """Tables are wide; when stdout is a file or pipe, do not squeeze them into 80 columns."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=220)


def _progress(console: Console, disabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, disable=disabled, transient=True)


def print_run(run: dict, console: Console) -> None:
    from . import stats, tables
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
