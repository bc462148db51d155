"""The server modes' results, from a run's rows: per cell the peak valid rate and its bracket (plain data,
`peaks`), and two tables (`build`): the peak per backend x strategy, and the latency-vs-rate curve.

Not the throughput tables (compare.render.tables leaves server cells out: a server step's ops/s is the
offered rate it was given, not a throughput the cell reached on its own)."""
from __future__ import annotations

import numpy as np

from ..cells import MODES, OK, axis_label, status_label
from . import format as F
from .format import num as _num
from .tables import TableData

SERVER_MODES = [m.name for m in MODES.values() if not m.throughput]
CELL = ("machine", "backend", "device", "dtype", "fp32_precision", "workload", "size", "mode", "threads")


def _search(steps: list[dict]) -> tuple[float | None, float | None, dict | None]:
    """One process's rate search: (peak, above, the step at the peak). peak: the highest offered rate judged
    valid; above: the lowest rate above it judged invalid (None: not bracketed)."""
    valid = [r for r in steps if r["verdict"] == "valid"]
    peak = max((r["offered_rate"] for r in valid), default=None)
    above = min((r["offered_rate"] for r in steps if r["verdict"] != "valid" and peak is not None
                 and r["offered_rate"] > peak), default=None)
    return peak, above, next((r for r in valid if r["offered_rate"] == peak), None)


def peaks(rows: list[dict]) -> list[dict]:
    """One record per server cell. From one process: `peak` the highest offered rate judged valid and `above`
    the lowest rate above it judged invalid (None: not bracketed); the peak lies in [peak, above) to the
    search's precision (a re-run's noise can move either end by a step). From several (--repeats), each
    process searched on its own: `peak` is the median of their peaks (a process with no valid rate counts as
    0), `low`-`high` its distribution-free interval at `level` (stats.median_ci), `above` None; the best
    of the processes is never the figure; `median_repeat` names the median process. `steps`: every process's
    rows sorted by rate (each row's "repeat" says whose)."""
    from ..stats import cell_status, median_ci
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["mode"] in SERVER_MODES:
            cells.setdefault(tuple(r[k] for k in CELL), []).append(r)
    out = []
    for key, rs in cells.items():
        steps = sorted((r for r in rs if r.get("offered_rate") is not None), key=lambda r: r["offered_rate"])
        status, cause = cell_status(rs)   # as for throughput cells: one failed process fails the cell
        procs: dict[int, list[dict]] = {}
        for r in steps:
            procs.setdefault(r.get("repeat") or 0, []).append(r)
        firsts = {r.get("repeat") or 0: r for r in rs}.values()   # process-level fields: once per process
        bounds = [ps[0]["bound_ms"] for ps in procs.values() if ps[0]["bound_ms"] is not None]  # each its own
        rec = {"status": status, "cause": cause, "bound_ms": float(np.median(bounds)) if bounds else None,
               "steps": steps, "n_processes": len(procs),
               "errors": sum(r["errors"] or 0 for r in firsts), "checked": sum(r["checked"] or 0 for r in firsts),
               "low": None, "high": None, "level": None, "median_repeat": None}
        if len(procs) <= 1:
            peak, above, at = _search(steps)
        else:
            searches = sorted(((_search(ps), rep) for rep, ps in procs.items()), key=lambda x: x[0][0] or 0.0)
            values = [x[0][0] or 0.0 for x in searches]
            mid = median_ci(values)
            middle, rec["median_repeat"] = searches[(len(searches) - 1) // 2]  # the median process (lower if even)
            peak = float(np.median(values)) or None
            above, at = None, middle[2] if peak is not None else None
            if peak is not None:
                rec.update(low=mid[0], high=mid[1], level=mid[2])
        rec.update(peak=peak, above=above, p99_at_peak=at and at["lat_p99_ms"], lag_at_peak=at and at["lag_p99_ms"])
        out.append(dict(zip(CELL, key)) | rec)
    return out


def span(r: dict) -> str:
    """Where a peak lies: [peak, above) from one search, the interval of the median over processes, or ≥ peak."""
    if r.get("low") is not None:
        return f"{F.short(r['low'])}–{F.short(r['high'])}"
    return f"[{F.short(r['peak'])}, {F.short(r['above'])})" if r["above"] is not None else f"≥ {F.short(r['peak'])}"


def build(rows: list[dict]) -> list[TableData]:
    recs = peaks(rows)
    if not recs:
        return []
    head = [("", "workload"), ("", "backend"), ("", "strategy"), ("", "threads"), ("", "p99 bound ms"),
            ("", "peak req/s"), ("", "bracket or interval"), ("", "p99 at peak"), ("", "lag p99"), ("", "steps"),
            ("", "verdict")]
    table = []
    for r in recs:
        verdict = r["status"] if r["status"] != OK else ("no valid rate" if r["peak"] is None else status_label(OK))
        if r["errors"]:
            verdict = f"WRONG {r['errors']}/{r['checked']}"
        bracket = (f"{_num(r['low'])}–{_num(r['high'])} ({r['n_processes']} processes, {r['level']:.1%})"
                   if r["low"] is not None else f"[{_num(r['peak'])}, {_num(r['above'])})" if r["above"] is not None
                   else "not bracketed" if r["peak"] is not None else "—")
        show = r["status"] == OK and not r["errors"]  # a failed cell shows no rate
        table.append([r["workload"], f"{r['backend']} {r['device']} {r['dtype']}", r["mode"].removeprefix("server-"),
                      axis_label(r["mode"], r["threads"], 1), _num(r["bound_ms"]),
                      _num(r["peak"]) if show else "—", bracket if show else "—", _num(r["p99_at_peak"]),
                      _num(r["lag_at_peak"]), str(len(r["steps"])), verdict])
    notes = ["peak: the highest offered rate whose p99 latency (from the scheduled arrival) met the bound, with "
             "enough queries to know it (LoadGen's early stopping) and the dispatcher's lag p99 within 10% of "
             "the bound; bracket: [peak, lowest failing rate above it), the search's 5% precision (one process); "
             "with several processes (--repeats) each searched on its own: peak is the median of their peaks (a "
             "process with no valid rate counts as 0) and the interval that median's distribution-free interval "
             "at the level shown; p99 and lag at peak are the median process's"]
    curve = []
    for r in recs:
        for s in r["steps"]:
            curve.append([r["workload"], f"{r['backend']} {r['device']} {r['dtype']}", r["mode"].removeprefix("server-"),
                          axis_label(r["mode"], r["threads"], 1), _num(s["offered_rate"]), _num(s["ops_per_s"]),
                          _num(s["lat_p50_ms"]), _num(s["lat_p99_ms"]), _num(s["lag_p99_ms"]), F.clip(s["verdict"], 80)])
    return [TableData("server — peak rate under the p99 bound", head, table, notes),
            TableData("server — latency vs offered rate",
                      [("", "workload"), ("", "backend"), ("", "strategy"), ("", "threads"), ("", "offered/s"),
                       ("", "done/s"), ("", "p50 ms"), ("", "p99 ms"), ("", "lag p99 ms"), ("", "verdict")], curve)]
