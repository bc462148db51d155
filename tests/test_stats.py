"""Statistics across fresh processes (issue 11): the cell's interval over per-process medians, statuses that
carry no throughput, the speedup base and the ceiling taken only from right outputs, the anomaly flag, the
interleaved plan and --resume with repeats, and diff's test on the same spread (the sweep's too-slow rule:
tests/test_sweep.py). Synthetic rows only: exact expectations, no timing."""
import json
from dataclasses import replace

import pytest
from scipy.stats import binom

import synthetic_runs as S
from compare import results as R
from compare import stats
from compare.cells import CRASH, OK, TOO_SLOW, WRONG, Cell, CellResult
from compare.measure import plan as P
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


def test_unstable_is_the_spread_inside_a_process_not_between_processes():
    """Steady processes that differ (100 vs 200 ops/s) are not UNSTABLE: the interval spans that difference."""
    c = S.cell(mode="sequential")
    steady = summary([proc(c, 0, [100, 100, 101, 100, 100]), proc(c, 1, [200, 201, 200, 200, 200]),
                      proc(c, 2, [150, 150, 150, 151, 150])])[("sequential", 1, 1)]
    assert not steady["unstable"] and steady["iqr_rel"] < 0.01 and (steady["ci_low"], steady["ci_high"]) == (100, 200)
    noisy = summary([proc(c, 0, [80, 90, 100, 110, 120]), proc(c, 1, [160, 180, 200, 220, 240]),
                     proc(c, 2, [99, 100, 100, 100, 101])])[("sequential", 1, 1)]
    assert noisy["unstable"] and noisy["iqr_rel"] == pytest.approx(0.20)   # the median process's 20%


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
    assert "150" not in csv_line.partition(",")[2]  # after the run id, whose time of day may read "...150..."
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


# -- edges a mutation run found unguarded (benchmarks/mutation.md) ---------------------------------------
def test_median_ci_at_zero_one_and_two_values_and_at_the_level_boundary():
    assert all(v != v for v in stats.median_ci([])), "no values must give a NaN interval and level"
    assert stats.median_ci([7]) == (7.0, 7.0, 0.0), "one value is a zero-level interval at that value"
    assert stats.median_ci([9, 7]) == (7.0, 9.0, 0.5), "two values: [min, max] at level 1 - 2 * 0.5**2"
    assert isinstance(stats.median_ci([1, 2])[0], float), "the interval's ends are floats"
    # n = 6: [x_(2), x_(5)] covers 1 - 2 P(B <= 1) = 78.1%; at exactly that level it must still be taken
    at = 1 - 2 * binom.cdf(1, 6, 0.5)
    assert stats.median_ci(range(1, 7), level=at)[:2] == (2.0, 5.0), "an interval that exactly reaches the level was refused"
    # n = 8: j runs to 3 (not n // 3 = 2): [x_(4), x_(5)] covers 27.3%, asked for 20%
    assert stats.median_ci(range(1, 9), level=0.2)[:2] == (4.0, 5.0), "the narrowest order-statistic interval was not reached"
    assert stats.median_ci(range(1, 9), level=0.99)[:2] == (1.0, 8.0), "below the level, [min, max] stays"


def test_two_processes_already_give_a_between_process_interval():
    c = S.cell(mode="sequential")
    s = summary([proc(c, 0, [100, 101, 102]), proc(c, 1, [200, 201, 202])])[("sequential", 1, 1)]
    assert (s["ci_scope"], s["n_processes"], s["ci_low"], s["ci_high"]) == ("processes", 2, 101.0, 201.0), \
        "two processes must pool into an interval over their two medians"


def test_a_cell_without_any_window_has_no_process_and_no_throughput():
    s = summary([proc(S.cell(mode="sequential"), 0, [], TOO_SLOW, "one op takes 9 s")])[("sequential", 1, 1)]
    assert (s["n_processes"], s["ops_per_s"], s["ci_level"]) == (0, None, None), "a cell with no window counted a process"


def test_the_worst_process_names_the_cell_status_and_its_cause_exactly():
    c = S.cell(mode="threads", threads=2)
    s = summary([proc(c, 0, [100.0] * 3), proc(c, 1, [100.0] * 3, WRONG, "rel err 0.9"),
                 proc(c, 2, [100.0] * 3, WRONG, "rel err 0.4")])[("threads", 2, 1)]
    assert (s["status"], s["cause"]) == (WRONG, "process 2 of 3: wrong: rel err 0.9"), \
        "the first worst process (lowest repeat) must name the cause"
    s = summary([proc(c, 0, [100.0] * 3), proc(c, 1, [], CRASH)])[("threads", 2, 1)]
    assert s["cause"] == "process 2 of 2: crash", "a process without a cause must not add an empty one"
    one = summary([proc(c, 0, [], CRASH, "")])[("threads", 2, 1)]
    assert (one["status"], one["cause"]) == (CRASH, ""), "one process's failure is not renamed 'process 1 of 1'"
    ok = summary([proc(c, 0, [100.0] * 3), proc(c, 1, [100.0] * 3)])[("threads", 2, 1)]
    assert (ok["status"], ok["cause"]) == (OK, ""), "all-ok processes must give an ok cell with no cause"


def test_an_unknown_status_outranks_every_known_one():
    rows = [{"repeat": 0, "status": CRASH, "cause": "x"}, {"repeat": 1, "status": "novel", "cause": ""}]
    assert stats.cell_status(rows)[0] == "novel", "a status not in cells.PRECEDENCE must count as the worst"


def test_verification_and_memory_are_pooled_over_processes_once_each():
    c = S.cell(mode="threads", threads=2)
    a, b = proc(c, 0, [100.0] * 3), proc(c, 1, [100.0] * 3)
    a.errors, a.checked, a.rel_err, a.peak_rss_mb, a.peak_device_mb = 1, 7, 2e-7, 300.0, 50.0
    b.errors, b.checked, b.rel_err, b.peak_rss_mb, b.peak_device_mb = 2, 9, 5e-7, 200.0, None
    s = summary([a, b])[("threads", 2, 1)]
    got = (s["errors"], s["checked"], s["rel_err"], s["peak_rss_mb"], s["peak_device_mb"])
    assert got == (3, 16, 5e-7, 300.0, 50.0), f"per-process errors/checked summed, errors/memory maxed: {got}"
    assert s["run_id"] and s["device_name"] is not None and s["framework_version"], "identity fields lost"
    assert (s["lat_p50_ms"], s["lat_p90_ms"], s["lat_p99_ms"]) == (1.0, 2.0, 3.0), "latency medians lost"


def test_rows_without_latency_or_memory_give_none_not_an_error():
    rows = [{"lat_p50_ms": None}, {"lat_p50_ms": float("nan")}, {"lat_p50_ms": 4.0}, {"lat_p50_ms": 2.0}]
    assert stats._median(r["lat_p50_ms"] for r in rows) == 3.0, "_median must skip None and NaN"
    assert stats._median([None, float("nan")]) is None, "_median of nothing measured must be None"


def test_tflops_and_the_unstable_boundary_are_exact():
    s = summary([proc(S.cell(mode="sequential"), 0, [200.0] * 5)])[("sequential", 1, 1)]
    assert s["tflops"] == 200 * 1000 / 1e12, "tflops must be ops/s * flops per op / 1e12"
    at = summary([proc(S.cell(mode="sequential"), 0, [90, 95, 100, 105, 110])])[("sequential", 1, 1)]
    assert at["iqr_rel"] == pytest.approx(UNSTABLE := stats.UNSTABLE_IQR) and not at["unstable"], \
        f"a spread of exactly {UNSTABLE:.0%} is not UNSTABLE (the rule is 'more than')"


def test_the_peak_comes_from_the_matmul_probe_only():
    seq = proc(S.cell(mode="sequential"), 0, [100.0] * 5)
    mm = proc(S.cell(workload="matmul", mode="sequential"), 0, [50.0] * 5)
    recs = stats.summarize(S.run([seq, mm])["rows"]).to_dicts()
    mlp = next(r for r in recs if r["workload"] == "mlp")
    assert mlp["peak_tflops"] == 50 * 1000 / 1e12, "the peak must be the matmul probe's, not the workload's own"
    assert mlp["base_ops"] == 100.0, "base_ops missing from the summary"
    alone = stats.summarize(S.run([seq])["rows"]).to_dicts()[0]
    assert alone["peak_tflops"] is None and alone["pct_peak"] is None, "without the probe there is no peak"


def test_the_speedup_base_without_a_sequential_cell_is_the_ok_threads_x1_only():
    t1 = proc(S.cell(mode="threads", threads=1), 0, [], CRASH)
    o1 = proc(S.cell(mode="offline", threads=1, k=8), 0, [300.0] * 3)
    s2 = proc(S.cell(mode="streams", threads=1), 0, [250.0] * 3)
    s = summary([t1, o1, s2])
    assert all(r["speedup_base"] is None for r in s.values()), "a failed threads x1 left a base from another mode"


def test_a_cell_exactly_at_its_ceilings_upper_bound_is_not_an_anomaly():
    recs = [{"ops_per_s": 100.0, "ci_low": 90.0, "ci_high": 110.0},
            {"ops_per_s": 120.0, "ci_low": None, "ci_high": float("nan")}]
    assert stats._lower(recs[0]) == 90.0 and stats._upper(recs[0]) == 110.0, "_lower/_upper must use the interval"
    assert stats._lower(recs[1]) == 120.0 == stats._upper(recs[1]), "no interval: _lower/_upper fall back to ops/s"


def test_no_rows_give_an_empty_summary_with_every_column():
    empty = stats.summarize([])
    assert empty.height == 0 and empty.schema == stats.SUMMARY_SCHEMA, "an empty run must keep the summary's columns"
    assert stats.frame([]).schema == stats._SCHEMA, "an empty frame must keep the row schema"


# -- where each request's time went ---------------------------------------------------------------
def split_proc(c: Cell, repeat: int, windows: list[dict], status: str = OK, **result) -> CellResult:
    """A process of cell c whose windows carry these split fields (ops/s 100 each)."""
    r = proc(c, repeat, [100.0] * len(windows), status)
    r.trials = [replace(t, **w) for t, w in zip(r.trials, windows)]
    r.cores = 2
    for name, value in result.items():
        setattr(r, name, value)
    return r


def test_the_split_is_the_median_over_processes_of_each_ones_median_window():
    c = S.cell(mode="threads", threads=2)
    a = split_proc(c, 0, [dict(call_ms=c_, sync_ms=0.1, cpu_ms=0.5, core_wait_ms=0.1, own_cores=1.0, proc_cores=1.2)
                          for c_ in (0.9, 1.0, 5.0)])       # median window: call 1.0
    b = split_proc(c, 1, [dict(call_ms=c_, sync_ms=0.1, cpu_ms=0.3, core_wait_ms=0.0, own_cores=0.8, proc_cores=1.0)
                          for c_ in (1.4, 1.4)])            # median 1.4
    rec = summary([a, b])[("threads", 2, 1)]
    assert rec["call_ms"] == pytest.approx(1.2) and rec["cpu_ms"] == pytest.approx(0.4)   # medians of 1.0, 1.4
    wall = 1.2 + 0.1
    assert rec["wall_ms"] == pytest.approx(wall) and rec["sync_share"] == pytest.approx(0.1 / wall)
    assert rec["run_share"] == pytest.approx(0.4 / wall) and rec["core_wait_share"] == pytest.approx(0.05 / wall)
    assert rec["blocked_share"] == pytest.approx(1 - 0.45 / wall)
    assert (rec["own_cores"], rec["proc_cores"], rec["cores"]) == (pytest.approx(0.9), pytest.approx(1.1), 2)
    assert rec["device_busy"] is None and rec["busy_source"] is None


def test_device_busy_is_the_timers_else_nvmls_and_says_which():
    c = S.cell(mode="threads", threads=2)
    timed = summary([split_proc(c, 0, [dict(call_ms=1.0, sync_ms=1.0, cpu_ms=0.1, device_busy=0.97)] * 3,
                                gpu_util_mean=50.0)])[("threads", 2, 1)]
    assert (timed["device_busy"], timed["busy_source"]) == (pytest.approx(0.97), stats.BUSY_TIMER)
    nvml = summary([split_proc(c, 0, [dict(call_ms=1.0, sync_ms=1.0, cpu_ms=0.1)] * 3,
                               gpu_util_mean=92.0)])[("threads", 2, 1)]
    assert (nvml["device_busy"], nvml["busy_source"]) == (pytest.approx(0.92), stats.BUSY_NVML)


def test_a_cell_without_a_split_or_without_a_figure_has_none():
    c = S.cell(mode="threads", threads=2)
    old = summary([proc(c, 0, [100.0] * 3)])[("threads", 2, 1)]   # measured before the split
    assert all(old[f] is None for f in stats.SPLIT_COLUMNS)
    failed = summary([split_proc(c, 0, [dict(call_ms=1.0, sync_ms=1.0, cpu_ms=0.1)] * 3, status=CRASH)])
    assert all(failed[("threads", 2, 1)][f] is None for f in stats.SPLIT_COLUMNS)
