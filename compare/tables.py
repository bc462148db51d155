"""Side-by-side tables from per-cell summaries: per workload a row per (mode, threads), per backend its
throughput with CI, speedup, %-of-ceiling, %-of-peak and status; then each backend's ratio to the first.

`build` returns plain TableData (strings); renderers (rich, markdown, csv) only lay it out."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

from .cells import MODES
from .stats import PEAK_WORKLOAD

METRICS = ("ops/s [95% CI]", "×1T", "%ceil", "%peak", "status")


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


def _pct(v):
    return "—" if v is None or math.isnan(v) else f"{v:.0f}%"


def _status(r: dict) -> str:
    s = r["status"]
    if s == "ok":
        return "UNSTABLE" if r["unstable"] else "ok"
    if s == "wrong":
        return f"WRONG {r['errors']}/{r['checked']}"
    if s == "crash":
        cause = r["cause"] or ""
        return "CRASH " + cause.split(":")[0].replace("killed by ", "") if cause.startswith("killed by") else "CRASH"
    return {"too_slow": "too slow", "timeout": "TIMEOUT", "error": "ERROR", "memory": "MEMORY"}.get(s, s)


def _group_label(r: dict, machines: int) -> str:
    label = f"{r['backend']} {r['device']} {r['dtype']}"
    if r["dtype"] == "float32" and r["fp32_precision"] != "highest":
        label += f" ({r['fp32_precision']})"
    return f"{r['machine']}: {label}" if machines > 1 else label


def _row_label(r: dict) -> tuple[str, str]:
    if r["mode"] == "offline":
        return "offline", f"k={r['k']} (batch {r['k']}×)"
    return r["mode"], str(r["threads"])


def build(summary: pl.DataFrame) -> list[TableData]:
    cells = summary.filter(pl.col("workload") != PEAK_WORKLOAD)
    machines = summary["machine"].n_unique() if summary.height else 0
    tables = []
    for (workload, size), part in cells.group_by(["workload", "size"], maintain_order=True):
        recs = part.to_dicts()
        groups = list(dict.fromkeys(_group_label(r, machines) for r in recs))
        order = {m: i for i, m in enumerate(MODES)}
        row_keys = sorted({(r["mode"], r["threads"], r["k"]) for r in recs}, key=lambda t: (order.get(t[0], 99), t[1], t[2]))
        by = {(_group_label(r, machines), r["mode"], r["threads"], r["k"]): r for r in recs}
        columns = [("", "mode"), ("", "threads")] + [(g, m) for g in groups for m in METRICS]
        first = groups[0]
        ratio_groups = [g for g in groups[1:]]
        columns += [("ratio", f"{g.split(' ')[0] if machines <= 1 else g} ÷ {first.split(' ')[0] if machines <= 1 else first}")
                    for g in ratio_groups]
        rows, notes = [], []
        for mode, threads, k in row_keys:
            sample = next(r for r in recs if (r["mode"], r["threads"], r["k"]) == (mode, threads, k))
            line = list(_row_label(sample))
            for g in groups:
                r = by.get((g, mode, threads, k))
                if r is None:
                    line += ["", "", "", "", "not run"]
                    continue
                ops = r["ops_per_s"]
                text = "—" if ops is None else f"{_num(ops)} [{_num(r['ci_low'])}–{_num(r['ci_high'])}]"
                line += [text, "—" if r["speedup"] is None else f"{r['speedup']:.2f}×",
                         _pct(r["pct_ceiling"]), _pct(r["pct_peak"]), _status(r)]
                if r["status"] != "ok" or r["unstable"]:
                    why = r["cause"] or f"trials spread {100 * (r['iqr_rel'] or 0):.0f}% (IQR/median) > 10%"
                    notes.append(f"{g}, {mode} {'k=' + str(k) if mode == 'offline' else '×' + str(threads)}: {why}")
            for g in ratio_groups:
                a, b = by.get((g, mode, threads, k)), by.get((first, mode, threads, k))
                ok = a and b and a["ops_per_s"] and b["ops_per_s"]
                line.append(f"{a['ops_per_s'] / b['ops_per_s']:.2f}" if ok else "—")
            rows.append(line)
        notes += precision_notes(part)
        title = f"{workload}" + ("" if size == "default" else f" ({size})")
        tables.append(TableData(title=title, columns=columns, rows=rows, notes=notes))
    return tables


def precision_notes(part: pl.DataFrame) -> list[str]:
    """Flag comparisons that are not like-for-like: measured errors vs float64 more than 10x apart."""
    notes = []
    for (dtype,), g in part.filter(pl.col("rel_err").is_not_null()).group_by(["dtype"]):
        errs = g.group_by(["backend", "device", "fp32_precision"]).agg(pl.col("rel_err").max()).to_dicts()
        if len(errs) < 2:
            continue
        lo, hi = min(errs, key=lambda e: e["rel_err"]), max(errs, key=lambda e: e["rel_err"])
        if hi["rel_err"] > 10 * max(lo["rel_err"], 1e-12) and hi["rel_err"] > 1e-5:
            notes.append(f"not like-for-like ({dtype}): {hi['backend']} {hi['device']} error vs float64 "
                         f"{hi['rel_err']:.1e}, {lo['backend']} {lo['device']} {lo['rel_err']:.1e}"
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


def to_markdown(t: TableData) -> str:
    header = [name if not group else f"{group} {name}" for group, name in t.columns]
    lines = [f"### {t.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
    lines += [""] + [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"
