"""The float64 numpy reference as a backend: runs each workload's reference forward on the CPU."""
from __future__ import annotations

import numpy as np

from .base import Backend, Unsupported, check_dtype, cpu_model


class NumpyBackend(Backend):
    name = "numpy"
    devices = ("cpu",)
    synchronous_on = ("cpu",)   # numpy is eager
    dtypes = ("float64",)

    def __init__(self):
        self._limit = None  # threadpoolctl's limiter, kept so the BLAS pool stays at the asked size

    def device_status(self):
        return {"cpu": None}

    def configure(self, *, fp32_precision="highest", intra_op_threads=None):
        if intra_op_threads:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                return  # describe() reports the BLAS pool as it is
            self._limit = threadpool_limits(limits=intra_op_threads)

    def build(self, workload, params, device, dtype):
        check_dtype(self, dtype)
        weights = {k: v.astype(np.float64) for k, v in params.items()}
        return lambda x: workload.reference(weights, x)

    def to_device(self, x, device, dtype):
        return np.asarray(x, dtype=np.float64)

    def synchronize(self, out, device):
        pass  # numpy is eager: the result exists when the call returns

    def to_numpy(self, out):
        return np.asarray(out, dtype=np.float64)

    def concat(self, xs):
        return np.concatenate(xs, axis=0)

    def split(self, y, sizes):
        return np.split(y, np.cumsum(sizes)[:-1], axis=0)

    def describe(self, device):
        try:
            from threadpoolctl import threadpool_info
            libs = [f"{i['internal_api']} {i.get('version') or ''}".strip() for i in threadpool_info()]
            threads = max((i["num_threads"] for i in threadpool_info()), default=None)
        except ImportError:
            libs, threads = [], None
        return {
            "framework": "numpy", "version": np.__version__, "device_name": cpu_model(),
            "math_library": ", ".join(libs) or "numpy's BLAS", "intra_op_threads": threads,
            "thread_streams": "no streams: each thread calls the BLAS, whose thread pool all threads share",
            "device_time": "none: on the CPU the device's time is the framework call's",
            "warnings": [],
        }


__all__ = ["NumpyBackend", "Unsupported"]
