"""`report`: re-render saved runs. Several runs merge into one set of tables, each run's machine a column
group; the summary (one row per cell) can also be written as CSV or JSON for other tools. print_report is
the one terminal rendering, shared with `compare`. It lays out what tables, findings, server and hostinfo
give it and decides nothing about the figures."""
from __future__ import annotations

import io
import json
import math
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Iterable

import polars as pl
from rich.console import Console
from rich.markup import escape

from .. import results, shards, stats
from ..files import Unwritable, atomic_write
from ..options import BadInput
from . import findings, hostinfo, outputs, tables
from . import server as server_tables
from .format import hardware_name, intra_op, wrap

SUMMARY_SCHEMA = "threadbench.summary/1"

# Column order of the CSV/JSON summary: the cell's identity first, then what was measured.
FIRST_COLUMNS = ("run_id", "machine", "backend", "device", "dtype", "fp32_precision", "workload", "size", "mode",
                 "threads", "k", "status", "ops_per_s", "ci_low", "ci_high", "ci_level", "n_trials", "iqr_rel",
                 "unstable", "speedup", "pct_ceiling", "pct_peak")


# -- loading and merging ----------------------------------------------------------------------------
def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a folder stands for the *.json files in it (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.glob("*.json") if q.is_file())
            if not found:
                raise results.ResultsError(f"{p}: folder has no results files (*.json)")
            out += found
        else:
            out.append(p)
    if not out:
        raise results.ResultsError("give at least one results file")
    return out


def load_runs(paths: Iterable[Path]) -> list[dict]:
    """Each file checked against the schema; the same run given twice counts once; the shards of one sweep
    merged into one run (compare.shards.merge), each missing shard said on stderr. A `report --format json`
    document is read too: its runs come back carrying their per-cell summary (`_cells`) instead of trials."""
    runs, seen = [], set()
    for path in expand(paths):
        for run in summary_runs(path) or [results.load(path)]:
            if run["run_id"] in seen:
                continue
            seen.add(run["run_id"])
            run["_path"] = str(path)
            runs.append(run)
    runs = shards.merge(runs)
    for run in runs:
        for line in run.get("missing_shards", []):
            sys.stderr.write(f"threadbench: warning: {line}\n")
    return runs


def summary_runs(path: Path) -> list[dict] | None:
    """The runs of a `report --format json` document, or None when the file is something else."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != SUMMARY_SCHEMA:
        return None
    if not isinstance(doc.get("runs"), list) or not isinstance(doc.get("cells"), list):
        raise results.ResultsError(f"{path}: a {SUMMARY_SCHEMA} document needs the lists 'runs' and 'cells'")
    out = []
    for meta in doc["runs"]:
        cells = [c for c in doc["cells"] if c.get("run_id") == meta.get("run_id")]
        out.append({"run_id": meta.get("run_id"), "created": meta.get("created", ""), "command": meta.get("command", ""),
                    "host": meta.get("host") or {}, "backend_env": meta.get("backend_env") or {},
                    "machine": meta.get("machine"), "settings": {}, "rows": [], "_cells": cells})
    return out


def cell_keys(run: dict) -> set[tuple]:
    return {results.row_key(r) for r in run["rows"]}


def host_of(run: dict) -> str:
    return str(run.get("host", {}).get("host") or "host")


def same_machine(run: dict) -> tuple:
    """What makes two runs one machine: the host and the name it is shown by."""
    return host_of(run), machine_name(run)


def machine_name(run: dict) -> str:
    """The name a reader knows the machine by: `compare --machine NAME` when given, else its hardware — the
    GPU measured ("H100 80GB") or the CPU model and core count — never a bare host name such as "vm"."""
    if run.get("machine"):
        return str(run["machine"])
    gpus = [env.get("device_name") for key, env in run.get("backend_env", {}).items()
            if not key.endswith("/cpu") and env.get("device_name")]
    if gpus:
        return hardware_name(gpus[0])
    h = run.get("host", {})
    if h.get("cpu"):
        return hardware_name(str(h["cpu"])) + (f", {h['cpu_count']} cores" if h.get("cpu_count") else "")
    return str(h.get("host") or "host")


def group_runs(runs: list[dict], key=same_machine, cells=cell_keys) -> list[list[dict]]:
    """Runs of one machine whose cells (`cells`) do not overlap (one file per backend, say) form one group and
    are shown as one machine; a run that repeats cells of another stays apart, so trials are never pooled."""
    groups: list[list[dict]] = []
    for run in runs:
        mine = cells(run)
        for g in groups:
            if key(g[0]) == key(run) and not any(mine & cells(other) for other in g):
                g.append(run)
                break
        else:
            groups.append([run])
    return groups


def machine_labels(runs: list[dict], groups: list[list[dict]] | None = None) -> dict[str, str]:
    """run_id -> the machine name its rows get in merged tables: machine_name, shared by the runs of one
    group, made unique with the host name when two hosts share hardware, then with the date (then the run
    id) when several groups come from one host."""
    groups = group_runs(runs) if groups is None else groups
    base = [machine_name(g[0]) for g in groups]
    hosts = {b: {host_of(g[0]) for bb, g in zip(base, groups) if bb == b} for b in base}
    base = [f"{b} ({host_of(g[0])})" if len(hosts[b]) > 1 else b for b, g in zip(base, groups)]
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
    """The per-cell summary of all runs: trials summarised by compare.stats; cells read back from a
    summary document taken as they are (their machine relabelled like every other run's)."""
    labels = machine_labels(runs)
    trials = [r for r in runs if "_cells" not in r]
    frames = [stats.summarize(merge(trials, labels), stats.adaptive_rules(trials))] if trials or not runs else []
    cells = [{**c, "machine": labels[r["run_id"]]} for r in runs if "_cells" in r for c in r["_cells"]]
    if cells:
        frames.append(pl.DataFrame(cells, infer_schema_length=None))
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


# -- formats ----------------------------------------------------------------------------------------
def _ordered(summary):
    first = [c for c in FIRST_COLUMNS if c in summary.columns]
    return summary.select(first + [c for c in summary.columns if c not in first])


def to_csv(summary) -> str:
    return _ordered(summary).write_csv(float_precision=None)


def summary_records(summary) -> list[dict]:
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
    """The command as given, with an option repeated later (a sweep script appending its own --dtype, say)
    shown once, at the value that took effect (the last, as the CLI reads it)."""
    args = run["command"]
    if isinstance(args, str):     # a summary document stores it already joined
        return args
    args = [str(a) for a in args]
    pairs, i = [], 0
    while i < len(args):
        takes_value = args[i].startswith("-") and i + 1 < len(args) and not args[i + 1].startswith("-")
        pairs.append(tuple(args[i:i + 2]) if takes_value else (args[i],))
        i += 2 if takes_value else 1
    last = {p[0]: j for j, p in enumerate(pairs) if p[0].startswith("-")}
    kept = [p for j, p in enumerate(pairs) if not p[0].startswith("-") or last[p[0]] == j]
    return shlex.join(a for p in kept for a in p)


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
                f"math: {env.get('math_library')}; intra-op threads: {intra_op(env.get('intra_op_threads'))}")
        if env.get("fp32_precision"):
            line += f"; fp32 matmul: {env['fp32_precision']}"
        lines.append(line)
    return lines + hostinfo.lines(run)  # calibration, load, launch rate, what limited the GPU cells


def warning_lines(run: dict) -> list[tuple[str, str]]:
    """(backend/device, warning) for every warning a backend raised about its own figures."""
    return ([(key, w) for key, env in run["backend_env"].items() for w in env.get("warnings", [])]
            + [("host", w) for w in hostinfo.busy_warnings(run)])


def to_markdown(runs: list[dict], summary, width: int = 0, color: bool = False, heading: str = "##") -> str:
    """Findings first, then the tables, the legend and each machine's environment."""
    labels = machine_labels(runs)
    machines = list(dict.fromkeys(labels.values()))
    parts = [findings.to_markdown(findings.findings(summary, merge(runs, labels)), heading,
                                  machines[0] if len(machines) == 1 else "")]
    built = tables.build(summary) + server_tables.build(merge(runs, labels))
    parts += [tables.to_markdown(t) for t in built] or ["_No measured cells._\n"]
    if built:
        parts.append("\n".join([f"{heading} Legend", ""] + [f"- {x}" for x in tables.legend(summary, backend_env(runs))]) + "\n")
    for label, group in by_machine(runs, labels).items():
        parts.append(machine_environment_markdown(group, label, heading))
    return "\n".join(p for p in parts if p)


def by_machine(runs: list[dict], labels: dict[str, str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for run in runs:
        out.setdefault(labels[run["run_id"]], []).append(run)
    return out


def backend_env(runs: list[dict]) -> dict:
    out: dict = {}
    for run in runs:
        for key, env in run["backend_env"].items():
            out.setdefault(key, env)
    return out


def machine_environment_markdown(group: list[dict], label: str, heading: str = "##") -> str:
    """One machine's environment, each line once however many runs it took, then each run's command."""
    ids = ", ".join(r["run_id"] for r in group)
    out = [f"{heading} Environment: {label} (run{'s' if len(group) > 1 else ''} {ids})", ""]
    out += [f"- {line}" for line in dict.fromkeys(x for run in group for x in environment_lines(run))]
    out += [f"- **warning** ({key}): {w}" for key, w in dict.fromkeys(x for run in group for x in warning_lines(run))]
    out += ["", "Command" + ("s" if len(group) > 1 else "") + ":", "", "```"]
    out += list(dict.fromkeys(command_line(run) for run in group)) + ["```", ""]
    return "\n".join(out)


def print_report(runs: list[dict], summary, console) -> None:
    """THE terminal rendering of runs, for `compare` and `report` alike: the tables (stacked into blocks
    that fit when a table is wider than the console: an 80-column terminal, several machines), their notes,
    the legend, each machine's environment, and the findings last, where the reader's eye lands."""
    width = console.width
    labels = machine_labels(runs)
    built = tables.build(summary) + server_tables.build(merge(runs, labels))  # server: rate steps, own tables
    if not built:
        console.print("no measured cells", style="yellow")
    for t in built:
        for block in tables.stack(t, width):
            console.print(tables.to_rich(block))
            for note in block.notes:
                for line in wrap(note, width - 2, indent="  • "):
                    console.print(line, highlight=False, markup=False)
    if built:
        console.print("[bold]Legend[/bold]", highlight=False)
        for x in tables.legend(summary, backend_env(runs)):
            for line in wrap(x, width - 2, indent="  "):
                console.print(line, highlight=False, markup=False)
    for label, group in by_machine(runs, labels).items():
        ids = ", ".join(r["run_id"] for r in group)
        console.print(f"[bold]Environment[/bold] of {escape(label)} (run{'s' if len(group) > 1 else ''} {escape(ids)}):",
                      highlight=False)
        for x in dict.fromkeys(x for run in group for x in environment_lines(run)):
            for line in wrap(x, width - 2, indent="  "):
                console.print(line, highlight=False, markup=False)
        for key, w in dict.fromkeys(x for run in group for x in warning_lines(run)):
            for line in wrap(f"warning ({key}): {w}", width - 2, indent="  "):
                console.print(line, highlight=False, markup=False, style="yellow")
        for cmd in dict.fromkeys(command_line(run) for run in group):
            for line in wrap(f"command: {cmd}", width - 2, indent="  "):
                console.print(line, highlight=False, markup=False)
    machines = list(by_machine(runs, labels))
    found = findings.findings(summary, merge(runs, labels))
    for line in findings.to_lines(found, width - 2, machines[0] if len(machines) == 1 else ""):
        console.print(line, highlight=False, markup=False, style="bold" if not line.startswith("    ") else None)


def to_table_text(runs: list[dict], summary, width: int = 100, color: bool = False) -> str:
    """print_report into a string at this width (ANSI styles only when `color`)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="standard" if color else None,
                      highlight=False, emoji=False)
    print_report(runs, summary, console)
    return buf.getvalue()


def _csv(runs, summary, width: int = 0, color: bool = False) -> str:
    return to_csv(summary)


def _json(runs, summary, width: int = 0, color: bool = False) -> str:
    return to_json(runs, summary)


# report's function for each of its formats (outputs.names("report")): (runs, summary, width, color) -> text
RENDERERS = {"table": to_table_text, "markdown": to_markdown, "csv": _csv, "json": _json}


def terminal_width() -> int:
    """Columns to lay tables out in: COLUMNS when set (also when piped), else the terminal's, else a wide
    page (a file or pipe with no COLUMNS gets every column side by side)."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    if stdout_is_terminal():
        return shutil.get_terminal_size().columns
    return PIPE_WIDTH


PIPE_WIDTH = 220   # a file or pipe without COLUMNS: wide enough for a two-backend table side by side


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def wide_console() -> Console:
    """The console tables are printed to (`compare`, `diff`): COLUMNS when set (piped too), the terminal's
    width, or a wide page when stdout is a file or pipe (terminal_width)."""
    return Console(width=terminal_width())


def render(runs: list[dict], fmt: str, width: int | None = None, color: bool = False) -> str:
    """The text of a report in any of its formats (compare.render.outputs)."""
    outputs.check("report", fmt)
    return RENDERERS[fmt](runs, summarize(runs), terminal_width() if width is None else width, color)


def report(paths: Iterable[Path], fmt: str = "table", out: Path | None = None, overwrite: bool = False) -> None:
    """The `report` command: render the runs to stdout, or to `out` (atomically; an existing file only
    with overwrite)."""
    outputs.check("report", fmt)
    if out is not None:
        refuse_overwrite(out, overwrite)
    runs = load_runs(paths)
    if out:
        write_text(out, render(runs, fmt, width=PIPE_WIDTH if fmt == "table" else None))
        return
    sys.stdout.write(render(runs, fmt, color=fmt == "table" and stdout_is_terminal()))


def refuse_overwrite(path: Path, overwrite: bool, option: str = "--out") -> None:
    if Path(path).is_file() and not overwrite:
        raise BadInput(f"{option}: {path} exists; give another name or add --overwrite to replace it")


# -- writing ----------------------------------------------------------------------------------------
def write_text(path: Path, text: str) -> Path:
    """Atomically (compare.files.atomic_write); a path that cannot be written is one BadInput line."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{path}: is a folder; give a file name")
    try:
        with atomic_write(path) as f:
            f.write(text)
    except Unwritable as e:
        raise BadInput(f"{path}: cannot {e.step} {e.folder}: {e.strerror}") from None
    return path
