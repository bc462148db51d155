"""From long-format rows (one per cell process and trial) to one summary row per cell: median throughput
with a confidence interval whose real level is stated, spread, latency percentiles, speedup, %-of-ceiling
and %-of-peak. Not a renderer: every figure here is plain data that tables, csv, json and plots show.

How a cell's interval is made (two levels: fresh processes, then windows inside each):
- A cell measured in P >= 2 fresh processes (`compare --repeats P`): each process's windows give that
  process's median; the cell's figure is the median of the P process medians, and its interval the
  distribution-free order-statistic interval of the median (`median_ci`) over the process medians. So the
  interval is as wide as what varies between processes (start-up, memory layout, clocks, other load), which is
  what a re-run sees; window-to-window noise is inside each process median. Its level is exact and reported
  (`ci_level`): 50% with 2 processes, 75% with 3, 93.8% with 5, 96.9% with 6.
  Why not a bootstrap: with the few processes a sweep can afford, a (two-level) bootstrap's percentile
  interval is too narrow (it sees (P-1)/P of the variance and uses normal quantiles); order statistics are
  exact for any P and any distribution, and deterministic.
- A cell of a sweep that stops adaptively (`--target-ci`: its run in `summarize`'s `adaptive`), once it has
  the rule's first processes: the rule's interval and level (`stopping.Rule.interval`), which stay true
  although the number of processes depended on the data (compare/stopping.py says why): 90.6% for 5 to 15.
- A cell measured in one process (the default): the same interval over its windows, marked
  `ci_scope = "windows"`: it covers within-process variation only, not what a re-run would show.
- A cell whose status is not ok, in any of its processes, has no throughput at all (ops_per_s, CI, speedup,
  tflops, %-of-ceiling are null); its per-trial rows in the results file keep what was measured.

Where each request's time went (compare.measure.split; SPLIT_COLUMNS): each field is the median over a
process's windows, then the median over its processes (as the throughput), for ok cells; from it the shares
of a request's wall time (call + synchronise) spent in synchronise, running on a CPU, waiting for a core and
blocked (neither). The device's busy share is the backend timer's where it has one, else NVML's utilisation
(`busy_source` says which). On an accelerator whose synchronise only waits (Backend.sync_waits), the CPU time
a thread spends in it is a spin-wait for the device: `spin_share` is that share of a request (the verdicts
count it as waiting, not as the thread's own work; run_share still counts it, as the CPU clock does). Cells
measured before the split carry None throughout."""
from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import polars as pl
from scipy.stats import binom

from workloads import PROBES

from .cells import MODES, OK, PRECEDENCE, SPLIT_FIELDS, UNAVAILABLE, UNSUPPORTED, axis_label
from .results import INT_FIELDS, ROW_FIELDS, STR_FIELDS
from .stopping import LEVEL, Rule, rule

CELL_KEYS = ["machine", "backend", "device", "dtype", "fp32_precision", "intra_op_threads", "interpreter", "workload",
             "size", "mode", "threads", "k"]
# interpreter: None for the default one (every run before --python), else its label with the GIL's setting
GROUP_KEYS = ["machine", "backend", "device", "dtype", "fp32_precision", "intra_op_threads", "interpreter", "workload",
              "size"]
PEAK_WORKLOAD = "matmul"
PROBE_WORKLOADS = list(PROBES)  # measured to calibrate (peak, launch rate), not reported as workloads
THROUGHPUT_MODES = [m.name for m in MODES.values() if m.throughput]  # server modes: rate steps, their own tables
CEILING_MODES = [m.name for m in MODES.values() if m.ceiling]
UNSTABLE_IQR = 0.10  # a cell whose windows spread more than this inside a process (IQR / median) is UNSTABLE
SCOPE_PROCESSES, SCOPE_WINDOWS = "processes", "windows"   # what a cell's interval covers (ci_scope)

_SCHEMA = {f: pl.Utf8 for f in STR_FIELDS}
_SCHEMA.update({f: pl.Int64 for f in INT_FIELDS})
_SCHEMA.update({f: pl.Float64 for f in ROW_FIELDS if f not in _SCHEMA})


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_SCHEMA) if rows else pl.DataFrame(schema=_SCHEMA)


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free CI of the median from order statistics: (low, high, achieved coverage).

    The widest interval, [min, max], covers the median with probability 1 - 2 * 0.5**n; with 5 trials
    that is 93.8%, so the achieved level is reported rather than claimed."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    if n == 1:
        return float(x[0]), float(x[0]), 0.0
    best = (0, 1.0 - 2 * binom.cdf(0, n, 0.5))  # j = 0 -> [x_(1), x_(n)]
    for j in range(1, n // 2):  # narrower intervals while they still reach the level
        cover = 1.0 - 2 * binom.cdf(j, n, 0.5)
        if cover < level:
            break
        best = (j, cover)
    j, cover = best
    return float(x[j]), float(x[n - 1 - j]), float(cover)


def mean_batch(hists: list[str]) -> float | None:
    """Mean requests per forward of the dynamic batcher, over every trial's batch-size histogram."""
    total = Counter()
    for h in hists:
        total.update({int(k): v for k, v in json.loads(h).items()})
    forwards = sum(total.values())
    return sum(k * v for k, v in total.items()) / forwards if forwards else None


def process_medians(rows: list[dict]) -> dict[int, float]:
    """{repeat: median ops/s of that process's windows}, for the processes that produced windows."""
    by: dict[int, list[float]] = {}
    for r in rows:
        if r["ops_per_s"] is not None and math.isfinite(r["ops_per_s"]):
            by.setdefault(r["repeat"] or 0, []).append(r["ops_per_s"])
    return {p: float(np.median(v)) for p, v in sorted(by.items())}


def cell_interval(rows: list[dict], rule: Rule | None = None) -> tuple[float, float, float, float, str, int]:
    """(median, ci_low, ci_high, ci_level, ci_scope, processes) of one cell's rows, `rule` the stopping rule its
    sweep ran under (None: a fixed number of processes); see the module docstring."""
    medians = process_medians(rows)
    if rule is not None and len(medians) >= rule.first:
        median, low, high, level = rule.interval(list(medians.values()))
        return float(median), float(low), float(high), float(level), SCOPE_PROCESSES, len(medians)
    if len(medians) >= 2:
        values, scope = list(medians.values()), SCOPE_PROCESSES
    else:
        values, scope = [r["ops_per_s"] for r in rows if r["ops_per_s"] is not None], SCOPE_WINDOWS
    if not values:
        return math.nan, math.nan, math.nan, math.nan, scope, 0
    low, high, level = median_ci(values)
    return float(np.median(values)), low, high, level, scope, len(medians)


def cell_status(rows: list[dict]) -> tuple[str, str]:
    """The cell's status and cause: ok only when every process was ok; else the worst process's, named."""
    procs = {}
    for r in rows:
        procs.setdefault(r["repeat"] or 0, (r["status"], r["cause"] or ""))
    rank = {s: i for i, s in enumerate(PRECEDENCE)}   # a status this code does not know ranks first
    repeat, (status, cause) = min(procs.items(), key=lambda kv: (rank.get(kv[1][0], -1), kv[0]))
    if len(procs) > 1 and status != OK:
        cause = f"process {repeat + 1} of {len(procs)}: {status}" + (f": {cause}" if cause else "")
    return status, cause


def config_label(rec: dict) -> str:
    """A ceiling configuration's name, e.g. "offline k=64" (one thread) or "offline ×2 k=64"."""
    extra = axis_label(rec["mode"], rec["threads"], rec["k"])
    return rec["mode"] + (f" {extra}" if extra else "")


def _median(values) -> float | None:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.median(v)) if v else None


def _window_spread(rows: list[dict]) -> float | None:
    """How far a cell's windows disagree inside a process: IQR / median of each process's windows, the median
    over its processes. Not of all windows pooled: with --repeats that would be the spread between processes,
    which the interval already spans (pooled, 80 of 85 cells of this CPU's 5-process sweep were over 10%;
    within a process, 10)."""
    per: dict[int, list[float]] = {}
    for r in rows:
        if r["ops_per_s"] is not None:
            per.setdefault(r["repeat"] or 0, []).append(r["ops_per_s"])
    rel = [float(np.subtract(*np.quantile(w, [0.75, 0.25])) / np.median(w)) for w in per.values() if np.median(w)]
    return float(np.median(rel)) if rel else None


BUSY_TIMER, BUSY_NVML = "timer", "NVML"   # where a cell's device busy share came from (busy_source)


def _process_median(rows: list[dict], name: str) -> float | None:
    """The median over processes of each process's median over its windows of one field; None if unmeasured."""
    per: dict[int, list[float]] = {}
    for r in rows:
        if r.get(name) is not None and math.isfinite(r[name]):
            per.setdefault(r["repeat"] or 0, []).append(r[name])
    return float(np.median([np.median(v) for v in per.values()])) if per else None


def split_summary(rows: list[dict]) -> dict:
    """One cell's time split (SPLIT_COLUMNS), from its rows; every field None where nothing measured it."""
    out: dict = dict.fromkeys(SPLIT_COLUMNS)
    out.update({f: _process_median(rows, f) for f in SPLIT_FIELDS if f != "split_samples"})
    samples = [r["split_samples"] for r in rows if r.get("split_samples") is not None]
    out["split_samples"] = sum(samples) if samples else None
    out["cores"] = next((r["cores"] for r in rows if r.get("cores") is not None), None)
    if out["device_busy"] is not None:
        out["busy_source"] = BUSY_TIMER
    elif rows[0].get("gpu_util_mean") is not None:   # a process-level field: once per process
        util = [r["gpu_util_mean"] for r in {r["repeat"] or 0: r for r in rows}.values()
                if r["gpu_util_mean"] is not None]
        out["device_busy"], out["busy_source"] = float(np.median(util)) / 100, BUSY_NVML
    if out["call_ms"] is not None and out["sync_ms"] is not None:
        wall = out["wall_ms"] = out["call_ms"] + out["sync_ms"]
        if wall > 0:
            out["sync_share"] = out["sync_ms"] / wall
            if out["cpu_ms"] is not None:
                run = out["run_share"] = min(1.0, out["cpu_ms"] / wall)
                wait = out["core_wait_share"] = (None if out["core_wait_ms"] is None
                                                 else min(1.0 - run, out["core_wait_ms"] / wall))
                out["blocked_share"] = 1.0 - run - (wait or 0.0)
                if (rows[0]["device"] != "cpu" and rows[0].get("sync_waits") == 1
                        and out["sync_cpu_ms"] is not None):   # spinning in a wait for the device
                    out["spin_share"] = min(run, out["sync_cpu_ms"] / wall)
    return out


def _cell_record(rows: list[dict], rule: Rule | None) -> dict:
    first = rows[0]
    rec = {k: first[k] for k in CELL_KEYS}
    status, cause = cell_status(rows)
    ops, low, high, level, scope, procs = cell_interval(rows, rule)
    windows = [r["ops_per_s"] for r in rows if r["ops_per_s"] is not None]
    spread = _window_spread(rows)
    errors = [r["errors"] for r in rows if r["errors"] is not None]
    checked = [r["checked"] for r in rows if r["checked"] is not None]
    per_process = {}
    for r in rows:   # process-level fields repeat on every trial row of that process: count each once
        per_process.setdefault(r["repeat"] or 0, r)
    firsts = list(per_process.values())
    rec.update(
        run_id=first["run_id"], status=status, cause=cause,
        errors=sum(p["errors"] for p in firsts if p["errors"] is not None) if errors else None,
        checked=sum(p["checked"] for p in firsts if p["checked"] is not None) if checked else None,
        rel_err=max((p["rel_err"] for p in firsts if p["rel_err"] is not None), default=None),
        flops_per_op=first["flops_per_op"],
        peak_rss_mb=max((p["peak_rss_mb"] for p in firsts if p["peak_rss_mb"] is not None), default=None),
        peak_device_mb=max((p["peak_device_mb"] for p in firsts if p["peak_device_mb"] is not None), default=None),
        device_name=first["device_name"], framework_version=first["framework_version"],
        **{c: _median(r[c] for r in rows) for c in ("lat_p50_ms", "lat_p90_ms", "lat_p99_ms")},
        mean_batch=mean_batch([r["batch_hist"] for r in rows if r["batch_hist"]]),
        n_trials=len(windows), n_processes=procs, ci_scope=scope,
    )
    has = status == OK and not math.isnan(ops)   # a failed cell carries no throughput, anywhere
    rec.update(ops_per_s=ops if has else None, ci_low=low if has else None, ci_high=high if has else None,
               ci_level=level if has and not math.isnan(level) else None,
               iqr_rel=spread if has else None)
    rec["tflops"] = rec["ops_per_s"] * rec["flops_per_op"] / 1e12 if has and rec["flops_per_op"] else None
    rec["unstable"] = rec["iqr_rel"] is not None and rec["iqr_rel"] > UNSTABLE_IQR
    rec.update(split_summary(rows) if has else dict.fromkeys(SPLIT_COLUMNS))
    return rec


def _speedup_base(recs: list[dict]) -> tuple[float | None, str | None]:
    """The group's single-thread figure: its sequential cell, from ok cells only; threads ×1 only where the
    group has no sequential cell, and then named so ("threads ×1"). A failed sequential cell gives none."""
    seq = [r for r in recs if r["mode"] == "sequential"]
    if seq:
        ok = [r for r in seq if r["ops_per_s"] is not None]
        return (ok[0]["ops_per_s"], "sequential") if ok else (None, None)
    one = [r for r in recs if r["mode"] == "threads" and r["threads"] == 1 and r["ops_per_s"] is not None]
    return (one[0]["ops_per_s"], "threads ×1") if one else (None, None)


def ceiling_of(recs: list[dict]) -> tuple[dict | None, str | None]:
    """(the best ceiling configuration's record, why there is none). Every planned ceiling configuration must
    have a figure from right outputs: one that is missing (too slow, failed, skipped) leaves the ceiling
    missing with the reason, never a lower one silently standing in. A configuration the backend cannot run
    at all (unsupported, unavailable) is not one of its ceiling configurations."""
    configs = [r for r in recs if r["mode"] in MODES and MODES[r["mode"]].ceiling
               and r["status"] not in (UNSUPPORTED, UNAVAILABLE)]
    if not configs:
        return None, None
    missing = [f"{config_label(r)}: {r['status']}" for r in configs if r["ops_per_s"] is None]
    if missing:
        return None, "; ".join(missing)
    return max(configs, key=lambda r: r["ops_per_s"]), None


def stopping_rule(run: dict) -> Rule | None:
    """The stopping rule a run's sweep ran under (`compare --target-ci`: its settings keep the target, the
    first processes and the cap), or None for a fixed number of processes."""
    settings = run.get("settings") or {}
    if not settings.get("target_ci"):
        return None
    return rule(int(settings["repeats"]), int(settings["max_repeats"]), LEVEL)


def adaptive_rules(runs: list[dict]) -> dict[str, Rule]:
    """summarize's `adaptive` for these runs: run_id -> its stopping rule, for the runs that had one."""
    return {run["run_id"]: r for run in runs if (r := stopping_rule(run)) is not None}


def summarize(rows: list[dict], adaptive: dict[str, Rule] | None = None) -> pl.DataFrame:
    """One record per cell (CELL_KEYS), pooling its processes; columns as in SUMMARY_SCHEMA. `adaptive`: the
    stopping rule of each run (by run_id) whose sweep added processes only to the cells that needed them."""
    cells: dict[tuple, list[dict]] = {}
    for r in frame(rows).to_dicts():
        cells.setdefault(tuple(r[k] for k in CELL_KEYS), []).append(r)
    adaptive = adaptive or {}
    recs = [_cell_record(rs, adaptive.get(rs[0]["run_id"])) for rs in cells.values()]
    groups: dict[tuple, list[dict]] = {}
    for rec in recs:
        groups.setdefault(tuple(rec[k] for k in GROUP_KEYS), []).append(rec)
    peaks: dict[tuple, float] = {}
    for rec in recs:
        if rec["workload"] == PEAK_WORKLOAD and rec["tflops"] is not None:
            key = tuple(rec[k] for k in PEAK_KEYS)
            peaks[key] = max(peaks.get(key, 0.0), rec["tflops"])
    for group in groups.values():
        base, base_name = _speedup_base(group)
        ceiling, missing = ceiling_of(group)
        for rec in group:
            has = rec["ops_per_s"] is not None
            # a cell on several devices (replicas) is not held against one device's ceiling: read it against
            # one device's best instead (compare.render.analysis.over_devices)
            one_device = rec["mode"] not in MODES or MODES[rec["mode"]].axis != "devices"
            rec["base_ops"], rec["speedup_base"] = base, base_name
            rec["speedup"] = rec["ops_per_s"] / base if has and base else None
            rec["ceiling_ops"] = ceiling["ops_per_s"] if ceiling else None
            rec["ceiling_config"] = config_label(ceiling) if ceiling else None
            rec["ceiling_missing"] = missing
            rec["pct_ceiling"] = (100 * rec["ops_per_s"] / ceiling["ops_per_s"] if has and ceiling and one_device
                                  else None)
            # above its ceiling beyond both intervals: an anomaly to explain (shown as measured, never clamped)
            rec["above_ceiling"] = bool(has and ceiling and one_device and rec is not ceiling
                                        and _lower(rec) > _upper(ceiling))
            rec["peak_tflops"] = peaks.get(tuple(rec[k] for k in PEAK_KEYS))
            rec["pct_peak"] = (100 * rec["tflops"] / rec["peak_tflops"]
                               if rec["tflops"] is not None and rec["peak_tflops"] else None)
    return pl.DataFrame(recs, schema=SUMMARY_SCHEMA) if recs else pl.DataFrame(schema=SUMMARY_SCHEMA)


def _lower(rec: dict) -> float:
    return rec["ci_low"] if rec["ci_low"] is not None and not math.isnan(rec["ci_low"]) else rec["ops_per_s"]


def _upper(rec: dict) -> float:
    return rec["ci_high"] if rec["ci_high"] is not None and not math.isnan(rec["ci_high"]) else rec["ops_per_s"]


PEAK_KEYS = ["machine", "backend", "device", "dtype", "fp32_precision"]
# The summary's columns, in order. Added in threadbench.run/2: n_processes, ci_scope, speedup_base,
# ceiling_config, ceiling_missing, above_ceiling.
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    **{k: _SCHEMA[k] for k in CELL_KEYS},
    "ops_per_s": pl.Float64, "lat_p50_ms": pl.Float64, "lat_p90_ms": pl.Float64, "lat_p99_ms": pl.Float64,
    "run_id": pl.Utf8, "status": pl.Utf8, "cause": pl.Utf8, "errors": pl.Int64, "checked": pl.Int64,
    "rel_err": pl.Float64, "flops_per_op": pl.Int64, "peak_rss_mb": pl.Float64, "peak_device_mb": pl.Float64,
    "device_name": pl.Utf8, "framework_version": pl.Utf8,
    "ci_low": pl.Float64, "ci_high": pl.Float64, "ci_level": pl.Float64, "ci_scope": pl.Utf8,
    "n_trials": pl.Int64, "n_processes": pl.Int64, "mean_batch": pl.Float64, "iqr_rel": pl.Float64,
    "tflops": pl.Float64, "unstable": pl.Boolean, "base_ops": pl.Float64, "speedup_base": pl.Utf8,
    "ceiling_ops": pl.Float64, "ceiling_config": pl.Utf8, "ceiling_missing": pl.Utf8, "above_ceiling": pl.Boolean,
    "peak_tflops": pl.Float64, "speedup": pl.Float64, "pct_ceiling": pl.Float64, "pct_peak": pl.Float64,
    # threadbench.run/3: where each request's time went (split_summary), ms per op, cores, shares of its wall
    **{f: pl.Int64 if f == "split_samples" else pl.Float64 for f in SPLIT_FIELDS},
    "cores": pl.Int64, "busy_source": pl.Utf8, "wall_ms": pl.Float64, "sync_share": pl.Float64,
    "run_share": pl.Float64, "core_wait_share": pl.Float64, "blocked_share": pl.Float64,
    "spin_share": pl.Float64,
}
SPLIT_COLUMNS = (*SPLIT_FIELDS, "cores", "busy_source", "wall_ms", "sync_share", "run_share", "core_wait_share",
                 "blocked_share", "spin_share")


def workload_cells(summary: pl.DataFrame) -> pl.DataFrame:
    """The cells that measure a workload's throughput: no calibration probes, no server rate steps."""
    return summary.filter(~pl.col("workload").is_in(PROBE_WORKLOADS) & pl.col("mode").is_in(THROUGHPUT_MODES))
