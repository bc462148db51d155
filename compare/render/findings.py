"""Findings: per machine × workload × dtype, plain sentences that carry their numbers (best strategy and its
gain over sequential, where more threads hurt, threads against processes, why the best cell is as fast as
it is and why each mode's curve bends where it does, like-for-like, the ceiling, failures with their cause,
the server scenario's peaks); `brief` is one line each for the top of a page.

Every claim is what compare.render.analysis decides (clearly_faster, sustains_more, ...): this module only
words it. Pure functions of summary records and rows; no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field

from backends import known_failures

from ..cells import (DEFAULT_PYTHON, FAILED, GIL_BACK_ON, LOADGEN, MODES, OK, SKIPPED, THREADBENCH, TOO_SLOW,
                     status_label)
from ..stats import PROBE_WORKLOADS, THROUGHPUT_MODES
from . import format as fmt
from .analysis import (COSTLIER, DTYPE_PRECISION, FLAT, MIN_GAIN, OVERLAP, Bend, bends, best_strategy, ceiling,
                       ceiling_missing, clearly_faster, fastest_first, fill_precision, framework_pairs, generator,
                       gil_pairs, more_threads_hurt, over_devices, peaks, precision, precision_switch, sequential,
                       own_cpu_ms, shows_rate, strategy_wins, sustains_more, threads_vs_processes, why)
from .format import BACKEND_ORDER

UNITS = "figures are requests/s, median [interval of the median]"


@dataclass
class Finding:
    machine: str
    workload: str
    dtype: str
    sentences: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.machine} · {self.workload} · {self.dtype}" if self.machine else f"{self.workload} · {self.dtype}"


def _records(summary) -> list[dict]:
    return summary.to_dicts() if hasattr(summary, "to_dicts") else list(summary)


def _name(g: tuple) -> str:
    """(backend, device, precision[, interpreter]) as a sentence names it: "torch cpu", "torch cpu · CPython
    3.13.5t GIL off" (the interpreter: None where the scope has only the default)."""
    backend, device = g[0], g[1]
    return f"{backend} {device}" + (f" · {g[3]}" if len(g) > 3 and g[3] else "")


def _gil_sentences(recs: list[dict]) -> list[str]:
    """What the GIL costs, per backend and free-threaded interpreter: each cell measured with the GIL on and
    off, faster or slower without it where clearly_faster holds; whether threads without the GIL catch up
    with processes; and every cell asked to run without the GIL whose GIL came back on (left out)."""
    out = []
    per: dict[tuple, list[tuple[dict, dict]]] = {}
    for on, off in gil_pairs(recs):
        per.setdefault((on["backend"], on["device"], on["interpreter"].removesuffix(" GIL on")), []).append((on, off))
    for (backend, device, python), pairs in per.items():
        parts = []
        for on, off in sorted(pairs, key=lambda p: (list(MODES).index(p[0]["mode"]) if p[0]["mode"] in MODES else 99,
                                                    p[0]["threads"], p[0]["k"])):
            ratio = off["ops_per_s"] / on["ops_per_s"]
            verdict = (f"{fmt.times(ratio, 1)} faster without the GIL" if clearly_faster(off, on) else
                       f"{fmt.times(1 / ratio, 1)} slower without the GIL" if clearly_faster(on, off) else
                       "no clear difference")
            parts.append(f"{_cell(on)}: {verdict} ({fmt.figure(off)} off, {fmt.figure(on)} on)")
        sentence = f"The GIL under {python}, {backend} {device}, GIL off against on: " + "; ".join(parts) + "."
        off_cells = [off for _, off in pairs]
        if (found := threads_vs_processes(off_cells)) is not None:
            t, p, winner = found
            sentence += {
                "processes": f" Without the GIL, threads still trail processes: {_cell(p)} {fmt.figure(p)}, "
                             f"{fmt.times(p['ops_per_s'] / t['ops_per_s'], 1)} {_cell(t)} ({fmt.figure(t)}).",
                "threads": f" Without the GIL, threads beat processes: {_cell(t)} {fmt.figure(t)}, "
                           f"{fmt.times(t['ops_per_s'] / p['ops_per_s'], 1)} {_cell(p)} ({fmt.figure(p)}).",
            }.get(winner, f" Without the GIL, threads catch up with processes: no clear difference ({_cell(t)} "
                          f"{fmt.figure(t)}, {_cell(p)} {fmt.figure(p)}).")
        out.append(sentence)
    back = [r for r in recs if (r.get("interpreter") or "").endswith(GIL_BACK_ON)]
    for r in back:
        out.append(f"{r['backend']} {r['device']} {_cell(r)} under {r['interpreter']}: asked to run without the GIL, "
                   "it ran with it (an extension re-enabled it); left out of every claim about the GIL.")
    return out


def _cell(r: dict) -> str:
    return fmt.mode_label(r["mode"], r["threads"], r["k"])


def _threads_vs_processes(recs: list[dict]) -> str | None:
    """Threads or processes, each at its best N: the question a user serving from Python asks first."""
    found = threads_vs_processes(recs)
    if found is None:
        return None
    t, p, winner = found
    if winner == "processes":
        return (f"processes beat threads: {_cell(p)} {fmt.figure(p)}, "
                f"{fmt.times(p['ops_per_s'] / t['ops_per_s'], 1)} {_cell(t)} ({fmt.figure(t)})")
    if winner == "threads":
        return (f"threads beat processes: {_cell(t)} {fmt.figure(t)}, "
                f"{fmt.times(t['ops_per_s'] / p['ops_per_s'], 1)} {_cell(p)} ({fmt.figure(p)})")
    return (f"threads and processes show no clear difference ({_cell(t)} {fmt.figure(t)}; "
            f"{_cell(p)} {fmt.figure(p)})")


def _over_devices(recs: list[dict]) -> str | None:
    """Several devices against one device's best: the scaling a reader of a multi-GPU host asks for."""
    found = over_devices(recs)
    if found is None:
        return None
    one, many = found
    parts = [f"{_cell(r)} {fmt.figure(r)}, "
             + (f"{fmt.times(r['ops_per_s'] / one['ops_per_s'], 1)} one device's best"
                if clearly_faster(r, one) or clearly_faster(one, r) else "no clear difference from one device's best")
             + f" (ideal ×{r['threads']})" for r in many]
    return f"over devices, against one device's best ({_cell(one)} {fmt.figure(one)}): " + "; ".join(parts)


def _beats(a: dict, b: dict) -> str:
    """A claimed difference between two client strategies, each at its best N."""
    return (f"{fmt.strategy(a)} beat {fmt.strategy(b)}: {_cell(a)} {fmt.figure(a)}, "
            f"{fmt.times(a['ops_per_s'] / b['ops_per_s'], 2)} {_cell(b)} ({fmt.figure(b)})")


def _group_sentences(name: str, recs: list[dict]) -> list[str]:
    """One sentence for the best strategy and where more threads hurt; one per failure cause."""
    out, clauses = [], []
    seq, best = sequential(recs), best_strategy(recs)
    if best is not None and seq is not None:
        if best is not seq and clearly_faster(best, seq):
            clauses.append(f"best strategy {_cell(best)}, {fmt.figure(best)}, "
                           f"{fmt.times(best['ops_per_s'] / seq['ops_per_s'], 1)} sequential ({fmt.figure(seq)})")
        elif best is seq or best["ops_per_s"] <= seq["ops_per_s"]:
            clauses.append(f"no strategy beats sequential ({fmt.figure(seq)})")
        else:
            clauses.append(f"no strategy is clearly faster than sequential ({fmt.figure(seq)}); the best, "
                           f"{_cell(best)} at {fmt.figure(best)}, is within the intervals or less than "
                           f"{100 * MIN_GAIN:.0f}% above it")
    elif best is not None:
        clauses.append(f"best strategy {_cell(best)}, {fmt.figure(best)} (no sequential cell to compare)")
    hurt: dict[str, list[str]] = {}   # "threads" or "processes": what more of hurt
    for mode, peak, w in more_threads_hurt(recs):
        hurt.setdefault("threads" if MODES[mode].one_process else "processes", []).append(
            f"{mode} ×{w['threads']} {fmt.figure(w)} is {100 * (1 - w['ops_per_s'] / peak['ops_per_s']):.0f}% "
            f"below ×{peak['threads']} ({fmt.figure(peak)})")
    clauses += [f"more {what} hurt: " + "; ".join(parts) for what, parts in hurt.items()]
    if (vs := _threads_vs_processes(recs)) is not None:
        clauses.append(vs)
    clauses += [_beats(a, b) for a, b in strategy_wins(recs) if {a["mode"], b["mode"]} != {"threads", "processes"}]
    if (devices := _over_devices(recs)) is not None:
        clauses.append(devices)
    if clauses:
        out.append(f"{name}: " + "; ".join(clauses) + ".")
    failed: dict[tuple[str, str], list[str]] = {}
    known: dict[tuple[str, str], str] = {}   # what the backend knows of a failure (backends.known_failures)
    for r in recs:
        if r["status"] in FAILED:
            key = (fmt.verdict_kind(r), fmt.cause_line(r.get("cause"), 110))
            failed.setdefault(key, []).append(_cell(r))
            hint = next((h for text, h in known_failures(r["backend"]) if text in (r.get("cause") or "")), None)
            if hint:
                known.setdefault(key, hint)
    for (what, cause), where in failed.items():
        hint = known.get((what, cause))
        out.append(f"{name}: {what} in {', '.join(where)}" + (f" ({cause})" if cause else "")
                   + (f"; {hint}." if hint else "."))
    other: dict[tuple[str, str], list[str]] = {}   # unsupported, unavailable: said once per cause
    for r in recs:
        if r["status"] not in FAILED and r["status"] not in (OK, TOO_SLOW, SKIPPED):
            other.setdefault((status_label(r["status"]), fmt.cause_line(r.get("cause"), 90)), []).append(_cell(r))
    for (what, cause), where in other.items():
        if best is None:   # said only when it explains why this backend has no figure at all
            out.append(f"{name}: {len(where)} cell(s) {what}" + (f": {cause}." if cause else "."))
    slow = [_cell(r) for r in recs if r["status"] == TOO_SLOW]
    if slow:
        out.append(f"{name}: too slow for the timed window in {', '.join(slow)} (no figure; raise --duration).")
    reason = fmt.why_reason(best) if best else None
    if reason:
        out.append(f"{name}: at its best ({_cell(best)}) it is {reason}.")
    out += [_bend_sentence(name, b) for b in bends(recs)]
    return out


def _bend_sentence(name: str, b: Bend) -> str:
    """Why a mode's curve bends where it does: how a request's wall and CPU time changed from its fewest
    threads to its most (analysis.bends), and the verdict at the most."""
    lo, hi = b.low, b.high

    def grew(what: str, ratio: float, field: str, a: float | None = None, z: float | None = None) -> str:
        a, z = (lo[field], hi[field]) if a is None else (a, z)
        return f"{what} {fmt.times(ratio, 1)} ({fmt.num(a)} → {fmt.num(z)} ms)"
    wall = grew("a request's wall time", b.wall, "wall_ms")
    device = f", its device time {grew('', b.device, 'device_ms').strip()}" if b.device is not None else ""
    if b.kind == OVERLAP:
        says = f"{wall}{device}: requests overlap, the curve scales"
    elif b.cpu is None:
        says = f"{wall}{device}: the extra time is waiting"
    else:
        spun = lo.get("spin_share") or hi.get("spin_share")
        cpu = grew("its thread's own CPU time (spin-waiting for the device left out)" if spun else
                   "its thread's CPU time", b.cpu, "cpu_ms", own_cpu_ms(lo), own_cpu_ms(hi))
        if b.kind == COSTLIER:
            says = (f"{wall} and {cpu}{device}, {b.cpu_share:.0%} of the extra time: each request costs more CPU "
                    "(contention inside the framework or memory)")
        elif 1 / FLAT <= b.cpu <= FLAT:
            says = f"{wall} while {cpu} stayed flat{device}: the extra time is waiting"
        elif b.cpu < 1 / FLAT:
            says = f"{wall} while {cpu} fell{device}: the extra time is waiting"
        else:
            says = f"{wall} and {cpu}{device}, {max(b.cpu_share, 0):.0%} of the extra time: the rest is waiting"
    return (f"{name}: {b.mode} from ×{lo['threads']} to ×{hi['threads']}, {says}; at ×{hi['threads']} "
            f"{fmt.why_reason(hi)}.")


def _ceiling_sentence(named: list[tuple[str, list[dict]]]) -> list[str]:
    """One sentence for every backend's ceiling (analysis.ceiling: only from a complete set), its meaning said
    once; a backend whose set is incomplete is named with what is missing."""
    parts = []
    for name, recs in named:
        c, seq, missing = ceiling(recs), sequential(recs), ceiling_missing(recs)
        if c is not None:
            gain = f" ({fmt.times(c['ops_per_s'] / seq['ops_per_s'], 0)} sequential)" if seq else ""
            parts.append(f"{name} {fmt.short(c['ops_per_s'])} at {fmt.mode_label(c['mode'], c['threads'], c['k'])}{gain}")
        elif missing:
            parts.append(f"{name} none, not every configuration was measured ({missing.replace('_', ' ')})")
    if not parts:
        return []
    modes = ", ".join(m for m, spec in MODES.items() if spec.ceiling)
    return [f"Ceiling (the best of {modes} over every configuration run, given only when all were measured; "
            f"offline batches requests in the caller, so it is no client strategy): {'; '.join(parts)}."]


def executed(backend_env: dict) -> dict[tuple[str, str], str]:
    """(backend, device) -> how the framework executed, where its describe() recorded it: `execution` (e.g.
    "eager", "CUDA graphs (MLX_USE_CUDA_GRAPHS)") or a `cuda_graphs` flag. A run without either says nothing."""
    out = {}
    for key, env in backend_env.items():
        backend, _, device = key.partition("/")
        how = env.get("execution")
        if how is None and env.get("cuda_graphs") is not None:
            how = "CUDA graphs" if env["cuda_graphs"] else "no CUDA graphs"
        if how:
            out[(backend, device.split("/")[0])] = str(how)
    return out


def _like_for_like(groups: dict[tuple, list[dict]], how: dict[tuple[str, str], str] | None = None) -> list[str]:
    """Per effective precision measured by two or more frameworks, one sentence: the fastest best strategy
    against each other's best, a lead claimed only where clearly_faster holds; with how each executed
    (`how`, from executed()) where the runs recorded it, since on small batches a launch strategy (CUDA
    graphs against eager) differs as much as the framework."""
    out = []
    by_p: dict[str, list[tuple]] = {}
    for g in groups:
        by_p.setdefault(g[2:], []).append(g)   # one precision under one interpreter
    for (p, *_), gs in by_p.items():
        bests = fastest_first({g: groups[g] for g in gs})
        if len({g[0] for g, _ in bests}) < 2:
            continue
        (top, tb) = bests[0]
        ahead = [(g, b) for g, b in bests[1:] if clearly_faster(tb, b)]
        even = [(g, b) for g, b in bests[1:] if not clearly_faster(tb, b)]
        parts = []
        if ahead:
            parts.append(f"{_name(top)} is faster than " + ", ".join(
                f"{_name(g)} ({fmt.times(tb['ops_per_s'] / b['ops_per_s'], 1)}: {_cell(b)} {fmt.figure(b)})"
                for g, b in ahead))
        if even:
            parts.append(("no clear difference between " if not ahead else "not clearly faster than ")
                         + (f"{_name(top)} and " if not ahead else "")
                         + ", ".join(f"{_name(g)} ({_cell(b)} {fmt.figure(b)})" for g, b in even))
        rest = [f"{_name(ga)} is faster than {_name(gb)} ({fmt.times(a['ops_per_s'] / b['ops_per_s'], 1)})"
                for ga, a, gb, b, claimed in framework_pairs(bests[1:]) if claimed]   # the pairs below the top
        parts += rest
        ran = [f"{_name(g)} {how[(g[0], g[1])]}" for g, _ in bests if (g[0], g[1]) in (how or {})]
        out.append(f"Like-for-like at {fmt.precision_label(p)}, best against best ({_name(top)}: {_cell(tb)} "
                   f"{fmt.figure(tb)}): " + "; ".join(parts) + (f"; executed: {', '.join(ran)}" if ran else "") + ".")
    return out


# -- the server scenario ---------------------------------------------------------------------------------
def _server_label(r: dict) -> str:
    return f"{fmt.strategy(r)} ×{r['threads']}"


def _peak(r: dict, unit: str = "") -> str:
    """A server cell's peak with where it lies: "1k req/s [1k, 1.04k)", "5.74k [5.32k–6.51k]", or, not
    bracketed, "≥ 22.3k, not bracketed: 23.2k/s failed once, ..."."""
    if r.get("low") is None and r["above"] is None:
        return f"≥ {fmt.short(r['peak'])}{unit}, not bracketed: {fmt.open_end(r)}"
    span = f"[{fmt.peak_span(r)}]" if r.get("low") is not None else fmt.peak_span(r)
    return f"{fmt.short(r['peak'])}{unit} {span}"


def _no_rate(r: dict) -> str:
    """Why a server cell shows no rate: its failure, or the verdict of the lowest rate it tried."""
    if r["status"] != OK:
        return f"{status_label(r['status'])}" + (f": {fmt.cause_line(r.get('cause'), 90)}" if r.get("cause") else "")
    if r["errors"]:
        return f"wrong outputs ({r['errors']} of {r['checked']} checked)"
    if not r["steps"]:
        return "no rate step ran"
    low = r["steps"][0]
    said = f"at {fmt.short(low['offered_rate'])}/s, the lowest rate tried, {low['verdict'].removeprefix('invalid: ')}"
    p50, bound = low.get("lat_p50_ms"), low.get("bound_ms")
    if p50 is not None and bound and p50 <= bound / 2:   # the median request had half the bound to spare
        said += (f" while its p50 was {fmt.short(p50)} ms: the typical request met the bound, its slowest 1%"
                 " (stalls, not the load) did not")
    return said


def server_sentences(rows: list[dict]) -> dict[tuple, str]:
    """(machine, workload, size, dtype) -> the server scenario's sentence there, from the run's rows."""
    scopes: dict[tuple, dict[tuple, list[dict]]] = {}
    for r in peaks(rows):
        key = (r.get("machine") or "", r["workload"], r.get("size") or "default", r["dtype"])
        scopes.setdefault(key, {}).setdefault((r["backend"], r["device"]), []).append(r)
    out = {}
    for key, groups in scopes.items():
        parts = []
        for (backend, device), cells in sorted(groups.items(), key=lambda x: (BACKEND_ORDER.get(x[0][0], 5), x[0])):
            cells = [c for c in cells if c["status"] == OK or c["status"] in FAILED]  # unsupported: said elsewhere
            if not cells:
                continue
            shown = [c for c in cells if shows_rate(c)]
            valid = sorted((c for c in shown if c["peak"] is not None), key=lambda c: -c["peak"])
            name = f"{backend} {device}"
            if not valid:
                parts.append(f"{name}: no valid rate ("
                             + "; ".join(f"{_server_label(c)} {_no_rate(c)}" for c in cells) + ")")
                continue
            best = valid[0]
            open_end = fmt.open_end(best)
            clause = (f"{name}: best {_server_label(best)}, "
                      + (f"≥ {fmt.short(best['peak'])} req/s" if open_end else _peak(best, " req/s"))
                      + f" under its {fmt.short(best['bound_ms'])} ms bound"
                      + (f" (not bracketed: {open_end})" if open_end else ""))
            more = [c for c in valid[1:] if sustains_more(best, c)]
            unbracketed = [c for c in valid[1:] if c not in more and fmt.open_end(c)]  # its peak is a lower end
            even = [c for c in valid[1:] if c not in more and c not in unbracketed]
            if more:
                clause += ", more than " + ", ".join(
                    f"{_server_label(c)} ({_peak(c)}, {fmt.times(best['peak'] / c['peak'], 1)})"
                    for c in more)
            if even:
                clause += (", not clearly more than " if more else ", no clear difference from ") + ", ".join(
                    f"{_server_label(c)} ({_peak(c)})" for c in even)
            if unbracketed:
                clause += ", not compared with " + ", ".join(f"{_server_label(c)} ({_peak(c)})" for c in unbracketed)
            failed = [c for c in cells if c not in valid]
            if failed:
                clause += "; no valid rate in " + "; ".join(f"{_server_label(c)} ({_no_rate(c)})" for c in failed)
            parts.append(clause)
        if not parts:
            continue
        several = {c["n_processes"] for g in groups.values() for c in g if c.get("low") is not None}
        how = (f"the median of {'/'.join(map(str, sorted(several)))} processes' peaks [its interval]"
               if several else "[peak, lowest failing rate above it) where long steps confirmed both, else ≥ peak")
        drivers = {generator(c) for g in groups.values() for c in g}
        how += {frozenset({THREADBENCH}): "; queries from threadbench's own dispatcher",
                frozenset({LOADGEN}): "; queries from MLPerf LoadGen"}.get(frozenset(drivers), "")
        out[key] = (f"Server scenario (peak Poisson rate with p99 latency under the bound; {how}): "
                    + "; ".join(parts) + ".")
    return out


def findings(summary, rows: list[dict] | None = None, backend_env: dict | None = None) -> list[Finding]:
    """One Finding per machine × workload (× size) × dtype, in the order the summary lists them; `rows`
    (each with its machine label, as report.merge gives them) add the server scenario's sentence;
    `backend_env` (report.backend_env) how each framework executed, where recorded."""
    recs = fill_precision([r for r in _records(summary)
                           if r["workload"] not in PROBE_WORKLOADS and r["mode"] in THROUGHPUT_MODES])
    scopes: dict[tuple, list[dict]] = {}
    for r in recs:
        scopes.setdefault((r.get("machine") or "", r["workload"], r.get("size") or "default", r["dtype"]), []).append(r)
    server = server_sentences(rows) if rows else {}
    for key in server:
        scopes.setdefault(key, [])
    machines = len({k[0] for k in scopes})
    out = []
    for (machine, workload, size, dtype), part in scopes.items():
        groups: dict[tuple, list[dict]] = {}
        others = any(r.get("interpreter") for r in part)   # then the default interpreter is named too
        for r in part:
            python = r.get("interpreter") or (DEFAULT_PYTHON if others else None)
            groups.setdefault((r["backend"], r["device"], r["precision"], python), []).append(r)
        order = sorted(groups, key=lambda g: (BACKEND_ORDER.get(g[0], 5), g[0], g[1], g[2],
                                              fmt.interpreter_order(g[3] if g[3] != DEFAULT_PYTHON else None)))
        f = Finding(machine if machines > 1 else "", workload + ("" if size == "default" else f" ({size})"), dtype)
        several_p = {g[0]: 0 for g in order}
        for g in order:
            several_p[g[0]] += 1
        named = []
        for g in order:
            name = _name(g) + (f" at {fmt.precision_label(g[2])}" if several_p[g[0]] > 1 or g[2] != DTYPE_PRECISION.get(dtype) else "")
            f.sentences += _group_sentences(name, groups[g])
            named.append((name, groups[g]))
        f.sentences += _ceiling_sentence(named)
        f.sentences += _gil_sentences(part)
        lfl = _like_for_like({g: groups[g] for g in order}, executed(backend_env or {}))
        with_figure = [g for g in order if best_strategy(groups[g]) is not None]
        if not lfl and len({g[0] for g in with_figure}) > 1:   # two frameworks with figures, at different precisions
            settings = [(g[0], g[1], g[2], groups[g][0].get("fp32_precision")) for g in with_figure]
            hint = fmt.switch_hint(precision_switch(settings))
            ran = ", ".join(f"{_name(g)} {fmt.precision_label(g[2])}" for g in with_figure)
            lfl = [f"No like-for-like pair (equal effective precision) was measured: {ran}"
                   + (f"; {hint}." if hint else ".")]
        f.sentences += lfl
        if (machine, workload, size, dtype) in server:
            f.sentences.append(server[(machine, workload, size, dtype)])
        if not f.sentences:
            f.sentences.append("Nothing was measured.")
        out.append(f)
    return out


def _brief_peak(r: dict) -> str:
    """A server peak for the brief: its interval or bracket, or "≥ peak" where it is not bracketed."""
    if r.get("low") is None and r["above"] is None:
        return f"≥ {fmt.short(r['peak'])} (not bracketed)"
    return _peak(r)


def brief(summary, machine_names: dict[str, str] | None = None, rows: list[dict] | None = None,
          backend_env: dict | None = None) -> list[str]:
    """The answer in one line per machine × workload × precision, for the top of a page: each framework's best
    strategy with its interval and its gain over sequential (its interval decides, as in the findings), the
    claimed differences between threads, processes and the batcher, what limits the best (its verdict, where
    the run has the time split), which framework is faster like-for-like, and, from `rows`, each framework's
    server peak — claims only where analysis says they hold."""
    recs = fill_precision([r for r in _records(summary)
                           if r["workload"] not in PROBE_WORKLOADS and r["mode"] in THROUGHPUT_MODES])
    scopes: dict[tuple, dict[tuple, list[dict]]] = {}
    for r in recs:
        key = (r.get("machine") or "", r["workload"], r["precision"], r.get("interpreter"))
        scopes.setdefault(key, {}).setdefault((r["backend"], r["device"], r["precision"]), []).append(r)
    served: dict[tuple, dict[str, list[dict]]] = {}
    unserved: dict[tuple, set[str]] = {}   # backends whose server cells ran and found no valid rate at all
    for r in peaks(rows or []):
        key = (r.get("machine") or "", r["workload"], precision(r), r.get("interpreter"))
        if shows_rate(r) and r["peak"] is not None:
            served.setdefault(key, {}).setdefault(r["backend"], []).append(r)
            scopes.setdefault(key, {})
        elif r["status"] == OK and r["steps"]:
            unserved.setdefault(key, set()).add(r["backend"])
    out = []
    for (machine, workload, p, python), groups in scopes.items():
        parts = []
        for g in sorted(groups, key=lambda g: (BACKEND_ORDER.get(g[0], 5), g[0], g[1])):
            recs_g, seq, best = groups[g], sequential(groups[g]), best_strategy(groups[g])
            if best is None:
                slow = any(r["status"] == TOO_SLOW for r in recs_g)
                parts.append(f"{g[0]}: " + ("too slow for this run's window (no figure)" if slow else "no figure"))
                continue
            gain = (f", {fmt.times(best['ops_per_s'] / seq['ops_per_s'], 1)} sequential"
                    if seq is not None and best is not seq and clearly_faster(best, seq) else
                    ", not clearly above sequential" if seq is not None and best is not seq else "")
            wins = "".join(f", {fmt.strategy(a)} beat {fmt.strategy(b)} {fmt.times(a['ops_per_s'] / b['ops_per_s'], 1)}"
                           for a, b in strategy_wins(recs_g))
            limit = why(best)   # why the best is as fast as it is, where the run has the split
            parts.append(f"{g[0]} best {_cell(best)} {fmt.figure(best)}{gain}{wins}"
                         + (f", {limit} there" if limit else ""))
        bests = fastest_first(groups)
        if len({g[0] for g, _ in bests}) > 1:
            how = executed(backend_env or {})
            ran = [f"{g[0]} {how[(g[0], g[1])]}" for g, _ in bests if (g[0], g[1]) in how]
            pairs = [f"{ga[0]} {fmt.times(a['ops_per_s'] / b['ops_per_s'], 1)} {gb[0]}" if claimed else
                     f"{ga[0]} ≈ {gb[0]}" for ga, a, gb, b, claimed in framework_pairs(bests)]
            parts.append("like-for-like: " + ", ".join(pairs) + (f"; executed: {', '.join(ran)}" if ran else ""))
        server = served.get((machine, workload, p, python), {})
        none = sorted(unserved.get((machine, workload, p, python), set()) - set(server),
                      key=lambda b: (BACKEND_ORDER.get(b, 5), b))
        if server or none:
            tops = [max(cells, key=lambda c: c["peak"])
                    for _, cells in sorted(server.items(), key=lambda x: (BACKEND_ORDER.get(x[0], 5), x[0]))]
            parts.append("server peak: " + ", ".join(
                [f"{c['backend']} {_server_label(c)} {_brief_peak(c)}" for c in tops]
                + [f"{b} no valid rate under its bound" for b in none]))
        name = (machine_names or {}).get(machine, machine)
        out.append(f"**{name}** · {workload} · {fmt.precision_label(p)}" + (f" · {python}" if python else "")
                   + ": " + "; ".join(parts) + ".")
    return out


def to_lines(found: list[Finding], width: int = 100, where: str = "") -> list[str]:
    """Plain text, wrapped between words at `width`; `where` names the machine when there is one."""
    head = (f"Findings{' on ' + where if where else ''} ({UNITS}; a difference is claimed only when the "
            f"intervals are disjoint and at least {100 * MIN_GAIN:.0f}% apart):")
    lines = fmt.wrap(head, width) if found else []
    for f in found:
        lines.append(f"  {f.title}")
        for s in f.sentences:
            lines += fmt.wrap(s, width, indent="    • ")
    return lines


def to_markdown(found: list[Finding], heading: str = "##", where: str = "") -> str:
    if not found:
        return ""
    out = [f"{heading} Findings" + (f" on {where}" if where else ""), "",
           f"{UNITS[0].upper() + UNITS[1:]}. A difference is claimed only when the intervals are disjoint and at "
           f"least {100 * MIN_GAIN:.0f}% apart.", ""]
    for f in found:
        out += [f"**{f.title}**", ""] + [f"- {s}" for s in f.sentences] + [""]
    return "\n".join(out)
