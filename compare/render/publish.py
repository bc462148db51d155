"""`publish`: results/README.md (how to read it, the brief, a short section per machine), a details file per
section (results/details/<stem>.md: every cell, the environment, the commands) and its plots, generated from
every results file in results/runs/; and the same for each supplementary page (SUPPLEMENTARY).

A section is one run, or several runs of one machine whose cells do not overlap (one file per backend, as
benchmarks/gpu_sweep.sh writes): runs that share a host name, or sit together in one sub-folder of
results/runs/, are shown side by side. The page is rebuilt from the runs alone (no clock, no randomness),
so publishing unchanged runs rewrites identical files and a publish's git diff shows only what changed.
Defects found after a run was made come from a committed table (results/known-defects.json), never from
running git."""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl

import backends

from .. import results, shards, stats
from ..cells import FAILED, MODES, OK, UNAVAILABLE, Cell, axis_label
from ..options import BadInput
from . import analysis, findings, outputs, plot, report, tables
from . import format as fmt
from . import server as server_tables
from .format import clip, revision

RUNS_DIR = Path("results/runs")
OUT_DIR = Path("results")
DEFECTS_FILE = Path("results/known-defects.json")   # defects of old runs, found after they were made
COMMAND = "python cli.py publish"
GPU_DEVICES = {"cuda", "gpu", "mps"}
SKIP_DIRS = {"scratch"}   # results/runs/scratch/ is git-ignored: throwaway runs are not published
PAGE = "README.md"
DETAILS_DIR = "details"   # beside a page: a file per section with every cell, the environment and the commands
# Pages of runs kept off the results page: (their runs, where the page goes, what they are, the hardware whose
# section on the results page supersedes them: said so once that section is there, "to be" until then)
SUPPLEMENTARY = [(Path("results/supplementary/h100"), Path("results/supplementary"),
                  "an earlier H100 80GB host, one sweep per framework and precision", "H200"),
                 (Path("results/supplementary/h200"), Path("results/supplementary/h200"),
                  "an H200 sweep at an earlier revision, 3 of its 5 shards and a server run cut short", "H200"),
                 (Path("results/supplementary/h100-5a5be10"), Path("results/supplementary/h100-5a5be10"),
                  "the H100 80GB sweep at 5a5be10 (the results page's GPU section until the H200's)", "H200")]
SUPPLEMENTARY_NOTES = "NOTES.md"   # hand-written notes on the other runs kept there, shown under the page


def find_runs(runs_dir: Path, files: list[Path] | None = None) -> list[dict]:
    """Every *.json in the curated folder and its sub-folders (except scratch/ and hidden ones), or exactly
    the files given, checked against the schema: one bad file stops the publish, as a page that silently
    leaves out a run is worse than none."""
    runs_dir = Path(runs_dir)
    if files:
        paths = [Path(f) for f in files]
        for p in paths:
            if not p.is_file():
                raise results.ResultsError(f"{p}: no such results file (publish takes results files; a folder goes in --runs)")
    else:
        if not runs_dir.is_dir():
            raise results.ResultsError(f"{runs_dir}: no such folder of runs")
        paths = [p for p in runs_dir.rglob("*.json") if p.is_file()
                 and not any(part in SKIP_DIRS or part.startswith(".") for part in p.relative_to(runs_dir).parts[:-1])]
    runs, seen = [], {}
    for path in sorted(paths):
        run = results.load(path)
        if run["run_id"] in seen:
            raise results.ResultsError(f"{path}: same run ({run['run_id']}) as {seen[run['run_id']]}; keep one copy")
        seen[run["run_id"]] = path
        run["_path"] = str(path)
        inside = path.resolve().is_relative_to(runs_dir.resolve())
        run["_folder"] = str(path.resolve().parent.relative_to(runs_dir.resolve())) if inside else "."
        runs.append(run)
    return sorted(shards.merge(runs), key=lambda r: (r["created"], r["run_id"]))


def sections(runs: list[dict]) -> list[list[dict]]:
    """Groups of runs shown together, newest group first: runs of one sub-folder (else of one host) whose
    measured cells do not overlap. Calibration probes (stats.PROBE_WORKLOADS: the matmul peak, the launch
    rate) each run measures for itself do not keep its runs apart; the section shows each probe from the
    first run that measured it (probe_rows), and each run's own figures in its environment lines."""
    def key(r: dict) -> tuple:
        return ("folder", r["_folder"]) if r["_folder"] != "." else ("host", r["host"].get("host"))

    def cells(r: dict) -> set[tuple]:
        return {results.row_key(row) for row in r["rows"] if row["workload"] not in stats.PROBE_WORKLOADS}
    groups = report.group_runs(runs, key=key, cells=cells)
    return sorted(groups, key=lambda g: max((r["created"], r["run_id"]) for r in g), reverse=True)


def probe_rows(rows: list[dict]) -> list[dict]:
    """The merged rows of a section with each probe cell's rows from one run only (the first that has it),
    so that no two runs' trials are pooled into one figure."""
    first: dict[tuple, str] = {}
    for r in rows:
        if r["workload"] in stats.PROBE_WORKLOADS:
            first.setdefault(results.row_key(r), r["run_id"])
    return [r for r in rows if r["workload"] not in stats.PROBE_WORKLOADS or first[results.row_key(r)] == r["run_id"]]


def stem(group: list[dict]) -> str:
    """The section's file name stem: its sub-folder's name, or its first run's file name."""
    folder = group[0]["_folder"]
    return folder.replace(os.sep, "-") if folder != "." else Path(group[0]["_path"]).stem


def devices(runs: list[dict]) -> list[str]:
    """backend/device pairs that produced a throughput, in order."""
    return list(dict.fromkeys(f"{r['backend']} {r['device']}" for run in runs for r in run["rows"]
                              if r["status"] == OK and r["ops_per_s"] is not None))


def hardware(runs: list[dict]) -> str:
    names = list(dict.fromkeys(env.get("device_name") for run in runs for env in run["backend_env"].values()
                               if env.get("device_name")))
    return ", ".join(names) or str(runs[0]["host"].get("cpu"))


def _when(run: dict) -> str:
    return run["created"][:16].replace("T", " ")


def machine(group: list[dict]) -> str:
    return ", ".join(dict.fromkeys(report.machine_name(r) for r in group))


def title(group: list[dict]) -> str:
    hosts = machine(group)
    first, last = _when(group[0]), _when(group[-1])
    when = first if first == last else f"{first} – {last}"
    return f"{hosts} — {when} UTC — {hardware(group)}"


def known_defects(path: Path = DEFECTS_FILE) -> list[dict]:
    """The table of defects found after runs were made (results/known-defects.json): per defect the fixing
    commit, what it affects, the sentence shown, the run_ids it applies to, decided when it was found, and, where
    only some cells show it, their `workloads` (the rest of those runs can still be claimed from).
    No table: no defects to tell."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        defects = json.loads(path.read_text())["defects"]
        for d in defects:
            if not (isinstance(d["fix"], str) and isinstance(d["says"], str) and isinstance(d["runs"], dict)):
                raise TypeError("fix, says and runs")
            if not (isinstance(d.get("workloads", []), list) and all(isinstance(w, str) for w in d.get("workloads", []))):
                raise TypeError("workloads, where given, a list of names")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise results.ResultsError(f"{path}: not a table of known defects ({e})") from None
    return defects


def _label(run: dict) -> str:
    """A run named in a sentence: its file, and for a sweep merged from shards, how many files it is."""
    shards = run.get("shards") or []
    return _name(run) + (f" and its {len(shards) - 1} other shards" if len(shards) > 1 else "")


def _ids(run: dict) -> set[str]:
    """The run ids a known defect may list for this run: its own and, for a sweep merged from shards, each
    shard's (the id in the shard's file)."""
    return {run["run_id"]} | {s["run_id"] for s in run.get("shards") or [] if s.get("run_id")}


def held_back(group: list[dict], defects: list[dict]) -> list[tuple[dict, dict, tuple[str, ...]]]:
    """(defect, run, the run's workloads whose claims it holds back) for each run of the group a known defect
    lists: every workload of the run, or, where the defect names `workloads`, those of them the run has."""
    out = []
    for d in defects:
        for run in group:
            if _ids(run) & set(d["runs"]):
                present = dict.fromkeys(r["workload"] for r in run["rows"])
                out.append((d, run, tuple(w for w in present if w in (d.get("workloads") or present))))
    return out


def _name(run: dict) -> str:
    """How the page names one run of a section: its file, else (a run not read from a file) its id."""
    return Path(run["_path"]).name if run.get("_path") else run["run_id"]


def caveats(group: list[dict], defects: list[dict] = ()) -> list[str]:
    """What a reader must know before quoting the figures, derived from the runs themselves and from the
    known defects (known_defects) of the runs listed there."""
    host = group[0]["host"]
    rows = [r for run in group for r in run["rows"]]
    measured = {r["device"] for r in rows if r["status"] == OK}
    out = []
    if not str(host.get("os", "")).startswith("Darwin"):
        out.append(f"Apple MPS/Metal not measured here: this is {host.get('os')} {host.get('machine')}; "
                   "torch MPS and MLX on Apple GPUs need a run on a Mac")
    if not measured & GPU_DEVICES:
        out.append("CPU only: no GPU was measured here")
    out += [f"not measured — {u}" for u in dict.fromkeys(f"{r['backend']} {r['device']}: {r['cause']}"
                                                         for r in rows if r["status"] == UNAVAILABLE)]
    by_status: dict[str, int] = {}
    for _, status in {(results.row_key(r), r["status"]) for r in rows if r["status"] in FAILED}:
        by_status[status] = by_status.get(status, 0) + 1
    if by_status:
        out.append("cells without a valid figure: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
                   + " (causes in the notes under the tables)")
    spread = [p for run in group if run["settings"].get("repeats", 1) >= 2 for p in run.get("processes", [])
              if p.get("started") and p.get("ended")]
    if spread:   # what an interval over processes spans: the host's moves while they ran, no more
        start, end = min(p["started"] for p in spread), max(p["ended"] for p in spread)
        at = lambda t: time.strftime("%H:%M", time.gmtime(t))  # noqa: E731
        out.append(f"the intervals over processes span {(end - start) / 60:.0f} min: every process behind them ran "
                   f"between {at(start)} and {at(end)} UTC, so they hold what a re-run in that time varies by, not "
                   "one on another day or host")
    short: dict[str, list[str]] = {}   # said once, however many runs were measured that way
    for run in group:
        cell = run["settings"].get("cell") or {}
        plan = run.get("plan") or []
        if plan and all(str(c.get("mode", "")).startswith("server-") for c in plan):
            continue   # a server cell measures in rate steps, not in trials of windows
        if ((cell.get("trials") or 5) < 5 or (cell.get("duration") or 0.5) < 0.5) and run["settings"].get("repeats", 1) < 2:
            short.setdefault(f"{cell.get('trials')} trials × {cell.get('duration')} s per cell", []).append(run["run_id"])
    for what, ids in short.items():
        out.append(f"short measurement ({what}" + (f", {len(ids)} of {len(group)} runs" if len(group) > 1 else "")
                   + "): indicative figures; `diff` needs 4 or more trials per side to call a change significant")
    for run in group:
        for s in run.get("superseded", []):
            out.append(f"{len(s['cells'])} cells of run {run['run_id']} were measured again in run {s['by']} and "
                       f"are shown from there: {s['why']}")
    for run in group:  # a sweep cut short (interrupt, time limit) leaves planned cells unmeasured
        done = {results.row_key(r) for r in run["rows"]} | results.superseded_keys(run)
        missing = [c for c in run.get("plan", []) if Cell.from_dict(c).key() not in done]
        if missing:
            what = sorted({f"{c['backend']} {c['dtype']}" + (f" ({c['fp32_precision']})" if c["dtype"] == "float32" else "")
                           for c in missing})
            out.append(f"incomplete: {len(missing)} of {len(run['plan'])} planned cells were not run in run "
                       f"{run['run_id']} (interrupted), among them {', '.join(what)} — `compare --resume` finishes it")
    for run in group:  # cells a --budget left out before the run began: planned, never measured
        budget = run.get("budget") or {}
        if budget.get("left_out"):
            out.append(f"not measured, left out of {_name(run)} to fit its `--budget {budget['minutes']:g}` minutes "
                       f"(costliest first): {', '.join(budget['left_out'])}")
    for defect in defects:
        hit: dict[str, list[dict]] = {}   # revision -> the group's runs it shows in, said once per revision
        for _, run, _ in held_back(group, [defect]):
            rev = revision(run["host"].get("threadbench_revision")) or "an unrecorded revision"
            hit.setdefault(rev[:7], []).append(run)
        for rev, shown in hit.items():
            n = len(shown)
            several = n > 1 or len(shown[0].get("shards") or []) > 1   # a sweep of shards is several files
            runs = ("this run was" if len(group) == 1 else f"all {n} runs were" if n == len(group)
                    else ", ".join(_label(run) for run in shown) + (" were" if several else " was"))
            out.append(f"{runs} made at {rev}, before {defect['fix']}: {defect['says']}")
    grown = analysis.background_growth(unaffected(group, rows, defects))   # a known defect says its own
    if grown:
        cells, their, named = _cells_named(grown)
        out.append(f"{cells} ran {their} later timed windows beside more of {their} own process than the first (up to "
                   f"+{max(grown.values()):.1f} cores beyond the measuring threads; {named}): something in "
                   "the process outside the measured threads took cores while they were timed, so those figures may be low")
    starved = analysis.starved(rows)
    if starved:
        cells, their, named = _cells_named(starved)
        n = sum(starved.values())
        out.append(f"In {cells} a thread completed no request in a timed window ({n} window{'s' if n > 1 else ''}; "
                   f"{named}): starved of the GIL by a holder that takes it straight back, or of a core. "
                   f"{their.capitalize()} throughput counts what completed; {their} latencies and time split read only "
                   "the threads that ran")
    unrecorded = sorted(b for b in {r["backend"] for r in rows if r["status"] == OK and r["device"] in GPU_DEVICES
                                    and r.get("call_ms") is not None and r.get("sync_waits") is None}
                        if backends.declared(b, "sync_waits") is not False)   # once a backend: True, or not known
    if unrecorded:   # split measured on a device before schema /5, and the backend's class not readable here
        out.append(f"the verdicts (why) of {', '.join(unrecorded)} on the GPU were drawn before threadbench recorded "
                   "that the framework's synchronise only waits: CPU time it spent spin-waiting for the device "
                   "(CUDA's default wait spins; torch's did for all of an 8 ms kernel on an H100) counts there as "
                   "the thread's own work, so a cell waiting on the device may read host-bound or GIL-bound; the "
                   "throughputs are unaffected (benchmarks/README.md: a known answer on a real GPU)")
    declared = sorted({b for r in group for b in r.get("sync_waits_declared", [])}
                      & {r["backend"] for r in rows if r["device"] in GPU_DEVICES and r.get("call_ms") is not None})
    if declared:   # results.declare_sync_waits: a file older than schema /5, read with its backends' declaration
        waits = sorted({r["backend"] for r in rows if r["backend"] in declared and r.get("sync_waits") == 1})
        out.append(f"{'these runs predate' if len(group) > 1 else 'this run predates'} threadbench's record of what "
                   f"a framework's synchronise does; the verdicts (why) take it from each backend's declaration "
                   f"(Backend.sync_waits) as a run now records it"
                   + (f": {', '.join(waits)} only wait{'s' if len(waits) == 1 else ''} there, so CPU time spent "
                      "spin-waiting for the device counts as waiting, not as the thread's own work" if waits else ""))
    ran_without = any(row.get("free_threaded") for r in group for row in r.get("rows", []))
    if any(r["host"].get("gil_enabled", True) for r in group):
        out.append(f"Python {host.get('python')} with the GIL: the thread scaling is what a standard CPython "
                   "gives" + ("; the cells named after a free-threaded interpreter ran under it, with the GIL on "
                          "and off" if ran_without else "; a free-threaded build may scale differently"))
    return out


def shard_lines(run: dict, out_dir: Path) -> list[str]:
    """The data lines of a sweep run in shards: the sweep, each shard's file and where it ran, each missing
    shard and what it leaves out."""
    s = run["sweep"]
    walls = [t["wall_s"] for t in run.get("time_split", []) if t.get("wall_s") is not None]
    wall = (f"; {sum(walls) / 60:.1f} min of wall time in all, each shard's `compare` from start to end "
            "(its time_split), start-ups included" if walls else "")
    lines = [f"- sweep `{s['id']}` at threadbench `{revision(s.get('revision')) or 'revision not recorded'}`, "
             f"cut into {s['shards']} shards, each run alone and merged here{wall}:"]
    for sh in run["shards"]:
        rel = os.path.relpath(sh["file"], out_dir) if sh.get("file") else sh["run_id"]
        lines.append(f"  - shard {sh['shard']}/{s['shards']}: [{rel}]({rel}) — run `{sh['run_id']}`, {sh['created']}")
    lines += [f"  - {line}" for line in run.get("missing_shards", [])]
    return lines


def wall_line(group: list[dict]) -> str | None:
    """A section of several runs: each run's wall time and their sum, each `compare` from start to end (its
    time_split, start-ups included; a resumed run's parts added up), the device time a re-run of the whole
    section costs, less each call's own start. None for one run (a sweep's shard lines say it)."""
    parts, total, cut = [], 0.0, False
    for run in group:
        splits = [t for t in run.get("time_split", []) if t.get("wall_s") is not None]
        if not splits:
            return None   # a run that predates the field: no sum to state
        wall = sum(t["wall_s"] for t in splits)
        total += wall
        cut |= any(t.get("interrupted") for t in splits)
        what = (f"sweep `{run['sweep']['id']}` ({run['sweep']['shards']} shards)" if run.get("shards")
                else f"{_name(run)}" + (f" ({len(splits)} calls)" if len(splits) > 1 else ""))
        parts.append(f"{what} {wall / 60:.1f}")
    if len(group) < 2:
        return None
    return (f"- wall time of every run here, each `compare` from start to end (its time_split), start-ups included, "
            f"in minutes: {', '.join(parts)}; **{total / 60:.1f} min in all**"
            + (" (a run was interrupted: what it left out is not counted)" if cut else ""))


def section(group: list[dict], plot_name: str | None, out_dir: Path, server_plot: str | None = None,
            defects: list[dict] = ()):
    """(markdown of one machine section on the page, markdown of its details file, its per-cell summary). The
    page keeps the data links, the plots, the compact like-for-like tables, the findings and the caveats; the
    details file (DETAILS_DIR/<stem>.md) the environment, the per-cell and per-step tables and the commands."""
    label = machine(group)
    rows = probe_rows(report.merge(group, {r["run_id"]: label for r in group}))   # one machine: no machine prefix
    summary = stats.summarize(rows, stats.adaptive_rules(group))
    claims = Claims.of(group, rows, defects)
    n_cells = len({results.row_key(r) for r in rows})
    n_ok = len({results.row_key(r) for r in rows if r["status"] == OK})
    details = f"{DETAILS_DIR}/{stem(group)}.md"
    data = []
    for run in group:
        made_at = revision(run["host"].get("threadbench_revision"))
        resumed = [f"`{revision(r['threadbench_revision'])}` ({r['cells']} cells, {r['at']})"
                   for r in run.get("resumed", [])
                   if r.get("threadbench_revision") and revision(r["threadbench_revision"]) != made_at]
        data.append((run, f"run `{run['run_id']}`, {run['created']}, threadbench "
                     + (f"`{made_at}`" if made_at else "revision not recorded (run predates the field)")
                     + (f"; resumed with {', '.join(resumed)}" if resumed else "")))
    files = ", ".join(f"[{_name(run)}]({os.path.relpath(run['_path'], out_dir)})" for run, _ in data)
    lines = [f'<a id="{stem(group)}"></a>', "", f"## {title(group)}", "",
             f"{n_ok} of {n_cells} cells measured, from {files}. Every cell, the environment and the commands: "
             f"[{details}]({details}).", ""]
    lines += [x for run in group if run.get("shards") for x in shard_lines(run, out_dir) + [""]]
    if (walls := wall_line(group)):
        lines += [walls, ""]
    lines += ["### Caveats", ""] + [f"- {c}" for c in caveats(group, defects)] + [""]   # before any figure
    if plot_name:
        lines += [f"![scaling curves: {title(group)}]({plot_name})", "",
                  "The plot: requests/s against N on log axes, a panel per workload, a colour per backend and a "
                  "line style per mode; each point the median with its interval as the error bar, sequential a lone "
                  "marker, each backend's ceiling dashed, failed or too-slow cells marked at the bottom.", ""]
    lines += [tables.to_markdown(t, heading="###") for t in tables.build_compact(summary)]
    found = findings.findings(claims.summary, claims.rows, report.backend_env(group))
    if found or claims.withheld:
        lines += ["### Findings", ""] + claims.withheld_lines()
        for f in found:
            lines += [f"**{f.title}**", ""] + [f"- {x}" for x in f.sentences] + [""]
    if server_plot:
        lines += [f"![server scenario, p99 latency vs offered rate: {title(group)}]({server_plot})", "",
                  "The server plot: p99 latency against the offered Poisson rate, a line style per strategy; valid "
                  "steps filled, invalid ones hollow, the peak starred, the bound dashed. Every rate step is in the "
                  f"[details]({details}).", ""]

    rel = Path(os.path.relpath(out_dir, out_dir / DETAILS_DIR))
    detail = [f"# {title(group)} — every cell", "",
              f"<!-- Generated by `{COMMAND}`; the section it details: [{rel / PAGE}]({rel / PAGE}#{stem(group)}). -->", "",
              f"{n_ok} of {n_cells} cells measured. Data:"]
    for run, what in data:
        path = os.path.relpath(run["_path"], out_dir / DETAILS_DIR)
        detail.append(f"- [{os.path.relpath(run['_path'], out_dir)}]({path}) — {what}")
        if run.get("shards"):   # a sweep run in shards, merged (compare.shards)
            detail += ["  " + x for x in shard_lines(run, out_dir / DETAILS_DIR)]
    detail.append("")
    env = _per_run(group, lambda run: report.environment_lines(run))
    warnings = _per_run(group, lambda run: [f"**warning** ({k}): {w}" for k, w in report.warning_lines(run)])
    detail += ["## Environment", ""] + [f"- {x}" for x in env + warnings] + [""]
    if summary.height:   # before the tables whose symbols it explains
        detail += ["## Legend", ""] + [f"- {x}" for x in tables.legend(summary, report.backend_env(group))] + [""]
    built = tables.build(summary) + server_tables.build(rows)  # server cells: rate steps, their own tables
    detail += [tables.to_markdown(t, heading="##") for t in built] or ["_No measured cells._", ""]
    commands = list(dict.fromkeys(report.command_line(run) for run in group))   # each as given, once
    detail += ["## Command" + ("s" if len(commands) > 1 else ""), "", "```sh"] + commands + ["```", ""]
    return "\n".join(lines), "\n".join(detail), summary, claims


@dataclass
class Claims:
    """What a section's findings and brief line may be drawn from: its rows less those a known defect
    (known_defects) affects — every cell of a listed run, or, where the defect names `workloads`, only those
    cells of it — which are shown in the tables with the defect in the caveats, and claim nothing."""
    summary: pl.DataFrame
    rows: list[dict]
    withheld: list[str]        # what is held back: files of runs, or "the W cells of" files

    @classmethod
    def of(cls, group: list[dict], rows: list[dict], defects: list[dict]) -> "Claims":
        held: dict[tuple[str, ...], list[str]] = {}   # the workloads held back, as said (empty: all) -> files
        for d, run, workloads in held_back(group, defects):
            scope = tuple(w for w in d.get("workloads") or () if w in workloads)   # in the defect's order
            if scope or not d.get("workloads"):   # a run without the named workloads has nothing held back
                held.setdefault(scope, []).append(_label(run))
        kept = unaffected(group, rows, defects)
        withheld = [f"the {' and '.join(scope)} cells of {_files(names)}" if scope else _files(names)
                    for scope, names in held.items()]
        return cls(stats.summarize(kept, stats.adaptive_rules(group)), kept, withheld)

    def withheld_lines(self) -> list[str]:
        if not self.withheld:
            return []
        return [f"No claim is drawn from {'; '.join(self.withheld)}: made before the fix of a known defect (see "
                "the caveats); their figures are in the tables only.", ""]


def _cells_named(found: dict[tuple, float]) -> tuple[str, str, str]:
    """For a caveat about some cells (results.row_key -> a figure): "2 cells", "their", and the two with the
    largest figure named ("torch mlp threads ×2, ...")."""
    named = [f"{k[0]} {k[3]} {k[5]} {axis_label(k[5], k[6], k[7])}".strip()
             for k in sorted(found, key=found.get, reverse=True)[:2]]
    return (f"{len(found)} cells", "their", ", ".join(named)) if len(found) > 1 else ("1 cell", "its", named[0])


def unaffected(group: list[dict], rows: list[dict], defects: list[dict]) -> list[dict]:
    """The rows no known defect affects: not of a listed run, or of a workload its defect does not name."""
    held = {(run["run_id"], w) for _, run, workloads in held_back(group, defects) for w in workloads}
    return [r for r in rows if (r["run_id"], r["workload"]) not in held]


def flagged(group: list[dict], defects: list[dict]) -> dict[str, str]:
    """Per workload a known defect withdraws the claims of in this section, the note its plot panels carry."""
    out: dict[str, str] = {}
    for d, _, workloads in held_back(group, defects):
        for w in workloads:
            out.setdefault(w, f"known defect (fixed in {d['fix']}): no claim drawn, see the caveats")
    return out


def _files(names: list[str]) -> str:
    """Files named once each; more than two as their count, the first and the last."""
    names = list(dict.fromkeys(names))
    return ", ".join(names) if len(names) <= 2 else f"{len(names)} runs ({names[0]} … {names[-1]})"


def _per_run(group: list[dict], lines_of) -> list[str]:
    """Each run's lines, said once: a line two or more runs share as it is; one only a single run of several
    has (its host probe and load, say) names its file, so the reader knows which run it describes."""
    per = [(_name(run), list(dict.fromkeys(lines_of(run)))) for run in group]
    seen = Counter(line for _, lines in per for line in lines)
    return list(dict.fromkeys(line if seen[line] > 1 or len(group) == 1 else f"{name}: {line}"
                              for name, lines in per for line in lines))


def brief_markdown(groups: list[list[dict]], claimed: list[Claims]) -> list[str]:
    """The answer first: one line per machine × workload × precision (compare.render.findings.brief), from
    what each section may claim."""
    lines = []
    for g, claims in zip(groups, claimed):
        summary = claims.summary
        names = {m: machine(g) for m in (summary["machine"].unique().to_list() if summary.height else [])}
        lines += [f"- {x}" for x in findings.brief(summary, names, claims.rows, report.backend_env(g))]
        if claims.withheld:
            lines.append(f"- **{machine(g)}**: nothing from {'; '.join(claims.withheld)} (a known defect; its section "
                         "says which).")
    if not lines:
        return []
    return ["## In brief", ""] + lines + [""]


def how_to_read(summaries: list) -> list[str]:
    """What the figures are, before any is used: units, the interval, ×N and k, the ceiling, the claim rule."""
    frames = [s for s in summaries if s.height]
    recs = pl.concat(frames, how="diagonal_relaxed").to_dicts() if frames else []
    # the throughput cells with a figure: a failed cell's processes and a server cell's summary of its rate
    # steps (its figure is the peak, said apart) would name counts and levels no figure on the page has
    shown = [r for r in recs if r.get("ops_per_s") is not None and not str(r.get("mode", "")).startswith("server-")]
    level = fmt.ci_level(r["ci_level"] for r in shown)
    processes = sorted({r["n_processes"] for r in shown if r.get("n_processes")})
    over = (f"over {'/'.join(map(str, processes))} processes per cell" if processes and processes != [1] else
            "over the timed windows of the cell's one process")
    modes = ", ".join(m for m, spec in MODES.items() if spec.ceiling)
    return ["How to read it:",
            f"- **figures** are requests/s (a server cell: the peak offered rate it sustains, with the bracket "
            "[peak, lowest failing rate above it) from one process or the interval of the median peak over "
            "several), the median "
            f"[the distribution-free interval of the median {over}, its level: {level}];",
            "- **×N**: N Python threads, batcher clients or processes; **k=N**: k requests per forward (offline, "
            "the caller batches); **× seq**: over sequential, one request at a time in the main thread;",
            f"- **ceiling**: the best of every ceiling configuration ({modes}, at every k and N the run asked "
            "for); it exists only when every one of them was measured, else it is shown as missing (—) with why;",
            f"- a difference is **claimed** only when the two intervals are disjoint and the medians at least "
            f"{100 * findings.MIN_GAIN:.0f}% apart (**a ≈ b**: no clear difference); **like-for-like** compares "
            "frameworks at equal effective precision only (FP32 exact, TF32, BF16);",
            "- every other symbol is in the legend of each section's details file.", ""]


def page(groups: list[list[dict]], texts: list[str], runs_dir: Path, out_dir: Path, summaries: list | None = None,
         head: list[str] | None = None, tail: list[str] | None = None, claimed: list[Claims] | None = None,
         notes: list[str] | None = None) -> str:
    """The page: its title and how to add a run (or `head`: another page's title and label), how to read it,
    the brief, the index of machines, `tail` (a link elsewhere), a section per machine, `notes`."""
    rel_runs = os.path.relpath(runs_dir, out_dir)
    summaries = summaries or []
    top = (head or ["# threadbench results", ""]) + [
        f"<!-- Generated by `{COMMAND}` from the results files in {runs_dir}/. Do not edit by hand: "
        "add or remove runs, then run the command again. -->", "",
        "Should you serve a model from several Python threads, processes or a batcher, with torch or MLX, on "
        "your machine — and how sure is that? Measured answers, per machine and workload.", ""]
    if not groups:
        return "\n".join(top + ["_No runs yet._", ""] + (tail or []) + (notes or []))
    top += how_to_read(summaries) + brief_markdown(groups, claimed or [])
    top += ["| machine | date (UTC) | hardware | measured |", "|---|---|---|---|"]
    for g in groups:
        top.append(f"| [{machine(g)}](#{stem(g)}) | {_when(g[-1])[:10]} | {hardware(g)} | {', '.join(devices(g)) or '—'} |")
    top.append("")
    if head is None:
        top += [f"Generated by `{COMMAND}` from every results file in [{rel_runs}/]({rel_runs}/) (to add one: "
                f"`python cli.py compare ... --machine NAME --out {runs_dir}/<name>.json`, then `{COMMAND}`; runs of "
                "one machine are shown as one section). Compare two runs with `python cli.py diff A.json B.json`.", ""]
    return "\n".join(top + (tail or []) + texts + (notes or []))


def publish(runs_dir: Path = RUNS_DIR, out_dir: Path = OUT_DIR, plots: bool = True,
            files: list[Path] | None = None, defects_file: Path = DEFECTS_FILE,
            head: list[str] | None = None, tail: list[str] | None = None, notes: list[str] | None = None) -> list[Path]:
    """The `publish` command for one page: rewrite out_dir/README.md, a details file per section
    (out_dir/details/<stem>.md) and a plot per section from the curated folder (or exactly the files given);
    `head` replaces the page's title, `tail` follows its index, `notes` end it; returns the files written."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    if plots:
        try:
            plot._matplotlib()
        except BadInput:
            raise BadInput(plot.INSTALL_HINT + " (or publish without plots: --no-plots)") from None
    groups = sections(find_runs(runs_dir, files))   # everything is loaded and checked before anything is written
    defects = known_defects(defects_file)
    empty = [g for g in groups if not devices(g)]   # nothing measured (a --device cuda run on a CPU host, say)
    groups = [g for g in groups if devices(g)]
    names = [stem(g) for g in groups]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise results.ResultsError(f"{runs_dir}: two sections would both be named {dup!r}; rename one of the files")
    written, texts, summaries, claimed = [], [], [], []
    for g in groups:
        plot_name = f"{stem(g)}.{outputs.PUBLISHED_PLOT.name}" if plots else None
        server = plot.server_figure(report.merge(g, {r["run_id"]: machine(g) for r in g}), title(g)) if plots else None
        server_plot = f"{stem(g)}-server.{outputs.PUBLISHED_PLOT.name}" if server is not None else None  # only with server cells
        if server is not None:
            written.append(plot.save(server, out_dir / server_plot))
        text, detail, summary, claims = section(g, plot_name, out_dir, server_plot, defects)
        if plots:
            try:
                fig = plot.figure(summary, title(g), flagged(g, defects))
            except plot.NothingToPlot:
                text, fig = section(g, None, out_dir, server_plot, defects)[0], None
            if fig is not None:
                written.append(plot.save(fig, out_dir / plot_name))
        written.append(report.write_text(out_dir / DETAILS_DIR / f"{stem(g)}.md", detail))
        texts.append(text)
        summaries.append(summary)
        claimed.append(claims)
    text = page(groups, texts, runs_dir, out_dir, summaries, head, tail, claimed, notes)
    if empty:   # said, not silently dropped
        why = [f"- {Path(r['_path']).name}: " + (next((x['cause'] for x in r['rows'] if x['cause']), "") or "no cell ran")
               for g in empty for r in g]
        text += "\n".join(["", "## Not published: nothing measured", ""] + [clip(w, 300) for w in why] + [""])
    written.append(report.write_text(out_dir / PAGE, text))
    return written


def supplementary_head(runs_dir: Path, what: str, defects: list[dict], main: str = f"../{PAGE}") -> list[str]:
    """The supplementary page's title and label: what its runs are (`what`), the revisions and processes
    per cell they were made with and the known defects they show, read from the runs; `main`: the results
    page, relative to this one."""
    runs = find_runs(runs_dir)
    revisions = sorted({(revision(r["host"].get("threadbench_revision")) or "unrecorded")[:7] for r in runs})
    procs = sorted({r["settings"].get("repeats") or 1 for r in runs})
    ids = {i for r in runs for i in _ids(r)}
    hit = [d for d in defects if ids & set(d["runs"])]
    return ["# threadbench supplementary results", "",
            f"**{what}**: made at revision {', '.join(revisions)}, "
            + ("one process per cell" if procs == [1] else f"{'/'.join(map(str, procs))} processes per cell")
            + "; known defects: "
            + ("; ".join(f"{d['affects']} (fixed in {d['fix']})" for d in hit) if hit else "none") + ". "
            f"The main page is [{main}]({main}).", ""]


def publish_all(plots: bool = True, defects_file: Path = DEFECTS_FILE) -> list[Path]:
    """`publish` with no runs named: the results page from RUNS_DIR and each supplementary page
    (SUPPLEMENTARY), the main page linking to it in one line."""
    defects = known_defects(defects_file)
    shown = " ".join(hardware(g) for g in sections(find_runs(RUNS_DIR)))
    written, links = [], []
    for runs_dir, out_dir, about, by in SUPPLEMENTARY:
        what = f"{about}, {'superseded' if by in shown else 'to be superseded'} by the {by} section"
        notes = out_dir / SUPPLEMENTARY_NOTES
        kept = [notes.read_text()] if notes.is_file() else []
        files = sorted(runs_dir.rglob("*.json"))   # named, so that runs_dir's own name makes the section
        written += publish(runs_dir.parent, out_dir, plots, files=files, defects_file=defects_file,
                           head=supplementary_head(runs_dir, what, defects, os.path.relpath(OUT_DIR / PAGE, out_dir)),
                           notes=kept)
        rel = os.path.relpath(out_dir / PAGE, OUT_DIR)
        links.append(f"Earlier runs, off this page: [{rel}]({rel}) — {what}.")
    return publish(RUNS_DIR, OUT_DIR, plots, defects_file=defects_file, tail=links + [""]) + written
