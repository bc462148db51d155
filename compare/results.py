"""Results files: one JSON document per run, long-format rows (one per cell and trial) plus the captured
environment and the exact command line; the planned cell processes (`plan`), the worker processes that
measured them (`processes`: compare.measure.runner.ProcessRecord) and where the time went (`time_split`,
one per compare or --resume: compare.measure.runner.TimeSplit). Versioned schema; written atomically."""
from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from pathlib import Path
from typing import Any

import backends

from .cells import MODES, SPLIT_FIELDS, Cell, CellResult, interpreter_label
from .files import atomic_write

SCHEMA = "threadbench.run/5"
OLDER_SCHEMAS = ("threadbench.run/4", "threadbench.run/3", "threadbench.run/2", "threadbench.run/1")  # still read: fields they lack
#   load as None (repeat: process 0; the split: not measured; step_kind: a search before confirmation;
#   the interpreter: the default one)

# Every row has exactly these fields (None where not applicable), so frames built from any run line up.
# Adding a row field is one line here: its name and its JSON type (int, float or str).
ROW_TYPES: dict[str, type] = {
    "run_id": str, "machine": str, "backend": str, "device": str, "dtype": str, "fp32_precision": str,
    "workload": str, "size": str, "mode": str, "threads": int, "k": int,
    "repeat": int,             # /2: which fresh process of the cell (a cell pools --repeats processes)
    "trial": int, "ops": int, "seconds": float, "ops_per_s": float,
    "lat_p50_ms": float, "lat_p90_ms": float, "lat_p99_ms": float, "batch_hist": str, "status": str, "cause": str,
    "errors": int, "checked": int, "rel_err": float, "flops_per_op": int, "peak_rss_mb": float,
    "peak_device_mb": float, "wall_s": float, "device_name": str, "framework_version": str,
    "gpu_util_mean": float, "gpu_util_max": float,   # NVML while the mode ran (compare.measure.host.GpuSampler)
    # processes mode: per process, in process order, as JSON lists; totals (compare.measure.processes)
    "process_rss_mb": str, "process_uss_mb": str, "process_device_mb": str,
    "total_rss_mb": float, "total_device_mb": float,
    "intra_op_ran": int, "intra_op_rule": str,       # intra-op threads each process ran, and why that many
    # how the cell was measured (compare.measure.harness.Measured, Trial): the effective matmul precision its
    # tolerance followed; warm-up taken; the window each trial used and the fewest ops any thread completed
    # in it; the speed check's median op; the most OS threads its process ran; the intra-op threads asked
    "precision": str, "warmup_s": float, "warmup_windows": int, "warmup_steady": int, "window_s": float,
    "min_thread_ops": int, "op_s": float, "os_threads": int, "intra_op_threads": int,
    # server modes: one row per offered rate (compare.measure.server)
    "offered_rate": float, "lag_p99_ms": float, "bound_ms": float, "verdict": str,
    # /3: where each request's time went, per window (compare.measure.split; compare.cells.Trial says what
    # each is), and the cores the cell's process could run on
    "call_ms": float, "sync_ms": float, "cpu_ms": float, "core_wait_ms": float, "call_cpu_ms": float,
    "sync_cpu_ms": float, "split_samples": int, "own_cores": float, "proc_cores": float, "host_cores": float,
    "device_ms": float, "device_busy": float, "cores": int,
    # /5: the backend's synchronize() only waits for the device (Backend.sync_waits, 1/0): its CPU time is a
    # spin-wait, not the thread's own work; None: not recorded (runs before /5)
    "sync_waits": int,
    # /3: server rows say what kind of step each was and who judged it
    "step_kind": str,          # search, again or long (compare.serverrules); None: a search before confirmation
    "load_generator": str,     # who issued the queries and judged each rate (cells.LOAD_GENERATORS); None: threadbench
    # replicas mode (compare.measure.processes.run_replicas): the device indices, each one's name, their link,
    # as JSON lists; each replica's GPU utilisation over its timed windows
    "devices": str, "device_names": str, "device_link": str, "process_util_mean": str,
    # /4: the interpreter (compare --python; None throughout: the default, the one running threadbench):
    # `interpreter` is its label and part of the cell's identity (cells.interpreter_label: "CPython 3.13.5t GIL
    # off"; a GIL-off cell whose GIL was on when it ran says "GIL back on"); its path, version, free-threaded
    # build (1/0); the GIL as asked (on, off) and as found enabled (1/0) after the framework's import and after
    # the cell; the modules whose import re-enabled it
    "interpreter": str, "python": str, "python_version": str, "free_threaded": int, "gil": str,
    "gil_import": int, "gil_after": int, "gil_reenabled_by": str,
}
ROW_FIELDS = tuple(ROW_TYPES)
INT_FIELDS = {f for f, t in ROW_TYPES.items() if t is int}
FLOAT_FIELDS = {f for f, t in ROW_TYPES.items() if t is float}
STR_FIELDS = {f for f, t in ROW_TYPES.items() if t is str}


class ResultsError(Exception):
    """A results file that is missing, unreadable, or not a threadbench run."""


def new_run(command: list[str], host: dict, settings: dict) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "schema": SCHEMA,
        "run_id": f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
        "created": now.isoformat(timespec="seconds"),
        "command": command,
        "host": host,
        "settings": settings,
        "backend_env": {},
        "cells": [],   # each cell's settings, so --resume knows what was asked
        "rows": [],
        "processes": [],   # the worker processes, as they start and end (older files: absent)
        "time_split": [],  # per compare and --resume: measuring, warming up, start-up, other (older files: absent)
    }


DEFAULT_RUNS = Path("runs")   # ad-hoc runs land here (git-ignored); `publish` reads only the curated results/runs/


def default_path(run: dict, folder: Path = DEFAULT_RUNS) -> Path:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in run["host"].get("host", "host"))
    return folder / f"{run['created'][:10]}-{host}-{run['run_id'].rsplit('-', 1)[1]}.json"


def add_result(run: dict, result: CellResult) -> None:
    cell = result.cell
    env = result.env or {}
    if env:
        run["backend_env"].setdefault(f"{cell.backend}/{cell.device}", env)
    run["cells"].append(cell.to_dict())
    base = {
        "run_id": run["run_id"], "machine": run["host"].get("host"), "backend": cell.backend,
        "device": cell.device, "dtype": cell.dtype, "fp32_precision": cell.fp32_precision,
        "workload": cell.workload, "size": cell.size_label(), "mode": cell.mode, "threads": cell.threads,
        "k": cell.k, "repeat": cell.repeat, "status": result.status, "cause": result.cause, "errors": result.errors,
        "checked": result.checked, "rel_err": result.rel_err, "flops_per_op": result.flops_per_op,
        "peak_rss_mb": result.peak_rss_mb, "peak_device_mb": result.peak_device_mb, "wall_s": result.wall_s,
        "device_name": env.get("device_name"), "framework_version": env.get("version"),
        # processes mode: per process, in process order, as JSON lists (compare.measure.processes)
        **{f: json.dumps(getattr(result, f)) if getattr(result, f) is not None else None
           for f in ("process_rss_mb", "process_uss_mb", "process_device_mb", "device_names", "process_util_mean")},
        "devices": json.dumps(list(cell.devices)) if cell.devices else None, "device_link": result.device_link,
        "total_rss_mb": result.total_rss_mb, "total_device_mb": result.total_device_mb,
        "intra_op_ran": result.intra_op_ran, "intra_op_rule": result.intra_op_rule or None,
        "precision": result.precision, "warmup_s": result.warmup_s, "warmup_windows": result.warmup_windows,
        "warmup_steady": None if result.steady is None else int(result.steady), "window_s": result.window_s,
        "op_s": result.op_s, "os_threads": result.os_threads, "intra_op_threads": cell.intra_op_threads,
        "cores": result.cores,
        "sync_waits": None if env.get("sync_waits") is None else int(bool(env["sync_waits"])),
        "gpu_util_mean": result.gpu_util_mean, "gpu_util_max": result.gpu_util_max,
        "load_generator": cell.load_generator if cell.mode in MODES and not MODES[cell.mode].throughput else None,
        **interpreter_fields(result),
    }
    trials = result.trials or [None]
    for i, t in enumerate(trials):
        row = dict.fromkeys(ROW_FIELDS)
        row.update(base)
        if t is not None:
            row.update(trial=i, ops=t.ops, seconds=t.seconds, ops_per_s=t.ops_per_s, lat_p50_ms=t.lat_p50_ms,
                       lat_p90_ms=t.lat_p90_ms, lat_p99_ms=t.lat_p99_ms,
                       batch_hist=json.dumps(t.batch_hist) if t.batch_hist else None, offered_rate=t.rate,
                       lag_p99_ms=t.lag_p99_ms, bound_ms=t.bound_ms, verdict=t.verdict, step_kind=t.step_kind,
                       window_s=t.window_s if t.window_s is not None else result.window_s,
                       min_thread_ops=t.min_thread_ops, **{f: getattr(t, f) for f in SPLIT_FIELDS})
        run["rows"].append(row)


def interpreter_fields(result: CellResult) -> dict:
    """A row's interpreter fields (ROW_TYPES says what each is); all None for the default interpreter's cells."""
    cell, seen = result.cell, result.interpreter
    if not cell.python and not cell.gil:
        return {}
    flag = lambda v: None if v is None else int(bool(v))  # noqa: E731
    return {"interpreter": cell_interpreter(cell, result.gil_was_on) or None, "python": cell.python or None,
            "python_version": seen.get("version"), "free_threaded": flag(seen.get("free_threaded")),
            "gil": cell.gil or None, "gil_import": flag(seen.get("gil_import")), "gil_after": flag(seen.get("gil_after")),
            "gil_reenabled_by": seen.get("gil_reenabled_by") or None}


def cell_interpreter(cell: Cell, gil_was_on: bool | None = None) -> str:
    return interpreter_label(cell.python_label or cell.python, cell.gil, gil_was_on)


def drop_cells(run: dict, keys: set[tuple]) -> None:
    """Remove the rows and cell entries of these cells, every process of each."""
    run["cells"] = [c for c in run["cells"] if Cell.from_dict(c).key() not in keys]
    run["rows"] = [r for r in run["rows"] if row_key(r) not in keys]


def drop_processes(run: dict, keys: set[tuple]) -> None:
    """Remove the rows and cell entries of these cell processes, keyed by process_key (used by --resume
    before running them again); the cell's other processes stay."""
    run["cells"] = [c for c in run["cells"] if (*Cell.from_dict(c).key(), c.get("repeat") or 0) not in keys]
    run["rows"] = [r for r in run["rows"] if process_key(r) not in keys]


def supersede(run: dict, newer: dict, why: str) -> int:
    """Drop the cells of `run` that the later run `newer` measured again (after a harness fix), and say so
    in `run["superseded"]`, which publish shows; git history keeps the dropped figures. Returns how many."""
    keys = {row_key(r) for r in newer["rows"]} & {row_key(r) for r in run["rows"]}
    drop_cells(run, keys)
    if keys:
        run.setdefault("superseded", []).append({"cells": [list(k) for k in sorted(keys, key=str)],
                                                 "by": newer["run_id"], "why": why})
    return len(keys)


def superseded_keys(run: dict) -> set[tuple]:
    return {tuple(k) for s in run.get("superseded", []) for k in s["cells"]}


def row_key(row: dict) -> tuple:
    """Cell.key() from a row (the interpreter only where it is not the default, as there)."""
    python, gil = row.get("python") or "", row.get("gil") or ""
    return (row["backend"], row["device"], row["dtype"], row["workload"], row["size"], row["mode"],
            row["threads"], row["k"], row["fp32_precision"], row.get("intra_op_threads")) + (
        (python, gil) if python or gil else ())


def process_key(row: dict) -> tuple:
    """One fresh process of a cell: its row_key and its repeat (files of schema /1 ran one, repeat 0)."""
    return (*row_key(row), row.get("repeat") or 0)


def finite(obj):
    """NaN/inf become null: the file stays strict JSON that jq, JavaScript and other tools can read."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(run: dict, indent: int | None = 1) -> str:
    return json.dumps(finite(run), indent=indent, default=str, allow_nan=False)


def save(run: dict, path: Path) -> Path:
    """Atomically (compare.files.atomic_write): a reader never sees half a results file."""
    with atomic_write(path) as f:
        f.write(dumps(run))
    return Path(path)


REQUIRED = {"run_id": str, "created": str, "command": list, "host": dict, "settings": dict,
            "backend_env": dict, "cells": list, "rows": list}


def load(path: Path) -> dict:
    """A run document, checked against the schema; any problem is one ResultsError line naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ResultsError(f"{path}: is a folder, not a results file")
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file")
    try:
        run = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: not a readable threadbench results file ({e})") from None
    if not isinstance(run, dict) or "schema" not in run:
        raise ResultsError(f"{path}: not a threadbench results file (no schema field)")
    schema = run["schema"]
    if schema != SCHEMA and schema not in OLDER_SCHEMAS:
        raise ResultsError(f"{path}: schema {schema!r} is not supported (this threadbench reads {SCHEMA} "
                           f"and {', '.join(OLDER_SCHEMAS)})")
    for key, kind in REQUIRED.items():
        if not isinstance(run.get(key), kind):
            raise ResultsError(f"{path}: field {key!r} is missing or not a {kind.__name__} (schema {schema})")
    for i, r in enumerate(run["rows"]):
        if not isinstance(r, dict) or set(r) - set(ROW_FIELDS) or (schema == SCHEMA and set(r) != set(ROW_FIELDS)):
            raise ResultsError(f"{path}: row {i} does not have the fields of schema {schema}")
        bad = next((f for f in r if not _typed(f, r[f])), None)
        if bad:
            raise ResultsError(f"{path}: row {i}: {bad}={r[bad]!r} has the wrong type for schema {schema}")
    if schema != SCHEMA:  # an older file, upgraded in memory: the fields it predates are None
        run["rows"] = [dict.fromkeys(ROW_FIELDS) | r for r in run["rows"]]
        run["schema"], run["upgraded_from"] = SCHEMA, schema
        declare_sync_waits(run)
    return run


def declare_sync_waits(run: dict) -> None:
    """Rows of /4 and earlier did not record `sync_waits`: on a device, a row gets its backend's declaration
    (Backend.sync_waits: what the framework's synchronise does, not something a run varies), where the class can
    be read; `run["sync_waits_declared"]` names the backends so filled. CPU rows stay None (nothing reads it there)."""
    declared: dict[str, Any] = {}
    for r in run["rows"]:
        if r["sync_waits"] is None and r["device"] != "cpu":
            if r["backend"] not in declared:
                declared[r["backend"]] = backends.declared(r["backend"], "sync_waits")
            if declared[r["backend"]] is not None:
                r["sync_waits"] = int(bool(declared[r["backend"]]))
    if any(v is not None for v in declared.values()):
        run["sync_waits_declared"] = sorted(b for b, v in declared.items() if v is not None)


def _typed(field: str, value: Any) -> bool:
    if value is None:
        return True
    if field in INT_FIELDS:
        return isinstance(value, int) and not isinstance(value, bool)
    if field in FLOAT_FIELDS:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)
