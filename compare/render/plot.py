"""`plot`: scaling curves from saved runs. A row of panels per dtype and effective precision, a panel per
workload; in it, requests/s against Python threads on log axes, one colour per backend (Okabe-Ito), one
line style per mode (compare.cells.MODES[...].line), the CI as error bars, the sequential figure as a lone
marker, each backend's ceiling dashed (or noted at the top edge when it would squash the curves), and
failed or too-slow cells marked at the bottom of their panel; and the server scenario's latency against
offered rate. What is a ceiling or a peak comes from analysis.py.

matplotlib is an optional extra, imported only here (_matplotlib); without it the command says how to
install it."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

from ..cells import DEFAULT_PYTHON, FAILED, MODES, OK, TOO_SLOW, WRONG, status_label
from ..files import Unwritable, atomic_write
from ..options import BadInput
from ..serverrules import LONG
from ..stats import workload_cells
from . import format as fmt
from . import outputs
from .analysis import DTYPE_PRECISION, ceiling, fill_precision, peaks, shows_rate
from .format import BACKEND_ORDER, DTYPE_ORDER, PRECISION_ORDER
from .report import load_runs, machine_labels, merge, summarize

INSTALL_HINT = "plotting needs matplotlib, an optional extra: pip install 'threadbench[plot]'"
LINE_MODES = {m.name: m.line for m in MODES.values() if m.line}  # a curve per mode over threads (compare.cells)


class NothingToPlot(BadInput):
    """No cell of the runs has a throughput (every cell failed, was skipped or is a peak probe)."""


def _matplotlib() -> SimpleNamespace:
    """The matplotlib pieces the figures use; imported here, on first use, because matplotlib is an optional
    extra (and slow to import): its absence is one line of bad input, and the rest of threadbench runs."""
    try:
        import matplotlib   # the package first: its submodules may be loaded when the package itself is not
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.ticker import EngFormatter, LogFormatter, LogLocator, NullFormatter
    except ImportError:
        raise BadInput(INSTALL_HINT) from None
    return SimpleNamespace(matplotlib=matplotlib, FigureCanvasAgg=FigureCanvasAgg, Figure=Figure, Line2D=Line2D,
                           EngFormatter=EngFormatter, LogFormatter=LogFormatter, LogLocator=LogLocator,
                           NullFormatter=NullFormatter)


def check_output(path: Path) -> outputs.OutputFormat:
    """The image format from the file name (compare.render.outputs); an unknown one is bad input, caught
    before any work, as is a missing matplotlib."""
    _matplotlib()
    image = outputs.image_format(path)
    if image is None:
        raise BadInput(f"-o: cannot tell the image format of {str(path)!r}; end the name with one of: "
                       + ", ".join("." + name for name in sorted(outputs.names("plot"))))
    if Path(path).is_dir():
        raise BadInput(f"-o: {path} is a folder; give a file name")
    return image


# Okabe-Ito: distinguishable with every common colour-vision deficiency; one colour per backend (and machine).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
CEILING_ROOM = 4   # a ceiling more than this many times the panel's highest figure is noted at the top edge
                   # instead of stretching the axis (which would squash every curve into the bottom of the panel)
MAX_NOTES = 5      # lines of text (failures, far ceilings) written into a panel's top left corner
NOTE_ROOM = 0.09   # headroom per note line, as a share of the panel's log span: notes sit above the curves
MIN_DECADES = 1.0  # the least log span of a panel, so a flat result reads as flat, not as noise blown up
FAILED_MARK = "X"  # failed cells (crash, timeout, error, memory, wrong): marked at the bottom of their panel
SLOW_MARK = "v"    # too-slow cells: marked likewise


def _series(r: dict, machines: int) -> str:
    """A colour's name: backend and device (and machine), without the precision (rows split precisions)."""
    name = f"{r['backend']} {r['device']}"
    return f"{r['machine']}: {name}" if machines > 1 else name


def _value(v) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _err(r: dict) -> tuple[float, float]:
    v = r["ops_per_s"]
    return max(0.0, v - (_value(r.get("ci_low")) or v)), max(0.0, (_value(r.get("ci_high")) or v) - v)


FLAG = ""   # the series key of a panel note about the whole panel (figure's `flagged`), in black


def _label_panel(ax, first_column: bool, last_row: bool, ylabel: str, xlabel: str, notes: list, color: dict) -> None:
    """A panel's axis labels (y on the first column, x on the last row) and its notes, top left, in the
    colour of the series each is about."""
    if first_column:
        ax.set_ylabel(ylabel)
    if last_row:
        ax.set_xlabel(xlabel)
    for n, (g, text) in enumerate(notes[:MAX_NOTES]):
        ax.text(0.02, 0.97 - 0.075 * n, text, transform=ax.transAxes, fontsize="x-small", va="top",
                color=color[g], bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})


def figure(summary, title: str = "", flagged: dict[str, str] | None = None):
    """A matplotlib Figure of the scaling curves (not yet saved): a row of panels per effective precision
    (dtype and matmul setting), a panel per workload; ops/s against Python threads on log axes. `flagged`:
    per workload, a note its panels carry first (publish: a known defect that withdraws their claims)."""
    mpl = _matplotlib()
    recs = fill_precision(workload_cells(summary).to_dicts()) if summary.height else []
    if not any(r["status"] == OK and _value(r["ops_per_s"]) is not None for r in recs):
        raise NothingToPlot("nothing to plot: no cell of these runs has a measured throughput")
    machines = len({r["machine"] for r in recs})
    rows = sorted({(r["dtype"], r["precision"]) for r in recs},
                  key=lambda x: (DTYPE_ORDER.get(x[0], 9), PRECISION_ORDER.get(x[1], 9)))
    # a panel per workload and interpreter: GIL on and GIL off side by side (the default's first, as in the tables)
    cols = sorted(dict.fromkeys((r["workload"], r["size"], r.get("interpreter")) for r in recs),
                  key=lambda c: (list(dict.fromkeys((r["workload"], r["size"]) for r in recs)).index(c[:2]),
                                 fmt.interpreter_order(c[2])))
    others = any(c[2] for c in cols)   # then the default interpreter's panels are named too
    ordered = sorted(recs, key=lambda r: (BACKEND_ORDER.get(r["backend"], 5), r["backend"]))
    series = list(dict.fromkeys(_series(r, machines) for r in ordered))
    color = {g: OKABE_ITO[i % len(OKABE_ITO)] for i, g in enumerate(series)} | {FLAG: "black"}
    dodge = {g: 2 ** (0.04 * (i - (len(series) - 1) / 2)) for i, g in enumerate(series)}

    fig = mpl.Figure(figsize=(4.6 * len(cols), 3.6 * len(rows) + 1.1), layout="constrained")
    mpl.FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    used_modes, marks = set(), set()
    for i, (dtype, prec) in enumerate(rows):
        for j, (workload, size, python) in enumerate(cols):
            ax = axes[i][j]
            part = [r for r in recs if (r["dtype"], r["precision"], r["workload"], r["size"], r.get("interpreter"))
                    == (dtype, prec, workload, size, python)]
            if not part:   # this workload was not run at this precision: say so instead of an empty frame
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{workload} · {fmt.precision_label(prec) if prec else dtype}: not measured",
                        transform=ax.transAxes, ha="center", va="center", fontsize="small", color="0.4")
                continue
            ok = [r for r in part if r["status"] == OK and _value(r["ops_per_s"]) is not None]
            xs, ys, notes, ceilings = {1}, [], [], []
            if flagged and workload in flagged:
                notes.append((FLAG, flagged[workload]))
            for g in series:
                mine = [r for r in ok if _series(r, machines) == g]
                for mode, (style, marker) in LINE_MODES.items():
                    pts = sorted((r for r in mine if r["mode"] == mode), key=lambda r: r["threads"])
                    if not pts:
                        continue
                    errs = [_err(r) for r in pts]
                    ax.errorbar([r["threads"] * dodge[g] for r in pts], [r["ops_per_s"] for r in pts],
                                yerr=[[e[0] for e in errs], [e[1] for e in errs]], color=color[g], linestyle=style,
                                marker=marker, markersize=4.5, capsize=2.5, linewidth=1.5)
                    used_modes.add(mode)
                    xs.update(r["threads"] for r in pts)
                    ys += [r["ops_per_s"] - e[0] for r, e in zip(pts, errs)] + [r["ops_per_s"] + e[1] for r, e in zip(pts, errs)]
                for r in (r for r in mine if MODES[r["mode"]].axis == "none"):
                    lo, hi = _err(r)
                    ax.errorbar([dodge[g] / 2 ** 0.08], [r["ops_per_s"]], yerr=[[lo], [hi]], color=color[g],
                                marker="D", markerfacecolor="white", linestyle="none", markersize=6, capsize=2.5)
                    used_modes.add(r["mode"])
                    ys += [r["ops_per_s"] - lo, r["ops_per_s"] + hi]
                best = ceiling([r for r in part if _series(r, machines) == g])   # only from a complete set
                if best is not None:
                    ceilings.append((g, best))
                bad = [r for r in part if _series(r, machines) == g and (r["status"] in FAILED or r["status"] == TOO_SLOW)]
                for r in bad:
                    mark = SLOW_MARK if r["status"] == TOO_SLOW else FAILED_MARK
                    if MODES[r["mode"]].axis == "threads":
                        ax.plot([r["threads"] * dodge[g]], [0.03], marker=mark, color=color[g], linestyle="none",
                                markersize=7, transform=ax.get_xaxis_transform(), clip_on=False)
                        xs.add(r["threads"])
                    marks.add(mark)
                if bad:
                    kinds = sorted({status_label(r["status"]) for r in bad})
                    where = ", ".join(fmt.mode_label(r["mode"], r["threads"], r["k"]) for r in bad[:3]) + (" …" if len(bad) > 3 else "")
                    lost = any(MODES[r["mode"]].ceiling for r in bad)
                    notes.append((g, f"{g}: {'/'.join(kinds)} {where}" + (" (so no ceiling)" if lost else "")))
                if not mine and not bad and any(_series(r, machines) == g for r in part):
                    notes.append((g, f"{g}: no figure"))
            positive = [y for y in ys if y and y > 0]
            top = max(positive) if positive else None
            for g, c in ceilings:
                v = c["ops_per_s"]
                if top is None or v <= top * CEILING_ROOM:
                    ax.axhline(v, color=color[g], linestyle="--", linewidth=1.1, alpha=0.85)
                    positive.append(v)
                else:   # far above the curves: say so at the top edge instead of stretching the axis
                    notes.append((g, f"{g}: ceiling {fmt.short(v)} ({fmt.mode_label(c['mode'], c['threads'], c['k'])}) ↑"))
            if positive:
                lo, hi = min(positive) / 1.4, max(positive) * 1.4
                if hi / lo < 10 ** MIN_DECADES:   # a flat panel still spans MIN_DECADES, centred on its data
                    mid = math.sqrt(hi * lo)
                    lo, hi = mid / 10 ** (MIN_DECADES / 2), mid * 10 ** (MIN_DECADES / 2)
                ax.set_yscale("log")
                ax.set_ylim(lo, hi * (hi / lo) ** (NOTE_ROOM * min(len(notes), MAX_NOTES)))
            else:
                ax.set_yscale("log")
                ax.set_ylim(1, 10)
            ticks = sorted(xs)
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.set_xlim(ticks[0] / 1.5, ticks[-1] * 1.5)
            ax.yaxis.set_major_formatter(mpl.EngFormatter(sep=""))   # 20k, 1.5M: readable at a glance
            lo, hi = ax.get_ylim()
            if hi / lo < 10 ** SHORT_SPAN_DECADES:   # at most one decade label: label 2 and 5 between them too
                ax.yaxis.set_minor_locator(mpl.LogLocator(base=10, subs=(2, 5)))
                ax.yaxis.set_minor_formatter(mpl.EngFormatter(sep=""))
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{workload}{'' if size == 'default' else f' ({size})'} · {dtype}"
                         + (f" ({fmt.precision_label(prec)})" if prec != DTYPE_PRECISION.get(dtype, prec) else "")
                         + (f"\n{python or DEFAULT_PYTHON}" if others else ""), fontsize="medium")
            _label_panel(ax, j == 0, i == len(rows) - 1, "requests/s (log)", "Python threads", notes, color)
    colour_handles = [mpl.Line2D([], [], color=color[g], linewidth=3) for g in series]
    style_handles, style_labels = [], []
    for mode, spec in MODES.items():
        if mode not in used_modes and not (spec.ceiling and any(MODES[r["mode"]].ceiling for r in recs)):
            continue
        if spec.line:
            style_handles.append(mpl.Line2D([], [], color="0.3", linestyle=spec.line[0], marker=spec.line[1]))
            style_labels.append(mode)
        elif spec.ceiling:
            style_handles.append(mpl.Line2D([], [], color="0.3", linestyle="--"))
            style_labels.append("ceiling: best of " + "/".join(m for m, s in MODES.items() if s.ceiling)
                                + ", all measured (↑ in text when far above)")
        else:
            style_handles.append(mpl.Line2D([], [], color="0.3", marker="D", markerfacecolor="white", linestyle="none"))
            style_labels.append(f"{mode} (1 thread)")
    for mark, label in ((FAILED_MARK, "failed (crash, timeout, error, memory, wrong)"), (SLOW_MARK, "too slow")):
        if mark in marks:
            style_handles.append(mpl.Line2D([], [], color="0.3", marker=mark, linestyle="none"))
            style_labels.append(label)
    if len(cols) > 1:   # room for the two legends side by side below the panels
        # two panels leave room for one column of colours beside the styles; more, for a row of them
        fig.legend(colour_handles, series, loc="outside lower left", ncols=min(4, len(series)) if len(cols) > 2 else 1,
                   fontsize="small", frameon=False)
        fig.legend(style_handles, style_labels, loc="outside lower right", ncols=2, fontsize="small", frameon=False)
    else:               # one panel wide: side by side they overlap, so one legend, colours first
        fig.legend(colour_handles + style_handles, series + style_labels, loc="outside lower center", ncols=2,
                   fontsize="small", frameon=False)
    scopes = frozenset(r.get("ci_scope") for r in recs if r["status"] == OK)
    over = ERROR_BARS.get(scopes, ERROR_BARS[frozenset()])
    fig.suptitle((title + "\n" if title else "") + f"error bars: interval of the median {over}",
                 fontsize="medium")
    return fig


# -- the server scenario: p99 latency against offered rate ------------------------------------------
SERVER_LINES = {m.name: MODES[m.name.removeprefix("server-")].line or ("-", "o")  # a strategy's line is its mode's
                for m in MODES.values() if not m.throughput}
PEAK_MARK = "*"    # the peak valid rate of a cell's search
LONG_MARK = "o"    # ...and a ring round each long step (compare.serverrules: one a stall cannot fail)
BOUND_STYLE = (0, (5, 3))  # the latency bound: a horizontal dashed line
SHORT_SPAN_DECADES = 1.5   # a scaling panel spanning less (a slow workload's few ops/s) also labels 2x and 5x
ERROR_BARS = {  # what the error bars span, by the cells' ci_scope (compare.stats): the subtitle says which
    frozenset({"processes"}): "from the processes' medians (--repeats)",
    frozenset({"windows"}): "over one process's timed windows (not a re-run's spread)",
    frozenset(): "from the processes' medians (over one process's windows where a cell had one process)"}
OTHER_PROCESS_ALPHA = 0.35  # with --repeats, the steps of the processes other than the median one
BOUND_LABEL_PTS = 9.0      # a bound label's height with its gap (x-small type): a label lifts to clear the one below


def _bound_labels(ax, bounds: list[float]) -> None:
    """Each bound's label at the right end of its line, lifted just enough to clear the label below it (in
    points, once the axis limits are final: near-equal bounds stack, and a label lifted off its line never
    covers the next bound's)."""
    to_pts = 72.0 / ax.figure.dpi
    top = None   # the top of the label below, in points from the figure's bottom
    for b in bounds:
        y = ax.transData.transform((1.0, b))[1] * to_pts + 1
        lift = max(0.0, top - y) if top is not None else 0.0
        ax.annotate(f"bound {fmt.short(b)} ms", (1.0, b), xycoords=("axes fraction", "data"), ha="right",
                    va="bottom", fontsize="x-small", color="0.3", xytext=(-2, 1 + lift), textcoords="offset points")
        top = y + lift + BOUND_LABEL_PTS


def server_figure(rows: list[dict], title: str = ""):
    """A matplotlib Figure of the server cells of `rows` (each row's machine set, as report.merge does), or
    None when there are none: a row of panels per dtype, a panel per workload; in it p99 latency (log)
    against offered rate (log), one colour per backend (as in `figure`), one line style per strategy (its
    mode's in MODES: threads, batched, processes), valid steps filled, invalid ones hollow, the peak valid
    rate starred, the bound dashed. A failed cell draws no step (it shows no rate anywhere); it is noted."""
    recs = [r for r in peaks(rows) if r["steps"] or r["status"] in FAILED]  # unsupported: the tables say so
    if not recs:
        return None
    mpl = _matplotlib()
    machines = len({r["machine"] for r in recs})
    ordered = sorted(recs, key=lambda r: (BACKEND_ORDER.get(r["backend"], 5), r["backend"]))
    series = list(dict.fromkeys(_series(r, machines) for r in ordered))
    color = {g: OKABE_ITO[i % len(OKABE_ITO)] for i, g in enumerate(series)}
    dtypes = sorted({r["dtype"] for r in recs}, key=lambda d: DTYPE_ORDER.get(d, 9))
    cols = list(dict.fromkeys((r["workload"], r["size"]) for r in recs))
    fig = mpl.Figure(figsize=(5.2 * len(cols), 3.9 * len(dtypes) + 1.2), layout="constrained")
    mpl.FigureCanvasAgg(fig)
    axes = fig.subplots(len(dtypes), len(cols), squeeze=False)
    used, faint_used, long_used = set(), False, False
    labelled = []   # (panel, its bounds): labelled once the layout is drawn
    for i, dtype in enumerate(dtypes):
        for j, (workload, size) in enumerate(cols):
            ax = axes[i][j]
            part = [r for r in ordered if (r["dtype"], r["workload"], r["size"]) == (dtype, workload, size)]
            several = len({r["threads"] for r in part}) > 1
            notes, bounds, ys = [], {}, []
            for r in part:
                g = _series(r, machines)
                if not shows_rate(r):
                    why = WRONG if r["errors"] else status_label(r["status"])
                    notes.append((g, f"{g} {fmt.strategy(r)}: {why}"))
                    continue
                style, marker = SERVER_LINES[r["mode"]]
                used.add(r["mode"])
                # several processes (--repeats): the median process's search is the curve, the others' steps
                # faint marks (one line through every process's steps zig-zags between searches)
                faint = [r["median_repeat"] is not None and (s.get("repeat") or 0) != r["median_repeat"]
                         for s in r["steps"]]
                mine = [s for s, f in zip(r["steps"], faint) if not f]
                ax.plot([s["offered_rate"] for s in mine], [s["lat_p99_ms"] for s in mine], color=color[g],
                        linestyle=style, linewidth=1.4)
                ys += [s["lat_p99_ms"] for s in r["steps"]]
                for s, f in sorted(zip(r["steps"], faint), key=lambda x: x[1]):   # the median process's first
                    ax.plot([s["offered_rate"]], [s["lat_p99_ms"]], marker=marker, color=color[g],
                            markersize=3 if f else 5, alpha=OTHER_PROCESS_ALPHA if f else 1.0,
                            markerfacecolor=color[g] if s["verdict"] == "valid" else "white", linestyle="none")
                    if s.get("step_kind") == LONG:  # a long step settles its rate: ringed
                        ax.plot([s["offered_rate"]], [s["lat_p99_ms"]], marker=LONG_MARK, markersize=9 if not f else 6,
                                markerfacecolor="none", markeredgecolor=color[g], alpha=OTHER_PROCESS_ALPHA if f else 1.0,
                                linestyle="none")
                        long_used = True
                faint_used |= any(faint)
                if r["peak"] is not None:
                    ax.plot([r["peak"]], [r["p99_at_peak"]], marker=PEAK_MARK, color=color[g], markersize=13,
                            markeredgecolor="black", markeredgewidth=0.6, linestyle="none", zorder=5)
                elif not several:
                    notes.append((g, f"{g} {fmt.strategy(r)}: no valid rate"))
                judge = fmt.GENERATOR_LABELS.get(r["load_generator"], "")  # a LoadGen curve says so at its end
                if (several or judge) and mine:   # which curve is which thread count: ×N at its last step
                    ax.annotate(" ".join(x for x in (f"×{r['threads']}" if several else "", judge) if x),
                                (mine[-1]["offered_rate"], mine[-1]["lat_p99_ms"]), fontsize="x-small",
                                color=color[g], xytext=(3, 0), textcoords="offset points")
                if r["bound_ms"] is not None:
                    bounds.setdefault(r["bound_ms"], set()).add(g)
            for b, gs in sorted(bounds.items()):  # one line per distinct bound, in its backend's colour if its own
                # alone (a bound several backends share is grey: picking one of a set's members by iteration
                # order made the picture depend on the interpreter's string hashing)
                ax.axhline(b, color=color[min(gs)] if len(bounds) > 1 and len(gs) == 1 else "0.35", linestyle=BOUND_STYLE,
                           linewidth=1.1)
                ys.append(b)
            ax.set_xscale("log")
            ax.set_yscale("log")
            if ys:  # room above the curves for the notes, as in `figure`
                lo, hi = min(ys) / 1.3, max(ys) * 1.3
                ax.set_ylim(lo, hi * (hi / lo) ** (NOTE_ROOM * min(len(notes), MAX_NOTES)))
            labelled.append((ax, sorted(bounds)))
            ax.xaxis.set_major_formatter(mpl.EngFormatter(sep=""))
            lo, hi = ax.get_xlim()
            if hi / lo < 10 ** SHORT_SPAN_DECADES:   # a span with one decade tick or none: label 2 and 5 too
                ax.xaxis.set_minor_locator(mpl.LogLocator(base=10, subs=(2, 5)))
                ax.xaxis.set_minor_formatter(mpl.EngFormatter(sep=""))
            else:
                ax.xaxis.set_minor_formatter(mpl.NullFormatter())   # 2×10³ 3×10³ … labels collided on a wide span
            ax.yaxis.set_major_formatter(mpl.EngFormatter(sep=""))
            ax.yaxis.set_minor_formatter(mpl.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.6)))
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{workload}{'' if size == 'default' else f' ({size})'} · {dtype}", fontsize="medium")
            _label_panel(ax, j == 0, i == len(dtypes) - 1, "p99 latency ms (log)", "offered rate, queries/s (log)",
                         notes, color)
    colour_handles = [mpl.Line2D([], [], color=color[g], linewidth=3) for g in series]
    handles = [mpl.Line2D([], [], color="0.3", linestyle=SERVER_LINES[m][0], marker=SERVER_LINES[m][1])
               for m in SERVER_LINES if m in used]
    labels = [m.removeprefix("server-") for m in SERVER_LINES if m in used]
    handles += [mpl.Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none"),
                mpl.Line2D([], [], color="0.3", marker=PEAK_MARK, markersize=11, markeredgecolor="black",
                       markeredgewidth=0.6, linestyle="none"),
                mpl.Line2D([], [], color="0.35", linestyle=BOUND_STYLE)]
    labels += ["invalid step (hollow)", "peak valid rate", "p99 bound"]
    if long_used:
        handles.append(mpl.Line2D([], [], color="0.3", marker=LONG_MARK, markersize=9, markerfacecolor="none",
                                  linestyle="none"))
        labels.append("long step (settles its rate)")
    if faint_used:
        handles.append(mpl.Line2D([], [], color="0.3", marker="o", markersize=3, alpha=OTHER_PROCESS_ALPHA, linestyle="none"))
        labels.append("other processes' steps")
        labels[labels.index("peak valid rate")] = "median process's peak"
    fig.legend(colour_handles + handles, series + labels, loc="outside lower center", fontsize="small",
               ncols=min(4, len(series) + len(labels)), frameon=False)
    fig.suptitle((title + "\n" if title else "") + "server scenario: p99 latency from the scheduled arrival, per "
                 "offered rate of the search", fontsize="medium")
    fig.canvas.draw()   # the layout settles the panels' heights, which the bound labels' spacing depends on
    for ax, bounds in labelled:
        _bound_labels(ax, bounds)
    fig.set_layout_engine("none")   # ...and stays as it was drawn (the labels lie inside the panels)
    return fig


def server_path(out: Path) -> Path:
    """Where the server figure of a plot written to `out` goes: beside it, `<stem>-server<suffix>`."""
    out = Path(out)
    return out.with_name(f"{out.stem}-server{out.suffix}")


def save(fig, path: Path) -> Path:
    """Atomically (compare.files.atomic_write), with no software or date stamp: regenerating an unchanged
    plot gives the same bytes."""
    path = Path(path)
    image = check_output(path)
    try:
        with atomic_write(path, binary=True) as f:
            fig.savefig(f, format=image.name, dpi=120, metadata=dict(image.metadata), bbox_inches="tight")
    except Unwritable as e:
        raise BadInput(f"-o: cannot write {path}: {e.strerror}") from None
    return path


def title_for(runs: list[dict]) -> str:
    labels = machine_labels(runs)
    names = list(dict.fromkeys(f"{labels[r['run_id']]} ({r['created'][:10]})" for r in runs))
    return "threadbench scaling — " + "; ".join(names)


def plot_all(paths, out: Path) -> list[Path]:
    """The `plot` command: the scaling curves of one or more runs (merged as in `report`) into `out`, and,
    when they have server cells, their latency-vs-rate curves into server_path(out)."""
    check_output(out)   # a missing extra or a bad file name fails before any loading
    runs = load_runs(paths)
    title = title_for(runs)
    server = server_figure(merge([r for r in runs if "_cells" not in r], machine_labels(runs)), title)
    written = []
    try:
        written.append(save(figure(summarize(runs), title), out))
    except NothingToPlot:
        if server is None:
            raise
    if server is not None:
        written.append(save(server, server_path(out)))
    return written


def plot(paths, out: Path) -> Path:
    """plot_all's first file written."""
    return plot_all(paths, out)[0]
