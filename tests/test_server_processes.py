"""The server scenario's `processes` strategy (compare.measure.server.ProcessPool): a real cell keeps every
rate step and checks outputs in the processes that ran them; one process dying or raising fails the cell with
its cause; no process is left behind. Faults come from tests/process_fault_plugin (process 2 of a cell only).
Nothing here asserts a speed: counts, structure, statuses."""
import json

import psutil
import pytest

from compare import results as R
from compare.cells import MODES, Cell
from compare.measure.server import STRATEGIES
from compare.options import runnable_modes

from test_processes import ENV, FAST, assert_none_left

VERIFY = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="server-processes").verify_ops


def server_row(run: dict, backend: str) -> list[dict]:
    return [r for r in run["rows"] if (r["backend"], r["mode"]) == (backend, "server-processes")]


def test_server_processes_is_runnable_and_in_all():
    assert "server-processes" in runnable_modes(MODES, STRATEGIES) and MODES["server-processes"].start_s > 0


@pytest.mark.slow
def test_a_server_processes_cell_and_its_faults(tmp_path, threadbench):
    """One sweep (numpy; a process killed by SIGSEGV at start-up, another in a rate step; a process raising),
    server-processes x2, a generous
    bound so the dispatcher's lag never decides (how many steps pass depends on the machine)."""
    out_file = tmp_path / "run.json"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    proc = threadbench("compare", *FAST, "--backends", "numpy,fault-one-segv,fault-one-raise,fault-one-later-segv",
                       "--modes", "server-processes", "--no-peak-probe", "--threads", "2", "--latency-bound-ms", "500",
                       "--cell-timeout", "400", "--out", str(out_file), env=ENV)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    run = R.load(out_file)
    steps = server_row(run, "numpy")
    assert steps and all(r["status"] == "ok" for r in steps), steps
    assert all(r["verdict"] and r["offered_rate"] > 0 and r["bound_ms"] == 500.0 for r in steps)
    assert all(r["ops"] >= 459 or "overloaded" in r["verdict"] for r in steps)
    assert [r["trial"] for r in steps] == list(range(len(steps)))  # every rate step a row of its own
    seen = set()
    for r in steps:  # a rate runs twice only to confirm it (compare.serverrules): again, or long
        assert (r["offered_rate"] in seen) == (r["step_kind"] != "search"), r
        seen.add(r["offered_rate"])
    # the worker's speed check, then verify_ops per process, each checked in the process that ran it
    assert steps[0]["checked"] == 1 + 2 * VERIFY and steps[0]["errors"] == 0, steps[0]
    assert steps[0]["intra_op_rule"].startswith("equal total threads:"), steps[0]
    rss = json.loads(steps[0]["process_rss_mb"])  # each process's memory, as in the processes mode
    assert len(rss) == 2 and all(m > 0 for m in rss) and steps[0]["total_rss_mb"] == pytest.approx(sum(rss))
    (segv,) = server_row(run, "fault-one-segv")
    assert segv["status"] == "crash" and segv["cause"] == "process 2 of 2 killed by SIGSEGV", segv
    (raised,) = server_row(run, "fault-one-raise")
    assert raised["status"] == "error", raised
    assert raised["cause"] == "process 2 of 2: RuntimeError: injected fault: forward failed", raised
    later = server_row(run, "fault-one-later-segv")  # died while serving: the cell fails, with its cause
    assert later and all(r["status"] == "crash" for r in later), later
    assert later[0]["cause"] == "process 2 of 2 killed by SIGSEGV", later[0]
    assert proc.returncode == 1  # some cells failed, the sweep did not
    assert_none_left()
    assert not {p.pid for p in psutil.Process().children(recursive=True)} - before
