"""When a cell has enough processes (`--target-ci`): add processes only to cells whose interval is still wider
than the target, up to a cap, and keep the printed level true although the number of processes now depends on
the data. Pure arithmetic on process medians: it measures nothing and starts nothing.

The rule. A cell gets `first` processes, then more while its interval is wider than the target and the target
is within reach, at most `cap`. With n processes its interval is [x_(c+1), x_(n-c)] of its process medians
sorted, c = `cut(n)` left out at each end; the cuts are fixed by (first, cap, level) alone, before anything is
measured, such that the intervals of all the counts first, first+1, ..., cap cover the median *at once* with
probability >= level.

Why the printed level is true. Whether the interval of n processes covers the true median m depends only on
how many of the first n process medians lie below m; for independent processes from any continuous
distribution those are fair coin flips, so the probability that every count's interval covers m at once is a
count of coin-flip paths (`Rule.level`, exact, for every distribution). The count a cell stops at is one of
them, so its interval covers m at least that often, whatever made it stop: its width, a crash, a budget.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from math import comb

import numpy as np

LEVEL = 0.90        # an adaptive cell's interval covers its median at least this often: issue 11's coverage goal
MAX_PROCESSES = 15  # the default cap (--max-repeats): 3x the first 5; there the interval leaves 3 out at each end
GIVE_UP = 1.5       # no more processes for a cell whose interval, projected to the last look, is still 1.5x the
#                     target: simulated (benchmarks/README.md), it nearly halves a sweep's processes, loses 1 point of
#                     the cells that reach the target (11 on the worst population); None never gives up


@dataclass(frozen=True)
class Rule:
    """The intervals of one stopping rule: `cuts[n - first]` order statistics left out at each end of the
    sorted process medians of a cell with n processes, n = first .. cap; `level` the exact probability that
    all of them cover the median at once (the level printed for every cell measured under the rule), at least
    the level `asked`."""
    first: int
    cap: int
    cuts: tuple[int, ...]
    level: float
    asked: float

    def cut(self, n: int) -> int:
        if not self.first <= n <= self.cap:
            raise ValueError(f"{n} processes: this rule covers {self.first} to {self.cap}")
        return self.cuts[n - self.first]

    def looks(self) -> tuple[int, ...]:
        """The process counts at which a cell is looked at: first, then each n at which the cut grows. In
        between, its interval cannot narrow: with the same cut, one more process makes its low end a lower
        order statistic of more values and its high end a higher one."""
        return (self.first,) + tuple(n for n in range(self.first + 1, self.cap + 1) if self.cut(n) > self.cut(n - 1))

    def interval(self, values) -> tuple:
        """(median, low, high, level) of the process medians `values`: one cell's n values, or several cells' as
        the rows of an array. Above the cap, the rule over first .. n, which holds for that n."""
        x = np.sort(np.asarray(values, dtype=float), axis=-1)
        n = x.shape[-1]
        over = self if n <= self.cap else rule(self.first, n, self.asked)
        c = over.cut(n)
        return np.median(x, axis=-1), x[..., c], x[..., n - 1 - c], over.level

    def stop(self, values, target: float, give_up: float | None = GIVE_UP):
        """Whether a cell (or each row) is done: its interval is no wider than `target` times its median; or it
        has reached the last look; or its interval, projected to the last look, would be wider than `give_up`
        times the target (None: never give up). The projection: the last look's interval is about the
        population's quantiles at (c + 1) / (N + 1) and (N - c) / (N + 1) (N the last look, c its cut), read
        from the cell's processes so far, which a slow outlier among them hardly moves."""
        median, low, high, _ = self.interval(values)
        x = np.asarray(values, dtype=float)
        done = (relative_width(median, low, high) <= target) | (x.shape[-1] >= self.looks()[-1])
        if give_up is None:
            return done
        last = self.looks()[-1]
        c = self.cut(last)
        q_low, q_high = np.quantile(x, [(c + 1) / (last + 1), (last - c) / (last + 1)], axis=-1)
        return done | (relative_width(median, q_low, q_high) > give_up * target)


def min_processes(level: float = LEVEL) -> int:
    """The fewest processes whose widest interval, [min, max], reaches `level`: 1 - 2 * 0.5**n >= level."""
    n = 1
    while 1 - Fraction(2, 2 ** n) < Fraction(level):
        n += 1
    return n


def _fixed_level(n: int, c: int) -> Fraction:
    """The level of [x_(c+1), x_(n-c)] of n processes on its own: 1 - 2 P(Bin(n, 1/2) <= c), as in
    stats.median_ci."""
    return 1 - Fraction(2 * sum(comb(n, i) for i in range(c + 1)), 2 ** n)


def _fixed_cut(n: int, per_look: Fraction) -> int:
    """The most order statistics left out at each end of n whose fixed-n level is still >= per_look; 0, i.e.
    [min, max], where even that falls short."""
    c = 0
    while c + 1 <= (n - 1) // 2 and _fixed_level(n, c + 1) >= per_look:
        c += 1
    return c


def _simultaneous(first: int, cuts: tuple[int, ...]) -> Fraction:
    """P(every count's interval covers the median): walk the number of process medians below it (a fair coin
    each) through n = 1 .. cap, dropping at each n >= first the paths whose number leaves the median outside
    [x_(c+1), x_(n-c)] (c or fewer below it, or c or fewer above); what is left, over 2**cap."""
    paths = [1]   # paths[k]: the coin-flip paths so far with k medians below, that no count has dropped
    cap = first + len(cuts) - 1
    for n in range(1, cap + 1):
        paths = [(paths[k] if k < n else 0) + (paths[k - 1] if k else 0) for k in range(n + 1)]
        if n >= first:
            c = cuts[n - first]
            paths = [p if c < k < n - c else 0 for k, p in enumerate(paths)]
    return Fraction(sum(paths), 2 ** cap)


@functools.lru_cache(maxsize=64)
def rule(first: int, cap: int = MAX_PROCESSES, level: float = LEVEL) -> Rule:
    """The stopping rule's intervals for first .. cap processes, all at once at `level` at least.

    Every count uses the fixed-n order-statistic interval at one per-look level (or [min, max] where none
    reaches it): the lowest per-look level that keeps the simultaneous one >= level. One knob, so the cut grows
    evenly with n rather than being spent on the first counts."""
    if not 0 < level < 1:
        raise ValueError(f"level {level}: must lie between 0 and 1")
    if first < min_processes(level):
        raise ValueError(f"{first} processes cannot give a {100 * level:g}% interval: at least "
                         f"{min_processes(level)} are needed")
    if cap < first:
        raise ValueError(f"cap {cap} is below the first {first} processes")
    ns = range(first, cap + 1)
    per_look = sorted({_fixed_level(n, c) for n in ns for c in range((n + 1) // 2)} | {Fraction(1)})
    lo, hi = 0, len(per_look) - 1    # per_look[hi] = 1 cuts nothing anywhere: [min, max] always holds
    while lo < hi:                   # the simultaneous level falls as the per-look level does: bisect
        mid = (lo + hi) // 2
        if _simultaneous(first, tuple(_fixed_cut(n, per_look[mid]) for n in ns)) >= Fraction(level):
            hi = mid
        else:
            lo = mid + 1
    cuts = tuple(_fixed_cut(n, per_look[lo]) for n in ns)
    return Rule(first, cap, cuts, float(_simultaneous(first, cuts)), level)


def relative_width(median, low, high):
    """An interval's width over its median (what --target-ci is compared with); inf where the median is not
    positive."""
    median = np.asarray(median, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(median > 0, (np.asarray(high) - np.asarray(low)) / median, np.inf)


def plan_next(medians, target: float, first: int, cap: int = MAX_PROCESSES, level: float = LEVEL,
              give_up: float | None = GIVE_UP) -> int:
    """How many more processes a cell needs, 0 when it is done: up to `first` unconditionally; then none once
    `Rule.stop` says so, else as many as take it to the rule's next look (where its interval can narrow)."""
    n = len(medians)
    if n < first:
        return first - n
    stop_rule = rule(first, cap, level)
    if stop_rule.stop(medians, target, give_up):
        return 0
    return next((m - n for m in stop_rule.looks() if m > n), 0)
