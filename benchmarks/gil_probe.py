#!/usr/bin/env python3
"""What the GIL costs a dispatch-bound model: N threads share one small MLP, ops/s at each N (a report).

    PYTHON_GIL=1 python3.13t benchmarks/gil_probe.py [--backend torch|mlx] [--threads 1,2] [--seconds 2]
                                                     [--repeats 3]
    PYTHON_GIL=0 python3.13t benchmarks/gil_probe.py ...

Each thread has its own 4x256 input; all share one model (Linear 256->512, ReLU, Linear 512->128) and torch
runs one intra-op thread. The threads start behind one barrier and count the forwards that finish inside one
window; every 16th output is checked against the thread's reference, and a mismatch is not counted. "Cores
used" is the process's CPU time over the window: on a shared machine it says whether a second thread could get
a second core at all (with the kernel's autogroups each session gets a fair share, whatever its nice). Thread
counts alternate over the repeats so that other load hits them alike; each figure is the median over repeats
with the range. Standalone: it needs only the framework, so it runs under a free-threaded interpreter whose
environment has nothing of threadbench's. Always exits 0.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import sysconfig
import threading
import time

CHECK_EVERY = 16  # outputs compared with the reference: often enough to catch garbage, rarely enough not to weigh


def torch_model():
    import torch  # deferred: the probe runs with one framework installed, either one

    torch.set_num_threads(1)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 128)).eval()

    def make_input(seed):
        return torch.randn(4, 256, generator=torch.Generator().manual_seed(seed))  # (4, 256)

    def forward(x):
        with torch.inference_mode():
            return mlp(x)  # (4, 128)

    def same(y, ref):
        return torch.allclose(y, ref, rtol=1e-5, atol=1e-6)

    def per_thread():
        torch.set_num_threads(1)

    return forward, make_input, same, per_thread, f"torch {torch.__version__}"


def mlx_model():
    import mlx.core as mx  # deferred: the probe runs with one framework installed, either one
    import mlx.nn as nn

    mx.random.seed(0)
    mlp = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 128))
    mx.eval(mlp.parameters())

    def make_input(seed):
        x = mx.random.normal((4, 256), key=mx.random.key(seed))  # (4, 256)
        mx.eval(x)
        return x

    def forward(x):
        y = mlp(x)  # (4, 128)
        mx.eval(y)
        return y

    def same(y, ref):
        return mx.allclose(y, ref, rtol=1e-5, atol=1e-6).item()

    return forward, make_input, same, lambda: None, f"mlx {mx.__version__}"


MODELS = {"torch": torch_model, "mlx": mlx_model}


@dataclasses.dataclass
class Window:
    """One window of n threads: its end (set as the barrier opens) and each thread's counts."""
    n: int
    seconds: float
    end: float = 0.0
    cpu_start: float = 0.0
    cpu_seconds: float = 0.0  # the process's CPU time from the window's start to the last thread's exit
    counts: list[int] = dataclasses.field(default_factory=list)
    bad: list[int] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.counts, self.bad = [0] * self.n, [0] * self.n

    def open(self) -> None:
        self.cpu_start = time.process_time()
        self.end = time.perf_counter() + self.seconds

    def close(self) -> None:
        self.cpu_seconds = time.process_time() - self.cpu_start


def window(model, n: int, seconds: float) -> tuple[float, float, int]:
    """n threads, one window: (completed and unrefuted forwards per second, cores used, mismatches)."""
    forward, make_input, same, per_thread = model
    win = Window(n, seconds)
    barrier = threading.Barrier(n, action=win.open)

    def run(i: int) -> None:
        per_thread()
        x = make_input(i)
        ref = forward(x)
        for _ in range(20):  # warm-up
            forward(x)
        barrier.wait()
        end, done = win.end, 0
        while True:
            y = forward(x)
            if time.perf_counter() > end:
                break
            done += 1
            if done % CHECK_EVERY == 0 and not same(y, ref):
                done -= 1
                win.bad[i] += 1
        win.counts[i] = done

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    win.close()
    return sum(win.counts) / seconds, win.cpu_seconds / seconds, sum(win.bad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=sorted(MODELS), default="torch")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    ap.add_argument("--seconds", type=float, default=2.0, help="window length (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="windows per thread count (default 3)")
    a = ap.parse_args()
    thread_counts = [int(n) for n in a.threads.split(",")]
    forward, make_input, same, per_thread, version = MODELS[a.backend]()
    model = (forward, make_input, same, per_thread)
    gil = "on" if not hasattr(sys, "_is_gil_enabled") or sys._is_gil_enabled() else "off"
    print(f"{sys.executable}  {sys.version.split()[0]}  Py_GIL_DISABLED={sysconfig.get_config_var('Py_GIL_DISABLED')}"
          f"  PYTHON_GIL={os.environ.get('PYTHON_GIL', '(unset)')}  GIL {gil} after import  {version}")
    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at start")
    rates: dict[int, list[float]] = {n: [] for n in thread_counts}
    cores: dict[int, list[float]] = {n: [] for n in thread_counts}
    mismatches = 0
    for _ in range(a.repeats):
        for n in thread_counts:
            rate, used, bad = window(model, n, a.seconds)
            rates[n].append(rate)
            cores[n].append(used)
            mismatches += bad
    base = statistics.median(rates[thread_counts[0]])
    for n in thread_counts:
        med = statistics.median(rates[n])
        print(f"threads {n}: {med:8.0f} ops/s  (range {min(rates[n]):.0f}-{max(rates[n]):.0f}, "
              f"{len(rates[n])} windows of {a.seconds:g} s)  x{med / base:.2f} of {thread_counts[0]} thread(s)"
              f"  {statistics.median(cores[n]):.2f} cores used")
    print(f"mismatched outputs: {mismatches}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at end")


if __name__ == "__main__":
    main()
