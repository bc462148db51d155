"""Host calibration and load (compare.measure.host, compare.render.hostinfo): the launch-rate probe, NVML
and psutil read through fakes, the per-cell GPU sampler and its one event through the real worker, the
host-bound/device-bound labels, busy warnings and the hosts-differ note. Nothing here depends on speed."""
from __future__ import annotations

import json
import sys
import threading
import time
import types
from types import SimpleNamespace

import numpy as np
import pytest

import synthetic_runs as S
import workloads
from compare import hostrules
from compare import results as R
from compare.cells import Cell, CellResult, Trial
from compare.measure import host as H
from compare.measure import schedule
from compare.measure import plan as P
from compare.measure import runner, worker
from compare.render import diff as D
from compare.render import hostinfo, report

WAIT_S = 30.0  # generous: the sampler thread only has to get scheduled a few times, on a loaded machine


# -- fakes -----------------------------------------------------------------------------------------------
class FakeNvml(types.ModuleType):
    """What compare.measure.host calls of pynvml, with set values. util: the utilisation readings in turn
    (the last one repeats)."""

    NVML_GPU_UTILIZATION_SAMPLES = 1

    def __init__(self, util=(40,), procs=(), fail_util=False, period=None):
        super().__init__("pynvml")
        self.util, self.procs, self.fail_util, self.period = list(util), list(procs), fail_util, period
        self.reads = 0
        self.inits = self.shutdowns = 0
        self.by_uuid: list[str] = []

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.by_uuid.append(uuid)
        return ("handle", 0)

    def nvmlDeviceGetName(self, h):
        return "Fake H100"

    def nvmlDeviceGetUtilizationRates(self, h):
        if self.fail_util:
            raise RuntimeError("Not Supported")
        value = self.util[min(self.reads, len(self.util) - 1)]
        self.reads += 1
        return SimpleNamespace(gpu=value, memory=value // 2)

    def nvmlDeviceGetSamples(self, h, kind, since):
        """The driver's buffered samples, `period` seconds apart (microsecond stamps); none: not supported."""
        if self.period is None:
            raise RuntimeError("Not Supported")
        return 0, [SimpleNamespace(timeStamp=int(i * self.period * 1e6), sampleValue=None) for i in range(10)]

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=3 * 2**30, total=80 * 2**30)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=p, usedGpuMemory=2**30) for p in self.procs]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return [SimpleNamespace(pid=p, usedGpuMemory=None) for p in self.procs]  # same pids: listed once

    def nvmlSystemGetProcessName(self, pid):
        return b"other-container-job"


@pytest.fixture
def nvml(monkeypatch):
    def install(**kw):
        fake = FakeNvml(**kw)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake
    return install


def no_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError


class Emitted:
    def __init__(self):
        self.events = []

    def __call__(self, event, **data):
        self.events.append((event, data))


# -- the launch probe ------------------------------------------------------------------------------------
def test_launch_probe_is_a_verified_tiny_op_with_a_float64_reference():
    spec = workloads.make("launch")
    assert "launch" in workloads.PROBES and "launch" not in workloads.WORKLOADS
    params, x = spec.init_weights(0), spec.make_input(0)
    expected = np.array([[sum(float(x[0, j]) * float(params["w"][i, j]) for j in range(8)) for i in range(8)]])
    ref = spec.reference(params, x)
    assert ref.dtype == np.float64 and ref.shape == (1, 8)
    np.testing.assert_allclose(ref, expected, rtol=1e-12)
    assert spec.flops() == 2 * 8 * 8


def test_launch_probe_runs_through_the_numpy_and_torch_backends():
    from backends.parity import ParityCase, check_parity
    assert check_parity(ParityCase("numpy", "cpu", "float64", "launch")) < 1e-12
    pytest.importorskip("torch")
    assert check_parity(ParityCase("torch", "cpu", "float32", "launch")) < 1e-5


class FakeGpuBackend:
    name, devices, dtypes, fp32_precisions = "fakegpu", ("cuda", "cpu"), ("float32",), ("highest",)

    def device_status(self):
        return {"cuda": None, "cpu": None}

    def default_device(self):
        return "cuda"


@pytest.mark.parametrize("device, launches", [("cuda", 1), ("cpu", 0)])
def test_the_launch_probe_is_planned_beside_the_matmul_probe_on_accelerators_only(monkeypatch, device, launches):
    monkeypatch.setattr(P.backends, "load", lambda name: FakeGpuBackend())
    s = P.Settings(backends=("fakegpu",), workloads=("mlp",), modes=("sequential",), threads=(1,),
                   dtypes=("float32",), device=device, knobs=(("batch", 16),))
    cells, _ = P.plan(s)
    launch = [c for c in cells if c.workload == "launch"]
    assert len(launch) == launches
    if launches:
        matmul = next(c for c in cells if c.workload == "matmul")
        assert cells.index(launch[0]) == cells.index(matmul) + 1  # beside it, before the workloads
        assert launch[0].mode == "sequential" and launch[0].knobs == ()  # --size never resizes the probe


# -- the snapshot: load, CPU speed, GPUs -----------------------------------------------------------------
class FakeProc:
    def __init__(self, pid, name, pct):
        self.info, self.pct = {"pid": pid, "name": name}, pct

    def cpu_percent(self, interval):
        return self.pct


def test_load_lists_the_busiest_other_processes_and_leaves_out_our_own(monkeypatch):
    procs = [FakeProc(1, "idle", 0.0), FakeProc(2, "hog", 95.0), FakeProc(3, "ours", 99.0),
             FakeProc(4, "build", 40.0)] + [FakeProc(10 + i, f"p{i}", 1.0 + i) for i in range(6)]
    monkeypatch.setattr(H.psutil, "process_iter", lambda attrs: iter(procs))
    monkeypatch.setattr(H.psutil, "cpu_percent", lambda interval=None: 62.5)
    monkeypatch.setattr(H.os, "getloadavg", lambda: (1.234, 0.5, 0.25))
    monkeypatch.setattr(H.time, "sleep", lambda s: None)
    got = H.load(exclude={3})
    assert [t["name"] for t in got["top_processes"]] == ["hog", "build", "p5", "p4", "p3"]  # TOP_PROCESSES, no 0%
    assert got["cpu_busy_pct"] == 62.5 and got["load_avg"] == [1.23, 0.5, 0.25]


def test_cpu_speed_reports_rates_with_their_spread():
    got = H.cpu_speed(repeats=3)
    for name in ("python_loop", "numpy_call"):
        r = got[name]
        assert r["repeats"] == 3 and 0 < r["low"] <= r["rate"] <= r["high"]
        assert r["spread"] == pytest.approx((r["high"] - r["low"]) / r["rate"])


def test_gpu_snapshot_through_nvml_names_the_gpu_its_load_and_the_other_processes(nvml):
    fake = nvml(util=(37,), procs=(4242,))
    got = H.gpus(exclude=set())
    assert got["available"] and got["driver"] == "550.54.15"
    (dev,) = got["devices"]
    assert (dev["name"], dev["util_pct"], dev["mem_util_pct"], dev["mem_used_mb"], dev["mem_total_mb"]) == \
        ("Fake H100", 37, 18, 3072, 81920)
    assert [p["pid"] for p in dev["processes"]] == [4242] and dev["processes"][0]["mem_mb"] == 1024
    assert fake.inits == fake.shutdowns == 1


def test_gpu_snapshot_leaves_out_this_process_and_its_children(nvml):
    """The sweep's own main process holds a CUDA context: it is not another process on the GPU."""
    import os
    nvml(procs=(os.getpid(), 4242))
    (dev,) = H.gpus()["devices"]
    assert [p["pid"] for p in dev["processes"]] == [4242]


def test_without_nvml_the_snapshot_says_so_and_does_not_raise(monkeypatch):
    no_nvml(monkeypatch)
    got = H.gpus()
    assert got == {"available": False, "why": "NVML not available (pip install nvidia-ml-py)"}


def test_a_probe_records_speed_load_and_gpus_in_one_snapshot(monkeypatch, nvml):
    nvml()
    monkeypatch.setattr(H, "load", lambda: {"load_avg": [0.1, 0.1, 0.1], "cpu_busy_pct": 3.0,
                                             "cpu_count": 2, "top_processes": []})
    snap = H.probe("start")
    assert snap["at"] == "start" and set(snap) >= {"time", "load", "cpu_speed", "gpu", "probe_s"}
    assert snap["gpu"]["devices"][0]["name"] == "Fake H100"


# -- the per-cell sampler --------------------------------------------------------------------------------
def wait_for(predicate, what):
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_sampler_samples_until_stopped_and_emits_one_event_with_mean_and_max(nvml):
    fake = nvml(util=(10, 30, 90, 50))
    emit = Emitted()
    sampler = H.GpuSampler("cuda", emit, interval=0.001).start()
    wait_for(lambda: len(sampler.samples) >= 5, "5 samples")
    event = sampler.stop()
    assert not sampler._thread.is_alive()
    n = len(sampler.samples)
    time.sleep(0.05)
    assert len(sampler.samples) == n == fake.reads  # nothing sampled after stop
    assert emit.events == [("gpu_util", event)]
    assert event["samples"] == n and event["max"] == 90
    assert event["mean"] == pytest.approx(float(np.mean(sampler.samples)))
    assert event["gpu"] == "0: Fake H100" and event["why"] == ""
    assert fake.inits == fake.shutdowns == 1


def test_sampler_emits_its_event_when_the_mode_raises(nvml):
    nvml(util=(70,))
    emit = Emitted()
    with pytest.raises(ValueError):
        with H.GpuSampler("cuda", emit, interval=0.001):
            raise ValueError("the mode failed")
    assert [e for e, _ in emit.events] == ["gpu_util"] and emit.events[0][1]["max"] == 70


def test_sampler_on_a_cpu_cell_never_touches_nvml_and_emits_nothing(monkeypatch):
    no_nvml(monkeypatch)
    emit = Emitted()
    with H.GpuSampler("cpu", emit):
        pass
    assert emit.events == []


@pytest.mark.parametrize("setup, why", [
    (lambda mp, nvml: no_nvml(mp), "NVML not available"),
    (lambda mp, nvml: nvml(fail_util=True), "NVML error: Not Supported"),
])
def test_sampler_without_a_figure_says_why(monkeypatch, nvml, setup, why):
    setup(monkeypatch, nvml)
    emit = Emitted()
    with H.GpuSampler("cuda", emit):
        pass
    (event, data), = emit.events
    assert data["mean"] is None and data["samples"] == 0 and data["why"].startswith(why)


def test_sampler_keeps_only_the_reads_that_describe_a_timed_window_alone():
    """NVML's period P = 0.2 s: a read at t describes about [t - 1.5 P, t - 0.5 P], so a window [a, b] is
    described by the reads from a + 0.3 to b + 0.1 (measured on an H100: NVML_LAG_PERIODS)."""
    emit = Emitted()
    sampler = H.GpuSampler("cuda", emit)  # not started: the reads are set by hand
    sampler.period = 0.2
    sampler.times = [1.0, 1.2, 1.35, 1.8, 2.05, 2.2, 3.0, 3.4]
    sampler.samples = [0.0, 20.0, 90.0, 100.0, 80.0, 30.0, 0.0, 70.0]
    event = sampler.stop(spans=[(1.0, 1.95), (3.0, 3.3)])
    # 1.0 and 1.2: too early, still the period before the window; 1.35, 1.8, 2.05: inside [1.3, 2.05];
    # 2.2: after; 3.4: inside [3.3, 3.4], the second window's only read
    assert event["samples"] == 4 and event["mean"] == pytest.approx(85.0) and event["max"] == 100.0
    assert event["why"] == "" and event["period_s"] == 0.2


@pytest.mark.parametrize("spans, why", [([(10.0, 11.0)], "no read describes a timed window alone"),
                                        ([(1.0, 1.15)], "no read describes a timed window alone"),
                                        ([], "no timed window")])
def test_sampler_with_no_read_of_a_timed_window_has_no_figure_and_says_why(spans, why):
    sampler = H.GpuSampler("cuda", Emitted())
    sampler.period = 0.2
    sampler.times, sampler.samples = [1.0, 1.2, 1.3], [50.0, 60.0, 70.0]
    event = sampler.stop(spans=spans)
    assert event["mean"] is None and event["max"] is None and event["samples"] == 0 and event["why"].startswith(why)


@pytest.mark.parametrize("period, expected", [(0.2, 0.2), (1 / 6, 1 / 6), (None, H.NVML_PERIOD_MAX_S)])
def test_sampler_takes_the_period_from_the_drivers_samples_else_the_longest(nvml, period, expected):
    nvml(period=period)
    sampler = H.GpuSampler("cuda", Emitted()).start()
    sampler.stop()
    assert sampler.period == pytest.approx(expected, abs=1e-5)  # the driver stamps microseconds


def test_the_worker_averages_gpu_utilisation_over_the_timed_windows_only(monkeypatch, nvml, tmp_path):
    """The fake GPU is busy (100%) exactly while a thread is inside a window's timed loop and idle (0%) while
    the worker builds, makes references, plans windows and checks: the cell's figure must be 100. Counting
    the whole run (the bug this guards against) takes in at least the read made before the build, 0%."""
    fake = nvml(period=0.01)  # a driver that averages over 10 ms: 0.2 s windows hold reads of their own
    busy = threading.Event()
    # as a driver does, a read just after a loop still reports it: the sampler keeps reads up to half a period
    # (NVML_LAG_PERIODS) past a window's end, so an instant fake made one such read 0% (a loaded machine's flake)
    lag = SimpleNamespace(s=H.NVML_LAG_PERIODS[1] * 0.01, ended=float("-inf"))
    fake.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(
        gpu=100 if busy.is_set() or time.perf_counter() - lag.ended <= lag.s else 0, memory=0)
    loop = schedule.timed_loop

    def timed_loop(*args):
        busy.set()
        try:
            return loop(*args)
        finally:
            lag.ended = time.perf_counter()
            busy.clear()
    monkeypatch.setattr(schedule, "timed_loop", timed_loop)
    monkeypatch.setattr(H, "GPU_DEVICES_OFF", set())
    cell = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="sequential",
                duration=0.2, trials=3, warmup=1, verify_ops=1)
    events_path = tmp_path / "events.jsonl"
    worker.run_cell(cell, worker.Events(str(events_path)), tmp_path)
    (util,) = [e for e in map(json.loads, events_path.read_text().splitlines()) if e["event"] == "gpu_util"]
    assert util["samples"] >= 1 and util["mean"] == 100 and util["why"] == "", util


def test_sampler_watches_the_first_visible_gpu(monkeypatch, nvml):
    fake = nvml()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1234-abcd,GPU-5678")
    H.GpuSampler("cuda", Emitted()).start().stop()
    assert fake.by_uuid == ["GPU-1234-abcd"]


def test_the_worker_emits_one_gpu_util_event_the_runner_and_rows_carry(monkeypatch, nvml, tmp_path):
    """Through the real worker (numpy backend, sampled as if it were a GPU) and the runner's collection."""
    nvml(util=(20, 60), period=0.01)
    monkeypatch.setattr(H, "GPU_DEVICES_OFF", set())
    cell = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="sequential",
                duration=0.2, trials=3, warmup=1, verify_ops=1)
    events_path = tmp_path / "events.jsonl"
    worker.run_cell(cell, worker.Events(str(events_path)), tmp_path)
    kinds = [json.loads(line)["event"] for line in events_path.read_text().splitlines()]
    assert kinds.count("gpu_util") == 1 and kinds.index("gpu_util") < kinds.index("status")
    result = runner._result(cell, list(map(json.loads, events_path.read_text().splitlines())))
    assert result.status == "ok" and result.gpu_util_max == 60 and 20 <= result.gpu_util_mean <= 60
    run = S.run([])
    R.add_result(run, result)
    assert {r["gpu_util_max"] for r in run["rows"]} == {60}


# -- what limited a cell ---------------------------------------------------------------------------------
@pytest.mark.parametrize("device, util, fwd, launch, label", [
    ("cpu", 99.0, 10.0, 100.0, "cpu"),
    ("cuda", 30.0, None, None, "host-bound"),          # GPU idle most of the time
    ("cuda", 95.0, 90.0, 100.0, "device-bound"),        # utilisation decides where it is measured
    ("cuda", 70.0, 10.0, 100.0, "mixed"),
    ("cuda", 70.0, 60.0, 100.0, "host-bound"),          # between the thresholds, near the launch rate
    ("cuda", None, 60.0, 100.0, "host-bound"),          # no NVML: the launch rate alone
    ("cuda", None, 20.0, 100.0, None),
    ("cuda", None, None, None, None),
])
def test_bound_labels_follow_the_named_thresholds(device, util, fwd, launch, label):
    got, why = hostrules.bound(device, util, fwd, launch)
    assert got == label and why


def gpu_result(workload, mode, ops, util=None, k=1, dtype="bfloat16", status="ok"):
    c = Cell(backend="torch", device="cuda", dtype=dtype, workload=workload, mode=mode, k=k, trials=3)
    r = CellResult(cell=c, status=status, trials=[Trial(ops=int(ops), seconds=1.0) for _ in range(3)],
                   env={"device_name": "Fake H100"})
    r.gpu_util_mean = util
    return r


def test_cells_are_labelled_from_utilisation_or_their_forwards_against_the_launch_rate():
    run = S.run([gpu_result("launch", "sequential", 10_000), gpu_result("mlp", "sequential", 6_000),
                 gpu_result("mlp", "offline", 40_000, k=8),  # 5,000 forwards/s: half the launch rate
                 gpu_result("mlp", "offline", 30_000, k=64),  # 469 forwards/s
                 gpu_result("transformer", "sequential", 400, util=97.0)])
    labels = {k[3] + " " + k[5] + f" k={k[7]}": v[0] for k, v in hostinfo.bound_labels(run["rows"]).items()}
    assert labels == {"mlp sequential k=1": "host-bound", "mlp offline k=8": "host-bound",
                      "mlp offline k=64": None, "transformer sequential k=1": "device-bound"}
    assert hostinfo.launch_rates(run["rows"]) == {("torch", "cuda", "bfloat16", "highest"): 10_000}


def test_a_cell_with_a_time_split_gets_its_verdict_not_an_nvml_label():
    split = gpu_result("transformer", "sequential", 400, util=97.0)
    split.trials = [Trial(ops=400, seconds=1.0, call_ms=0.1, sync_ms=2.4, cpu_ms=0.1) for _ in range(3)]
    run = S.run([split, gpu_result("mlp", "sequential", 6_000, util=20.0)])
    assert [k[3] for k in hostinfo.bound_labels(run["rows"])] == ["mlp"]


def test_a_failed_launch_probe_gives_no_rate():
    run = S.run([gpu_result("launch", "sequential", 10_000, status="wrong")])
    assert hostinfo.launch_rates(run["rows"]) == {}


# -- busy warnings and hosts that differ ------------------------------------------------------------------
def snapshot(at, load_avg=0.1, busy=5.0, cpus=4, loop=5e6, numpy_rate=1e6, gpu_util=0, gpu_procs=()):
    rate = lambda v: {"rate": v, "low": v, "high": v, "spread": 0.0, "repeats": 5}  # noqa: E731
    return {"at": at, "time": "2026-01-02T03:04:05+00:00", "probe_s": 0.5,
            "load": {"load_avg": [load_avg, 0.1, 0.1], "cpu_busy_pct": busy, "interval_s": 0.25, "cpu_count": cpus,
                     "top_processes": [{"pid": 7, "name": "hog", "cpu_pct": busy}] if busy > 1 else []},
            "cpu_speed": {"python_loop": {**rate(loop), "unit": "iterations/s"},
                          "numpy_call": {**rate(numpy_rate), "unit": "calls/s"}, "freq_mhz": 2400},
            "gpu": {"available": True, "driver": "550", "devices": [
                {"index": 0, "name": "Fake H100", "util_pct": gpu_util, "mem_util_pct": 0, "mem_used_mb": 10,
                 "mem_total_mb": 81920, "processes": [{"pid": p, "name": "job", "mem_mb": 100} for p in gpu_procs]}]}}


def probed(start=None, end=None, results=(), **kw):
    run = S.run(list(results), **kw)
    run["host_probe"] = [start or snapshot("start"), end or snapshot("end")]
    return run


def test_an_idle_machine_gets_no_busy_warning():
    assert hostinfo.busy_warnings(probed()) == []
    assert hostinfo.busy_warnings(S.run([])) == []  # a run without probes: nothing to say


@pytest.mark.parametrize("start, end, expected", [
    (snapshot("start", load_avg=2.5), None, ["busy machine at start: 1-minute load average 2.50 on 4 CPUs"]),
    (snapshot("start", load_avg=1.9), None, []),                        # below half the CPUs
    (snapshot("start", load_avg=2.5, busy=0.0), snapshot("end", busy=2.0),   # the load is the minute before
     ["busy minute before the start: 1-minute load average 2.50 on 4 CPUs (above 0.5 per CPU), yet the CPU "
      "was 0% busy at start and 2% busy at end while threadbench was idle"]),
    (None, snapshot("end", load_avg=9.0), []),                          # the end's average holds our own cells
    (None, snapshot("end", busy=40.0), ["busy machine at end: CPU 40% busy while threadbench was idle"]),
    (snapshot("start", gpu_procs=(99,)), None, ["busy GPU 0 at start: other processes on it: job (pid 99"]),
    (None, snapshot("end", gpu_util=35), ["busy GPU 0 at end: 35% utilisation with no threadbench work"]),
])
def test_busy_warnings_name_what_was_busy_and_when(start, end, expected):
    got = hostinfo.busy_warnings(probed(start, end))
    assert len(got) == len(expected) and all(g.startswith(e) for g, e in zip(got, expected)), got


def test_report_and_publish_show_the_probe_the_launch_rate_and_the_busy_warning():
    run = probed(snapshot("start", load_avg=3.0), results=[gpu_result("launch", "sequential", 12_000)])
    text = "\n".join(report.environment_lines(run))
    assert "Python loop 5M → 5M iterations/s" in text and "tiny numpy call 1M → 1M calls/s" in text
    assert "GPU 0 Fake H100 (driver 550): busy 0% → 0%" in text
    assert "launch rate (one tiny op + synchronise, ops/s): torch/cuda/bfloat16 12k" in text
    assert [k for k, w in report.warning_lines(run) if w.startswith("busy machine at start")] == ["host"]


def test_a_merged_sweep_shows_the_probe_range_over_every_shard():
    run = probed()
    assert "over all" not in "\n".join(hostinfo.calibration_lines(run))   # one run: its start and end say it all
    run["host_probe"] = [snapshot("start", loop=8e6), snapshot("end", loop=16e6), snapshot("start", loop=7e6),
                         snapshot("end", loop=9e6)]
    (line,) = hostinfo.calibration_lines(run)
    assert "Python loop 8M → 9M iterations/s" in line and line.endswith("over all 4 probes (each shard's start "
                                                                          "and end) Python loop 7M–16M")


def two_hosts(**b):
    base = [gpu_result("launch", "sequential", 10_000), gpu_result("mlp", "sequential", 5_000)]
    a = probed(results=base, host_name="box")
    other = dict(loop=b.pop("loop", 5e6), numpy_rate=b.pop("numpy_rate", 1e6))
    launch = b.pop("launch", 10_000)
    bb = probed(snapshot("start", **other), snapshot("end", **other), host_name="box",
                results=[gpu_result("launch", "sequential", launch), gpu_result("mlp", "sequential", 5_000)])
    bb["host"].update(b)
    return a, bb


@pytest.mark.parametrize("change, says", [
    ({}, None),
    ({"loop": 5.5e6, "launch": 11_000}, None),                    # 10% apart: within HOST_DIFFERS
    ({"cpu": "Other CPU 1"}, "CPU Test CPU 9000 vs Other CPU 1"),
    ({"loop": 6e6}, "Python loop 5M vs 6M/s (+20%)"),           # just past HOST_DIFFERS
    ({"loop": 3e6}, "Python loop 5M vs 3M/s (-40%)"),
    ({"numpy_rate": 1.3e6}, "tiny numpy call 1M vs 1.3M/s (+30%)"),
    ({"launch": 20_000}, "launch torch/cuda/bfloat16 10k vs 20k/s (+100%)"),
])
def test_diff_notes_when_the_hosts_differ(change, says):
    a, b = two_hosts(**change)
    notes = [n for n in D.compare_runs(a, b).notes if n.startswith("the hosts differ")]
    if says is None:
        assert notes == []
    else:
        assert len(notes) == 1 and says in notes[0], notes


def test_a_busy_run_is_named_as_a_possible_cause_of_a_speed_difference():
    a, b = two_hosts(loop=3e6)
    b["host_probe"][0]["load"]["cpu_busy_pct"] = 90.0
    (note,) = hostinfo.host_differences(a, b)
    assert "B ran on a busy machine, so the load may explain a speed difference" in note
    assert "busy machine" not in hostinfo.host_differences(*two_hosts(loop=3e6))[0]


def test_a_different_gpu_is_a_different_host():
    a, b = two_hosts()
    b["host_probe"][0]["gpu"]["devices"][0]["name"] = "Fake A100"
    (note,) = hostinfo.host_differences(a, b)
    assert "GPU Fake H100 vs Fake A100" in note


def test_runs_keep_the_probe_when_saved_and_loaded(tmp_path):
    run = probed()
    path = R.save(run, tmp_path / "run.json")
    assert R.load(path)["host_probe"] == run["host_probe"]


def test_a_file_written_before_the_gpu_util_fields_reads_them_as_not_recorded(tmp_path):
    run = S.run([S.result(S.cell(), [100.0] * 5)])
    run["schema"] = "threadbench.run/1"   # the fields came with schema /2
    for r in run["rows"]:
        del r["gpu_util_mean"], r["gpu_util_max"], r["repeat"]
    loaded = R.load(R.save(run, tmp_path / "old.json"))
    assert {(r["gpu_util_mean"], r["gpu_util_max"]) for r in loaded["rows"]} == {(None, None)}
