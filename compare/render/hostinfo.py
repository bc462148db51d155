"""The host a run was measured on, as plain text lines: its calibration probe and load at the start and
end of the sweep, the launch rate per backend/device, what limited the GPU cells, warnings when the machine
was busy, and a note when two runs' hosts differ. No rich markup: report, publish, compare and diff print
these lines as they are.

Reads what compare.measure.host recorded (run["host_probe"], the `launch` probe cells, the rows'
gpu_util_* fields); a run that predates them yields no lines. Not a table renderer."""
from __future__ import annotations

import statistics

import workloads

from .. import hostrules
from ..cells import MODES, OK
from ..results import row_key
from ..stats import mean_batch

HOST_DIFFERS = 0.15  # probe rates (Python loop, numpy call, launch) more than 15% apart: larger than the
#                      repeat spread these probes show on one idle host, so the hosts run at different speeds
LAUNCH = "launch"    # the launch-rate probe workload (workloads/launch.py)


def _si(v: float | None) -> str:
    if v is None:
        return "—"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def snapshots(run: dict) -> tuple[dict | None, dict | None]:
    """(first start probe, last end probe) of the run; None where it was not taken (older runs, interrupts)."""
    probes = run.get("host_probe") or []
    start = next((p for p in probes if p.get("at") == "start"), None)
    end = next((p for p in reversed(probes) if p.get("at") == "end"), None)
    return start, end


def _both(start: dict | None, end: dict | None, get) -> str:
    vals = [get(p) if p else None for p in (start, end)]
    return " → ".join("—" if v is None else str(v) for v in vals)


def _rate(p: dict | None, name: str) -> float | None:
    return (((p or {}).get("cpu_speed") or {}).get(name) or {}).get("rate")


def calibration_lines(run: dict) -> list[str]:
    start, end = snapshots(run)
    if not (start or end):
        return []
    parts = []
    for name, label in (("python_loop", "Python loop"), ("numpy_call", "tiny numpy call")):
        ref = (start or end)["cpu_speed"][name]
        spreads = "/".join(f"{p['cpu_speed'][name]['spread']:.0%}" for p in (start, end) if p)
        parts.append(f"{label} {_both(start, end, lambda p: _si(_rate(p, name)))} {ref['unit']} "
                     f"(spread over {ref['repeats']} repeats: {spreads})")
    mhz = (start or end)["cpu_speed"].get("freq_mhz")
    line = "host probe, single core (start → end): " + "; ".join(parts) + (f"; clock {mhz} MHz" if mhz else "")
    loops = [r for p in run.get("host_probe") or [] if (r := _rate(p, "python_loop")) is not None]
    if len(loops) > 2:   # a merged sweep: every shard's start and end, which the two ends above can hide
        line += (f"; over all {len(loops)} probes (each shard's start and end) Python loop "
                 f"{_si(min(loops))}–{_si(max(loops))}")
    return [line]


def load_lines(run: dict) -> list[str]:
    start, end = snapshots(run)
    if not (start or end):
        return []
    cpus = (start or end)["load"].get("cpu_count")
    avg = _both(start, end, lambda p: (p["load"]["load_avg"] or [None])[0])
    busy = _both(start, end, lambda p: f"{p['load']['cpu_busy_pct']:.0f}%")
    line = f"load (start → end): load average {avg} on {cpus} CPUs; CPU busy {busy} while threadbench was idle"
    for p in (start, end):
        top = p["load"]["top_processes"] if p else []
        if top:
            line += f"; busiest others at {p['at']}: " + ", ".join(f"{t['name']} {t['cpu_pct']:.0f}%" for t in top[:3])
    out = [line]
    gpu = (start or end)["gpu"]
    if gpu.get("available"):
        ends = {d["index"]: d for d in ((end or {}).get("gpu") or {}).get("devices", [])}
        for d in gpu["devices"]:
            e = ends.get(d["index"])
            util = f"{_pct(d.get('util_pct'))} → {_pct(e.get('util_pct')) if e else '—'}"
            mem = f"{d['mem_used_mb']:,} → {e['mem_used_mb']:,}" if e else f"{d['mem_used_mb']:,} → —"
            out.append(f"GPU {d['index']} {d['name']} (driver {gpu.get('driver')}): busy {util}, "
                       f"memory used {mem} of {d['mem_total_mb']:,} MB; other processes: "
                       + (", ".join(_proc(p) for p in d["processes"]) or "none listed"))
    elif _measured_gpu(run):
        out.append(f"GPU load not recorded: {gpu.get('why') or hostrules.NVML_MISSING}")
    return out


def _pct(v) -> str:
    return "—" if v is None else f"{v:.0f}%"


def _proc(p: dict) -> str:
    return f"{p['name']} (pid {p['pid']}" + (f", {p['mem_mb']:,} MB)" if p.get("mem_mb") is not None else ")")


def _measured_gpu(run: dict) -> bool:
    return any(r["device"] not in hostrules.GPU_DEVICES_OFF for r in run["rows"])


# -- busy warnings ---------------------------------------------------------------------------------------
def busy_warnings(run: dict) -> list[str]:
    """One line per sign that other work competed with the measurement, at the start or the end."""
    out = []
    start, end = snapshots(run)
    if start and start["load"].get("load_avg"):
        avg, cpus = start["load"]["load_avg"][0], start["load"].get("cpu_count") or 1
        probes = [p for p in (start, end) if p]
        direct = [p["load"].get("cpu_busy_pct") for p in probes]
        if avg > hostrules.BUSY_LOAD_FRACTION * cpus:
            high = (f"1-minute load average {avg:.2f} on {cpus} CPUs "
                    f"(above {hostrules.BUSY_LOAD_FRACTION:g} per CPU)")
            if all(b is not None and b < hostrules.QUIET_CPU_PCT for b in direct):  # the load is the minute before
                out.append(f"busy minute before the start: {high}, yet the CPU was "
                           + " and ".join(f"{b:.0f}% busy at {p['at']}" for b, p in zip(direct, probes))
                           + " while threadbench was idle: work that ended before the run (an earlier run, say) "
                           "or came and went between those samples")
            else:
                out.append(f"busy machine at start: {high}: other work competed for the cores")
    for p in (start, end):
        if not p:
            continue
        busy = p["load"].get("cpu_busy_pct")
        if busy is not None and busy > hostrules.BUSY_CPU_PCT:
            top = ", ".join(f"{t['name']} {t['cpu_pct']:.0f}%" for t in p["load"]["top_processes"][:3])
            out.append(f"busy machine at {p['at']}: CPU {busy:.0f}% busy while threadbench was idle (above "
                       f"{hostrules.BUSY_CPU_PCT:.0f}%)" + (f"; busiest: {top}" if top else ""))
        for d in (p.get("gpu") or {}).get("devices", []):
            if d["processes"]:
                out.append(f"busy GPU {d['index']} at {p['at']}: other processes on it: "
                           + ", ".join(_proc(q) for q in d["processes"]))
            if d.get("util_pct") is not None and d["util_pct"] > hostrules.BUSY_GPU_UTIL_PCT:
                out.append(f"busy GPU {d['index']} at {p['at']}: {d['util_pct']:.0f}% utilisation with no "
                           f"threadbench work on it (above {hostrules.BUSY_GPU_UTIL_PCT:.0f}%)")
    return out


# -- launch rate and what limited each cell ---------------------------------------------------------------
def _cells(rows: list[dict]) -> dict[tuple, list[dict]]:
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault(row_key(r), []).append(r)
    return cells


def _median_ops(rs: list[dict]) -> float | None:
    vals = [r["ops_per_s"] for r in rs if r["ops_per_s"] is not None]
    return statistics.median(vals) if vals and rs[0]["status"] == OK else None


def launch_rates(rows: list[dict]) -> dict[tuple, float]:
    """(backend, device, dtype, fp32_precision) -> median tiny synchronised ops/s of its launch probe."""
    out = {}
    for key, rs in _cells(rows).items():
        if rs[0]["workload"] == LAUNCH and (v := _median_ops(rs)) is not None:
            out[(rs[0]["backend"], rs[0]["device"], rs[0]["dtype"], rs[0]["fp32_precision"])] = v
    return out


def _requests_per_forward(rs: list[dict]) -> float:
    r = rs[0]
    if r["mode"] in MODES and MODES[r["mode"]].axis == "k":
        return float(r["k"])
    hists = [x["batch_hist"] for x in rs if x.get("batch_hist")]
    if hists:
        return mean_batch(hists) or 1.0
    return 1.0


def bound_labels(rows: list[dict]) -> dict[tuple, tuple[str | None, str]]:
    """row_key -> (label, reason) for every measured (ok) cell that is not a probe and has no time split:
    "cpu", "host-bound", "device-bound", "mixed", or None with why it is not known (compare.hostrules.bound).
    A cell with a split has its verdict instead (compare.render.analysis.why: the tables' `why` column)."""
    launch = launch_rates(rows)
    out = {}
    for key, rs in _cells(rows).items():
        r = rs[0]
        ops = _median_ops(rs)
        if r["workload"] in workloads.PROBES or ops is None or any(x.get("call_ms") is not None for x in rs):
            continue
        out[key] = hostrules.bound(r["device"], r.get("gpu_util_mean"), ops / _requests_per_forward(rs),
                           launch.get((r["backend"], r["device"], r["dtype"], r["fp32_precision"])))
    return out


def bound_lines(run: dict) -> list[str]:
    rows = run["rows"]
    lines = []
    rates = launch_rates(rows)
    if rates:
        lines.append("launch rate (one tiny op + synchronise, ops/s): "
                     + "; ".join(f"{'/'.join(k[:3])}{_prec(k)} {_si(v)}" for k, v in rates.items()))
    counts: dict[str, dict[str, int]] = {}
    for key, (label, _) in bound_labels(rows).items():
        if label != "cpu":
            counts.setdefault(f"{key[0]}/{key[1]}/{key[2]}", {}).setdefault(label or "not known", 0)
            counts[f"{key[0]}/{key[1]}/{key[2]}"][label or "not known"] += 1
    if counts:
        lines.append(f"what limited the GPU cells (GPU busy < {hostrules.HOST_BOUND_UTIL_PCT:.0f}%: host-bound, ≥ "
                     f"{hostrules.DEVICE_BOUND_UTIL_PCT:.0f}%: device-bound; without NVML, forwards/s ≥ "
                     f"{hostrules.LAUNCH_BOUND_FRACTION:.0%} of the launch rate: host-bound): "
                     + "; ".join(f"{k}: " + ", ".join(f"{n} {lab}" for lab, n in sorted(c.items()))
                                 for k, c in counts.items()))
    return lines


def _prec(k: tuple) -> str:
    return f" ({k[3]})" if k[2] == "float32" else ""


def lines(run: dict) -> list[str]:
    """Everything above for one run, in the order a reader needs it (warnings come from busy_warnings)."""
    return calibration_lines(run) + load_lines(run) + bound_lines(run)


# -- two hosts -------------------------------------------------------------------------------------------
def _gpu_names(run: dict) -> set[str]:
    start, _ = snapshots(run)
    gpu = (start or {}).get("gpu") or {}
    if gpu.get("available"):
        return {d["name"] for d in gpu["devices"]}
    return {str(env.get("device_name")) for key, env in run["backend_env"].items()
            if key.rsplit("/", 1)[-1] not in hostrules.GPU_DEVICES_OFF}


def _best_rate(run: dict, name: str) -> float | None:
    rates = [v for p in snapshots(run) if p and (v := _rate(p, name))]
    return max(rates) if rates else None  # the least disturbed reading; load is warned about separately


def host_differences(a: dict, b: dict) -> list[str]:
    """One note line when A's and B's hosts differ (CPU model, GPU, or a probe rate more than HOST_DIFFERS
    apart), else nothing."""
    found = []
    if a["host"].get("cpu") != b["host"].get("cpu"):
        found.append(f"CPU {a['host'].get('cpu')} vs {b['host'].get('cpu')}")
    ga, gb = _gpu_names(a), _gpu_names(b)
    if ga and gb and ga != gb:
        found.append(f"GPU {', '.join(sorted(ga))} vs {', '.join(sorted(gb))}")
    pairs = [(label, _best_rate(a, name), _best_rate(b, name))
             for name, label in (("python_loop", "Python loop"), ("numpy_call", "tiny numpy call"))]
    la, lb = launch_rates(a["rows"]), launch_rates(b["rows"])
    pairs += [(f"launch {'/'.join(k[:3])}{_prec(k)}", la[k], lb[k]) for k in la.keys() & lb.keys()]
    for label, va, vb in pairs:
        if va and vb and abs(vb / va - 1) > HOST_DIFFERS:
            found.append(f"{label} {_si(va)} vs {_si(vb)}/s ({vb / va - 1:+.0%})")
    if not found:
        return []
    busy = [name for name, run in (("A", a), ("B", b)) if busy_warnings(run)]
    why = (f"; {' and '.join(busy)} ran on a busy machine, so the load may explain a speed difference"
           if busy else "")
    return [f"the hosts differ ({'; '.join(found)}; more than {HOST_DIFFERS:.0%} counts){why}: part of every "
            "ratio is the host, not the change"]

