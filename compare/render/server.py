"""The server modes' two tables, laid out from analysis.peaks: the peak valid rate per backend × strategy
with its bracket or interval, and the latency-vs-offered-rate curve. Not the throughput tables
(compare.render.tables leaves server cells out: a server step's ops/s is the rate it was offered, not a
throughput the cell reached on its own); what the peak is, is decided in analysis.py."""
from __future__ import annotations

from ..cells import LOADGEN, OK, WRONG, axis_label, status_label
from ..serverrules import AGAIN, LONG, STALL_S
from . import format as fmt
from .analysis import peaks, shows_rate
from .format import TableData


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
            verdict = f"{status_label(WRONG)} {r['errors']}/{r['checked']}"
        bracket = (f"{fmt.num(r['low'])}–{fmt.num(r['high'])} ({r['n_processes']} processes, {r['level']:.1%})"
                   if r["low"] is not None else f"[{fmt.num(r['peak'])}, {fmt.num(r['above'])})" if r["above"] is not None
                   else f"≥ {fmt.num(r['peak'])}, not bracketed: {fmt.open_end(r)}" if r["peak"] is not None
                   else fmt.MISSING)
        show = shows_rate(r)  # a failed cell shows no rate
        table.append([r["workload"], f"{r['backend']} {r['device']} {r['dtype']}", fmt.strategy(r),
                      axis_label(r["mode"], r["threads"], 1), fmt.num(r["bound_ms"]),
                      fmt.num(r["peak"]) if show else fmt.MISSING, bracket if show else fmt.MISSING, fmt.num(r["p99_at_peak"]),
                      fmt.num(r["lag_at_peak"]), str(len(r["steps"])), verdict])
    notes = ["peak: the highest offered rate whose p99 latency (from the scheduled arrival) met the bound, with "
             "enough queries to know it (LoadGen's early stopping) and the dispatcher's lag p99 within 10% of "
             "the bound; a failed step counts only once the rate fails again, and a long step (one that a "
             f"{STALL_S * 1e3:g} ms stall cannot fail) settles a rate whose steps disagree; bracket: [peak, lowest "
             "failing rate above it), the search's 5% precision (one process), shown only where long steps "
             "passed at the peak and failed above it (else ≥ peak, and why); "
             "with several processes (--repeats) each searched on its own: peak is the median of their peaks (a "
             "process with no valid rate counts as 0) and the interval that median's distribution-free interval "
             "at the level shown; p99 and lag at peak are the median process's"]
    if any(r["load_generator"] != LOADGEN for r in recs):
        notes.append("a strategy without a label: threadbench's own dispatcher issued the queries (compare's "
                     "default until LoadGen became it, and still where MLPerf LoadGen does not import, or with "
                     "--load-generator threadbench); it spends about half of LoadGen's CPU a query, so where the "
                     "model fills the cores its peak can sit above LoadGen's (benchmarks/README.md, the LoadGen "
                     "cross-check)")
    if any(r["load_generator"] == LOADGEN for r in recs):
        notes.append(f"({fmt.GENERATOR_LABELS[LOADGEN]}): MLPerf LoadGen's Server scenario issued the queries and "
                     "judged each rate (its summary's verdict, percentiles and early stopping; it reports no "
                     "dispatcher lag); the search around its steps is threadbench's")
    curve = []
    for r in recs:
        for s in r["steps"]:
            kind = f" ({s['step_kind']})" if s.get("step_kind") in (AGAIN, LONG) else ""  # a confirmation
            curve.append([r["workload"], f"{r['backend']} {r['device']} {r['dtype']}", fmt.strategy(r),
                          axis_label(r["mode"], r["threads"], 1), fmt.num(s["offered_rate"]), fmt.num(s["ops_per_s"]),
                          fmt.num(s["lat_p50_ms"]), fmt.num(s["lat_p99_ms"]), fmt.num(s["lag_p99_ms"]),
                          fmt.clip(s["verdict"], 80) + kind])
    return [TableData("server — peak rate under the p99 bound", head, table, notes),
            TableData("server — latency vs offered rate",
                      [("", "workload"), ("", "backend"), ("", "strategy"), ("", "threads"), ("", "offered/s"),
                       ("", "done/s"), ("", "p50 ms"), ("", "p99 ms"), ("", "lag p99 ms"), ("", "verdict")], curve)]
