"""Backends whose time split is known, for the verdict tests (tests/test_split.py): a tiny third-party
distribution the tests put on PYTHONPATH, found through the `threadbench.backends` entry-point group as any
plug-in is. Each is the numpy reference backend (float64 mlp, exact against its reference) with a known
cost around the forward:

- split-gil: a pure-Python loop of GIL_ITERATIONS before each forward, holding the GIL. Threads take turns:
  a request's CPU time stays flat while its wall time grows with the threads (GIL-bound from x2).
- split-gilsync: split-gil's forward and a synchronize that waits for nothing but releases the GIL: its
  synchronise, near zero at x1, grows with the threads by the others' GIL-holding turns (a framework's
  synchronise includes re-acquiring the GIL; a profiler times only the framework's own wait).
- split-sleep: a sleep of SLEEP_S before each forward, releasing the GIL: a stand-in for a wait on a device
  that is never busy. Threads overlap their sleeps (wait-bound at every thread count).
- split-device: a host part (a sleep of HOST_SLEEP_S and a pure-Python loop of HOST_ITERATIONS) and one job
  for the process's one stand-in device: a worker thread that serves jobs in order, SERVICE_S each;
  synchronize() waits for the job. Its timer (Backend.device_timer) reports each request's device time
  (SERVICE_S) and the device's busy time, so from x2, where the threads' host parts overlap and keep a job
  queued, the device is busy ~100% (device-bound); at x1 it idles while the host works (~75% busy).
- split-cudadevice: split-device on a real GPU (torch, CUDA): the same host part, then a kernel that keeps
  the GPU busy for SERVICE_S (torch.cuda._sleep, its cycles calibrated against CUDA events once per process)
  ahead of the model's kernels, on the stream the threads share (torch's default): the GPU serves one
  request's spin at a time, as the stand-in's worker thread does, but a thread's synchronise waits for every
  job queued before it (the stream's), so the threads leave it together (tests/test_split.py's model). Its
  figures come from the real timers: NVML for the busy share, CUDA events for the device time (a span on the
  shared stream: the host part inside the forward and the others' jobs too).

numpy and the standard library only (torch for split-cudadevice, imported when it runs), and no GIL assumed: the forwards import and run under a free-threaded
interpreter, where split-gil's loops run at once and its waiting falls (issue 21 re-runs it there)."""
from __future__ import annotations

import collections
import threading
import time

import numpy as np

from backends.numpy_backend import NumpyBackend
from backends.torch_backend import TorchBackend

GIL_ITERATIONS = 5_000    # ~0.35 ms of pure Python per request on a 2-core EPYC guest (~65 ns an iteration)
SLEEP_S = 0.002           # the sleeping stand-in's wait per request
HOST_SLEEP_S = 0.002      # the device stand-in's host part per request: a wait that releases the GIL (a copy,
HOST_ITERATIONS = 5_000   # a driver call) and ~0.35 ms of pure Python. The wait is as long on any machine, so
#                           x1 stays well under 90% busy (8 of ~10.5 ms) on a fast one; at x2 a thread's host
#                           part may come up to SERVICE_S - 2.4 ms late (wake-ups on a loaded machine) and still
#                           find the device busy with the other thread's job
SERVICE_S = 0.008         # the stand-in device's fixed service time per job


def spin(iterations: int) -> int:
    """Pure-Python work: with the GIL, only one thread of a process runs it at a time."""
    x = 0
    for i in range(iterations):
        x += i * i % 7
    return x


class GilBackend(NumpyBackend):
    name = "split-gil"

    def forward(self, model, x):
        spin(GIL_ITERATIONS)
        return model(x)


class GilSyncBackend(NumpyBackend):
    """split-gil's forward, and a synchronize that waits for nothing but releases the GIL (as a framework's
    wait on its device does): on its way back the thread takes its turn for the GIL behind the others'
    forwards, so its synchronise grows with the threads though there is nothing to wait for."""
    name = "split-gilsync"

    def forward(self, model, x):
        spin(GIL_ITERATIONS)
        return model(x)

    def synchronize(self, out, device):
        time.sleep(0)


class SleepBackend(NumpyBackend):
    name = "split-sleep"

    def forward(self, model, x):
        time.sleep(SLEEP_S)
        return model(x)


class Job:
    """One forward's work on the stand-in device: its output, its place in the device's schedule, and the
    event its synchronize() waits on."""
    __slots__ = ("value", "start", "end", "done")

    def __init__(self, value):
        self.value, self.start, self.end, self.done = value, 0.0, 0.0, threading.Event()


class Device:
    """A device that serves one job at a time, in order, each for `service_s`: a job's slot is fixed when it
    is submitted (it starts when the device is free, or at once), so the device's busy time is its schedule,
    whatever the Python threads' timing. Its worker thread sleeps until each job's end, then marks it done,
    as a device's completion would be signalled (late, on a busy machine, like an interrupt)."""

    def __init__(self, service_s: float, clock=time.perf_counter):
        self.service_s, self.clock = service_s, clock
        self.lock = threading.Lock()
        self.queue: collections.deque = collections.deque()   # jobs submitted, not yet marked done
        self.ready = threading.Condition(self.lock)
        self.free_at = 0.0       # when the last job scheduled ends
        self.slots: collections.deque = collections.deque()   # (start, end) of jobs not yet counted as busy
        self.counted = 0.0       # busy seconds of slots that had ended when busy() last looked
        threading.Thread(target=self._serve, name="split-device", daemon=True).start()

    def submit(self, job: Job) -> Job:
        with self.lock:
            job.start = max(self.clock(), self.free_at)
            job.end = self.free_at = job.start + self.service_s
            self.slots.append((job.start, job.end))
            self.queue.append(job)
            self.ready.notify()
        return job

    def busy(self) -> float:
        """Seconds the device has been busy so far: every slot's part before now."""
        with self.lock:
            now = self.clock()
            while self.slots and self.slots[0][1] <= now:
                start, end = self.slots.popleft()
                self.counted += end - start
            return self.counted + sum(max(0.0, now - start) for start, _ in self.slots)

    def _serve(self) -> None:
        while True:
            with self.lock:
                while not self.queue:
                    self.ready.wait()
                job = self.queue.popleft()
            left = job.end - self.clock()
            if left > 0:
                time.sleep(left)
            job.done.set()


class DeviceTimer:
    """The stand-in's Backend.device_timer: a mark holds the jobs the thread submits between start() and
    stop(); elapsed() is their service time; busy() the device's."""

    def __init__(self, device: Device, local: threading.local):
        self.device, self.local = device, local

    def start(self) -> list:
        self.local.mark = []
        return self.local.mark

    def stop(self, mark: list) -> None:
        self.local.mark = None

    def elapsed(self, mark: list) -> float:
        return sum(job.end - job.start for job in mark)

    def busy(self) -> float:
        return self.device.busy()


class DeviceBackend(NumpyBackend):
    name = "split-device"

    def __init__(self):
        super().__init__()
        self.device = None
        self.local = threading.local()

    def build(self, workload, params, device, dtype):
        model = super().build(workload, params, device, dtype)
        if self.device is None:
            self.device = Device(SERVICE_S)   # one per process: the processes mode gives each its own
        return model

    def forward(self, model, x):
        time.sleep(HOST_SLEEP_S)
        spin(HOST_ITERATIONS)
        job = self.device.submit(Job(model(x)))
        mark = getattr(self.local, "mark", None)
        if mark is not None:
            mark.append(job)
        return job

    def synchronize(self, out, device):
        if isinstance(out, Job):
            out.done.wait()

    def to_numpy(self, out):
        return np.asarray(out.value if isinstance(out, Job) else out, dtype=np.float64)

    def split(self, y, sizes):
        self.synchronize(y, "cpu")
        return super().split(y.value if isinstance(y, Job) else y, sizes)

    def device_timer(self, device):
        return DeviceTimer(self.device, self.local) if self.device is not None else None

    def describe(self, device):
        return {**super().describe(device), "device_name": f"stand-in device ({SERVICE_S * 1e3:g} ms a job)",
                "device_time": "the stand-in's own schedule: each job's slot, and the device's busy time"}


class CudaDeviceBackend(TorchBackend):
    name = "split-cudadevice"
    devices = ("cuda",)

    def __init__(self):
        super().__init__()
        self.cycles = None   # torch.cuda._sleep cycles that last SERVICE_S on this GPU

    def device_status(self):
        return {"cuda": super().device_status()["cuda"]}

    def build(self, workload, params, device, dtype):
        model = super().build(workload, params, device, dtype)
        if self.cycles is None:
            self.cycles = self.calibrate()
        return model

    def calibrate(self, probe: int = 20_000_000, rounds: int = 5) -> int:
        """Cycles of torch.cuda._sleep that last SERVICE_S: the median of `rounds` timed spins of `probe`
        cycles (after one that brings the clocks up), scaled."""
        torch = self._torch()
        spans = []
        for _ in range(rounds + 1):
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            torch.cuda._sleep(probe)
            end.record()
            end.synchronize()
            spans.append(begin.elapsed_time(end) / 1e3)
        per_cycle = float(np.median(spans[1:])) / probe
        return int(SERVICE_S / per_cycle)

    def forward(self, model, x):
        time.sleep(HOST_SLEEP_S)
        spin(HOST_ITERATIONS)
        self._torch().cuda._sleep(self.cycles)
        return model(x)

    def describe(self, device):
        return {**super().describe(device), "stand_in": f"a {SERVICE_S * 1e3:g} ms spin kernel (torch.cuda._sleep, "
                "calibrated against CUDA events when the model is built) ahead of each forward"}
