"""`plot`: scaling curves from saved runs. A panel per workload; in it, ops/s against Python threads, a line
per backend × mode with the 95% CI as error bars, the single-thread sequential figure as a lone marker,
and each backend's offline ceiling (its best batched forward) as a dashed horizontal line.

matplotlib is an optional extra, imported only here; without it the command says how to install it."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from ..cells import MODES
from ..options import BadInput

INSTALL_HINT = "plotting needs matplotlib, an optional extra: pip install 'threadbench[plot]'"
LINE_MODES = {m.name: m.line for m in MODES.values() if m.line}  # a curve per mode over threads (compare.cells)
LOG_Y_SPREAD = 20  # a panel whose largest and smallest values differ more than this gets a log y axis


class NothingToPlot(BadInput):
    """No cell of the runs has a throughput (every cell failed, was skipped or is a peak probe)."""


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise BadInput(INSTALL_HINT) from None
    return matplotlib, Figure, FigureCanvasAgg


def check_output(path: Path) -> str:
    """The image format from the file name; an unknown one is bad input, caught before any work."""
    _, Figure, canvas = _matplotlib()
    fmt = Path(path).suffix.lower().lstrip(".")
    supported = canvas.get_supported_filetypes()
    if fmt not in supported:
        raise BadInput(f"-o: cannot tell the image format of {str(path)!r}; end the name with one of: "
                       + ", ".join("." + f for f in sorted(supported)))
    if Path(path).is_dir():
        raise BadInput(f"-o: {path} is a folder; give a file name")
    return fmt


def _group(r: dict, machines: int) -> str:
    from .tables import group_label   # the same names as the tables' column groups
    return group_label(r, machines)


def _value(v) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def figure(summary, title: str = ""):
    """A matplotlib Figure of the scaling curves (not yet saved)."""
    import polars as pl

    from workloads import PROBES
    _, Figure, FigureCanvasAgg = _matplotlib()
    from matplotlib.ticker import EngFormatter
    cells = summary.filter(~pl.col("workload").is_in(list(PROBES)))  # probe cells are no workload
    if cells.filter(pl.col("status") == "ok").height == 0:
        raise NothingToPlot("nothing to plot: no cell of these runs has a measured throughput")
    machines = cells["machine"].n_unique()
    panels = list(dict.fromkeys((r["workload"], r["size"]) for r in cells.iter_rows(named=True)))
    groups = list(dict.fromkeys(_group(r, machines) for r in cells.iter_rows(named=True)))
    palette = [f"C{i}" for i in range(10)]
    color = {g: palette[i % len(palette)] for i, g in enumerate(groups)}

    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 4.0 * nrows + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    used_modes: set[str] = set()
    has_ceiling = False
    not_shown: dict[str, int] = {}
    # each group's points sit a little apart on the x axis, so error bars at the same thread count stay readable
    dodge = {g: 2 ** (0.035 * (i - (len(groups) - 1) / 2)) for i, g in enumerate(groups)}
    for ax, (workload, size) in zip(axes, panels):
        part = [r for r in cells.iter_rows(named=True) if (r["workload"], r["size"]) == (workload, size)]
        xs_all, ys_all = set(), []
        for g in groups:
            mine = [r for r in part if _group(r, machines) == g]
            ok = [r for r in mine if r["status"] == "ok" and _value(r["ops_per_s"]) is not None]
            for r in mine:
                if r not in ok:
                    not_shown[r["status"]] = not_shown.get(r["status"], 0) + 1
            for mode, (style, marker) in LINE_MODES.items():
                pts = sorted((r for r in ok if r["mode"] == mode), key=lambda r: r["threads"])
                if not pts:
                    continue
                x = [r["threads"] * dodge[g] for r in pts]
                y = [r["ops_per_s"] for r in pts]
                lo = [max(0.0, v - (_value(r["ci_low"]) or v)) for v, r in zip(y, pts)]
                hi = [max(0.0, (_value(r["ci_high"]) or v) - v) for v, r in zip(y, pts)]
                ax.errorbar(x, y, yerr=[lo, hi], color=color[g], linestyle=style, marker=marker, markersize=5,
                            capsize=3, linewidth=1.6)
                used_modes.add(mode)
                xs_all.update(r["threads"] for r in pts)
                ys_all += [v - e for v, e in zip(y, lo)] + [v + e for v, e in zip(y, hi)]
            seq = [r for r in ok if r["mode"] == "sequential"]
            for r in seq:
                v = r["ops_per_s"]
                lo, hi = max(0.0, v - (_value(r["ci_low"]) or v)), max(0.0, (_value(r["ci_high"]) or v) - v)
                ax.errorbar([dodge[g] / 2 ** 0.05], [v], yerr=[[lo], [hi]], color=color[g], marker="D",
                            markerfacecolor="white", linestyle="none", markersize=6, capsize=3)
                used_modes.add("sequential")
                xs_all.add(1)
                ys_all += [v - lo, v + hi]
            ceilings = [_value(r["ops_per_s"]) for r in ok if MODES[r["mode"]].ceiling]
            ceilings = [c for c in ceilings if c is not None]
            if ceilings:
                c = max(ceilings)
                ax.axhline(c, color=color[g], linestyle="--", linewidth=1.1, alpha=0.8)
                has_ceiling = True
                ys_all.append(c)
        ticks = sorted(xs_all) or [1]
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlim(ticks[0] / 1.4, ticks[-1] * 1.4)
        positive = [y for y in ys_all if y and y > 0]
        if positive and max(positive) / min(positive) > LOG_Y_SPREAD:
            ax.set_yscale("log")
            ax.set_ylabel("ops/s (log scale)")
        else:
            ax.set_ylim(bottom=0, top=max(positive or [1]) * 1.08)
            ax.set_ylabel("ops/s")
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))   # 20k, 1.5M: readable at a glance
        ax.set_xlabel("Python threads")
        ax.set_title(workload + ("" if size == "default" else f" ({size})"))
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    # two legends: colour = backend (and machine), line style = mode; compact however many groups there are
    from matplotlib.lines import Line2D
    colour_handles = [Line2D([], [], color=color[g], linewidth=3) for g in groups]
    style_handles, style_labels = [], []
    for mode, (style, marker) in LINE_MODES.items():
        if mode in used_modes:
            style_handles.append(Line2D([], [], color="0.3", linestyle=style, marker=marker))
            style_labels.append(mode)
    if "sequential" in used_modes:
        style_handles.append(Line2D([], [], color="0.3", marker="D", markerfacecolor="white", linestyle="none"))
        style_labels.append("sequential (1 thread)")
    if has_ceiling:
        style_handles.append(Line2D([], [], color="0.3", linestyle="--"))
        style_labels.append("offline ceiling (best batched forward)")
    fig.legend(colour_handles, groups, loc="outside lower left", ncols=1 if len(groups) > 3 else len(groups),
               fontsize="small", frameon=False)
    fig.legend(style_handles, style_labels, loc="outside lower right", ncols=1, fontsize="small", frameon=False)
    caption = "error bars: 95% CI of the median over trials"
    if not_shown:
        caption += "; not shown (no throughput): " + ", ".join(f"{n} {s}" for s, n in sorted(not_shown.items()))
    fig.suptitle((title + "\n" if title else "") + caption, fontsize="medium")
    return fig


def save(fig, path: Path) -> Path:
    """Atomically: render to a temporary file in the same folder, then rename over the target."""
    path = Path(path)
    fmt = check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise BadInput(f"-o: cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            # no software/date stamps: regenerating an unchanged plot gives the same bytes
            meta = {"Software": None} if fmt == "png" else {"Creator": None} if fmt in ("pdf", "svg") else None
            fig.savefig(f, format=fmt, dpi=120, metadata=meta, bbox_inches="tight")
        from ..results import _umask
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def title_for(runs: list[dict]) -> str:
    from .report import machine_labels
    labels = machine_labels(runs)
    names = [labels[r["run_id"]] + ("" if labels[r["run_id"]] != r["host"].get("host") else f" ({r['created'][:10]})")
             for r in runs]
    return "threadbench scaling — " + "; ".join(names)


def plot(paths, out: Path) -> Path:
    """The `plot` command: the scaling curves of one or more runs (merged as in `report`) into `out`."""
    from .report import load_runs, summarize
    check_output(out)   # a missing extra or a bad file name fails before any loading
    runs = load_runs(paths)
    return save(figure(summarize(runs), title_for(runs)), out)
