"""Do a cell's figure and interval hold up when the whole `compare` is run again? (issue 11, "Done when")

Runs the same small matrix in N separate `compare` invocations (default 6; each a fresh `python cli.py
compare`, so nothing is shared but the machine), or reads such runs with --analyse, and reports:

1. coverage: for each invocation and cell, whether the invocation's interval [ci_low, ci_high] covers the
   median of the N invocation medians (goal: >= 90% of the cases);
2. width: per cell, the median interval width over the invocations divided by the spread (max - min) of
   the N invocation medians; the median of that ratio over cells (goal: <= 3, so coverage is not bought
   with width);
3. warm-up: over every process of every run, how often trial 0 is the strictly slowest trial, next to the
   chance rate 1/trials (goal: <= 25% with 5 trials).

Only cells that are ok in every invocation count (a failed cell has no interval). This is a report, not a
test: it always exits 0. It is not a speed benchmark: it needs an idle machine to say anything about the
tool rather than about the load (name the load when you quote it).

    python benchmarks/reproducibility.py                      # the CPU matrix below, 6 invocations
    python benchmarks/reproducibility.py --device gpu --dtype bfloat16 --workloads mlp,transformer
    python benchmarks/reproducibility.py --analyse results/repro/inv-*.json
"""
from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compare import results as R  # noqa: E402
from compare import stats  # noqa: E402

COVERAGE_GOAL = 0.90     # issue 11: an invocation's interval covers the median of the six in >= 90% of cases
WIDTH_GOAL = 3.0         # ... while the median interval is no wider than 3x the spread of the six medians
TRIAL0_GOAL = 0.25       # trial 0 the slowest in <= 25% of processes (chance is 1/trials: 20% with 5)


def compare_command(a: argparse.Namespace, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "compare", "-q", "-b", a.backends, "-w", a.workloads,
            "-m", a.modes, "-t", a.threads, "-d", a.device, "--dtype", a.dtype, "--repeats", str(a.repeats),
            "--trials", str(a.trials), "--duration", str(a.duration), "-o", str(out)]


def run_invocations(a: argparse.Namespace) -> list[Path]:
    folder = Path(a.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(a.invocations):
        out = folder / f"inv-{i}.json"
        cmd = compare_command(a, out)
        if i == 0:
            print("command:", " ".join(cmd[1:]), flush=True)
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        print(f"invocation {i + 1}/{a.invocations}: exit {proc.returncode}, {time.monotonic() - started:.0f} s",
              flush=True)
        if out.is_file():
            paths.append(out)
        else:
            print(proc.stderr[-2000:], file=sys.stderr)
    return paths


def label(key: tuple) -> str:
    backend, device, dtype, workload, size, mode, threads, k, _ = key
    from compare.cells import axis_label
    return f"{backend}/{device}/{dtype} {workload} {mode} {axis_label(mode, threads, k)}".strip()


def analyse(paths: list[Path]) -> dict:
    runs = [R.load(p) for p in paths]
    per_run = [{R.row_key(rec): rec for rec in stats.summarize(run["rows"]).to_dicts()} for run in runs]
    keys = [k for k in per_run[0] if all(k in cells and cells[k]["ops_per_s"] is not None for cells in per_run)]
    cases, covered, ratios, lines = 0, 0, [], []
    for key in keys:
        recs = [cells[key] for cells in per_run]
        medians = [r["ops_per_s"] for r in recs]
        target = statistics.median(medians)
        spread = max(medians) - min(medians)
        hits = [r["ci_low"] <= target <= r["ci_high"] for r in recs]
        width = statistics.median(r["ci_high"] - r["ci_low"] for r in recs)
        ratio = width / spread if spread > 0 else math.inf
        cases, covered = cases + len(hits), covered + sum(hits)
        ratios.append(ratio)
        lines.append(f"  {label(key):42} median of {len(recs)} {target:10.1f}  spread {100 * spread / target:5.1f}%  "
                     f"median CI width {100 * width / target:5.1f}% ({ratio:.2f}× spread)  covered {sum(hits)}/"
                     f"{len(hits)}  level {recs[0]['ci_level']:.3f} over {recs[0]['ci_scope']} "
                     f"({recs[0]['n_processes']} processes)")
    slowest, processes, trials_seen = 0, 0, set()
    for run in runs:
        by: dict[tuple, list[tuple[int, float]]] = {}
        for r in run["rows"]:
            if r["status"] == "ok" and r["ops_per_s"] is not None:
                by.setdefault(R.process_key(r), []).append((r["trial"], r["ops_per_s"]))
        for trials in by.values():
            if len(trials) < 2:
                continue
            trials_seen.add(len(trials))
            first = dict(trials)[0]
            processes += 1
            slowest += all(first < v for t, v in trials if t != 0)
    return {"runs": len(runs), "cells": len(keys), "cases": cases, "covered": covered, "ratios": ratios,
            "lines": lines, "processes": processes, "trial0_slowest": slowest, "trials": sorted(trials_seen)}


def report(res: dict, paths: list[Path]) -> None:
    runs = [R.load(p) for p in paths]
    loads = [r["host"].get("load_avg") or r["host"].get("load") for r in runs]
    print(f"{res['runs']} invocations, {res['cells']} cells ok in all of them"
          + (f"; host load recorded: {loads}" if any(loads) else "; no load recorded by these runs: say what ran"))
    for line in res["lines"]:
        print(line)
    if not res["cases"]:
        print("no cell was ok in every invocation: nothing to compare")
        return
    cover = res["covered"] / res["cases"]
    width = statistics.median(res["ratios"])
    t0 = res["trial0_slowest"] / res["processes"] if res["processes"] else math.nan
    chance = ", ".join(f"{100 / n:.0f}% with {n}" for n in res["trials"])
    print(f"coverage: {res['covered']}/{res['cases']} = {100 * cover:.1f}% (goal >= {100 * COVERAGE_GOAL:.0f}%) "
          f"{'PASS' if cover >= COVERAGE_GOAL else 'FAIL'}")
    print(f"width: median CI width / spread of the {res['runs']} medians = {width:.2f} (goal <= {WIDTH_GOAL:g}) "
          f"{'PASS' if width <= WIDTH_GOAL else 'FAIL'}")
    print(f"warm-up: trial 0 strictly slowest in {res['trial0_slowest']}/{res['processes']} processes = "
          f"{100 * t0:.1f}% (chance {chance}; goal <= {100 * TRIAL0_GOAL:.0f}%) "
          f"{'PASS' if t0 <= TRIAL0_GOAL else 'FAIL'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--analyse", nargs="+", type=Path, help="report on these runs instead of measuring")
    p.add_argument("--invocations", type=int, default=6)
    p.add_argument("--out-dir", default="results/repro")
    p.add_argument("--backends", default="torch")
    p.add_argument("--workloads", default="mlp,block")
    p.add_argument("--modes", default="sequential,threads")
    p.add_argument("--threads", default="2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=5, help="processes per cell (5: a 93.8%% interval)")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--duration", type=float, default=0.1)
    a = p.parse_args()
    paths = a.analyse or run_invocations(a)
    if len(paths) < 2:
        print("need at least two runs")
        return
    report(analyse(paths), paths)


if __name__ == "__main__":
    main()
