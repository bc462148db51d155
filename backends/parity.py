"""Reusable parity check: a backend's forward matches the float64 reference on every workload.

Plug-ins use it in their own tests, unchanged:

    from backends.parity import check_parity, parity_cases

    @pytest.mark.parametrize("case", parity_cases("myframework"), ids=str)
    def test_parity(case):
        check_parity(case)

Sizes are reduced (fewer layers, shorter sequences) so the suite stays fast on a CPU; the checks run
through the same Backend methods the benchmark uses (build, to_device, forward, synchronize, to_numpy).
"""
from __future__ import annotations

from dataclasses import dataclass

import workloads
from compare.measure.verify import rel_error, tolerance

from . import load
from .base import Unsupported

SMALL = {"layers": 2, "seq": 16}


@dataclass(frozen=True)
class ParityCase:
    backend: str
    device: str
    dtype: str
    workload: str

    def __str__(self):
        return f"{self.backend}-{self.device}-{self.dtype}-{self.workload}"


def parity_cases(backend_name: str, devices: list[str] | None = None) -> list[ParityCase]:
    """Every (device, dtype, workload) the backend can run here. Empty when it has no usable device."""
    backend = load(backend_name)
    usable = backend.available_devices()
    chosen = [d for d in (devices or usable) if d in usable]
    return [ParityCase(backend_name, d, dt, w) for d in chosen for dt in backend.dtypes for w in workloads.WORKLOADS]


def check_parity(case: ParityCase, seed: int = 0) -> float:
    """Assert the backend's output matches the reference within the dtype's tolerance; returns the error."""
    backend = load(case.backend)
    spec = workloads.make(case.workload, **SMALL)
    params = spec.init_weights(seed)
    x = spec.make_input(seed)
    try:
        model = backend.build(spec, params, case.device, case.dtype)
    except Unsupported as e:  # a declared dtype the device cannot run (e.g. float16 on some CPUs)
        import pytest
        pytest.skip(str(e))
    out = backend.forward(model, backend.to_device(x, case.device, case.dtype))
    backend.synchronize(out, case.device)
    err = rel_error(backend.to_numpy(out), spec.reference(params, x))
    assert err <= tolerance(case.dtype), f"{case}: relative error {err:.3g} > {tolerance(case.dtype):g}"
    return err
