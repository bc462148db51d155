"""`diff A B`: cell by cell, B's median throughput over A's, whether the change is significant, and whether
the two intervals overlap; cells present in only one run are listed, not compared.

The test (analysis.judge_change) uses the same spread as the cells' intervals: per-process medians where
both runs have two or more processes (--repeats), else one process's windows, said so in a note (such a
test calls too many changes significant). This module gathers both runs' samples and notes and lays the
result out; the verdict rule lives in analysis.py."""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import results, shards, stats
from ..cells import OK, axis_label, status_label
from ..options import BadInput
from . import outputs
from .analysis import (ALPHA, BROKE, FASTER, FIXED, IMPROVEMENT, NOT_COMPARED, PROCESSES, REGRESSION, SAME, SLOWER,
                       THRESHOLD, UNCLEAR, WINDOWS, judge_change, samples, too_few_to_tell)
from .format import group_label, num
from .hostinfo import host_differences
from .report import expand, summary_runs, wide_console

KEY_FIELDS = ("backend", "device", "dtype", "fp32_precision", "workload", "size", "mode", "threads", "k",
              "intra_op_threads", "interpreter")


@dataclass
class CellDiff:
    backend: str
    device: str
    dtype: str
    fp32_precision: str
    workload: str
    size: str
    mode: str
    threads: int
    k: int
    a_status: str
    b_status: str
    intra_op_threads: int | None = None   # None: the framework's own (part of a cell's identity)
    interpreter: str | None = None        # None: the default interpreter (part of a cell's identity)
    a_ops: float | None = None
    a_ci: tuple[float | None, float | None] = (None, None)
    a_trials: int = 0
    b_ops: float | None = None
    b_ci: tuple[float | None, float | None] = (None, None)
    b_trials: int = 0
    ratio: float | None = None          # B / A
    p_value: float | None = None        # two-sided Mann-Whitney U on the samples of `unit`
    unit: str | None = None             # what the test compared: "processes" (per-process medians) or "windows"
    min_p: float | None = None          # the smallest p these trial counts can give
    ci_overlap: bool | None = None
    verdict: str = NOT_COMPARED
    flag: str | None = None             # improvement | regression | None

    def label(self) -> str:
        return cell_label(asdict(self))


@dataclass
class Diff:
    a: dict                             # run_id, machine, created, file
    b: dict
    threshold: float
    alpha: float
    cells: list[CellDiff]
    only_a: list[dict] = field(default_factory=list)   # the key fields of cells measured only in A
    only_b: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(c.verdict == verdict for c in self.cells)

    @property
    def regressions(self) -> list[CellDiff]:
        return [c for c in self.cells if c.flag == REGRESSION]

    @property
    def improvements(self) -> list[CellDiff]:
        return [c for c in self.cells if c.flag == IMPROVEMENT]

    def summary_line(self) -> str:
        parts = [f"{self.count(FASTER)} faster", f"{self.count(SLOWER)} slower",
                 f"{self.count(SAME)} same (within ±{100 * self.threshold:.0f}%)",
                 f"{self.count(UNCLEAR)} unclear (beyond ±{100 * self.threshold:.0f}% but p ≥ {self.alpha:g})"]
        parts += [f"{self.count(v)} {v}" for v in (BROKE, FIXED, NOT_COMPARED) if self.count(v)]
        parts += [f"{len(self.only_a)} only in A", f"{len(self.only_b)} only in B"]
        return (f"B vs A: {', '.join(parts)}; {len(self.regressions)} regression(s), "
                f"{len(self.improvements)} improvement(s)")


def cell_label(c: dict) -> str:
    group = group_label(c)   # the same names as the tables' column groups
    size = "" if c["size"] == "default" else f" ({c['size']})"
    where = axis_label(c["mode"], c["threads"], c["k"])
    return f"{group}: {c['workload']}{size} {c['mode']}" + (f" {where}" if where else "")


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _trials(run: dict) -> dict[tuple, list[float]]:
    out: dict[tuple, list[float]] = {}
    for row in run["rows"]:
        if row["ops_per_s"] is not None and math.isfinite(row["ops_per_s"]):
            out.setdefault(results.row_key(row), []).append(float(row["ops_per_s"]))
    return out


def _process_medians(run: dict) -> dict[tuple, list[float]]:
    """Per cell, the median ops/s of each of its processes (compare.stats.process_medians)."""
    rows: dict[tuple, list[dict]] = {}
    for row in run["rows"]:
        rows.setdefault(results.row_key(row), []).append(row)
    return {k: list(stats.process_medians(v).values()) for k, v in rows.items()}


def _cells(run: dict) -> dict[tuple, dict]:
    """Per-cell summary records keyed like results.row_key (the machine is not part of the key)."""
    return {results.row_key(rec): rec for rec in stats.summarize(run["rows"], stats.adaptive_rules([run])).to_dicts()}


def _meta(run: dict) -> dict:
    return {"run_id": run["run_id"], "machine": run["host"].get("host"), "created": run["created"],
            "file": run.get("_path")}


def compare_runs(a: dict, b: dict, threshold: float = THRESHOLD, alpha: float = ALPHA) -> Diff:
    """Every cell both runs measured, judged by analysis.judge_change; the notes a reader needs to trust it."""
    cells_a, cells_b = _cells(a), _cells(b)
    trials_a, trials_b = _trials(a), _trials(b)
    medians_a, medians_b = _process_medians(a), _process_medians(b)
    out = Diff(a=_meta(a), b=_meta(b), threshold=threshold, alpha=alpha, cells=[])
    out.only_a = [{f: cells_a[k][f] for f in KEY_FIELDS} for k in cells_a if k not in cells_b]
    out.only_b = [{f: cells_b[k][f] for f in KEY_FIELDS} for k in cells_b if k not in cells_a]
    too_few: list[CellDiff] = []
    for key, ra in cells_a.items():
        rb = cells_b.get(key)
        if rb is None:
            continue
        unit, ta, tb = samples(trials_a.get(key, []), medians_a.get(key, []),
                               trials_b.get(key, []), medians_b.get(key, []))
        a_ops, a_ci = _num(ra["ops_per_s"]), (_num(ra["ci_low"]), _num(ra["ci_high"]))
        b_ops, b_ci = _num(rb["ops_per_s"]), (_num(rb["ci_low"]), _num(rb["ci_high"]))
        change = judge_change(ra["status"], rb["status"], a_ops, b_ops, a_ci, b_ci, ta, tb, threshold, alpha)
        d = CellDiff(**{f: ra[f] for f in KEY_FIELDS}, a_status=ra["status"], b_status=rb["status"], a_ops=a_ops,
                     a_ci=a_ci, a_trials=len(ta), b_ops=b_ops, b_ci=b_ci, b_trials=len(tb), unit=unit,
                     **asdict(change))
        if too_few_to_tell(change, alpha):
            too_few.append(d)
        out.cells.append(d)

    within = sum(1 for c in out.cells if c.p_value is not None and c.unit == WINDOWS)
    if within:
        out.notes.append(f"{within} cell(s) were tested on the windows of one process per run: the test sees "
                         "within-process noise only, not what varies between runs; measure both with --repeats 5 "
                         "or more to test on per-process medians")
    if out.a["machine"] != out.b["machine"]:
        out.notes.append(f"A ({out.a['machine']}) and B ({out.b['machine']}) are different machines: "
                         "the ratios include the hardware")
    out.notes += host_differences(a, b)  # CPU model, GPU, or probe rates apart
    sa, sb = a["settings"].get("cell") or {}, b["settings"].get("cell") or {}
    changed = [f"{k} {sa.get(k)} → {sb.get(k)}" for k in ("duration", "trials", "warmup", "max_batch", "max_wait_ms")
               if sa.get(k) != sb.get(k)]
    ra, rb = a["settings"].get("repeats") or 1, b["settings"].get("repeats") or 1
    changed += [f"repeats {ra} → {rb}"] if ra != rb else []
    if changed:
        out.notes.append("the runs were measured with different settings: " + ", ".join(changed))
    if too_few:
        worst = max(too_few, key=lambda c: c.min_p or 1.0)
        out.notes.append(f"{len(too_few)} cell(s) changed by more than {100 * threshold:.0f}% but have too few trials "
                         f"for the test to reach p < {alpha:g} (with {worst.a_trials} and {worst.b_trials} "
                         f"{worst.unit or 'trials'} "
                         f"the smallest possible p is {worst.min_p or 1.0:.3g}); re-run both with "
                         + ("--repeats 5 or more" if worst.unit == PROCESSES else "--trials 5 or more"))
    unstable = sum(1 for k in cells_a.keys() & cells_b.keys() if cells_a[k]["unstable"] or cells_b[k]["unstable"])
    if unstable:
        out.notes.append(f"{unstable} compared cell(s) are UNSTABLE in A or B (windows spread > 10% inside a process): "
                         "treat their ratios with care")
    return out


# -- output -----------------------------------------------------------------------------------------
COLUMNS = ("cell", "A ops/s [CI]", "B ops/s [CI]", "B÷A", "change", "p", "CIs", "verdict")


def _fmt_ops(v: float | None, ci: tuple, status: str) -> str:
    if status != OK or v is None:
        return status_label(status)
    return f"{num(v)} [{num(ci[0])}–{num(ci[1])}]"


def rows(d: Diff) -> list[list[str]]:
    out = []
    for c in d.cells:
        change = "—" if c.ratio is None else f"{100 * (c.ratio - 1):+.1f}%"
        p = "—" if c.p_value is None else (f"{c.p_value:.3f}" if c.p_value >= 0.001 else "<0.001")
        ci = "—" if c.ci_overlap is None else ("overlap" if c.ci_overlap else "apart")
        verdict = c.verdict.upper() if c.flag else c.verdict
        out.append([c.label(), _fmt_ops(c.a_ops, c.a_ci, c.a_status), _fmt_ops(c.b_ops, c.b_ci, c.b_status),
                    "—" if c.ratio is None else f"{c.ratio:.3f}", change, p, ci, verdict])
    return out


def _header(d: Diff) -> list[str]:
    def run(x):
        return f"{x['machine']} run {x['run_id']}" + (f" ({x['file']})" if x.get("file") else "")
    return [f"A: {run(d.a)}", f"B: {run(d.b)}",
            f"flagged when |B÷A − 1| ≥ {d.threshold:g} and Mann-Whitney U p < {d.alpha:g}"]


def to_markdown(d: Diff) -> str:
    lines = ["## threadbench diff", ""] + [f"- {h}" for h in _header(d)] + [""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(x.replace("|", "\\|") for x in r) + " |" for r in rows(d)]
    lines += ["", d.summary_line(), ""]
    lines += [f"- only in A: {cell_label(x)}" for x in d.only_a] + [f"- only in B: {cell_label(x)}" for x in d.only_b]
    lines += [f"- note: {n}" for n in d.notes]
    return "\n".join(lines) + "\n"


def to_csv(d: Diff) -> str:
    buf = io.StringIO()
    fields = ["label", *KEY_FIELDS, "a_status", "b_status", "a_ops", "a_ci_low", "a_ci_high", "a_trials", "b_ops", "b_ci_low",
              "b_ci_high", "b_trials", "ratio", "p_value", "min_p", "ci_overlap", "verdict", "flag"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for rec in records(d):
        w.writerow({k: rec.get(k) for k in fields})
    for where, keys in (("only in A", d.only_a), ("only in B", d.only_b)):
        for key in keys:   # listed, so a script sees every cell of both runs
            w.writerow({**key, "label": cell_label(key), "verdict": where})
    return buf.getvalue()


def records(d: Diff) -> list[dict]:
    out = []
    for c in d.cells:
        rec = asdict(c)
        rec["a_ci_low"], rec["a_ci_high"] = rec.pop("a_ci")
        rec["b_ci_low"], rec["b_ci_high"] = rec.pop("b_ci")
        rec["label"] = c.label()
        out.append(rec)
    return out


def to_json(d: Diff) -> str:
    doc = {"schema": "threadbench.diff/1", "a": d.a, "b": d.b, "threshold": d.threshold, "alpha": d.alpha,
           "cells": records(d),
           "only_in_a": [{**k, "label": cell_label(k)} for k in d.only_a],
           "only_in_b": [{**k, "label": cell_label(k)} for k in d.only_b], "notes": d.notes,
           "counts": {v: d.count(v) for v in (FASTER, SLOWER, SAME, UNCLEAR, BROKE, FIXED, NOT_COMPARED)},
           "regressions": len(d.regressions), "improvements": len(d.improvements)}
    return json.dumps(results.finite(doc), indent=1, allow_nan=False) + "\n"


# diff's function for each of its text formats (outputs.names("diff"); "table" prints through print_rich)
RENDERERS = {"markdown": to_markdown, "csv": to_csv, "json": to_json}


def print_rich(d: Diff, console: Console) -> None:
    style = {FASTER: "green", FIXED: "green", SLOWER: "red", BROKE: "red", UNCLEAR: "yellow"}
    for h in _header(d):
        console.print(h, highlight=False, markup=False, soft_wrap=True)
    table = Table(header_style="bold")
    for i, name in enumerate(COLUMNS):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for c, r in zip(d.cells, rows(d)):
        s = style.get(c.verdict)
        table.add_row(*map(escape, r[:-1]), f"[{s}]{escape(r[-1])}[/{s}]" if s else escape(r[-1]))
    console.print(table)
    console.print(d.summary_line(), highlight=False)
    for x in d.only_a:
        console.print(f"  only in A: {cell_label(x)}", highlight=False, markup=False)
    for x in d.only_b:
        console.print(f"  only in B: {cell_label(x)}", highlight=False, markup=False)
    for n in d.notes:
        console.print(f"  note: {n}", highlight=False, markup=False, soft_wrap=True)


def _load(path):
    """A results file, or a folder holding the shard files of one sweep (merged: compare.shards, a missing
    shard said on stderr); a `report --format json` summary is refused with the reason (it has no trials)."""
    if Path(path).is_dir():
        runs = shards.merge([results.load(p) | {"_path": str(p)} for p in expand([path])])
        if len(runs) != 1:
            raise results.ResultsError(f"{path}: holds {len(runs)} runs; diff compares one run (or the shards of one "
                                       "sweep) with another")
        for line in runs[0].get("missing_shards", []):
            sys.stderr.write(f"threadbench: warning: {line}\n")
        return runs[0]
    if summary_runs(path) is not None:
        raise results.ResultsError(f"{path}: a `report --format json` summary holds medians, not the per-trial "
                             "figures diff tests; give the results files it was made from")
    run = results.load(path)
    if isinstance(run.get("sweep"), dict) and run["sweep"]["shards"] > 1:
        s = run["sweep"]
        sys.stderr.write(f"threadbench: warning: {path} is shard {s['shard']}/{s['shards']} of sweep {s['id']} "
                         "alone; give the folder of its shards to compare the whole sweep\n")
    return run


def diff(a_path, b_path, fmt: str = "table", threshold: float = THRESHOLD, alpha: float = ALPHA) -> Diff:
    """The `diff` command: load both runs, compare, print in the chosen format; returns the Diff."""
    outputs.check("diff", fmt)
    if not 0 < threshold < 10:
        raise BadInput(f"--threshold: must be a fraction greater than 0 (0.10 means 10%), got {threshold}")
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha: must be between 0 and 1, got {alpha}")
    a, b = _load(a_path), _load(b_path)
    a["_path"], b["_path"] = str(a_path), str(b_path)
    d = compare_runs(a, b, threshold, alpha)
    if not d.cells:
        raise BadInput(f"nothing to compare: {a_path} and {b_path} have no cell in common "
                       f"({len(d.only_a)} cells only in A, {len(d.only_b)} only in B); "
                       "diff compares the same backend, device, dtype, workload, mode and threads")
    if fmt == "table":
        print_rich(d, wide_console())
    else:
        sys.stdout.write(RENDERERS[fmt](d))
    return d
