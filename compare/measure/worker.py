"""One cell, in its own process: `python -m compare.measure.worker CELL_JSON EVENTS_FILE CACHE_DIR`.

It appends one JSON line per event to EVENTS_FILE as it goes (env, each trial, verification, done), so a
crash or hang loses only what had not happened yet. The parent (compare.measure.runner) turns the lines and the
exit status into a CellResult. Framework-free: it reaches the framework only through the Backend.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np

import backends
import workloads
from backends.base import Unsupported, apply_configure
from compare.measure import host, modes
from compare.cells import Cell
from compare.measure.verify import rel_error, tolerance


class Events:
    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1)

    def emit(self, event: str, **data) -> None:
        self.f.write(json.dumps({"event": event, **data}, default=str) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())


def reference(spec, params, index: int, seed: int, cache: Path) -> np.ndarray:
    """float64 reference output for request input `index`, cached on disk across the cells of a sweep."""
    key = hashlib.sha1(f"{spec.name}|{spec.label()}|{seed}|{index}".encode()).hexdigest()[:16]
    path = cache / f"{spec.name}-{key}.npy"
    if path.exists():
        return np.load(path)
    ref = spec.reference(params, spec.make_input(index))
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, ref)
    os.replace(tmp, path)
    return ref


def peak_rss_mb() -> float:
    """This process's own peak RSS. On Linux, VmHWM: ru_maxrss there keeps, across fork and exec, the RSS
    the parent had when it forked (a cell started by a 250 MB sweep read at least 250 MB whatever it used)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def build_model(backend, cell: Cell, spec, params):
    """The cell's model: `spec` (one request) built at the batch of one forward (k requests offline)."""
    return backend.build(spec.with_batch(spec.batch * cell.requests_per_forward), params, cell.device, cell.dtype)


class References:
    """float64 references by request index, computed on first use (a check runs outside the clock) and kept
    on disk for the other cells of the sweep. Thread-safe: checks run in whichever thread closes a window."""

    def __init__(self, spec, params, seed: int, cache: Path):
        self.spec, self.params, self.seed, self.cache = spec, params, seed, cache
        self.known: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()

    def __call__(self, index: int) -> np.ndarray:
        with self.lock:
            if index not in self.known:
                self.known[index] = reference(self.spec, self.params, index, self.seed, self.cache)
            return self.known[index]


def make_harness(backend, model, cell: Cell, spec, params, cache: Path,
                 checks: modes.Checks | None = None, measured: modes.Measured | None = None) -> modes.Harness:
    """The Harness a cell's mode runs: the op (forward + synchronize, as the backend defines them), the
    device inputs, and the check against the float64 reference. Every request the cell can send has its
    own input: thread (client) i sends request i, or offline its k requests i*k .. i*k+k-1, so a swap
    between any two threads or requests shows. An offline batch is checked request by request.
    `model` is backend.build(spec with the cell's batch, ...); `spec` is the one-request workload."""
    n, k, rows = cell.threads, cell.requests_per_forward, spec.batch
    refs = References(spec, params, cell.seed, cache)
    host_inputs = [np.concatenate([spec.make_input(i * k + j) for j in range(k)]) if k > 1 else spec.make_input(i)
                   for i in range(n)]

    def check(y, i: int):
        out = backend.to_numpy(y)
        if k == 1:
            return rel_error(out, refs(i))
        if out.shape[:1] != (k * rows,):
            return [float("inf")] * k
        return [rel_error(part, refs(i * k + j)) for j, part in enumerate(np.split(out, k))]

    def op(x):
        y = backend.forward(model, x)
        backend.synchronize(y, cell.device)
        return y

    device_inputs = [backend.to_device(x, cell.device, cell.dtype) for x in host_inputs]
    for x in device_inputs:  # copies complete before any thread (or stream) reads them
        backend.synchronize(x, cell.device)
    precision = backend.effective_precision(cell.device, cell.dtype, cell.fp32_precision)
    return modes.Harness(
        op=op, check=check, inputs=device_inputs, tolerance=tolerance(precision),
        stream=lambda: backend.stream(cell.device),
        thread_setup=getattr(backend, "configure_thread", None),  # per-thread settings, where a backend has them
        concat=backend.concat, split=backend.split, rows=rows, checks=checks,
        measured=measured if measured is not None else modes.Measured(),
    )


def run_mode(h: modes.Harness, cell: Cell) -> list:
    """Run the cell's mode on a Harness already built: the timed trials (list of Trial); modes.TooSlow may
    escape. (benchmarks/harness.py times the modes through this.)"""
    return modes.RUNNERS[cell.mode](cell, lambda: h)


def run_cell(cell: Cell, events: Events, cache: Path) -> None:
    backend = backends.load(cell.backend)
    why = backend.device_status().get(cell.device, f"{cell.backend} has no device {cell.device!r}")
    if why is not None:
        events.emit("status", status="unavailable", cause=why)
        return
    if cell.dtype not in backend.dtypes:
        events.emit("status", status="unsupported",
                    cause=f"{cell.backend} supports {', '.join(backend.dtypes)}, not {cell.dtype}")
        return
    apply_configure(backend, cell.fp32_precision, cell.intra_op_threads, dict(cell.backend_options))
    env = backend.describe(cell.device)
    events.emit("env", env=env)
    precision = backend.effective_precision(cell.device, cell.dtype, cell.fp32_precision)
    events.emit("result", precision=precision)

    spec = workloads.make(cell.workload, **dict(cell.knobs))
    params = spec.init_weights(cell.seed)
    events.emit("spec", flops_per_op=spec.flops(), size=spec.label())

    if cell.mode == "streams":
        try:
            with backend.stream(cell.device):  # fail early, in the main thread, if there are none
                pass
        except Unsupported as e:
            events.emit("status", status="unsupported", cause=str(e))
            return

    checks, measured = modes.Checks(tolerance(precision)), modes.Measured()

    build = modes.Build(
        lambda: make_harness(backend, build_model(backend, cell, spec, params), cell, spec, params, cache, checks,
                             measured),
        checks, cache, facts={"intra_op_ran": env.get("intra_op_threads"),
                              "intra_op_rule": "--intra-op-threads" if cell.intra_op_threads else "framework default"},
        measured=measured)

    try:
        sampler = host.GpuSampler(cell.device, events.emit).start()  # GPU utilisation: one event
        try:
            # each trial is written as it comes (a server cell yields its rate steps one by one: a cell that
            # fails later keeps them)
            for t in modes.RUNNERS[cell.mode](cell, build):
                events.emit("trial", **asdict(t))
        finally:
            sampler.stop(measured.timed_spans)  # over the timed windows only
    except Unsupported as e:
        events.emit("status", status="unsupported", cause=str(e))
        return
    except modes.TooSlow as e:  # not measured; but an output already checked wrong makes it a wrong cell
        events.emit("result", **asdict(measured))
        events.emit("verify", errors=checks.errors, checked=checks.checked, rel_err=checks.max_err)
        events.emit("status", status="wrong" if checks.errors else "too_slow",
                    cause=f"{_wrong(checks)}; and {e}" if checks.errors else str(e))
        return
    events.emit("result", **asdict(measured))
    events.emit("facts", **build.facts)
    events.emit("verify", errors=checks.errors, checked=checks.checked, rel_err=checks.max_err)
    events.emit("memory", peak_rss_mb=peak_rss_mb(), peak_device_mb=_mb(backend.peak_device_memory(cell.device)))
    events.emit("status", status="wrong" if checks.errors else "ok", cause=_wrong(checks) if checks.errors else "")


def _wrong(checks: modes.Checks) -> str:
    return (f"{checks.errors} of {checks.checked} checked outputs off the reference "
            f"(max rel. error {checks.max_err:.3g}, tolerance {checks.tolerance:g})")


def _mb(b):
    return None if b is None else b / 2**20


def watch_parent(interval: float = 0.25, parent: int | None = None) -> None:
    """A cell never outlives its sweep: if threadbench itself dies without killing us (SIGKILL, the OOM
    killer), we are re-parented, and this ends the process. The runner names itself in THREADBENCH_PARENT,
    so a parent that died while we were still importing is noticed too. (A processes-mode child names its
    cell's worker in `parent`.)"""
    parent = parent or int(os.environ.get("THREADBENCH_PARENT") or os.getppid())

    def loop() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    watch_parent()
    cell = Cell.from_dict(json.loads(Path(argv[0]).read_text()))
    events = Events(argv[1])
    events.emit("start", pid=os.getpid(), t=time.time())
    try:
        run_cell(cell, events, Path(argv[2]))
    except modes.CellFailed as e:
        events.emit("status", status=e.status, cause=e.cause, traceback=e.traceback)
    except modes.ModeFailed as e:
        cause = e.__cause__ or e
        events.emit("status", status="error", cause=f"{type(cause).__name__}: {cause}",
                    traceback="".join(traceback.format_exception(cause)))
    except Exception as e:  # noqa: BLE001 - the cell's result, not the sweep's end
        events.emit("status", status="error", cause=f"{type(e).__name__}: {e}",
                    traceback=traceback.format_exc())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
