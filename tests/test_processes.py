"""The processes mode (compare.measure.processes): what it counts and pools, what it records about each
process, and that one process failing fails the cell with its cause and leaves no process behind.

Healthy cells run the numpy float64 backend; faults come from tests/process_fault_plugin, whose backends
fail in the second process of a cell only. Nothing here asserts a speed: counts, structure, statuses."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from compare import results as R
from compare.cells import MODES, Cell
from compare.measure import processes, procs
from compare.measure.build import CellContext
from compare.measure.clocks import shared_clock
from compare.measure.harness import Checks, TooSlow
from compare.measure.registry import MEASURES
from compare.measure.schedule import Window, trial_of

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = Path(__file__).resolve().parent / "process_fault_plugin"
MARK = f"threadbench-test-{uuid.uuid4().hex}"  # in the environment of every process these tests start
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGIN), str(ROOT)]), THREADBENCH_TEST_MARK=MARK,
           OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # two processes' BLAS pools need not fight for 2 cores
TRIALS = 2
FAST = ["--dtype", "float64", "--workloads", "mlp", "--duration", "0.1", "--trials", str(TRIALS), "--warmup", "1",
        "--repeats", "1", "-q"]


def marked() -> list[psutil.Process]:
    """Every live process started by these tests (the cells' workers and their processes)."""
    out = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("THREADBENCH_TEST_MARK") == MARK and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def running(p: psutil.Process) -> bool:
    """Alive and not a zombie (an exited process whose new parent has not reaped it yet)."""
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_none_left(within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while marked() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = marked()
    for p in left:  # never leave them for the next test
        p.kill()
    assert not left, [p.pid for p in left]


def cell_row(run: dict, backend: str, threads: int = 2) -> dict:
    return next(r for r in run["rows"] if (r["backend"], r["workload"], r["mode"], r["threads"])
                == (backend, "mlp", "processes", threads))


# -- what a window is -----------------------------------------------------------------------------------
def test_windows_pool_every_process_as_threads_pool_threads():
    a = [([10.0, 10.2], [10.2, 10.4]), ([20.0], [20.3])]          # process 1: two windows
    b = [([10.1, 10.3, 10.5], [10.3, 10.5, 10.6]), ([20.1], [20.2])]  # process 2
    t0, t1 = (Window.of([a[t], b[t]]).trial() for t in (0, 1))   # as the worker pools its processes' reports
    assert (t0.ops, t0.seconds) == (5, pytest.approx(0.6))  # 2 + 3 ops; 10.0 (first start) to 10.6 (last end)
    assert (t1.ops, t1.seconds) == (2, pytest.approx(0.3))
    # as a window of threads pools: every participant's starts and ends into one trial_of
    threads = [trial_of(a[t][0] + b[t][0], a[t][1] + b[t][1]) for t in (0, 1)]
    assert [(t.ops, t.seconds, t.lat_p99_ms) for t in threads] == [(t.ops, t.seconds, t.lat_p99_ms) for t in (t0, t1)]
    assert (t0.min_thread_ops, t1.min_thread_ops) == (2, 1)  # the fewest ops any process completed


def test_intra_op_threads_keep_processes_times_threads_within_the_cores(monkeypatch):
    monkeypatch.setattr(procs, "usable_cores", lambda: 8)
    cell = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="processes", threads=2)
    assert procs.intra_op_plan(cell) == (4, "equal total threads: 8 cores // 2 processes")
    assert procs.intra_op_plan(Cell(**{**cell.to_dict(), "threads": 16, "knobs": ()}))[0] == 1
    assert procs.intra_op_plan(Cell(**{**cell.to_dict(), "intra_op_threads": 3, "knobs": ()})) == \
        (3, "--intra-op-threads")


def test_processes_is_a_ceiling_mode_beside_threads_and_not_a_default():
    spec = MODES["processes"]
    assert spec.ceiling and spec.axis == "threads" and spec.line and spec.start_s > 0
    assert "processes" in MEASURES


@pytest.mark.slow
def test_processes_run_in_step_and_every_one_checks_its_outputs(monkeypatch, tmp_path):
    """Two real processes (numpy float64): every window pools both, on one shared clock and one deadline
    (no start lies a window's length from another), and every process's tallies reach the cell's Checks."""
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(k, "1")
    seen = []
    real_gather = processes._gather
    monkeypatch.setattr(processes, "_gather", lambda *args: (seen.append(got := real_gather(*args)), got)[1])
    cell = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="processes", threads=2,
                duration=0.2, trials=3, warmup=2, verify_ops=4)
    build = CellContext(build_harness=lambda: pytest.fail("the worker must not build a model"),
                        checks=Checks(1e-9), cache=tmp_path)
    trials = processes.run_processes(cell, build)
    ((reports, _),) = seen
    # per process, per timed window: (its Lap: op times, sampled ops, gauges; the planned length)
    windows = [[(lap.starts, lap.ends, length, lap) for lap, length in r["windows"]] for r in reports]
    assert len(windows) == 2 and all(len(w) == 3 for w in windows)
    for t, trial in enumerate(trials):
        starts = [s for w in windows for s in w[t][0]]
        assert trial.ops == sum(len(w[t][1]) for w in windows) == len(starts) > 0
        length = windows[0][t][2]   # the window the shared schedule planned (>= --duration)
        assert length >= cell.duration and all(w[t][2] == length for w in windows)
        assert max(starts) - min(starts) < length  # one window, opened once for all
        assert trial.min_thread_ops >= 10           # every process held the minimum (schedule.MIN_OPS_PER_WINDOW)
        assert trial.seconds == pytest.approx(max(e for w in windows for e in w[t][1]) - min(starts))
        # each process is the lead of its own: the cell's cores are theirs added up, its split both pooled
        laps = [w[t][3] for w in windows]
        assert trial.proc_cores == pytest.approx(sum((lap.after.proc - lap.before.proc)
                                                     / (lap.after.t - lap.before.t) for lap in laps))
        assert trial.call_ms > 0 and trial.cpu_ms > 0 and trial.split_samples == sum(len(lap.samples) for lap in laps)
    # each timed window's span (moved to the GPU sampler's clock): from its first start to its last end
    spans = build.measured.timed_spans
    shift = time.perf_counter() - shared_clock()
    assert len(spans) == len(trials)
    for t, (a, b) in enumerate(spans):
        assert a - shift == pytest.approx(min(s for w in windows for s in w[t][0]), abs=1e-3)
        assert b - shift == pytest.approx(max(e for w in windows for e in w[t][1]), abs=1e-3)
    # the speed check, each process's 4 after the trials, and 1-2 outputs per process per window (first, last)
    assert 1 + 2 * 4 + 2 * 3 <= build.checks.checked <= 1 + 2 * 4 + 2 * 2 * 3 and build.checks.errors == 0
    facts = build.facts
    assert len(facts["process_rss_mb"]) == len(facts["process_uss_mb"]) == 2
    assert all(m > 0 for m in facts["process_rss_mb"]) and facts["process_device_mb"] is None
    assert facts["intra_op_rule"].startswith("equal total threads:") or facts["intra_op_rule"] == "--intra-op-threads"
    assert list(tmp_path.glob("mlp-*.npy"))  # the references went to the cache the worker named


@pytest.mark.slow
def test_an_op_longer_than_the_window_is_too_slow_in_processes_too(monkeypatch, tmp_path):
    """Process 1 runs threads' one-op speed check; TooSlow reaches the worker with that check's tally, and
    the other process, waiting at the barrier, is released and ended."""
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(k, "1")
    cell = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="processes", threads=2,
                duration=1e-7, trials=1, warmup=1)
    build = CellContext(build_harness=lambda: pytest.fail("the worker must not build a model"),
                        checks=Checks(1e-9), cache=tmp_path)
    with pytest.raises(TooSlow, match="more than the 4e-07 s longest window"):  # 4 x --duration
        processes.run_processes(cell, build)
    assert build.checks.checked == 1 and build.checks.errors == 0 and not build.facts


# -- end to end: healthy, faulty, and no process left ------------------------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory, threadbench, starts_processes):
    out_file = tmp_path_factory.mktemp("processes") / "run.json"
    proc = threadbench("compare", *FAST, "--backends", "numpy,fault-one-segv,fault-one-raise,fault-one-wrong",
                       "--modes", "sequential,processes", "--no-peak-probe", "--threads", "1,2",
                       "--cell-timeout", "120", "--out", str(out_file), env=ENV)
    return proc, R.load(out_file)


def test_a_processes_cell_records_each_process_and_their_total(sweep):
    proc, run = sweep
    assert "Traceback" not in proc.stderr
    for n in (1, 2):
        row = cell_row(run, "numpy", n)
        # the speed check, 5 per process after the trials, and each process's first and last output of each window
        assert row["status"] == "ok" and row["ops_per_s"] > 0 and row["checked"] == 1 + n * 5 + n * 2 * TRIALS, row
        rss = json.loads(row["process_rss_mb"])
        assert len(rss) == len(json.loads(row["process_uss_mb"])) == n and all(m > 0 for m in rss)
        assert row["total_rss_mb"] == pytest.approx(sum(rss)) and row["process_device_mb"] is None
        assert row["intra_op_rule"].startswith("equal total threads:"), row
    single = next(r for r in run["rows"] if r["backend"] == "numpy" and r["mode"] == "sequential")
    assert single["total_rss_mb"] == single["peak_rss_mb"] and single["process_rss_mb"] is None  # one process
    assert single["intra_op_rule"] == "framework default"


def test_one_process_killed_by_a_signal_fails_the_cell_with_its_cause(sweep):
    proc, run = sweep
    assert cell_row(run, "fault-one-segv", 1)["status"] == "ok"  # one process: the fault never fires
    row = cell_row(run, "fault-one-segv")
    assert row["status"] == "crash" and row["cause"] == "process 2 of 2 killed by SIGSEGV", row
    assert row["ops_per_s"] is None


def test_an_exception_in_one_process_is_the_cells_error(sweep):
    proc, run = sweep
    row = cell_row(run, "fault-one-raise")
    assert row["status"] == "error", row
    assert row["cause"] == "process 2 of 2: RuntimeError: injected fault: forward failed", row


def test_wrong_outputs_in_one_process_make_the_cell_wrong(sweep):
    proc, run = sweep
    row = cell_row(run, "fault-one-wrong")
    # process 2's every output is off: its 5 after the trials and its first and last of each window
    assert row["status"] == "wrong" and row["errors"] == 5 + 2 * TRIALS, row
    assert row["checked"] == 1 + 2 * 5 + 2 * 2 * TRIALS, row
    assert cell_row(run, "fault-one-wrong", 1)["errors"] == 0


def test_failures_end_the_cell_not_the_sweep_and_leave_no_process(sweep):
    proc, run = sweep
    assert proc.returncode == 1, proc.stderr[-2000:]  # some cells failed
    assert len({R.row_key(r) for r in run["rows"]}) == len(run["plan"])
    assert_none_left()


# The cause names where each process is once the worker has heard nothing from them for QUIET_NOTE_S (5 s):
# start-up, both in place (process 2 hung in warm-up, process 1 at the barrier), then 5 s. The first timeout
# whose cause had them: 8 s at a load of 2.5 on 2 cores (6 s had none); 15 s passed at a load of 5.8.
HANG_TIMEOUT_S = 15


@pytest.mark.slow
def test_a_hung_process_is_a_timeout_and_the_cells_whole_group_is_ended(tmp_path, threadbench):
    out_file = tmp_path / "run.json"
    proc = threadbench("compare", *FAST, "--backends", "fault-one-hang", "--modes", "processes", "--threads", "2",
                       "--no-peak-probe", "--cell-timeout", str(HANG_TIMEOUT_S), "--out", str(out_file), env=ENV)
    assert proc.returncode == 1, proc.stderr[-2000:]
    row = cell_row(R.load(out_file), "fault-one-hang")
    assert row["status"] == "timeout" and row["cause"].startswith(f"no result within {HANG_TIMEOUT_S} s"), row
    # process 2 hangs in its first forward (warm-up); process 1 waits for it at the first window's barrier
    assert "process 2 of 2" in row["cause"] and "at warm-up" in row["cause"], row
    assert "process 1 of 2" in row["cause"] and "at the barrier before a warm-up window" in row["cause"], row
    assert_none_left()


@pytest.mark.slow
def test_processes_end_themselves_when_their_worker_dies(tmp_path):
    """SIGKILL the cell's worker only (as the OOM killer would): its processes notice and exit."""
    p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "compare", *FAST, "--backends", "fault-one-hang",
                          "--modes", "processes", "--threads", "2", "--no-peak-probe", "--cell-timeout", "120",
                          "--out", str(tmp_path / "run.json")], cwd=ROOT, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert p.poll() is None, p.communicate()
            try:  # the sweep's short-lived children (host probes) may end or be zombies between list and read
                workers = [w for w in psutil.Process(p.pid).children()
                           if running(w) and "compare.measure.worker" in " ".join(w.cmdline())]
                spawned = [c for w in workers for c in w.children()
                           if running(c) and "spawn_main" in " ".join(c.cmdline())]
                # both past start-up: each runs its parent watch (a second thread; BLAS pools are off in ENV)
                if workers and len(spawned) == 2 and all(c.num_threads() >= 2 for c in spawned):
                    break
            except psutil.NoSuchProcess:  # ZombieProcess is one: look again
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the cell's processes never started")
        assert {os.getpgid(c.pid) for c in spawned} == {os.getpgid(workers[0].pid)}  # in the cell's group
        workers[0].send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 60  # nothing else would end them (their worker is gone): any bound tells,
        #                                   and a busy machine may take seconds to run their 0.25 s watch
        while (alive := [c.pid for c in spawned if running(c)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive, alive
        _, err = p.communicate(timeout=120)
        assert p.returncode == 1, err[-2000:]
        row = cell_row(R.load(tmp_path / "run.json"), "fault-one-hang")
        assert row["status"] == "crash" and row["cause"].startswith("killed by SIGKILL"), row
    finally:
        if p.poll() is None:
            p.kill()
    assert_none_left()
