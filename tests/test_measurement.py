"""The measurement itself (issue #4): what each mode counts, where it runs its forwards, what the batcher
hands back, and the statistics that turn trials into a table cell. Fake harnesses over numpy, so every
expectation is exact; no test here asserts a speed."""
import threading
import time

import numpy as np
import pytest

import synthetic_runs as S
from compare.measure import modes
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

    return modes.Harness(
        op=forward,
        check=lambda y, i: float(np.abs(np.asarray(y) - 2 * inputs[i]).max()),
        inputs=inputs, tolerance=tolerance,
        concat=np.concatenate,
        split=split or (lambda y, sizes: [p.copy() for p in np.split(y, np.cumsum(sizes)[:-1])]),
        rows=ROWS,
    ), calls


# -- what a trial is -------------------------------------------------------------------------------
def test_trial_is_completed_ops_over_first_start_to_last_completion():
    t = modes._trial(starts=[10.0, 10.5, 11.0], ends=[10.2, 11.0, 12.0], weight=8)
    assert t.ops == 24 and t.seconds == pytest.approx(2.0) and t.ops_per_s == pytest.approx(12.0)
    lat = np.array([200.0, 500.0, 1000.0])  # ms
    assert (t.lat_p50_ms, t.lat_p90_ms, t.lat_p99_ms) == pytest.approx(tuple(np.percentile(lat, [50, 90, 99])))


def test_offline_counts_requests_not_forwards():
    h, calls = fake_harness(1)
    (trial,) = modes.run_sequential(h, duration=0.02, trials=1, warmup=3, verify_ops=2, weight=8)
    timed = len(calls) - 2 - 3 - 2  # check_speed runs two ops, then warmup, timed, verify
    assert timed > 0 and trial.ops == 8 * timed
    assert h.checked == 1 + 2 and h.errors == 0


def test_an_op_longer_than_the_window_is_too_slow_not_measured():
    h, _ = fake_harness(1, op=lambda x: (time.sleep(0.03), 2 * x)[1])
    with pytest.raises(modes.TooSlow, match="longer than the 0.01 s window"):
        modes.run_sequential(h, duration=0.01, trials=1, warmup=0, verify_ops=0)


def test_every_thread_warms_up_and_verifies_its_own_input():
    h, calls = fake_harness(4)
    trials = modes.run_threads(h, 4, duration=0.02, trials=2, warmup=3, verify_ops=2)
    assert len(trials) == 2 and all(t.ops > 0 for t in trials)
    workers = {th.name for th, _ in calls if th is not threading.main_thread()}
    assert workers == {f"tb-{i}" for i in range(4)}
    per_thread = {name: sum(th.name == name for th, _ in calls) for name in workers}
    assert min(per_thread.values()) >= 3 + 2  # its warmup and its verification, besides timed ops
    assert h.checked == 1 + 4 * 2 and h.errors == 0


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
    modes.run_threads(h, 4, duration=0.02, trials=1, warmup=1, verify_ops=5)
    assert h.checked == 1 + 20 and h.errors > 0 and h.max_err == pytest.approx(1.0)


# -- the dynamic batcher ----------------------------------------------------------------------------
def test_batcher_runs_forwards_on_the_main_thread_and_fills_batches():
    h, calls = fake_harness(4)
    trials = modes.run_batched(h, 4, duration=0.05, trials=2, warmup=2, verify_ops=3, max_batch=4, max_wait_ms=50)
    assert {th for th, _ in calls} == {threading.main_thread()}
    for t in trials:
        sizes = {int(k): v for k, v in t.batch_hist.items()}
        forwards = sum(sizes.values())
        assert t.ops > 0 and sum(k * v for k, v in sizes.items()) >= t.ops  # every timed request was batched
        assert sizes.get(4, 0) >= 0.9 * forwards  # clients wait for their rows, so batches fill up
    assert h.checked == 1 + 4 * 3 and h.errors == 0


def test_batch_never_exceeds_max_batch():
    h, calls = fake_harness(8)
    modes.run_batched(h, 8, duration=0.03, trials=1, warmup=1, verify_ops=1, max_batch=3, max_wait_ms=5)
    assert max(size for _, size in calls) == 3


def test_rows_handed_to_the_wrong_client_are_errors():
    rotate = lambda y, sizes: [p.copy() for p in np.roll(np.split(y, np.cumsum(sizes)[:-1]), 1, axis=0)]  # noqa: E731
    h, _ = fake_harness(4, split=rotate)
    modes.run_batched(h, 4, duration=0.02, trials=1, warmup=1, verify_ops=5, max_batch=4, max_wait_ms=50)
    assert h.errors > 0 and h.max_err >= 2.0  # another client's rows are off by 2 x (their index - ours)

    good, _ = fake_harness(4)
    modes.run_batched(good, 4, duration=0.02, trials=1, warmup=1, verify_ops=5, max_batch=4, max_wait_ms=50)
    assert good.errors == 0


def test_a_failing_batched_forward_reaches_the_clients_and_fails_the_mode():
    def fails_batched(x):
        if len(x) > ROWS:
            raise RuntimeError("out of memory in a batch")
        return 2 * x

    for warmup in (0, 2):  # met by the clients, or already by the warm-up of every batch size
        h, _ = fake_harness(4, op=fails_batched)
        with pytest.raises(modes.ModeFailed) as err:
            modes.run_batched(h, 4, duration=0.02, trials=1, warmup=warmup, verify_ops=1, max_batch=4,
                              max_wait_ms=50)
        assert isinstance(err.value.__cause__, RuntimeError) and "out of memory" in str(err.value.__cause__)


def test_warmup_meets_every_batch_size_before_timing():
    """A framework that compiles per shape (JAX's jit) must not compile inside a timed window."""
    h, calls = fake_harness(8)
    modes.run_batched(h, 6, duration=0.02, trials=1, warmup=1, verify_ops=0, max_batch=4, max_wait_ms=1)
    before_clients = [size for _, size in calls[:5]]  # the speed check's two ops, then the warm-up sizes
    assert before_clients == [1, 1, 2, 3, 4]
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


def test_a_comparison_across_matmul_precisions_is_flagged_with_both_settings():
    exact, tf32 = (S.result(Cell(backend="torch", device="cuda", dtype="float32", workload="mlp", mode="sequential",
                                 fp32_precision=p), [100.0] * 5) for p in ("highest", "high"))
    exact.rel_err, tf32.rel_err = 2e-7, 4e-4
    built = tables.build(P.summarize([S.run([exact, tf32])]))
    notes = [n for t in built for n in t.notes if n.startswith("not like-for-like")]
    assert len(notes) == 1 and "(high)" in notes[0] and "(highest)" in notes[0] and "4.0e-04" in notes[0]
    same = [S.result(S.cell(backend=b, mode="sequential"), [100.0] * 5) for b in ("torch", "mlx")]
    assert not any(n.startswith("not like-for-like") for t in tables.build(P.summarize([S.run(same)]))
                   for n in t.notes)


def test_every_mode_is_one_entry_in_each_table():
    """A mode is declared once (compare.cells.MODES) and run once (compare.measure.modes.RUNNERS)."""
    from compare.cells import MODES, axis_label
    assert set(MODES) == set(modes.RUNNERS)
    assert axis_label("offline", 1, 8) == "k=8" and axis_label("threads", 4, 1) == "×4"
    assert axis_label("sequential", 1, 1) == ""
