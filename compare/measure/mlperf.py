"""MLPerf LoadGen itself as the server scenario's load generator (`compare --load-generator loadgen`): one rate
step is LoadGen's Server scenario in PerformanceOnly mode, issuing queries from its own thread to a system
under test (LoadGenSUT) that hands each to one of the strategies threadbench's own dispatcher feeds
(compare.measure.server.STRATEGIES: worker threads, the batcher, the process pool), and the step's verdict
and latencies are LoadGen's own, read from the summary it logs (summary_step). The search around the steps
is threadbench's (compare.measure.loadgen.search_steps), with LoadGen judging each rate: LoadGen's own
FindPeakPerformance mode runs in 6.0.17, but it judges a rate by its p99 alone (not early stopping or the
minimum duration), needs a valid rate to start from, bisects to an absolute precision (1 query/s at least:
server_find_peak_qps_decimals_of_precision is unsigned) and, like the search of issue 20, lets one failed
step bound it. Not here: which strategy runs (server.py builds it) or any verdict of threadbench's.

mlcommons-loadgen is an optional extra (`pip install 'threadbench[loadgen]'`; wheels for CPython 3.11 and
3.12, none for free-threaded builds): it is imported where a step runs, never when this module loads."""
from __future__ import annotations

import json
import math
import tempfile
import threading
from pathlib import Path
from typing import Any

from .loadgen import PERCENTILE, Step
from ..serverrules import VALID

MODULE = "mlperf_loadgen"   # what the mlcommons-loadgen package installs
DETAIL_LOG = "mlperf_log_detail.txt"
LOG_PREFIX = ":::MLLOG "     # each line of LoadGen's detail log: this, then one JSON record {"key", "value", ...}
P = f"{100 * PERCENTILE:.2f}"  # LoadGen's key for the bound's percentile: result_99.00_percentile_latency_ns


class LoadGenSUT:
    """LoadGen's system under test over a strategy (submit(i, t) and a completion callback, on_done): each
    sample LoadGen issues is submitted as query i with i % len(inputs) == the sample's index, so the request
    is the input LoadGen chose; a completion is reported to LoadGen as it happens (QuerySamplesComplete is
    thread-safe), from whichever thread saw it. A strategy that fails (its submit raises, or its loop
    dies: abort) cannot leave LoadGen waiting: every query still out is answered at once, and so is every
    later one; `error` keeps the first failure for the caller to raise once LoadGen has finished."""

    def __init__(self, lg, srv, inputs: int, clock):
        self.lg, self.srv, self.inputs, self.clock = lg, srv, inputs, clock
        self.ids: list[int] = []            # query i -> LoadGen's response id, by i // inputs
        self.out: set[int] = set()          # queries submitted and not answered
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        srv.on_done = self.done

    def issue(self, samples) -> None:
        for s in samples:
            with self.lock:
                i = len(self.ids) * self.inputs + s.index
                self.ids.append(s.id)
                self.out.add(i)
                failed = self.error is not None
            if failed:
                self.done(i)
                continue
            try:
                self.srv.submit(i, self.clock())
            except BaseException as e:  # noqa: BLE001 - the step's failure, raised after LoadGen ends
                self.abort(e)

    def done(self, i: int) -> None:
        with self.lock:
            if i not in self.out:   # answered already (by abort)
                return
            self.out.discard(i)
        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(self.ids[i // self.inputs], 0, 0)])

    def abort(self, error: BaseException) -> None:
        with self.lock:
            self.error = self.error or error
            left = sorted(self.out)
        for i in left:
            self.done(i)

    def flush(self) -> None:
        pass


def run_step(srv, on_main_thread: bool, inputs: int, clock, rate: float, bound: float, seed: int,
             queries: int) -> Step:
    """One rate step under LoadGen: `queries` queries at `rate` (LoadGen's minimum query count, and its
    minimum duration queries / rate) against `srv`, a fresh strategy; `on_main_thread`: srv.run() must own
    this thread (the batcher), so LoadGen runs beside it and srv.close() ends it. The Step is LoadGen's; a
    failure of the strategy is raised once LoadGen has finished (its queries answered at once: abort)."""
    import mlperf_loadgen as lg  # the optional `loadgen` extra: only a LoadGen cell loads it
    settings = lg.TestSettings()
    settings.scenario, settings.mode = lg.TestScenario.Server, lg.TestMode.PerformanceOnly
    settings.server_target_qps = rate
    settings.server_target_latency_ns = round(bound * 1e9)
    settings.server_target_latency_percentile = PERCENTILE
    settings.min_query_count = queries
    settings.min_duration_ms = math.ceil(1e3 * queries / rate)
    settings.schedule_rng_seed = settings.sample_index_rng_seed = settings.qsl_rng_seed = seed
    sut_ = LoadGenSUT(lg, srv, inputs, clock)
    with tempfile.TemporaryDirectory(prefix="threadbench-loadgen-") as logs:
        log = lg.LogSettings()
        log.log_output.outdir = logs
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        sut = lg.ConstructSUT(sut_.issue, sut_.flush)
        qsl = lg.ConstructQSL(inputs, inputs, lambda _: None, lambda _: None)

        def test() -> None:
            try:
                lg.StartTestWithLogSettings(sut, qsl, settings, log)
            except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
                sut_.abort(e)
            finally:
                if on_main_thread:
                    srv.close()
        try:
            if on_main_thread:
                th = threading.Thread(target=test, name="tb-loadgen", daemon=True)
                th.start()
                try:
                    srv.run()
                except BaseException as e:  # noqa: BLE001 - a forward raised: LoadGen's queries answered, then raised
                    sut_.abort(e)
                th.join()
            else:
                test()
        finally:
            try:
                srv.finish(0)   # its threads end (LoadGen has seen every query answered)
            finally:
                lg.DestroyQSL(qsl)
                lg.DestroySUT(sut)
        if sut_.error is not None:
            raise sut_.error
        return summary_step(read_detail(Path(logs) / DETAIL_LOG), rate, bound, getattr(srv, "hist", None))


def read_detail(path: Path) -> dict[str, Any]:
    """LoadGen's detail log as {key: value} (the last record of each key)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith(LOG_PREFIX):
            record = json.loads(line[len(LOG_PREFIX):])
            out[record["key"]] = record["value"]
    return out


def summary_step(d: dict[str, Any], rate: float, bound: float, hist=None) -> Step:
    """A Step from LoadGen's results: its verdict (result_validity) with the constraints it found unmet, its
    latency percentiles and over-bound count; `seconds` from its completed rate ((queries - 1) / rate, as it
    counts); no dispatcher lag (LoadGen reports none: its issue thread is its own)."""
    ms = lambda key: d[key] / 1e6  # noqa: E731 - LoadGen logs ns
    p99, n = ms(f"result_{P}_percentile_latency_ns"), int(d["result_query_count"])
    if d["result_validity"] == "VALID":
        verdict = VALID
    else:
        unmet = [why for key, why in (
            ("result_perf_constraints_met", f"p99 {p99:.3g} ms > bound {bound * 1e3:.3g} ms"),
            ("early_stopping_met", "early stopping not met"),
            ("result_min_duration_met", "min duration not met"),
            ("result_min_queries_met", "min queries not met")) if d.get(key) is False]
        verdict = f"invalid: LoadGen: {'; '.join(unmet) or d['result_validity']}"
    done = d.get("result_completed_samples_per_sec") or 0
    return Step(rate=rate, queries=n, seconds=(n - 1) / done if done else 0.0, bound_ms=bound * 1e3,
                lat_p50_ms=ms("result_50.00_percentile_latency_ns"), lat_p90_ms=ms("result_90.00_percentile_latency_ns"),
                lat_p99_ms=p99, lag_p99_ms=None, over=int(d.get("result_overlatency_query_count") or 0),
                verdict=verdict, batch_hist={str(k): v for k, v in sorted(hist.items())} if hist else None)
