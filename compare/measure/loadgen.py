"""The server scenario's rules, as MLPerf Inference LoadGen's Server scenario defines them, apart from any
thread or model: single-request queries arrive on a seeded Poisson schedule at a target rate; a dispatcher
issues each at its scheduled time to a strategy (anything with submit(i, t), done and finish(count));
latency runs from the *scheduled* time, so queueing and the dispatcher's own lateness count. Each rate step
is judged (judge): valid when (1) the dispatcher's lag (actual - scheduled issue time) has a p99 within
LAG_FRACTION of the bound, (2) the latency p99 is within the bound, and (3) enough queries were seen to know
it (LoadGen's early stopping, `queries_needed`).

The search (next_step) brackets then bisects the rate to PRECISION, and a stall cannot end it. A stall (the
process or the dispatcher not running for tens of ms: a shared VM's scheduler, a framework call holding the
GIL) fails a short step at any rate, since the queries scheduled in it are late; it never makes one pass.
So (compare.serverrules.settle): a failed step bounds the search only once the same rate fails again; when
the two disagree, a long step settles the rate; and the bracket's two ends are measured last with long
steps, so [peak, above) is printed as a bracket only when a long step passed at the peak and one failed
above it. A long step has long_queries(rate): one stall of STALL_S delays the ceil(rate x STALL_S) queries
scheduled in it, which may all fail (the lag limit, 10% of the bound, is under STALL_S for every bound
below 500 ms); with that many over, a step needs queries_needed(that many) to pass early stopping, which
also keeps them under 1% for both p99s: 662 queries at 10/s (66 s), 1,307 at 100/s (13 s), 6,898 at 1k/s
(6.9 s), 55,427 at 10k/s (5.5 s), whatever the bound. And a long step lasts at least LONG_SECONDS, LoadGen's
default minimum duration (10 s), so the bracket's ends are judged over as long a run as LoadGen's own: on a
VM that stalls often, a 10 s run meets more stalls than a 5 s one, and the LoadGen cross-check found rates
that passed threadbench's ~5 s long steps and failed LoadGen's 10 s (benchmarks/README.md). What no length
absorbs: at a rate with less slack under the bound than the stall, the queue the stall leaves delays the
queries after it too; such a rate is the peak of a machine that stalls, and its long step fails.

On the simulated clock (clocks.SimClock, which can stall) with the simulated strategies (c FIFO servers;
the batcher's policy) everything here is deterministic: what tests compare with queueing theory
(queueing.py). Not here: the live strategies and a cell's search (compare.measure.server). Not LoadGen
itself (compare.measure.mlperf drives that): no accuracy mode, no multi-sample queries, MIN_SECONDS per
search step rather than LoadGen's 600 s (or its 10 s default)."""
from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..serverrules import LONG, SEARCH, STALL_S, VALID, Settled, settle
from .clocks import RealClock, SimClock

# -- the rules, each with where it comes from --------------------------------------------------------
PERCENTILE = 0.99        # LoadGen Server: the latency percentile that must meet the bound
CONFIDENCE = 0.99        # LoadGen Server early stopping: 99% confident that at most 1% of queries exceed the
                         # bound; with none over it, that takes 459 queries (LoadGen prints the same figure)
MIN_QUERIES = 100        # LoadGen's default min_query_count (early stopping usually asks for more)
MIN_SECONDS = 1.0        # per rate step; LoadGen defaults to 10 s (600 s official): 1 s keeps a sweep on a
                         # 2-core CPU to minutes; raise it with --duration (a server cell's seconds per rate)
LAG_FRACTION = 0.10      # a rate whose dispatcher lag p99 exceeds this share of the bound is INVALID: the
                         # load generator, not the server, would be setting a tenth of the latency budget
LONG_SECONDS = 10.0      # a long step lasts at least this: LoadGen's default min_duration (its Server scenario)
PRECISION = 0.05         # the search stops once the highest valid and lowest invalid rate are within 5%
MAX_STEPS = 24           # rate steps per search at most: bracketing + bisection take ~8 from a fair start,
                         # each failed rate once more (~4), two long ends, and room for a disagreement or two
BUDGET_S = 180.0         # clock seconds per search at most (within ModeSpec.extra_s); what it settled is
                         # reported, a bracket only if both ends were confirmed
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


def queries_needed(over: int, p: float = PERCENTILE, confidence: float = CONFIDENCE) -> int:
    """The fewest queries for which `over` of them exceeding the bound still shows, with `confidence`,
    that at most 1 - p of all queries would: the smallest n with P[Binomial(n, 1 - p) <= over] <= 1 -
    confidence (LoadGen's early-stopping criterion for the Server scenario, tolerance 0)."""
    from scipy.stats import binom  # deferred: ~0.8 s of every cell process's start-up; only server cells use it
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
    lag_p99_ms: float | None    # dispatcher: actual - scheduled issue time (None: LoadGen's, which reports none)
    over: int                   # queries whose latency exceeded the bound
    verdict: str                # VALID, or "invalid: <reason>"
    batch_hist: dict[str, int] | None = None
    kind: str = SEARCH          # serverrules.STEP_KINDS: a search step, a failure run again, or a long step

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
                 min_seconds: float = MIN_SECONDS, queries: int | None = None) -> Step:
    """One step at `rate`: `queries` queries (default step_queries) to a fresh strategy, judged."""
    n = queries or step_queries(rate, min_seconds)
    strategy = make_strategy()
    sched, issued, ends, overloaded = dispatch(clock, strategy, poisson_schedule(rate, n, seed), rate, bound)
    return judge(rate, sched, issued, ends, bound, overloaded, getattr(strategy, "hist", None))


# -- the search -----------------------------------------------------------------------------------
@dataclass
class Search:
    """The steps in the order run; `peak` the highest valid rate, `above` the lowest failed rate above it
    (serverrules.settle: a failure counts once repeated or long); `confirmed`: long steps settled both, so
    the true peak lies in [peak, above) to `precision`; `note` why it stopped early."""
    steps: list[Step] = field(default_factory=list)
    peak: float | None = None
    above: float | None = None
    confirmed: bool = False
    note: str = ""


def long_queries(rate: float, min_seconds: float = MIN_SECONDS) -> int:
    """Queries in a long step: at least LONG_SECONDS of traffic (as LoadGen's own run), and enough that one
    stall of STALL_S cannot fail it (stall_queries)."""
    return max(step_queries(rate, max(min_seconds, LONG_SECONDS)), stall_queries(rate))


def stall_queries(rate: float) -> int:
    """Queries enough that one stall of STALL_S cannot fail a step: the stall delays the queries scheduled in
    it, ceil(rate x STALL_S), past the lag limit (and the bound, where the rate has no more slack than the
    stall); with all of them over, the step still passes early stopping (and so keeps them under 1% for both
    p99s) when it has queries_needed(that many) queries."""
    return queries_needed(math.ceil(rate * STALL_S))


def next_step(s: Settled, tried: list[float], start: float, precision: float) -> tuple[float, str] | None:
    """The search's next (rate, kind) from what its steps settled, or None when the bracket is confirmed
    to `precision`: a step owed first (a failure run again; a disagreement settled by a long step); then
    halve below the lowest rate tried until one passes, double the peak until a rate fails, bisect in log
    space to `precision`, and last confirm the peak and the rate above it with long steps."""
    if s.due:
        return s.due
    if s.peak is None:
        return (min(tried) / 2 if tried else start), SEARCH
    if s.above is None:
        return 2 * s.peak, SEARCH
    if s.above / s.peak > 1 + precision:
        return math.sqrt(s.peak * s.above), SEARCH
    if not s.rates[s.peak].long:
        return s.peak, LONG
    if not s.rates[s.above].long:
        return s.above, LONG
    return None


def search_steps(measure: Callable[[float, int], Step], start: float, now: Callable[[], float], out: Search,
                 min_seconds: float = MIN_SECONDS, precision: float = PRECISION, max_steps: int = MAX_STEPS,
                 budget_s: float = BUDGET_S, floor: float | None = None):
    """The confirmed search (next_step), yielding each Step as it finishes and filling `out`.
    `measure(rate, queries)` runs one step; a search step has step_queries, a long one long_queries.
    `floor`: the lowest rate worth trying (default start / 256). A step that would outlast what is left of
    `budget_s` (its queries at its rate) is not started."""
    floor = floor or start / 256
    began = now()
    while True:
        settled = settle((st.rate, st.valid, st.kind) for st in out.steps)
        out.peak, out.above, out.confirmed = settled.peak, settled.above, settled.confirmed
        step = next_step(settled, [st.rate for st in out.steps], start, precision)
        if step is None:
            return
        rate, kind = step
        if rate < floor:
            out.note = f"no valid rate down to {floor:.3g}/s"
            return
        if len(out.steps) >= max_steps:
            out.note = f"stopped after {max_steps} steps"
            return
        n = long_queries(rate, min_seconds) if kind == LONG else step_queries(rate, min_seconds)
        if n / rate > budget_s - (now() - began):
            out.note = f"stopped at the {budget_s:g} s budget"
            return
        result = measure(rate, n)
        result.kind = kind
        out.steps.append(result)
        yield result


def search(measure: Callable[[float, int], Step], start: float, now: Callable[[], float], **options) -> Search:
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
                    stalls: tuple = (), **options) -> Search:
    """The search on the simulated clock: deterministic for a seed. `start` the first rate tried; `stalls`:
    (at, seconds) of simulated time in which the dispatcher sleeps through (clocks.SimClock)."""
    clock = SimClock(issue_cost=issue_cost, stalls=tuple(stalls))
    step_seeds = itertools.count(seed + 1)

    def measure(rate: float, queries: int) -> Step:
        make = lambda: SIM_STRATEGIES[strategy](clock, servers, service, **options)  # noqa: E731
        return measure_rate(clock, make, rate, bound, next(step_seeds), queries=queries)

    return search(measure, start, clock.now, min_seconds=min_seconds, budget_s=math.inf)


# -- the default latency bound ------------------------------------------------------------------
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
