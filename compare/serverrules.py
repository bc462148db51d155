"""What a server search's steps settle, read the same way by the side that runs the search
(compare.measure.loadgen: which step comes next) and the side that reports it from saved rows
(compare.render.analysis: the peak, and whether its bracket holds): the kinds of step (STEP_KINDS) and
`settle`. Plain data and one pure function; it measures nothing, formats nothing and imports nothing of
threadbench.

The rule: a step can fail because the rate is too high or because the machine stalled during it (a stall of
tens of ms fails a one-second step: the queries scheduled in it are late), but a stall never makes a step
pass. So a failure counts only once it repeats, and a rate whose steps disagree is settled by a long step
(one that a single stall cannot fail: compare.measure.loadgen.long_queries); a bracket [peak, above) holds
only when a long step passed at the peak and a long step failed at the rate above it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

VALID = "valid"   # a step's verdict when it passed; any other verdict starts "invalid: " and says why
STALL_S = 0.050   # the stall a long step must absorb (compare.measure.loadgen.long_queries): the 3.53k search
#                   of issue 20 failed at 3,683/s with the dispatcher's lag p99 at 48 ms (idle 2-core VM); a
#                   loaded one stalls for tens of ms (lag p99 3.1-57 ms, one stall of 41 ms: benchmarks/README.md)


@dataclass(frozen=True)
class StepKind:
    """One kind of rate step. Adding a kind = one entry in STEP_KINDS (results files keep `name`)."""
    name: str
    meaning: str      # the legend's line


STEP_KINDS: dict[str, StepKind] = {k.name: k for k in (
    StepKind("search", "a bracketing or bisection step (the step length: --duration, at least 1 s)"),
    StepKind("again", "the same rate once more after it failed: a failure counts only when it repeats"),
    StepKind("long", "a step long enough that one stall cannot fail it, and at least LoadGen's 10 s; its verdict "
                     "settles its rate"),
)}
SEARCH, AGAIN, LONG = STEP_KINDS


@dataclass(frozen=True)
class RateVerdict:
    """What a rate's steps say. `valid`: True (passed; by a long step, or every step passed), False (failed,
    by a long step or twice), None (unsettled: failed once, or passed and failed with no long step yet).
    `long`: a long step settled it. `runs`: its steps."""
    valid: bool | None
    long: bool
    runs: int


@dataclass
class Settled:
    """What a search's steps settle. `peak`: the highest valid rate below every rate a long step failed;
    `above`: the lowest failed rate above it (None: none yet); `confirmed`: a long step passed at the peak and
    one failed at `above`, so [peak, above) is a bracket one stall cannot have made; `unsettled_above`: the
    lowest unsettled rate above the peak (what is known there, when not confirmed); `due`: the step the
    search owes before anything else, (rate, kind), for the last step's rate when it is unsettled."""
    rates: dict[float, RateVerdict] = field(default_factory=dict)
    peak: float | None = None
    above: float | None = None
    confirmed: bool = False
    unsettled_above: float | None = None
    due: tuple[float, str] | None = None


def rate_verdict(steps: list[tuple[bool, str | None]]) -> RateVerdict:
    """One rate's (passed, kind) steps, in the order run: the last long step decides; without one, all
    passed is valid, two or more all failed is failed, anything else (one failure; a pass and a failure)
    is unsettled. A step without a kind (a results file from before confirmation) counts as a search step."""
    longs = [ok for ok, kind in steps if kind == LONG]
    if longs:
        return RateVerdict(longs[-1], True, len(steps))
    oks = [ok for ok, _ in steps]
    if all(oks):
        return RateVerdict(True, False, len(steps))
    if not any(oks) and len(oks) >= 2:
        return RateVerdict(False, False, len(steps))
    return RateVerdict(None, False, len(steps))


def settle(steps: Iterable[tuple[float, bool, str | None]]) -> Settled:
    """The Settled state of a search from its steps as (rate, passed, kind), in the order they ran."""
    steps = list(steps)
    by_rate: dict[float, list[tuple[bool, str | None]]] = {}
    for rate, ok, kind in steps:
        by_rate.setdefault(rate, []).append((ok, kind))
    out = Settled(rates={r: rate_verdict(s) for r, s in by_rate.items()})
    cap = min((r for r, v in out.rates.items() if v.valid is False and v.long), default=float("inf"))
    out.peak = max((r for r, v in out.rates.items() if v.valid and r < cap), default=None)
    higher = sorted(r for r in out.rates if out.peak is None or r > out.peak)
    out.above = next((r for r in higher if out.rates[r].valid is False), None)
    out.unsettled_above = next((r for r in higher if out.rates[r].valid is None), None)
    out.confirmed = (out.peak is not None and out.above is not None and out.rates[out.peak].long
                     and out.rates[out.above].long)
    if steps:
        last = out.rates[steps[-1][0]]
        if last.valid is None:
            out.due = (steps[-1][0], AGAIN if last.runs == 1 else LONG)
    return out
