#!/usr/bin/env python3
"""Does MLPerf LoadGen agree with threadbench's server search? (issue 20 item 2; a report, exits 0; needs the
loadgen extra.)

    python benchmarks/loadgen_crosscheck.py -b torch,mlx,ort -w mlp -s threads,batched,processes \\
        --latency-bound-ms 50 --intra-op-threads 1 [--seconds 10] [--device gpu] [--json out.json]

For each backend x workload x strategy: threadbench's own search, as `compare` runs it (a cell process:
`compare -m server-STRATEGY --no-peak-probe`), gives its peak P and the lowest rate F above it that its
steps settled as failing (compare.serverrules). Then, in this process, the same model (built as a cell
builds it: same weights, inputs, intra-op threads) behind the same strategy object, driven by LoadGen's
Server scenario (PerformanceOnly, --seconds per rate: LoadGen's default minimum duration is 10 s) at P and
at F. They agree when LoadGen finds P VALID and F INVALID, or, where it finds F VALID, it finds 1.1 x F
INVALID (F within 10% of LoadGen's own boundary). Where LoadGen finds P INVALID the script also asks
P / 1.1 and prints it: the pair disagrees, but where P / 1.1 is VALID LoadGen's boundary lies within 10% below
P, and the row counts as "within 10%" (the looser reading: the boundary within 10% of P on either side).

--loadgen-peak adds LoadGen's own boundary for the cell: from P, up (or down) by 10% until LoadGen's verdict
changes, then bisected to 2.5%, each rate --seconds long (10 s: at 10k/s that is 100k queries, more than
one 50 ms stall can fail: compare.measure.loadgen.long_queries). `--repeat-search K` runs threadbench's
search K times (fresh processes, as `compare --repeats K` does) and reports each peak against it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compare import results  # noqa: E402
from compare.cells import Cell  # noqa: E402
from compare.measure import mlperf  # noqa: E402
from compare.measure.build import process_harness  # noqa: E402
from compare.measure.clocks import process_clock  # noqa: E402
from compare.measure.server import STRATEGIES  # noqa: E402
from compare.serverrules import VALID, settle  # noqa: E402

NEAR = 1.10     # "within 10% of LoadGen's own boundary": LoadGen is asked 10% beyond the rate it disagrees on
PEAK_PRECISION = 0.025   # --loadgen-peak bisects LoadGen's boundary to this
WARM_OPS = 50   # ops on the model before LoadGen's first query (the cell warms up the same way, and more)


def threadbench_search(backend: str, workload: str, strategy: str, a, out: Path) -> dict:
    """The cell, run by `compare` in its own process (--repeat-search of them): the first one's (P, F,
    confirmed, steps, seconds) among those that found a valid rate, and every one's peak."""
    cmd = [sys.executable, str(ROOT / "cli.py"), "compare", "-b", backend, "-w", workload, "-m", f"server-{strategy}",
           "-t", str(a.threads), "--latency-bound-ms", str(a.latency_bound_ms), "--no-peak-probe", "-q",
           "--repeats", str(a.repeat_search), "-d", a.device, "-o", str(out), "--overwrite",
           "--load-generator", a.load_generator]
    if a.intra_op_threads:
        cmd += ["--intra-op-threads", str(a.intra_op_threads)]
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - began
    if not out.exists():
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no results file"]}
    every = [r for r in results.load(out)["rows"] if r["offered_rate"] is not None]
    if not every or any(r["status"] != "ok" for r in every):
        first = next((r for r in results.load(out)["rows"] if r["status"] != "ok"), None) or {"status": "?", "cause": ""}
        return {"error": f"{first['status']}: {first['cause']}"}
    searches = []
    for k in range(a.repeat_search):
        rows = sorted((r for r in every if (r["repeat"] or 0) == k), key=lambda r: r["trial"])
        s = settle((r["offered_rate"], r["verdict"] == VALID, r["step_kind"]) for r in rows)
        searches.append({"P": s.peak, "F": s.above if s.above is not None else s.unsettled_above,
                         "confirmed": s.confirmed, "steps": [(round(r["offered_rate"]), r["step_kind"],
                                                              r["verdict"][:60]) for r in rows]})
    first = next((x for x in searches if x["P"] is not None), searches[0])  # a search that found a peak, if any
    return first | {"peaks": [x["P"] for x in searches], "confirmed_all": [x["confirmed"] for x in searches],
                           "searches": searches, "seconds": round(took, 1), "device": every[0]["device"],
                           "generator": every[0]["load_generator"] or "threadbench"}


class Model:
    """The cell's model and strategy in this process, for LoadGen: its Harness as a cell's process builds it
    (process_harness), warmed; for `processes`, the cell's pool of processes."""

    def __init__(self, backend: str, workload: str, strategy: str, device: str, a, cache: Path):
        self.cell = Cell(backend=backend, device=device, dtype="float32", workload=workload, mode=f"server-{strategy}",
                         threads=a.threads, intra_op_threads=a.intra_op_threads)
        self.spec, self.strategy = STRATEGIES[strategy], strategy
        _, self.h = process_harness(self.cell, cache, a.intra_op_threads, process_clock)
        for _ in range(WARM_OPS):
            self.h.op(self.h.inputs[0])
        if strategy == "batched":  # every batch size once, as the cell does
            for size in range(2, a.threads + 1):
                xs = [self.h.inputs[i % len(self.h.inputs)] for i in range(size)]
                self.h.split(self.h.op(self.h.concat(xs)), [self.h.rows] * size)
        self.pool = self.spec.pool(self.cell, _Ctx(cache)) if self.spec.pool else None

    def loadgen(self, rate: float, bound: float, seconds: float, seed: int):
        srv = self.spec.make(self.h, self.cell.threads, self.cell, self.pool)
        return mlperf.run_step(srv, self.spec.batcher, len(self.h.inputs), getattr(srv, "now", process_clock), rate,
                               bound, seed, math.ceil(rate * seconds))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


class _Ctx:
    def __init__(self, cache: Path):
        self.cache = cache


def crosscheck(backend: str, workload: str, strategy: str, a, tmp: Path) -> dict:
    row = {"backend": backend, "workload": workload, "strategy": strategy, "load_before": os.getloadavg()[0]}
    row |= threadbench_search(backend, workload, strategy, a, tmp / f"{backend}-{workload}-{strategy}.json")
    if "error" in row or row["P"] is None:
        return row
    model = Model(backend, workload, strategy, row["device"], a, tmp / "refs")  # the device the cell ran on
    bound = a.latency_bound_ms / 1e3
    try:
        ask = lambda rate, seed: model.loadgen(rate, bound, a.seconds, seed)  # noqa: E731
        at_p = ask(row["P"], 1)
        row["LoadGen at P"] = _said(at_p)
        if row["F"] is not None:
            at_f = ask(row["F"], 2)
            row["LoadGen at F"] = _said(at_f)
            if at_f.valid:
                row["LoadGen at 1.1F"] = _said(ask(NEAR * row["F"], 3))
        if not at_p.valid:
            row["LoadGen at P/1.1"] = _said(ask(row["P"] / NEAR, 4))
        if a.loadgen_peak:   # LoadGen's own boundary, --loadgen-peak-repeats times (its own run-to-run spread)
            found = [loadgen_boundary(ask, row["P"], seeds=range(10 + 1000 * k, 10**6)) for k in range(a.loadgen_peak_repeats)]
            row["LoadGen boundary"], row["LoadGen steps"] = found[0]
            row["LoadGen boundaries"] = [b for b, _ in found]
    finally:
        model.close()
    f_ok = row["F"] is not None and (not row["LoadGen at F"]["valid"] or not row.get("LoadGen at 1.1F", {"valid": 1})["valid"])
    row["agree"] = bool(row["LoadGen at P"]["valid"] and f_ok)
    # the looser reading: LoadGen's boundary within 10% of threadbench's peak, on either side of it
    p_near = row["LoadGen at P"]["valid"] or row.get("LoadGen at P/1.1", {"valid": False})["valid"]
    row["within_10pct"] = bool(p_near and f_ok)
    row["load_after"] = os.getloadavg()[0]
    return row


def loadgen_boundary(ask, start: float, seeds=range(10, 10**6)) -> tuple[tuple[float, float], list]:
    """LoadGen's own [highest VALID, lowest INVALID) near `start`: 10% steps until the verdict changes,
    then bisection to PEAK_PRECISION. `ask(rate, seed)` runs LoadGen at a rate."""
    lo = hi = None
    rate, seeds, said = start, iter(seeds), []
    while lo is None or hi is None:
        step = ask(rate, next(seeds))
        said.append((round(rate), step.valid, round(step.lat_p99_ms, 2)))
        if step.valid:
            lo, rate = rate, rate * NEAR
        else:
            hi, rate = rate, rate / NEAR
    while hi / lo > 1 + PEAK_PRECISION:
        mid = math.sqrt(lo * hi)
        step = ask(mid, next(seeds))
        said.append((round(mid), step.valid, round(step.lat_p99_ms, 2)))
        lo, hi = (mid, hi) if step.valid else (lo, mid)
    return (lo, hi), said


def _said(step) -> dict:
    return {"valid": step.valid, "p99_ms": round(step.lat_p99_ms, 3), "queries": step.queries,
            "verdict": step.verdict}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-b", "--backends", default="torch,mlx,ort")
    ap.add_argument("-w", "--workloads", default="mlp")
    ap.add_argument("-s", "--strategies", default="threads,batched,processes")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--latency-bound-ms", type=float, default=50.0)
    ap.add_argument("--intra-op-threads", type=int, default=1)
    ap.add_argument("-d", "--device", default="cpu", help="as compare's --device (gpu: each backend's first GPU)")
    ap.add_argument("--seconds", type=float, default=10.0, help="LoadGen's minimum duration per rate")
    ap.add_argument("--json", type=Path, help="write every row here too")
    ap.add_argument("--loadgen-peak", action="store_true", help="also bisect LoadGen's own boundary near P")
    ap.add_argument("--loadgen-peak-repeats", type=int, default=1,
                    help="with --loadgen-peak: bisect LoadGen's boundary this many times (fresh seeds each)")
    ap.add_argument("--repeat-search", type=int, default=1, help="threadbench searches per cell (fresh processes)")
    ap.add_argument("-g", "--load-generator", default="auto",
                    help="what drives threadbench's search (compare's --load-generator): auto (LoadGen where it "
                         "imports, compare's default), loadgen, or threadbench (its own dispatcher)")
    a = ap.parse_args()
    rows = []
    print("| backend | workload | strategy | threadbench P | F (first failing above) | bracket | LoadGen at P "
          "(p99 ms) | LoadGen at F (p99 ms) | agree | load 1 min |", flush=True)
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory(prefix="threadbench-crosscheck-") as tmp:
        (Path(tmp) / "refs").mkdir()
        for backend in a.backends.split(","):
            for workload in a.workloads.split(","):
                for strategy in a.strategies.split(","):
                    r = crosscheck(backend, workload, strategy, a, Path(tmp))
                    rows.append(r)
                    print(_line(r), flush=True)
                    if a.json:   # after every cell: a run cut at its time limit keeps the cells it finished
                        a.json.write_text(json.dumps(rows, indent=1))
    for r in rows:
        if "LoadGen boundary" in r:
            lo, hi = r["LoadGen boundary"]
            within = [p is not None and abs(p / lo - 1) <= NEAR - 1 for p in r["peaks"]]
            print(f"\n{r['backend']} {r['workload']} {r['strategy']}: LoadGen's boundary [{lo:,.0f}, {hi:,.0f}) "
                  f"(its steps: {r['LoadGen steps']}); threadbench's peaks ({r['generator']} driving): "
                  + ", ".join(f"{p:,.0f}" if p else "none" for p in r["peaks"])
                  + f"; within 10% of {lo:,.0f}: {sum(within)} of {len(within)}")
            if len(r["LoadGen boundaries"]) > 1:
                print(f"LoadGen's boundary, each of {len(r['LoadGen boundaries'])} bisections: "
                      + ", ".join(f"[{a:,.0f}, {b:,.0f})" for a, b in r["LoadGen boundaries"]))
    agreed = sum(bool(r.get("agree")) for r in rows)
    near = sum(bool(r.get("within_10pct")) for r in rows)
    print(f"\n{agreed} of {len(rows)} agree, {near} of {len(rows)} within 10% (LoadGen {mlperf_version()}; "
          f"{a.seconds:g} s per LoadGen rate; bound {a.latency_bound_ms:g} ms)")
    return 0


def _line(r: dict) -> str:
    if "error" in r:
        return f"| {r['backend']} | {r['workload']} | {r['strategy']} | error: {r['error']} |"
    if r["P"] is None:
        return (f"| {r['backend']} | {r['workload']} | {r['strategy']} | no valid rate | | | | | | "
                f"{r['load_before']:.1f} |")
    said = lambda key: (f"{'VALID' if r[key]['valid'] else 'INVALID'} ({r[key]['p99_ms']:.3g})"  # noqa: E731
                        if key in r else "—")
    f_cell = said("LoadGen at F") + (f"; at 1.1F: {said('LoadGen at 1.1F')}" if "LoadGen at 1.1F" in r else "")
    p_cell = said("LoadGen at P") + (f"; at P/1.1: {said('LoadGen at P/1.1')}" if "LoadGen at P/1.1" in r else "")
    f = f"{r['F']:,.0f}" if r["F"] is not None else "—"
    return (f"| {r['backend']} | {r['workload']} | {r['strategy']} | {r['P']:,.0f} | {f} | "
            f"{'confirmed' if r['confirmed'] else 'not confirmed'} | {p_cell} | {f_cell} | "
            f"{'yes' if r.get('agree') else 'NO'} | {r['load_before']:.1f} → {r.get('load_after', 0):.1f} |")


def mlperf_version() -> str:
    from importlib.metadata import version  # the installed LoadGen's version, for the record
    return version("mlcommons-loadgen")


if __name__ == "__main__":
    sys.exit(main())
