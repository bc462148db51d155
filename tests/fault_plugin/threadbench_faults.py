"""Fault-injection backends: a tiny third-party distribution that the reliability tests put on PYTHONPATH,
so the faults reach threadbench through the same entry-point group (`threadbench.backends`) as any plug-in.

Each is the numpy reference backend with one fault in forward(). The fault fires only on the real
workloads, never on the matmul peak probe, so every sweep also holds healthy cells of the same backend
(the tests check those are kept next to the recorded failures)."""
from __future__ import annotations

import ctypes
import os
import threading
import time

import numpy as np

from backends.numpy_backend import NumpyBackend


class _Faulty(NumpyBackend):
    def build(self, workload, params, device, dtype):
        model = super().build(workload, params, device, dtype)
        model.faulty = workload.name != "matmul"  # the probe stays healthy
        return model

    def forward(self, model, x):
        if getattr(model, "faulty", False):
            return self.fault(model, x)
        return model(x)

    def fault(self, model, x):
        raise NotImplementedError


class SegfaultBackend(_Faulty):
    name = "fault-segv"

    def fault(self, model, x):
        ctypes.string_at(0)  # reads address 0: SIGSEGV


class AbortBackend(_Faulty):
    name = "fault-abort"

    def fault(self, model, x):
        os.abort()  # SIGABRT, as a failed C assert would


class HangBackend(_Faulty):
    name = "fault-hang"

    def fault(self, model, x):
        threading.Event().wait()  # forever; only the cell timeout ends it


class RaiseBackend(_Faulty):
    name = "fault-raise"

    def fault(self, model, x):
        raise RuntimeError("injected fault: forward failed")


class WrongWhenThreadedBackend(_Faulty):
    """Correct while one forward runs at a time; an output computed while another forward overlapped it is
    off. (Per forward, not from the first overlap on: a worker measures several cells, and a one-thread cell
    after a threaded one must still be right.)"""
    name = "fault-wrong"
    _lock = threading.Lock()
    _in_flight = 0

    def fault(self, model, x):
        cls = type(self)
        with cls._lock:
            cls._in_flight += 1
            overlapped = cls._in_flight > 1
        try:
            time.sleep(0.001)  # releases the GIL, so concurrent calls really overlap
            y = model(x)
            with cls._lock:
                overlapped |= cls._in_flight > 1
            return y + 1.0 if overlapped else y
        finally:
            with cls._lock:
                cls._in_flight -= 1


class MemoryHogBackend(_Faulty):
    """A forward that leaks: it keeps 32 MB more (touched, so resident) every 10 ms and never returns.
    At 4 GB it stops growing and just waits, should the memory watch ever fail (the timeout then ends it)."""
    name = "fault-hog"

    def fault(self, model, x):
        kept = []
        while len(kept) < 128:
            kept.append(np.ones(32 * 2**20, dtype=np.uint8))
            time.sleep(0.01)
        threading.Event().wait()


class AbortAtExitBackend(_Faulty):
    """Computes correctly, then aborts while the process exits — as MLX-CUDA was seen to do in teardown."""
    name = "fault-exit"

    def fault(self, model, x):
        import atexit
        if not getattr(type(self), "_armed", False):
            type(self)._armed = True
            atexit.register(os.abort)
        return model(x)
