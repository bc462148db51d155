"""The server scenario: open-loop traffic, as MLPerf Inference LoadGen's Server scenario defines it, and a
search for the highest request rate whose 99th-percentile latency stays under a bound.

What it is. Single-request queries arrive on a seeded Poisson schedule at a target rate. A dispatcher issues
each one at its scheduled time to a strategy (STRATEGIES: N worker threads taking queries from one FIFO
queue; the dynamic batcher; N spawned processes taking them from one multiprocessing queue). Latency runs from the *scheduled* time, so time
spent queueing, and any lateness of the dispatcher itself, counts. Each rate step is judged (Step.verdict):
valid when (1) the dispatcher's own lag (actual - scheduled issue time) has a p99 within LAG_FRACTION of the
bound, (2) the latency p99 is within the bound, and (3) enough queries were seen to know it (LoadGen's
early-stopping rule, `queries_needed`). `search` brackets then bisects the rate to PRECISION.

The same dispatcher, verdicts and search run on two clocks: RealClock (perf_counter and sleep) with real
strategies that run the cell's model through its Harness, and SimClock (simulated, discrete events,
deterministic) with SIM_STRATEGIES that model the same queueing (c FIFO servers; the batcher's policy) with
a given service time. The simulated runs are what tests compare with queueing theory (queueing.py).

Where the dispatcher runs: in the cell's process, in its own thread ("tb-dispatch"), so a query reaches a
worker the way it would in a Python server (one queue put, no pickling, no socket). It shares the GIL with
the strategy's threads; when they hold it, the dispatcher wakes late, and Step.lag_p99_ms records exactly
that, so a rate where the load generator, not the model, sets the latency is INVALID with that reason.
The batcher's forwards run on the main thread (as in `batched` mode: compare.measure.modes.run_batched).
The processes strategy (compare.measure.processes.ServerPool) keeps the dispatcher there too: its pool of N
processes is started and warmed once per cell, before the search, and serves every rate step; the
dispatcher puts (query, request index) on one multiprocessing queue, and a collector thread reads each
completion time (CLOCK_MONOTONIC, which the dispatcher then reads as well) from the processes' pipes. Only
the dispatcher and the collector share the worker's GIL there; the models run outside it.

What it is not: LoadGen itself (no accuracy mode, no multi-sample queries, no 10-minute official runs;
minimum duration per rate is MIN_SECONDS, not LoadGen's 600 s or its 10 s default), nor a network server.
"""
from __future__ import annotations

import bisect
import heapq
import math
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# -- the rules, each with where it comes from --------------------------------------------------------
PERCENTILE = 0.99        # LoadGen Server: the latency percentile that must meet the bound
CONFIDENCE = 0.99        # LoadGen Server early stopping: 99% confident that at most 1% of queries exceed the
                         # bound; with none over it, that takes 459 queries (LoadGen prints the same figure)
MIN_QUERIES = 100        # LoadGen's default min_query_count (early stopping usually asks for more)
MIN_SECONDS = 1.0        # per rate step; LoadGen defaults to 10 s (600 s official): 1 s keeps a sweep on a
                         # 2-core CPU to minutes; raise it with --duration (a server cell's seconds per rate)
LAG_FRACTION = 0.10      # a rate whose dispatcher lag p99 exceeds this share of the bound is INVALID: the
                         # load generator, not the server, would be setting a tenth of the latency budget
PRECISION = 0.05         # the search stops once the highest valid and lowest invalid rate are within 5%
MAX_STEPS = 14           # rate steps per search at most (bracketing + bisection take ~8 from a fair start)
BUDGET_S = 120.0         # clock seconds per search at most; the bracket found so far is reported
BOUND_FACTOR = 10.0      # default bound = this x the workload's single-request p50 measured in the same cell
                         # (LoadGen sets one bound per model: ResNet-50 15 ms for a ~1.5 ms inference)
BOUND_FLOOR_MS = 2.0     # ...but never below this: a Python thread dispatcher on a shared VM wakes ~0.1 ms
                         # late, and LAG_FRACTION of a smaller bound would measure the dispatcher
START_DELAY_S = 0.002    # the schedule starts this long after the dispatcher is ready
LAG_PROBE_RATE = 500.0   # the dispatcher's own lag, measured in each server cell before its default bound is
LAG_PROBE_QUERIES = 500  # set: ~1 s of Poisson queries at this rate to a do-nothing strategy
LAG_FLOOR_FACTOR = 1.5   # the default bound is at least this x the tightest bound the lag rule can pass on this
#                          machine now (lag p99 / LAG_FRACTION). Measured on the 2-core CI VM, idle: lag p99
#                          0.21-0.44 ms at 16-1,000 queries/s, so the 2 ms floor alone left every rate of a
#                          default CPU sweep INVALID by the lag rule, a verdict on the dispatcher, not the model

VALID = "valid"


def queries_needed(over: int, p: float = PERCENTILE, confidence: float = CONFIDENCE) -> int:
    """The fewest queries for which `over` of them exceeding the bound still shows, with `confidence`,
    that at most 1 - p of all queries would: the smallest n with P[Binomial(n, 1 - p) <= over] <= 1 -
    confidence (LoadGen's early-stopping criterion for the Server scenario, tolerance 0)."""
    from scipy.stats import binom  # deferred: ~0.8 s of every cell process's start-up; only server steps use it
    lo, hi = over + 1, max(2 * (over + 1), 64)
    while binom.cdf(over, hi, 1 - p) > 1 - confidence:
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if binom.cdf(over, mid, 1 - p) <= 1 - confidence else (mid + 1, hi)
    return lo


def poisson_schedule(rate: float, n: int, seed: int) -> np.ndarray:
    """Scheduled arrival times (seconds from the start) of n queries of a Poisson process at `rate`."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, n)
    return np.cumsum(gaps) - gaps[0]  # the first query at 0


# -- clocks ---------------------------------------------------------------------------------------
@dataclass
class RealClock:
    """A real clock (perf_counter, or the processes' shared one), and sleep (which releases the GIL; no
    spinning, which would hold it from the workers)."""
    now: Callable[[], float] = time.perf_counter

    def sleep_until(self, t: float) -> None:
        while (left := t - self.now()) > 0:
            time.sleep(left)


@dataclass
class SimClock:
    """Simulated time: sleeping jumps to the time asked, plus `issue_cost` seconds per wake-up (a model
    of a late dispatcher, so that the lag rule can be tested). Deterministic."""
    t: float = 0.0
    issue_cost: float = 0.0

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t) + self.issue_cost


# -- one rate step ------------------------------------------------------------------------------
@dataclass
class Step:
    """What one rate did. Times in ms; `seconds` from the first scheduled arrival to the last completion."""
    rate: float                 # offered (target) queries per second
    queries: int                # issued and completed
    seconds: float
    bound_ms: float
    lat_p50_ms: float
    lat_p90_ms: float
    lat_p99_ms: float
    lag_p99_ms: float           # dispatcher: actual - scheduled issue time
    over: int                   # queries whose latency exceeded the bound
    verdict: str                # VALID, or "invalid: <reason>"
    batch_hist: dict[str, int] | None = None

    @property
    def valid(self) -> bool:
        return self.verdict == VALID


def judge(rate: float, sched: np.ndarray, issued: np.ndarray, ends: np.ndarray, bound: float,
          overloaded: bool = False, hist: Counter | None = None) -> Step:
    """The Step of a finished rate: percentiles and the verdict (lag, then p99, then early stopping)."""
    lat = (ends - sched) * 1e3
    lag = (issued - sched) * 1e3
    bound_ms = bound * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 100 * PERCENTILE]))
    lag_p99 = float(np.percentile(lag, 100 * PERCENTILE))
    over = int(np.sum(lat > bound_ms))
    n = len(lat)
    if overloaded:
        verdict = (f"invalid: overloaded: over {1 - PERCENTILE:.0%} of the step's queries were past the bound "
                   f"unanswered; stopped after issuing {n}")
    elif lag_p99 > LAG_FRACTION * bound_ms:
        verdict = (f"invalid: dispatcher lag p99 {lag_p99:.3g} ms > {LAG_FRACTION:.0%} of the bound "
                   f"{bound_ms:.3g} ms (the load generator, not the server, is measured)")
    elif p99 > bound_ms:
        verdict = f"invalid: p99 {p99:.3g} ms > bound {bound_ms:.3g} ms"
    elif n < max(MIN_QUERIES, need := queries_needed(over)):
        verdict = (f"invalid: early stopping: {over} of {n} queries over the bound; knowing the p99 "
                   f"is under it needs {max(MIN_QUERIES, need)}")
    else:
        verdict = VALID
    return Step(rate=rate, queries=n, seconds=float(ends.max() - sched.min()), bound_ms=bound_ms,
                lat_p50_ms=p50, lat_p90_ms=p90, lat_p99_ms=p99, lag_p99_ms=lag_p99, over=over, verdict=verdict,
                batch_hist={str(k): v for k, v in sorted(hist.items())} if hist else None)


def step_queries(rate: float, min_seconds: float) -> int:
    """Queries in one step: MIN_SECONDS of traffic, and at least what early stopping needs with none over."""
    return max(MIN_QUERIES, queries_needed(0), math.ceil(rate * min_seconds))


def issue(clock, strategy, sched_rel: np.ndarray, rate: float, bound: float) -> tuple:
    """The dispatcher: issue query i at its scheduled time (start + sched_rel[i]), recording when it really
    went. Stops early once the verdict is certain: when more than 1 - PERCENTILE of the step's queries are
    still unanswered a bound after their scheduled time, the p99 is over the bound whatever follows.
    (Queries are answered about in order, so those are the ones from `done` up to the last scheduled a
    bound ago.) Returns (scheduled, issued, overloaded), absolute clock times of the queries issued."""
    n = len(sched_rel)
    issued = np.empty(n)
    decided = math.floor((1 - PERCENTILE) * n) + 1
    sched = clock.now() + START_DELAY_S + sched_rel
    for i in range(n):
        clock.sleep_until(sched[i])
        issued[i] = clock.now()
        strategy.submit(i, issued[i])
        if i + 1 - strategy.done > decided:  # cheap test first
            late = int(np.searchsorted(sched, issued[i] - bound, side="right")) - strategy.done
            if late > decided:
                return sched[: i + 1], issued[: i + 1], True
    return sched, issued, False


def dispatch(clock, strategy, sched_rel: np.ndarray, rate: float, bound: float) -> tuple:
    """issue(), then the strategy's completion times: (scheduled, issued, ends, overloaded)."""
    sched, issued, overloaded = issue(clock, strategy, sched_rel, rate, bound)
    return sched, issued, strategy.finish(len(sched)), overloaded


def measure_rate(clock, make_strategy: Callable[[], Any], rate: float, bound: float, seed: int,
                 min_seconds: float = MIN_SECONDS) -> Step:
    n = step_queries(rate, min_seconds)
    strategy = make_strategy()
    sched, issued, ends, overloaded = dispatch(clock, strategy, poisson_schedule(rate, n, seed), rate, bound)
    return judge(rate, sched, issued, ends, bound, overloaded, getattr(strategy, "hist", None))


# -- the search -----------------------------------------------------------------------------------
@dataclass
class Search:
    """The steps in the order run; `peak` the highest valid rate, `above` the lowest invalid rate above it
    (the true peak lies in [peak, above), to `precision`, if both are known); `note` why it stopped early."""
    steps: list[Step] = field(default_factory=list)
    peak: float | None = None
    above: float | None = None
    note: str = ""


def search_steps(measure: Callable[[float], Step], start: float, now: Callable[[], float], out: Search,
                 precision: float = PRECISION, max_steps: int = MAX_STEPS, budget_s: float = BUDGET_S,
                 floor: float | None = None, affordable: Callable[[float, float], bool] | None = None):
    """Bracket (double from `start` until a rate fails, or halve until one passes), then bisect in log
    space until above / peak <= 1 + precision; yields each Step as it finishes, filling `out`. `floor`: the
    lowest rate worth trying (default start / 256); `affordable(rate, seconds left)`: whether a step at
    that rate fits in what is left of the budget."""
    floor = floor or start / 256
    began = now()
    rate = start
    while True:
        left = budget_s - (now() - began)
        if len(out.steps) >= max_steps:
            out.note = f"stopped after {max_steps} steps"
            return
        if left <= 0 or (affordable is not None and not affordable(rate, left)):
            out.note = f"stopped at the {budget_s:g} s budget"
            return
        step = measure(rate)
        out.steps.append(step)
        yield step
        if step.valid:
            out.peak = rate if out.peak is None else max(out.peak, rate)
        elif out.above is None or rate < out.above:
            out.above = rate
        if out.peak is not None and out.above is not None and out.above <= out.peak:
            out.above = None  # noise: a lower rate failed than one that passed; search above the peak again
        if out.peak is None:
            rate = rate / 2
            if rate < floor:
                out.note = f"no valid rate down to {floor:.3g}/s"
                return
        elif out.above is None:
            rate = rate * 2
        elif out.above / out.peak <= 1 + precision:
            return
        else:
            rate = math.sqrt(out.peak * out.above)


def search(measure: Callable[[float], Step], start: float, now: Callable[[], float], **options) -> Search:
    """search_steps run to the end: the Search."""
    out = Search()
    for _ in search_steps(measure, start, now, out, **options):
        pass
    return out


# -- simulated strategies ---------------------------------------------------------------------------
class SimServers:
    """c servers, one FIFO queue, fixed (or given) service time: the `threads` strategy's queueing."""

    def __init__(self, clock: SimClock, servers: int, service: Callable[[int], float] | float):
        self.clock, self.servers = clock, servers
        self.service = service if callable(service) else (lambda _b, s=service: s)
        self.free = [0.0] * servers  # heap of when each server is next free
        self.ends: list[float] = []
        self.pending_ends: list[float] = []  # heap, for `done`

    @property
    def done(self) -> int:
        while self.pending_ends and self.pending_ends[0] <= self.clock.now():
            heapq.heappop(self.pending_ends)
        return len(self.ends) - len(self.pending_ends)

    def submit(self, i: int, t: float) -> None:
        start = max(t, heapq.heappop(self.free))
        end = start + self.service(1)
        heapq.heappush(self.free, end)
        self.ends.append(end)
        heapq.heappush(self.pending_ends, end)

    def finish(self, count: int) -> np.ndarray:
        self.clock.t = max([self.clock.t, *self.ends])
        return np.asarray(self.ends[:count])





class SimBatcher:
    """One batcher: a forward of up to max_batch requests once max_batch wait or the first has waited
    max_wait (whichever is first, and not before the last forward ends), service(batch size) seconds each:
    the `batched` strategy's policy. A batch is formed once the clock has passed its closing time, when
    every arrival it can hold is known (the policy is causal), so the simulation is exact."""

    def __init__(self, clock: SimClock, servers: int, service: Callable[[int], float] | float,
                 max_batch: int, max_wait: float):
        self.clock, self.servers = clock, 1
        self.service = service if callable(service) else (lambda _b, s=service: s)
        self.max_batch, self.max_wait = max_batch, max_wait
        self.arrivals: list[float] = []
        self.ends: list[float] = []   # of the queries batched so far, in arrival order
        self.free = 0.0               # when the batcher's last forward ends
        self.hist: Counter = Counter()

    def submit(self, i: int, t: float) -> None:
        self.arrivals.append(t)

    def _form(self, until: float) -> None:
        """Form every batch that closes by `until`."""
        a, b = self.arrivals, self.max_batch
        while (i := len(self.ends)) < len(a):
            fill = a[i + b - 1] if i + b - 1 < len(a) else math.inf
            close = max(self.free, min(a[i] + self.max_wait, fill))
            if close > until:
                return
            j = i
            while j < len(a) and j - i < b and a[j] <= close:
                j += 1
            self.free = close + self.service(j - i)
            self.ends += [self.free] * (j - i)
            self.hist[j - i] += 1

    @property
    def done(self) -> int:
        self._form(self.clock.now())
        return bisect.bisect_right(self.ends, self.clock.now())  # ends only grow

    def finish(self, count: int) -> np.ndarray:
        self._form(math.inf)
        self.clock.t = max(self.clock.t, self.free)
        return np.asarray(self.ends[:count])


SIM_STRATEGIES: dict[str, Callable[..., Any]] = {
    "threads": lambda clock, n, service, **_: SimServers(clock, n, service),
    "batched": lambda clock, n, service, max_batch=0, max_wait=0.002, **_: SimBatcher(
        clock, n, service, max_batch or n, max_wait),
}


def simulate_search(strategy: str, servers: int, service: Callable[[int], float] | float, bound: float,
                    start: float, seed: int = 0, min_seconds: float = MIN_SECONDS, issue_cost: float = 0.0,
                    **options) -> Search:
    """The search on the simulated clock: deterministic for a seed. `start` the first rate tried."""
    clock = SimClock(issue_cost=issue_cost)
    steps = [0]

    def measure(rate: float) -> Step:
        steps[0] += 1
        make = lambda: SIM_STRATEGIES[strategy](clock, servers, service, **options)  # noqa: E731
        return measure_rate(clock, make, rate, bound, seed + steps[0], min_seconds)

    return search(measure, start, clock.now, budget_s=math.inf)


# -- real strategies (a cell's Harness: op, inputs, concat/split, check) ----------------------------
class ThreadsServer:
    """N worker threads, each taking the next query from one FIFO queue and running it through the op.

    A step's threads are new threads, so each first applies the harness's per-thread setting (torch's
    intra-op threads are per thread) and runs one untimed op, and the step starts only when all are ready:
    a framework's per-thread first use (a CUDA stream or library handle, an OpenMP pool) is not a query's
    latency. Without it, on the H100 every step of `server-threads` x4 had exactly 4 queries over the bound
    (one per new thread), which made even 12-15 queries/s INVALID by early stopping."""

    def __init__(self, h, servers: int, keep: bool = False):
        self.h, self.servers, self.keep = h, servers, keep
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.ends: dict[int, float] = {}
        self.outputs: dict[int, Any] = {}
        self.failure: BaseException | None = None
        self.ready = threading.Barrier(servers + 1)
        self.threads = [threading.Thread(target=self._work, args=(k,), name=f"tb-server-{k}", daemon=True)
                        for k in range(servers)]
        for th in self.threads:
            th.start()
        self.ready.wait()  # every thread set up and warmed: only now may the dispatcher start

    def _work(self, k: int) -> None:
        op, inputs, clock, q = self.h.op, self.h.inputs, time.perf_counter, self.q
        try:
            if getattr(self.h, "thread_setup", None) is not None:
                self.h.thread_setup()
            op(inputs[k % len(inputs)])
        except BaseException as e:  # noqa: BLE001 - the step fails with it (after the barrier)
            self.failure = self.failure or e
        finally:
            self.ready.wait()
        while (i := q.get()) is not None:
            try:
                y = op(inputs[i % len(inputs)])
            except BaseException as e:  # noqa: BLE001 - the step fails with it
                self.failure = self.failure or e
                y = None
            self.ends[i] = clock()
            if self.keep:
                self.outputs[i] = y

    @property
    def done(self) -> int:
        return len(self.ends)

    def submit(self, i: int, t: float) -> None:
        self.q.put(i)

    def finish(self, count: int) -> np.ndarray:
        for _ in self.threads:
            self.q.put(None)
        for th in self.threads:
            th.join()
        if self.failure is not None:
            raise self.failure
        return np.array([self.ends[i] for i in range(count)])


class BatchedServer:
    """The dynamic batcher: forwards of up to max_batch queries, or of whatever arrived within max_wait of
    the first; the batcher runs on the calling (main) thread, started by `run`, as in `batched` mode."""

    def __init__(self, h, servers: int, max_batch: int, max_wait: float, keep: bool = False):
        self.h, self.servers, self.keep = h, 1, keep
        self.max_batch, self.max_wait = max_batch, max_wait
        self.pending: deque = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.ends: dict[int, float] = {}
        self.outputs: dict[int, Any] = {}
        self.hist: Counter = Counter()
        self.done = 0

    def submit(self, i: int, t: float) -> None:
        with self.cond:
            self.pending.append((i, t))
            if len(self.pending) == 1 or len(self.pending) >= self.max_batch:
                self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()

    def run(self) -> None:
        """The batcher loop; returns once closed and drained."""
        h, clock = self.h, time.perf_counter
        while True:
            with self.cond:
                while True:
                    if len(self.pending) >= self.max_batch or (self.pending and self.closed):
                        break
                    if self.pending:
                        left = self.pending[0][1] + self.max_wait - clock()
                        if left <= 0:
                            break
                        self.cond.wait(left)
                    elif self.closed:
                        return
                    else:
                        self.cond.wait()
                batch = [self.pending.popleft() for _ in range(min(self.max_batch, len(self.pending)))]
            xs = [h.inputs[i % len(h.inputs)] for i, _ in batch]
            out = h.op(h.concat(xs) if len(xs) > 1 else xs[0])
            parts = h.split(out, [h.rows] * len(xs)) if len(xs) > 1 else [out]
            t = clock()
            for (i, _), part in zip(batch, parts):
                self.ends[i] = t
                if self.keep:
                    self.outputs[i] = part
            self.hist[len(batch)] += 1
            self.done += len(batch)

    def finish(self, count: int) -> np.ndarray:
        return np.array([self.ends[i] for i in range(count)])


@dataclass
class Strategy:
    """How a server strategy runs for real: `make(h, n, cell, pool)` builds it for one rate step; `batcher`
    says whether it needs the main thread (then the dispatcher runs beside it in a thread); `pool(cell,
    build)`, where given, starts what the cell's steps share (processes: the ServerPool), once, before the
    search; `refusal`: why it cannot run yet."""
    make: Callable[..., Any] | None
    batcher: bool = False
    refusal: str = ""
    pool: Callable[..., Any] | None = None


def _start_pool(cell, build):
    from . import processes  # imports the backends package (lazy about frameworks); only this strategy needs it
    return processes.ServerPool(cell, str(build.cache))


STRATEGIES: dict[str, Strategy] = {
    "threads": Strategy(lambda h, n, cell, pool: ThreadsServer(h, n)),
    "batched": Strategy(lambda h, n, cell, pool: BatchedServer(h, n, cell.max_batch or n, cell.max_wait_ms / 1e3),
                        batcher=True),
    "processes": Strategy(lambda h, n, cell, pool: pool.begin(), pool=_start_pool),
}


def run_real(strategy: str, h, n: int, cell, rate: float, bound: float, seed: int, min_seconds: float,
             keep: bool = False, sched_rel: np.ndarray | None = None, pool=None) -> tuple[Step, Any]:
    """One rate step on the real clock: the dispatcher in its own thread, the strategy's work in its threads
    (and, for the batcher, this thread). Returns the Step and the strategy (its outputs when `keep`)."""
    spec = STRATEGIES[strategy]
    srv = spec.make(h, n, cell, pool)
    srv.keep = keep
    clock = RealClock(getattr(srv, "now", time.perf_counter))
    if sched_rel is None:
        sched_rel = poisson_schedule(rate, step_queries(rate, min_seconds), seed)
    out = _Issued()

    def dispatcher() -> None:
        try:
            out.sched, out.issued, out.overloaded = issue(clock, srv, sched_rel, rate, bound)
        except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
            out.error = e
        finally:
            if spec.batcher:
                srv.close()

    th = threading.Thread(target=dispatcher, name="tb-dispatch", daemon=True)
    th.start()
    if spec.batcher:
        srv.run()
    th.join()
    if out.error is not None:
        raise out.error
    ends = srv.finish(len(out.sched))
    return judge(rate, out.sched, out.issued, ends, bound, out.overloaded, getattr(srv, "hist", None)), srv


@dataclass
class _Issued:
    """What the dispatcher thread hands back: issue()'s result, or the exception it met."""
    sched: np.ndarray | None = None
    issued: np.ndarray | None = None
    overloaded: bool = False
    error: BaseException | None = None


# -- the compare cell: calibrate, warm, search, verify ---------------------------------------------
CALIBRATE_S = 1.0        # seconds of one-at-a-time requests on the main thread that set the default bound
CALIBRATE_MIN_OPS = 30   # ...and at least this many, so the p50 is not one op's noise
START_FRACTION = 0.5     # the search starts at this share of N servers' capacity (N / single-request p50):
                         # from above, since a step needs 459 queries and slow rates cost the most time
FLOOR_FRACTION = 1 / 64  # ...and gives up below this share of one server's capacity


class _Nothing:
    """A strategy that takes a query and does nothing: what is left is the dispatcher's own lag."""
    servers = 1

    def __init__(self):
        self.done = 0

    def submit(self, i: int, t: float) -> None:
        self.done += 1


def dispatcher_lag_p99(seed: int, rate: float = LAG_PROBE_RATE, queries: int = LAG_PROBE_QUERIES,
                       clock=None) -> float:
    """The dispatcher's lag p99 (seconds) on this machine now: Poisson queries to a do-nothing strategy."""
    clock = clock or RealClock()
    sched, issued, _ = issue(clock, _Nothing(), poisson_schedule(rate, queries, seed), rate, 1e9)
    return float(np.percentile(issued - sched, 100 * PERCENTILE))


def default_bound(single_p50: float, given_ms: float | None, lag_p99: float = 0.0) -> float:
    """The latency bound in seconds: --latency-bound-ms, else BOUND_FACTOR x the single-request p50, at
    least BOUND_FLOOR_MS and at least LAG_FLOOR_FACTOR x the tightest bound the dispatcher's measured lag
    lets the lag rule pass."""
    if given_ms is not None:
        return given_ms / 1e3
    return max(BOUND_FACTOR * single_p50, BOUND_FLOOR_MS / 1e3, LAG_FLOOR_FACTOR * lag_p99 / LAG_FRACTION)


def runner(cell, build):
    """RUNNERS entry of the server-* modes. Does the work that can fail before any rate runs (refusal,
    build, one op slower than a step, calibration, warm-up) at once, then returns a generator of one Trial
    per rate step: the worker writes each to the events file as it comes, so a cell that times out or
    fails mid-search keeps every finished rate. Verification runs after the last step, inside the generator."""
    from backends.base import Unsupported  # framework-free (the Backend interface only)
    from ..cells import Trial
    from . import modes

    strategy = cell.mode.removeprefix("server-")
    spec = STRATEGIES[strategy]
    if spec.make is None:
        raise Unsupported(f"{cell.mode}: {spec.refusal}")
    h = build()
    min_seconds = max(MIN_SECONDS, cell.duration)
    modes.check_speed(h, 0, min_seconds)
    for _ in range(cell.warmup):
        h.op(h.inputs[0])
    lat, began = [], time.perf_counter()
    while len(lat) < CALIBRATE_MIN_OPS or time.perf_counter() - began < CALIBRATE_S:
        t0 = time.perf_counter()
        h.op(h.inputs[0])
        lat.append(time.perf_counter() - t0)
    single = float(np.median(lat))
    lag = dispatcher_lag_p99(cell.seed) if cell.latency_bound_ms is None else 0.0
    bound = default_bound(single, cell.latency_bound_ms, lag)
    n = cell.threads
    if strategy == "batched":  # every batch size once: frameworks that compile per shape must not do it in a step
        for size in range(2, min(cell.max_batch or n, 64) + 1):
            xs = [h.inputs[i % len(h.inputs)] for i in range(size)]
            h.split(h.op(h.concat(xs)), [h.rows] * size)
    pool = spec.pool(cell, build) if spec.pool else None  # started and warmed once, for every step
    try:
        if pool is not None:
            build.facts.update(intra_op_ran=pool.intra_op_ran, intra_op_rule=pool.rule)
        run_real(strategy, h, n, cell, 1.0, 1e9, cell.seed, min_seconds, sched_rel=np.zeros(n * max(cell.warmup, 1)),
                 pool=pool)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    capacity = 1.0 / single

    def steps():
        try:
            k = iter(range(1, MAX_STEPS + 1))

            def measure(r: float) -> Step:  # one rate step; its span is where the GPU sampler reads count
                t0 = time.perf_counter()
                step = run_real(strategy, h, n, cell, r, bound, cell.seed + next(k), min_seconds, pool=pool)[0]
                h.measured.timed_spans.append((t0, time.perf_counter()))
                return step

            affordable = lambda r, left: step_queries(r, min_seconds) / r <= left  # noqa: E731
            for step in search_steps(measure, START_FRACTION * n * capacity, time.perf_counter, Search(),
                                     floor=FLOOR_FRACTION * capacity, affordable=affordable):
                yield Trial(ops=step.queries, seconds=step.seconds, lat_p50_ms=step.lat_p50_ms,
                            lat_p90_ms=step.lat_p90_ms, lat_p99_ms=step.lat_p99_ms, batch_hist=step.batch_hist,
                            rate=step.rate, lag_p99_ms=step.lag_p99_ms, bound_ms=step.bound_ms, verdict=step.verdict)
            # verification: verify_ops queries per server, all issued at once, each output against the reference
            # (a processes pool checks each in the process that ran it and sends the error back)
            _, srv = run_real(strategy, h, n, cell, 1.0, 1e9, cell.seed, min_seconds, keep=True,
                              sched_rel=np.zeros(n * max(cell.verify_ops, 1)), pool=pool)
            for i, y in sorted(srv.outputs.items()):
                h.record(h.check(y, i % len(h.inputs)))
            for _, err in sorted(getattr(srv, "checked", {}).items()):
                h.record(err)
            if pool is not None:  # each process's memory, as the processes mode records it
                reports = pool.stop()
                device = [r["device_mb"] for r in reports]
                build.facts.update(process_rss_mb=[r["rss_mb"] for r in reports],
                                   process_uss_mb=[r["uss_mb"] for r in reports],
                                   process_device_mb=device if any(d is not None for d in device) else None)
        finally:
            if pool is not None:
                pool.close()

    return steps()
