"""The one schedule of windows every throughput mode runs, and the one timed loop inside a window.

  1. the speed check: one op to compile and load kernels, then the median of a few ops. If the minimum of
     completed ops per participant (MIN_OPS_PER_WINDOW) cannot fit in the longest window allowed
     (Cell.window_cap), the cell is too slow and says so with its numbers;
  2. warm-up windows, run by every participant, until two consecutive windows agree within STEADY_REL, or
     for WARMUP_CAP_DURATIONS x --duration; what it took is recorded, never dropped;
  3. `trials` timed windows, each long enough that every participant completes MIN_OPS_PER_WINDOW ops at
     the rate warm-up ended with (never shorter than --duration, never longer than the cap).
A window's clock starts with the first participant to begin work (a window that opened at the barrier could
be empty on a busy machine, its participants waking after its end). Each op is forward + synchronise; it
counts once its synchronise has returned, and only ops that started before the deadline count. A window's
throughput is completed ops / (last completion - first start), all participants pooled. Participants are
the threads of one process (Boundaries) or the processes of a cell (compare.measure.processes): the rules
run on a state of named fields that lives in a plain object or in shared memory, so both obey one rule.
The loop runs each op as its framework call, then synchronise (none where the framework is synchronous on
the device: Backend.is_synchronous), and records where the time went (compare.measure.split: what is read
per op, per window and on sampled ops).
Not here: what the participants run, or how they wait for each other."""
from __future__ import annotations

import math
import statistics
import threading
from collections import Counter
from typing import Any, Callable

import numpy as np
import psutil

from ..cells import Trial
from .clocks import has_thread_times
from .harness import Harness, Measured, TooSlow
from .interpreters import gil_enabled
from .split import SAMPLE_READS, Lap, Reader, Snapshot, cpu_read_s, pool, snapshot, stride, usable_cores

MIN_OPS_PER_WINDOW = 10   # completed ops per participant per timed window: with fewer, where one op starts and
#                           ends in the window moves its rate by more than 10%, and the window measures placement
SPEED_PROBE_OPS = 5       # timed ops the speed check takes the median of (after one op that compiles and loads)
WINDOW_SAFETY = 1.5       # a timed window is planned to hold 1.5x the minimum at warm-up's last rate, so a
#                           window somewhat slower than warm-up still holds the minimum
STEADY_REL = 0.05         # warm-up is steady when two consecutive warm-up windows' throughputs agree within 5%
WARMUP_WINDOW_SHARE = 0.25  # a warm-up window lasts a quarter of --duration ...
WARMUP_MIN_OPS = 3        # ... or long enough for 3 ops per participant at the last rate seen, whichever is longer
WARMUP_CAP_DURATIONS = 4  # warm-up ends unsteady after 4 x --duration: on a busy machine it may never settle,
#                           and the result says so (Measured.steady) instead of warming up forever

# The schedule's phases, as floats: its state may live in shared memory (an array of doubles)
IDLE, WARM, TIMED, DONE, TOO_SLOW = 0.0, 1.0, 2.0, 3.0, 4.0


def check_speed(h: Harness, index: int, cap: float) -> float:
    """One op to compile and load kernels, then the median of SPEED_PROBE_OPS timed ops, stopping early
    once the median is known to be over the limit, or once the first op and a timed one each took longer
    than the whole longest window (an op of seconds is not timed five times to learn it is too slow).
    Raises TooSlow when MIN_OPS_PER_WINDOW such ops do not fit in `cap`, the longest window allowed; returns
    the median op time. Its first output is checked."""
    now = h.clock
    t0 = now()
    h.record(h.check(h.op(h.inputs[index]), index))
    first = now() - t0
    limit, took = cap / MIN_OPS_PER_WINDOW, []
    while len(took) < SPEED_PROBE_OPS and sum(t > limit for t in took) <= SPEED_PROBE_OPS // 2:
        t0 = now()
        h.op(h.inputs[index])
        took.append(now() - t0)
        if first > cap and took[-1] > cap:
            break
    op_s = statistics.median(took)
    h.measured.op_s = op_s
    if op_s > limit:
        raise TooSlow(f"one op takes {op_s:.3g} s (median of {len(took)}), so {MIN_OPS_PER_WINDOW} ops need "
                      f"{op_s * MIN_OPS_PER_WINDOW:.3g} s, more than the {cap:g} s longest window; raise --duration")
    return op_s


def timed_loop(call: Callable, sync: Callable | None, x: Any, deadline: float, lap: Lap, clock: Callable[[], float],
               cpu: Callable[[], float], every: int, timer: Any = None) -> tuple:
    """Ops until the deadline: an op counts if it started before it. Each op is call(x), then sync on its
    output; its start, the end of its call and its end go to `lap`. Every `every`-th op (the first of them
    halfway into the first stride) is sampled as well: the thread's CPU time in the call and in sync, and the
    device timer's mark around the call (compare.measure.split). sync None: the call is the whole op (its
    framework is synchronous on this device, Backend.synchronous_on), so nothing is called or read between the
    two and the call's end is the op's end. Returns (first, last) output."""
    if sync is None:
        lap.mids = lap.ends   # one list: each op's call ends where it ends
    started, called, ended, sampled = lap.starts.append, lap.mids.append, lap.ends.append, lap.samples.append
    first = last = None
    countdown = every // 2  # locals, one branch: the loop's own cost stays far below any op's
    while True:
        t0 = clock()
        if t0 >= deadline:
            return first, last
        if countdown:
            countdown -= 1
            last = call(x)
            if sync is not None:
                t1 = clock()
                sync(last)
                called(t1)
        else:
            countdown = every - 1
            c0 = cpu()
            mark = timer.start() if timer is not None else None
            last = call(x)
            t1 = clock() if sync is not None else None
            c1 = cpu()
            if mark is not None:
                timer.stop(mark)
            if sync is None:
                sampled((c1 - c0, 0.0, mark))
            else:
                sync(last)
                sampled((c1 - c0, cpu() - c1, mark))
                called(t1)
        ended(clock())
        started(t0)
        if first is None:
            first = last


def trial_of(starts: list[float], ends: list[float], weight: int = 1, hist: Counter | None = None,
             window_s: float | None = None, min_thread_ops: int | None = None, split: dict | None = None) -> Trial:
    """One window's op times, every participant's pooled, as a Trial: completed ops (x `weight`, requests
    per op) over first start to last completion, and the latency percentiles; `split`: its time split
    (compare.measure.split.pool), per op of the loop (a batched forward, an offline batch: per forward)."""
    lat = (np.asarray(ends) - np.asarray(starts)) * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99])) if len(lat) else (None,) * 3
    return Trial(ops=len(ends) * weight, seconds=max(ends) - min(starts) if ends else 0.0, lat_p50_ms=p50,
                 lat_p90_ms=p90, lat_p99_ms=p99,
                 batch_hist={str(k): v for k, v in sorted(hist.items())} if hist else None,
                 window_s=window_s, min_thread_ops=min_thread_ops, **(split or {}))


class Window:
    """What each participant did in one timed window: its Lap (op times, sampled ops, gauges) and its first
    and last output (checked after the window closes, outside the clock)."""

    def __init__(self, n: int):
        self.laps: list[Lap] = [Lap() for _ in range(n)]
        self.samples: list[tuple] = [(None, None)] * n

    @classmethod
    def of(cls, per_participant: list) -> "Window":
        """A window from each participant's Lap (as processes report them), or its (starts, ends)."""
        w = cls(len(per_participant))
        for i, part in enumerate(per_participant):
            w.laps[i] = part if isinstance(part, Lap) else Lap(starts=part[0], ends=part[1])
        return w

    @property
    def starts(self) -> list[list[float]]:
        return [lap.starts for lap in self.laps]

    @property
    def ends(self) -> list[list[float]]:
        return [lap.ends for lap in self.laps]

    def min_ops(self) -> int:
        return min(map(len, self.ends))

    def trial(self, weight: int = 1, hist: Counter | None = None, window_s: float | None = None,
              around: tuple[Snapshot, Snapshot] | None = None) -> Trial:
        """The window as a Trial; `around`: the process-wide Snapshots at its boundaries (threads)."""
        return trial_of([s for p in self.starts for s in p], [e for p in self.ends for e in p], weight, hist,
                        window_s=window_s, min_thread_ops=self.min_ops(),
                        split=pool(self.laps, cpu_read_s(), around))

    def span(self) -> tuple[float, float] | None:
        """(first start, last end): the stretch of time the window measured; None without an op."""
        starts, ends = [p[0] for p in self.starts if p], [p[-1] for p in self.ends if p]
        return (min(starts), max(ends)) if ends else None


# The schedule's state: named floats, so that it can live in shared memory for participants that are processes
FIELDS = (
    "phase",           # IDLE (not started), WARM, TIMED, DONE or TOO_SLOW
    "trial",           # the timed window planned, from 0 (-1 while warming up)
    "length",          # the current window's planned length, s (0: none planned yet)
    "deadline",        # the current window's deadline (0: not opened yet; the first participant to start opens it)
    "ops",             # the current window's completed ops, all participants together,
    "min_ops",         # the fewest any one participant completed,
    "first_start",     # its first op start and
    "last_end",        # its last op end
    "rate_each",       # ops/s of one participant, as the last window showed (before warm-up: the speed check's)
    "rate",            # the last warm-up window's throughput, ops / (last end - first start),
    "prev_rate",       # and the one's before it
    "warmup_windows",  # warm-up windows closed
    "warmup_started",
    "warmup_s",        # how long warm-up took, once it has ended
    "steady",          # 1.0: it ended by two windows agreeing (0.0: by its time cap)
    "window_s",        # the timed windows' length, once warm-up has ended (0 until then)
    "need",            # too slow: the window the minimum of ops would need, s
    "split_every",     # every how many ops the timed loop samples one (compare.measure.split.stride)
)


class State:
    """The schedule's state as plain attributes: for participants that are threads of one process."""

    def __init__(self) -> None:
        for name in FIELDS:
            setattr(self, name, 0.0)


class SharedState:
    """The schedule's state in shared memory (one double per field), for participants that are processes:
    every process reads and writes the same fields, by name. Pass it to the processes when they start."""

    def __init__(self, context) -> None:
        self.values = context.RawArray("d", len(FIELDS))


def _shared_field(index: int) -> property:
    return property(lambda self: self.values[index], lambda self, value: self.values.__setitem__(index, value))


for _index, _name in enumerate(FIELDS):
    setattr(SharedState, _name, _shared_field(_index))
del _index, _name


class Schedule:
    """The windows a mode runs, one after another: warm-up until steady (or capped), then the timed trials.

    Every participant runs each window (take_part) and adds what it did (add); `advance()` closes the window
    and plans the next, once per boundary while every participant waits (a barrier's action), so nothing it
    does is timed. The next window's length comes from the rate of one participant the last window showed
    (its ops shared out); a timed window in which some participant fell short of the minimum (a thread the
    GIL or the OS starved) lengthens the windows after it."""

    def __init__(self, n: int, duration: float, trials: int, cap: float, clock: Callable[[], float],
                 state: State | SharedState | None = None, lock: Any = None, participant: str = "thread"):
        self.n, self.duration, self.trials, self.cap, self.clock = n, duration, trials, cap, clock
        self.state = State() if state is None else state
        self.lock = threading.Lock() if lock is None else lock  # add(), and open(): one deadline per window
        self.participant = participant  # what the too-slow message calls one: "thread", "process"

    @property
    def phase(self) -> float:
        return self.state.phase

    def start(self, op_s: float, sample_s: float | None = None) -> None:
        """Before the first window: the rate of one participant assumed until warm-up measures one (its ops
        serialised with the others', at the speed check's op time), and the stride of sampled ops for what a
        sample costs (split.sample_cost; by default the CPU-clock reads alone)."""
        s = self.state
        s.rate_each = 1.0 / (op_s * self.n) if op_s > 0 else math.inf
        # threads share a GIL (unless the interpreter has none); processes do not
        sharing = self.n if self.participant == "thread" and gil_enabled() else 1
        s.split_every = stride(op_s, SAMPLE_READS * cpu_read_s() if sample_s is None else sample_s, sharing,
                               window_s=self.duration)
        s.phase, s.trial, s.length = WARM, -1.0, 0.0

    def open(self) -> float:
        """The current window's deadline, fixed by the first participant to get here."""
        s = self.state
        if s.deadline == 0.0:
            with self.lock:
                if s.deadline == 0.0:
                    s.deadline = self.clock() + s.length
        return s.deadline

    def add(self, ops: int, first_start: float, last_end: float) -> None:
        """What one participant did in the current window: its completed ops, its first start, its last end."""
        with self.lock:
            s = self.state
            s.ops += ops
            s.min_ops = min(s.min_ops, ops)
            if ops:
                s.first_start, s.last_end = min(s.first_start, first_start), max(s.last_end, last_end)

    def advance(self) -> None:
        """Close the window just run, then plan the next. Does nothing before start() or after the last
        window, so it can be the action of every barrier the participants meet."""
        s = self.state
        if s.phase not in (WARM, TIMED):
            return
        if s.length > 0:  # a window ran
            if s.ops:  # the rate of one participant: what they can do together, shared out. (No op at all
                # means none was scheduled before the deadline, since an op that starts in time always
                # completes and counts: that window says nothing about the rate.)
                s.rate_each = s.ops / self.n / s.length
            if s.phase == WARM:
                s.prev_rate = s.rate
                s.rate = s.ops / (s.last_end - s.first_start) if s.ops and s.last_end > s.first_start else 0.0
                s.warmup_windows += 1
            elif s.min_ops < MIN_OPS_PER_WINDOW:  # a participant fell short: the next windows are longer, up
                # to the cap (the short window stays a trial, and says so in its min_thread_ops)
                s.window_s = min(self.cap, s.window_s * WINDOW_SAFETY * MIN_OPS_PER_WINDOW / max(s.min_ops, 1))
        self._plan()

    def steady(self) -> bool:
        s = self.state
        return (s.warmup_windows >= 2 and min(s.rate, s.prev_rate) > 0
                and abs(s.rate - s.prev_rate) <= STEADY_REL * max(s.rate, s.prev_rate))

    def _plan(self) -> None:
        s, t = self.state, self.clock()
        if s.phase == WARM:
            if s.length == 0.0:  # no window has run: warm-up starts now
                s.warmup_started = t
            elapsed = t - s.warmup_started
            if not self.steady() and elapsed < WARMUP_CAP_DURATIONS * self.duration:
                length = max(WARMUP_WINDOW_SHARE * self.duration, WARMUP_MIN_OPS / s.rate_each)
                self._next_window(min(length, self.cap))
                return
            s.warmup_s, s.steady = elapsed, float(self.steady())
            need = MIN_OPS_PER_WINDOW / s.rate_each
            if need > self.cap:
                s.phase, s.need = TOO_SLOW, need
                return
            s.phase, s.window_s = TIMED, min(self.cap, max(self.duration, WINDOW_SAFETY * need))
        s.trial += 1
        if s.trial >= self.trials:
            s.phase = DONE
            return
        self._next_window(s.window_s)

    def _next_window(self, length: float) -> None:
        s = self.state
        s.length, s.deadline, s.ops, s.min_ops = length, 0.0, 0.0, math.inf
        s.first_start, s.last_end = math.inf, -math.inf

    def too_slow(self) -> TooSlow:
        """The TooSlow of a schedule whose warm-up ended at a rate too low for the minimum of ops."""
        s, who = self.state, self.participant
        return TooSlow(f"{s.rate_each:.3g} ops/s per {who} at the end of warm-up, so {MIN_OPS_PER_WINDOW} ops per "
                       f"{who} need {s.need:.3g} s, more than the {self.cap:g} s longest window; raise --duration")

    def record(self, m: Measured) -> None:
        """How the cell was measured so far, onto its Measured: the warm-up, once it has ended; the window."""
        s = self.state
        if s.phase in (TIMED, DONE, TOO_SLOW):
            m.warmup_s, m.warmup_windows, m.steady = s.warmup_s, int(s.warmup_windows), bool(s.steady)
        if s.window_s:
            m.window_s = s.window_s


def take_part(sched: Schedule, wait: Callable[[], Any], call: Callable, sync: Callable, x: Any,
              keep: Callable[[Lap, Any, Any], None], reader: Reader) -> None:
    """One participant's part in the schedule: at every window boundary wait() (a barrier whose action
    advances the schedule), then the window's timed loop on input x (call, then sync); in a timed window
    `reader` reads the gauges at both ends of the loop, and the Lap and the first and last output go to
    keep(lap, first, last). Warm-up windows run the same loop, sampled alike, so that their rate is the timed
    windows' rate. Returns once the schedule is done or too slow."""
    tid = threading.get_native_id()  # once: a syscall, which a woken herd of threads should not meet in a window
    while True:
        wait()
        phase = sched.phase
        if phase != WARM and phase != TIMED:
            return
        lap = Lap(tid=tid)
        if phase == TIMED:
            lap.before = reader.gauges()
        first, last = timed_loop(call, sync, x, sched.open(), lap, reader.clock, reader.cpu,
                                 int(sched.state.split_every) or 1, reader.timer)
        if phase == TIMED:
            lap.after = reader.gauges()
        sched.add(len(lap.ends), lap.starts[0] if lap.starts else math.inf, lap.ends[-1] if lap.ends else -math.inf)
        if phase == TIMED:
            keep(lap, first, last)


def reader_of(h: Harness, whole_process: bool = False, forwards: bool = True) -> Reader:
    """The Reader of a participant of h's cell: h's clocks; the timer's marks on its sampled ops where they are
    forwards (a batched client's are not); and, for a participant that is a process of its own, its process's
    gauges (threads of one process have them read at the window's boundary, Boundaries)."""
    return Reader(clock=h.clock, cpu=h.cpu_clock, whole_process=whole_process, timer=h.timer if forwards else None,
                  busy=getattr(h.timer, "busy", None), own_cpu=not has_thread_times())


class Boundaries:
    """The window boundaries of a schedule whose participants are threads of this process: called once per
    boundary with every thread waiting (a barrier's action, so nothing here is timed). A timed window is
    closed first: the process's gauges read (split.Snapshot: before anything else runs here), every thread's
    outputs checked, the process's OS threads counted, the window's span recorded and its op times pooled
    into a Trial (with the batcher's histogram, where given, which every boundary then clears); then the
    schedule advances and records how the cell is being measured, and, when a timed window comes next, the
    process's gauges are read again, last, as it opens."""

    def __init__(self, h: Harness, sched: Schedule, weight: int = 1, hist: Counter | None = None):
        self.h, self.sched, self.weight, self.hist = h, sched, weight, hist
        self.window = Window(sched.n)
        self.trials: list[Trial] = []
        self.busy = getattr(h.timer, "busy", None)
        self.opened: Snapshot | None = None   # the gauges as the current timed window opened

    def keeper(self, i: int) -> Callable[[Lap, Any, Any], None]:
        """Participant i's `keep` for take_part: its part of the current timed window."""
        def keep(lap: Lap, first: Any, last: Any) -> None:
            w = self.window
            w.laps[i], w.samples[i] = lap, (first, last)
        return keep

    def __call__(self) -> None:
        if self.sched.phase == TIMED:  # a timed window just ran
            closed = snapshot(self.h.clock, self.busy)
            self._close(self.window, (self.opened, closed) if self.opened is not None else None)
            self.window = Window(self.sched.n)
        if self.hist is not None:
            self.hist.clear()
        self.sched.advance()
        self.sched.record(self.h.measured)
        self.opened = snapshot(self.h.clock, self.busy) if self.sched.phase == TIMED else None

    def _close(self, w: Window, around: tuple[Snapshot, Snapshot] | None = None) -> None:
        h, m = self.h, self.h.measured
        try:
            m.os_threads = max(m.os_threads or 0, psutil.Process().num_threads())
        except psutil.Error:
            pass
        m.cores = usable_cores()
        for lap in w.laps:  # device marks to seconds: after synchronise, outside the clock
            lap.resolve(h.timer)
        for i, (first, last) in enumerate(w.samples):  # outputs produced inside the window, checked outside the clock
            for y in (first,) if first is last else (first, last):
                if y is not None:
                    h.record(h.check(y, i))
        if (span := w.span()) is not None:
            m.timed_spans.append(span)
        hist = Counter(self.hist) if self.hist is not None else None
        self.trials.append(w.trial(self.weight, hist, window_s=self.sched.state.length, around=around))
