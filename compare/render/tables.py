"""Side-by-side tables from per-cell summaries: per workload and dtype a row per (mode, threads | k), per
backend its throughput with CI and speedup, then like-for-like ratios (equal effective precision only);
then every cell's detail; then a legend of every symbol used.

`build` returns plain TableData (strings); `stack` splits a table too wide for a terminal into blocks that
fit, and the renderers (rich, markdown) only lay it out. Which cells pair like-for-like and which strategy
is best come from analysis.py, numbers and labels from format.py: nothing is decided here."""
from __future__ import annotations

import polars as pl
from rich.table import Table

from ..cells import FAILED, MODES, OK, axis_label
from ..stats import workload_cells
from . import analysis
from . import format as fmt
from .format import BACKEND_ORDER, DTYPE_ORDER, PRECISION_ORDER, TableData

UNSTABLE_MARK = "!"


def _row_label(mode: str, threads: int, k: int) -> tuple[str, str]:
    return mode, axis_label(mode, threads, k) or fmt.MISSING


def _throughput(r: dict) -> str:
    """ops/s with its CI; a cell without a figure shows why instead; '!' marks an unstable one."""
    if r["ops_per_s"] is None or r["status"] != OK:
        return fmt.verdict(r)
    mark = f" {UNSTABLE_MARK}" if r["unstable"] else ""
    return f"{fmt.num(r['ops_per_s'])} [{fmt.ci(r['ci_low'], r['ci_high'])}]{mark}"


def build(summary: pl.DataFrame) -> list[TableData]:
    """Per workload (and dtype, when several were run) two tables: side-by-side throughput (ops/s with CI,
    speedup, like-for-like ratios), then every cell's detail (CI level, %-of-ceiling, %-of-peak, TFLOP/s,
    latency, errors, verdict). Columns that are empty in every row of the detail are left out."""
    recs = analysis.fill_precision(workload_cells(summary).to_dicts()) if summary.height else []
    machines = len({r["machine"] for r in summary.iter_rows(named=True)}) if summary.height else 0
    machine_order = {m: i for i, m in enumerate(dict.fromkeys(summary["machine"].to_list()))} if summary.height else {}
    tables = []
    parts: dict[tuple, list[dict]] = {}
    for r in recs:
        parts.setdefault((r["workload"], r["size"]), []).append(r)
    for (workload, size), part in parts.items():
        dtypes = sorted({r["dtype"] for r in part}, key=lambda d: DTYPE_ORDER.get(d, 9))
        for dtype in dtypes:
            title = workload + ("" if size == "default" else f" ({size})") + (f" {dtype}" if len(dtypes) > 1 else "")
            tables += _workload_tables(title, [r for r in part if r["dtype"] == dtype], machines, machine_order)
    return tables


def _workload_tables(title, recs, machines, machine_order) -> list[TableData]:
    order = {m: i for i, m in enumerate(MODES)}
    interpreters = any(r.get("interpreter") for r in recs)
    for r in recs:
        r["group"] = fmt.group_label(r, machines, interpreters)
        r["_precision"] = r["precision"]
    ranked = sorted(recs, key=lambda r: (machine_order.get(r["machine"], 0), BACKEND_ORDER.get(r["backend"], 5),
                                         r["backend"], PRECISION_ORDER.get(r["_precision"], 9),
                                         fmt.interpreter_order(r.get("interpreter"))))
    groups = list(dict.fromkeys(r["group"] for r in ranked))
    precision_of = {r["group"]: r["_precision"] for r in ranked}
    # like-for-like ratios between backends under one interpreter (the GIL's share is the findings' claim)
    like = {r["group"]: (r["_precision"], r.get("interpreter")) if interpreters else r["_precision"] for r in ranked}
    backend_of = {r["group"]: r["backend"] for r in ranked}
    row_keys = sorted({(r["mode"], r["threads"], r["k"]) for r in recs},
                      key=lambda t: (order.get(t[0], 99), t[1], t[2]))
    by = {(r["group"], r["mode"], r["threads"], r["k"]): r for r in recs}
    short = machines <= 1 and len({g.split(" ")[0] for g in groups}) == len(groups)
    name = (lambda g: g.split(" ")[0]) if short else (lambda g: g)
    pairs = analysis.like_for_like_pairs(groups, like)
    level = fmt.ci_level(r["ci_level"] for r in recs if r["ops_per_s"] is not None)
    columns = [("", "mode"), ("", "threads")] + [(g, m) for g in groups for m in (f"ops/s [{level}]", "×1T")]
    columns += [("ratio", f"{name(g)}\n÷ {name(b)}" if machines > 1 else f"{name(g)} ÷ {name(b)}") for g, b in pairs]
    rows = []
    for mode, threads, k in row_keys:
        line = list(_row_label(mode, threads, k))
        for g in groups:
            r = by.get((g, mode, threads, k))
            line += ["not run", ""] if r is None else [_throughput(r), fmt.times(r["speedup"])]
        for g, b in pairs:
            a, c = by.get((g, mode, threads, k)), by.get((b, mode, threads, k))
            ok = a and c and a["status"] == OK == c["status"] and a["ops_per_s"] and c["ops_per_s"]
            line.append(f"{a['ops_per_s'] / c['ops_per_s']:.2f}" if ok else fmt.MISSING)
        rows.append(line)
    notes = _notes(ranked)
    backends = {r["backend"] for r in ranked}
    if len(backends) > 1 and not any(backend_of[g] != backend_of[b] for g, b in pairs):
        settings = list(dict.fromkeys((r["backend"], r["device"], r["_precision"], r["fp32_precision"]) for r in ranked))
        hint = fmt.switch_hint(analysis.precision_switch(settings))
        ran = ", ".join(f"{g} = {fmt.precision_label(precision_of[g])}" for g in groups)
        notes.append(f"no like-for-like ratio: no two backends ran at the same effective precision ({ran})"
                     + (f"; {hint}" if hint else ""))
    return [TableData(title=f"{title} — throughput (requests/s)", columns=columns, rows=rows, notes=notes),
            _detail(f"{title} — per-cell detail", groups, row_keys, by)]


def _notes(ranked: list[dict]) -> list[str]:
    """Each cause once per backend: failures grouped by cause, unstable cells in one line."""
    notes: list[str] = []
    failed: dict[tuple[str, str], list[str]] = {}
    unstable: dict[str, list[str]] = {}
    for r in ranked:
        where = " ".join(x for x in _row_label(r["mode"], r["threads"], r["k"]) if x != fmt.MISSING)
        if r["status"] != OK and r["cause"]:
            failed.setdefault((r["group"], fmt.cause_line(r["cause"], 300)), []).append(where)
        elif r["status"] == OK and r["unstable"]:
            unstable.setdefault(r["group"], []).append(f"{where} ({100 * (r['iqr_rel'] or 0):.0f}%)")
    for (group, cause), where in failed.items():
        notes.append(f"{group}, {', '.join(where)}: {cause}")
    for group, where in unstable.items():
        notes.append(f"{group}: UNSTABLE (windows spread > 10% inside a process, IQR/median) in {', '.join(where)}")
    return notes


DETAIL = ("ops/s", "CI", "CI level", "×1T", "%ceil", "%peak", "TFLOP/s", "p50 ms", "p99 ms", "batch",
          "errors", "rel. error", "RSS MB", "dev MB", "verdict", "wall ms", "sync %", "run %", "core wait %",
          "thr/proc cores", "dev busy", "why")


def _split_cells(r: dict) -> list[str]:
    """Where a request's time went (compare.stats.split_summary) and the verdict (analysis.why)."""
    cores = (f"{r['own_cores']:.2f}/{r['proc_cores']:.2f}" if r.get("own_cores") is not None
             and r.get("proc_cores") is not None else fmt.MISSING)
    return [fmt.num(r.get("wall_ms")), fmt.share(r.get("sync_share")), fmt.share(r.get("run_share")),
            fmt.share(r.get("core_wait_share")), cores, fmt.share(r.get("device_busy")),
            analysis.why(r) or fmt.MISSING]


def _detail(title, groups, row_keys, by) -> TableData:
    rows = []
    for g in groups:
        for mode, threads, k in row_keys:
            r = by.get((g, mode, threads, k))
            if r is None:
                continue
            measured = r["ops_per_s"] is not None and r["status"] == OK
            rows.append([g, *_row_label(mode, threads, k), fmt.num(r["ops_per_s"]) if measured else fmt.MISSING,
                         fmt.ci(r["ci_low"], r["ci_high"]) if measured else fmt.MISSING,
                         fmt.pct(None if r["ci_level"] is None or not measured else 100 * r["ci_level"]),
                         fmt.times(r["speedup"]), fmt.pct(r["pct_ceiling"]), fmt.pct(r["pct_peak"]),
                         fmt.MISSING if r["tflops"] is None else f"{r['tflops']:.3g}",
                         fmt.num(r["lat_p50_ms"]), fmt.num(r["lat_p99_ms"]),
                         fmt.MISSING if r.get("mean_batch") is None else f"{r['mean_batch']:.1f}",
                         f"{r['errors']}/{r['checked']}" if r["checked"] else fmt.MISSING,
                         fmt.MISSING if r["rel_err"] is None else f"{r['rel_err']:.1e}",
                         fmt.num(r["peak_rss_mb"], 4), fmt.num(r["peak_device_mb"], 4), fmt.verdict(r),
                         *_split_cells(r)])
    columns = [("", "backend"), ("", "mode"), ("", "threads")] + [("", m) for m in DETAIL]
    keep = [i for i, c in enumerate(columns) if i < 3 or any(row[i] != fmt.MISSING for row in rows)]
    return TableData(title=title, columns=[columns[i] for i in keep], rows=[[row[i] for i in keep] for row in rows],
                     n_labels=3)


# -- compact summary -------------------------------------------------------------------------------
def build_compact(summary: pl.DataFrame) -> list[TableData]:
    """Per workload × dtype one small like-for-like table a reader takes in at a glance: a row per backend
    and effective precision with its sequential figure, its best strategy (every mode but the ceiling) and
    that strategy's gain, and its ceiling; rows of equal precision sit together. Fits 80 columns."""
    recs = analysis.fill_precision(workload_cells(summary).to_dicts()) if summary.height else []
    machines = len({r["machine"] for r in recs})
    scopes: dict[tuple, list[dict]] = {}
    for r in recs:
        scopes.setdefault((r["workload"], r["size"], r["dtype"]), []).append(r)
    out = []
    for (workload, size, dtype), part in sorted(scopes.items(), key=lambda kv: DTYPE_ORDER.get(kv[0][2], 9)):
        groups: dict[tuple, list[dict]] = {}
        for r in part:
            # one row per interpreter too: a best strategy is never taken across interpreters
            groups.setdefault((r["machine"], r["backend"], r["device"], r["precision"], r.get("interpreter") or ""),
                              []).append(r)
        order = sorted(groups, key=lambda g: (PRECISION_ORDER.get(g[3], 9), BACKEND_ORDER.get(g[1], 5), g[1], g[0],
                                              g[4]))
        rows, missing = [], []
        for g in order:
            cells = groups[g]
            seq = next((r for r in cells if r["mode"] == "sequential" and r["status"] == OK), None)
            best, top = analysis.best_strategy(cells), analysis.ceiling(cells)
            if top is None and analysis.ceiling_missing(cells):
                missing.append(f"{g[1]} {g[2]} {analysis.ceiling_missing(cells).replace('_', ' ')}")
            failed = sum(r["status"] in FAILED for r in cells)
            name = (f"{g[0]}: " if machines > 1 else "") + f"{g[1]} {g[2]}" + (f" · {g[4]}" if g[4] else "")
            rows.append([name, fmt.precision_label(g[3]),
                         fmt.short(seq["ops_per_s"]) if seq else fmt.MISSING,
                         f"{fmt.short(best['ops_per_s'])} {fmt.mode_label(best['mode'], best['threads'], best['k'])}"
                         if best else fmt.MISSING,
                         fmt.times(best["ops_per_s"] / seq["ops_per_s"], 1) if best and seq else fmt.MISSING,
                         fmt.short(top["ops_per_s"]) if top else fmt.MISSING, str(failed) if failed else ""])
        title = f"{workload}{'' if size == 'default' else f' ({size})'} · {dtype} — requests/s, like-for-like rows together"
        columns = [("", "backend"), ("", "precision"), ("", "sequential"), ("", "best strategy"), ("", "× seq"),
                   ("", "ceiling"), ("", "failed")]
        keep = [i for i in range(len(columns)) if i < 2 or any(row[i] not in ("", fmt.MISSING) for row in rows)]
        out.append(TableData(title=title, n_labels=2, columns=[columns[i] for i in keep],
                             rows=[[row[i] for i in keep] for row in rows],
                             notes=["best strategy: the fastest median among the modes a client uses (the ceiling "
                                    "excluded); whether it is clearly faster than sequential is in the findings"]
                             + ([f"no ceiling where a ceiling configuration has no figure: {'; '.join(missing)}"]
                                if missing else [])))
    return out


# -- legend ---------------------------------------------------------------------------------------
def legend(summary: pl.DataFrame, backend_env: dict | None = None) -> list[str]:
    """Every symbol and column the tables use, each explained once (only those that appear); statuses
    only when they occur; per backend what `threads` means for it (the backend's own statement, when the
    run recorded one)."""
    built = build(summary)
    shown = " ".join(f"{g} {n}" for t in built for g, n in t.columns) + " " + " ".join(
        c for t in built for row in t.rows for c in row)
    return list(dict.fromkeys(line for line in _legend(summary, backend_env)
                              if _symbol(line) is None or _symbol(line) in shown))


def _symbol(line: str) -> str | None:
    """The symbol a legend line explains, as it appears in a table; None for lines always kept."""
    key = line.split(": ", 1)[0]
    probes = {"×N / k=N": "×", "A ÷ B": "÷", f"{UNSTABLE_MARK} after a figure": f" {UNSTABLE_MARK}",
              "p50 ms / p99 ms": "p50 ms", "RSS MB / dev MB": "RSS MB", "—": fmt.MISSING}
    if (key.startswith("ops/s") or key.startswith("threads on ") or key in MODES or key in fmt.verdict_meanings()
            or key in fmt.why_meanings()):
        return None
    return probes.get(key, key)


def _legend(summary: pl.DataFrame, backend_env: dict | None = None) -> list[str]:
    recs = workload_cells(summary).to_dicts() if summary.height else []
    level = fmt.ci_level(r["ci_level"] for r in recs if r["ops_per_s"] is not None)
    lines = [
        f"ops/s [{level}]: median requests per second over the trials, with the distribution-free interval of "
        "the median at the level the trial count allows",
        f"{UNSTABLE_MARK} after a figure: UNSTABLE, windows spread more than 10% inside a process (IQR/median)",
        "×1T: throughput over the same backend's one-thread sequential figure",
        "×N / k=N: N Python threads (threads, streams, batched clients), or k requests per forward (offline)",
        "A ÷ B: ratio of medians at equal effective precision only (like-for-like); — when either has no figure",
        "(TF32): float32 whose matmuls run at TF32 (MLX on CUDA, or torch --fp32-precision high)",
        "—: no value for this cell (not measured, no ceiling run, or no figure)",
    ]
    cols = {"%ceil": "share of the best ceiling configuration (offline at each k, processes) of the same backend",
            "%peak": "achieved FLOP/s over a matmul probe in the same run (above 100%: the probe is slower than "
                     "this workload's shapes)",
            "p50 ms / p99 ms": "per-request latency percentiles", "batch": "mean requests per batched forward",
            "errors": "outputs outside tolerance / outputs checked", "rel. error": "largest error against float64",
            "RSS MB / dev MB": "peak host / device memory",
            "wall ms": "a request's wall time in its own thread, the framework call plus synchronise (offline: "
                       "per forward of k requests; batched: a client's submit plus its wait for its rows)",
            "sync %": "share of that wall time in synchronise (the rest: the framework call until it returns)",
            "run %": "share of it the request's thread was running on a CPU (its CPU clock)",
            "core wait %": "share of it the thread was runnable but had no core (Linux's run delay); the rest, "
                           "neither running nor waiting for a core, it was blocked (the GIL, a lock, a sleep, "
                           "I/O, the device, another thread)",
            "thr/proc cores": "cores kept busy over the window by the measuring threads / by their process(es), the "
                     "framework's own threads (and the batcher) included",
            "dev busy": "share of the window the device was busy: the backend's device timer where it has one, "
                        "else NVML's utilisation (GPU cells)",
            "why": "why the cell scales as it does, from the figures before it (the words below)"}
    lines += [f"{k}: {v}" for k, v in cols.items()]
    for mode, spec in MODES.items():
        if any(r["mode"] == mode for r in recs):
            role = ("a ceiling configuration, not a client strategy" if spec.ceiling and not spec.strategy else
                    "a client strategy, and a ceiling configuration" if spec.ceiling else "")
            lines.append(f"{mode}: {spec.summary}" + (f" ({role})" if role else ""))
    seen = list(dict.fromkeys(fmt.verdict_kind(r) for r in recs))
    meanings = fmt.verdict_meanings()
    lines += [f"{s}: {meanings[s]}" for s in seen if s in meanings]
    whys = {analysis.why(r) for r in recs} - {None}
    lines += [f"{w}: {m}" for w, m in fmt.why_meanings().items() if w in whys]
    for key, env in (backend_env or {}).items():
        if env.get("thread_streams"):
            lines.append(f"threads on {key}: {env['thread_streams']}")
    return lines


# -- layout ---------------------------------------------------------------------------------------
def _width(t: TableData) -> int:
    """Characters a rich table of t takes: every column's widest cell + 3 (padding, rule), plus the edge."""
    widths = []
    for i, (group, name) in enumerate(t.columns):
        head = name.split("\n") + ([group] if group else [])
        widths.append(max([len(h) for h in head] + [len(row[i]) for row in t.rows]))
    return sum(w + 3 for w in widths) + 1


def stack(t: TableData, width: int) -> list[TableData]:
    """t as it is when it fits `width`; otherwise blocks that do: a block per column group (per backend,
    then the ratios) each repeating the row labels, and a column group split further when it is still
    too wide. Nothing is cut: a cell is never wider than the block that holds it."""
    if _width(t) <= width:
        return [t]
    labels = [i for i, (g, _) in enumerate(t.columns) if g == ""]
    if len(labels) == len(t.columns):   # the detail table: a block per backend (its first column)
        return _stack_rows(t, width)
    groups = list(dict.fromkeys(g for g, _ in t.columns if g))
    packed: list[list[str]] = []          # column groups side by side while they fit, in order
    for g in groups:
        if packed and _width(_groups(t, labels, packed[-1] + [g])) <= width:
            packed[-1].append(g)
        else:
            packed.append([g])
    blocks = []
    for gs in packed:
        if len(gs) > 1:
            blocks.append(_groups(t, labels, gs))
            continue
        idx = labels + [i for i, (gg, _) in enumerate(t.columns) if gg == gs[0]]
        sub = TableData(title=f"{t.title} — {gs[0]}", columns=[("", t.columns[i][1]) for i in idx],
                        rows=[[row[i] for i in idx] for row in t.rows], n_labels=len(labels))
        blocks += _split_columns(sub, width, len(labels))
    blocks[-1].notes = t.notes
    return blocks


def _groups(t: TableData, labels: list[int], gs: list[str]) -> TableData:
    idx = labels + [i for i, (g, _) in enumerate(t.columns) if g in gs]
    return TableData(title=t.title, columns=[t.columns[i] for i in idx], rows=[[row[i] for i in idx] for row in t.rows],
                     n_labels=len(labels))


def _stack_rows(t: TableData, width: int) -> list[TableData]:
    blocks = []
    for g in dict.fromkeys(row[0] for row in t.rows):
        sub = TableData(title=f"{t.title} — {g}", columns=t.columns[1:], n_labels=2,
                        rows=[row[1:] for row in t.rows if row[0] == g])
        blocks += _split_columns(sub, width, 2)
    if blocks:
        blocks[-1].notes = t.notes
    return blocks or [t]


def _split_columns(t: TableData, width: int, n_labels: int) -> list[TableData]:
    """Chunks of t's value columns that fit `width`, each with the first n_labels columns repeated."""
    if _width(t) <= width:
        return [t]
    out, start = [], n_labels
    while start < len(t.columns):
        end = start + 1
        while end < len(t.columns) and _width(_cols(t, n_labels, start, end + 1)) <= width:
            end += 1
        out.append(_cols(t, n_labels, start, end))
        start = end
    return out


def _cols(t: TableData, n_labels: int, start: int, end: int) -> TableData:
    idx = list(range(n_labels)) + list(range(start, end))
    return TableData(title=t.title, columns=[t.columns[i] for i in idx], rows=[[row[i] for i in idx] for row in t.rows],
                     n_labels=n_labels)


# -- renderers ------------------------------------------------------------------------------------
def to_rich(t: TableData) -> Table:
    table = Table(title=t.title, title_justify="left", header_style="bold")
    previous = None
    for i, (group, name) in enumerate(t.columns):   # a group's name once, over its first column
        header = name if not group else (f"{group}\n{name}" if group != previous else f"\n{name}")
        previous = group
        label = i < t.n_labels if t.n_labels is not None else group == ""
        table.add_column(header, justify="left" if label else "right", no_wrap=True)
    for row in t.rows:
        table.add_row(*row)
    return table


def to_markdown(t: TableData, heading: str = "###") -> str:
    header = [(name if not group else f"{group} {name}").replace("\n", " ") for group, name in t.columns]
    lines = [f"{heading} {t.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
    lines += [""] + [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"
