"""Do a cell's figure and interval hold up when the whole `compare` is run again? (issue 11, "Done when")

Runs the same small matrix in N separate `compare` invocations (default 6; each a fresh `python cli.py
compare`, so nothing is shared but the machine), or reads such runs with --analyse, and reports:

1. coverage: for each invocation and cell, whether the invocation's interval [ci_low, ci_high] covers the
   median of the N invocation medians (goal: >= 90% of the cases);
2. width: per cell, the median interval width over the invocations divided by the spread (max - min) of
   the N invocation medians; the median of that ratio over cells (goal: <= 3, so coverage is not bought
   with width);
   With --interleave's sets (files in inv-I/ folders) it also prints the width over the spread of the round
   medians: interleaved invocations share their rounds, so what moves between rounds widens every interval
   without parting their medians, and 2's yardstick cannot see it;
3. warm-up: over every process of every run, how often trial 0 is the strictly slowest trial, next to the
   chance rate 1/trials (goal: <= 25% with 5 trials).

Only cells that are ok in every invocation count (a failed cell has no interval). With --target-ci it measures
nothing: it simulates the adaptive stopping rule (compare/stopping.py) on synthetic cells and on the cells of
the runs given with --analyse, and reports coverage of the true median against the printed level, processes
per cell and width. This is a report, not a test: it always exits 0. It is not a speed benchmark: it needs an idle machine to say anything about the
tool rather than about the load (name the load when you quote it).

    python benchmarks/reproducibility.py                      # the CPU matrix below, 6 invocations
    python benchmarks/reproducibility.py --device gpu --dtype bfloat16 --workloads mlp,transformer
    python benchmarks/reproducibility.py --analyse results/repro/inv-*.json
    python benchmarks/reproducibility.py --analyse results/supplementary/h100-5a5be10/h100-closed-*.json \
        results/supplementary/h100-d9e6e69/h100-closed-*.json    # a sweep's shards are one invocation
    python benchmarks/reproducibility.py --default-compare --out-dir results/repro/cpu-default   # README's compare
    python benchmarks/reproducibility.py --interleave --device gpu ... --out-dir results/repro/x   # a sweep's timing
        # (30 files: a device call returns 8, so pack them, e.g. --out-dir /tmp/x && tar czf $OUT/x.tgz -C /tmp x)
    python benchmarks/reproducibility.py --analyse results/repro/x/inv-*/shard-*.json
    python benchmarks/reproducibility.py --analyse results/repro/cpu-default-7/inv-*.json --rounds 5
    python benchmarks/reproducibility.py --simulate 5,9 --analyse results/repro/h100-5/inv-*.json
    python benchmarks/reproducibility.py --target-ci 2,5,10 --analyse results/repro/*/inv-*.json
"""
from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.optimize import brentq  # noqa: E402
from scipy.stats import norm  # noqa: E402

from compare import results as R  # noqa: E402
from compare import shards, stats, stopping  # noqa: E402

COVERAGE_GOAL = 0.90     # issue 11: an invocation's interval covers the median of the six in >= 90% of cases
WIDTH_GOAL = 3.0         # ... while the median interval is no wider than 3x the spread of the six medians
TRIAL0_GOAL = 0.25       # trial 0 the slowest in <= 25% of processes (chance is 1/trials: 20% with 5)


def compare_command(a: argparse.Namespace, out: Path) -> list[str]:
    if a.default_compare:   # the README's first command as it stands, every setting its default
        return [sys.executable, str(ROOT / "cli.py"), "compare", "-q", "-o", str(out)]
    return [sys.executable, str(ROOT / "cli.py"), "compare", "-q", "-b", a.backends, "-w", a.workloads,
            "-m", a.modes, "-t", a.threads, "-d", a.device, "--dtype", a.dtype, "--repeats", str(a.repeats),
            "--trials", str(a.trials), "--duration", str(a.duration), "-o", str(out),
            *(["--cache-dir", a.cache_dir] if a.cache_dir else [])]


def run_invocations(a: argparse.Namespace) -> list[Path]:
    folder = Path(a.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(a.start, a.start + a.invocations):
        out = folder / f"inv-{i}.json"
        cmd = compare_command(a, out)
        if i == a.start:
            print("command:", " ".join(cmd[1:]), flush=True)
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        print(f"invocation {i + 1}/{a.start + a.invocations}: exit {proc.returncode}, {time.monotonic() - started:.0f} s",
              flush=True)
        if out.is_file():
            paths.append(out)
        else:
            print(proc.stderr[-2000:], file=sys.stderr)
    return paths


def interleaved_order(rounds: list[int], invocations: int, start: int = 0) -> list[tuple[int, int]]:
    """(round, invocation) in the order --interleave runs them: round by round, every invocation's shard of
    that round in turn, the first of them moved on by one each round so no invocation always runs first."""
    return [(r, start + (k + r) % invocations) for r in rounds for k in range(invocations)]


def run_interleaved(a: argparse.Namespace) -> list[Path]:
    """Each invocation cut into --repeats shards, one round of processes each (`compare --shard R/REPEATS`),
    run round by round across the invocations: each invocation's processes of a cell then lie a round apart
    over the set's whole time, as a sweep's rounds do over the sweep's (benchmarks/gpu_sweep.sh), where
    run_invocations packs them into one invocation's minute. Invocation I's shards go to OUT/inv-I/."""
    rounds = range(1, a.repeats + 1)
    if a.interleave != "all":
        first, _, last = a.interleave.partition("-")
        rounds = range(int(first), int(last or first) + 1)
    order = interleaved_order(list(rounds), a.invocations, a.start)
    paths = []
    for n, (r, i) in enumerate(order):
        out = Path(a.out_dir) / f"inv-{i}" / f"shard-{r}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = compare_command(a, out) + ["--shard", f"{r}/{a.repeats}"]
        if n == 0:
            print("command:", " ".join(cmd[1:]), flush=True)
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        print(f"round {r}, invocation {i}: exit {proc.returncode}, {time.monotonic() - started:.0f} s", flush=True)
        if out.is_file():
            paths.append(out)
        else:
            print(proc.stderr[-2000:], file=sys.stderr)
    return sorted(Path(a.out_dir).glob("inv-*/shard-*.json"))


def label(key: tuple) -> str:
    backend, device, dtype, workload, size, mode, threads, k = key[:8]     # then fp32 precision, intra-op, ...
    from compare.cells import axis_label
    return f"{backend}/{device}/{dtype} {workload} {mode} {axis_label(mode, threads, k)}".strip()


def first_rounds(run: dict, rounds: int | None) -> dict:
    """The run as if it had stopped after its first `rounds` rounds of processes (every cell's processes
    with repeat < rounds): what fewer processes per cell would have printed, on the same machine at the same
    times. None: the run as it is."""
    if rounds is None:
        return run
    keep = lambda d: (d.get("repeat") or 0) < rounds  # noqa: E731
    return {**run, "rows": [r for r in run["rows"] if keep(r)], "plan": [c for c in run.get("plan", []) if keep(c)]}


def load_runs(paths: list[Path]) -> list[dict]:
    """The runs in these files, the shards of one sweep merged into one run (one invocation). Files in a
    folder `inv-I/` are invocation I's shards (--interleave): every invocation of a set runs the same plan at
    one revision, so their shards share a sweep id and are merged folder by folder."""
    groups: dict[Path | None, list[Path]] = {}
    for path in paths:
        groups.setdefault(path.parent if path.parent.name.startswith("inv-") else None, []).append(path)
    return [run for group in groups.values() for run in shards.merge([R.load(p) for p in group])]


def analyse(paths: list[Path], rounds: int | None = None) -> dict:
    runs = [first_rounds(run, rounds) for run in load_runs(paths)]
    per_run = [{R.row_key(rec): rec for rec in stats.summarize(run["rows"], stats.adaptive_rules([run])).to_dicts()}
               for run in runs]
    keys = [k for k in per_run[0] if all(k in cells and cells[k]["ops_per_s"] is not None for cells in per_run)]
    cases, covered, ratios, lines = 0, 0, [], []
    pairs, crossed = 0, 0   # stricter: each invocation's interval against every other invocation's median
    for key in keys:
        recs = [cells[key] for cells in per_run]
        medians = [r["ops_per_s"] for r in recs]
        for i, r in enumerate(recs):
            others = medians[:i] + medians[i + 1:]
            pairs, crossed = pairs + len(others), crossed + sum(r["ci_low"] <= m <= r["ci_high"] for m in others)
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
            "pairs": pairs, "crossed": crossed, "round_ratios": round_ratios(runs, per_run, keys, paths),
            "lines": lines, "processes": processes, "trial0_slowest": slowest, "trials": sorted(trials_seen)}


def round_ratios(runs: list[dict], per_run: list[dict], keys: list[tuple], paths: list[Path]) -> list[float]:
    """--interleave sets only (every file in an inv-I/ folder), one per cell: the median interval width over the
    spread of the round medians, a round's median being that of every invocation's process of that round (the
    processes that ran within a few minutes of each other). Interleaved invocations each draw one process from
    every round, so what moves between rounds widens every interval and hardly moves their medians: the
    width / spread of the medians then grows with it, and this ratio says whether the width is that movement
    (the nearer 1, the more so) or the processes' own scatter. Empty for sets of whole runs."""
    if not paths or not all(p.parent.name.startswith("inv-") for p in paths):
        return []
    out = []
    for key in keys:
        by_round: dict[int, list[float]] = {}
        for run in runs:
            rows = [r for r in run["rows"] if r["status"] == "ok" and R.row_key(r) == key]
            for rnd, median in stats.process_medians(rows).items():
                by_round.setdefault(rnd, []).append(median)
        medians = [statistics.median(v) for v in by_round.values()]
        if len(medians) < 2 or max(medians) == min(medians):
            continue
        width = statistics.median(cells[key]["ci_high"] - cells[key]["ci_low"] for cells in per_run)
        out.append(width / (max(medians) - min(medians)))
    return out


def report(res: dict, paths: list[Path]) -> None:
    runs = load_runs(paths)
    loads = [[p["load"]["load_avg"][0] for p in r.get("host_probe") or [] if p.get("load", {}).get("load_avg")]
             for r in runs]
    hosts = sorted({f"{r['host'].get('host')} ({r['host'].get('cpu')}, {r['host'].get('cpu_count')} cores)"
                    for r in runs})
    print(f"{res['runs']} invocations on {', '.join(hosts)}, {res['cells']} cells ok in all of them; "
          + ("1-min load average at start/end of each: " + " ".join("/".join(f"{x:.1f}" for x in run) for run in loads)
             if any(loads) else "no load recorded by these runs: say what ran"))
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
    if res["pairs"]:
        print(f"cross: an invocation's interval covers another invocation's median in {res['crossed']}/"
              f"{res['pairs']} = {100 * res['crossed'] / res['pairs']:.1f}% of the pairs (stricter than coverage)")
    print(f"width: median CI width / spread of the {res['runs']} medians = {width:.2f} (goal <= {WIDTH_GOAL:g}) "
          f"{'PASS' if width <= WIDTH_GOAL else 'FAIL'}")
    if res.get("round_ratios"):
        ratio = statistics.median(res["round_ratios"])
        print(f"rounds (--interleave): median CI width / spread of the round medians = {ratio:.2f} (no goal: the "
              "nearer 1, the more of an interval's width is what moved between rounds, which every invocation "
              "shares, so that the width's yardstick above, made for independent re-runs, hardly sees it)")
    print(f"warm-up: trial 0 strictly slowest in {res['trial0_slowest']}/{res['processes']} processes = "
          f"{100 * t0:.1f}% (chance {chance}; goal <= {100 * TRIAL0_GOAL:.0f}%) "
          f"{'PASS' if t0 <= TRIAL0_GOAL else 'FAIL'}")


def pools(paths: list[Path]) -> dict[tuple, list[list[float]]]:
    """Each cell's process medians, one list per run (the shards of one sweep merged into one run), for the
    cells ok in every run."""
    per_run: list[dict[tuple, list[float]]] = []
    for run in load_runs(paths):
        by: dict[tuple, list[dict]] = {}
        for r in run["rows"]:
            if r["status"] == "ok":
                by.setdefault(R.row_key(r), []).append(r)
        per_run.append({key: list(stats.process_medians(rows).values()) for key, rows in by.items()})
    return {key: [cells[key] for cells in per_run] for key in per_run[0] if all(key in c for c in per_run)}


def simulate(paths: list[Path], processes: list[int], invocations: int = 6, sets: int = 2000,
             seed: int = 1) -> dict[str, dict[int, float]]:
    """Resample: how would `invocations` runs of N processes per cell fare, drawn from these runs' process medians?

    Two ways, each interval the tool's own (`stats.median_ci`):
    - by run: each simulated invocation is one of the given runs (drawn with replacement) and its N processes
      are drawn from that run's: the drift between runs stays what it was, a shift that all of one
      invocation's processes share. This is what re-running such a sweep would show.
    - pooled: the N processes are drawn from every run's together: what an invocation would show if its
      processes were spread over the whole time the runs took (the drift then sits inside each interval).
    A gap between the two is drift between the runs that one invocation's processes do not span.
    Returns the mean coverage per way and N."""
    cells = pools(paths)
    rng = np.random.default_rng(seed)
    print(f"resampled from {len(paths)} runs' process medians ({len(cells)} cells ok in all), {sets} sets of "
          f"{invocations} invocations each:")
    ways = {
        "by run": lambda runs, n: rng.choice(runs[rng.integers(len(runs))], n),
        "pooled": lambda runs, n: rng.choice([v for run in runs for v in run], n),
    }
    out: dict[str, dict[int, float]] = {way: {} for way in ways}
    for n in processes:
        level = stats.median_ci(list(range(n)))[2]
        for way, draw in ways.items():
            covers, widths = [], []
            for _ in range(sets):
                hit = total = 0
                ratios = []
                for runs in cells.values():
                    draws = [draw(runs, n) for _ in range(invocations)]
                    medians = [float(np.median(d)) for d in draws]
                    target, spread = statistics.median(medians), max(medians) - min(medians)
                    cis = [stats.median_ci(list(d))[:2] for d in draws]
                    hit, total = hit + sum(lo <= target <= hi for lo, hi in cis), total + invocations
                    width = statistics.median(hi - lo for lo, hi in cis)
                    ratios.append(width / spread if spread > 0 else math.inf)
                covers.append(hit / total)
                widths.append(statistics.median(ratios))
            out[way][n] = statistics.mean(covers)
            print(f"  {n:2d} processes (interval level {100 * level:.1f}%), {way}: coverage "
                  f"{100 * statistics.mean(covers):.1f}% on average, >= {100 * COVERAGE_GOAL:.0f}% in "
                  f"{100 * statistics.mean(c >= COVERAGE_GOAL for c in covers):.0f}% of sets; width / spread "
                  f"{statistics.median(widths):.2f} (median), <= {WIDTH_GOAL:g} in "
                  f"{100 * statistics.mean(w <= WIDTH_GOAL for w in widths):.0f}% of sets")
    print("  (by run: each invocation one of the runs, its processes from that run; pooled: its processes from all "
          "runs, as if spread over their whole time)")
    return out


# -- --target-ci: does the stopping rule keep its printed level? -----------------------------------------
@dataclass(frozen=True)
class Population:
    """One kind of cell's process medians: exp(centre + sigma * Z) with probability weight, a mixture of
    lognormals, so that its true median is known exactly (where its CDF crosses 1/2)."""
    name: str
    weights: tuple[float, ...]
    centres: tuple[float, ...]   # log of each component's median
    sigmas: tuple[float, ...]

    def draw(self, rng: np.random.Generator, cells: int, processes: int) -> np.ndarray:
        """(cells, processes) process medians, in the order they were measured."""
        w = np.asarray(self.weights) / sum(self.weights)
        component = rng.choice(len(w), size=(cells, processes), p=w)
        z = rng.standard_normal((cells, processes))
        return np.exp(np.asarray(self.centres)[component] + np.asarray(self.sigmas)[component] * z)

    def median(self) -> float:
        w, c, s = np.asarray(self.weights) / sum(self.weights), np.asarray(self.centres), np.asarray(self.sigmas)
        below = lambda t: float(np.sum(w * norm.cdf((t - c) / s))) - 0.5   # noqa: E731
        return math.exp(brentq(below, c.min() - 10 * s.max(), c.max() + 10 * s.max(), xtol=1e-12))


def lognormal(sigma: float) -> Population:
    return Population(f"lognormal, sigma {100 * sigma:g}%", (1.0,), (0.0,), (sigma,))


def one_slow(share: float, factor: float, sigma: float) -> Population:
    """Most processes around 1, a share of them `factor` times as fast: the H100's heavy lower tail."""
    return Population(f"{100 * share:g}% slow x{factor:g}, sigma {100 * sigma:g}%", (1 - share, share),
                      (0.0, math.log(factor)), (sigma, sigma))


def resampled(name: str, values: list[float]) -> Population:
    """Real process medians, each a component of equal weight smoothed by a lognormal kernel (Silverman's
    bandwidth on the logs), so draws are continuous and the true median exact."""
    logs = np.log(np.asarray(values, dtype=float))
    spread = min(np.std(logs, ddof=1), float(np.subtract(*np.quantile(logs, [0.75, 0.25]))) / 1.34)
    h = 0.9 * spread * len(logs) ** -0.2
    return Population(name, (1.0,) * len(logs), tuple(logs - np.median(logs)), (h,) * len(logs))


SYNTHETIC = [lognormal(0.005), lognormal(0.02), lognormal(0.05), lognormal(0.15),
             one_slow(0.1, 0.6, 0.02), one_slow(0.2, 0.7, 0.03)]


def repro_populations(paths: list[Path]) -> list[Population]:
    """One population per cell of each experiment (the runs of one folder pooled)."""
    folders: dict[Path, list[Path]] = {}
    for p in paths:
        folders.setdefault(p.parent, []).append(p)
    return [resampled(f"{folder.name} {label(key)}", pooled)
            for folder, runs in folders.items() for key, per_run in pools(runs).items()
            if len(pooled := [v for run in per_run for v in run]) >= 5]


def fixed_n_rule(first: int, cap: int) -> stopping.Rule:
    """For contrast: each look's interval the fixed-n one `compare --repeats n` prints (stats.median_ci), as
    if the number of processes had not depended on the data. Its level varies with n (nan here)."""
    cuts = tuple(int(stats.median_ci(list(range(n)))[0]) for n in range(first, cap + 1))
    return stopping.Rule(first, cap, cuts, math.nan, math.nan)


def stopped_at(x: np.ndarray, rule: stopping.Rule, target: float, give_up: float | None) -> np.ndarray:
    """How many processes each cell (a row of x) ends with: what stopping.plan_next decides, for many cells at
    once (it looks at the same counts and asks the same `Rule.stop`)."""
    end = np.zeros(len(x), dtype=int)
    for n in rule.looks():
        still = np.flatnonzero(end == 0)
        end[still[rule.stop(x[still, :n], target, give_up)]] = n
    return end


def stopped_intervals(x: np.ndarray, rule: stopping.Rule, end: np.ndarray) -> tuple[np.ndarray, ...]:
    """(median, low, high) of each cell's interval over the processes it ended with."""
    median, low, high = (np.empty(len(x)) for _ in range(3))
    for n in np.unique(end):
        rows = end == n
        median[rows], low[rows], high[rows], _ = rule.interval(x[rows, :n])
    return median, low, high


def worst_case(x: np.ndarray, rule: stopping.Rule, truth: float) -> np.ndarray:
    """Whether each cell's interval covers under the worst stopping there is, one that stops at the first count
    (first .. cap) whose interval misses the median: it covers only if every count's interval does."""
    every = np.ones(len(x), dtype=bool)
    for n in range(rule.first, rule.cap + 1):
        _, low, high, _ = rule.interval(x[:, :n])
        every &= (low <= truth) & (truth <= high)
    return every


@dataclass
class Outcome:
    """One population under one rule and target, per simulated cell: whether its interval covered the true
    median, how many processes it took, its width relative to its median."""
    covered: np.ndarray
    processes: np.ndarray
    width: np.ndarray


def simulate_rule(pop: Population, rule: stopping.Rule, target: float, cells: int, rng: np.random.Generator,
                  give_up: float | None = stopping.GIVE_UP) -> Outcome:
    x = pop.draw(rng, cells, rule.cap)
    end = stopped_at(x, rule, target, give_up)
    median, low, high = stopped_intervals(x, rule, end)
    truth = pop.median()
    return Outcome((low <= truth) & (truth <= high), end, stopping.relative_width(median, low, high))


def simulate_target(populations: list[Population], targets: list[float], first: int, cap: int,
                    cells: int = 20000, seed: int = 1) -> None:
    """Print, per target and population: coverage of the true median, mean processes per cell, the share of
    cells that stopped at the first look and that reached the target, the median width; the same without
    giving up; and the fixed-n intervals' coverage under the same stopping, for contrast."""
    rule, fixed = stopping.rule(first, cap), fixed_n_rule(first, cap)
    rng = np.random.default_rng(seed)
    se = math.sqrt(rule.level * (1 - rule.level) / cells)
    fixed_levels = [stats.median_ci(list(range(n)))[2] for n in range(first, cap + 1)]
    print(f"rule: {first} processes, then more while the interval is wider than the target (and within "
          f"{stopping.GIVE_UP:g}x of it, projected), at most {cap}: it looks at "
          f"{', '.join(map(str, rule.looks()))} processes, leaving out "
          f"{', '.join(str(rule.cut(n)) for n in rule.looks())} at each end; printed level "
          f"{100 * rule.level:.1f}%. {cells} simulated cells per population (standard error of a coverage "
          f"{100 * se:.2f} points).")
    worst = [worst_case(p.draw(rng, cells, cap), rule, p.median()).mean() for p in populations[:3]]
    worst_fixed = [worst_case(p.draw(rng, cells, cap), fixed, p.median()).mean() for p in populations[:3]]
    print(f"worst-case stopping (stop as soon as the interval misses), {', '.join(p.name for p in populations[:3])}: "
          f"coverage {', '.join(f'{100 * w:.1f}%' for w in worst)} (printed {100 * rule.level:.1f}%); "
          f"fixed-n intervals {', '.join(f'{100 * w:.1f}%' for w in worst_fixed)} (printed "
          f"{100 * min(fixed_levels):.1f}-{100 * max(fixed_levels):.1f}%)")
    for target in targets:
        print(f"target {100 * target:g}%:{'':44} coverage processes at {first} reached  width | never giving up: "
              f"processes reached | fixed-n: coverage")
        runs = [(p, simulate_rule(p, rule, target, cells, rng), simulate_rule(p, rule, target, cells, rng, None),
                 simulate_rule(p, fixed, target, cells, rng)) for p in populations]
        rows = [(p.name, [o.covered.mean(), o.processes.mean(), (o.processes == first).mean(),
                          (o.width <= target).mean(), np.median(o.width), a.processes.mean(),
                          (a.width <= target).mean(), f.covered.mean()]) for p, o, a, f in runs]
        rows.append(("all, as one sweep (mean over the cells above)", list(np.mean([r for _, r in rows], axis=0))))
        for name, (cov, procs, at_first, reached, width, procs_all, reached_all, cov_fixed) in rows:
            print(f"  {name:52} {100 * cov:6.1f}% {procs:6.1f} {100 * at_first:5.0f}% {100 * reached:5.0f}% "
                  f"{100 * width:5.1f}% | {procs_all:6.1f} {100 * reached_all:5.0f}% | {100 * cov_fixed:6.1f}%")
        low = min(rows[:-1], key=lambda r: r[1][0])
        low_all = min(o.covered.mean() for _, _, o, _ in runs)
        print(f"  lowest coverage {100 * low[1][0]:.1f}% ({low[0]}), never giving up {100 * low_all:.1f}%: "
              f"{'PASS' if min(low[1][0], low_all) >= rule.level - 3 * se else 'FAIL'} against the printed "
              f"{100 * rule.level:.1f}% (less 3 standard errors)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--analyse", nargs="+", type=Path, help="report on these runs instead of measuring")
    p.add_argument("--invocations", type=int, default=6)
    p.add_argument("--out-dir", default="results/repro")
    p.add_argument("--start", type=int, default=0, help="the first invocation's number (inv-START.json): the "
                   "rest of a set whose first invocations ran in an earlier device call")
    p.add_argument("--cache-dir", help="compare --cache-dir: the float64 references computed once, as a sweep "
                   "shares them")
    p.add_argument("--default-compare", action="store_true",
                   help="each invocation is `compare` with every setting its default (the matrix options unused)")
    p.add_argument("--backends", default="torch")
    p.add_argument("--workloads", default="mlp,block")
    p.add_argument("--modes", default="sequential,threads")
    p.add_argument("--threads", default="2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=5, help="processes per cell (5: a 93.8%% interval)")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--duration", type=float, default=0.1)
    p.add_argument("--interleave", nargs="?", const="all", help="cut each invocation into its --repeats rounds "
                   "and run them round by round across the invocations (a sweep's timing), invocation I's shards "
                   "in OUT/inv-I/; a value such as 1-3 runs only those rounds (the rest in another call)")
    p.add_argument("--rounds", type=int, help="with --analyse: only each run's first ROUNDS processes per cell "
                   "(what fewer processes would have printed, e.g. 5 of a run of 7)")
    p.add_argument("--simulate", help="with --analyse: processes per cell to simulate, e.g. 5,7,9")
    p.add_argument("--target-ci", help="simulate the --target-ci stopping rule at these targets (%%), e.g. "
                   "2,5,10, on synthetic cells and those of --analyse")
    p.add_argument("--first", type=int, default=stopping.min_processes(), help="--target-ci: processes before the "
                   "first look")
    p.add_argument("--max-repeats", type=int, default=stopping.MAX_PROCESSES, help="--target-ci: the cap")
    p.add_argument("--cells", type=int, default=20000, help="--target-ci: simulated cells per population")
    a = p.parse_args()
    if a.target_ci:
        simulate_target(SYNTHETIC + repro_populations(a.analyse or []),
                        [float(t) / 100 for t in a.target_ci.split(",")], a.first, a.max_repeats, a.cells)
        return
    if a.simulate:
        if not a.analyse:
            p.error("--simulate resamples existing runs: give them with --analyse")
        simulate(a.analyse, [int(n) for n in a.simulate.split(",")])
        return
    paths = a.analyse or (run_interleaved(a) if a.interleave else run_invocations(a))
    if not a.analyse and a.interleave not in (None, "all"):
        print(f"rounds {a.interleave} of {a.repeats} run; once every round has, report with --analyse "
              f"{a.out_dir}/inv-*/shard-*.json")
        return
    if len(load_runs(paths)) < 2:
        print("need at least two runs")
        return
    report(analyse(paths, a.rounds), paths)


if __name__ == "__main__":
    main()
