"""The one place that turns numbers, statuses, precisions and cell names into text for a reader, and the
shape every table is laid out from (TableData, and the orders rows and column groups are sorted in).

Tables, findings, diff, plots and publish all spell a figure, a status or a backend's column group through
these functions, so a number or a label reads the same everywhere. Pure functions of plain values; no I/O,
no framework, no polars. It decides nothing about the data (compare.render.analysis does)."""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field

from ..cells import CRASH, DEFAULT_PYTHON, LOADGEN, OK, STATUSES, WRONG, axis_label, status_label
from . import analysis
from .analysis import (DISAGREED, DTYPE_PRECISION, FAILED_ONCE, NO_LONG_ABOVE, NO_LONG_PEAK, NONE_FAILED,
                       PrecisionSwitch, precision)


@dataclass
class TableData:
    """A table as plain strings: what every renderer (rich, markdown) lays out, and nothing more."""
    title: str
    columns: list[tuple[str, str]]  # (group, name); group "" for the row labels
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    n_labels: int | None = None     # leading row-label columns (left-aligned); None: those with group ""


BACKEND_ORDER = {"torch": 0, "mlx": 1}   # the question's two frameworks first, then the rest by name
DTYPE_ORDER = {"float32": 0, "bfloat16": 1, "float16": 2, "float64": 3}
PRECISION_ORDER = {"fp32": 0, "tf32": 1, "bf16": 2, "fp16": 3, "fp64": 4}

MISSING = "—"   # a value that does not exist for this cell (no figure, no ceiling measured, …)

UNSTABLE = "UNSTABLE"   # a verdict, not a status: an ok cell whose windows spread more than stats.UNSTABLE_IQR
VERDICT_MEANINGS = {
    UNSTABLE: "measured, but its windows spread more than 10% inside a process (IQR/median; with several "
              "processes, their median): re-run on a quiet machine",
}


def verdict_meanings() -> dict[str, str]:
    """The legend's line for each verdict word a table shows: every status's label and meaning (from
    compare.cells.STATUSES; ok has nothing to explain), then the verdicts that are not statuses."""
    return {s.label: s.meaning for s in STATUSES.values() if s.meaning} | VERDICT_MEANINGS


def why_meanings() -> dict[str, str]:
    """The legend's line for each verdict of why a cell scales as it does (analysis.WHYS), thresholds included."""
    a = analysis
    return {
        a.DEVICE_BOUND: f"the device was busy ≥ {a.DEVICE_BUSY:.0%} of the window (the backend's device timer, "
                        "else NVML's utilisation, which counts a period busy when any kernel runs): it sets the pace",
        a.HOST_BOUND: f"a request's thread runs ≥ {a.RUNNING:.0%} of its wall time (several measuring threads: "
                      f"≥ {a.RUNNING:.0%} of theirs too, by their CPU clocks): its own work (compute on a CPU, or "
                      "dispatch to a device) sets the pace (on a device, CPU time spent spin-waiting in a "
                      "synchronise that only waits counts as waiting, not as its own work)",
        a.CORE_BOUND: f"≥ {a.CORE_WAIT:.0%} of a request is spent runnable without a core (Linux's run delay), no "
                      f"less than it is blocked; or the machine's cores were ≥ {a.CORES_BUSY:.0%} busy, this cell "
                      f"holding ≥ {a.CELL_SHARE:.0%} of them: the cores are the limit (more threads only share them)",
        a.GIL_BOUND: f"of the threads of one process at least {a.GIL_RUNNABLE[0]:g} on average are runnable "
                     f"(running or waiting for a core) and at most {a.GIL_RUNNABLE[1]:g} running, while the others "
                     "are blocked: they take turns, the GIL's rule (or another lock's: the split cannot tell them "
                     "apart)",
        a.LOCK_BOUND: "as GIL-bound, in a cell that ran without the GIL (a free-threaded interpreter, GIL off): "
                      "they take turns on a lock of the framework's or the harness's",
        a.OFF_THREAD: f"a request's thread waits while the process keeps ≥ {a.HELPER_CORES:g} cores busy beyond its "
                      "measuring threads (and more than they do): the work runs on the framework's own threads "
                      "(MLX's evaluation, an intra-op pool) or the batcher's",
        a.WAIT_BOUND: "a request's thread is mostly blocked (a sleep, I/O, a device) and nothing measured is "
                      "saturated: more threads overlap more waits",
    }


def share(v: float | None) -> str:
    """A share of a request or of a window: 71%; — when missing."""
    return MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f}%"


def why_reason(r: dict) -> str | None:
    """A cell's verdict with the figures behind it, e.g. "GIL-bound: 74% of its threads' time blocked, 1.04
    of its 4 threads runnable at a time"; None without a verdict (analysis.why)."""
    a, word = analysis, analysis.why(r)
    if word is None:
        return None
    cores = f" of {r['cores']}" if r.get("cores") else ""
    device = (f", device busy {share(r['device_busy'])}" + (" (NVML)" if r.get("busy_source") == "NVML" else "")
              if r.get("device_busy") is not None else "")
    if word == a.DEVICE_BOUND:
        return (f"{word}: device busy {share(r['device_busy'])}"
                + (" (NVML)" if r.get("busy_source") == "NVML" else "")
                + f", the framework call {share(1 - r['sync_share'])} of a request")
    spin = r.get("spin_share") or 0.0
    spinning = f" ({share(spin)} spin-waiting in synchronise)" if spin >= 0.005 else ""
    if word == a.HOST_BOUND:
        runs = f"runs its own work {share(a.own_share(r))}" if spin else f"runs {share(r['run_share'])}"
        return f"{word}: its thread {runs} of a request" + device
    if word == a.CORE_BOUND:
        wait = (f"{share(r['core_wait_share'])} of a request waiting for a core"
                if r.get("core_wait_share") is not None else f"{share(1 - r['run_share'])} of a request not running")
        if a.saturated(r) and (r.get("core_wait_share") or 0) < (r.get("blocked_share") or 0):
            wait += f" and {share(r['blocked_share'])} blocked"
        # host and process are sampled apart, so their difference can fall a little below 0: none, then
        extra = (r["host_cores"] - r["proc_cores"]
                 if r.get("host_cores") is not None and r.get("proc_cores") is not None else None)
        other = ("" if extra is None else f", {extra:.1f} of them by other processes" if extra >= 0.05
                 else ", none of them by other processes")
        busy = f", {r['host_cores']:.1f}{cores} cores busy" if r.get("host_cores") is not None else ""
        return f"{word}: {wait}{busy}{other}" + device
    if word in (a.GIL_BOUND, a.LOCK_BOUND):
        runnable = a.runnable(r)   # of the threads' time, not only the requests' (analysis.running)
        return (f"{word}: {share(max(0.0, 1 - runnable / r['threads']))} of its threads' time blocked, "
                f"{runnable:.2f} of its {r['threads']} threads runnable at a time" + device)
    if word == a.OFF_THREAD:
        return (f"{word}: {share(r['sync_share'])} of a request in synchronise, its thread running "
                f"{share(r['run_share'])}, while the process ran {r['proc_cores'] - r['own_cores']:.1f} cores "
                f"beyond its measuring threads" + device)   # off-thread needs both figures (analysis.why)
    busy = f", {r['proc_cores']:.1f}{cores} cores busy" if r.get("proc_cores") is not None else ""
    if spin:
        return f"{word}: {share(r['blocked_share'] + spin)} of a request waiting{spinning}{busy}" + device
    return f"{word}: {share(r['blocked_share'])} of a request blocked{busy}" + device


# What a matmul really computes in (the `precision` column; Backend.effective_precision's vocabulary).
PRECISION_LABELS = {"fp64": "FP64", "fp32": "exact FP32", "tf32": "TF32", "bf16": "BF16", "fp16": "FP16"}


def num(v: float | None, digits: int = 3) -> str:
    """A throughput or a time: 1,234 from a thousand up, else 3 significant digits; — when missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def short(v: float | None) -> str:
    """Compact number for CI bounds: 26.0k, 812, 3.1M."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def pct(v: float | None) -> str:
    return MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f}%"


def times(v: float | None, digits: int = 2) -> str:
    """A ratio to a base: 1.52×."""
    return MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}×"


def ci(low: float | None, high: float | None) -> str:
    return f"{short(low)}–{short(high)}"


def figure(r: dict) -> str:
    """requests/s with its interval, as a finding quotes it: 12.3k [12.1k–12.6k] (the unit is said once,
    in the findings' heading)."""
    return f"{short(r['ops_per_s'])} [{ci(r.get('ci_low'), r.get('ci_high'))}]"


def ci_level(levels) -> str:
    """The header's CI label from the levels the cells achieved: "93.8% CI", or a range when they differ."""
    got = sorted({round(100 * x, 1) for x in levels if x is not None and not math.isnan(x) and x > 0})
    if not got:
        return "CI"
    if len(got) == 1:
        return f"{got[0]:g}% CI"
    return f"{got[0]:g}–{got[-1]:g}% CI"


def verdict(r: dict) -> str:
    """The cell's status in one word or two: ok, UNSTABLE, WRONG 3/5, CRASH SIGSEGV, too slow, …"""
    s = r["status"]
    if s == OK:
        return UNSTABLE if r.get("unstable") else status_label(OK)
    if s == WRONG:
        return f"{status_label(WRONG)} {r.get('errors')}/{r.get('checked')}"
    if s == CRASH:
        cause = r.get("cause") or ""
        if cause.startswith("killed by"):
            return f"{status_label(CRASH)} " + cause.split(":")[0].replace("killed by ", "")
        return status_label(CRASH)
    return status_label(s)


# C++ runtime text that names no cause
BOILERPLATE = ("terminate called after throwing an instance of", "terminate called recursively")


def verdict_kind(r: dict) -> str:
    """The verdict without its details (WRONG, CRASH, too slow, UNSTABLE, ok): what the legend explains."""
    if r["status"] == OK:
        return UNSTABLE if r.get("unstable") else status_label(OK)
    return status_label(r["status"])


def cause_line(cause: str | None, width: int = 160) -> str:
    """A cause on one line, its parts joined with "; ", C++ boilerplate dropped, cut between words."""
    text = " | ".join((cause or "").strip().splitlines())
    head, _, rest = text.partition(": ")
    parts = [p.strip().replace("what():", "").strip() for p in ([rest] if rest else []) and rest.split(" | ")]
    parts = [_before_boilerplate(p) for p in parts]   # also inside a part: "process 2 of 5: crash: ..."
    parts = [p for p in parts if p]
    line = f"{head}: {'; '.join(parts)}" if parts else (head if rest else text)
    return clip(" ".join(line.split()), width)


def _before_boilerplate(part: str) -> str:
    cut = min((part.find(b) for b in BOILERPLATE if b in part), default=-1)
    return part if cut < 0 else part[:cut].rstrip(": ").strip()


def clip(text: str, width: int) -> str:
    return textwrap.shorten(text, width=width, placeholder=" …") if len(text) > width else text


def precision_label(p: str) -> str:
    return PRECISION_LABELS.get(p, p)


def switch_hint(switch: PrecisionSwitch | None) -> str | None:
    """The setting that would add a like-for-like pair (analysis.precision_switch), as a sentence."""
    if switch is None:
        return None
    return (f"`--fp32-precision {switch.setting}` runs {switch.backend} {switch.device} at "
            f"{precision_label(switch.precision)}, matching {switch.matches}")


def group_label(r: dict, machines: int = 1, interpreters: bool = False) -> str:
    """A backend's column group: "torch cuda float32", "mlx gpu float32 (TF32)" when the dtype runs its
    matmuls at a lower precision than its name says; the machine in front when several are shown; the
    interpreter after it where it is not the default ("· CPython 3.13.5t GIL off"), and "· default" for the
    default's when `interpreters` (others are shown beside it)."""
    label = f"{r['backend']} {r['device']} {r['dtype']}"
    p = precision(r)
    if p != DTYPE_PRECISION.get(r["dtype"], p):
        label += f" ({precision_label(p)})"
    if r.get("interpreter") or interpreters:
        label += f" · {r.get('interpreter') or DEFAULT_PYTHON}"
    return f"{r['machine']}: {label}" if machines > 1 else label


def interpreter_order(label: str | None) -> tuple:
    """Sorts interpreters: the default first, then each other one with GIL on before GIL off (a GIL-off cell
    whose GIL came back on last)."""
    if not label:
        return ("", 0)
    gil = label.rsplit(" GIL ", 1)
    return (gil[0], {"on": 1, "off": 2}.get(gil[1], 3) if len(gil) > 1 else 0)


def mode_label(mode: str, threads: int, k: int) -> str:
    """"threads ×4", "offline k=64", "sequential" — one spelling, from compare.cells.axis_label."""
    where = axis_label(mode, threads, k)
    return f"{mode} {where}" if where else mode


GENERATOR_LABELS = {LOADGEN: "LoadGen"}   # a server cell another load generator drove says so after its strategy


def strategy(r: dict) -> str:
    """A server cell's strategy as people read it: "threads", or "threads (LoadGen)" where MLPerf LoadGen
    issued its queries and judged its rates (analysis.peaks records carry load_generator)."""
    name = r["mode"].removeprefix("server-")
    label = GENERATOR_LABELS.get(r.get("load_generator"))
    return f"{name} ({label})" if label else name


def peak_span(r: dict) -> str:
    """Where a server cell's peak (analysis.peaks) lies: [peak, above) from one search, the interval of the
    median over processes, or ≥ peak when not bracketed."""
    if r.get("low") is not None:
        return f"{short(r['low'])}–{short(r['high'])}"
    return f"[{short(r['peak'])}, {short(r['above'])})" if r["above"] is not None else f"≥ {short(r['peak'])}"


OPEN_ENDS = {  # analysis.open_end -> why a search's peak is not bracketed, in words ({} the rate it is about)
    NONE_FAILED: "no rate above it failed",
    FAILED_ONCE: "{}/s failed once, never run again",
    DISAGREED: "{}/s passed and failed, unsettled",
    NO_LONG_ABOVE: "{}/s failed twice, no long step",
    NO_LONG_PEAK: "no long step at the peak",
}


def open_end(r: dict) -> str:
    """Why a server cell's peak (analysis.peaks) is not bracketed, in words; "" when it is, or when the
    cell pools several processes (their interval stands instead)."""
    if not r.get("open") or r.get("low") is not None:
        return ""
    key, rate = r["open"]
    return OPEN_ENDS[key].format(short(rate) if rate is not None else "")


def intra_op(value) -> str:
    """intra-op threads as a reader wants it: the number, or "framework default" (never "None")."""
    return "framework default" if value in (None, "", 0) else str(value)


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    """Lines of at most `width` characters, broken between words only."""
    return textwrap.wrap(text, width=max(20, width), initial_indent=indent, subsequent_indent=" " * len(indent) + "  ",
                         break_long_words=False, break_on_hyphens=False) or [indent]


_VENDOR_NOISE = ("(R)", "(TM)", "(tm)", "NVIDIA ", "CPU ", " Processor", " HBM3", " HBM2e", " HBM2", " PCIe", " SXM5",
                 " SXM4", " SXM")


def hardware_name(name: str) -> str:
    """A device or CPU model as a reader names it: "NVIDIA H100 80GB HBM3" -> "H100 80GB",
    "Intel(R) Xeon(R) Platinum 8480C CPU @ 2.00GHz" -> "Intel Xeon Platinum 8480C"."""
    out = name.split(" @ ")[0]
    for noise in _VENDOR_NOISE:
        out = out.replace(noise, " " if noise.startswith(" ") and noise.endswith(" ") else "")
    out = " ".join(out.split())
    return (out[:-4] if out.endswith(" CPU") else out) or name


def revision(text: str | None) -> str | None:
    """A recorded threadbench revision without its provenance remarks: the commit (and "+dirty")."""
    return text.split()[0] if text else None
