"""Concurrency stress: 8 threads share one model and run hundreds of forwards each; every output must equal
the single-thread output for the same input (bitwise, or within 1e-6 relative). A backend or framework
that mixes up buffers, streams or caches between threads fails here even when each thread alone is fine.

Runs every backend that has a usable device here (built-ins and installed plug-ins), through the same
Backend methods the benchmark uses."""
import threading

import numpy as np
import pytest

import backends
import workloads

THREADS = 8
ITERATIONS = 200  # per thread
RTOL = 1e-6
DEADLOCK_S = 600  # a deadlock, not slowness: 8 x 200 forwards took 99 s with every core of a 2-core machine busy


def cases():
    out = []
    for name in backends.names():
        try:
            b = backends.load(name)
        except Exception:  # noqa: BLE001 - a plug-in that does not import is not stress-tested
            continue
        if b.default_device() is None:
            continue
        dtype = "float32" if "float32" in b.dtypes else b.dtypes[0]
        out += [pytest.param(name, w, dtype, id=f"{name}-{w}-{dtype}") for w in ("mlp", "block")]
    return out


def rel(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return float("inf")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.slow
@pytest.mark.parametrize("name,workload,dtype", cases())
def test_eight_threads_match_single_thread_outputs(name, workload, dtype):
    backend = backends.load(name)
    device = backend.default_device()
    spec = workloads.make(workload)
    model = backend.build(spec, spec.init_weights(0), device, dtype)
    inputs = [backend.to_device(spec.make_input(i), device, dtype) for i in range(THREADS)]

    def once(i):
        y = backend.forward(model, inputs[i])
        backend.synchronize(y, device)
        return backend.to_numpy(y)

    expected = [once(i) for i in range(THREADS)]  # one thread, before any concurrency
    mismatches: list[str] = []
    failures: list[BaseException] = []
    done = [0] * THREADS
    start = threading.Barrier(THREADS)

    def worker(i):
        try:
            start.wait()
            for it in range(ITERATIONS):
                y = once(i)
                if not np.array_equal(y, expected[i]) and rel(y, expected[i]) > RTOL:
                    mismatches.append(f"thread {i} iteration {it}: rel. error {rel(y, expected[i]):.3g}")
                done[i] += 1
        except BaseException as e:  # noqa: BLE001
            failures.append(e)
            start.abort()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), f"{name}: threads still running after 60 s (deadlock?)"
    assert not failures, f"{name}: {failures[0]!r}"
    assert done == [ITERATIONS] * THREADS
    assert not mismatches, f"{name} {workload}: {len(mismatches)} of {THREADS * ITERATIONS} outputs differ " \
                           f"from the single-thread output, e.g. {mismatches[:3]}"
