"""Where each request's time goes (issue 22): the timed loop's split and its sampling, a window's pooling,
and the verdicts of backends whose split is known (tests/split_plugin: a GIL-holding loop, a sleep that
releases it, a stand-in device of fixed service time), through real cells.

The unit tests run on fake clocks, so every figure is exact. The known answers run real threads on the real
clock: in-process for the device stand-in (its figures come from its own schedule, so they are exact on any
machine), and end to end through `compare` for all three, where the verdicts are what the split says. On a
machine whose cores other work keeps busy, a thread waiting for the GIL is runnable much of the time too
(its timed waits expire and it queues for a core), so there the split honestly says core-bound; the test
accepts that only where the cell itself recorded other processes holding at least OTHER_LOAD cores."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import workloads
from compare import results as R
from compare import stats
from compare.cells import Cell, CellResult
from compare.measure import schedule, split
from compare.measure.build import build_model, make_harness
from compare.measure.clocks import SimClock
from compare.measure.registry import run_mode
from compare.render import analysis
from compare.render import findings as FD
from compare.render import format

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = Path(__file__).resolve().parent / "split_plugin"
TINY = (("hidden", 32), ("out", 16), ("width", 32))   # the model's own compute is noise beside the known costs
OTHER_LOAD = 0.5   # cores other processes kept busy during a cell, beyond which GIL waits show as core waits


# -- the loop, on fake clocks ---------------------------------------------------------------------------
class FakeCpu:
    """A thread CPU clock that advances by `per_read` seconds at every read (and by what the op burns)."""

    def __init__(self, per_read: float = 0.0):
        self.t, self.per_read = 0.0, per_read

    def __call__(self) -> float:
        self.t += self.per_read
        return self.t


def test_the_loop_splits_every_op_and_samples_every_strides_op():
    """Ops of call 3 s + synchronise 1 s on a simulated clock; the call burns 2 s of CPU, synchronise 0.5."""
    clock, cpu = SimClock(), FakeCpu()

    def call(x):
        clock.t += 3.0
        cpu.t += 2.0
        return x

    def sync(y):
        clock.t += 1.0
        cpu.t += 0.5

    lap = split.Lap()
    first, last = schedule.timed_loop(call, sync, "x", deadline=40.0, lap=lap, clock=clock.now, cpu=cpu, every=4)
    assert (first, last) == ("x", "x") and len(lap.ends) == 10   # ops start at 0, 4, ..., 36 s
    assert [m - s for s, m in zip(lap.starts, lap.mids)] == [3.0] * 10
    assert [e - m for m, e in zip(lap.mids, lap.ends)] == [1.0] * 10
    assert lap.samples == [(2.0, 0.5, None)] * 2, "ops 3 and 7 (the first halfway into a stride) are sampled"
    lap, clock.t = split.Lap(), 0.0
    schedule.timed_loop(call, sync, "x", deadline=40.0, lap=lap, clock=clock.now, cpu=cpu, every=1)
    assert len(lap.samples) == len(lap.ends) == 10, "a stride of 1 samples every op"


def test_on_a_synchronous_device_the_call_is_the_whole_op_and_nothing_is_read_between():
    """Backend.synchronous_on: no synchronise to call, no clock read after the call; the call's end is the op's
    end (every op's call time is its whole time, its synchronise 0) and a sampled op's synchronise CPU is 0."""
    clock, cpu, reads = SimClock(), FakeCpu(), []

    def now():
        reads.append(clock.t)
        return clock.now()

    def call(x):
        clock.t += 3.0
        cpu.t += 2.0
        return x

    lap = split.Lap()
    first, last = schedule.timed_loop(call, None, "x", deadline=30.0, lap=lap, clock=now, cpu=cpu, every=4)
    assert (first, last) == ("x", "x") and len(lap.ends) == len(lap.starts) == 10   # ops start at 0, 3, ..., 27 s
    assert [m - s for s, m in zip(lap.starts, lap.mids)] == [3.0] * 10
    assert [e - m for m, e in zip(lap.mids, lap.ends)] == [0.0] * 10
    assert len(reads) == 2 * 10 + 1, "per op its start and its end, sampled or not; then the deadline's"
    assert lap.samples == [(2.0, 0.0, None)] * 2
    (rec,) = [split.pool([lap])]
    assert rec["sync_ms"] == 0.0 and rec["call_ms"] == pytest.approx(3e3), rec


def test_a_device_is_synchronous_only_where_the_synchronize_that_runs_declared_it():
    from backends.mlx_backend import MlxBackend
    from backends.numpy_backend import NumpyBackend
    from backends.torch_backend import TorchBackend

    class Waits(NumpyBackend):        # overrides synchronize: its parent's word no longer holds
        def synchronize(self, out, device):
            time.sleep(0)

    class WaitsNot(Waits):            # says it again beside its own synchronize
        synchronous_on = ("cpu",)

    assert TorchBackend.is_synchronous("cpu") and not TorchBackend.is_synchronous("cuda")
    assert NumpyBackend.is_synchronous("cpu") and not MlxBackend.is_synchronous("cpu")   # MLX evaluates there
    assert not Waits.is_synchronous("cpu") and WaitsNot.is_synchronous("cpu")
    module = plugin_module()   # the stand-in device waits in its synchronize; the sleeper sleeps in its forward
    assert not module.DeviceBackend.is_synchronous("cpu") and module.SleepBackend.is_synchronous("cpu")


def test_the_loop_marks_the_call_on_sampled_ops_with_the_device_timer():
    calls = []

    class Timer:
        def start(self):
            calls.append("start")
            return len(calls)

        def stop(self, mark):
            calls.append(("stop", mark))

        def elapsed(self, mark):
            return mark / 10

    def call(x):
        calls.append("call")
        return x

    lap = split.Lap()
    clock = SimClock()
    schedule.timed_loop(call, lambda y: setattr(clock, "t", clock.t + 1), None, 2.0, lap, clock.now, FakeCpu(),
                        every=1, timer=Timer())
    assert calls == ["start", "call", ("stop", 1), "start", "call", ("stop", 4)]
    assert [d for _, _, d in lap.resolve(Timer()).samples] == [0.1, 0.4], "marks become seconds after the window"


@pytest.mark.parametrize("op_s, sample_s, sharing, every", [
    (20e-6, 3e-6, 1, 75), (1e-3, 6e-6, 1, 3), (0.0, 3e-6, 1, 1024), (1e-9, 3e-6, 1, split.MAX_STRIDE)])
def test_the_stride_keeps_the_samples_within_the_budget(op_s, sample_s, sharing, every):
    assert split.SPLIT_BUDGET == 0.002 and split.stride(op_s, sample_s, sharing) == every
    if every not in (1, split.MAX_STRIDE):
        assert sample_s / every <= split.SPLIT_BUDGET * op_s < sample_s / (every - 1)


@pytest.mark.parametrize("op_s, sample_s, sharing, every", [
    (1e-3, 6e-6, 2, 20), (1e-3, 30e-6, 2, 30), (2e-3, 6e-6, 8, 40), (35e-6, 1.2e-6, 4, split.MAX_STRIDE),
    (0.1, 6e-6, 4, 1)])
def test_threads_sharing_a_gil_count_a_sample_as_contended(op_s, sample_s, sharing, every):
    """Among N threads sharing a GIL a sample costs each at least CONTENDED_SAMPLE_S (a preempted GIL holder
    stalls the others): 1 ms ops at x2 are sampled 1 in 20, not 1 in 6 as their reads alone would allow."""
    assert split.CONTENDED_SAMPLE_S == 20e-6 and split.stride(op_s, sample_s, sharing) == every
    if every not in (1, split.MAX_STRIDE):
        cost = sharing * max(sample_s, split.CONTENDED_SAMPLE_S)
        assert cost / every <= split.SPLIT_BUDGET * op_s * (1 + 1e-9) < cost / (every - 1)


def test_the_shortest_window_holds_a_few_samples():
    """A stride no window reaches would leave every window without a sampled op (a countdown starts afresh
    in each): at most 1 in window_s / op_s / WINDOW_SAMPLES, however costly a sample."""
    assert split.WINDOW_SAMPLES == 8
    assert split.stride(35e-6, 1.2e-6, 4) == split.MAX_STRIDE
    assert split.stride(35e-6, 1.2e-6, 4, window_s=0.2) == int(0.2 / 35e-6 / 8) == 714
    assert split.stride(1e-3, 6e-6, 8, window_s=0.02) == 2   # 20 ops at most, 8 of them sampled: 1 in 2
    assert split.stride(1e-3, 6e-6, 8, window_s=0.001) == 1
    assert split.stride(1e-3, 6e-6, 1, window_s=10.0) == 3   # the budget's stride, where it is the shorter


def test_threads_of_one_process_sample_as_many_times_more_sparsely(monkeypatch):
    for participant, n, sharing in (("thread", 4, 4), ("process", 4, 1)):
        sched = schedule.Schedule(n, 1.0, 1, 4.0, clock=lambda: 0.0, participant=participant)
        sched.start(op_s=1e-3, sample_s=6e-6)
        assert sched.state.split_every == split.stride(1e-3, 6e-6, sharing, window_s=1.0) == (40 if sharing > 1 else 3)
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)   # free-threaded: no GIL
    sched = schedule.Schedule(4, 1.0, 1, 4.0, clock=lambda: 0.0, participant="thread")
    sched.start(op_s=1e-3, sample_s=6e-6)
    assert sched.state.split_every == 3


def test_a_sample_costs_its_cpu_reads_and_the_timers_marks():
    class Slow:   # marks that cost 1 ms each pair
        def start(self):
            time.sleep(0.001)

        def stop(self, mark):
            pass
    reads = split.SAMPLE_READS * split.cpu_read_s()
    assert split.sample_cost() == reads and split.sample_cost(Slow()) >= reads + 0.001


def gauges(t, cpu, delay=None, proc=None, machine=None, device=None):
    return split.Gauges(t=t, cpu=cpu, run_delay=delay, proc=proc, machine=machine, device=device)


def test_a_window_of_threads_pools_its_laps_and_the_boundary_snapshots_exactly():
    """Two threads of one process; the process's gauges come from the Snapshots at the window's boundaries."""
    a = split.Lap(starts=[0.0, 5.0], mids=[3.0, 8.0], ends=[4.0, 10.0], samples=[(2.5, 0.5, 0.003)], tid=11,
                  before=gauges(0.0, None), after=gauges(10.0, None))
    b = split.Lap(starts=[1.0], mids=[2.0], ends=[9.0], samples=[(0.5, 0.5, None)], tid=12,
                  before=gauges(1.0, None), after=gauges(9.0, None))
    opened = split.Snapshot(t=-0.5, proc=50.0, threads={11: (100.0, 1.0), 12: (0.0, 0.0), 99: (0.0, 5.0)},
                            machine=1000.0, device=7.0)
    closed = split.Snapshot(t=9.5, proc=59.0, threads={11: (104.0, 3.0), 12: (2.0, 0.5), 99: (8.0, 9.0)},
                            machine=1016.0, device=16.0)
    got = split.pool([a, b], read_s=0.25, around=(opened, closed))
    assert got["call_ms"] == pytest.approx((3 + 3 + 1) / 3 * 1e3)
    assert got["sync_ms"] == pytest.approx((1 + 2 + 7) / 3 * 1e3)
    assert got["cpu_ms"] == pytest.approx((4 + 2) / 3 * 1e3) and got["own_cores"] == pytest.approx(6 / 10)
    assert got["core_wait_ms"] == pytest.approx(2.5 / 3 * 1e3), "the laps' own threads only (not thread 99)"
    # without schedstat the threads read their own CPU clocks, over their loops
    a.before.cpu, a.after.cpu, b.before.cpu, b.after.cpu = 100.0, 104.0, 0.0, 2.0
    for snap in (opened, closed):
        snap.threads = {}
    got = split.pool([a, b], read_s=0.25, around=(opened, closed))
    assert got["cpu_ms"] == pytest.approx((4 + 2) / 3 * 1e3) and got["own_cores"] == pytest.approx(6 / 10)
    assert got["core_wait_ms"] is None and got["proc_cores"] == pytest.approx(0.9)
    assert got["proc_cores"] == pytest.approx(0.9) and got["host_cores"] == pytest.approx(1.6)
    assert got["device_busy"] == pytest.approx(0.9)
    assert got["call_cpu_ms"] == pytest.approx((2.25 + 0.25) / 2 * 1e3), "each sampled figure less one read"
    assert got["sync_cpu_ms"] == pytest.approx(0.25 * 1e3) and got["device_ms"] == pytest.approx(3.0)
    assert got["split_samples"] == 2
    assert set(split.pool([], 0.0).values()) == {None} and set(split.pool([split.Lap()], 0.0).values()) == {None}
    starved = split.Lap(tid=12, before=gauges(1.0, None), after=gauges(9.0, None))   # no op in the window
    got = split.pool([a, starved], around=(opened, closed))
    assert got["call_ms"] == pytest.approx(3e3) and got["sync_ms"] == pytest.approx(1.5e3), "a starved thread adds none"
    unsplit = split.Lap(starts=[0.0], ends=[1.0], before=gauges(0.0, 0.0), after=gauges(1.0, 0.5))
    assert split.pool([unsplit])["call_ms"] is None and split.pool([unsplit])["cpu_ms"] == pytest.approx(500.0)


def test_processes_read_their_own_gauges_add_their_cores_and_average_the_machine():
    laps = [split.Lap(starts=[0.0], mids=[0.5], ends=[1.0], before=gauges(0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
                      after=gauges(2.0, 1.0, d, 1.5, m, 2.8)) for d, m in ((0.2, 3.0), (0.4, 3.2))]
    got = split.pool(laps)
    assert got["proc_cores"] == pytest.approx(1.5) and got["host_cores"] == pytest.approx(1.55)
    assert got["core_wait_ms"] == pytest.approx(0.6 / 2 * 1e3) and got["device_busy"] == pytest.approx(0.9)


def test_threads_read_only_their_cpu_clock_in_the_window():
    """What a participant thread reads at its loop's ends must not release the GIL (file reads did, and held
    8 threads' first ops up to 0.2 s apart): its op clock and CPU clock; a process of its own reads the rest."""
    clock = SimClock(t=3.0)
    thread = split.Reader(clock=clock.now, cpu=lambda: 7.0, busy=lambda: 2.5, own_cpu=False).gauges()
    assert thread.t == 3.0 and (thread.cpu, thread.run_delay, thread.proc, thread.machine, thread.device) == (None,) * 5
    assert split.Reader(clock=clock.now, cpu=lambda: 7.0).gauges().cpu == 7.0, "no schedstat: its own CPU clock"
    own = split.Reader(clock=clock.now, cpu=lambda: 7.0, whole_process=True, busy=lambda: 2.5).gauges()
    assert own.device == 2.5 and own.proc is not None and own.machine > 0
    h, _ = fake_threads_harness()
    assert not schedule.reader_of(h).whole_process and schedule.reader_of(h, whole_process=True).whole_process


def fake_threads_harness():
    import numpy as np
    from compare.measure.harness import Harness
    inputs = [np.ones(3) for _ in range(2)]
    return Harness(op=lambda x: 2 * x, check=lambda y, i: 0.0, inputs=inputs, tolerance=1e-9), inputs


def test_a_threads_window_takes_its_process_gauges_at_its_boundaries(monkeypatch):
    """Two real threads: each window's Trial has the process's cores from the Snapshots the boundary read
    (while the threads waited), and the participants' laps read no process gauge themselves."""
    from compare.measure.threads import run_threads
    snaps, laps = [], []
    real_snapshot, real_trial = schedule.snapshot, schedule.Window.trial
    monkeypatch.setattr(schedule, "snapshot", lambda *a: (snaps.append(s := real_snapshot(*a)), s)[1])
    monkeypatch.setattr(schedule.Window, "trial", lambda w, *a, **k: (laps.extend(w.laps), real_trial(w, *a, **k))[1])
    h, _ = fake_threads_harness()
    trials = run_threads(h, 2, duration=0.05, trials=2, warmup=1, verify_ops=0)
    assert len(snaps) == 2 * len(trials), "one Snapshot as each timed window opens, one as it closes"
    assert all(t.proc_cores is not None and t.host_cores is not None and t.own_cores is not None for t in trials)
    assert all(lap.before.proc is None and lap.after.machine is None for lap in laps)
    if snaps[0].threads:   # Linux: each thread's CPU time and run delay, by its native id, from the boundary
        assert all(t.core_wait_ms is not None for t in trials) and {lap.tid for lap in laps} <= set(snaps[0].threads)
        assert all(lap.before.cpu is None for lap in laps), "a thread reads no CPU clock of its own at its loop"


# -- known answers in this process: the stand-in device ---------------------------------------------------
def plugin_module():
    sys.path.insert(0, str(PLUGIN))
    try:
        import threadbench_split
    finally:
        sys.path.remove(str(PLUGIN))
    return threadbench_split


def measure(backend, threads: int, tmp: Path, duration: float = 0.3) -> dict:
    """A threads cell of `backend` run in this process as a cell's worker runs it; its summary record."""
    cell = Cell(backend=backend.name, device="cpu", dtype="float64", workload="mlp", mode="threads", threads=threads,
                knobs=TINY, duration=duration, trials=3, warmup=2, verify_ops=1, intra_op_threads=1)
    backend.configure(intra_op_threads=1)
    spec = workloads.make("mlp", **dict(TINY))
    params = spec.init_weights(0)
    h = make_harness(backend, build_model(backend, cell, spec, params), cell, spec, params, tmp)
    trials = run_mode(h, cell)
    assert h.checked and not h.errors
    run = R.new_run([], {"host": "here"}, {})
    R.add_result(run, CellResult(cell=cell, status="ok", trials=trials, cores=h.measured.cores, checked=h.checked))
    (rec,) = stats.summarize(run["rows"]).to_dicts()
    return rec


def test_a_real_cell_on_a_synchronous_device_has_no_synchronise_in_its_split(tmp_path):
    """numpy on the CPU (Backend.synchronous_on): the cell's harness has nothing to synchronise, so every request's
    time is its call's; the stand-in device, which waits in its synchronize, keeps one, and its split shows it."""
    from backends.numpy_backend import NumpyBackend
    rec = measure(NumpyBackend(), 2, tmp_path, duration=0.1)
    assert rec["sync_ms"] == 0.0 and rec["call_ms"] > 0, rec
    device = measure(plugin_module().DeviceBackend(), 1, tmp_path, duration=0.1)
    assert device["sync_ms"] > device["call_ms"], device


def test_the_stand_in_device_is_busy_once_two_threads_keep_it_queued(tmp_path):
    module = plugin_module()
    backend = module.DeviceBackend()
    one, two = (measure(backend, n, tmp_path) for n in (1, 2))
    assert one["device_ms"] == two["device_ms"] == pytest.approx(module.SERVICE_S * 1e3), "its own schedule"
    assert one["device_busy"] < analysis.DEVICE_BUSY and analysis.why(one) == analysis.WAIT_BOUND, one
    assert two["device_busy"] >= 0.95 and analysis.why(two) == analysis.DEVICE_BOUND, two
    assert two["busy_source"] == stats.BUSY_TIMER and two["sync_share"] > 0.5   # clients wait in synchronise


def test_a_synchronise_that_waits_for_nothing_still_takes_the_gils_turns(tmp_path):
    """Issue 22: on the H100 the split's synchronise read 573 us a request at x8 where the profiler's
    cudaStreamSynchronize took 16. A synchronize that releases the GIL and waits for nothing: near zero at
    x1, and at x4 about the other threads' GIL-holding forwards (3 x ~0.35 ms): the split's synchronise is
    what a request pays there, GIL re-acquisition included, not the time a device made it wait."""
    backend = plugin_module().GilSyncBackend()
    one, four = (measure(backend, n, tmp_path) for n in (1, 4))
    forward_ms = one["call_ms"]
    # idle, x1 reads ~0.06 ms; with a CPU hog per core, a sleep(0) also hands the core away (~0.4 ms at x1)
    assert four["sync_ms"] > max(forward_ms, 2 * one["sync_ms"]), (one, four)
    assert four["sync_cpu_ms"] < 0.2 * four["sync_ms"], "the wait is blocked time, not the thread's own work"


# -- known answers through real cells ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def known_sweep(tmp_path_factory, threadbench, starts_processes):
    out = tmp_path_factory.mktemp("split") / "run.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGIN), str(ROOT)]), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    size = ",".join(f"{k}={v}" for k, v in TINY)
    proc = threadbench("compare", "-q", "--backends", "split-gil,split-sleep,split-device", "--dtype", "float64",
                       "--workloads", "mlp", "--size", size, "--modes", "threads", "--threads", "1,2,4",
                       "--duration", "0.3", "--trials", "3", "--warmup", "2", "--intra-op-threads", "1",
                       "--repeats", "5", "--no-peak-probe", "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    recs = stats.summarize(R.load(out)["rows"]).to_dicts()
    return {(r["backend"], r["threads"]): r for r in recs if r["mode"] == "threads"}


def other_load(r: dict) -> float:
    return r["host_cores"] - r["proc_cores"]


def test_a_gil_holding_forward_is_gil_bound_from_two_threads(known_sweep):
    one, two, four = (known_sweep[("split-gil", n)] for n in (1, 2, 4))
    assert analysis.why(one) != analysis.GIL_BOUND   # one thread takes no turns
    for r in (two, four):
        why = analysis.why(r)
        assert why == analysis.GIL_BOUND or (why == analysis.CORE_BOUND and other_load(r) >= OTHER_LOAD), (
            f"x{r['threads']}: {format.why_reason(r)}; running {analysis.running(r):.2f}, "
            f"{other_load(r):.2f} cores by other processes")
    assert four["ops_per_s"] < 1.3 * one["ops_per_s"], "threads that take turns add no throughput"
    (bend,) = analysis.bends([one, two, four])
    # the extra wall time is waiting, whatever the GIL's hand-overs add to a request's own CPU time (1.0-1.25x
    # on an idle or loaded machine, up to a few per cent of the extra time)
    assert bend.kind == analysis.WAITING and bend.wall >= 2.5 and bend.cpu_share < 0.2, bend
    text = "\n".join(s for f in FD.findings([one, two, four]) for s in f.sentences)
    assert "threads from ×1 to ×4, a request's wall time" in text and (
        "stayed flat: the extra time is waiting" in text or "of the extra time: the rest is waiting" in text), text


def test_a_forward_that_sleeps_releasing_the_gil_is_wait_bound_and_scales(known_sweep):
    cells = [known_sweep[("split-sleep", n)] for n in (1, 2, 4)]
    assert [analysis.why(r) for r in cells] == [analysis.WAIT_BOUND] * 3, cells
    assert all(r["blocked_share"] > 0.8 for r in cells)
    assert cells[2]["ops_per_s"] >= 2.5 * cells[0]["ops_per_s"], "four sleeps overlap"


def test_a_device_that_the_threads_saturate_is_device_bound_near_full(known_sweep):
    one, two, four = (known_sweep[("split-device", n)] for n in (1, 2, 4))
    assert analysis.why(one) == analysis.WAIT_BOUND and one["device_busy"] < analysis.DEVICE_BUSY, one
    for r in (two, four):
        assert analysis.why(r) == analysis.DEVICE_BOUND and r["device_busy"] >= 0.95, r
        assert r["device_ms"] == pytest.approx(8.0)   # the stand-in's service time, on its own schedule
    assert four["ops_per_s"] < 1.2 * two["ops_per_s"], "one device: more threads only queue"


def cuda_here() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def cuda_sweep(tmp_path_factory, threadbench, starts_processes):
    """split-cudadevice's threads cells on this machine's GPU, end to end (the device machine runs it: issue 22's
    known answer for the device stand-in on the H200)."""
    if not cuda_here():
        pytest.skip("no CUDA GPU here: the stand-in's known answer on a real GPU runs on the device machine")
    out = tmp_path_factory.mktemp("split-cuda") / "run.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGIN), str(ROOT)]))
    size = ",".join(f"{k}={v}" for k, v in TINY)
    proc = threadbench("compare", "-q", "--backends", "split-cudadevice", "--device", "gpu", "--dtype", "float32",
                       "--workloads", "mlp", "--size", size, "--modes", "threads", "--threads", "1,2,4",
                       "--duration", "0.5", "--trials", "3", "--warmup", "2", "--repeats", "3", "--no-peak-probe",
                       "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    recs = stats.summarize(R.load(out)["rows"]).to_dicts()
    return {r["threads"]: r for r in recs if r["mode"] == "threads"}


def known_answer_on_a_gpu(cells: dict[int, dict], service_ms: float) -> None:
    """The stand-in device's answer from the real timers (issue 22, on a GPU), `cells` its threads cells by N.
    Threads share torch's default stream; a request is a host part (H, the framework call at x1) and one kernel
    of S = service_ms. A thread's synchronise waits for every job queued before it, the others' too, so two
    regimes bound the rate: in lockstep the threads leave synchronise together and run their host parts while
    the GPU idles, N requests in N S + H (ops = N / (N S + H): every H100 host so far); where each launch falls
    after the other threads' synchronise calls, one thread's host part overlaps the others' kernels and the rate
    nears the device's 1 / S (an H200 host: x2 at 107 in one process, 120-124 in two). In both the GPU is busy
    ops x S of the time, which NVML must read; CUDA's synchronise spin-waits (its CPU time is its wall time: on
    an H100 7.76 of 7.76 ms), which the verdict counts as waiting, not as the thread's own work: wait-bound at
    x1, device-bound once the GPU is busy >= 90% (x4: 93% in lockstep)."""
    s, h = service_ms, cells[1]["call_ms"]
    assert cells[1]["ops_per_s"] == pytest.approx(1e3 / (s + h), rel=0.1), cells[1]
    for n, r in cells.items():
        lockstep, device = 1e3 * n / (n * s + h), 1e3 / s
        assert r["busy_source"] == stats.BUSY_NVML
        assert 0.95 * lockstep <= r["ops_per_s"] <= 1.03 * device, (n, r["ops_per_s"], lockstep, device)
        assert r["device_busy"] == pytest.approx(r["ops_per_s"] * s / 1e3, abs=0.06), (n, r)
        assert r["spin_share"] > 0.5 * r["sync_share"], "CUDA's synchronise spins"
    one, four = cells[1], cells[4]
    assert analysis.why(one) == analysis.WAIT_BOUND, format.why_reason(one)
    assert analysis.why(four) == analysis.DEVICE_BOUND, format.why_reason(four)


def test_a_real_gpu_that_the_threads_keep_queued_is_waited_on_then_device_bound(cuda_sweep):
    known_answer_on_a_gpu(cuda_sweep, plugin_module().SERVICE_S * 1e3)


@pytest.mark.parametrize("name", ["h100-split-cudadevice-a56a5c9", "h100-split-cudadevice-f0d5b74",
                                  "h200-split-cudadevice-283f071"])
def test_the_known_answer_holds_on_the_gpus_it_was_measured_on(name):
    """The same checks on the runs the device machines recorded (results/timing/NAME.txt says which machine):
    two H100 hosts in lockstep, an H200 host mostly overlapped."""
    path = ROOT / "results" / "timing" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout (benchmarks/device_carry.sh out moves results/timing away)")
    recs = stats.summarize(R.load(path)["rows"]).to_dicts()
    known_answer_on_a_gpu({r["threads"]: r for r in recs if r["mode"] == "threads"}, plugin_module().SERVICE_S * 1e3)


def test_spinning_in_a_synchronise_that_only_waits_is_waiting_not_host_work():
    """The H100 known answer above, as its rows read: x1, an 8 ms kernel and a 2.8 ms host part; the thread's
    CPU clock ran 81% of the request, 74 points of it inside torch's synchronise (a spin-wait). Where the
    backend declares that its synchronise only waits (Backend.sync_waits) the verdict is wait-bound; where it
    does not (MLX evaluates its graph there) the same figures are the thread's own work: host-bound."""
    row = {"status": "ok", "device": "cuda", "repeat": 0, "call_ms": 2.79, "sync_ms": 7.76, "cpu_ms": 8.54,
           "core_wait_ms": 0.0, "call_cpu_ms": 0.75, "sync_cpu_ms": 7.76, "split_samples": 212, "own_cores": 0.81,
           "proc_cores": 0.81, "host_cores": 1.0, "device_ms": 10.6, "device_busy": None, "cores": 16,
           "gpu_util_mean": 75.0, "sync_waits": 1}
    base = {"status": "ok", "ops_per_s": 94.4, "mode": "threads", "threads": 1}
    waits = base | stats.split_summary([row])
    assert waits["spin_share"] == pytest.approx(7.76 / 10.55, rel=1e-3) and waits["run_share"] == pytest.approx(0.81, abs=0.01)
    assert analysis.why(waits) == analysis.WAIT_BOUND, format.why_reason(waits)
    assert "spin-waiting in synchronise" in format.why_reason(waits)
    works = base | stats.split_summary([row | {"sync_waits": 0}])
    assert works["spin_share"] is None and analysis.why(works) == analysis.HOST_BOUND
    on_cpu = base | stats.split_summary([row | {"device": "cpu"}])
    assert on_cpu["spin_share"] is None, "on the CPU, synchronise's CPU time is the framework's work"
    # x4 (the H100's figures): the extra wall time is waiting, not each request costing more CPU
    four = base | {"ops_per_s": 115.4, "threads": 4} | stats.split_summary([row | {
        "call_ms": 4.93, "sync_ms": 29.72, "cpu_ms": 30.62, "call_cpu_ms": 1.08, "sync_cpu_ms": 29.58,
        "own_cores": 3.53, "proc_cores": 3.53, "device_ms": 34.6, "gpu_util_mean": 92.0}])
    (bend,) = analysis.bends([waits, four])
    assert bend.kind == analysis.WAITING and bend.cpu == pytest.approx(1.04 / 0.78, rel=0.02), bend
    assert analysis.why(four) == analysis.DEVICE_BOUND


# -- torch's CUDA events, on a fake torch (the real path: the device machine's known answer above) ---------
class FakeEvent:
    """torch.cuda.Event's surface the timer uses: record() on the current stream, elapsed_time() in ms."""
    streams: list = []

    def __init__(self, enable_timing=False):
        assert enable_timing, "timing events only"
        self.at = None

    def record(self, stream=None):
        assert stream is None, "no stream given: the calling thread's current stream"
        self.at = FakeEvent.now

    def elapsed_time(self, end):
        if self.at is None or end.at is None:
            raise RuntimeError("event not recorded")
        return (end.at - self.at) * 1e3


def test_torch_times_a_sampled_forward_with_two_events_on_the_threads_stream():
    from types import SimpleNamespace

    from backends.torch_backend import CudaEvents, TorchBackend
    fake = SimpleNamespace(cuda=SimpleNamespace(Event=FakeEvent))
    timer = CudaEvents(fake)
    FakeEvent.now = 1.0
    mark = timer.start()
    FakeEvent.now = 1.25   # the forward's device span
    timer.stop(mark)
    assert timer.elapsed(mark) == pytest.approx(0.25) and timer.busy() is None   # busy: NVML's
    assert timer.elapsed((FakeEvent(True), FakeEvent(True))) is None, "an event never recorded gives no figure"
    assert TorchBackend().device_timer("cpu") is None and TorchBackend().device_timer("mps") is None


# -- the profiler cross-check (benchmarks/profiler_crosscheck.py), on the CPU ----------------------------------
def crosscheck_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("profiler_crosscheck", ROOT / "benchmarks" / "profiler_crosscheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_crosscheck_takes_the_union_of_kernel_intervals():
    union = crosscheck_module().union_us
    assert union([(0, 10), (5, 15), (20, 30), (21, 22)]) == 25 and union([]) == 0


def test_the_crosscheck_names_devices_as_compare_does(capsys, monkeypatch):
    """--device gpu is torch's first GPU, as in compare (it reached torch as the string 'gpu' and crashed on the
    H100), and a device torch has not is one line, not a traceback."""
    module = crosscheck_module()
    from backends.torch_backend import TorchBackend
    monkeypatch.setattr(TorchBackend, "device_status", lambda self: {"cuda": "no CUDA here", "mps": "no MPS",
                                                                     "cpu": None})
    for wanted in ("gpu", "cuda", "tpu"):
        monkeypatch.setattr(sys, "argv", ["profiler_crosscheck.py", "--device", wanted])
        assert module.main() == 0
        out = capsys.readouterr().out
        assert out.startswith("not run: "), (wanted, out)
    assert "no CUDA here" in out or "no device 'tpu'" in out


@pytest.mark.slow
def test_the_profiler_sees_the_call_the_split_times_on_the_cpu(capsys, monkeypatch):
    """A tiny transformer on the CPU, threads x1: the profiler's span of the framework call agrees with the
    split's reading of the same requests (the GPU lines need CUDA: not run here)."""
    module = crosscheck_module()
    monkeypatch.setattr(sys, "argv", ["profiler_crosscheck.py", "--device", "cpu", "--dtype", "float32", "--size",
                                      "seq=8,width=32,heads=2,hidden=64,layers=1", "--threads", "1",
                                      "--duration", "0.1", "--requests", "20"])
    assert module.main() == 0
    out = capsys.readouterr().out
    (call,) = [line for line in out.splitlines() if "framework call (tb.call)" in line]
    assert call.endswith("agree"), out
    assert "CPU op time (aten ops inside tb.call)" in out and "threads x1: the cell" in out


def test_a_core_bound_reason_never_counts_a_negative_share_of_other_processes():
    """The machine's and the process's cores are sampled apart: a difference a little below 0 is 'none'."""
    from compare.render.format import why_reason
    base = {"status": "ok", "ops_per_s": 100.0, "mode": "threads", "threads": 4, "run_share": 0.4,
            "core_wait_share": 0.31, "blocked_share": 0.1, "cores": 16, "proc_cores": 11.2}
    assert why_reason(base | {"host_cores": 11.0}).endswith("11.0 of 16 cores busy, none of them by other processes")
    assert why_reason(base | {"host_cores": 13.2}).endswith("13.2 of 16 cores busy, 2.0 of them by other processes")
