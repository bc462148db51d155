"""What a mode needs to measure a cell, as plain objects: the Harness (the op, its inputs, the output check,
the clock), the tally of checked outputs (Checks), how the cell was measured (Measured), and the ways a
mode ends without a measurement (TooSlow, ModeFailed, CellFailed). Framework-free: a backend reaches a
mode only through a Harness (compare.measure.build makes one). Not here: when ops run (compare.measure.schedule)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .clocks import process_clock, thread_cpu


class TooSlow(Exception):
    """The minimum of ops per window does not fit in the longest window allowed: reported, not measured."""


class ModeFailed(Exception):
    """A worker thread raised; the first exception is attached as the cause."""


class CellFailed(Exception):
    """The mode ran its work in processes of its own, saw one fail, and states the cell's status
    (compare.cells: CRASH, ERROR) and cause itself, e.g. "process 3 of 4 killed by SIGSEGV"."""

    def __init__(self, status: str, cause: str, traceback: str = ""):
        super().__init__(cause)
        self.status, self.cause, self.traceback = status, cause, traceback


@dataclass
class Checks:
    """The tally of outputs checked against the reference: a cell's verification, whichever threads (or
    processes, which send theirs to be merged) did the checking. One check of an offline batch is k
    requests, each recorded on its own."""
    tolerance: float
    errors: int = 0
    checked: int = 0
    max_err: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, err: float | Sequence[float]) -> None:
        with self._lock:
            for e in (err if isinstance(err, (list, tuple)) else (err,)):
                self.checked += 1
                self.errors += e > self.tolerance or not np.isfinite(e)
                self.max_err = max(self.max_err, e) if np.isfinite(e) else float("inf")

    def merge(self, errors: int, checked: int, max_err: float) -> None:
        with self._lock:
            self.errors += errors
            self.checked += checked
            self.max_err = max(self.max_err, max_err)

    def tally(self) -> tuple[int, int, float]:
        """(errors, checked, max_err): what a process sends to be merged."""
        return self.errors, self.checked, self.max_err


@dataclass
class Measured:
    """How a cell was measured, as data on its result: the warm-up it took, the window it used, the OS
    threads its process ran."""
    warmup_s: float = 0.0            # wall time of the warm-up windows
    warmup_windows: int = 0
    steady: bool = False             # the warm-up ended by stability (else by its time cap)
    window_s: float | None = None    # the timed window's planned length (the last one, if lengthened)
    op_s: float | None = None        # the speed check's median single op
    os_threads: int | None = None    # most OS threads the process ran at the end of any timed window
    cores: int | None = None         # the cores this process may run on (its CPU affinity)
    timed_spans: list = field(default_factory=list)  # (first start, last end) of each timed window, on
    #                                                  clocks.process_clock: what GpuSampler averages over


@dataclass
class Harness:
    """What a mode needs: the op, how to check an output, the per-thread inputs, and the clock it is timed on.
    The timed loop runs the op as its two parts, `call` then `sync`, to split each request's time
    (compare.measure.split); a Harness given only `op` is timed as one call with nothing to synchronise."""
    op: Callable[[Any], Any]                     # forward + synchronise; returns the output
    check: Callable[[Any, int], Any]             # (output, input index) -> relative error(s), one per request
    inputs: list[Any]                            # device inputs, one per thread (client); offline: k requests each
    tolerance: float
    stream: Callable[[], Any] | None = None      # per-thread stream context factory (streams mode)
    thread_setup: Callable[[], None] | None = None  # first call in every measuring thread (per-thread settings)
    concat: Callable[[list], Any] | None = None
    split: Callable[[Any, list], list] | None = None
    rows: int = 1                                # batch rows per request
    checks: Checks | None = None                 # where record() tallies; its own when not given
    measured: Measured = field(default_factory=Measured)
    clock: Callable[[], float] = process_clock   # what every op time is read on (tests pass a simulated one)
    call: Callable[[Any], Any] | None = None     # the framework call alone (forward until it returns)
    sync: Callable[[Any], Any] | None = None     # synchronise on call's output; op(x) = sync(call(x)) + output;
    #                                              None: the call is the whole op (Backend.synchronous_on)
    timer: Any = None                            # the backend's DeviceTimer (backends.base), None: no device time
    cpu_clock: Callable[[], float] = thread_cpu  # the thread's CPU clock the split reads

    def __post_init__(self) -> None:
        if self.checks is None:
            self.checks = Checks(self.tolerance)
        if self.call is None:
            self.call = self.op   # given whole: nothing left to synchronise

    def record(self, err) -> None:
        self.checks.record(err)

    errors = property(lambda self: self.checks.errors)
    checked = property(lambda self: self.checks.checked)
    max_err = property(lambda self: self.checks.max_err)
