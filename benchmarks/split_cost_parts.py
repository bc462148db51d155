"""Which part of the per-request time split costs throughput (issue 22, harness.py goal e's follow-up).

    python benchmarks/split_cost_parts.py --threads 4 --rounds 21

A torch CPU `mlp` threads xN cell (one intra-op thread), as harness.py goal e runs it, in five variants
interleaved round by round, each paired against the first:
  before      the timed loop as it was before the split (harness.unsplit_loop), the op as one call (forward and
              synchronise, which does nothing on the CPU), no gauges
  call-alone  the loop before the split on the framework call alone: what the split loop runs on a device where
              the framework is synchronous (Backend.synchronous_on), without the split
  split       the cell as it runs: the split loop (on the CPU the call alone), sampled ops, gauges
  split-loop  the split loop with the op as one call and no gauges, its sampled ops (CPU-clock reads) kept
  unsampled   as split-loop with no op sampled: the loop's own bookkeeping alone
Prints each variant's median rate and its paired ratio to `before` with the median's interval, and the same for
the process's CPU time per request over each window (which the guest's speed swings move far less than the
rate); then `split` paired to `call-alone`: the split's own cost on the loop it now replaces. A report, not a
test: it always exits 0.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import harness as HB  # noqa: E402  (benchmarks/harness.py: goal e's cell, rounds and baseline loop)
import backends  # noqa: E402
from compare.cells import Cell  # noqa: E402
from compare.measure import schedule, split  # noqa: E402
from compare.measure.harness import Harness  # noqa: E402
from compare.stats import median_ci  # noqa: E402

SPLIT_LOOP, GAUGES = schedule.timed_loop, split.Reader.gauges


CPU: dict[str, list[float]] = {}   # per variant, each round's process CPU time per request (us)


def rate(name: str, loop, gauges, h: Harness, cell: Cell) -> float:
    """One round of the cell with the schedule's timed loop and the threads' gauge reads swapped in: its
    requests/s; its CPU per request goes to CPU[name]."""
    schedule.timed_loop, split.Reader.gauges = loop, gauges
    try:
        ops_per_s, t = HB.harness_rate(h, cell)
        CPU.setdefault(name, []).append(HB.cpu_per_request_us(t))
        return ops_per_s
    finally:
        schedule.timed_loop, split.Reader.gauges = SPLIT_LOOP, GAUGES


def unsampled_loop(call, sync, x, deadline, lap, clock, cpu, every, timer=None):
    """The split loop with a stride no window reaches: no op is sampled."""
    return SPLIT_LOOP(call, sync, x, deadline, lap, clock, cpu, 1 << 40, timer)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--duration", type=float, default=0.5)
    a = ap.parse_args()
    cell = Cell(backend="torch", device="cpu", dtype="float32", workload="mlp", mode="threads", threads=a.threads,
                duration=a.duration, trials=1, warmup=3, verify_ops=1, intra_op_threads=1)
    h, _ = HB.prepare(backends.load("torch"), cell, Path(tempfile.mkdtemp()))
    whole = Harness(op=h.op, check=h.check, inputs=h.inputs, tolerance=h.tolerance, thread_setup=h.thread_setup,
                    checks=h.checks, measured=h.measured, clock=h.clock)   # call = the whole op, as before
    alone = Harness(op=h.call, check=h.check, inputs=h.inputs, tolerance=h.tolerance, thread_setup=h.thread_setup,
                    checks=h.checks, measured=h.measured, clock=h.clock)   # the forward alone
    none = lambda reader: None  # noqa: E731
    variants = {"before": lambda: rate("before", HB.unsplit_loop, none, whole, cell),
                "call-alone": lambda: rate("call-alone", HB.unsplit_loop, none, alone, cell),
                "split": lambda: rate("split", SPLIT_LOOP, GAUGES, h, cell),
                "split-loop": lambda: rate("split-loop", SPLIT_LOOP, none, whole, cell),
                "unsampled": lambda: rate("unsampled", unsampled_loop, none, whole, cell)}
    print(f"split cost by part: torch cpu float32 mlp threads x{a.threads}, {a.rounds} rounds of {a.duration} s, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    HB.interleave(1, variants)   # one discarded round: first-use costs fall on no variant
    CPU.clear()
    r = HB.interleave(a.rounds, variants)
    for name in variants:
        ratios = [x / y for x, y in zip(r[name], r["before"])]
        low, high, level = median_ci(ratios)
        cpu = [b / x for x, b in zip(CPU[name], CPU["before"])]   # before / this: below 1, this costs more
        c_low, c_high, _ = median_ci(cpu)
        print(f"  {name:10s} median {statistics.median(r[name]):8,.0f} ops/s; paired ratio to before "
              f"{statistics.median(ratios):.3f} [{low:.3f}, {high:.3f}] ({level:.1%}); CPU per request "
              f"{statistics.median(CPU[name]):.1f} us, paired (before / this) {statistics.median(cpu):.3f} "
              f"[{c_low:.3f}, {c_high:.3f}]")
    split_alone = [x / y for x, y in zip(r["split"], r["call-alone"])]
    low, high, level = median_ci(split_alone)
    cpu = [b / x for x, b in zip(CPU["split"], CPU["call-alone"])]
    c_low, c_high, _ = median_ci(cpu)
    print(f"  the split's own cost, split paired to call-alone: {statistics.median(split_alone):.3f} [{low:.3f}, "
          f"{high:.3f}] ({level:.1%}); CPU per request (call-alone / split) {statistics.median(cpu):.3f} "
          f"[{c_low:.3f}, {c_high:.3f}]")
    print(f"  load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
