"""Statistics across fresh processes (issue 11): the cell's interval over per-process medians, statuses that
carry no throughput, the speedup base and the ceiling taken only from right outputs, the anomaly flag, the
interleaved plan, the sweep and --resume with repeats, and diff's test on the same spread. Synthetic rows
and fake cell runs only: exact expectations, no timing."""
import json
from dataclasses import replace

import pytest
from scipy.stats import binom

import synthetic_runs as S
from compare import results as R
from compare import stats
from compare.cells import CRASH, OK, SKIPPED, TOO_SLOW, WRONG, Cell, CellResult
from compare.measure import plan as P
from compare.measure import runner
from compare.render import diff as D
from compare.render import report
from compare.resume import cells_to_rerun


def proc(c: Cell, repeat: int, ops: list[float], status: str = OK, cause: str = "") -> CellResult:
    return S.result(replace(c, repeat=repeat), ops, status, cause)


def summary(results) -> dict[tuple, dict]:
    return {(r["mode"], r["threads"], r["k"]): r for r in stats.summarize(S.run(results)["rows"]).to_dicts()}


# -- the interval ----------------------------------------------------------------------------------
def test_median_ci_uses_the_binomial_term_of_the_order_statistic_it_returns():
    low, high, level = stats.median_ci(list(range(1, 21)))
    # [x_(6), x_(15)] covers the median with 1 - 2 P(B <= 5), B ~ Bin(20, 1/2): 95.9%; [x_(7), x_(14)] 88.5%
    assert (low, high) == (6.0, 15.0)
    assert level == pytest.approx(1 - 2 * binom.cdf(5, 20, 0.5)) and level == pytest.approx(0.9586, abs=1e-4)
    assert stats.median_ci([3.0, 1.0, 2.0])[2] == pytest.approx(0.75)


def test_a_cell_of_several_processes_takes_its_interval_from_the_process_medians():
    c = S.cell(mode="threads", threads=2)
    windows = {0: [100, 101, 102, 103, 104], 1: [120, 121, 122, 123, 124], 2: [90, 91, 92, 93, 94]}
    s = summary([proc(c, r, w) for r, w in windows.items()])[("threads", 2, 1)]
    assert s["ops_per_s"] == 102.0                       # median of the process medians 102, 122, 92
    assert (s["ci_low"], s["ci_high"]) == (92.0, 122.0)  # between processes, not the ±2 inside one
    assert s["ci_level"] == pytest.approx(0.75) and s["ci_scope"] == "processes"
    assert (s["n_processes"], s["n_trials"]) == (3, 15)


def test_one_process_says_its_interval_covers_windows_only():
    s = summary([proc(S.cell(mode="sequential"), 0, [100, 101, 102, 103, 104])])[("sequential", 1, 1)]
    assert (s["ci_low"], s["ci_high"], s["ci_scope"], s["n_processes"]) == (100.0, 104.0, "windows", 1)
    assert s["ci_level"] == pytest.approx(1 - 2 / 32)


def test_unstable_at_ten_percent_spread():
    s = summary([proc(S.cell(mode="sequential"), 0, [80, 90, 100, 110, 120])])[("sequential", 1, 1)]
    assert s["iqr_rel"] == pytest.approx(0.20) and s["unstable"]   # 20%: above 10%, below e.g. 50%
    assert not summary([proc(S.cell(mode="sequential"), 0, [98, 99, 100, 101, 102])])[("sequential", 1, 1)]["unstable"]


# -- failed cells carry no throughput ----------------------------------------------------------------
NO_THROUGHPUT = ("ops_per_s", "ci_low", "ci_high", "ci_level", "iqr_rel", "tflops", "speedup", "pct_ceiling",
                 "pct_peak")


@pytest.mark.parametrize("status", ["wrong", "crash", "timeout", "error", "memory"])
def test_a_failed_cell_shows_no_throughput_in_summary_csv_or_json(status):
    seq = proc(S.cell(mode="sequential"), 0, [100.0] * 5)
    bad = proc(S.cell(mode="threads", threads=2), 0, [150.0] * 5, status, "outputs differ")  # measured, then failed
    run = S.run([seq, bad])
    s = summary([seq, bad])[("threads", 2, 1)]
    assert s["status"] == status and all(s[f] is None for f in NO_THROUGHPUT), s
    assert not s["unstable"]
    csv_line = next(line for line in report.to_csv(stats.summarize(run["rows"])).splitlines() if status in line)
    assert "150" not in csv_line
    cells = json.loads(report.to_json([run], stats.summarize(run["rows"])))["cells"]
    assert [c["ops_per_s"] for c in cells if c["status"] == status] == [None]
    assert [r["ops_per_s"] for r in run["rows"] if r["status"] == status] == [150.0] * 5   # raw rows keep them


def test_one_process_crashing_makes_the_cell_a_crash_and_keeps_the_finished_rows():
    c = S.cell(mode="threads", threads=2)
    results = [proc(c, 0, [100.0] * 5), proc(c, 1, [101.0] * 2, CRASH, "killed by SIGSEGV"), proc(c, 2, [99.0] * 5)]
    run = S.run(results)
    s = summary(results)[("threads", 2, 1)]
    assert s["status"] == CRASH and s["ops_per_s"] is None
    assert s["cause"] == "process 2 of 3: crash: killed by SIGSEGV"
    assert sorted({r["repeat"] for r in run["rows"]}) == [0, 1, 2] and len(run["rows"]) == 12


# -- speedup base and ceiling ----------------------------------------------------------------------
def test_speedup_is_over_the_ok_sequential_cell_never_threads_x1():
    results = [proc(S.cell(mode="sequential"), 0, [100.0] * 5),
               proc(S.cell(mode="threads", threads=1), 0, [50.0] * 5),
               proc(S.cell(mode="threads", threads=2), 0, [200.0] * 5)]
    s = summary(results)
    two = s[("threads", 2, 1)]
    assert two["speedup"] == pytest.approx(2.0) and two["speedup_base"] == "sequential"
    results[0] = proc(S.cell(mode="sequential"), 0, [100.0] * 5, WRONG)
    s = summary(results)   # a WRONG sequential cell is no base, and threads x1 does not silently replace it
    assert s[("threads", 2, 1)]["speedup"] is None and s[("threads", 2, 1)]["base_ops"] is None
    s = summary(results[1:])  # no sequential cell at all: threads x1, named as such
    two = s[("threads", 2, 1)]
    assert two["speedup"] == pytest.approx(4.0) and two["speedup_base"] == "threads ×1"


def ceiling_cells(k64_x2_status=OK):
    return [proc(S.cell(mode="sequential"), 0, [100.0] * 5),
            proc(S.cell(mode="threads", threads=2), 0, [150.0] * 5),
            proc(S.cell(mode="offline", k=64), 0, [300.0] * 5),
            proc(S.cell(mode="offline", threads=2, k=64), 0, [500.0] * 5, k64_x2_status),
            proc(S.cell(mode="offline", k=8), 0, [200.0] * 5)]


def test_ceiling_is_the_best_ok_configuration_and_is_named():
    s = summary(ceiling_cells())
    two = s[("threads", 2, 1)]
    assert two["ceiling_ops"] == 500.0 and two["ceiling_config"] == "offline ×2 k=64"
    assert two["pct_ceiling"] == pytest.approx(30.0) and two["ceiling_missing"] is None and not two["above_ceiling"]


def test_a_wrong_ceiling_configuration_leaves_the_ceiling_missing_with_the_reason():
    two = summary(ceiling_cells(WRONG))[("threads", 2, 1)]
    assert two["ceiling_ops"] is None and two["pct_ceiling"] is None and two["ceiling_config"] is None
    assert two["ceiling_missing"] == "offline ×2 k=64: wrong"   # not the 300 of k=64 on one thread in its place
    two = summary(ceiling_cells(TOO_SLOW))[("threads", 2, 1)]
    assert two["ceiling_missing"] == "offline ×2 k=64: too_slow"
    two = summary(ceiling_cells("unsupported"))[("threads", 2, 1)]   # not a configuration this backend has
    assert (two["ceiling_ops"], two["ceiling_config"], two["ceiling_missing"]) == (300.0, "offline k=64", None)


def test_a_cell_above_its_ceiling_beyond_the_intervals_is_an_anomaly_not_clamped():
    results = [proc(S.cell(mode="threads", threads=2), 0, [600, 610, 620, 630, 640]),
               proc(S.cell(mode="offline", k=8), 0, [480, 490, 500, 510, 520]),
               proc(S.cell(mode="threads", threads=4), 0, [505, 515, 525, 535, 545])]   # overlaps 480..520
    s = summary(results)
    assert s[("threads", 2, 1)]["above_ceiling"] and s[("threads", 2, 1)]["pct_ceiling"] == pytest.approx(124.0)
    assert not s[("threads", 4, 1)]["above_ceiling"] and s[("threads", 4, 1)]["pct_ceiling"] == pytest.approx(105.0)
    assert not s[("offline", 1, 8)]["above_ceiling"]


# -- plan, sweep and resume with repeats ------------------------------------------------------------
def test_repeats_are_interleaved_round_robin_and_ceilings_planned_at_one_and_most_threads():
    s = P.Settings(backends=("torch",), workloads=("mlp",), modes=("sequential", "threads", "offline"),
                   threads=(1, 4, 2), dtypes=("float32",), offline_k=(1, 8), repeats=3)
    t = Cell(backend="torch", device="cpu", dtype="float32", workload="mlp", mode="")
    cells = P._cells_for(t, s)
    assert [(c.mode, c.threads, c.k) for c in cells if c.mode == "offline"] == [
        ("offline", 1, 1), ("offline", 4, 1), ("offline", 1, 8), ("offline", 4, 8)]
    order = P.interleave(cells, s.repeats)
    assert len(order) == 3 * len(cells)
    assert [c.repeat for c in order] == [r for r in range(3) for _ in cells]
    assert [replace(c, repeat=0) for c in order[len(cells):2 * len(cells)]] == cells   # same order every round


def fake_sweep(monkeypatch, outcome):
    """runner.sweep with run_cell replaced: outcome(cell) -> (status, ops list); records what started."""
    started = []

    def run_cell(cell, cache, limits):
        started.append(cell)
        status, ops = outcome(cell)
        return S.result(cell, ops, status)
    monkeypatch.setattr(runner, "run_cell", run_cell)
    return started


def test_sweep_skips_larger_cells_in_every_round_once_too_slow_and_goes_on_after_a_crash(monkeypatch):
    cells = P.interleave([S.cell(mode="sequential"), S.cell(mode="threads", threads=2),
                          S.cell(workload="block", mode="sequential")], 2)

    def outcome(c):
        if c.workload == "mlp" and c.mode == "sequential" and c.repeat == 1:
            return TOO_SLOW, []
        if c.workload == "block" and c.repeat == 0:
            return CRASH, []
        return OK, [100.0] * 5
    started = fake_sweep(monkeypatch, outcome)
    got = [(r.cell.workload, r.cell.mode, r.cell.repeat, r.status) for r in runner.sweep(cells, runner.Limits())]
    assert got == [("mlp", "sequential", 0, OK), ("mlp", "threads", 0, OK), ("block", "sequential", 0, CRASH),
                   ("mlp", "sequential", 1, TOO_SLOW), ("mlp", "threads", 1, SKIPPED), ("block", "sequential", 1, OK)]
    assert len(started) == 5   # the skipped process never started


def test_resume_runs_only_the_missing_and_failed_processes_of_a_cell():
    a, b = S.cell(mode="sequential"), S.cell(mode="threads", threads=2)
    planned = P.interleave([a, b], 3)
    run = S.run([proc(a, 0, [100.0] * 5), proc(b, 0, [150.0] * 5), proc(a, 1, [101.0] * 5),
                 proc(b, 1, [1.0], CRASH, "killed"), proc(a, 2, [102.0] * 5)])
    run["plan"] = [c.to_dict() for c in planned]
    todo = cells_to_rerun(run)
    assert [(c.mode, c.repeat) for c in todo] == [("threads", 1), ("threads", 2)]
    R.drop_processes(run, {(*c.key(), c.repeat) for c in todo})
    assert sorted((r["mode"], r["repeat"]) for r in run["rows"] if r["trial"] in (0, None)) == [
        ("sequential", 0), ("sequential", 1), ("sequential", 2), ("threads", 0)]
    for c in todo:
        R.add_result(run, proc(b, c.repeat, [150.0] * 5))
    assert cells_to_rerun(run) == []
    s = {(r["mode"]): r for r in stats.summarize(run["rows"]).to_dicts()}
    assert s["threads"]["status"] == OK and s["threads"]["n_processes"] == 3


# -- diff on the same spread -----------------------------------------------------------------------
def test_diff_tests_per_process_medians_when_both_runs_have_several_processes():
    c = S.cell(mode="sequential")
    a = S.run([proc(c, r, [100.0 + r + 0.1 * i for i in range(5)]) for r in range(5)])
    b = S.run([proc(c, r, [130.0 + r + 0.1 * i for i in range(5)]) for r in range(5)])
    d = D.compare_runs(a, b).cells[0]
    assert d.unit == "processes" and (d.a_trials, d.b_trials) == (5, 5)
    assert d.p_value == pytest.approx(2 / 252) and d.verdict == D.FASTER
    b3 = S.run([proc(c, r, [130.0 + r] * 5) for r in range(3)])   # 5 vs 3 processes: p >= 2/56 reachable
    assert D.compare_runs(a, b3).cells[0].unit == "processes"
    one_a, one_b = (S.run([proc(c, 0, [x + 0.1 * i for i in range(5)])]) for x in (100.0, 130.0))
    windows = D.compare_runs(one_a, one_b)
    assert windows.cells[0].unit == "windows" and windows.cells[0].verdict == D.FASTER
    assert any("within-process noise only" in n for n in windows.notes)


def test_plan_interleaves_every_cell_of_the_sweep_including_the_peak_probe(monkeypatch):
    class Fake:
        name, devices, dtypes, fp32_precisions = "fake", ("cpu",), ("float32",), ("highest",)

        def device_status(self):
            return {"cpu": None}

        def default_device(self):
            return "cpu"
    monkeypatch.setattr(P.backends, "load", lambda name: Fake())
    s = P.Settings(backends=("fake",), workloads=("mlp", "block"), modes=("sequential", "threads"), threads=(2,),
                   dtypes=("float32",), repeats=2)
    cells, unavailable = P.plan(s)
    one_round = P.plan(replace(s, repeats=1))[0]
    assert not unavailable and len(cells) == 2 * len(one_round)
    assert {c.workload for c in one_round} >= {"mlp", "matmul"}
    assert cells == [replace(c, repeat=r) for r in range(2) for c in one_round]


def test_a_too_slow_larger_cell_does_not_skip_the_smaller_cells_of_later_rounds(monkeypatch):
    cells = P.interleave([S.cell(mode="sequential"), S.cell(mode="threads", threads=2),
                          S.cell(mode="threads", threads=4)], 2)
    fake_sweep(monkeypatch, lambda c: (TOO_SLOW, []) if (c.threads, c.repeat) == (2, 0) else (OK, [100.0] * 5))
    got = [(r.cell.threads, r.cell.repeat, r.status) for r in runner.sweep(cells, runner.Limits())]
    assert got == [(1, 0, OK), (2, 0, TOO_SLOW), (4, 0, SKIPPED), (1, 1, OK), (2, 1, SKIPPED), (4, 1, SKIPPED)]
