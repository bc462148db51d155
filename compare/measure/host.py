"""The host a sweep ran on, measured: a short calibration probe and the load, at the start and the end of
a sweep, and each GPU cell's utilisation while its mode ran. From these, whether a cell was host-bound.

Why: small-batch GPU cells are paced by the host CPU that launches their kernels, so the same cell on two
hosts of one GPU kind can differ 2x; a run that records the host's speed and load says why.

- `probe(at)`: one snapshot (about half a second): single-core CPU speed (a fixed pure-Python loop and a
  tiny numpy call, as rates with their spread over a few repeats), the load (load average, CPU busy %, the
  busiest other processes) and, through NVML where present, each GPU (name, driver, utilisation, memory
  used, the processes on it). A sweep stores one at its start and one at its end in run["host_probe"].
- `GpuSampler`: in the cell's process, polls the GPU's utilisation in a background thread while the mode
  runs and emits one `gpu_util` event (mean, max, sample count).

Framework-free: psutil and numpy only; NVML (the optional `nvidia-ml-py` package, module `pynvml`) is
imported when used, and its absence is recorded as "NVML not available", never an error. Not a
benchmark of the host: the probe is a few hundred milliseconds, enough to tell hosts and loads apart."""
from __future__ import annotations

import datetime as dt
import os
import statistics
import threading
import time
from typing import Any, Callable

import numpy as np
import psutil

from ..hostrules import GPU_DEVICES_OFF, NVML_MISSING

# -- the calibration probe -----------------------------------------------------------------------------
REPEATS = 5              # repeats of each speed probe: the median is the figure, min-max its spread
LOOP_ITERATIONS = 200_000  # one repeat of the Python loop (~10-40 ms on current CPUs)
NUMPY_CALLS = 20_000     # one repeat of the tiny numpy call (~10-40 ms): numpy's per-call cost dominates
NUMPY_ELEMENTS = 256     # float64 elements per call: small enough that the call, not memory, is timed
LOAD_INTERVAL_S = 0.25   # CPU busy % and per-process CPU % are measured over this interval
TOP_PROCESSES = 5        # the busiest other processes recorded per snapshot

# -- per-cell GPU utilisation --------------------------------------------------------------------------
SAMPLE_INTERVAL_S = 0.05   # NVML's utilisation is the driver's average over its last sample period, 1/6 s
#                            to 1 s depending on the GPU (nvmlUtilization_t), so 50 ms reads every driver
#                            period at least 3 times while waking the sampler thread only 20 times a second
NVML_PERIOD_MAX_S = 1.0      # the longest sample period NVML documents (nvmlUtilization_t), assumed where the
#                              driver's own samples (nvmlDeviceGetSamples) do not show the period
# A read made at time t reports the driver's last finished period. Measured on an H100 (driver samples every
# 0.2 s; a matmul loop switched on and off): the value read at t described about [t - 0.29, t - 0.09] s, so a
# read describes (part of) [t - 1.5 P, t] for a period P. Only a read whose whole span [t - 1.5 P, t - 0.5 P]
# lies inside one timed window describes that window (GpuSampler.stop).
NVML_LAG_PERIODS = (1.5, 0.5)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# -- single-core CPU speed -----------------------------------------------------------------------------
def _python_loop(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def _rates(work: Callable[[], object], count: int, repeats: int) -> dict[str, Any]:
    """Run `work` `repeats` times; its rate in `count` per second: median, min, max, spread (max-min)/median."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        rates.append(count / max(time.perf_counter() - t0, 1e-9))
    med = statistics.median(rates)
    return {"rate": med, "low": min(rates), "high": max(rates), "spread": (max(rates) - min(rates)) / med,
            "repeats": repeats}


def cpu_speed(repeats: int = REPEATS) -> dict[str, Any]:
    """Single-core speed: a fixed pure-Python loop (iterations/s) and a tiny numpy call (calls/s), the two
    things a framework's per-op dispatch spends its host time on."""
    a, b = np.ones(NUMPY_ELEMENTS), np.ones(NUMPY_ELEMENTS)
    out = np.empty(NUMPY_ELEMENTS)

    def numpy_calls():
        for _ in range(NUMPY_CALLS):
            np.add(a, b, out=out)

    freq = psutil.cpu_freq() if hasattr(psutil, "cpu_freq") else None
    return {
        "python_loop": {**_rates(lambda: _python_loop(LOOP_ITERATIONS), LOOP_ITERATIONS, repeats),
                        "unit": "iterations/s"},
        "numpy_call": {**_rates(numpy_calls, NUMPY_CALLS, repeats), "unit": "calls/s",
                       "what": f"np.add of {NUMPY_ELEMENTS} float64 into a preallocated array"},
        "freq_mhz": round(freq.current) if freq else None,
    }


# -- load ----------------------------------------------------------------------------------------------
def load(interval: float = LOAD_INTERVAL_S, exclude: set[int] | None = None) -> dict[str, Any]:
    """Load average, CPU busy % over `interval` and the busiest other processes over the same interval.
    `exclude`: pids left out of the list (default: this process and its children)."""
    if exclude is None:
        exclude = _own_tree()
    procs = []
    for p in psutil.process_iter(["pid", "name"]):
        if p.info["pid"] in exclude:
            continue
        try:
            p.cpu_percent(None)  # first call: starts this process's interval
            procs.append(p)
        except psutil.Error:
            pass
    psutil.cpu_percent(None)
    time.sleep(interval)
    busy = psutil.cpu_percent(None)
    top = []
    for p in procs:
        try:
            top.append({"pid": p.info["pid"], "name": p.info["name"], "cpu_pct": round(p.cpu_percent(None), 1)})
        except psutil.Error:  # ended during the interval
            pass
    top = sorted((t for t in top if t["cpu_pct"] > 0), key=lambda t: -t["cpu_pct"])[:TOP_PROCESSES]
    try:
        load_avg = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):  # Windows
        load_avg = None
    return {"load_avg": load_avg, "cpu_busy_pct": round(busy, 1), "interval_s": interval,
            "cpu_count": psutil.cpu_count() or os.cpu_count(), "top_processes": top,
            "memory_available_gb": round(psutil.virtual_memory().available / 2**30, 1)}


# -- NVML ----------------------------------------------------------------------------------------------
class NvmlMissing(Exception):
    """No NVML here (package or driver missing); the message says which."""


def _nvml():
    """The pynvml module, initialised; raises NvmlMissing(why) where there is none or no driver."""
    try:
        import pynvml  # optional (nvidia-ml-py): only a GPU cell needs it, and it may be missing
    except ImportError:
        raise NvmlMissing(f"{NVML_MISSING} (pip install nvidia-ml-py)") from None
    try:
        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001 - pynvml.NVMLError: no driver, no GPU
        raise NvmlMissing(f"{NVML_MISSING} ({e})") from None
    return pynvml


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _process_name(nvml, pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:  # another container's pid: ask the driver
        try:
            return _text(nvml.nvmlSystemGetProcessName(pid))
        except Exception:  # noqa: BLE001
            return "?"


def _own_tree() -> set[int]:
    me = psutil.Process()
    return {me.pid} | {c.pid for c in me.children(recursive=True)}


def gpus(exclude: set[int] | None = None) -> dict[str, Any]:
    """Every GPU NVML sees: name, utilisation, memory used and the *other* processes on it (those NVML lists:
    from inside a container, other containers' processes may be missing; their utilisation still shows).
    `exclude`: pids left out (default: this process and its children: a sweep's own main process holds a
    CUDA context once a framework has looked at the device, ~0.5 GB on an H100, and is not another user)."""
    try:
        nvml = _nvml()
    except NvmlMissing as e:
        return {"available": False, "why": str(e)}
    exclude = _own_tree() if exclude is None else exclude
    try:
        out = {"available": True, "driver": _text(nvml.nvmlSystemGetDriverVersion()), "devices": []}
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            dev: dict[str, Any] = {"index": i, "name": _text(nvml.nvmlDeviceGetName(h))}
            try:
                u = nvml.nvmlDeviceGetUtilizationRates(h)
                dev.update(util_pct=u.gpu, mem_util_pct=u.memory)
            except Exception as e:  # noqa: BLE001 - e.g. MIG instances have no utilisation counter
                dev.update(util_pct=None, mem_util_pct=None, util_why=str(e))
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            dev.update(mem_used_mb=round(mem.used / 2**20), mem_total_mb=round(mem.total / 2**20))
            procs = []
            for p in _gpu_processes(nvml, h):
                if p.pid not in exclude:
                    used = getattr(p, "usedGpuMemory", None)
                    procs.append({"pid": p.pid, "name": _process_name(nvml, p.pid),
                                  "mem_mb": None if used is None else round(used / 2**20)})
            dev["processes"] = procs
            out["devices"].append(dev)
        return out
    except Exception as e:  # noqa: BLE001 - a driver error mid-way is recorded, not raised
        return {"available": False, "why": f"NVML error: {e}"}
    finally:
        _shutdown(nvml)


def _gpu_processes(nvml, handle) -> list:
    seen: dict[int, Any] = {}
    for get in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            for p in getattr(nvml, get)(handle):
                seen.setdefault(p.pid, p)
        except Exception:  # noqa: BLE001 - not supported on this GPU/driver
            pass
    return list(seen.values())


def _shutdown(nvml) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:  # noqa: BLE001
        pass


def probe(at: str) -> dict[str, Any]:
    """One snapshot of the host: load first (while nothing of ours runs), then CPU speed and the GPUs."""
    snap: dict[str, Any] = {"at": at, "time": now()}
    started = time.perf_counter()
    snap["load"] = load()
    snap["cpu_speed"] = cpu_speed()
    snap["gpu"] = gpus()
    snap["probe_s"] = round(time.perf_counter() - started, 3)
    return snap


# -- per-cell GPU utilisation --------------------------------------------------------------------------
def _driver_period(nvml, handle) -> float | None:
    """The driver's utilisation sample period in seconds: the median spacing of its buffered samples
    (nvmlDeviceGetSamples), or None where it keeps none or the call is not supported."""
    try:
        _, samples = nvml.nvmlDeviceGetSamples(handle, nvml.NVML_GPU_UTILIZATION_SAMPLES, 0)
        stamps = sorted(x.timeStamp for x in samples)  # microseconds
    except Exception:  # noqa: BLE001 - pynvml.NVMLError (not supported, no data yet), an older pynvml
        return None
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]) if b > a)
    return gaps[len(gaps) // 2] / 1e6 if gaps else None


def _visible_gpu(nvml):
    """(handle, label) of the GPU a framework's default device is: the first of CUDA_VISIBLE_DEVICES (an
    index, in NVML's PCI order, or a GPU-/MIG- UUID), else NVML's device 0."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if first.startswith(("GPU-", "MIG-")):
        h = nvml.nvmlDeviceGetHandleByUUID(first)
    else:
        h = nvml.nvmlDeviceGetHandleByIndex(int(first) if first.isdigit() else 0)
    return h, f"{first or 0}: {_text(nvml.nvmlDeviceGetName(h))}"


class GpuSampler:
    """GPU utilisation while a cell's mode runs: `s = GpuSampler(device, emit).start()`, run the mode, then
    `s.stop(measured.timed_spans)` (as the worker does). Used as a context manager it keeps every read.

    A background thread reads NVML's utilisation every SAMPLE_INTERVAL_S, with the time of each read; on
    exit, one `gpu_util` event (mean, max, samples, interval, which GPU; or `why` there is no figure) is
    emitted, whether the mode finished or raised. CPU devices are not sampled and emit nothing.

    The figure covers the timed windows only: the mode records their spans (`Measured.timed_spans`, in
    time.perf_counter's clock) and `stop(spans)` keeps the reads that describe a window alone. Building the
    model, the float64 references, warm-up and the checks between windows leave the GPU idle or differently
    busy, and counted in they made a device-bound matmul look host-bound (24% busy over its whole run). A
    read is the driver's average over its last finished sample period P (0.2 s on an H100, up to 1 s), and
    arrives late (NVML_LAG_PERIODS), so windows shorter than about 1.5 P hold no such read: then, as without
    spans (a mode that failed before timing), there is no figure, and `why` says so and what would give one."""

    def __init__(self, device: str, emit: Callable[..., None], interval: float = SAMPLE_INTERVAL_S):
        self.device, self.emit, self.interval = device, emit, interval
        self.samples: list[float] = []
        self.times: list[float] = []       # time.perf_counter() of each read
        self.period = NVML_PERIOD_MAX_S    # the driver's sample period, once start() has asked it
        self.gpu: str | None = None
        self.why = ""
        self._nvml = None
        self._handle = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.device not in GPU_DEVICES_OFF

    def start(self) -> "GpuSampler":
        if not self.active:
            return self
        try:
            self._nvml = _nvml()
            self._handle, self.gpu = _visible_gpu(self._nvml)
            self.sample()  # fails here, not silently in the thread, where the GPU has no counter
            self.period = _driver_period(self._nvml, self._handle) or NVML_PERIOD_MAX_S
        except NvmlMissing as e:
            self.why = str(e)
            return self
        except Exception as e:  # noqa: BLE001 - pynvml.NVMLError
            self.why = f"NVML error: {e}"
            return self
        self._thread = threading.Thread(target=self._run, name="gpu-util-sampler", daemon=True)
        self._thread.start()
        return self

    def sample(self) -> None:
        value = float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
        self.times.append(time.perf_counter())
        self.samples.append(value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception as e:  # noqa: BLE001 - keep what was sampled, say why it stopped
                self.why = f"sampling stopped: {e}"
                return

    def stop(self, spans: list[tuple[float, float]] | None = None) -> dict[str, Any] | None:
        """Stop sampling and emit the one event over the reads inside `spans` (None and no event for a CPU
        device). `spans=None` keeps every read (a caller that has no windows, e.g. a test)."""
        if not self.active:
            return None
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._nvml is not None:
            _shutdown(self._nvml)
        s, why = self.samples, self.why
        if spans is not None and s:
            early, late = (k * self.period for k in NVML_LAG_PERIODS)
            s = [v for t, v in zip(self.times, self.samples) if any(a + early <= t <= b + late for a, b in spans)]
            if not s and not spans:
                why = why or "no timed window (the mode stopped before timing)"
            elif not s:
                longest = max(b - a for a, b in spans)
                why = why or (f"no read describes a timed window alone: NVML reports {self.period:.2g} s periods, "
                              f"late, and the longest window was {longest:.2g} s (>= {early - late:.2g} s needed; "
                              f"raise --duration)")
        event = {"mean": statistics.fmean(s) if s else None, "max": max(s) if s else None, "samples": len(s),
                 "interval_s": self.interval, "period_s": self.period, "gpu": self.gpu, "why": why}
        self.emit("gpu_util", **event)
        return event

    def __enter__(self) -> "GpuSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- the devices of a replicas cell --------------------------------------------------------------------
# How two GPUs reach each other, as NVML's common ancestor says (nvmlDeviceGetTopologyCommonAncestor's
# levels, by their value, so that no constant of pynvml is needed to read them); NVLink where the driver
# reports peer-to-peer over it (nvmlDeviceGetP2PStatus), which the ancestor alone does not show.
TOPOLOGY_LEVELS = {0: "same board", 10: "one PCIe switch", 20: "several PCIe switches", 30: "one PCIe host bridge",
                   40: "one NUMA node (across host bridges)", 50: "across NUMA nodes (SMP interconnect)"}
NVLINK = "NVLink"
LINK_UNKNOWN = "unknown"


def device_topology(pins: list, device: str) -> dict[str, Any]:
    """{device_names, device_link} of a replicas cell: each replica's device (its procs.Pin), and how they are
    linked. GPUs (Pin.visible: NVML's index, the CUDA_VISIBLE_DEVICES entry in PCI order, or a UUID) named and
    linked by NVML where it is present: the link of every pair, each distinct one once ("NVLink", "one PCIe
    host bridge"); one device: "one device". A cpu replica is named by its cores; their link, and any NVML
    failure, is LINK_UNKNOWN."""
    if device in GPU_DEVICES_OFF:
        return {"device_names": [f"{device} cores {','.join(map(str, p.cores))}" for p in pins],
                "device_link": LINK_UNKNOWN}
    indices = [p.index if p.visible is None else p.visible for p in pins]
    names = [f"{device}:{i}" for i in indices]
    try:
        nvml = _nvml()
    except NvmlMissing:
        return {"device_names": names, "device_link": LINK_UNKNOWN}
    try:
        handles = [nvml.nvmlDeviceGetHandleByUUID(i) if str(i).startswith(("GPU-", "MIG-"))
                   else nvml.nvmlDeviceGetHandleByIndex(int(i)) for i in indices]
        names = [f"{i}: {_text(nvml.nvmlDeviceGetName(h))}" for i, h in zip(indices, handles)]
        links = [_link(nvml, a, b) for n, a in enumerate(handles) for b in handles[n + 1:]]
        return {"device_names": names, "device_link": "; ".join(dict.fromkeys(links)) or "one device"}
    except Exception as e:  # noqa: BLE001 - pynvml.NVMLError: a device NVML does not know, a call not supported
        return {"device_names": names, "device_link": f"{LINK_UNKNOWN} (NVML: {e})"}
    finally:
        _shutdown(nvml)


def _link(nvml, a, b) -> str:
    try:
        if nvml.nvmlDeviceGetP2PStatus(a, b, nvml.NVML_P2P_CAPS_INDEX_NVLINK) == nvml.NVML_P2P_STATUS_OK:
            return NVLINK
    except Exception:  # noqa: BLE001 - not supported by this driver or pynvml
        pass
    level = int(nvml.nvmlDeviceGetTopologyCommonAncestor(a, b))
    return TOPOLOGY_LEVELS.get(level, f"NVML topology level {level}")
