"""Builds what a cell measures, in the process that measures it: the model at the cell's batch, the Harness
around it (op, per-request inputs, the check against the cached float64 reference), the CellContext a mode
gets, what a worker process keeps for its later cells (Held: the backend, weights, references and built
models), and the one memory report every measuring process gives. Framework-free: it reaches a framework
only through the Backend. Not here: running a mode, or starting processes (compare.measure.procs)."""
from __future__ import annotations

import functools
import hashlib
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import psutil

import backends
import workloads
from backends.base import apply_configure

from ..cells import Cell
from ..files import atomic_write
from .clocks import process_clock
from .harness import Checks, Harness, Measured
from .verify import rel_error, tolerance


@dataclass
class CellContext:
    """What a mode gets besides its Cell. `build_harness()` builds the model and its Harness in this process
    (a mode that measures in processes of its own never calls it: they build their own). `checks`: where
    verification is tallied (processes merge theirs in); `cache`: the sweep's reference cache, which they
    share; `measured`: how the cell was measured; `facts`: what the mode learned about the processes that
    ran (memory per process, intra-op threads). The worker records the last three."""
    build_harness: Callable[[], Harness]
    checks: Checks
    measured: Measured = field(default_factory=Measured)
    cache: Path | None = None
    facts: dict = field(default_factory=dict)


def code_digest(cls: type) -> str:
    """What a workload's references compute, as code: the source of every module its class and bases come
    from (workloads.base holds init_weights, make_input and the float64 building blocks), and numpy's
    version (its Generator draws the weights and inputs; numpy does not promise the same stream across
    versions). A cache folder that outlives a sweep (compare --cache-dir) holds no reference of other code."""
    return _code_digest(cls, np.__version__)


@functools.cache
def _code_digest(cls: type, numpy_version: str) -> str:
    digest = hashlib.sha1(numpy_version.encode())
    for c in cls.__mro__:
        module = sys.modules.get(c.__module__)
        source = getattr(module, "__file__", None)
        if source:
            digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


def reference_path(spec, seed: int, index: int, cache: Path) -> Path:
    """Where the reference of request input `index` lives in the cache: its file name hashes everything the
    reference depends on (the workload and every size knob, the weights' seed, the input's index, the code)."""
    key = hashlib.sha1(f"{spec.name}|{spec.label()}|{seed}|{index}|{code_digest(type(spec))}".encode())
    return cache / f"{spec.name}-{key.hexdigest()[:16]}.npy"


def _cached(path: Path) -> np.ndarray | None:
    """The reference stored at `path`; None when there is none, or it cannot be trusted (a file cut short,
    written by something else, or not float64): it is computed again and replaced."""
    try:
        ref = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return ref if isinstance(ref, np.ndarray) and ref.dtype == np.float64 else None


def reference(spec, params, index: int, seed: int, cache: Path) -> np.ndarray:
    """float64 reference output for request input `index`, cached on disk across the cells of a sweep (and
    across sweeps that name the same --cache-dir). Processes that compute the same one at once each write
    a whole file under a name of its own and rename it over the target: a reader sees one whole file."""
    path = reference_path(spec, seed, index, cache)
    if (ref := _cached(path)) is not None:
        return ref
    ref = spec.reference(params, spec.make_input(index))
    try:
        with atomic_write(path, binary=True, sync=False) as f:  # a cache: a file lost to a crash is recomputed
            np.save(f, ref)
    except OSError:  # a full or read-only cache costs the next cell this computation again, not this cell
        pass
    return ref


class References:
    """float64 references by request index, computed on first use (a check runs outside the clock) and kept
    on disk for the other cells of the sweep, and in memory for the other cells of this process. Thread-safe:
    checks run in whichever thread closes a window. `spent_s`: the seconds spent computing or reading them."""

    def __init__(self, spec, params, seed: int, cache: Path):
        self.spec, self.params, self.seed, self.cache = spec, params, seed, cache
        self.known: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()
        self.spent_s = 0.0

    def __call__(self, index: int) -> np.ndarray:
        with self.lock:
            if index not in self.known:
                t0 = time.perf_counter()
                self.known[index] = reference(self.spec, self.params, index, self.seed, self.cache)
                self.spent_s += time.perf_counter() - t0
            return self.known[index]


@dataclass
class Built:
    """A workload as a worker process keeps it: its one-request spec, its seeded weights, their references."""
    spec: object
    params: dict
    refs: References


def model_key(cell: Cell) -> tuple:
    """Everything that changes the model backend.build returns for a cell (its backend and device are the
    process's): the workload and its size, the weights' seed, the dtype, the batch of one forward, the
    float32 matmul setting, the backend's own options, and its intra-op threads (which a backend may bake
    into what it builds: ONNX Runtime's session)."""
    return (cell.workload, cell.knobs, cell.seed, cell.dtype, cell.device, cell.requests_per_forward,
            cell.fp32_precision, cell.backend_options, cell.intra_op_threads)


class Held:
    """What one worker process keeps from cell to cell, so that its later cells pay no start-up: each backend
    loaded once (its framework imported, its context made), each workload's weights and references, each
    model built (keyed by model_key). The process measures the cells of one process group
    (compare.measure.plan.process_group), so everything here was built under the same process-wide settings.
    `build_s`: seconds spent loading backends (importing the framework), making weights and building models,
    for the cells' time split."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.backends: dict[str, backends.Backend] = {}
        self.status: dict[str, dict[str, str | None]] = {}   # each backend's device_status(), read once
        self.workloads: dict[tuple, Built] = {}
        self.models: dict[tuple, object] = {}
        self.build_s = 0.0

    def backend(self, name: str) -> backends.Backend:
        """The backend, loaded once; its device_status() (which imports the framework) read then too."""
        if name not in self.backends:
            t0 = time.perf_counter()
            backend = backends.load(name)
            self.status[name] = backend.device_status()
            self.backends[name] = backend
            self.build_s += time.perf_counter() - t0
        return self.backends[name]

    def workload(self, cell: Cell) -> Built:
        key = (cell.workload, cell.knobs, cell.seed)
        if key not in self.workloads:
            t0 = time.perf_counter()
            spec = workloads.make(cell.workload, **dict(cell.knobs))
            params = spec.init_weights(cell.seed)
            self.workloads[key] = Built(spec, params, References(spec, params, cell.seed, self.cache))
            self.build_s += time.perf_counter() - t0
        return self.workloads[key]

    def model(self, backend, cell: Cell):
        key = model_key(cell)
        if key not in self.models:
            built = self.workload(cell)
            t0 = time.perf_counter()
            self.models[key] = build_model(backend, cell, built.spec, built.params)
            self.build_s += time.perf_counter() - t0
        return self.models[key]

    def refs_s(self) -> float:
        """Seconds this process has spent on references so far."""
        return sum(w.refs.spent_s for w in self.workloads.values())


def build_model(backend, cell: Cell, spec, params):
    """The cell's model: `spec` (one request) built at the batch of one forward (k requests offline)."""
    return backend.build(spec.with_batch(spec.batch * cell.requests_per_forward), params, cell.device, cell.dtype)


def make_harness(backend, model, cell: Cell, spec, params, cache: Path, checks: Checks | None = None,
                 measured: Measured | None = None, clock: Callable[[], float] = process_clock,
                 refs: References | None = None) -> Harness:
    """The Harness a cell's mode runs: the op (forward + synchronize, as the backend defines them; also as
    its two parts, which the timed loop times apart), the backend's device timer where it has one, the
    device inputs, and the check against the float64 reference. Every request the cell can send has its
    own input: thread (client) i sends request i, or offline its k requests i*k .. i*k+k-1, so a swap
    between any two threads or requests shows. An offline batch is checked request by request.
    `model` is backend.build(spec with the cell's batch, ...); `spec` is the one-request workload. `refs`: the
    workload's References where the process keeps them (Held), else new ones."""
    n, k, rows = cell.threads, cell.requests_per_forward, spec.batch
    refs = refs or References(spec, params, cell.seed, cache)
    host_inputs = [np.concatenate([spec.make_input(i * k + j) for j in range(k)]) if k > 1 else spec.make_input(i)
                   for i in range(n)]

    def check(y, i: int):
        out = backend.to_numpy(y)
        if k == 1:
            return rel_error(out, refs(i))
        if out.shape[:1] != (k * rows,):
            return [float("inf")] * k
        return [rel_error(part, refs(i * k + j)) for j, part in enumerate(np.split(out, k))]

    forward, synchronize, device = backend.forward, backend.synchronize, cell.device

    def call(x):  # the framework call the split times on its own (compare.measure.split)
        return forward(model, x)

    def sync(y):
        synchronize(y, device)

    def op(x):
        y = forward(model, x)
        synchronize(y, device)
        return y

    device_inputs = [backend.to_device(x, cell.device, cell.dtype) for x in host_inputs]
    for x in device_inputs:  # copies complete before any thread (or stream) reads them
        backend.synchronize(x, cell.device)
    precision = backend.effective_precision(cell.device, cell.dtype, cell.fp32_precision)
    return Harness(
        op=op, check=check, inputs=device_inputs, tolerance=tolerance(precision),
        stream=lambda: backend.stream(cell.device),
        thread_setup=getattr(backend, "configure_thread", None),  # per-thread settings, where a backend has them
        concat=backend.concat, split=backend.split, rows=rows, checks=checks,
        measured=measured if measured is not None else Measured(), clock=clock, call=call,
        sync=None if backend.is_synchronous(cell.device) else sync,   # nothing to wait for there
        timer=backend.device_timer(cell.device) if hasattr(backend, "device_timer") else None,
    )


def process_harness(cell: Cell, cache: Path, intra_op: int, clock: Callable[[], float]) -> tuple:
    """What every spawned process of a cell (the processes mode, the server's pool) does first: its backend
    configured with its intra-op threads, its model and Harness built as the cell's worker builds them (so
    op, inputs, synchronise and check are those of `threads`), this thread's settings applied.
    Returns (backend, harness); the harness's Checks are the process's own tally."""
    backend = backends.load(cell.backend)
    apply_configure(backend, cell.fp32_precision, intra_op, dict(cell.backend_options))
    spec = workloads.make(cell.workload, **dict(cell.knobs))
    params = spec.init_weights(cell.seed)
    checks = Checks(tolerance(backend.effective_precision(cell.device, cell.dtype, cell.fp32_precision)))
    h = make_harness(backend, build_model(backend, cell, spec, params), cell, spec, params, cache, checks,
                     clock=clock)
    if h.thread_setup is not None:
        h.thread_setup()
    return backend, h


# -- memory -------------------------------------------------------------------------------------------
@dataclass
class Memory:
    """What one measuring process held: its peak host RSS, the host memory unique to it (psutil USS, at its
    end: what one more such process costs; None where not asked for or not readable), its peak device memory
    (None where the backend does not report it). MB."""
    rss_mb: float
    uss_mb: float | None
    device_mb: float | None


def memory(backend, device: str, unique: bool = False) -> Memory:
    """This process's Memory now; `unique`: read the USS too (it walks the process's page maps)."""
    uss = None
    if unique:
        try:
            uss = psutil.Process().memory_full_info().uss / 2**20
        except (psutil.Error, AttributeError):
            pass
    peak = backend.peak_device_memory(device)
    return Memory(rss_mb=peak_rss_mb(), uss_mb=uss, device_mb=None if peak is None else peak / 2**20)


def memory_facts(reports: list[dict]) -> dict:
    """The facts a cell records about the memory of its processes, from each one's Memory (as a dict), in
    process order."""
    device = [r["device_mb"] for r in reports]
    return dict(process_rss_mb=[r["rss_mb"] for r in reports], process_uss_mb=[r["uss_mb"] for r in reports],
                process_device_mb=device if any(d is not None for d in device) else None)


def reset_peak_rss() -> bool:
    """Start this process's peak RSS (VmHWM) again from its RSS now, so that a cell measured after others in
    the same process reports its own peak (which includes what the process holds for its other cells).
    Linux only (/proc/self/clear_refs); False where it cannot, and the peak then is the process's so far."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


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
