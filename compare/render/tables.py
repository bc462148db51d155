"""Side-by-side tables from per-cell summaries: per workload a row per (mode, threads), per backend its
throughput with CI, speedup, %-of-ceiling, %-of-peak and status; then each backend's ratio to the first.

`build` returns plain TableData (strings); renderers (rich, markdown, csv) only lay it out."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

from ..cells import MODES, axis_label
from ..stats import PEAK_WORKLOAD

@dataclass
class TableData:
    title: str
    columns: list[tuple[str, str]]  # (group, name); group "" for the row labels
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def _num(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def _short(v: float | None) -> str:
    """Compact number for CI bounds: 26.0k, 812, 3.1M."""
    if v is None or math.isnan(v):
        return "—"
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _pct(v):
    return "—" if v is None or math.isnan(v) else f"{v:.0f}%"


def verdict(r: dict) -> str:
    s = r["status"]
    if s == "ok":
        return "UNSTABLE" if r["unstable"] else "ok"
    if s == "wrong":
        return f"WRONG {r['errors']}/{r['checked']}"
    if s == "crash":
        cause = r["cause"] or ""
        return "CRASH " + cause.split(":")[0].replace("killed by ", "") if cause.startswith("killed by") else "CRASH"
    return {"too_slow": "too slow", "timeout": "TIMEOUT", "error": "ERROR", "memory": "MEMORY"}.get(s, s)


def group_label(r: dict, machines: int = 1) -> str:
    label = f"{r['backend']} {r['device']} {r['dtype']}"
    if r["dtype"] == "float32" and r["fp32_precision"] in ("high", "native"):
        label += f" ({r['fp32_precision']})"
    return f"{r['machine']}: {label}" if machines > 1 else label


def _row_label(mode: str, threads: int, k: int) -> tuple[str, str]:
    return mode, axis_label(mode, threads, k) or "—"


def _throughput(r: dict) -> str:
    """ops/s with its CI; a cell without a figure shows why instead; '!' marks an unstable or wrong one."""
    if r["ops_per_s"] is None:
        return verdict(r)
    mark = " !" if r["unstable"] or r["status"] != "ok" else ""
    return f"{_num(r['ops_per_s'])} [{_short(r['ci_low'])}–{_short(r['ci_high'])}]{mark}"


BACKEND_ORDER = {"torch": 0, "mlx": 1}  # the question's two frameworks first; the first is the ratio's base
DTYPE_ORDER = {"float32": 0, "bfloat16": 1, "float16": 2, "float64": 3}
PRECISION_ORDER = {"highest": 0, "high": 1, "native": 2}


def build(summary: pl.DataFrame) -> list[TableData]:
    """Per workload (and dtype, when several were run) two tables: side-by-side throughput (ops/s with CI,
    speedup, each backend's ratio to the first of its dtype), then every cell's detail (CI level,
    %-of-ceiling, %-of-peak, TFLOP/s, latency, errors, verdict)."""
    cells = summary.filter((pl.col("workload") != PEAK_WORKLOAD)  # server steps: compare.render.server
                           & pl.col("mode").is_in([m.name for m in MODES.values() if m.throughput]))
    machines = summary["machine"].n_unique() if summary.height else 0
    machine_order = {m: i for i, m in enumerate(dict.fromkeys(summary["machine"].to_list()))} if summary.height else {}
    order = {m: i for i, m in enumerate(MODES)}
    tables = []
    for (workload, size), part in cells.group_by(["workload", "size"], maintain_order=True):
        dtypes = sorted(set(part["dtype"].to_list()), key=lambda d: DTYPE_ORDER.get(d, 9))
        for dtype in dtypes:
            recs = part.filter(pl.col("dtype") == dtype).to_dicts()
            title = workload + ("" if size == "default" else f" ({size})") + (f" {dtype}" if len(dtypes) > 1 else "")
            tables += _workload_tables(title, recs, machines, machine_order, order)
            tables[-2].notes += precision_notes(part.filter(pl.col("dtype") == dtype))
    return tables


def _workload_tables(title, recs, machines, machine_order, order) -> list[TableData]:
    for r in recs:
        r["group"] = group_label(r, machines)
    ranked = sorted(recs, key=lambda r: (machine_order.get(r["machine"], 0), BACKEND_ORDER.get(r["backend"], 5),
                                         r["backend"], PRECISION_ORDER.get(r["fp32_precision"], 9)))
    groups = list(dict.fromkeys(r["group"] for r in ranked))
    row_keys = sorted({(r["mode"], r["threads"], r["k"]) for r in recs},
                      key=lambda t: (order.get(t[0], 99), t[1], t[2]))
    by = {(r["group"], r["mode"], r["threads"], r["k"]): r for r in recs}
    first, others = groups[0], groups[1:]
    short = machines <= 1 and len({g.split(" ")[0] for g in groups}) == len(groups)
    name = (lambda g: g.split(" ")[0]) if short else (lambda g: g)
    columns = [("", "mode"), ("", "threads")] + [(g, m) for g in groups for m in ("ops/s [95% CI]", "×1T")]
    columns += [("ratio", f"{name(g)} ÷ {name(first)}") for g in others]
    rows = []
    for mode, threads, k in row_keys:
        line = list(_row_label(mode, threads, k))
        for g in groups:
            r = by.get((g, mode, threads, k))
            line += ["not run", ""] if r is None else [
                _throughput(r), "—" if r["speedup"] is None else f"{r['speedup']:.2f}×"]
        for g in others:
            a, b = by.get((g, mode, threads, k)), by.get((first, mode, threads, k))
            line.append(f"{a['ops_per_s'] / b['ops_per_s']:.2f}" if a and b and a["ops_per_s"] and b["ops_per_s"] else "—")
        rows.append(line)
    notes = [f"{r['group']}, {' '.join(_row_label(r['mode'], r['threads'], r['k']))}: "
             + (r["cause"] or f"trials spread {100 * (r['iqr_rel'] or 0):.0f}% (IQR/median) > 10% — UNSTABLE")
             for r in ranked if r["status"] != "ok" or r["unstable"]]
    return [TableData(title=f"{title} — throughput (requests/s)", columns=columns, rows=rows, notes=notes),
            _detail(f"{title} — per-cell detail", recs, groups, row_keys, by)]


DETAIL = ("ops/s", "95% CI", "CI level", "×1T", "%ceil", "%peak", "TFLOP/s", "p50 ms", "p99 ms", "batch",
          "errors", "rel. error", "RSS MB", "dev MB", "verdict")


def _detail(title, recs, groups, row_keys, by) -> TableData:
    rows = []
    for g in groups:
        for mode, threads, k in row_keys:
            r = by.get((g, mode, threads, k))
            if r is None:
                continue
            ci = "—" if r["ops_per_s"] is None else f"{_short(r['ci_low'])}–{_short(r['ci_high'])}"
            rows.append([g, *_row_label(mode, threads, k), _num(r["ops_per_s"]), ci,
                         _pct(None if r["ci_level"] is None else 100 * r["ci_level"]),
                         "—" if r["speedup"] is None else f"{r['speedup']:.2f}×",
                         _pct(r["pct_ceiling"]), _pct(r["pct_peak"]),
                         "—" if r["tflops"] is None else f"{r['tflops']:.3g}",
                         _num(r["lat_p50_ms"]), _num(r["lat_p99_ms"]),
                         "—" if r.get("mean_batch") is None else f"{r['mean_batch']:.1f}",
                         f"{r['errors']}/{r['checked']}" if r["checked"] else "—",
                         "—" if r["rel_err"] is None else f"{r['rel_err']:.1e}",
                         _num(r["peak_rss_mb"], 4), _num(r["peak_device_mb"], 4), verdict(r)])
    columns = [("", "backend"), ("", "mode"), ("", "threads")] + [("", m) for m in DETAIL]
    return TableData(title=title, columns=columns, rows=rows)


def precision_notes(part: pl.DataFrame) -> list[str]:
    """Flag comparisons that are not like-for-like: measured errors vs float64 more than 10x apart."""
    notes = []
    for (dtype,), g in part.filter(pl.col("rel_err").is_not_null()).group_by(["dtype"]):
        errs = g.group_by(["backend", "device", "fp32_precision"]).agg(pl.col("rel_err").max()).to_dicts()
        if len(errs) < 2:
            continue
        lo, hi = min(errs, key=lambda e: e["rel_err"]), max(errs, key=lambda e: e["rel_err"])
        if hi["rel_err"] > 10 * max(lo["rel_err"], 1e-12) and hi["rel_err"] > 1e-5:
            def name(e: dict) -> str:  # for float32 the matmul setting is what differs
                return f"{e['backend']} {e['device']}" + (f" ({e['fp32_precision']})" if dtype == "float32" else "")
            notes.append(f"not like-for-like ({dtype}): {name(hi)} error vs float64 {hi['rel_err']:.1e}, "
                         f"{name(lo)} {lo['rel_err']:.1e}"
                         + (" — torch's --fp32-precision high matches TF32" if dtype == "float32" else ""))
    return notes


# -- renderers ------------------------------------------------------------------------------------
def to_rich(t: TableData):
    from rich.table import Table
    table = Table(title=t.title, title_justify="left", header_style="bold")
    for group, name in t.columns:
        header = name if not group else f"{group}\n{name}"
        table.add_column(header, justify="left" if group == "" else "right", no_wrap=group == "")
    for row in t.rows:
        table.add_row(*row)
    return table


def to_markdown(t: TableData, heading: str = "###") -> str:
    header = [name if not group else f"{group} {name}" for group, name in t.columns]
    lines = [f"{heading} {t.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
    lines += [""] + [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"
