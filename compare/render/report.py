"""`report`: re-render saved runs. Several runs merge into one set of tables, each run's machine a column
group; the summary (one row per cell) can also be written as CSV or JSON for other tools.

polars, rich and the stats are imported inside the functions that need them (the CLI stays light)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Iterable

from .. import results as R
from ..options import BadInput

FORMATS = ("table", "markdown", "csv", "json")
SUMMARY_SCHEMA = "threadbench.summary/1"

# Column order of the CSV/JSON summary: the cell's identity first, then what was measured.
FIRST_COLUMNS = ("run_id", "machine", "backend", "device", "dtype", "fp32_precision", "workload", "size", "mode",
                 "threads", "k", "status", "ops_per_s", "ci_low", "ci_high", "ci_level", "n_trials", "iqr_rel",
                 "unstable", "speedup", "pct_ceiling", "pct_peak")


def check_format(fmt: str, valid: Iterable[str] = FORMATS) -> str:
    valid = tuple(valid)
    if fmt not in valid:
        raise BadInput(f"--format: unknown format {fmt!r}; valid: {', '.join(valid)}")
    return fmt


# -- loading and merging ----------------------------------------------------------------------------
def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a folder stands for the *.json files in it (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.glob("*.json") if q.is_file())
            if not found:
                raise R.ResultsError(f"{p}: folder has no results files (*.json)")
            out += found
        else:
            out.append(p)
    if not out:
        raise R.ResultsError("give at least one results file")
    return out


def load_runs(paths: Iterable[Path]) -> list[dict]:
    """Each file checked against the schema; the same run given twice counts once."""
    runs, seen = [], set()
    for path in expand(paths):
        run = R.load(path)
        if run["run_id"] in seen:
            continue
        seen.add(run["run_id"])
        run["_path"] = str(path)
        runs.append(run)
    return runs


def cell_keys(run: dict) -> set[tuple]:
    return {R.row_key(r) for r in run["rows"]}


def host_of(run: dict) -> str:
    return str(run["host"].get("host") or "host")


def group_runs(runs: list[dict], key=host_of) -> list[list[dict]]:
    """Runs of one machine whose cells do not overlap (one file per backend, say) form one group and are
    shown as one machine; a run that repeats cells of another stays apart, so trials are never pooled."""
    groups: list[list[dict]] = []
    for run in runs:
        mine = cell_keys(run)
        for g in groups:
            if key(g[0]) == key(run) and not any(mine & cell_keys(other) for other in g):
                g.append(run)
                break
        else:
            groups.append([run])
    return groups


def machine_labels(runs: list[dict], groups: list[list[dict]] | None = None) -> dict[str, str]:
    """run_id -> the machine name its rows get in merged tables: the host name, shared by the runs of one
    group, made unique with the date (then the run id) when several groups come from one host."""
    groups = group_runs(runs) if groups is None else groups
    base = [host_of(g[0]) for g in groups]
    dated = [f"{b} {g[0]['created'][:16].replace('T', ' ')}" for b, g in zip(base, groups)]
    labels = {}
    for i, g in enumerate(groups):
        label = base[i]
        if base.count(base[i]) > 1:
            label = dated[i] if dated.count(dated[i]) == 1 else f"{base[i]} {g[0]['run_id']}"
        for run in g:
            labels[run["run_id"]] = label
    return labels


def merge(runs: list[dict], labels: dict[str, str] | None = None) -> list[dict]:
    """All rows of all runs, each row's machine set to its run's label."""
    labels = machine_labels(runs) if labels is None else labels
    return [{**row, "machine": labels[run["run_id"]]} for run in runs for row in run["rows"]]


def summarize(runs: list[dict]):
    from .. import stats
    return stats.summarize(merge(runs))


# -- formats ----------------------------------------------------------------------------------------
def _ordered(summary):
    first = [c for c in FIRST_COLUMNS if c in summary.columns]
    return summary.select(first + [c for c in summary.columns if c not in first])


def to_csv(summary) -> str:
    return _ordered(summary).write_csv(float_precision=None)


def summary_records(summary) -> list[dict]:
    import math
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
            for rec in _ordered(summary).to_dicts()]


def to_json(runs: list[dict], summary) -> str:
    labels = machine_labels(runs)
    doc = {
        "schema": SUMMARY_SCHEMA,
        "runs": [{"run_id": r["run_id"], "machine": labels[r["run_id"]], "created": r["created"],
                  "file": r.get("_path"), "command": command_line(r), "host": r["host"],
                  "backend_env": r["backend_env"]} for r in runs],
        "cells": summary_records(summary),
    }
    return json.dumps(doc, indent=1, allow_nan=False, default=str) + "\n"


def command_line(run: dict) -> str:
    return shlex.join(str(a) for a in run["command"])


def environment_lines(run: dict) -> list[str]:
    """The environment as plain lines (markdown-safe): host, then each backend/device with its warnings."""
    h = run["host"]
    gil = "on" if h.get("gil_enabled", True) else "off"
    lines = [f"{h.get('os')}, {h.get('cpu')} ({h.get('cpu_count')} CPUs, {h.get('memory_gb')} GB RAM), "
             f"Python {h.get('python')} (GIL {gil})"]
    if h.get("env_vars"):
        lines.append("environment variables: " + ", ".join(f"{k}={v}" for k, v in sorted(h["env_vars"].items())))
    for key, env in run["backend_env"].items():
        line = (f"{key}: {env.get('framework')} {env.get('version')} on {env.get('device_name')}; "
                f"math: {env.get('math_library')}; intra-op threads: {env.get('intra_op_threads')}")
        if env.get("fp32_precision"):
            line += f"; fp32 matmul: {env['fp32_precision']}"
        lines.append(line)
    from . import hostinfo
    return lines + hostinfo.lines(run)  # calibration, load, launch rate, what limited the GPU cells


def warning_lines(run: dict) -> list[tuple[str, str]]:
    """(backend/device, warning) for every warning a backend raised about its own figures."""
    from .hostinfo import busy_warnings
    return ([(key, w) for key, env in run["backend_env"].items() for w in env.get("warnings", [])]
            + [("host", w) for w in busy_warnings(run)])


def to_markdown(runs: list[dict], summary, heading: str = "##") -> str:
    from . import tables
    labels = machine_labels(runs)
    parts = [tables.to_markdown(t) for t in tables.build(summary)]
    if not parts:
        parts = ["_No measured cells._\n"]
    for run in runs:
        parts.append(run_environment_markdown(run, labels[run["run_id"]], heading))
    return "\n".join(parts)


def run_environment_markdown(run: dict, label: str, heading: str = "##") -> str:
    out = [f"{heading} Environment: {label} (run {run['run_id']}, {run['created']})", ""]
    out += [f"- {line}" for line in environment_lines(run)]
    out += [f"- **warning** ({key}): {w}" for key, w in warning_lines(run)]
    out += ["", "Command:", "", "```", command_line(run), "```", ""]
    return "\n".join(out)


def print_tables(runs: list[dict], summary, console) -> None:
    """The rich side-by-side tables, their notes, and each run's environment."""
    from rich.markup import escape

    from . import tables
    labels = machine_labels(runs)
    built = tables.build(summary)
    if not built:
        console.print("no measured cells", style="yellow")
    for t in built:
        console.print(tables.to_rich(t))
        for note in t.notes:
            console.print(f"  • {note}", highlight=False, soft_wrap=True)
    for run in runs:
        console.print(f"[bold]Environment[/bold] of {escape(labels[run['run_id']])} (run {run['run_id']}):",
                      highlight=False)
        for line in environment_lines(run):
            console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
        for key, w in warning_lines(run):
            console.print(f"  [yellow]warning[/yellow] ({escape(key)}): {escape(w)}", highlight=False, soft_wrap=True)
        console.print(f"  command: {command_line(run)}", highlight=False, soft_wrap=True, markup=False)


def render(runs: list[dict], fmt: str) -> str | None:
    """Text of a csv/json/markdown report; None for 'table' (printed with rich by the caller)."""
    check_format(fmt)
    summary = summarize(runs)
    if fmt == "csv":
        return to_csv(summary)
    if fmt == "json":
        return to_json(runs, summary)
    if fmt == "markdown":
        return to_markdown(runs, summary)
    return None


def report(paths: Iterable[Path], fmt: str = "table", out: Path | None = None) -> None:
    """The `report` command: render the runs to stdout (or to `out`, atomically)."""
    check_format(fmt)
    runs = load_runs(paths)
    if fmt == "table":
        from rich.console import Console
        if out:
            with atomic_text(out) as f:
                print_tables(runs, summarize(runs), Console(file=f, width=220, force_terminal=False))
        else:
            from ..session import wide_console
            print_tables(runs, summarize(runs), wide_console())
        return
    text = render(runs, fmt)
    if out:
        write_text(out, text)
    else:
        import sys
        sys.stdout.write(text)


# -- writing ----------------------------------------------------------------------------------------
def write_text(path: Path, text: str) -> Path:
    with atomic_text(path) as f:
        f.write(text)
    return Path(path)


class atomic_text:
    """Write a text file via a temporary file in the same folder, renamed over the target at the end."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self):
        import os
        import tempfile
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadInput(f"{self.path}: cannot create folder {folder}: {e.strerror}") from None
        if self.path.is_dir():
            raise BadInput(f"{self.path}: is a folder; give a file name")
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        except OSError as e:
            raise BadInput(f"{self.path}: cannot write in {folder}: {e.strerror}") from None
        self.file = os.fdopen(fd, "w", encoding="utf-8")
        return self.file

    def __exit__(self, kind, value, tb):
        import os
        self.file.close()
        if kind is not None:
            Path(self.tmp).unlink(missing_ok=True)
            return False
        os.chmod(self.tmp, 0o666 & ~R._umask())
        os.replace(self.tmp, self.path)
        return False
