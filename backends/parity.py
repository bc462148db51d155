"""Reusable parity suite: a backend computes what `compare` relies on, against the float64 reference.

Plug-ins use it in their own tests, unchanged:

    from backends.parity import check_parity, parity_cases

    @pytest.mark.parametrize("case", parity_cases("myframework"), ids=str)
    def test_parity(case):
        check_parity(case)

For every declared device and dtype it checks, through the same Backend methods the benchmark uses:

- `forward`: each workload's output (build, to_device, forward, synchronize, to_numpy);
- `threads`: PARITY_THREADS threads calling one shared model at once, each on its own input;
- `batched`: concat of several requests, one forward, split back, each piece read on another thread;
- `probe`: the matmul peak probe (y = x @ w.T), or its declared absence (Unsupported: skipped, saying so).

A device that is not usable here, or a dtype the device declines with Unsupported, gives skipped cases
with the reason, so "nothing ran" never looks like a pass. Sizes are reduced (SMALL) so that the suite
stays fast on a CPU. It is not a benchmark: nothing here is timed.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass


import workloads
from compare.measure.verify import rel_error, tolerance

from . import load
from .base import Unsupported

SMALL = {"layers": 2, "seq": 16, "width": 128, "hidden": 256}  # every code path, a fraction of the time
PROBE_SIZE = {"batch": 8, "n": 64}
PARITY_THREADS = 4      # concurrent callers of one model: enough to interleave, cheap on a 2-core CI box
OPS_PER_THREAD = 3      # calls per thread, all checked
BATCH_REQUESTS = 3      # requests joined by concat in the batched check
CHECKS = ("forward", "threads", "batched")


@dataclass(frozen=True)
class ParityCase:
    backend: str
    device: str
    dtype: str
    workload: str
    check: str = "forward"      # forward | threads | batched | probe
    skip: str | None = None     # why this case cannot run here (the device is unavailable)

    def __str__(self):
        return f"{self.backend}-{self.device}-{self.dtype}-{self.workload}-{self.check}"


def parity_cases(backend_name: str, devices: list[str] | None = None) -> list[ParityCase]:
    """Every (device, dtype, workload, check) of the backend's declared devices (or `devices`), and the
    probe per device and dtype. Cases of a device not usable here carry the reason and are skipped."""
    backend = load(backend_name)
    status = backend.device_status()
    cases = []
    for device in devices or backend.devices:
        why = status.get(device, f"{backend_name} has no device {device!r}")
        for dtype in backend.dtypes:
            cases += [ParityCase(backend_name, device, dtype, w, check, why)
                      for w in workloads.WORKLOADS for check in CHECKS]
            cases.append(ParityCase(backend_name, device, dtype, "matmul", "probe", why))
    return cases


def check_parity(case: ParityCase, seed: int = 0) -> float:
    """Assert the case's outputs match the reference within the dtype's tolerance; returns the largest
    relative error. Skips (pytest.skip) with the reason when the device or the dtype cannot run here."""
    import pytest
    if case.skip:
        pytest.skip(case.skip)
    backend = load(case.backend)
    spec = workloads.make(case.workload, **(PROBE_SIZE if case.check == "probe" else SMALL))
    params = spec.init_weights(seed)
    try:
        model = backend.build(spec, params, case.device, case.dtype)
    except Unsupported as e:  # a declared dtype the device cannot run, or a declined probe
        pytest.skip(f"{case.backend} declines {case.workload} on {case.device}/{case.dtype}: {e}")
    run = {"forward": _forward, "probe": _forward, "threads": _threads, "batched": _batched}[case.check]
    errors = run(backend, model, spec, params, case, seed)
    worst = max(errors)
    limit = tolerance(case.dtype)
    assert worst <= limit, f"{case}: relative error {worst:.3g} > {limit:g} (all: {', '.join(f'{e:.3g}' for e in errors)})"
    return worst


def _op(backend, model, x, device):
    y = backend.forward(model, x)
    backend.synchronize(y, device)
    return y


def _device_input(backend, x, case):
    xd = backend.to_device(x, case.device, case.dtype)
    backend.synchronize(xd, case.device)
    return xd


def _forward(backend, model, spec, params, case, seed):
    x = spec.make_input(seed)
    y = _op(backend, model, _device_input(backend, x, case), case.device)
    return [rel_error(backend.to_numpy(y), spec.reference(params, x))]


def _threads(backend, model, spec, params, case, seed):
    """PARITY_THREADS threads share the model, start together, each checks every output of its own input."""
    hosts = [spec.make_input(seed + i) for i in range(PARITY_THREADS)]
    refs = [spec.reference(params, x) for x in hosts]
    inputs = [_device_input(backend, x, case) for x in hosts]
    errors = [[] for _ in hosts]
    failures: list[BaseException] = []
    start = threading.Barrier(PARITY_THREADS)

    def worker(i):
        try:
            start.wait()
            for _ in range(OPS_PER_THREAD):
                errors[i].append(rel_error(backend.to_numpy(_op(backend, model, inputs[i], case.device)), refs[i]))
        except BaseException as e:  # noqa: BLE001 - re-raised on the main thread below
            failures.append(e)
            start.abort()

    _run_threads(worker, PARITY_THREADS, failures)
    assert all(len(e) == OPS_PER_THREAD for e in errors), "a thread did not finish its calls"
    return [e for per_thread in errors for e in per_thread]


def _batched(backend, model, spec, params, case, seed):
    """concat -> one forward -> split, as the dynamic batcher does; each piece is read on another thread
    (the client's), and must be its own request's output."""
    hosts = [spec.make_input(seed + i) for i in range(BATCH_REQUESTS)]
    joined = backend.concat([_device_input(backend, x, case) for x in hosts])
    pieces = backend.split(_op(backend, model, joined, case.device), [spec.batch] * BATCH_REQUESTS)
    assert len(pieces) == BATCH_REQUESTS, f"split returned {len(pieces)} pieces for {BATCH_REQUESTS} requests"
    errors: list[float] = [float("inf")] * BATCH_REQUESTS
    failures: list[BaseException] = []

    def client(i):
        try:
            backend.synchronize(pieces[i], case.device)
            errors[i] = rel_error(backend.to_numpy(pieces[i]), spec.reference(params, hosts[i]))
        except BaseException as e:  # noqa: BLE001 - re-raised on the main thread below
            failures.append(e)

    _run_threads(client, BATCH_REQUESTS, failures)
    return errors


def _run_threads(target, n: int, failures: list[BaseException]) -> None:
    """target(i) for i in range(n), each on a thread of its own, all joined; then the first failure the
    targets recorded in `failures` is raised here, on the caller's thread."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


__all__ = ["ParityCase", "parity_cases", "check_parity", "SMALL", "PARITY_THREADS"]
