"""MLPerf LoadGen as the server cells' load generator (compare.measure.mlperf, --load-generator loadgen): the
option's checks, the SUT's mapping between LoadGen's samples and threadbench's queries, the Step read from
LoadGen's summary, and real LoadGen steps and cells. Tests that run LoadGen itself skip, saying so, where
its package (the loadgen extra) is not installed; the rest need no LoadGen.

Assertions are on verdicts, counts and structure, never on speed: a rate far below capacity and one far
above it (LoadGen's own p99 decides each)."""
from __future__ import annotations

import importlib.util
import threading
import time
from dataclasses import replace

import pytest

from compare import options
from compare import results as R
from compare.cells import AUTO, LOADGEN, THREADBENCH, Cell
from compare.measure import interpreters, plan
from compare.measure import mlperf
from compare.measure.clocks import process_clock
from compare.measure.server import STRATEGIES
from compare.render import analysis
from compare.serverrules import STEP_KINDS, VALID

needs_loadgen = pytest.mark.skipif(importlib.util.find_spec(mlperf.MODULE) is None,
                                   reason="MLPerf LoadGen (pip install 'threadbench[loadgen]') is not installed")


# -- the option ------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["--modes", "server-threads", "--load-generator", "loadgenn"], "unknown load generator 'loadgenn' (did you mean 'loadgen'?)"),
    (["--modes", "threads", "--load-generator", "loadgen"], "drives the server modes only"),
])
def test_bad_load_generator_is_one_line_and_exit_2(threadbench, tmp_path, args, expected):
    proc = threadbench("compare", "-b", "numpy", "-w", "mlp", "-t", "2", "-o", tmp_path / "r.json", *args)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and expected in err[0], proc.stderr


def test_loadgen_without_its_package_is_one_line_naming_the_extra(threadbench, tmp_path, monkeypatch):
    monkeypatch.setattr(options, "LOADGEN_MODULE", "mlperf_loadgen_not_installed_here")
    proc = threadbench("compare", "-b", "numpy", "-w", "mlp", "-t", "2", "-m", "server-threads",
                       "--load-generator", "loadgen", "-o", tmp_path / "r.json")
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert "MLPerf LoadGen, which is not installed here" in err[0] and "threadbench[loadgen]" in err[0]


def _plan(generator: str, has_loadgen: bool, monkeypatch) -> tuple[list[Cell], list]:
    me = interpreters.default()
    monkeypatch.setattr(interpreters, "default", lambda: replace(me, loadgen=has_loadgen))
    s = plan.Settings(backends=("numpy",), workloads=("mlp",), modes=("threads", "server-threads"), threads=(2,),
                      dtypes=("float32",), device="cpu", peak_probe=False,
                      template=Cell(backend="", device="", dtype="", workload="", mode="", load_generator=generator))
    return plan.plan(s)


@pytest.mark.parametrize("has_loadgen, server_generator", [(True, LOADGEN), (False, THREADBENCH)])
def test_auto_is_loadgen_where_it_imports_and_the_own_dispatcher_elsewhere(monkeypatch, has_loadgen,
                                                                           server_generator):
    cells, unavailable = _plan(AUTO, has_loadgen, monkeypatch)
    by_mode = {c.mode: c.load_generator for c in cells}
    assert by_mode == {"threads": THREADBENCH, "server-threads": server_generator} and not unavailable


def test_a_named_loadgen_under_an_interpreter_without_it_is_unavailable_with_why(monkeypatch):
    cells, unavailable = _plan(LOADGEN, False, monkeypatch)
    assert [c.mode for c in cells] == ["threads"]
    assert [(c.mode, c.load_generator) for c, _ in unavailable] == [("server-threads", LOADGEN)]
    assert "MLPerf LoadGen does not import under" in unavailable[0][1]


def test_the_interpreter_probe_says_whether_loadgen_imports():
    assert interpreters.this_interpreter()["loadgen"] == (importlib.util.find_spec(mlperf.MODULE) is not None)


# -- the SUT and the summary, without LoadGen -----------------------------------------------------------
class _FakeLoadGen:
    """What LoadGenSUT calls of LoadGen: responses made and completions reported."""
    def __init__(self):
        self.completed: list[int] = []
        self.QuerySampleResponse = lambda rid, data, size: rid

    def QuerySamplesComplete(self, responses):  # noqa: N802 - LoadGen's name
        self.completed += responses


class _Sample:
    def __init__(self, rid: int, index: int):
        self.id, self.index = rid, index


class _Recorder:
    def __init__(self):
        self.on_done, self.submitted = None, []

    def submit(self, i, t):
        self.submitted.append(i)


def test_the_sut_sends_the_sample_loadgen_chose_and_answers_its_id():
    lg, srv = _FakeLoadGen(), _Recorder()
    sut = mlperf.LoadGenSUT(lg, srv, inputs=3, clock=process_clock)
    sut.issue([_Sample(101, 2), _Sample(102, 0)])
    sut.issue([_Sample(103, 2)])
    assert [i % 3 for i in srv.submitted] == [2, 0, 2] and len(set(srv.submitted)) == 3  # its input; distinct
    for i in reversed(srv.submitted):   # completions come in any order, from any thread
        srv.on_done(i)
    assert lg.completed == [103, 102, 101]


def test_a_strategy_that_fails_leaves_loadgen_no_query_to_wait_for():
    """A pool process dies: the next submit raises. Every query out is answered at once, every later one
    on arrival, none twice (a late completion of an answered query is dropped); the failure is kept."""
    class Failing(_Recorder):
        def submit(self, i, t):
            if len(self.submitted) == 2:
                raise RuntimeError("process 2 of 2 killed by SIGSEGV")
            super().submit(i, t)
    lg, srv = _FakeLoadGen(), Failing()
    sut = mlperf.LoadGenSUT(lg, srv, inputs=1, clock=process_clock)
    sut.issue([_Sample(100 + k, 0) for k in range(5)])
    srv.on_done(srv.submitted[0])
    assert sorted(lg.completed) == [100, 101, 102, 103, 104] and "SIGSEGV" in str(sut.error)


def _detail(valid: bool, p99_ms: float) -> dict:
    ns = lambda ms: int(ms * 1e6)  # noqa: E731
    return {"result_validity": "VALID" if valid else "INVALID", "result_perf_constraints_met": p99_ms <= 50,
            "early_stopping_met": valid, "result_min_duration_met": True, "result_min_queries_met": True,
            "result_query_count": 1000, "result_overlatency_query_count": 0 if valid else 40,
            "result_completed_samples_per_sec": 999.0, "result_50.00_percentile_latency_ns": ns(1.0),
            "result_90.00_percentile_latency_ns": ns(2.0), "result_99.00_percentile_latency_ns": ns(p99_ms)}


def test_a_step_is_loadgens_verdict_and_percentiles():
    ok = mlperf.summary_step(_detail(True, 4.0), 1000.0, 0.050)
    assert ok.valid and ok.lat_p99_ms == 4.0 and ok.queries == 1000 and ok.lag_p99_ms is None
    assert ok.seconds == pytest.approx(999 / 999.0)
    bad = mlperf.summary_step(_detail(False, 80.0), 2000.0, 0.050)
    assert bad.verdict == "invalid: LoadGen: p99 80 ms > bound 50 ms; early stopping not met" and bad.over == 40
    # LoadGen's word is final: a p99 under the bound that LoadGen still calls INVALID (here: early stopping)
    assert not mlperf.summary_step(_detail(False, 10.0), 1000.0, 0.050).valid


def test_a_loadgen_cell_is_recorded_as_such_and_not_pooled_with_threadbenchs():
    from compare.cells import CellResult, Trial
    import synthetic_runs as S
    from compare.cells import Cell
    run = R.new_run(["threadbench"], {"host": "h"}, {})
    trial = Trial(ops=500, seconds=1.0, lat_p50_ms=1, lat_p90_ms=1, lat_p99_ms=1, rate=100.0, bound_ms=50.0,
                  verdict=VALID, step_kind="search")
    for generator in ("threadbench", LOADGEN):
        cell = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="server-threads",
                    threads=2, load_generator=generator)
        R.add_result(run, CellResult(cell=cell, status="ok", trials=[trial], env=S.env("numpy")))
    assert [r["load_generator"] for r in run["rows"]] == ["threadbench", LOADGEN]
    recs = analysis.peaks(run["rows"])
    assert sorted(r["load_generator"] for r in recs) == ["loadgen", "threadbench"]   # two cells, not one


# -- LoadGen itself ----------------------------------------------------------------------------------
class _SleepHarness:
    """A Harness-shaped fake: the op sleeps (releasing the GIL), inputs are their own index."""
    def __init__(self, service: float):
        self.service, self.inputs, self.rows = service, list(range(4)), 1
        self.op = lambda x: (time.sleep(self.service), x)[1]
        self.concat = lambda xs: list(xs)
        self.split = lambda y, sizes: [[v] for v in y]


class _Cell:
    max_batch, max_wait_ms = 4, 2.0


@needs_loadgen
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["threads", "batched"])
def test_loadgen_judges_a_rate_far_below_and_one_far_above_capacity(strategy):
    """Two workers of 5 ms (capacity ~400/s), a 1 s bound: 50/s is VALID by LoadGen, 2,000/s INVALID, with the
    queries asked; every query completes (LoadGen waits for them), and no worker thread is left."""
    h, spec = _SleepHarness(0.005), STRATEGIES[strategy]
    before = threading.active_count()
    steps = {}
    for rate, queries in ((50.0, 500), (2000.0, 2000)):
        srv = spec.make(h, 2, _Cell(), None)
        steps[rate] = mlperf.run_step(srv, spec.batcher, len(h.inputs), process_clock, rate, 0.100, 1, queries)
    assert steps[50.0].valid and steps[50.0].queries >= 500 and steps[50.0].lat_p50_ms >= 5.0, steps[50.0]
    assert steps[2000.0].verdict.startswith("invalid: LoadGen: p99"), steps[2000.0]
    assert threading.active_count() == before


@needs_loadgen
def test_a_loadgen_server_cell_end_to_end(threadbench, tmp_path, starts_processes):
    """numpy, server-threads x2, LoadGen judging each rate of the confirmed search: every step a row
    recorded as LoadGen's, outputs verified by threadbench after the search. A generous bound (structure
    only; how many rates pass depends on the machine); one process, the search being what is tested."""
    out = tmp_path / "r.json"
    proc = threadbench("compare", "-b", "numpy", "-w", "mlp", "--dtype", "float64", "-m", "server-threads", "-t", "2",
                       "--latency-bound-ms", "500", "--load-generator", "loadgen", "--no-peak-probe", "--warmup", "1",
                       "--intra-op-threads", "1",
                       "--repeats", "1", "-q", "-o", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = R.load(out)["rows"]
    assert rows and all(r["status"] == "ok" and r["load_generator"] == LOADGEN for r in rows)
    assert all(r["step_kind"] in STEP_KINDS and (r["verdict"] == VALID or r["verdict"].startswith("invalid: LoadGen"))
               for r in rows)
    assert rows[0]["checked"] > 0 and rows[0]["errors"] == 0
    assert "threads (LoadGen)" in proc.stdout


@needs_loadgen
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["threads", "batched"])
def test_a_forward_that_raises_under_loadgen_fails_the_step_and_hangs_nothing(strategy):
    h, spec = _SleepHarness(0.001), STRATEGIES[strategy]
    calls = iter(range(10**6))

    def op(x):
        if next(calls) == 20:
            raise RuntimeError("injected fault: forward failed")
        return x
    h.op = op
    with pytest.raises(RuntimeError, match="injected fault"):
        mlperf.run_step(spec.make(h, 2, _Cell(), None), spec.batcher, len(h.inputs), process_clock, 200.0, 1.0, 1, 400)
