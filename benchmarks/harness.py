#!/usr/bin/env python3
"""How much the measurement harness itself costs, measured side by side in one run (a report, not a test).

    python benchmarks/harness.py [--rounds N] [--duration S] [--goals abcde] [--threads 1,2,4,8]
    python benchmarks/harness.py --goals d --device cuda --dtype bfloat16     # (d) on a GPU

(a) overhead: the 1-thread `sequential` mode, driven exactly as a cell's worker drives it (the worker's own
    make_harness + run_mode), against a bare loop doing the same forward + synchronize in this process
    (torch CPU, `mlp`, default size). Target: >= 97% of the bare loop.
(b) bookkeeping alone: `threads` mode with a do-nothing backend (forward returns its input, synchronize does
    nothing), 1 and 2 threads. Target: >= 200k ops/s per thread.
(c) dynamic batching: `batched` mode, 8 clients, max_batch 8, the default max_wait_ms, against the offline
    ceiling (`offline`, k=8: one forward of 8 requests x 4 rows), torch CPU `block`. Target: >= 90%.
    Run with torch.set_num_threads(1) and with torch's default (one per core); see the printed notes.
(d) threads at every thread count: `threads` xN (the worker's make_harness + run_mode: start barrier, warm-up
    until steady, windows holding >= 10 ops per thread, in-window output checks) against a bare loop of N
    threads doing the same forward + synchronize behind one barrier, torch `mlp` (CPU, or --device). Target: >= 0.97.
    Each round's ratio is paired (harness / bare of that round); the median ratio comes with its
    distribution-free CI (order statistics), which says whether the gap is noise (the CI holds 1.0) or cost
    (the CI lies below 1.0).
(e) the per-request time split's cost: `threads` xN as a cell runs it (the timed loop splitting every op into
    its call and synchronise, sampling some ops' CPU time, reading gauges per window) against the same mode
    with the loop as it was before the split (one op call, its start and end; no gauges), torch CPU `mlp` (or
    --workload), one intra-op thread. Paired ratios per round with their CI, as (d). Target: >= 0.97.

The compared variants alternate in interleaved rounds (A, B, A, B, ...) so drift and other load on the
machine hit both alike; each figure is the median over rounds. Always exits 0.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import backends  # noqa: E402
import workloads  # noqa: E402
from backends.base import Backend  # noqa: E402
from compare.cells import Cell, Trial  # noqa: E402
from compare.measure.build import build_model, make_harness  # noqa: E402
from compare.measure import schedule, split  # noqa: E402
from compare.measure.harness import Harness, TooSlow  # noqa: E402
from compare.measure.registry import run_mode  # noqa: E402
from compare.stats import median_ci  # noqa: E402

now = time.perf_counter


class NullBackend(Backend):
    """Does nothing: forward returns its input, synchronize returns at once. What is left is bookkeeping."""
    name = "null"
    devices = ("cpu",)
    dtypes = ("float32",)

    def device_status(self):
        return {"cpu": None}

    def build(self, workload, params, device, dtype):
        return None

    def to_device(self, x, device, dtype):
        return x

    def forward(self, model, x):
        return x

    def synchronize(self, out, device):
        pass

    def to_numpy(self, out):
        return np.asarray(out, dtype=np.float64)

    def concat(self, xs):
        return xs  # a "batch" is the list of requests: no copy

    def split(self, y, sizes):
        return y

    def describe(self, device):
        return {"framework": "none"}


def prepare(backend: Backend, cell: Cell, cache: Path):
    """What compare.measure.worker.run_cell does before the mode runs: configure, build at the cell's batch, and
    the worker's own make_harness (compare.measure.build). Returns (harness, model)."""
    backend.configure(fp32_precision=cell.fp32_precision, intra_op_threads=cell.intra_op_threads)
    spec = workloads.make(cell.workload, **dict(cell.knobs))
    params = spec.init_weights(cell.seed)
    model = build_model(backend, cell, spec, params)
    return make_harness(backend, model, cell, spec, params, cache), model


def harness_rate(h: Harness, cell: Cell) -> tuple[float, Trial]:
    """One round: the cell's mode with one timed trial, as the worker runs it; requests/s of that trial."""
    (trial,) = run_mode(h, cell)
    return trial.ops_per_s, trial


def bare_rate(backend: Backend, model, x, device: str, duration: float, warmup: int) -> float:
    """The same forward + synchronize in a plain loop: ops / (time of last completion - start)."""
    fwd, sync = backend.forward, backend.synchronize
    for _ in range(warmup):
        sync(fwd(model, x), device)
    ops, t0 = 0, now()
    deadline = t0 + duration
    while True:
        y = fwd(model, x)
        sync(y, device)
        ops += 1
        t = now()
        if t >= deadline:
            return ops / (t - t0)


def cpu_per_request_us(t: Trial) -> float:
    """The process's CPU time per request over the trial's window, in us (NaN where not read): what the guest's
    speed swings move far less than the wall-clock rate."""
    return t.proc_cores * t.seconds / t.ops * 1e6 if t.proc_cores is not None and t.ops else math.nan


def interleave(rounds: int, variants: dict) -> dict[str, list[float]]:
    """Run each variant once per round, in order, `rounds` times: A, B, A, B, ..."""
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            out[name].append(fn())
    return out


RESULTS: list[tuple[str, bool, str]] = []  # (goal, met, why not, where known)


def report(goal: str, a_name: str, a: list[float], b_name: str, b: list[float], ratio: float, target: str,
           ok: bool, unit: str = "ops/s") -> None:
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"  {a_name:<34} median {ma:>12,.0f} {unit}   (rounds: {', '.join(f'{v:,.0f}' for v in a)})")
    print(f"  {b_name:<34} median {mb:>12,.0f} {unit}   (rounds: {', '.join(f'{v:,.0f}' for v in b)})")
    print(f"  ratio {ratio:.3f}   target {target}   {'PASS' if ok else 'FAIL'}")
    RESULTS.append((goal, ok, ""))


def paired(goal: str, who: str, a_name: str, a: list[float], b_name: str, b: list[float], aside: str = "") -> str:
    """Report the paired ratios a/b of interleaved rounds against >= 0.97 (PASS: the median's interval lies
    at or above 0.97, or holds 1.0 with the median at least 0.97); returns the line that describes them."""
    ratios = [x / y for x, y in zip(a, b)]
    ratio = statistics.median(ratios)
    low, high, level = median_ci(ratios)
    verdict = ("noise: the interval holds 1.0" if low <= 1.0 <= high else
               f"cost: {who} is slower, the interval lies below 1.0" if high < 1.0 else
               f"{who} is faster: the interval lies above 1.0{aside}")
    report(goal, a_name, a, b_name, b, ratio, ">= 0.97", low >= 0.97 or (low <= 1.0 <= high and ratio >= 0.97))
    return (f"  paired ratios {', '.join(f'{v:.3f}' for v in ratios)}; median {ratio:.3f}, {level:.1%} CI "
            f"[{low:.3f}, {high:.3f}]: {verdict}")


def goal_a(rounds: int, duration: float, cache: Path) -> None:
    print("(a) harness overhead: sequential mode vs a bare loop, torch cpu float32 mlp (default size)")
    tb = backends.load("torch")
    cell = Cell(backend="torch", device="cpu", dtype="float32", workload="mlp", mode="sequential", threads=1,
                duration=duration, trials=1, warmup=3, verify_ops=1)
    h, model = prepare(tb, cell, cache)
    import torch
    print(f"  torch {torch.__version__}, intra-op threads {torch.get_num_threads()}, {rounds} rounds of {duration} s each")
    variants = {"harness": lambda: harness_rate(h, cell)[0],
                "bare": lambda: bare_rate(tb, model, h.inputs[0], "cpu", duration, cell.warmup)}
    interleave(1, variants)  # one discarded round: first-use costs fall on no variant
    r = interleave(rounds, variants)
    ratio = statistics.median(r["harness"]) / statistics.median(r["bare"])
    report("a", "sequential mode (worker path)", r["harness"], "bare forward+sync loop", r["bare"], ratio,
           ">= 0.97", ratio >= 0.97)
    if h.errors:
        print(f"  NOTE: {h.errors} of {h.checked} checked outputs off the reference")


def goal_b(rounds: int, duration: float, cache: Path) -> None:
    print(f"(b) bookkeeping alone: threads mode with a do-nothing backend, {os.cpu_count()} CPU cores")
    nb = NullBackend()
    variants = {}
    for n in (1, 2):
        cell = Cell(backend="null", device="cpu", dtype="float32", workload="block", mode="threads", threads=n,
                    duration=duration, trials=1, warmup=3, verify_ops=0)
        h, _ = prepare(nb, cell, cache)
        variants[n] = (lambda h=h, cell=cell, n=n: harness_rate(h, cell)[0] / n)
    interleave(1, variants)  # one discarded round
    print(f"  {sys.implementation.name} {sys.version.split()[0]}, switch interval {sys.getswitchinterval() * 1e3:g} ms,"
          f" {rounds} rounds of {duration} s each")
    r = interleave(rounds, variants)
    m1, m2 = statistics.median(r[1]), statistics.median(r[2])
    report("b", "1 thread, per thread", r[1], "2 threads, per thread", r[2], m2 / m1,
           ">= 200,000 ops/s per thread (both)", min(m1, m2) >= 200_000)
    print(f"  (ratio = 2-thread / 1-thread per-thread rate; 2 threads together {2 * m2:,.0f} ops/s: with a forward"
          f" that never releases the GIL, only one thread runs Python at a time)")


def minimal_batched_rate(h: Harness, n: int, duration: float) -> float:
    """The least work any in-process dynamic batcher with n Python client threads must do: no queue, no
    wait policy, no checks, batches always of n. Clients count themselves in under one lock, the
    n-th wakes the batcher, which runs the same op on concat(inputs), splits it and releases each client's
    lock. The batcher runs in the calling thread, as in the batched mode. Same throughput definition:
    requests / (last completion - first start)."""
    locks = [threading.Lock() for _ in range(n)]
    for lock in locks:
        lock.acquire()
    bell, shared, count, outs = threading.Lock(), threading.Lock(), [0], [None] * n
    bell.acquire()
    stop, starts, ends = [False], [[] for _ in range(n)], [[] for _ in range(n)]
    deadline = now() + duration

    def client(i: int) -> None:
        while True:
            t0 = now()
            with shared:
                count[0] += 1
                if count[0] == n:
                    count[0] = 0
                    bell.release()
            locks[i].acquire()
            ends[i].append(now())
            starts[i].append(t0)
            outs[i] = None
            if stop[0]:
                return

    def batcher() -> None:
        while not stop[0]:
            bell.acquire()
            stop[0] = now() >= deadline
            parts = h.split(h.op(h.concat(h.inputs)), [h.rows] * n)
            for i in range(n):
                outs[i] = parts[i]
                locks[i].release()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    batcher()  # in this thread, as the batched mode runs its batcher
    for th in threads:
        th.join()
    return sum(map(len, ends)) / (max(map(max, ends)) - min(map(min, starts)))


def forward_us(model, x, duration: float = 0.2) -> float:
    for _ in range(3):
        model(x)
    ops, t0 = 0, now()
    while now() - t0 < duration:
        model(x)
        ops += 1
    return (now() - t0) / ops * 1e6


def in_thread(fn):
    out = {}
    th = threading.Thread(target=lambda: out.update(v=fn()))
    th.start()
    th.join()
    return out["v"]


def goal_c(rounds: int, duration: float, cache: Path, intra: int) -> None:
    import torch
    torch.set_num_threads(intra)
    print(f"(c) dynamic batching vs offline ceiling, torch cpu float32 block, torch.set_num_threads({intra})")
    tb = backends.load("torch")
    common = dict(backend="torch", device="cpu", dtype="float32", workload="block", duration=duration, trials=1,
                  warmup=3, verify_ops=1)
    batched = Cell(mode="batched", threads=8, max_batch=8, **common)  # max_wait_ms: the default
    offline = Cell(mode="offline", k=8, **common)
    hb, _ = prepare(tb, batched, cache)
    ho, model = prepare(tb, offline, cache)
    hists = []

    def run_batched():
        rate, trial = harness_rate(hb, batched)
        hists.append(trial.batch_hist)
        return rate

    print(f"  8 clients, max_batch 8, max_wait_ms {batched.max_wait_ms:g}; {rounds} rounds of {duration} s each,"
          f" interleaved with a minimal hand-written batcher (same op, 8 client threads, no harness)")
    variants = {"batched": run_batched, "offline": lambda: harness_rate(ho, offline)[0],
                "minimal": lambda: minimal_batched_rate(hb, 8, duration)}
    interleave(1, variants)  # one discarded round: first-use costs fall on no variant
    hists.clear()
    r = interleave(rounds, variants)
    mb, mo, mm = (statistics.median(r[k]) for k in ("batched", "offline", "minimal"))
    ratio = mb / mo
    report("c" + str(intra), "batched, 8 clients", r["batched"], "offline k=8 ceiling", r["offline"], ratio,
           ">= 0.90", ratio >= 0.90, unit="req/s")
    total: dict[str, int] = {}
    for hist in hists:
        for size, count in (hist or {}).items():
            total[size] = total.get(size, 0) + count
    print(f"  batch sizes: {', '.join(f'{s}: {c}' for s, c in sorted(total.items(), key=lambda p: int(p[0])))}")
    if hb.errors or ho.errors:
        print(f"  NOTE: outputs off the reference: batched {hb.errors}/{hb.checked}, offline {ho.errors}/{ho.checked}")
    fwd, cycle = 8 / mo * 1e6, 8 / mb * 1e6
    main_fwd, thread_fwd = forward_us(model, ho.inputs[0]), in_thread(lambda: forward_us(model, ho.inputs[0]))
    print(f"  minimal batcher median {mm:,.0f} req/s: best a batcher of Python threads reaches here = {mm / mo:.3f} of"
          f" the ceiling; the harness reaches {mb / mm:.3f} of the minimal batcher")
    print(f"  per forward of 8: offline {fwd:.0f} us, batched cycle {cycle:.0f} us (0.90 allows {fwd / 0.9:.0f} us);"
          f" the forward alone: {main_fwd:.0f} us on the main thread (where offline and the batcher run it),"
          f" {thread_fwd:.0f} us on another thread")
    if ratio < 0.90:
        if mm / mo < 0.90:
            RESULTS[-1] = (RESULTS[-1][0], False, f"unreachable here: a minimal batcher gets {mm / mo:.2f}, the harness"
                           f" {mb / mm:.2f} of that")
            print(f"  not reachable on this machine: the minimal batcher itself gets {mm / mo:.2f} of the ceiling. Around"
                  f" every forward 8 sleeping client threads and the batcher must each be woken and take the GIL in"
                  f" turn, and each wake-up costs what a thread switch costs on this machine")
        else:
            print("  the harness falls short of what a minimal batcher does here: its hand-off is at fault")


def bare_threads_rate(backend: Backend, model, inputs: list, device: str, n: int, duration: float,
                      warmup: int, setup=None) -> float:
    """N threads, each its own input, behind one start barrier, forward + synchronize until the deadline:
    all ops / (last completion - first start). What `threads` does with no harness around it. `setup` is
    the harness's per-thread setting (torch's intra-op threads are per thread): without it each bare thread
    ran torch's default OpenMP pool and the bare loop, not the harness, was slowed (1.07-1.27 x)."""
    fwd, sync = backend.forward, backend.synchronize
    barrier, deadline = threading.Barrier(n), [0.0]
    starts, ends = [0.0] * n, [0.0] * n
    counts = [0] * n

    def run(i: int) -> None:
        x = inputs[i]
        if setup is not None:
            setup()
        for _ in range(warmup):
            sync(fwd(model, x), device)
        if barrier.wait() == 0:
            deadline[0] = now() + duration
        barrier.wait()
        ops, t0 = 0, now()
        while now() < deadline[0]:
            sync(fwd(model, x), device)
            ops += 1
        starts[i], ends[i], counts[i] = t0, now(), ops

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(counts) / (max(ends) - min(starts))


def goal_d(rounds: int, duration: float, cache: Path, counts: list[int], device: str = "cpu",
           dtype: str = "float32") -> None:
    print(f"(d) threads xN vs a bare N-thread loop, torch {device} {dtype} mlp, N = {', '.join(map(str, counts))},"
          f" one intra-op thread (torch.set_num_threads(1): no OpenMP pool spinning against other load)")
    tb = backends.load("torch")
    for n in counts:
        cell = Cell(backend="torch", device=device, dtype=dtype, workload="mlp", mode="threads", threads=n,
                    duration=duration, trials=1, warmup=3, verify_ops=1, intra_op_threads=1)
        h, model = prepare(tb, cell, cache)
        variants = {"harness": lambda: harness_rate(h, cell)[0],
                    "bare": lambda: bare_threads_rate(tb, model, h.inputs, device, n, h.measured.window_s or duration,
                                                      cell.warmup, h.thread_setup)}
        interleave(1, variants)  # one discarded round
        r = interleave(rounds, variants)
        text = paired(f"d{n}", "the harness", f"threads x{n} (worker path)", r["harness"], f"bare {n}-thread loop",
                      r["bare"], " (the bare loop is not its equal)")
        print(f"{text}; window {h.measured.window_s:.3g} s (bare loop the same),"
              f" warm-up {h.measured.warmup_windows} windows")
        if h.errors:
            print(f"  NOTE: {h.errors} of {h.checked} checked outputs off the reference")


def unsplit_loop(call, sync, x, deadline, lap, clock, cpu, every, timer=None):
    """The timed loop as it was before the split (goal e's baseline): one op, its start and its end. The
    harness it runs under gives the whole op as `call` (forward + synchronise in one function, as before)."""
    started, ended = lap.starts.append, lap.ends.append
    first = last = None
    while True:
        t0 = clock()
        if t0 >= deadline:
            return first, last
        last = call(x)
        ended(clock())
        started(t0)
        if first is None:
            first = last


class Unsplit:
    """While entered: the schedule runs unsplit_loop and reads no gauges (goal e's baseline)."""

    def __enter__(self):
        self.saved = schedule.timed_loop, split.Reader.gauges
        schedule.timed_loop, split.Reader.gauges = unsplit_loop, lambda reader: None
        return self

    def __exit__(self, *exc):
        schedule.timed_loop, split.Reader.gauges = self.saved


def goal_e(rounds: int, duration: float, cache: Path, counts: list[int], workload: str, device: str = "cpu",
           dtype: str = "float32") -> None:
    print(f"(e) the split's cost: threads xN with the split vs the loop before it, torch {device} {dtype} {workload},"
          f" N = {', '.join(map(str, counts))}, one intra-op thread; {split.cpu_read_s() * 1e6:.2f} us a thread-CPU"
          f" read here")
    per_op = bookkeeping_us(rounds, duration, cache)
    print(f"  the split's bookkeeping alone (threads x1, a do-nothing backend, sampled 1 in {split.MAX_STRIDE}): "
          f"+{per_op:.2f} us an op")
    tb = backends.load("torch")
    for n in counts:
        cell = Cell(backend="torch", device=device, dtype=dtype, workload=workload, mode="threads", threads=n,
                    duration=duration, trials=1, warmup=3, verify_ops=1, intra_op_threads=1)
        h, _ = prepare(tb, cell, cache)
        whole = Harness(op=h.op, check=h.check, inputs=h.inputs, tolerance=h.tolerance, thread_setup=h.thread_setup,
                        checks=h.checks, measured=h.measured, clock=h.clock)   # call = the whole op, as before

        trials: dict[str, list[Trial]] = {"split": [], "unsplit": []}

        def unsplit():
            with Unsplit():
                trials["unsplit"].append(t := harness_rate(whole, cell)[1])
                return t.ops_per_s
        variants = {"split": lambda: (trials["split"].append(t := harness_rate(h, cell)[1]), t.ops_per_s)[1],
                    "unsplit": unsplit}
        interleave(1, variants)  # one discarded round
        trials = {k: [] for k in trials}
        r = interleave(rounds, variants)
        text = paired(f"e{n}", "the split", f"threads x{n} with the split", r["split"],
                      f"threads x{n}, loop before the split", r["unsplit"])
        op_us = statistics.median(t.call_ms + t.sync_ms for t in trials["split"] if t.call_ms is not None) * 1e3
        cost = split.sample_cost(h.timer)   # the CPU reads, and on CUDA the events' marks
        every = split.stride(h.measured.op_s or 0.0, cost, n, cell.duration)   # as Schedule.start
        sampled = cost * 1e6 / every
        print(f"{text}; an op {op_us:.0f} us, one in {every} sampled: bookkeeping"
              f" {per_op:.2f} + sampled reads {sampled:.2f} us = {(per_op + sampled) / op_us:.2%} of an op")
        # the process's CPU time per request over each window (both variants read it at the boundaries): what
        # other load on the machine moves far less than the wall-clock rate
        cpu = {k: [cpu_per_request_us(t) for t in ts] for k, ts in trials.items()}
        cpu_ratios = [a / b for a, b in zip(cpu["unsplit"], cpu["split"])]
        c_low, c_high, _ = median_ci(cpu_ratios)
        print(f"  process CPU per request: with the split {statistics.median(cpu['split']):.1f} us, before it "
              f"{statistics.median(cpu['unsplit']):.1f} us; paired (before / with) {statistics.median(cpu_ratios):.3f}"
              f" [{c_low:.3f}, {c_high:.3f}]")


def bookkeeping_us(rounds: int, duration: float, cache: Path) -> float:
    """What the split adds to every op, in us: threads x1 with a do-nothing backend (goal b's), split against
    unsplit, interleaved; the difference of the median op times."""
    nb = NullBackend()
    cell = Cell(backend="null", device="cpu", dtype="float32", workload="block", mode="threads", threads=1,
                duration=duration, trials=1, warmup=3, verify_ops=0)
    h, _ = prepare(nb, cell, cache)
    whole = Harness(op=h.op, check=h.check, inputs=h.inputs, tolerance=h.tolerance, checks=h.checks,
                    measured=h.measured, clock=h.clock)

    def unsplit():
        with Unsplit():
            return harness_rate(whole, cell)[0]
    variants = {"split": lambda: harness_rate(h, cell)[0], "unsplit": unsplit}
    interleave(1, variants)
    r = interleave(rounds, variants)
    return 1e6 / statistics.median(r["split"]) - 1e6 / statistics.median(r["unsplit"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per comparison (>= 5)")
    ap.add_argument("--duration", type=float, default=0.3, help="seconds per timed window")
    ap.add_argument("--goals", default="abcde", help="which goals to run (default: abcde)")
    ap.add_argument("--threads", default="1,2,4,8", help="goals d and e: thread counts (default 1,2,4,8)")
    ap.add_argument("--device", default="cpu", help="goals d, e: torch device (cpu, cuda, mps); goals a-c run on the CPU")
    ap.add_argument("--dtype", default="float32", help="goals d, e: dtype (e.g. bfloat16 on a GPU)")
    ap.add_argument("--workload", default="mlp", help="goal e: the workload (mlp; launch: the smallest op)")
    args = ap.parse_args()
    if args.rounds < 5:
        ap.error("--rounds must be at least 5")
    start = now()
    import torch
    default_threads = torch.get_num_threads()
    print(f"threadbench harness benchmark: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="threadbench-bench-") as tmp:
        cache = Path(tmp)
        goals = [("a", lambda: goal_a(args.rounds, args.duration, cache)),
                 ("b", lambda: goal_b(args.rounds, args.duration, cache))]
        goals += [("c", lambda intra=intra: goal_c(args.rounds, args.duration, cache, intra))
                  for intra in sorted({1, default_threads})]
        goals += [("d", lambda: goal_d(args.rounds, args.duration, cache, [int(v) for v in args.threads.split(",")],
                                       args.device, args.dtype)),
                  ("e", lambda: goal_e(args.rounds, args.duration, cache, [int(v) for v in args.threads.split(",")],
                                       args.workload, args.device, args.dtype))]
        for name, run in goals:
            if name not in args.goals:
                continue
            try:
                run()
            except TooSlow as e:  # the window rule holds here too: say so, go on with the next goal
                print(f"  not measured: {e}")
                RESULTS.append((name, False, "too slow on this machine now"))
            finally:
                torch.set_num_threads(default_threads)
    passed = sum(ok for _, ok, _ in RESULTS)
    verdicts = ", ".join(f"{g} {'PASS' if ok else 'FAIL'}{f' ({why})' if why else ''}" for g, ok, why in RESULTS)
    print(f"SUMMARY: {passed}/{len(RESULTS)} goals met ({verdicts})"
          f" in {now() - start:.0f} s, load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
