"""What the figures support, decided once for every renderer: which strategy is best, which difference is
claimed (intervals disjoint and MIN_GAIN apart), the ceiling, server peaks and which strategy sustains more,
which cells are compared like-for-like (equal effective precision), whether a change between two runs
is significant (Mann-Whitney U, threshold), and why a cell scales as it does (its verdict from the time
split, and where a mode's curve bends).

Pure functions of summary records and result rows (plain dicts, as compare.stats gives them): no text, no
I/O, no framework. It sits at the bottom of compare.render and imports no renderer; tables, findings, the
server tables, diff, plot and publish call it and only lay out what it returns."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.stats import mannwhitneyu

from ..cells import FAILED, MODES, OK, THREADBENCH
from ..hostrules import DEVICE_BOUND_UTIL_PCT
from ..results import process_key, row_key
from ..serverrules import LONG, VALID, Settled, settle
from ..stats import ceiling_of, cell_status, median_ci

MIN_GAIN = 0.10   # smaller differences are not claimed even with disjoint intervals: run-to-run drift on a
                  # shared machine reaches a few percent, and a reader acts on differences, not on noise


# -- effective precision: what counts as like-for-like --------------------------------------------------
DTYPE_PRECISION = {"float64": "fp64", "float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
# Fallback for runs recorded before the `precision` column: a float32 cell whose largest error against the
# float64 reference exceeds this ran its matmuls in TF32 (10-bit mantissa: errors ~1e-4; exact float32 ~1e-7).
TF32_ERROR = 1e-5
SWITCH_FOR = {"tf32": "high", "fp32": "highest"}   # --fp32-precision value that gives this precision


def precision(r: dict) -> str:
    """The cell's effective matmul precision: the run's `precision` column when recorded, else derived
    from dtype and the float32 setting (and, for a framework without the switch, from its measured error)."""
    p = r.get("precision")
    if p:
        return p
    dtype = r.get("dtype")
    if dtype != "float32":
        return DTYPE_PRECISION.get(dtype, dtype)
    setting = r.get("fp32_precision")
    if setting == "high":
        return "tf32"
    if setting == "native" and (r.get("rel_err") or 0) > TF32_ERROR:
        return "tf32"
    return "fp32"


def fill_precision(recs: list[dict]) -> list[dict]:
    """Give every record a `precision` (when the run did not record one): a framework without the float32
    switch ("native") counts as TF32 when any cell of its backend/device/dtype measured a TF32-sized error,
    so its crashed cells (no error measured) land in the same group as its measured ones."""
    tf32 = {(r.get("machine"), r["backend"], r["device"]) for r in recs
            if not r.get("precision") and r.get("dtype") == "float32" and r.get("fp32_precision") == "native"
            and (r.get("rel_err") or 0) > TF32_ERROR}
    for r in recs:
        if not r.get("precision"):
            native_tf32 = r.get("fp32_precision") == "native" and (r.get("machine"), r["backend"], r["device"]) in tf32
            r["precision"] = "tf32" if native_tf32 and r.get("dtype") == "float32" else precision(r)
    return recs


class PrecisionSwitch(NamedTuple):
    """`--fp32-precision setting` would run `backend device` at `precision`, matching `matches`."""
    setting: str
    backend: str
    device: str
    precision: str
    matches: str        # "backend device" of the group it would then pair with


def precision_switch(groups: list[tuple[str, str, str, str]]) -> PrecisionSwitch | None:
    """Which --fp32-precision setting would add a like-for-like pair, from (backend, device, precision,
    fp32_precision setting) of the groups measured; None when a pair exists or no switch would make one."""
    by_p: dict[str, set[str]] = {}
    for backend, _, p, _ in groups:
        by_p.setdefault(p, set()).add(backend)
    if any(len(b) > 1 for b in by_p.values()):
        return None
    for backend, device, p, setting in groups:
        for other, odev, op, osetting in groups:
            if other != backend and op != p and osetting in SWITCH_FOR.values() and p in SWITCH_FOR:
                return PrecisionSwitch(SWITCH_FOR[p], other, odev, p, f"{backend} {device}")
    return None


def like_for_like_pairs(groups: list[str], precision_of: dict[str, str]) -> list[tuple[str, str]]:
    """(group, base) for every group whose effective precision an earlier group shares: each is divided by
    the first group of its precision, never across precisions."""
    base_of: dict[str, str] = {}
    for g in groups:
        base_of.setdefault(precision_of[g], g)
    return [(g, base_of[precision_of[g]]) for g in groups if base_of[precision_of[g]] != g]


# -- throughput cells -------------------------------------------------------------------------------------
def measured(r: dict) -> bool:
    """The cell has a throughput: ok (a failed cell never shows one) and a figure."""
    return r["status"] == OK and r.get("ops_per_s") is not None


def clearly_faster(a: dict, b: dict) -> bool:
    """The claim rule: a's throughput beats b's when the intervals are disjoint (a's low above b's high) and
    the medians are MIN_GAIN apart."""
    lo, hi = a.get("ci_low"), b.get("ci_high")
    if None in (lo, hi, a.get("ops_per_s"), b.get("ops_per_s")) or not b["ops_per_s"]:
        return False
    return lo > hi and a["ops_per_s"] >= (1 + MIN_GAIN) * b["ops_per_s"]


def sequential(recs: list[dict]) -> dict | None:
    """The one-request-at-a-time figure: the sequential cell, else threads ×1."""
    seq = [r for r in recs if r["mode"] == "sequential" and measured(r)]
    if seq:
        return seq[0]
    one = [r for r in recs if r["mode"] == "threads" and r["threads"] == 1 and measured(r)]
    return one[0] if one else None


def best_strategy(recs: list[dict]) -> dict | None:
    """The fastest measured cell of a strategy a server could use (every mode but offline: compare.cells.MODES)."""
    usable = [r for r in recs if measured(r) and r["mode"] in MODES and MODES[r["mode"]].strategy]
    return max(usable, key=lambda r: r["ops_per_s"]) if usable else None


def is_ceiling(mode: str) -> bool:
    return mode in MODES and MODES[mode].ceiling


def ceiling(recs: list[dict]) -> dict | None:
    """The best ceiling cell (a mode marked ceiling in compare.cells.MODES: offline at every k, processes at
    every N), only when every ceiling configuration of the group was measured: one of them missing (too slow,
    failed, skipped) leaves no ceiling (ceiling_missing says why), never a lower one standing in. The one
    definition: compare.stats.ceiling_of, which %-of-ceiling reads too."""
    return ceiling_of(recs)[0]


def ceiling_missing(recs: list[dict]) -> str | None:
    """Why the group has no ceiling although it ran ceiling configurations ("offline ×4 k=64: too_slow")."""
    return ceiling_of(recs)[1]


def threads_vs_processes(recs: list[dict]) -> tuple[dict, dict, str | None] | None:
    """(threads at its best N, processes at its best N, the mode clearly faster or None); None when either
    has no figure."""
    best = {}
    for mode in ("threads", "processes"):
        cells = [r for r in recs if r["mode"] == mode and measured(r)]
        if cells:
            best[mode] = max(cells, key=lambda r: r["ops_per_s"])
    if len(best) < 2:
        return None
    t, p = best["threads"], best["processes"]
    winner = "processes" if clearly_faster(p, t) else "threads" if clearly_faster(t, p) else None
    return t, p, winner


def over_devices(recs: list[dict]) -> tuple[dict, list[dict]] | None:
    """(one device's best strategy, the measured cells of each multi-device mode (replicas), fewest devices
    first) where both exist: does N devices give N times one device's best? clearly_faster decides a gain."""
    one, many = best_strategy(recs), [r for r in recs if r["mode"] in MODES and MODES[r["mode"]].axis == "devices"
                                      and measured(r)]
    return (one, sorted(many, key=lambda r: (r["mode"], r["threads"]))) if one is not None and many else None


CLIENT_STRATEGIES = [m.name for m in MODES.values()   # the ways a server could spread single requests over N
                     if m.strategy and m.throughput and m.axis == "threads"]


def strategy_wins(recs: list[dict]) -> list[tuple[dict, dict]]:
    """(winner, loser) for every pair of client strategies (threads, streams, batched, processes), each at its
    best N, where clearly_faster holds: the claimed differences between them, in the order of
    CLIENT_STRATEGIES."""
    best = {}
    for mode in CLIENT_STRATEGIES:
        cells = [r for r in recs if r["mode"] == mode and measured(r)]
        if cells:
            best[mode] = max(cells, key=lambda r: r["ops_per_s"])
    modes = list(best)
    out = []
    for i, a in enumerate(modes):
        for b in modes[i + 1:]:
            if clearly_faster(best[a], best[b]):
                out.append((best[a], best[b]))
            elif clearly_faster(best[b], best[a]):
                out.append((best[b], best[a]))
    return out


def gil_pairs(recs: list[dict]) -> list[tuple[dict, dict]]:
    """(GIL on, GIL off) for every cell measured both ways under one free-threaded interpreter (same Python,
    same framework: the GIL is all that differs), both with a figure. A cell asked to run GIL-off whose GIL
    came back on has its own label (compare.cells.interpreter_label) and pairs with nothing: never counted
    as free-threaded. The default interpreter is no side of a pair."""
    on: dict[tuple, dict] = {}
    for r in recs:
        label = r.get("interpreter") or ""
        if label.endswith(" GIL on") and measured(r):
            on[(label.removesuffix(" GIL on"), *_gil_cell(r))] = r
    out = []
    for r in recs:
        label = r.get("interpreter") or ""
        if label.endswith(" GIL off") and measured(r):
            if (pair := on.get((label.removesuffix(" GIL off"), *_gil_cell(r)))) is not None:
                out.append((pair, r))
    return out


def _gil_cell(r: dict) -> tuple:
    return tuple(r.get(k) for k in ("machine", "backend", "device", "dtype", "fp32_precision", "intra_op_threads",
                                     "workload", "size", "mode", "threads", "k"))


def more_threads_hurt(recs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(mode, its fastest cell, the largest N clearly slower than it) for every client strategy over N
    (threads, streams, batched, processes) where adding threads or processes cost throughput."""
    out = []
    for mode, spec in MODES.items():
        if spec.axis != "threads" or not spec.strategy or not spec.throughput:
            continue
        cells = sorted((r for r in recs if r["mode"] == mode and measured(r)), key=lambda r: r["threads"])
        if len(cells) < 2:
            continue
        peak = max(cells, key=lambda r: r["ops_per_s"])
        worse = [r for r in cells if r["threads"] > peak["threads"] and clearly_faster(peak, r)]
        if worse:
            out.append((mode, peak, worse[-1]))
    return out


def framework_pairs(bests: list[tuple[tuple, dict]]) -> list[tuple[tuple, dict, tuple, dict, bool]]:
    """(group a, its best, group b, its best, a clearly faster) for every pair of frameworks of one precision,
    a the faster median (bests as fastest_first gives them): each difference the claim rule passes, and the
    pairs it does not."""
    return [(ga, a, gb, b, clearly_faster(a, b)) for i, (ga, a) in enumerate(bests) for gb, b in bests[i + 1:]
            if ga[0] != gb[0]]


def fastest_first(groups: dict[tuple, list[dict]]) -> list[tuple[tuple, dict]]:
    """(group, its best strategy), fastest first; groups without a figure left out."""
    bests = sorted(((g, best_strategy(recs)) for g, recs in groups.items()),
                   key=lambda x: -(x[1] or {}).get("ops_per_s", 0))
    return [(g, b) for g, b in bests if b is not None]


# -- server cells: the peak valid rate -------------------------------------------------------------------
SERVER_MODES = [m.name for m in MODES.values() if not m.throughput]
CELL = ("machine", "backend", "device", "dtype", "fp32_precision", "interpreter", "workload", "size", "mode", "threads")


# why a peak is not bracketed (open_end); format.open_end says it in words
NONE_FAILED, FAILED_ONCE, DISAGREED, NO_LONG_ABOVE, NO_LONG_PEAK = (
    "none failed", "failed once", "disagreed", "no long step above", "no long step at the peak")


def _search(steps: list[dict]) -> tuple[Settled, dict | None]:
    """One process's rate search, its rows in the order run: what they settle (serverrules.settle: the peak
    below every rate a long step failed, the lowest repeated or long failure above it, whether long steps
    confirmed both) and the row at the peak (its long step where it ran one)."""
    ordered = sorted(steps, key=lambda r: r["trial"] or 0)
    settled = settle((r["offered_rate"], r["verdict"] == VALID, r.get("step_kind")) for r in ordered)
    at = [r for r in ordered if r["offered_rate"] == settled.peak and r["verdict"] == VALID]
    return settled, next((r for r in reversed(at) if r.get("step_kind") == LONG), at[-1] if at else None)


def open_end(s: Settled) -> tuple[str, float | None] | None:
    """Why a search's peak is not bracketed, as (OPEN_ENDS key, the rate it is about); None when it is
    (or when there is no peak)."""
    if s.peak is None or s.confirmed:
        return None
    if s.above is None:
        if s.unsettled_above is None:
            return NONE_FAILED, None
        return (FAILED_ONCE if s.rates[s.unsettled_above].runs == 1 else DISAGREED), s.unsettled_above
    if not s.rates[s.above].long:
        return NO_LONG_ABOVE, s.above
    return NO_LONG_PEAK, s.peak


def peaks(rows: list[dict]) -> list[dict]:
    """One record per server cell. From one process (_search): `peak` the highest rate its steps settled
    valid and `above` the lowest settled failure above it, only where long steps confirmed both (the peak
    lies in [peak, above) to the search's precision; a re-run's noise can move either end by a step); else
    `above` None and `open` says why (open_end: a failure that ran once, which a stall can make; no long
    step at an end; no failure above). From several (--repeats), each
    process searched on its own: `peak` is the median of their peaks (a process with no valid rate counts as
    0), `low`-`high` its distribution-free interval at `level` (stats.median_ci), `above` None; the best
    of the processes is never the figure; `median_repeat` names the median process. `steps`: every process's
    rows sorted by rate (each row's "repeat" says whose)."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:  # a cell per load generator too: LoadGen's verdicts are not pooled with threadbench's
        if r["mode"] in SERVER_MODES:
            cells.setdefault((*(r[k] for k in CELL), generator(r)), []).append(r)
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
        rec["open"] = None
        if len(procs) <= 1:
            settled, at = _search(steps)
            peak, above = settled.peak, settled.above if settled.confirmed else None
            rec["open"] = open_end(settled)
        else:
            searches = sorted(((_search(ps), rep) for rep, ps in procs.items()), key=lambda x: x[0][0].peak or 0.0)
            values = [x[0][0].peak or 0.0 for x in searches]
            mid = median_ci(values)
            middle, rec["median_repeat"] = searches[(len(searches) - 1) // 2]  # the median process (lower if even)
            peak = float(np.median(values)) or None
            above, at = None, middle[1] if peak is not None else None
            if peak is not None:
                rec.update(low=mid[0], high=mid[1], level=mid[2])
        rec.update(peak=peak, above=above, p99_at_peak=at and at["lat_p99_ms"], lag_at_peak=at and at["lag_p99_ms"])
        out.append(dict(zip((*CELL, "load_generator"), key)) | rec)
    return out


def generator(r: dict) -> str:
    """Who issued a server row's queries and judged its rate (compare.cells.LOAD_GENERATORS); a row from
    before the field: threadbench."""
    return r.get("load_generator") or THREADBENCH


def shows_rate(r: dict) -> bool:
    """A server cell shows a rate: ok, with no wrong output (a failed cell shows none anywhere)."""
    return r["status"] == OK and not r["errors"]


def sustains_more(a: dict, b: dict) -> bool:
    """Server cell a sustains a higher rate than b (peaks() records), and the peaks are MIN_GAIN apart. From
    one search each: the brackets [peak, above) do not overlap (b's ends at or below a's peak; an unbracketed
    peak is only a lower end, so it never ends). From several processes each: the intervals of the medians are
    disjoint, as for throughput. A cell of each kind: a's lowest end lies above b's highest."""
    if a["peak"] is None or b["peak"] is None:
        return False
    a_low = a["low"] if a.get("low") is not None else a["peak"]
    b_high = b["high"] if b.get("high") is not None else b["above"]
    if b_high is None:
        return False
    apart = a_low > b_high if b.get("high") is not None else a_low >= b_high
    return apart and a["peak"] >= (1 + MIN_GAIN) * b["peak"]


# -- two runs: is a cell's change significant --------------------------------------------------------------
THRESHOLD = 0.10   # diff's default: a smaller change is "same", however significant
ALPHA = 0.05       # diff's default significance level
PROCESSES, WINDOWS = "processes", "windows"   # what the test compares (CellDiff.unit)
FASTER, SLOWER, SAME, UNCLEAR, BROKE, FIXED, NOT_COMPARED = (
    "faster", "slower", "same", "unclear", "broke", "fixed", "not compared")
IMPROVEMENT, REGRESSION = "improvement", "regression"


def min_p_value(n1: int, n2: int) -> float:
    """The smallest two-sided p an exact Mann-Whitney U test can give with these sample sizes (no ties)."""
    return min(1.0, 2.0 / math.comb(n1 + n2, n1)) if n1 and n2 else 1.0


def samples(trials: list[float], medians: list[float], other_trials: list[float],
            other_medians: list[float]) -> tuple[str, list[float], list[float]]:
    """What the test compares: per-process medians where both sides have >= 2 processes, else windows."""
    if len(medians) >= 2 and len(other_medians) >= 2:
        return PROCESSES, medians, other_medians
    return WINDOWS, trials, other_trials


@dataclass
class Change:
    """A cell's change from A to B, as diff reports it."""
    ratio: float | None = None          # B / A
    p_value: float | None = None        # two-sided Mann-Whitney U on the samples
    min_p: float | None = None          # the smallest p these sample counts can give
    ci_overlap: bool | None = None
    verdict: str = NOT_COMPARED
    flag: str | None = None             # IMPROVEMENT | REGRESSION | None


def judge_change(a_status: str, b_status: str, a_ops: float | None, b_ops: float | None,
                 a_ci: tuple, b_ci: tuple, ta: list[float], tb: list[float], threshold: float,
                 alpha: float) -> Change:
    """Flagged only when both hold: the change is beyond the threshold and the test says it is not noise
    (p < alpha); beyond the threshold but not confirmed is UNCLEAR, never silently SAME. ok in A and failed
    in B is a regression (BROKE), the reverse an improvement (FIXED)."""
    c = Change()
    if a_status == OK and b_status == OK and a_ops and b_ops is not None:
        c.ratio = b_ops / a_ops
        if None not in a_ci and None not in b_ci:
            c.ci_overlap = a_ci[0] <= b_ci[1] and b_ci[0] <= a_ci[1]
        if len(ta) >= 2 and len(tb) >= 2:
            c.min_p = min_p_value(len(ta), len(tb))
            if len(set(ta) | set(tb)) == 1:   # every trial identical: nothing to test
                c.p_value = 1.0
            else:
                c.p_value = float(mannwhitneyu(tb, ta, alternative="two-sided").pvalue)
        if abs(c.ratio - 1) < threshold:
            c.verdict = SAME
        elif c.p_value is not None and c.p_value < alpha:
            c.verdict, c.flag = (FASTER, IMPROVEMENT) if c.ratio > 1 else (SLOWER, REGRESSION)
        else:
            c.verdict = UNCLEAR
    elif a_status == OK and b_status in FAILED:
        c.verdict, c.flag = BROKE, REGRESSION
    elif a_status in FAILED and b_status == OK:
        c.verdict, c.flag = FIXED, IMPROVEMENT
    return c


def too_few_to_tell(c: Change, alpha: float) -> bool:
    """An UNCLEAR change whose sample counts could never reach p < alpha: more trials would decide it."""
    return c.verdict == UNCLEAR and (c.min_p is None or c.min_p >= alpha)


# -- why a cell scales as it does: its verdict, from where each request's time went ------------------------
# A request's wall time in its own thread (framework call + synchronise) splits into running (the thread's
# CPU clock), waiting for a core (Linux's run delay) and blocked: neither, i.e. on the GIL, a lock, a sleep,
# I/O, the device, or another thread doing its work (compare.measure.split says what is read and how).
# Every threshold the verdict reads is here, with its reason; the verdicts, first that holds:
DEVICE_BUSY = DEVICE_BOUND_UTIL_PCT / 100   # device-bound: busy >= 90% of the window, so the device sets the pace
#                    (compare.hostrules' threshold; from NVML it means "kept busy", not "every SM full")
RUNNING = 0.70      # host-bound: the thread runs >= 70% of its request, so its own work (compute on a CPU, or
#                     dispatch to a device) is the pace; below, at least 30% of the request is waiting
CORE_WAIT = 0.20    # core-bound: >= 20% of a request runnable without a core, and no less than it is blocked:
#                     the cores hold it up, not a lock;
CORES_BUSY = 0.90   # ... or the machine's cores >= 90% busy over the window
CELL_SHARE = 0.5    # ... with this cell's process(es) holding at least half of them: whatever else the threads
#                     wait for (the GIL between their ops, say), more of them cannot add throughput. (Without
#                     Linux's run delay, this is the only test.)
GIL_RUNNABLE = (0.7, 1.3)  # GIL-bound: threads of one process that take turns, one at a time, the rest blocked:
#                     the GIL's rule (or a lock's: the split cannot tell them apart). At least 0.7 of them
#                     runnable (running or waiting for a core: on a loaded machine the one holding the GIL
#                     also waits for a core) and at most 1.3 running at once (beyond, some run together).
#                     Running, not runnable, bounds it above: each hand-over of the GIL wakes a thread that
#                     waits for a core a moment, so four threads taking turns on idle cores are 1.5 runnable
HELPER_CORES = 0.3  # off-thread: the process keeps >= 0.3 cores busy beyond its measuring threads, and more than
#                     they do: the request's work runs on the framework's own threads (MLX's evaluation, an
#                     intra-op pool) or the batcher's, while the request's thread waits
# wait-bound: none of these: the thread is blocked and nothing measured is saturated (a sleep, I/O, a device
# that is not busy): more threads overlap more waits
DEVICE_BOUND, HOST_BOUND, CORE_BOUND, GIL_BOUND, LOCK_BOUND, OFF_THREAD, WAIT_BOUND = (
    "device-bound", "host-bound", "core-bound", "GIL-bound", "lock-bound", "off-thread", "wait-bound")
WHYS = (DEVICE_BOUND, HOST_BOUND, CORE_BOUND, GIL_BOUND, LOCK_BOUND, OFF_THREAD, WAIT_BOUND)   # in the order tried


def why(r: dict) -> str | None:
    """A measured cell's verdict (one of WHYS) from its split (compare.stats.split_summary); None for a cell
    without a figure or without a split (measured before it, or a mode that records none)."""
    if not measured(r) or r.get("run_share") is None:
        return None
    if r.get("device_busy") is not None and r["device_busy"] >= DEVICE_BUSY:
        return DEVICE_BOUND
    if own_share(r) >= RUNNING and (r["threads"] < 2 or running(r) >= RUNNING * r["threads"]):
        return HOST_BOUND   # several threads: all of them run so, not only the ones that completed requests
    wait, blocked = r.get("core_wait_share"), r.get("blocked_share") or 0.0
    own, proc = r.get("own_cores"), r.get("proc_cores")
    if (wait is not None and wait >= CORE_WAIT and wait >= blocked) or saturated(r):
        return CORE_BOUND
    spec = MODES.get(r["mode"])
    if (spec is not None and spec.one_process and r["threads"] >= 2
            and runnable(r) >= GIL_RUNNABLE[0] and running(r) <= GIL_RUNNABLE[1]):
        # taking turns without a GIL (a cell that ran with it off): a lock's rule, never the GIL's
        return LOCK_BOUND if (r.get("interpreter") or "").endswith(" GIL off") else GIL_BOUND
    if own is not None and proc is not None and proc - own >= max(HELPER_CORES, own):
        return OFF_THREAD
    return WAIT_BOUND


# A cell whose processes ran more of their own cores beyond the measuring threads in the later timed windows
# than in the first: something outside the measured threads started between them and shared the host with
# what was timed. The output check's spinning OpenBLAS threads did until 9857216 (+9.5 cores on a 16-core
# host, from the second window on); a framework's own pool that is busy from the start does not count.
BACKGROUND_GROWTH = 1.0   # cores


def background_growth(rows: list[dict]) -> dict[tuple, float]:
    """Per cell (results.row_key) whose ok rows record the process's and its measuring threads' cores: the
    median over its processes of (the cores beyond the measuring threads in its later windows, their median,
    less those in its first window); only cells where that is BACKGROUND_GROWTH or more."""
    windows: dict[tuple, dict[int, float]] = {}
    for r in rows:
        if r.get("status") == OK and r.get("trial") is not None and None not in (r.get("own_cores"), r.get("proc_cores")):
            windows.setdefault(process_key(r), {})[r["trial"]] = r["proc_cores"] - r["own_cores"]
    grown: dict[tuple, list[float]] = {}
    for key, by_trial in windows.items():
        later = [v for t, v in by_trial.items() if t > 0]
        if 0 in by_trial and later:
            grown.setdefault(key[:-1], []).append(float(np.median(later)) - by_trial[0])
    return {cell: g for cell, values in grown.items() if (g := float(np.median(values))) >= BACKGROUND_GROWTH}


def starved(rows: list[dict]) -> dict[tuple, int]:
    """Per cell (results.row_key) of several threads of one process: how many of its timed windows, over all its
    processes, one of its threads completed no request in. Its throughput counts what completed, but its
    latencies and its split read only the threads that ran: a thread can be starved of the GIL for a whole
    window by a holder that releases it for a moment in every request and takes it straight back (split-gil's
    numpy forward: 1.2 s), or of a core by the OS."""
    out: dict[tuple, int] = {}
    for r in rows:
        spec = MODES.get(r.get("mode"))
        if (r.get("status") == OK and r.get("min_thread_ops") == 0 and (r.get("threads") or 1) >= 2
                and spec is not None and spec.one_process):
            key = row_key(r)
            out[key] = out.get(key, 0) + 1
    return out


def saturated(r: dict) -> bool:
    """The machine's cores were all but all busy (CORES_BUSY) and this cell held at least CELL_SHARE of them."""
    host, proc, cores = r.get("host_cores"), r.get("proc_cores"), r.get("cores")
    return (None not in (host, proc) and bool(cores) and host >= CORES_BUSY * cores
            and proc >= CELL_SHARE * cores)


def own_share(r: dict) -> float:
    """The share of a request its thread ran its own work: its CPU clock's share (run_share), less the CPU time
    it spent spin-waiting in a synchronise that only waits for the device (spin_share, stats.split_summary)."""
    return r["run_share"] - (r.get("spin_share") or 0.0)


def own_cpu_ms(r: dict) -> float | None:
    """A request's CPU time on its thread (cpu_ms) less what it spent spin-waiting for the device (spin_share)."""
    if r.get("cpu_ms") is None:
        return None
    return r["cpu_ms"] - (r.get("spin_share") or 0.0) * (r.get("wall_ms") or 0.0)


def running(r: dict) -> float:
    """How many of a cell's measuring threads were running on average over its windows: the cores their own CPU
    clocks kept busy (own_cores), else threads x the running share of a request. The shares are of the requests
    a window completed, and a thread's time can also go outside them: waiting for the GIL's turn in the loop's
    own code, or starved of it for a whole window (a holder that releases the GIL for a moment in every
    request takes it straight back: split-gil's numpy forward, 1.2 s). Two threads of split-gil ran 1.03 cores
    while the requests they completed ran 2 x 63%, or 2 x 100% with one thread starved."""
    own = r.get("own_cores")
    spinning = r["threads"] * (r.get("spin_share") or 0.0)   # threads spin-waiting for the device: not running
    return max(0.0, own - spinning) if own is not None else r["threads"] * own_share(r)


def runnable(r: dict) -> float:
    """How many of a cell's measuring threads were runnable (running, or waiting for a core) on average over
    its windows: those running (running()) and, in the proportion a request's core wait bears to its running
    time, those waiting for a core."""
    run = own_share(r)
    return running(r) * (run + (r.get("core_wait_share") or 0.0)) / run if run > 0 else 0.0


# Where a mode's curve bends, from its fewest threads to its most (Bend): a request's wall time grew GREW
# times or more (else requests overlap), and the extra wall time is mostly the thread's own extra CPU time
# (COSTLIER_SHARE or more: each request costs more CPU) or not (the extra time is waiting)
GREW = 1.5            # a request's time grew at least 1.5x: something it shares ran out
COSTLIER_SHARE = 0.5  # at least half the extra wall time is extra CPU time on the request's own thread
FLAT = 1.25           # within 1.25x either way a time stayed flat (worded so): a shared machine's noise is 10-20%
OVERLAP, WAITING, COSTLIER = "overlap", "waiting", "costlier"


class Bend(NamedTuple):
    """How a request's time changed from the fewest threads to the most, in one mode of one group."""
    mode: str
    low: dict               # the cell with the fewest threads (summary record)
    high: dict              # the cell with the most
    wall: float             # high's wall time per request / low's
    cpu: float | None       # high's thread CPU time per request / low's
    cpu_share: float | None  # (high's CPU time - low's) / (high's wall time - low's): the extra time that is CPU
    device: float | None    # high's device time per request / low's, where a timer measured both
    kind: str               # OVERLAP, WAITING or COSTLIER


def bends(recs: list[dict]) -> list[Bend]:
    """For every mode over threads with two or more measured cells carrying a split, how a request's time
    changed from its fewest threads to its most (its verdict there is why(high))."""
    out = []
    for mode, spec in MODES.items():
        if spec.axis != "threads" or not spec.throughput:
            continue
        cells = sorted((r for r in recs if r["mode"] == mode and why(r) is not None and r.get("wall_ms")),
                       key=lambda r: r["threads"])
        if len(cells) < 2 or cells[0]["threads"] == cells[-1]["threads"]:
            continue
        low, high = cells[0], cells[-1]
        wall = high["wall_ms"] / low["wall_ms"]
        lo_cpu, hi_cpu = own_cpu_ms(low), own_cpu_ms(high)   # spin-waiting for the device is waiting
        cpu = hi_cpu / lo_cpu if hi_cpu and lo_cpu and lo_cpu > 0 else None
        extra = high["wall_ms"] - low["wall_ms"]
        share = ((hi_cpu - lo_cpu) / extra if cpu is not None and extra > 0 else None)
        device = high["device_ms"] / low["device_ms"] if high.get("device_ms") and low.get("device_ms") else None
        kind = (OVERLAP if wall < GREW else
                COSTLIER if share is not None and share >= COSTLIER_SHARE else WAITING)
        out.append(Bend(mode, low, high, wall, cpu, share, device, kind))
    return out
