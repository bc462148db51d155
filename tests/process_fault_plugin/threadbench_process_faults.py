"""Fault-injection backends for the processes mode: the numpy reference backend with one fault that fires
only in the second process of a processes-mode cell (multiprocessing names it "tb-process-2"; a replica is
such a process too), so the cell has healthy processes beside the faulty one, and the same backend's
threads cells and matmul probes (run in the worker's main process) stay healthy. Reached like
tests/fault_plugin: this folder on PYTHONPATH."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import threading

from backends.numpy_backend import NumpyBackend

FAULTY_PROCESS = "tb-process-2"  # compare.measure.processes names process i "tb-process-{i}"


class _FaultyInOne(NumpyBackend):
    def build(self, workload, params, device, dtype):
        model = super().build(workload, params, device, dtype)
        model.faulty = workload.name != "matmul" and multiprocessing.current_process().name == FAULTY_PROCESS
        return model

    def forward(self, model, x):
        return self.fault(model, x) if getattr(model, "faulty", False) else model(x)

    def fault(self, model, x):
        raise NotImplementedError


class SegfaultOneBackend(_FaultyInOne):
    name = "fault-one-segv"

    def fault(self, model, x):
        ctypes.string_at(0)  # SIGSEGV


class RaiseOneBackend(_FaultyInOne):
    name = "fault-one-raise"

    def fault(self, model, x):
        raise RuntimeError("injected fault: forward failed")


class WrongOneBackend(_FaultyInOne):
    """Every output of the faulty process is off; the other process is right."""
    name = "fault-one-wrong"

    def fault(self, model, x):
        return model(x) + 1.0


class HangOneBackend(_FaultyInOne):
    name = "fault-one-hang"

    def fault(self, model, x):
        threading.Event().wait()  # forever: the others wait for it at the next barrier


class SegfaultLaterBackend(SegfaultOneBackend):
    """As fault-one-segv, but only at the faulty process's LATER-th forward: past start-up and warm-up, so a
    server-processes pool dies while it serves a rate step."""
    name = "fault-one-later-segv"
    LATER = 50

    def forward(self, model, x):
        model.calls = getattr(model, "calls", 0) + 1
        return super().forward(model, x) if model.calls >= self.LATER else model(x)


class PinEchoBackend(_FaultyInOne):
    """The faulty process raises with where it runs: its cores and the multicast switches of its environment,
    so that a test reads, from the cell's cause, what a replica was pinned to."""
    name = "fault-one-pin-echo"

    def fault(self, model, x):
        cores = ",".join(map(str, sorted(os.sched_getaffinity(0))))
        raise RuntimeError(f"pinned to cores {cores}; NCCL_NVLS_ENABLE={os.environ.get('NCCL_NVLS_ENABLE')} "
                           f"TORCH_SYMM_MEM_DISABLE_MULTICAST={os.environ.get('TORCH_SYMM_MEM_DISABLE_MULTICAST')}")
