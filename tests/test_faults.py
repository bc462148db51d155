"""Fault isolation, interrupts, --resume and concurrent runs, end to end through `cli.py compare`.

The faults come from tests/fault_plugin: a third-party-style distribution whose backends are found
through the `threadbench.backends` entry-point group, exactly like any plug-in, once its folder is on
PYTHONPATH (the cell's worker process inherits it). Each fault fires on the real workloads only, so the
same backend's matmul probe cells are healthy and must be kept next to the recorded failure."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from compare import results as R
from compare.cells import Cell
from compare.measure.lock import locked
from compare.resume import KEEP, cells_to_rerun

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = Path(__file__).resolve().parent / "fault_plugin"
# One BLAS thread per cell: on a machine whose every core is busy, a BLAS pool of several threads waits a
# scheduler slice for each descheduled member (a 1 MFLOP mlp then takes 50 ms and the cell is too slow)
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGIN), str(ROOT)]), OPENBLAS_NUM_THREADS="1",
           OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
PROBES = 2 if (os.cpu_count() or 1) > 1 else 1  # matmul peak probe cells per backend (compare.measure.plan)
FAST = ["--dtype", "float64", "--workloads", "mlp", "--duration", "0.05", "--trials", "2", "--warmup", "1", "--repeats",
        "1", "-q"]


def start(*args, cwd=ROOT):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "compare", *FAST, *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cells(run: dict) -> dict:
    """(backend, workload, mode, threads) -> the cell's first row."""
    out = {}
    for r in run["rows"]:
        out.setdefault((r["backend"], r["workload"], r["mode"], r["threads"]), r)
    return out


# -- one sweep, six faults and a healthy control --------------------------------------------------------
@pytest.fixture(scope="module")
def fault_sweep(tmp_path_factory, threadbench, starts_processes):
    out_file = tmp_path_factory.mktemp("faults") / "run.json"
    proc = threadbench("compare", *FAST, "--backends",
                       "fault-segv,fault-abort,fault-raise,fault-wrong,fault-hog,fault-exit,numpy", "--no-peak-probe",
                       "--modes", "threads", "--threads", "1,2", "--cell-timeout", "20", "--mem-limit-mb", "300",
                       "--out", str(out_file), env=ENV)
    return proc, R.load(out_file)


def _failed_cells_of(run, backend):
    return [cells(run)[(backend, "mlp", "threads", n)] for n in (1, 2)]


def test_segfault_recorded_as_sigsegv_and_sweep_goes_on(fault_sweep):
    proc, run = fault_sweep
    for row in _failed_cells_of(run, "fault-segv"):
        assert row["status"] == "crash" and row["cause"].startswith("killed by SIGSEGV"), row


def test_abort_recorded_as_sigabrt(fault_sweep):
    proc, run = fault_sweep
    for row in _failed_cells_of(run, "fault-abort"):
        assert row["status"] == "crash" and row["cause"].startswith("killed by SIGABRT"), row


def test_abort_at_exit_is_the_crash_of_the_workers_last_cell_which_keeps_its_trials(fault_sweep):
    """Both cells run in one worker (one backend, one round); it aborts as it exits after the last."""
    proc, run = fault_sweep
    (worker,) = [p for p in run["processes"] if p["group"]["backend"] == "fault-exit"]
    last = Cell.from_dict(run["plan"][worker["order"][-1]])
    assert worker["end"] == "died in cell 2 of 2: killed by SIGABRT" and worker["measured"] == 2
    for row in _failed_cells_of(run, "fault-exit"):
        if row["threads"] == last.threads:
            assert row["status"] == "crash", row
            assert row["cause"].startswith("killed by SIGABRT after reporting its result (at exit); its process "
                                           "measured 1 other cell(s) before it"), row
        else:
            assert row["status"] == "ok", row
        assert row["ops_per_s"] and row["errors"] == 0 and row["checked"] > 0  # the measured trials are kept


def test_exception_recorded_with_type_and_message(fault_sweep):
    proc, run = fault_sweep
    for row in _failed_cells_of(run, "fault-raise"):
        assert row["status"] == "error" and row["cause"] == "RuntimeError: injected fault: forward failed", row


def test_wrong_only_when_threaded_recorded_with_error_count(fault_sweep):
    proc, run = fault_sweep
    one, two = _failed_cells_of(run, "fault-wrong")
    assert one["status"] == "ok" and one["errors"] == 0 and one["checked"] > 0, one
    assert two["status"] == "wrong" and 0 < two["errors"] <= two["checked"], two
    assert f"{two['errors']} of {two['checked']} checked outputs off the reference" in two["cause"]
    assert two["ops_per_s"] is not None  # its throughput is kept, flagged by the status


def test_memory_hog_killed_at_the_limit(fault_sweep):
    proc, run = fault_sweep
    for row in _failed_cells_of(run, "fault-hog"):
        assert row["status"] == "memory" and "passed the 300 MB limit; killed" in row["cause"], row


def test_faults_keep_every_healthy_cell_and_exit_1(fault_sweep):
    proc, run = fault_sweep
    assert proc.returncode == 1, proc.stderr[-2000:]  # EXIT_CELLS_FAILED
    assert "Traceback" not in proc.stderr
    got = cells(run)
    assert len({R.row_key(r) for r in run["rows"]}) == len(run["plan"]) == 7 * 2  # all recorded
    assert [p["group"]["backend"] for p in run["processes"]][-1] == "numpy"
    for n in (1, 2):  # the control backend, run after the faults, is untouched by them
        assert got[("numpy", "mlp", "threads", n)]["status"] == "ok"
    assert got[("fault-wrong", "mlp", "threads", 1)]["status"] == "ok"  # a faulty backend's healthy cell


def test_a_fault_that_kills_the_worker_costs_its_cell_and_the_next_goes_on_in_a_fresh_one(fault_sweep):
    """A segfault, an abort and a memory kill each end the worker in the first cell it is sent; the second
    cell runs in a fresh worker that continues it. An exception is its cell's error: one worker runs both."""
    proc, run = fault_sweep
    workers = {}
    for p in run["processes"]:
        workers.setdefault(p["group"]["backend"], []).append(p)
    for backend in ("fault-segv", "fault-abort", "fault-hog"):
        first, second = workers[backend]
        assert second["continues"] == first["number"] and second["order"] == first["order"][1:], (first, second)
        assert first["measured"] == second["measured"] == 1 and first["end"].startswith("killed in cell 1 of 2" if
                                                                                      backend == "fault-hog" else
                                                                                      "died in cell 1 of 2")
    (raising,) = workers["fault-raise"]
    assert raising["measured"] == 2 and raising["end"] == "ended after its last cell"
    assert run["time_split"][0]["processes"] == len(run["processes"]) == 7 + 3


# -- a hang ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_hang_recorded_as_timeout_and_kept_cells_stay(tmp_path, threadbench):
    out_file = tmp_path / "run.json"
    proc = threadbench("compare", *FAST, "--backends", "fault-hang", "--modes", "sequential", "--cell-timeout", "3",
                       "--out", str(out_file), env=ENV)
    assert proc.returncode == 1, proc.stderr[-2000:]
    got = cells(R.load(out_file))
    hung = got[("fault-hang", "mlp", "sequential", 1)]
    assert hung["status"] == "timeout" and hung["cause"].startswith("no result within 3 s"), hung
    assert 3 <= hung["wall_s"] < 60   # killed at its timeout, not left to run (60: a busy machine reaps slowly)
    # the sweep went on: every planned cell has a result. (The probes' own status is the machine's business:
    # under a 3 s --cell-timeout a busy machine may time them out too.)
    assert len(got) == len(R.load(out_file)["plan"]) and all(r["status"] for r in got.values())


# -- interrupts and --resume -----------------------------------------------------------------------------
# The hung cell would run until its --cell-timeout of 120 s; an interrupt that kills it stops the sweep in
# seconds (6.7 s measured with every core of a 2-core machine busy, ~1 s idle). Half the timeout tells the
# two apart on any machine without timing how fast this one is.
STOPS_WITHIN = 60
def _interrupt_while_hanging(out_file: Path, sig: int, backends: str):
    """Start a sweep whose last worker process holds a cell that hangs; once every cell before that one is
    saved and the hung cell runs, send `sig` to the threadbench process only (as `kill` would). Returns (proc,
    seconds to exit, the sweep's processes as they were, stderr, the cells after the hung one in its worker,
    which the interrupt leaves unmeasured)."""
    p = start("--backends", backends, "--modes", "sequential", "--cell-timeout", "120", "--out", str(out_file))
    deadline = time.monotonic() + 60
    workers, after = [], 0
    while time.monotonic() < deadline:
        assert p.poll() is None, p.communicate()
        # no file yet: threadbench is still starting (its children then are e.g. git, not cells)
        doc = json.loads(out_file.read_text()) if out_file.exists() else {"cells": [], "plan": [], "processes": []}
        workers = psutil.Process(p.pid).children(recursive=True)
        hung = next((i for i, c in enumerate(doc["plan"]) if c["backend"] == "fault-hang" and c["workload"] == "mlp"),
                    None)
        running = [w for w in doc.get("processes", []) if w["ended"] is None and hung in w["order"]]
        if running:   # the hung cell's worker runs; once the cells before the hung one are saved, it is in it
            order = running[0]["order"]
            after = len(order) - order.index(hung) - 1
            if len(doc["cells"]) == len(doc["plan"]) - 1 - after and workers:
                break
        time.sleep(0.1)
    else:
        p.kill()
        pytest.fail("the sweep never reached its hanging cell")
    time.sleep(0.3)  # the cell is inside forward() now
    t0 = time.monotonic()
    os.kill(p.pid, sig)
    _, err = p.communicate(timeout=STOPS_WITHIN + 30)
    return p, time.monotonic() - t0, workers, err, after


def _alive(workers):
    alive = []
    for w in workers:
        try:
            if w.is_running() and w.status() != psutil.STATUS_ZOMBIE:
                alive.append(w)
        except psutil.NoSuchProcess:
            pass
    return alive


def _assert_no_orphans(workers, within=0.5):
    deadline = time.monotonic() + within
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(workers)
    for w in alive:  # do not leave them behind for the next test
        w.kill()
    assert not alive, [w.pid for w in alive]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, starts_processes):
    out_file = tmp_path_factory.mktemp("sigint") / "run.json"
    p, took, workers, err, after = _interrupt_while_hanging(out_file, signal.SIGINT, "numpy,fault-hang")
    return out_file, p, took, workers, err, out_file.read_text(), after


def test_ctrl_c_stops_fast_kills_the_cell_and_keeps_finished_cells(interrupted):
    out_file, p, took, workers, err, text, after = interrupted
    kept = 2 * PROBES + 1 - after   # every cell but the hung one and those after it in its worker
    assert p.returncode == 130, err[-2000:]  # EXIT_INTERRUPTED
    assert took < STOPS_WITHIN, f"took {took:.1f} s to stop: it waited for the hung cell instead of killing it"
    assert "Traceback" not in err and f"interrupted: the {kept} finished cells are kept" in err
    _assert_no_orphans(workers)
    run = R.load(out_file)
    assert len(run["plan"]) == 2 * PROBES + 2 and len(run["cells"]) == kept
    assert ("fault-hang", "mlp", "sequential", 1) not in cells(run)
    assert cells(run)[("numpy", "mlp", "sequential", 1)]["status"] == "ok"
    assert run["processes"][-1]["end"] == "interrupted" and run["processes"][-1]["ended"] is not None
    probes = [r for k, r in cells(run).items() if k[1] == "matmul"]  # the faulty backend's too, before its hang
    assert len(probes) == 2 * PROBES - after and all(r["status"] in KEEP for r in probes)
    for r in probes:  # measured, or (a busy or slow machine) too slow with its numbers: never a failure
        assert r["status"] == "ok" or (r["status"] in ("too_slow", "skipped") and "longest window" in r["cause"]), r
    assert not list(out_file.parent.glob(".*.tmp")) and not list(out_file.parent.glob(".*.lock"))


@pytest.mark.slow
def test_sigterm_stops_fast_kills_the_cell_and_keeps_finished_cells(tmp_path):
    out_file = tmp_path / "run.json"
    p, took, workers, err, after = _interrupt_while_hanging(out_file, signal.SIGTERM, "fault-hang")
    assert p.returncode == 130, err[-2000:]
    assert took < STOPS_WITHIN, f"took {took:.1f} s to stop: it waited for the hung cell instead of killing it"
    assert "Traceback" not in err
    _assert_no_orphans(workers)
    run = R.load(out_file)
    assert len(run["cells"]) == PROBES - after and all(r["workload"] == "matmul" for r in run["rows"])


@pytest.mark.slow
def test_sigkill_of_threadbench_leaves_a_valid_file_and_no_orphan(tmp_path):
    """SIGKILL cannot be handled: the saved file must still be whole, and the cell's process (in its own
    session, so nothing else would end it) notices it lost its parent and exits."""
    out_file = tmp_path / "run.json"
    p, took, workers, err, after = _interrupt_while_hanging(out_file, signal.SIGKILL, "fault-hang")
    assert p.returncode == -signal.SIGKILL
    _assert_no_orphans(workers, within=5)
    run = R.load(out_file)
    assert len(run["cells"]) == PROBES - after and len(run["plan"]) == PROBES + 1
    assert run["processes"][-1]["ended"] is None   # the worker it was running when it was killed


def test_resume_runs_only_the_missing_cell_and_keeps_the_rest(interrupted, tmp_path, threadbench):
    src, *_, text, missing = interrupted
    out_file = tmp_path / "resumed.json"
    out_file.write_text(text)
    before = R.load(out_file)
    proc = threadbench("compare", "--resume", str(out_file), "--cell-timeout", "3", "-q", env=ENV)
    assert proc.returncode == 1, proc.stderr[-2000:]  # the hung cell hangs again: recorded as a timeout
    assert f"{1 + missing} of {2 * PROBES + 2} planned cells to run" in proc.stderr
    after = R.load(out_file)
    assert after["run_id"] == before["run_id"] and after["plan"] == before["plan"]
    assert after["rows"][:len(before["rows"])] == before["rows"]  # kept byte for byte, not re-measured
    assert cells(after)[("fault-hang", "mlp", "sequential", 1)]["status"] == "timeout"
    assert len({R.row_key(r) for r in after["rows"]}) == 2 * PROBES + 2
    assert after["resumed"][0]["cells"] == 1 + missing
    assert [p["number"] for p in after["processes"]] == list(range(1, len(after["processes"]) + 1))
    assert after["processes"][:len(before["processes"])] == before["processes"]   # the new workers follow
    assert after["resumed"][0]["threadbench_revision"] == after["host"]["threadbench_revision"]  # same checkout


def _row(status, threads):
    cell = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="threads", threads=threads)
    return cell, dict.fromkeys(R.ROW_FIELDS) | {
        "backend": "numpy", "device": "cpu", "dtype": "float64", "fp32_precision": cell.fp32_precision,
        "workload": "mlp", "size": "default", "mode": "threads", "threads": threads, "k": 1, "status": status}


def test_resume_keeps_finished_statuses_and_reruns_failed_and_missing():
    kept = ["ok", "too_slow", "unsupported", "unavailable", "skipped"]
    rerun = ["crash", "timeout", "error", "memory", "wrong"]
    pairs = [_row(s, i + 1) for i, s in enumerate(kept + rerun)]
    missing = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="threads", threads=99)
    run = {"plan": [c.to_dict() for c, _ in pairs] + [missing.to_dict()], "rows": [r for _, r in pairs]}
    todo = cells_to_rerun(run)
    assert [c.threads for c in todo] == [6, 7, 8, 9, 10, 99]


def test_resume_refuses_a_file_without_a_plan(tmp_path, threadbench):
    f = tmp_path / "old.json"
    R.save(R.new_run(["threadbench"], {"host": "h"}, {}), f)
    out = threadbench("compare", "--resume", str(f), env=ENV)
    assert out.returncode == 2 and "has no list of planned cells" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# -- several runs at once --------------------------------------------------------------------------
@pytest.mark.slow
def test_two_concurrent_runs_with_default_names_never_clobber(tmp_path):
    args = ("--backends", "numpy", "--modes", "sequential", "--no-peak-probe")
    procs = [start(*args, cwd=tmp_path) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    files = sorted((tmp_path / R.DEFAULT_RUNS).glob("*.json"))  # ad-hoc runs: ./runs/, never results/runs/
    assert len(files) == 2, files
    runs = [R.load(f) for f in files]
    assert runs[0]["run_id"] != runs[1]["run_id"]
    for run in runs:
        assert len({R.row_key(r) for r in run["rows"]}) == len(run["plan"]) == 1
        assert {r["run_id"] for r in run["rows"]} == {run["run_id"]}
    assert not [p for p in (tmp_path / R.DEFAULT_RUNS).iterdir() if p.name.startswith(".")]


def test_a_second_run_on_the_same_out_file_is_refused(tmp_path, threadbench):
    out_file = tmp_path / "run.json"
    with locked(out_file):  # as a running sweep holds it (flock: a second open file in one process is refused too)
        out = threadbench("compare", *FAST, "--backends", "numpy", "--out", str(out_file), env=ENV)
    assert out.returncode == 2, out.stderr
    assert f"another threadbench run (pid {os.getpid()}) is writing {out_file}" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not out_file.exists()


def test_saves_are_atomic(tmp_path, monkeypatch):
    """A save that fails half way leaves the previous file whole and no temporary file behind."""
    f = tmp_path / "run.json"
    run = R.new_run(["threadbench"], {"host": "h"}, {})
    R.save(run, f)
    good = f.read_text()
    run["backend_env"]["x"] = {"more": 1}

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        R.save(run, f)
    assert f.read_text() == good and [p.name for p in tmp_path.iterdir()] == ["run.json"]
