"""The measurement itself (issue #4): what each mode counts, where it runs its forwards, what the batcher
hands back, and the statistics that turn trials into a table cell. Fake harnesses over numpy, so every
expectation is exact; no test here asserts a speed."""
import math
import threading
import time

import numpy as np
import pytest

import synthetic_runs as S
from compare.measure import schedule
from compare.measure.batcher import run_batched
from compare.measure.clocks import SimClock
from compare.measure.harness import Checks, Harness, ModeFailed, TooSlow
from compare.measure.registry import MEASURES
from compare.measure.threads import run_sequential, run_threads
from compare.render import tables
from compare.render import report as P
from compare.cells import Cell
from compare.stats import UNSTABLE_IQR, median_ci

ROWS = 4  # rows per request, as in the workloads


def fake_harness(n_inputs=8, op=None, split=None, tolerance=1e-9):
    """op(x) = 2x (+ whatever `op` wraps); request i's input is filled with i + 1, so its rows name it."""
    inputs = [np.full((ROWS, 3), i + 1.0) for i in range(n_inputs)]
    calls = []

    def forward(x):
        calls.append((threading.current_thread(), len(x) // ROWS))
        return op(x) if op else 2 * x

    return Harness(
        op=forward,
        check=lambda y, i: float(np.abs(np.asarray(y) - 2 * inputs[i]).max()),
        inputs=inputs, tolerance=tolerance,
        concat=np.concatenate,
        split=split or (lambda y, sizes: [p.copy() for p in np.split(y, np.cumsum(sizes)[:-1])]),
        rows=ROWS,
    ), calls


def sim_harness(steps, n_inputs=1, wrong_calls=()):
    """One-thread harness timed on a simulated clock that moves only when an op runs, by that op's
    `steps(c)` seconds (call c), so windows, warm-up and the too-slow rule are exact on any machine, however
    busy. Calls in `wrong_calls` return a wrong output. Returns (harness, calls list)."""
    clock = SimClock()
    calls = []

    def op(x):
        c = len(calls)
        calls.append(c)
        clock.t += steps(c)
        return 2 * x + (1.0 if c in wrong_calls else 0.0)

    inputs = [np.full((ROWS, 3), i + 1.0) for i in range(n_inputs)]
    return Harness(op=op, check=lambda y, i: float(np.abs(y - 2 * inputs[i]).max()), inputs=inputs,
                   tolerance=1e-9, clock=clock.now), calls


# -- what a trial is -------------------------------------------------------------------------------
def test_trial_is_completed_ops_over_first_start_to_last_completion():
    t = schedule.trial_of(starts=[10.0, 10.5, 11.0], ends=[10.2, 11.0, 12.0], weight=8)
    assert t.ops == 24 and t.seconds == pytest.approx(2.0) and t.ops_per_s == pytest.approx(12.0)
    lat = np.array([200.0, 500.0, 1000.0])  # ms
    assert (t.lat_p50_ms, t.lat_p90_ms, t.lat_p99_ms) == pytest.approx(tuple(np.percentile(lat, [50, 90, 99])))


def test_offline_counts_requests_and_only_ops_started_before_the_deadline():
    """Ops of 1 s (simulated), 20 s windows: exactly 20 forwards per window, each of 8 requests."""
    h, calls = sim_harness(lambda c: 1.0)
    trials = run_sequential(h, duration=20.0, trials=2, warmup=3, verify_ops=2, weight=8)
    assert [(t.ops, t.seconds, t.window_s, t.min_thread_ops) for t in trials] == [(160, 20.0, 20.0, 20)] * 2
    m = h.measured
    assert (m.warmup_windows, m.steady, m.warmup_s, m.window_s, m.op_s) == (2, True, 10.0, 20.0, 1.0)
    speed, warm, windows, verify = 1 + schedule.SPEED_PROBE_OPS, 3, 2 * 5 + 2 * 20, 2
    assert len(calls) == speed + warm + windows + verify
    assert h.checked == 1 + 2 * 2 + 2 and h.errors == 0  # speed check, first and last of each window, verify


def test_a_window_lengthens_to_hold_the_minimum_of_ops_per_thread():
    h, _ = sim_harness(lambda c: 1.0)
    trials = run_sequential(h, duration=4.0, trials=2, warmup=0, verify_ops=0, cap=100.0)
    want = schedule.WINDOW_SAFETY * schedule.MIN_OPS_PER_WINDOW  # 15 ops of 1 s
    assert [t.ops for t in trials] == [int(want)] * 2 and h.measured.window_s == want
    assert all(t.min_thread_ops >= schedule.MIN_OPS_PER_WINDOW for t in trials)


def test_too_slow_is_the_median_op_against_the_minimum_in_the_longest_window():
    # 10 ops of 1 s need 10 s: a 9 s cap is too short, a 10.5 s one is enough
    h, _ = sim_harness(lambda c: 1.0)
    with pytest.raises(TooSlow, match=r"one op takes 1 s .*10 ops need 10 s, more than the 9 s"):
        run_sequential(h, duration=1.0, trials=1, warmup=0, verify_ops=0, cap=9.0)
    h, _ = sim_harness(lambda c: 1.0)
    (trial,) = run_sequential(h, duration=1.0, trials=1, warmup=0, verify_ops=0, cap=10.5)
    assert (trial.ops, trial.window_s) == (11, 10.5)  # ops start at 0, 1, ..., 10 s: all before the deadline
    # one slow first op (a compile) and one slow outlier do not decide: the median does
    h, _ = sim_harness(lambda c: 50.0 if c in (0, 3) else 1.0)
    run_sequential(h, duration=1.0, trials=1, warmup=0, verify_ops=0, cap=10.5)
    # an op longer than the whole window, twice running (the compiling one and the first timed), is timed no more
    h, calls = sim_harness(lambda c: 20.0)
    with pytest.raises(TooSlow, match=r"one op takes 20 s \(median of 1\)"):
        run_sequential(h, duration=1.0, trials=1, warmup=0, verify_ops=0, cap=4.0)
    assert len(calls) == 2


def test_a_cell_that_slows_during_warm_up_is_too_slow_with_its_rate():
    h, _ = sim_harness(lambda c: 1.0 if c < 6 else 3.0)
    with pytest.raises(TooSlow, match=r"0.333 ops/s per thread at the end of warm-up"):
        run_sequential(h, duration=2.0, trials=1, warmup=0, verify_ops=0, cap=20.0)


def test_warm_up_runs_until_two_windows_agree_and_records_it():
    h, _ = sim_harness(lambda c: 1.0 + 8.0 * 0.7 ** c)  # slow at first, settling towards 1 s
    trials = run_sequential(h, duration=10.0, trials=3, warmup=0, verify_ops=0, cap=100.0)
    m = h.measured
    assert m.steady and m.warmup_windows >= 3
    rates = [t.ops_per_s for t in trials]
    assert max(rates) / min(rates) < 1 + schedule.STEADY_REL  # trial 0 is no slower than the rest


def test_warm_up_that_never_settles_ends_at_its_cap_and_says_so():
    h, _ = sim_harness(lambda c: 1.0 + 0.2 * c)  # slower and slower: no two windows agree
    run_sequential(h, duration=10.0, trials=1, warmup=0, verify_ops=0, cap=1e4)
    m = h.measured
    assert not m.steady and m.warmup_s >= schedule.WARMUP_CAP_DURATIONS * 10.0


def test_outputs_produced_inside_the_timed_windows_are_checked():
    # calls: 6 speed check, 10 warm-up windows; call 16 is the first op of the timed window
    h, calls = sim_harness(lambda c: 1.0, wrong_calls={16})
    run_sequential(h, duration=20.0, trials=1, warmup=0, verify_ops=0)
    assert h.errors == 1 and h.max_err == pytest.approx(1.0)


def test_every_timed_window_records_its_span_and_warm_up_none():
    h, _ = fake_harness()
    trials = run_sequential(h, duration=0.02, trials=3, warmup=1, verify_ops=1)
    spans = h.measured.timed_spans
    assert len(spans) == len(trials) == 3
    for (a, b), t in zip(spans, trials):
        assert b - a == pytest.approx(t.seconds)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2))  # one after another, no overlap


def test_every_thread_warms_up_and_verifies_its_own_input():
    h, calls = fake_harness(4)
    checks, check = [], h.check
    h.check = lambda y, i: (checks.append((threading.current_thread().name, i)), check(y, i))[1]
    trials = run_threads(h, 4, duration=0.02, trials=2, warmup=3, verify_ops=2)
    assert len(trials) == 2 and all(t.ops > 0 for t in trials)
    workers = {th.name for th, _ in calls if th is not threading.main_thread()}
    assert workers == {f"tb-{i}" for i in range(4)}
    per_thread = {name: sum(th.name == name for th, _ in calls) for name in workers}
    assert min(per_thread.values()) >= 3 + 2  # its warmup and its verification, besides timed ops
    # each thread checks its own input's outputs twice after the windows; the in-window samples are checked
    # by whichever thread closes a window (2 windows: 2 threads at most), and a thread woken after its window's
    # deadline has none to check, so they count here only as checks of no error
    assert all(checks.count((f"tb-{i}", i)) >= 2 for i in range(4)), checks
    assert h.checked == len(checks) >= 1 + 4 * 2 and h.errors == 0


def test_an_output_wrong_only_in_threads_is_counted():
    lock = threading.Lock()
    state = {"busy": 0}

    def racy(x):  # wrong whenever another thread is inside the op at the same time
        with lock:
            state["busy"] += 1
        time.sleep(0.0005)
        y = 2 * x + (1.0 if state["busy"] > 1 else 0.0)
        with lock:
            state["busy"] -= 1
        return y

    h, _ = fake_harness(4, op=racy)
    run_threads(h, 4, duration=0.02, trials=1, warmup=1, verify_ops=5)
    assert h.checked >= 1 + 20 and h.errors > 0 and h.max_err == pytest.approx(1.0)


# -- the dynamic batcher ----------------------------------------------------------------------------
def test_batcher_runs_forwards_on_the_main_thread_and_fills_batches():
    h, calls = fake_harness(4)
    trials = run_batched(h, 4, duration=0.05, trials=2, warmup=2, verify_ops=3, max_batch=4, max_wait_ms=50)
    assert {th for th, _ in calls} == {threading.main_thread()}
    for t in trials:
        sizes = {int(k): v for k, v in t.batch_hist.items()}
        forwards = sum(sizes.values())
        assert t.ops > 0 and sum(k * v for k, v in sizes.items()) >= t.ops  # every timed request was batched
        assert sizes.get(4, 0) >= 0.9 * forwards  # clients wait for their rows, so batches fill up
    assert h.checked >= 1 + 2 * 4 + 4 * 3 and h.errors == 0


def test_batch_never_exceeds_max_batch():
    h, calls = fake_harness(8)
    run_batched(h, 8, duration=0.03, trials=1, warmup=1, verify_ops=1, max_batch=3, max_wait_ms=5)
    assert max(size for _, size in calls) == 3


def test_rows_handed_to_the_wrong_client_are_errors():
    rotate = lambda y, sizes: [p.copy() for p in np.roll(np.split(y, np.cumsum(sizes)[:-1]), 1, axis=0)]  # noqa: E731
    h, _ = fake_harness(4, split=rotate)   # a long wait: batches fill to 4 however slowly the clients come
    run_batched(h, 4, duration=0.02, trials=1, warmup=1, verify_ops=5, max_batch=4, max_wait_ms=1000)
    assert h.errors > 0 and h.max_err >= 2.0  # another client's rows are off by 2 x (their index - ours)

    good, _ = fake_harness(4)
    run_batched(good, 4, duration=0.02, trials=1, warmup=1, verify_ops=5, max_batch=4, max_wait_ms=50)
    assert good.errors == 0


def test_a_failing_batched_forward_reaches_the_clients_and_fails_the_mode():
    def fails_batched(x):
        if len(x) > ROWS:
            raise RuntimeError("out of memory in a batch")
        return 2 * x

    for warmup in (0, 2):  # met by the clients, or already by the warm-up of every batch size
        h, _ = fake_harness(4, op=fails_batched)
        with pytest.raises(ModeFailed) as err:
            run_batched(h, 4, duration=0.02, trials=1, warmup=warmup, verify_ops=1, max_batch=4,
                              max_wait_ms=50)
        assert isinstance(err.value.__cause__, RuntimeError) and "out of memory" in str(err.value.__cause__)


def test_warmup_meets_every_batch_size_before_timing():
    """A framework that compiles per shape (JAX's jit) must not compile inside a timed window."""
    h, calls = fake_harness(8)
    run_batched(h, 6, duration=0.02, trials=1, warmup=1, verify_ops=0, max_batch=4, max_wait_ms=1)
    speed = 1 + schedule.SPEED_PROBE_OPS
    before_clients = [size for _, size in calls[:speed + 3]]  # the speed check's ops, then the warm-up sizes
    assert before_clients == [1] * speed + [2, 3, 4]
    assert max(size for _, size in calls) == 4


# -- statistics ---------------------------------------------------------------------------------------
def test_median_ci_reports_the_level_it_reaches():
    low, high, level = median_ci([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (low, high) == (1.0, 5.0) and level == pytest.approx(1 - 2 / 32)  # 5 trials cannot reach 95%
    values = list(range(1, 21))
    low, high, level = median_ci(values)
    assert level >= 0.95 and 1 < low <= 10.5 <= high < 20  # 20 trials: narrower than min..max


def summary_of(results):
    return {(r["backend"], r["mode"], r["threads"], r["k"]): r for r in P.summarize([S.run(results)]).to_dicts()}


def test_unstable_speedup_ceiling_and_peak_columns():
    base = [100.0, 100.0, 100.0, 100.0, 100.0]
    results = [
        S.result(S.cell(mode="sequential"), base),
        S.result(S.cell(mode="threads", threads=2), [80.0, 90.0, 150.0, 200.0, 210.0]),  # IQR 110 of 150
        S.result(S.cell(mode="threads", threads=4), [196.0, 198.0, 200.0, 202.0, 204.0]),  # IQR 4 of 200
        S.result(S.cell(mode="offline", k=8), [400.0] * 5),
        S.result(S.cell(mode="offline", k=64), [800.0] * 5),
        S.result(S.cell(workload="matmul", mode="sequential"), [2e9] * 5),  # x 1000 flops = 2 TFLOP/s
    ]
    s = summary_of(results)
    assert s[("torch", "threads", 2, 1)]["unstable"] and s[("torch", "threads", 2, 1)]["iqr_rel"] > UNSTABLE_IQR
    assert not s[("torch", "threads", 4, 1)]["unstable"]
    four = s[("torch", "threads", 4, 1)]
    assert four["speedup"] == pytest.approx(2.0)
    assert four["pct_ceiling"] == pytest.approx(25.0)  # of the best offline figure, k=64
    assert four["tflops"] == pytest.approx(200 * 1000 / 1e12)
    assert four["pct_peak"] == pytest.approx(100 * 2e-7 / 2.0)
    assert (four["ci_low"], four["ci_high"]) == (196.0, 204.0)


def test_mean_batch_comes_from_the_histograms():
    r = S.result(S.cell(mode="batched", threads=4), [100.0] * 2)
    r.trials[0].batch_hist = {"4": 10}
    r.trials[1].batch_hist = {"2": 5, "4": 5}
    assert summary_of([r])[("torch", "batched", 4, 1)]["mean_batch"] == pytest.approx((40 + 10 + 20) / 20)


def test_a_comparison_across_matmul_precisions_is_never_a_ratio():
    """Exact fp32 and TF32 are different effective precisions: each gets its own column group, named with its
    precision, and no ratio column divides one by the other (like-for-like ratios only)."""
    exact, tf32 = (S.result(Cell(backend="torch", device="cuda", dtype="float32", workload="mlp", mode="sequential",
                                 fp32_precision=p), [100.0] * 5) for p in ("highest", "high"))
    exact.rel_err, tf32.rel_err = 2e-7, 4e-4
    (t, *_) = tables.build(P.summarize([S.run([exact, tf32])]))
    groups = [g for g, _ in t.columns if g]
    assert "torch cuda float32" in groups and "torch cuda float32 (TF32)" in groups, groups
    assert "ratio" not in groups, t.columns
    same = [S.result(S.cell(backend=b, mode="sequential"), [100.0] * 5) for b in ("torch", "mlx")]
    (t2, *_) = tables.build(P.summarize([S.run(same)]))
    assert any(g == "ratio" for g, _ in t2.columns), t2.columns   # equal precision: a ratio column


def test_every_mode_is_one_entry_in_each_table():
    """A mode is declared once (compare.cells.MODES) and run once (compare.measure.registry.MEASURES)."""
    from compare.cells import MODES, axis_label
    assert set(MODES) == set(MEASURES)
    assert axis_label("offline", 1, 8) == "k=8" and axis_label("threads", 4, 1) == "×4"
    assert axis_label("sequential", 1, 1) == ""


# -- edges a mutation run found unguarded (benchmarks/mutation.md) ---------------------------------------
def test_checks_count_each_request_and_only_errors_beyond_the_tolerance():
    c = Checks(tolerance=1e-3)
    c.record([1e-3, 2e-3, 5e-4])           # an offline batch: one error per request
    assert (c.checked, c.errors, c.max_err) == (3, 1, 2e-3), "a batch's requests are not checked one by one"
    c.record((0.0,))
    c.record(float("nan"))
    assert (c.checked, c.errors, c.max_err) == (5, 2, float("inf")), "a NaN error must count and make max_err inf"
    c.merge(errors=4, checked=10, max_err=0.5)
    assert (c.checked, c.errors) == (15, 6), "merge must add another process's tally"
    other = Checks(tolerance=1e-3)
    other.record(2e-4)
    other.merge(errors=0, checked=1, max_err=1e-4)
    assert other.max_err == 2e-4, "merge must keep the larger of the two largest errors"


def test_an_empty_window_is_a_trial_of_no_ops_and_no_latency():
    t = schedule.trial_of([], [])
    assert (t.ops, t.seconds, t.lat_p50_ms, t.lat_p90_ms, t.lat_p99_ms) == (0, 0.0, None, None, None), \
        "a window without ops must have 0 ops, 0 s and no latency"
    t = schedule.trial_of([0.0, 1.0], [0.5, 3.0], weight=4)
    assert (t.ops, t.seconds) == (8, 3.0), "a trial counts ops x weight over first start to last completion"


def sched_of(n=2, trials=3, op_s=0.1):
    """A schedule on a clock that never moves (warm-up never reaches its time cap), started and advanced
    into its first warm-up window."""
    sched = schedule.Schedule(n, duration=1.0, trials=trials, cap=100.0, clock=lambda: 0.0)
    sched.start(op_s)
    sched.advance()
    return sched


def test_a_warm_up_windows_rate_is_completed_ops_over_its_span():
    sched = sched_of()
    sched.add(0, math.inf, -math.inf)
    sched.add(0, math.inf, -math.inf)
    sched.advance()
    assert sched.state.rate == 0.0, "an empty window's rate must be 0"
    sched.add(2, 0.0, 2.0)
    sched.add(1, 0.5, 4.0)
    sched.advance()
    assert sched.state.rate == 3 / 4.0, "rate = ops / (last end - first start), every participant pooled"
    w = schedule.Window.of([([0.0, 1.0], [1.0, 2.0]), ([0.5], [4.0])])
    assert w.min_ops() == 1 and w.span() == (0.0, 4.0), "min_ops per participant; span = first start, last end"


def test_the_schedule_starts_from_serialised_threads_at_the_speed_checks_op_time():
    sched = schedule.Schedule(4, 1.0, 1, 4.0, clock=lambda: 0.0)
    sched.start(op_s=0.5)
    assert sched.state.rate_each == 0.5, "before warm-up: 1 / (op_s * n)"
    sched.start(op_s=0.0)
    assert sched.state.rate_each == float("inf"), "op_s 0: unbounded rate"


def test_a_closed_window_sets_the_per_thread_rate_its_ops_showed():
    sched = sched_of()
    length = sched.state.length
    sched.add(10, 0.0, 0.5)
    sched.add(10, 0.0, 0.5)
    sched.advance()
    assert sched.state.rate_each == 20 / 2 / length, "per-thread rate must be ops / threads / window length"
    sched.add(0, math.inf, -math.inf)
    sched.add(0, math.inf, -math.inf)
    sched.advance()   # no op at all: says nothing about the rate
    assert sched.state.rate_each == 20 / 2 / length, "an empty window must leave the per-thread rate as it was"


def test_a_closed_timed_window_checks_each_output_once_and_counts_os_threads():
    h, _ = fake_harness()
    timed = schedule.Window.of([([0.0], [0.1]), ([], [])])
    y = 2 * h.inputs[0]
    timed.samples = [(y, y), (None, None)]   # one op in thread 0: its first output is its last, checked once
    schedule.Boundaries(h, sched_of())._close(timed)
    assert (h.checked, h.errors) == (1, 0), "a window's single output must be checked exactly once"
    assert h.measured.os_threads >= 1, "closing a timed window must record the process's OS threads"
    assert h.measured.timed_spans == [(0.0, 0.1)], "closing a timed window must record its span"


@pytest.mark.parametrize("short, expected", [(5, 2.0 * 1.5 * 10 / 5), (0, 2.0 * 1.5 * 10 / 1),
                                             (10, 2.0)])  # exactly MIN_OPS_PER_WINDOW: not short, not lengthened
def test_a_window_where_a_thread_fell_short_lengthens_the_next_by_the_shortfall(short, expected):
    sched = sched_of()
    s = sched.state
    s.phase, s.trial, s.window_s, s.length = schedule.TIMED, 0.0, 2.0, 2.0
    sched.add(short, 0.0, 1.0)
    sched.add(short + 3, 0.0, 1.0)
    sched.advance()
    assert s.window_s == pytest.approx(expected), \
        f"after {short} ops in a thread the window must grow by WINDOW_SAFETY * MIN_OPS_PER_WINDOW / max(short, 1)"


@pytest.mark.parametrize("rates, steady", [([95.0, 100.0], True),     # exactly 5% apart: steady
                                           ([1000.0, 90.0, 100.0], False),  # only the last two count
                                           ([0.0, 95.0, 100.0], True), ([0.0, 0.0], False), ([100.0], False)])
def test_warm_up_is_steady_when_the_last_two_windows_agree_within_five_percent(rates, steady):
    sched = sched_of(n=1)
    for rate in rates:  # a warm-up window of `rate` ops over one second
        assert sched.phase == schedule.WARM
        sched.add(int(rate), 0.0, 1.0 if rate else -math.inf)
        sched.advance()
    assert sched.steady() is steady, f"warm-up rates {rates} must{'' if steady else ' not'} be steady"
    assert (sched.phase == schedule.TIMED) is steady, "warm-up must end once steady, and not before"
