"""Worker processes that measure many cells (issue 19): the plan of worker processes (rounds, frameworks taking
turns, seeded shuffled orders), the parent's side of a sweep with a fake worker (the too-slow rule, a crash,
hang or death costing one cell, an exception, the last cell ending with the worker's exit, where the time
went), what a worker keeps between its cells and its loop over cells, in this process. Real worker
processes: tests/test_faults.py and tests/test_processes.py."""
import io
import json
import threading
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

import synthetic_runs as S
from compare.cells import CRASH, ERROR, OK, SKIPPED, TIMEOUT, TOO_SLOW, Cell
from compare.measure import build, worker
from compare.measure import plan as P
from compare.measure import runner
from compare.session import interval_line


def cells_of(backend: str, repeats: int = 1) -> list[Cell]:
    one = [S.cell(backend, mode="sequential"), S.cell(backend, mode="threads", threads=2),
           S.cell(backend, "block", mode="sequential"), S.cell(backend, "block", mode="threads", threads=2)]
    return P.interleave(one, repeats)


# -- the plan of worker processes ------------------------------------------------------------------------
def test_worker_plans_run_round_by_round_frameworks_taking_turns_each_process_one_group_in_a_seeded_order():
    planned = P.interleave([c for b in ("torch", "mlx") for c in cells_of(b)], 3)
    plans = P.worker_plans(planned, "run-1")
    assert [(p.round, dict(p.group)["backend"]) for p in plans] == [
        (0, "torch"), (0, "mlx"), (1, "torch"), (1, "mlx"), (2, "torch"), (2, "mlx")]
    assert sorted((c.key(), c.repeat) for p in plans for c in p.cells) == sorted((c.key(), c.repeat) for c in planned)
    for p in plans:
        assert {P.process_group(c) for c in p.cells} == {p.group} and {c.repeat for c in p.cells} == {p.round}
    assert [p.seed for p in plans] == [f"run-1/{i}" for i in range(1, 7)]
    orders = [tuple(replace(c, repeat=0) for c in p.cells) for p in plans if dict(p.group)["backend"] == "torch"]
    assert len(set(orders)) > 1, "every process of a framework measured its cells in the same order"
    assert P.worker_plans(planned, "run-1") == plans, "the order is not a function of the seed"
    assert [p.cells for p in P.worker_plans(planned, "run-2")] != [p.cells for p in plans]


def test_a_process_group_keeps_apart_what_one_process_cannot_hold():
    c = S.cell(mode="sequential")
    assert P.process_group(c) == P.process_group(replace(c, workload="block", dtype="bfloat16", mode="threads",
                                                         threads=4, fp32_precision="high", repeat=2))
    for other in (replace(c, backend="mlx"), replace(c, device="cuda"), replace(c, intra_op_threads=1),
                  replace(c, backend_options=(("torch.x", "y"),))):
        assert P.process_group(other) != P.process_group(c)


def test_process_per_cell_plans_each_cell_process_alone_in_plan_order():
    planned = P.interleave(cells_of("torch"), 2)
    plans = P.worker_plans(planned, "run-1", alone=True)
    assert [p.cells for p in plans] == [(c,) for c in planned] and [p.round for p in plans] == [0] * 4 + [1] * 4


# -- the parent's side, with a fake worker ------------------------------------------------------------------
class FakeWorker(runner.Worker):
    """A worker that measures nothing: outcome(cell) says what happens to each cell it is sent. (status, ops)
    reports that status with those windows; CRASH dies in the cell; TIMEOUT hangs in it; "dies-between"
    dies before it begins the cell; "exit-abort" measures it and then dies at exit; a "result" dict joins the
    cell's result event (e.g. the speed check's op_s)."""

    def __init__(self, outcome, log: list):
        self.outcome, self.log = outcome, log
        self.events, self.measured, self.started = [{"event": "start", "t": 100.25}], 0, 100.0
        self.popen = SimpleNamespace(returncode=None, pid=1000 + len(log))
        self.exit_rc, self.sent = 0, []
        log.append(self)

    def send(self, index, cell):
        self.measured += 1
        self.sent.append(cell)
        if getattr(self, "leaves", False):  # it ended itself after the last cell: this one never begins
            self.popen.returncode = 0
            return
        status, ops, *extra = self.outcome(cell)
        if status == "dies-between":
            self.popen.returncode = -9
            return
        self.events.append({"event": "begin", "cell": index, "t": 1.0})
        if status == CRASH:
            self.popen.returncode = -11
            return
        if status == TIMEOUT:
            self.hung = True
            return
        if status == "exit-abort":
            status, self.exit_rc = OK, -6
        after = status
        if status in ("dies-after", "leaves"):
            status = OK
        self.events += [{"event": "trial", "cell": index, "ops": v, "seconds": 1.0} for v in ops]
        self.events += [{"event": "result", "cell": index, **(extra[0] if extra else {})},
                        {"event": "times", "cell": index, "cell_s": 3.0, "build_s": 0.5, "refs_s": 0.25,
                         "warmup_s": 0.5, "timed_s": 1.0 * len(ops)},
                        {"event": "status", "cell": index, "status": status, "cause": "why" if status != OK else ""}]
        if after == "dies-after":   # it reported, then died before the next cell
            self.popen.returncode = -11
        if after == "leaves":
            self.events.append({"event": "leaving", "cause": "a cell left 1 thread(s) running (tb-0)"})
            self.leaves = True

    def watch(self, index, deadline, mem_mb, until_exit=False):
        if getattr(self, "hung", False):
            self.popen.returncode = -9
            return TIMEOUT, "no result within {:.0f} s (hung or far too slow); killed"
        if until_exit and self.popen.returncode is None:
            self.popen.returncode = self.exit_rc
        return None

    def read(self):
        pass

    def close_input(self):
        self.closed = True

    def kill(self):
        self.popen.returncode = -9

    def log_tail(self, lines=3):
        return ""


def fake_sweep(plans, outcome, limits=None):
    """(results, the sweep, the fake workers it started)."""
    log: list[FakeWorker] = []
    sweep = runner.Sweep(plans, limits or runner.Limits(cell_timeout=60), start=lambda cache, folder, *interpreter:
                         FakeWorker(outcome, log))
    return list(sweep), sweep, log


def one_process(cells, round=0):
    return P.WorkerPlan(round, P.process_group(cells[0]), tuple(cells), "seed")


def ok(cell):
    return OK, [100.0] * 3


def test_a_too_slow_cell_skips_the_larger_cells_of_its_mode_in_its_process_and_in_later_rounds():
    seq, t2, t4 = S.cell(mode="sequential"), S.cell(mode="threads", threads=2), S.cell(mode="threads", threads=4)
    plans = [one_process([t2, seq, t4]), one_process([replace(c, repeat=1) for c in (t4, t2, seq)], round=1)]
    got, _, workers = fake_sweep(plans, lambda c: (TOO_SLOW, []) if (c.threads, c.repeat) == (2, 0) else ok(c))
    assert [(r.cell.threads, r.cell.mode, r.cell.repeat, r.status) for r in got] == [
        (2, "threads", 0, TOO_SLOW), (1, "sequential", 0, OK), (4, "threads", 0, SKIPPED),
        (4, "threads", 1, SKIPPED), (2, "threads", 1, SKIPPED), (1, "sequential", 1, OK)]
    assert "threads ×2 was already too slow (why)" in got[2].cause
    assert [len(w.sent) for w in workers] == [2, 1], "a skipped cell was sent to a worker"


def test_a_larger_cell_measured_before_the_smaller_one_was_too_slow_keeps_its_result():
    t2, t4 = S.cell(mode="threads", threads=2), S.cell(mode="threads", threads=4)
    got, *_ = fake_sweep([one_process([t4, t2])], lambda c: (TOO_SLOW, []) if c.threads == 2 else ok(c))
    assert [(r.cell.threads, r.status) for r in got] == [(4, OK), (2, TOO_SLOW)]


def test_a_too_slow_mode_skips_its_own_larger_cells_not_another_modes():
    """Seen on this CPU (transformer): batched ×2 too slow had skipped processes ×2, which holds the window."""
    plan = [S.cell(mode="sequential"), S.cell(mode="batched", threads=2), S.cell(mode="batched", threads=4),
            S.cell(mode="processes", threads=1), S.cell(mode="processes", threads=2),
            S.cell(mode="offline", k=8), S.cell(mode="offline", k=64), S.cell(mode="offline", k=8, threads=2)]
    got, *_ = fake_sweep([one_process(plan)], lambda c: (TOO_SLOW, []) if (c.mode, c.threads) == ("batched", 2)
                         or (c.k, c.threads) == (8, 1) else ok(c))
    assert [(r.cell.mode, r.cell.threads, r.cell.k, r.status) for r in got] == [
        ("sequential", 1, 1, OK), ("batched", 2, 1, TOO_SLOW), ("batched", 4, 1, SKIPPED),
        ("processes", 1, 1, OK), ("processes", 2, 1, OK), ("offline", 1, 8, TOO_SLOW),
        ("offline", 1, 64, SKIPPED), ("offline", 2, 8, SKIPPED)]


def test_too_slow_under_one_interpreter_skips_nothing_under_another():
    """The GIL changes what is too slow: threads ×2 with it may miss the window where without it they do not."""
    ft = dict(python="/ft/python", python_label="CPython 3.13.5t")
    cells = [replace(S.cell(mode="threads", threads=2), gil="on", **ft),
             replace(S.cell(mode="threads", threads=4), gil="on", **ft),
             replace(S.cell(mode="threads", threads=4), gil="off", **ft), S.cell(mode="threads", threads=4)]
    got, *_ = fake_sweep([one_process([c]) for c in cells],
                         lambda c: (TOO_SLOW, []) if (c.threads, c.gil) == (2, "on") else ok(c))
    assert [r.status for r in got] == [TOO_SLOW, SKIPPED, OK, OK]
    assert "[CPython 3.13.5t GIL on] was already too slow" in got[1].cause


def test_one_request_too_slow_alone_skips_every_cell_of_the_workload():
    mlp = [S.cell(mode="threads", threads=2), S.cell(mode="sequential"), S.cell(mode="processes", threads=2),
           S.cell(mode="offline", k=8)]
    block = S.cell(workload="block", mode="sequential")
    got, _, workers = fake_sweep([one_process([mlp[1], *mlp[2:], mlp[0], block])],
                                 lambda c: (TOO_SLOW, []) if c.workload == "mlp" else ok(c))
    assert [(r.cell.workload, r.cell.mode, r.status) for r in got] == [
        ("mlp", "sequential", TOO_SLOW), ("mlp", "processes", SKIPPED), ("mlp", "offline", SKIPPED),
        ("mlp", "threads", SKIPPED), ("block", "sequential", OK)]
    assert len(workers[0].sent) == 2


def test_a_speed_check_that_finds_one_op_alone_too_slow_skips_the_workload_from_any_cell():
    """threads ×4's speed check times single ops on the main thread before any other starts: an op longer
    than a tenth of the longest window means one request alone is too slow, as sequential would find."""
    t4, seq, t2 = S.cell(mode="threads", threads=4), S.cell(mode="sequential"), S.cell(mode="threads", threads=2)
    cap = t4.window_cap
    slow_op = lambda c: (TOO_SLOW, [], {"op_s": cap / 5}) if c.threads == 4 else ok(c)  # noqa: E731
    got, *_ = fake_sweep([one_process([t4, seq, t2])], slow_op)
    assert [r.status for r in got] == [TOO_SLOW, SKIPPED, SKIPPED]
    # too slow only once the threads shared the machine (the speed check passed): the smaller cells run
    crowded = lambda c: (TOO_SLOW, [], {"op_s": cap / 50}) if c.threads == 4 else ok(c)  # noqa: E731
    got, *_ = fake_sweep([one_process([t4, seq, t2])], crowded)
    assert [r.status for r in got] == [TOO_SLOW, OK, OK]
    # an offline batch of k requests too slow says nothing about one request
    k8 = S.cell(mode="offline", k=8)
    got, *_ = fake_sweep([one_process([k8, seq])], lambda c: (TOO_SLOW, [], {"op_s": cap}) if c.k == 8 else ok(c))
    assert [r.status for r in got] == [TOO_SLOW, OK]


def test_a_crash_costs_only_its_cell_and_the_rest_go_on_in_a_fresh_worker_that_continues_it():
    a, b, c = S.cell(mode="sequential"), S.cell(mode="threads", threads=2), S.cell(mode="threads", threads=4)
    got, sweep, workers = fake_sweep([one_process([a, b, c])], lambda x: (CRASH, []) if x.threads == 2 else ok(x))
    assert [(r.cell.threads, r.status) for r in got] == [(1, OK), (2, CRASH), (4, OK)]
    assert got[1].cause == "killed by SIGSEGV" and got[0].trials and got[2].trials
    assert [[x.threads for x in w.sent] for w in workers] == [[1, 2], [4]]
    first, second = sweep.records
    assert (first.number, second.number, second.continues, second.order) == (1, 2, 1, [c])
    assert first.end == "died in cell 2 of 3: killed by SIGSEGV" and second.end == "ended after its last cell"


def test_a_hang_is_a_timeout_of_that_cell_only():
    a, b = S.cell(mode="sequential"), S.cell(mode="threads", threads=2)
    got, sweep, workers = fake_sweep([one_process([a, b])], lambda x: (TIMEOUT, []) if x.threads == 1 else ok(x),
                                     runner.Limits(cell_timeout=7))
    assert [(r.status, r.cause) for r in got] == [(TIMEOUT, "no result within 7 s (hung or far too slow); killed"),
                                                  (OK, "")]
    assert len(workers) == 2 and sweep.records[0].end == "killed in cell 1 of 2: timeout"


def test_an_exception_is_its_cells_error_and_the_worker_goes_on():
    a, b = S.cell(mode="sequential"), S.cell(mode="threads", threads=2)
    got, _, workers = fake_sweep([one_process([a, b])], lambda x: (ERROR, []) if x.threads == 1 else ok(x))
    assert [r.status for r in got] == [ERROR, OK] and len(workers) == 1


def test_the_last_cell_ends_with_its_workers_exit_and_a_death_at_exit_is_its_crash_naming_the_others():
    a, b, c = S.cell(mode="sequential"), S.cell(mode="threads", threads=2), S.cell(mode="threads", threads=4)
    got, sweep, workers = fake_sweep([one_process([a, b, c])], lambda x: ("exit-abort", [100.0] * 3))
    assert [r.status for r in got] == [OK, OK, CRASH] and workers[0].closed
    assert got[2].cause.startswith("killed by SIGABRT after reporting its result (at exit); its process measured "
                                   "2 other cell(s) before it, and the exit may owe to any of them")
    assert got[2].trials, "the measured trials of a cell that died at exit are kept"
    # the last cell a worker is sent is the last the too-slow rule lets run, not the plan's last
    got, _, workers = fake_sweep([one_process([b, a, c])], lambda x: (TOO_SLOW, []) if x.threads == 1 else ok(x))
    assert [r.status for r in got] == [OK, TOO_SLOW, SKIPPED]
    assert workers[0].sent == [b, a] and workers[0].closed and workers[0].popen.returncode == 0


def test_a_worker_that_dies_between_cells_is_replaced_and_the_cell_measured_in_the_fresh_one():
    a, b = S.cell(mode="sequential"), S.cell(mode="threads", threads=2)
    deaths = []

    def outcome(x):
        if x.threads == 2 and not deaths:
            deaths.append(x)
            return "dies-between", []
        return ok(x)
    got, sweep, workers = fake_sweep([one_process([a, b])], outcome)
    assert [r.status for r in got] == [OK, OK] and len(workers) == 2
    assert sweep.records[0].end == "died between cells, after cell 1 of 2: killed by SIGKILL"
    # a fresh worker that dies before it begins its first cell: that cell's crash, as a worker of its own was
    got, _, workers = fake_sweep([one_process([b, a])], lambda x: ("dies-between", []) if x.threads == 2 else ok(x))
    assert [(r.cell.threads, r.status) for r in got] == [(2, CRASH), (1, OK)] and len(workers) == 2


def test_a_death_after_a_cell_reported_is_its_workers_and_the_next_cell_goes_to_a_fresh_one():
    a, b, c = S.cell(mode="sequential"), S.cell(mode="threads", threads=2), S.cell(mode="threads", threads=4)
    got, sweep, workers = fake_sweep([one_process([a, b, c])],
                                     lambda x: ("dies-after", [100.0] * 3) if x.threads == 1 else ok(x))
    assert [r.status for r in got] == [OK, OK, OK] and [len(w.sent) for w in workers] == [1, 2]
    assert sweep.records[0].end == "died after cell 1 of 3 reported, before the next began: killed by SIGSEGV"
    # a worker that ended itself after a cell (it left a thread running): the next cell goes to a fresh one
    got, sweep, workers = fake_sweep([one_process([a, b, c])],
                                     lambda x: ("leaves", [100.0] * 3) if x.threads == 1 else ok(x))
    assert [r.status for r in got] == [OK, OK, OK] and [[x.threads for x in w.sent] for w in workers] == [[1, 2],
                                                                                                          [2, 4]]
    assert sweep.records[0].end == "ended after cell 1 of 3: a cell left 1 thread(s) running (tb-0)"
    assert sweep.records[1].continues == 1 and sweep.records[1].order == [b, c]


def test_the_time_split_sums_what_the_workers_report_and_the_rest_is_other():
    a, b = S.cell(mode="sequential"), S.cell(mode="threads", threads=2)
    _, sweep, _ = fake_sweep([one_process([a, b]), one_process([replace(a, repeat=1)], round=1)], ok)
    split = sweep.split.shares(20.0)
    assert split["measuring_s"] == 9.0 and split["warming_up_s"] == 1.5
    assert split["start_up_detail_s"] == {"process_start": 0.5, "builds": 1.5, "references": 0.75}
    assert split["start_up_s"] == 2.75 and split["other_s"] == pytest.approx(20 - 9 - 1.5 - 2.75)
    assert split["measuring_share"] == pytest.approx(0.45)
    assert [(t["at"], t["timed_s"], t["build_s"]) for t in sweep.records[0].times] == [(0, 3.0, 0.5), (1, 3.0, 0.5)]


def test_a_run_says_what_its_intervals_span():
    planned = [c.to_dict() for c in P.interleave(cells_of("torch"), 5)]
    assert "over 5 fresh processes per cell" in interval_line({"plan": planned})
    assert "at 93.8% (ci_scope processes)" in interval_line({"plan": planned})
    assert "over one process's windows only" in interval_line({"plan": planned[:4]})


# -- in a worker process ------------------------------------------------------------------------------------
def numpy_cell(**kw) -> Cell:
    return Cell(**{"backend": "numpy", "device": "cpu", "dtype": "float64", "workload": "mlp", "mode": "sequential",
                   "duration": 0.05, "trials": 2, "warmup": 1, "verify_ops": 1, **kw})


def test_a_worker_keeps_one_model_per_build_key_and_its_weights_and_references(tmp_path, monkeypatch):
    held = build.Held(tmp_path)
    built = []
    backend = held.backend("numpy")
    real = type(backend).build
    monkeypatch.setattr(type(backend), "build", lambda self, *a: built.append(a[0].batch) or real(self, *a))
    seq = numpy_cell()
    assert held.model(backend, seq) is held.model(backend, replace(seq, mode="threads", threads=4, repeat=3))
    assert held.model(backend, replace(seq, mode="offline", k=8)) is not held.model(backend, seq)
    assert held.model(backend, replace(seq, seed=1)) is not held.model(backend, seq)
    assert built == [4, 32, 4] and held.backend("numpy") is backend
    assert held.workload(seq) is held.workload(replace(seq, dtype="float32", mode="offline", k=8))
    assert held.build_s > 0


def test_the_worker_measures_the_cells_it_reads_naming_each_in_its_events(tmp_path, monkeypatch):
    cells = [numpy_cell(duration=0.2), numpy_cell(mode="threads", threads=2, duration=0.2),
             numpy_cell(backend="no-such-backend")]
    lines = "".join(json.dumps({"index": i, "cell": c.to_dict()}) + "\n" for i, c in enumerate(cells))
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    events_path = tmp_path / "events.jsonl"
    assert worker.main([str(events_path), str(tmp_path)]) == 0
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert [e["event"] for e in events if "cell" not in e] == ["start"]
    for i in range(3):
        own = [e["event"] for e in events if e.get("cell") == i]
        assert own[0] == "begin" and own[-2:] == ["times", "status"], own
    statuses = [e for e in events if e["event"] == "status"]
    assert [e["status"] for e in statuses[:2]] == [OK, OK] and statuses[2]["status"] == ERROR, statuses
    results = [runner._result(c, [e for e in events if e.get("cell") == i]) for i, c in enumerate(cells)]
    assert results[0].trials and results[1].trials and results[0].peak_rss_mb > 0


def test_a_cell_that_leaves_a_thread_running_ends_its_worker(tmp_path, monkeypatch):
    stop = threading.Event()
    real = worker._measure

    def leaves_one(cell, events, held, times):
        threading.Thread(target=stop.wait, name="left-behind", daemon=True).start()
        return real(cell, events, held, times)
    monkeypatch.setattr(worker, "_measure", leaves_one)
    monkeypatch.setattr(worker, "LEFTOVER_JOIN_S", 0.05)
    lines = "".join(json.dumps({"index": i, "cell": numpy_cell().to_dict()}) + "\n" for i in range(2))
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    events_path = tmp_path / "events.jsonl"
    try:
        assert worker.main([str(events_path), str(tmp_path)]) == 0
    finally:
        stop.set()
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert [e.get("cell") for e in events if e["event"] == "status"] == [0], "the worker went on to the next cell"
    assert [e["cause"] for e in events if e["event"] == "leaving"] == [
        "numpy/cpu/float64 mlp sequential left 1 thread(s) running (left-behind)"]


# -- a real sweep of two rounds --------------------------------------------------------------------------
# --duration of the real sweep below. A cell is too slow once 10 ops outgrow its longest window (4 x --duration),
# and a too-slow cell is measured without a timed window and skips its mode's larger cells, in later rounds too.
# On a loaded 2-core machine (load ~7) this mlp's 0.3 ms op took up to 35 ms (a median of the speed check,
# the BLAS pool's threads waiting for cores), against 40 ms allowed at --duration 0.1: 0.3 allows 120 ms.
REAL_SWEEP_DURATION = "0.3"


@pytest.mark.slow
def test_a_sweep_of_two_rounds_runs_a_worker_per_round_and_says_what_its_intervals_span(tmp_path, threadbench):
    out_file = tmp_path / "run.json"
    out = threadbench("compare", "--backends", "numpy", "--dtype", "float64", "--workloads", "mlp", "--modes",
                      "sequential,threads", "--threads", "1,2", "--trials", "2", "--duration", REAL_SWEEP_DURATION,
                      "--warmup", "1", "--repeats", "2", "--no-peak-probe", "-q", "--out", str(out_file))
    assert out.returncode == 0, out.stderr[-2000:]
    run = json.loads(out_file.read_text())
    # every cell measured, first: a cell too slow on a busy machine says so here, not as a worker's odd order
    assert [f"{r['mode']} x{r['threads']} round {r['repeat']}: {r['status']} ({r['cause']})"
            for r in run["rows"] if r["status"] != OK] == []
    workers = run["processes"]
    assert [(w["number"], w["round"], w["continues"], w["end"]) for w in workers] == [
        (1, 0, None, "ended after its last cell"), (2, 1, None, "ended after its last cell")]
    assert sorted(i for w in workers for i in w["order"]) == list(range(len(run["plan"])))
    for w in workers:   # each measured its round's cells, every one once
        assert {run["plan"][i]["repeat"] for i in w["order"]} == {w["round"]} and w["measured"] == 3
        assert sorted(t["at"] for t in w["times"]) == [0, 1, 2] and all(t["timed_s"] > 0 for t in w["times"])
        assert w["startup_s"] > 0 and w["ended"] > w["started"]
    assert {(r["repeat"], r["status"]) for r in run["rows"]} == {(0, OK), (1, OK)}
    (split,) = run["time_split"]
    assert split["processes"] == 2 and 0 < split["measuring_share"] < 1 and split["start_up_s"] > 0
    assert "intervals: the median over 2 fresh processes per cell and its distribution-free interval at 50.0% " \
           "(ci_scope processes)" in out.stderr
    assert "time: " in out.stderr and "in 2 worker processes: measuring" in out.stderr


# -- the reference cache a sweep's workers share, and later sweeps too (compare --cache-dir) ----------------
def test_a_named_cache_gives_a_later_process_every_reference_untouched_and_recomputes_a_file_it_cannot_trust(
        tmp_path, monkeypatch):
    computed = []   # references computed (and written): the numpy backend's own forward is the reference too
    real = build.atomic_write
    monkeypatch.setattr(build, "atomic_write", lambda path, **kw: computed.append(path) or real(path, **kw))
    cell = numpy_cell(mode="threads", threads=2, duration=0.25)   # windows a loaded host still fills (0.05: too slow)

    def run_once() -> dict:   # a fresh Held: what a later worker process, or a later invocation, starts with
        events_path = tmp_path / f"events-{len(list(tmp_path.glob('events-*')))}.jsonl"
        worker.run_cell(cell, worker.Events(str(events_path), cell=0), tmp_path / "refs")
        events = [json.loads(line) for line in events_path.read_text().splitlines()]
        assert [e["status"] for e in events if e["event"] == "status"] == [OK], events[-1]
        return next(e for e in events if e["event"] == "times")

    run_once()
    files = sorted((tmp_path / "refs").glob("mlp-*.npy"))
    assert len(files) == 2 and len(computed) == 2   # one per client's request, each computed once
    stamps = {f: f.stat().st_mtime_ns for f in files}
    run_once()
    assert len(computed) == 2 and {f: f.stat().st_mtime_ns for f in files} == stamps, "recomputed or rewritten"
    files[0].write_bytes(files[0].read_bytes()[:100])   # cut short, as by a crash of a writer with no rename
    files[1].write_bytes(b"not a numpy file")
    assert run_once()["refs_s"] > 0 and len(computed) == 4
    assert all(np.load(f).dtype == np.float64 for f in files) and not list((tmp_path / "refs").glob(".*.tmp"))


def test_a_cached_references_name_covers_what_it_depends_on_its_size_seed_input_and_code(tmp_path):
    spec = build.workloads.make("mlp")
    path = build.reference_path(spec, 0, 1, tmp_path)
    assert path == build.reference_path(build.workloads.make("mlp"), 0, 1, tmp_path)
    others = [build.reference_path(spec.with_batch(spec.batch + 1), 0, 1, tmp_path),
              build.reference_path(spec, 1, 1, tmp_path), build.reference_path(spec, 0, 2, tmp_path),
              build.reference_path(build.workloads.make("block"), 0, 1, tmp_path),
              build.reference_path(OtherMlp(), 0, 1, tmp_path)]   # the same name and knobs, other code
    assert len({path, *others}) == 6


class OtherMlp(type(build.workloads.make("mlp"))):   # a subclass here: its code is this file's as well
    pass


def test_processes_computing_one_reference_at_once_each_get_it_whole_and_one_file_remains(tmp_path):
    spec = build.workloads.make("mlp")
    params = spec.init_weights(0)
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(build.reference(spec, params, 3, 0, tmp_path)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = spec.reference(params, spec.make_input(3))
    assert len(got) == 4 and all(np.array_equal(g, expected) for g in got)
    assert [p.name for p in tmp_path.iterdir()] == [build.reference_path(spec, 0, 3, tmp_path).name]


@pytest.mark.parametrize("inside", [False, True], ids=["a file", "a folder in a file"])
def test_a_cache_dir_that_is_a_file_or_cannot_be_made_is_one_line_and_exit_2(tmp_path, threadbench, inside):
    (tmp_path / "f").write_text("")
    folder = tmp_path / "f" / "refs" if inside else tmp_path / "f"
    out = threadbench("compare", "--backends", "numpy", "--dtype", "float64", "--workloads", "mlp", "--modes",
                      "sequential", "--threads", "1", "--repeats", "1", "-q", "--cache-dir", str(folder),
                      "--out", str(tmp_path / "run.json"))
    assert out.returncode == 2 and not (tmp_path / "run.json").exists()
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("threadbench: error: --cache-dir: "), out.stderr


@pytest.mark.slow
def test_a_second_compare_with_the_same_cache_dir_reads_the_references_the_first_wrote(tmp_path, threadbench):
    cache = tmp_path / "refs"
    args = ("compare", "--backends", "numpy", "--dtype", "float64", "--workloads", "mlp", "--modes", "threads",
            "--threads", "2", "--trials", "1", "--duration", REAL_SWEEP_DURATION, "--warmup", "1", "--repeats", "1",
            "--no-peak-probe", "-q", "--cache-dir", str(cache))
    first = threadbench(*args, "--out", str(tmp_path / "first.json"))
    assert first.returncode == 0, first.stderr[-2000:]
    stamps = {f: f.stat().st_mtime_ns for f in cache.glob("mlp-*.npy")}
    second = threadbench(*args, "--out", str(tmp_path / "second.json"))
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(stamps) == 2 and {f: f.stat().st_mtime_ns for f in cache.glob("mlp-*.npy")} == stamps
    runs = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("first", "second")]
    assert [r["status"] for run in runs for r in run["rows"]] == [OK, OK]
