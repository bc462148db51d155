#!/usr/bin/env python3
"""Does the per-request split agree with a real profiler? One torch cell, threads xN, measured twice.

    python benchmarks/profiler_crosscheck.py                        # the H200/H100: transformer bf16, x1 and x8
    python benchmarks/profiler_crosscheck.py --device cpu --dtype float32 --size seq=16,width=64,heads=4,hidden=128,layers=2

For each thread count:
1. the cell as a worker measures it (compare.measure.build.make_harness + registry.run_mode, NVML's sampler
   around it on a GPU): the split's figures per request (stats.split_summary);
2. a profiled run of the same harness: N threads behind one barrier, REQUESTS requests each, each request
   inside record_function("tb.request") and its framework call inside record_function("tb.call"), timed by
   the split's own readings as well (op clock around call and synchronise, the thread's CPU clock, the
   backend's device timer on every request), under torch.profiler with every thread recorded. Kineto
   records only the thread that entered the profiler unless asked: `_ExperimentalConfig(profile_all_threads=
   True)` installs its callbacks globally (torch >= 2.8; pytorch/pytorch#192290 notes that memory events
   from other threads are still missing, which this check does not use).

It prints, per request, the split's readings of the profiled requests against the profiler's view of the
same requests: the framework call (tb.call's span), synchronise (the cudaStreamSynchronize calls), the device
time (the split's CUDA-event span against the profiler's kernels, all threads', per request: the span also
holds device idle time and, on a shared stream, other threads' kernels, so it is at least the kernels' sum)
and the device's busy share (NVML's for the cell against the union of the kernels' intervals over the
profiled span), each judged within MARGIN; and, as information, the framework's CPU op time (the profiler's
aten ops directly inside tb.call) as a share of the call (the rest is Python between ops, and the
profiler's own recording), and which threads of the process burned its CPU while the cell was measured
(by thread name, from /proc: the split's "off-thread" verdict says the process keeps cores busy beyond its
measuring threads, not which). Always exits 0 (a report, not a test). Needs torch; CUDA for the device lines."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backends  # noqa: E402
import workloads  # noqa: E402
from compare import results, stats  # noqa: E402
from compare.cells import Cell, CellResult  # noqa: E402
from compare.measure.build import build_model, make_harness  # noqa: E402
from compare.measure.host import GpuSampler  # noqa: E402
from compare.measure.plan import resolve_device  # noqa: E402
from compare.measure.registry import run_mode  # noqa: E402

REQUESTS = 30       # profiled requests per thread: enough for stable means, a trace of a few MB at x8
MARGIN = 0.15       # the split and the profiler agree when their figures are within 15% of each other: the
#                     profiler records every op (a few us each), so the spans it draws and the split's
#                     readings of the same requests differ by its overhead and by where each reads its clock


def measure_cell(backend, cell: Cell, cache: Path) -> tuple[dict, object]:
    """The cell as the worker measures it: its summary record (split included) and its harness."""
    spec = workloads.make(cell.workload, **dict(cell.knobs))
    params = spec.init_weights(cell.seed)
    h = make_harness(backend, build_model(backend, cell, spec, params), cell, spec, params, cache)
    sampler = GpuSampler(cell.device, lambda *a, **k: None).start()
    try:
        trials = run_mode(h, cell)
    finally:
        util = sampler.stop(h.measured.timed_spans)
    result = CellResult(cell=cell, status="ok", trials=trials, cores=h.measured.cores, checked=h.checked,
                        errors=h.errors, gpu_util_mean=(util or {}).get("mean"))
    run = results.new_run([], {"host": "here"}, {})
    results.add_result(run, result)
    (rec,) = stats.summarize(run["rows"]).to_dicts()
    return rec, h


def profiled_run(torch, h, n: int, requests: int) -> tuple[list[dict], object, float]:
    """N threads, `requests` requests each, under the profiler (every thread recorded). Returns the split's
    own readings of each request, the profiler, and the profiled span (s)."""
    from torch.profiler import ProfilerActivity, _ExperimentalConfig, profile, record_function
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    barrier, readings, lock = threading.Barrier(n), [], threading.Lock()

    def worker(i: int) -> None:
        if h.thread_setup is not None:
            h.thread_setup()
        x, mine = h.inputs[i], []
        sync = h.sync or (lambda y: None)   # None: the framework is synchronous here, and the split calls none
        for _ in range(3):   # warm, outside the measured requests
            sync(h.call(x))
        barrier.wait()
        for _ in range(requests):
            with record_function("tb.request"):
                c0, t0 = time.thread_time(), time.perf_counter()
                mark = h.timer.start() if h.timer is not None else None
                with record_function("tb.call"):
                    y = h.call(x)
                t1 = time.perf_counter()
                if mark is not None:
                    h.timer.stop(mark)
                sync(y)
                t2, c2 = time.perf_counter(), time.thread_time()
            mine.append({"call": t1 - t0, "sync": t2 - t1, "cpu": c2 - c0, "mark": mark})
        with lock:
            readings.extend(mine)

    config = _ExperimentalConfig(profile_all_threads=True)
    with profile(activities=activities, experimental_config=config) as prof:
        start = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,), name=f"tb-{i}") for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        span = time.perf_counter() - start
    for r in readings:
        r["device"] = h.timer.elapsed(r["mark"]) if r["mark"] is not None else None
    return readings, prof, span


def union_us(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def profiler_figures(prof, n_requests: int) -> dict:
    """Per request from the profiler's events (us): the tb.call span, the cudaStreamSynchronize calls, the
    framework ops' own time inside tb.call (its direct aten children), the CUDA kernels' time; and the
    kernels' busy share of their own span."""
    events = prof.events()
    calls = [e for e in events if e.name == "tb.call"]
    ops = sum(child.time_range.elapsed_us() for e in calls for child in e.cpu_children if child.name.startswith("aten::"))
    syncs = [e.time_range.elapsed_us() for e in events if e.name == "cudaStreamSynchronize"]
    kernels = [e for e in events if str(e.device_type).endswith("CUDA") and e.time_range.elapsed_us() > 0
               and not e.name.startswith(("cuda", "Memcpy", "Memset"))]
    intervals = [(e.time_range.start, e.time_range.end) for e in kernels]
    return {"call_us": statistics.fmean(e.time_range.elapsed_us() for e in calls) if calls else None,
            "sync_us": sum(syncs) / n_requests if syncs else None,
            "ops_us": ops / len(calls) if calls else None,
            "kernel_us": sum(b - a for a, b in intervals) / n_requests if intervals else None,
            "busy": (union_us(intervals) / (max(b for _, b in intervals) - min(a for a, _ in intervals))
                     if intervals else None)}


def thread_cpu() -> dict[tuple[int, str], float]:
    """CPU seconds (user + system) of every thread of this process so far, by (native id, name): a Python
    thread's own name, else the OS's (/proc/self/task/*/stat, Linux; {} elsewhere)."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    python = {t.native_id: t.name for t in threading.enumerate()}
    for task in Path("/proc/self/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:   # the thread ended meanwhile
            continue
        utime, stime = (int(v) for v in stat[stat.rindex(")") + 2:].split()[11:13])
        tid = int(task.name)
        out[tid, python.get(tid, stat[stat.index("(") + 1:stat.rindex(")")])] = (utime + stime) / tick
    return out


def busiest_threads(before: dict, after: dict, seconds: float, top: int = 5) -> str:
    """The cores of the threads alive at both reads over `seconds` (the cell's measuring threads have ended by
    the second): how many kept >= 0.05 cores busy, their sum, the top few."""
    cores = sorted(((v - before.get(k, 0.0)) / seconds, k[1]) for k, v in after.items())[::-1]
    busy = [(c, name) for c, name in cores if c >= 0.05]
    return (f"{len(busy)} of {len(after)} threads >= 0.05 cores, {sum(c for c, _ in busy):.2f} cores together; "
            + ", ".join(f"{name} {c:.2f}" for c, name in busy[:top]))


def agree(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b:
        return "—"
    ratio = a / b
    return f"{ratio:.2f} {'agree' if abs(ratio - 1) <= MARGIN else 'DIFFER'}"


def line(what: str, split: float | None, prof: float | None, unit: str = "us") -> None:
    fmt = (lambda v: "—" if v is None else f"{v:,.1f} {unit}") if unit else (lambda v: "—" if v is None else f"{v:.0%}")
    print(f"  {what:<44} split {fmt(split):>14}   profiler {fmt(prof):>14}   split/profiler {agree(split, prof)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="as compare's --device (gpu: torch's first GPU, cuda here)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--workload", default="transformer")
    ap.add_argument("--size", default="", help="workload knobs, e.g. seq=16,width=64,heads=4,hidden=128,layers=2")
    ap.add_argument("--threads", default="1,8")
    ap.add_argument("--duration", type=float, default=0.5, help="seconds per timed window of the measured cell")
    ap.add_argument("--requests", type=int, default=REQUESTS, help="profiled requests per thread")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval in ms (CPython's default 5): if the split's synchronise at x8 is "
                         "the GIL's turn on the way out (benchmarks/sync_gil.py), a shorter interval shortens it")
    args = ap.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval / 1e3)
    import torch  # the script's subject: torch's own profiler
    knobs = tuple(sorted((k, int(v)) for k, v in (p.split("=") for p in args.size.split(",") if p)))
    backend = backends.load("torch")
    device, why = resolve_device(backend, args.device)   # "gpu" is cuda (or mps), as in compare
    if device is None:
        print(f"not run: {why}")
        return 0
    args.device = device
    print(f"profiler cross-check: torch {torch.__version__} {args.device} {args.dtype} {args.workload}"
          f"{' ' + args.size if args.size else ''}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f};"
          f" agreement within {MARGIN:.0%}; GIL switch interval {sys.getswitchinterval() * 1e3:g} ms")
    backend.configure(fp32_precision="highest", intra_op_threads=1 if args.device == "cpu" else None)
    with tempfile.TemporaryDirectory(prefix="threadbench-xcheck-") as tmp:
        for n in (int(v) for v in args.threads.split(",")):
            cell = Cell(backend="torch", device=args.device, dtype=args.dtype, workload=args.workload,
                        mode="threads", threads=n, knobs=knobs, duration=args.duration, trials=3, warmup=3,
                        verify_ops=1, intra_op_threads=1 if args.device == "cpu" else None)
            before, t0, c0 = thread_cpu(), time.perf_counter(), time.process_time()
            rec, h = measure_cell(backend, cell, Path(tmp))
            took = time.perf_counter() - t0
            by_thread = busiest_threads(before, thread_cpu(), took)
            process_cores = (time.process_time() - c0) / took
            readings, prof, span = profiled_run(torch, h, n, args.requests)
            p = profiler_figures(prof, len(readings))
            mean = lambda key: statistics.fmean(r[key] for r in readings) * 1e6  # noqa: E731
            device = [r["device"] for r in readings if r["device"] is not None]
            print(f"threads x{n}: the cell {rec['ops_per_s']:,.0f} requests/s, verdict {rec.get('wall_ms') and why_of(rec)};"
                  f" profiled: {len(readings)} requests in {span:.2f} s")
            print(f"  the process over the cell ({took:.1f} s: build, warm-up, windows): {process_cores:.2f} cores; of the"
                  f" threads alive before and after it (the framework's own, samplers): {by_thread}")
            print(f"  the cell (unprofiled), per request: call {rec['call_ms'] * 1e3:,.1f} us, synchronise "
                  f"{rec['sync_ms'] * 1e3:,.1f} us, thread CPU {rec['cpu_ms'] * 1e3:,.1f} us"
                  + (f", device (events) {rec['device_ms'] * 1e3:,.1f} us" if rec.get("device_ms") else "")
                  + (f", device busy {rec['device_busy']:.0%} ({rec['busy_source']})" if rec.get("device_busy") else ""))
            line("framework call (tb.call)", mean("call"), p["call_us"])
            line("synchronise (cudaStreamSynchronize)", mean("sync"), p["sync_us"])
            line("device time: CUDA events vs kernels", statistics.fmean(device) * 1e6 if device else None,
                 p["kernel_us"])
            line("device busy: NVML (cell) vs kernels' union", rec.get("device_busy") if rec.get("busy_source") == "NVML"
                 else None, p["busy"], unit="")
            if p["ops_us"] is not None and p["call_us"]:
                print(f"  CPU op time (aten ops inside tb.call): {p['ops_us']:,.1f} us, {p['ops_us'] / p['call_us']:.0%} of"
                      f" the call; the thread's CPU time {mean('cpu'):,.1f} us of {mean('call') + mean('sync'):,.1f} us"
                      f" a request")
    return 0


def why_of(rec: dict) -> str:
    from compare.render.format import why_reason  # the verdict as the tables and findings word it
    return why_reason(rec) or "—"


if __name__ == "__main__":
    sys.exit(main())
