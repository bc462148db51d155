"""The --target-ci stopping rule (compare/stopping.py): its level counted by brute force, its intervals against
the fixed-n ones, plan_next's answers, the summary of an adaptive sweep, and a simulation of many sweeps with a
realistic spread between processes (benchmarks/reproducibility.py --target-ci, the same code): coverage of the
true median at least the printed level, exactly the printed level under the worst stopping there is, and fewer
processes than the cap on tight cells. Vectorised numpy, seeded: a few seconds, no process started."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

import synthetic_runs as S
from compare import stats, stopping
from test_stats import proc, summary

ROOT = Path(__file__).resolve().parents[1]
CELLS = 20_000   # simulated cells per population and target: a coverage's standard error is 0.2 points
SLACK = 3        # a coverage may fall short of the printed level by 3 standard errors (one-sided, 0.13% each)


def brute_force_level(first: int, cuts: tuple[int, ...]) -> float:
    """P(every count's interval covers the median) by listing all 2**cap orders of below/above the median."""
    cap = first + len(cuts) - 1
    below = np.cumsum(np.array(list(itertools.product((0, 1), repeat=cap))), axis=1)   # (2**cap, cap)
    every = np.ones(len(below), dtype=bool)
    for n in range(first, cap + 1):
        c, k = cuts[n - first], below[:, n - 1]
        every &= (k > c) & (k < n - c)     # [x_(c+1), x_(n-c)] holds the median: more than c on each side
    return every.mean()


# -- the rule ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("first, cap", [(5, 15), (5, 9), (6, 12), (5, 5)])
def test_the_level_is_the_share_of_below_above_orders_in_which_every_count_covers(first, cap):
    rule = stopping.rule(first, cap)
    assert rule.level == pytest.approx(brute_force_level(first, rule.cuts), abs=1e-12)
    assert rule.level >= stopping.LEVEL


def test_the_default_rule_looks_at_5_10_13_15_at_90_6_percent():
    rule = stopping.rule(5)
    assert (rule.cap, rule.cuts) == (15, (0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3))
    assert rule.looks() == (5, 10, 13, 15) and rule.level == pytest.approx(0.9061, abs=1e-4)
    # one cut more at the first count where it grows (9 instead of 10) costs the level: 89.6% < 90%
    earlier = rule.cuts[:4] + (1,) + rule.cuts[5:]
    assert brute_force_level(5, earlier) < stopping.LEVEL < brute_force_level(5, rule.cuts)


@pytest.mark.parametrize("n, level", [(n, level) for level in (0.9, 0.95)
                                      for n in range(stopping.min_processes(level), 21)])
def test_with_one_look_the_rule_is_the_fixed_n_interval(n, level):
    values = list(np.random.default_rng(n).lognormal(0, 0.1, n))
    _, low, high, got = stopping.rule(n, n, level).interval(values)
    assert (low, high, got) == pytest.approx(stats.median_ci(values, level))


def test_min_processes_and_bad_rules():
    assert [stopping.min_processes(x) for x in (0.5, 0.75, 0.9, 0.95)] == [2, 3, 5, 6]
    with pytest.raises(ValueError, match="at least 5 are needed"):
        stopping.rule(4, 15)
    with pytest.raises(ValueError, match="below the first"):
        stopping.rule(6, 5)


def test_the_interval_cuts_by_the_count_it_has_and_above_the_cap_holds_for_that_count():
    rule = stopping.rule(5, 15)
    values = [10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0]    # 10 processes: cut 1, [x_(2), x_(9)]
    assert rule.interval(values) == (5.5, 2.0, 9.0, rule.level)
    rows = np.array([values, [v + 100 for v in values]])
    median, low, high, _ = rule.interval(rows)                       # several cells at once, one per row
    assert list(low) == [2.0, 102.0] and list(high) == [9.0, 109.0] and list(median) == [5.5, 105.5]
    wider = stopping.rule(5, 18)
    assert rule.interval(list(range(18)))[1:] == (wider.cut(18), 17 - wider.cut(18), wider.level)


# -- plan_next ---------------------------------------------------------------------------------------
def test_plan_next_fills_the_first_processes_then_stops_a_narrow_cell():
    assert stopping.plan_next([], 0.05, 5) == 5
    assert stopping.plan_next([100.0, 101.0], 0.05, 5) == 3
    assert stopping.plan_next([100.0, 101.0, 99.0, 102.0, 98.0], 0.05, 5) == 0   # [98, 102]: 4% <= 5%
    assert stopping.plan_next([100.0, 101.0, 99.0, 102.0, 98.0], 0.03, 5, give_up=None) == 5


def test_plan_next_skips_to_the_count_where_one_slow_process_can_be_left_out():
    one_slow = [100.0, 101.0, 99.0, 102.0, 60.0]     # [60, 102] is 42% wide; the middle three 3%
    assert stopping.plan_next(one_slow, 0.05, 5) == 5                  # cut 1 only from 10
    ten = one_slow + [100.5, 99.5, 101.5, 98.5, 100.2]
    assert stopping.plan_next(ten, 0.05, 5) == 0                       # [98.5, 101.5]: 3% wide
    assert stopping.plan_next(ten[:7], 0.05, 5) == 3                   # between looks: to the next one
    assert stopping.plan_next(one_slow, 0.05, 5, cap=9, give_up=None) == 4   # 5 to 9: cut 1 at 9
    # but projected to 9, where [x_(2), x_(8)] would hold about one slow process of 9 as 1 of 5 suggests,
    # its middle is 10% wide: 2x the target, out of reach
    assert stopping.plan_next(one_slow, 0.05, 5, cap=9) == 0


def test_plan_next_gives_up_on_a_cell_the_target_is_out_of_reach_of_and_stops_at_the_cap():
    wide = [60.0, 80.0, 100.0, 120.0, 140.0]          # its middle half (80-120) alone is 40% of 100
    assert stopping.plan_next(wide, 0.05, 5) == 0
    near = [94.0, 97.0, 100.0, 103.0, 106.0]          # middle half 6%: 1.2x the target, within reach
    assert stopping.plan_next(near, 0.05, 5) == 5 and stopping.plan_next(near, 0.05 * 1.2 / 1.6, 5) == 0
    assert stopping.plan_next(wide, 0.05, 5, give_up=None) == 5
    assert stopping.plan_next(wide * 3, 0.05, 5, give_up=None) == 0  # 15 processes: the cap
    assert stopping.plan_next(wide * 2 + wide[:2], 0.05, 5, give_up=None) == 1   # 12: one to the look at 13


@pytest.mark.parametrize("give_up", [stopping.GIVE_UP, None])
def test_the_simulation_stops_where_plan_next_does(repro, give_up):
    """The vectorised stopping in the simulation is plan_next's, cell by cell."""
    rule = stopping.rule(5, 15)
    x = repro.one_slow(0.2, 0.7, 0.03).draw(np.random.default_rng(3), 300, 15)
    end = repro.stopped_at(x, rule, 0.05, give_up)
    for row, n_end in zip(x, end):
        n = 0
        while more := stopping.plan_next(list(row[:n]), 0.05, 5, 15, give_up=give_up):
            n += more
        assert n == n_end
    assert len(set(end)) >= 3    # cells stopped at several looks: the comparison is not trivial


# -- a sweep's summary ----------------------------------------------------------------------------------
def test_an_adaptive_sweep_prints_the_rules_interval_and_level_a_fixed_one_the_fixed_n():
    c = S.cell(mode="sequential")
    results = [proc(c, r, [m] * 5) for r, m in enumerate([100, 101, 99, 102, 60, 100.5, 99.5, 101.5, 98.5, 100.2])]
    run = S.run(results)
    rule = stopping.rule(5, 15)
    adaptive = stats.summarize(run["rows"], {run["run_id"]: rule}).to_dicts()[0]
    assert (adaptive["ci_low"], adaptive["ci_high"], adaptive["n_processes"]) == (98.0, 101.0, 10)  # ints: ops
    assert adaptive["ci_level"] == pytest.approx(rule.level) and adaptive["ci_scope"] == "processes"
    fixed = summary(results)[("sequential", 1, 1)]
    assert (fixed["ci_low"], fixed["ci_high"]) == (98.0, 101.0)     # [x_(2), x_(9)] of 10 too, at 97.9%
    assert fixed["ci_level"] == pytest.approx(stats.median_ci(list(range(10)))[2])
    five = S.run(results[:5])
    at_first = stats.summarize(five["rows"], {five["run_id"]: rule}).to_dicts()[0]
    assert at_first["ci_level"] == pytest.approx(rule.level)       # not 93.8%: it stopped at 5 on its data
    two = S.run(results[:2])
    few = stats.summarize(two["rows"], {two["run_id"]: rule}).to_dicts()[0]
    assert few["ci_level"] == pytest.approx(0.5)   # fewer than the rule's first: nothing was stopped on data


# -- the simulation --------------------------------------------------------------------------------------
def populations(repro) -> list:
    """The synthetic cells, and the real process medians of the H100 runs (one slow process in many cells)."""
    return repro.SYNTHETIC + repro.repro_populations(sorted((ROOT / "results/repro/h100-5").glob("inv-*.json")))


@pytest.mark.parametrize("target", [0.02, 0.05, 0.10])
def test_simulated_sweeps_cover_the_true_median_at_least_at_the_printed_level(repro, target):
    rule = stopping.rule(5, 15)
    se = math.sqrt(rule.level * (1 - rule.level) / CELLS)
    rng = np.random.default_rng(int(100 * target))
    for give_up in (stopping.GIVE_UP, None):
        for pop in populations(repro):
            out = repro.simulate_rule(pop, rule, target, CELLS, rng, give_up)
            assert out.covered.mean() >= rule.level - SLACK * se, (pop.name, give_up)


def test_the_rule_stops_early_on_tight_cells_and_goes_on_where_it_helps(repro):
    rule, rng = stopping.rule(5, 15), np.random.default_rng(7)
    tight = repro.simulate_rule(repro.lognormal(0.005), rule, 0.05, CELLS, rng)
    assert (tight.processes == 5).all()
    slow = repro.simulate_rule(repro.one_slow(0.1, 0.6, 0.02), rule, 0.05, CELLS, rng)
    assert 5 < slow.processes.mean() < 12 and (slow.width <= 0.05).mean() > 0.8
    sweep = [repro.simulate_rule(p, rule, 0.05, CELLS, rng).processes.mean() for p in populations(repro)]
    assert np.mean(sweep) < 10                      # against 15 for every cell at the cap


def test_under_the_worst_stopping_coverage_is_the_printed_level_and_a_fixed_n_interval_falls_short(repro):
    """A rule that stops as soon as the interval misses is the worst there is: there the coverage is the level
    exactly (within simulation error), which shows the level is neither loose nor wrong; the fixed-n
    intervals under it cover less than the lowest level they print."""
    rule, rng = stopping.rule(5, 15), np.random.default_rng(11)
    cells = 4 * CELLS
    se = math.sqrt(rule.level * (1 - rule.level) / cells)
    pop = repro.one_slow(0.1, 0.6, 0.02)
    worst = repro.worst_case(pop.draw(rng, cells, 15), rule, pop.median()).mean()
    assert abs(worst - rule.level) < 4 * se
    fixed = repro.worst_case(pop.draw(rng, cells, 15), repro.fixed_n_rule(5, 15), pop.median()).mean()
    assert fixed < min(stats.median_ci(list(range(n)))[2] for n in range(5, 16)) - 0.04
