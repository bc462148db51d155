"""benchmarks/reproducibility.py's report: the issue-11 goals computed from run files (no measuring)."""
from __future__ import annotations

import dataclasses

import pytest

import synthetic_runs as S
from compare import results as R


def invocations(tmp_path, shifts, first=(99.0,)):
    """One run per shift: a `sequential` cell in 5 processes whose medians are 90..110 (+ shift); each
    process's trials are `first` then 100, 101, 100, 101 around its median (+ median - 100)."""
    paths = []
    for n, shift in enumerate(shifts):
        results = []
        for p in range(5):
            c = dataclasses.replace(S.cell(mode="sequential"), repeat=p)
            m = 90.0 + 5 * p + shift
            results.append(S.result(c, [v + m - 100 for v in (*first, 100.0, 101.0, 100.0, 101.0)]))
        paths.append(R.save(S.run(results), tmp_path / f"inv-{n}.json"))
    return paths


def test_the_report_counts_coverage_width_and_trial_0_over_the_runs(repro, tmp_path, capsys):
    paths = invocations(tmp_path, [0, 2, -2, 1, -1, 0])
    res = repro.analyse(paths)
    assert (res["runs"], res["cells"], res["cases"]) == (6, 1, 6)
    # each interval [min, max] of 5 process medians is 20 wide and holds the six-run median (100)
    assert res["covered"] == 6
    assert res["ratios"] == [pytest.approx(20 / 4)]          # width 20 over a spread of 4 (102 - 98)
    assert (res["trial0_slowest"], res["processes"]) == (30, 30)  # trial 0 (99) below 100, 101, 100, 101
    repro.report(res, paths)
    out = capsys.readouterr().out
    assert "coverage: 6/6 = 100.0%" in out and "PASS" in out
    assert "width: median CI width / spread of the 6 medians = 5.00 (goal <= 3) FAIL" in out
    assert "trial 0 strictly slowest in 30/30" in out and "sequential" in out


def test_a_run_whose_interval_misses_the_median_is_not_covered_and_trial_0_in_the_middle_is_not_slowest(
        repro, tmp_path):
    paths = invocations(tmp_path, [0, 0, 0, 0, 0, 30], first=(100.5,))
    res = repro.analyse(paths)
    assert res["covered"] == 5   # the shifted run's interval [120, 140] misses the median (100)
    assert res["trial0_slowest"] == 0


def test_simulate_resamples_process_medians_with_the_tools_own_interval(repro, tmp_path, capsys):
    paths = invocations(tmp_path, [0, 0, 0, 0, 0, 0])
    repro.simulate(paths, [5, 9], sets=50)
    out = capsys.readouterr().out
    assert "(1 cells ok in all), 50 sets of 6 invocations" in out
    assert " 5 processes (interval level 93.8%), by run" in out and " 9 processes (interval level 96.1%), pooled" in out


def test_simulate_keeps_the_drift_between_runs_as_a_shift_that_one_invocation_shares(repro, tmp_path, capsys):
    """Two of six runs 30 above the rest (the host changed): re-running draws whole runs, so a third of the
    simulated invocations sit above the others' median, as in the H100's runs (64.6% measured where processes
    pooled over all runs predicted 94%); pooling the processes hides that."""
    coverage = repro.simulate(invocations(tmp_path, [0, 0, 0, 0, 30, 30]), [5], sets=300)
    assert coverage["by run"][5] < 0.85 < coverage["pooled"][5], coverage
    steady = repro.simulate(invocations(tmp_path, [0] * 6), [5], sets=300)
    assert steady["by run"][5] > 0.9 and steady["pooled"][5] > 0.9, steady


def test_rounds_reads_a_run_as_if_it_had_stopped_after_its_first_processes(repro, tmp_path):
    """--rounds K: what K processes per cell would have printed, from the same runs: the first K rounds only."""
    paths = invocations(tmp_path, [0, 2, -2, 1, -1, 0])
    res = repro.analyse(paths, rounds=3)   # process medians 90, 95, 100 (+ shift): [min, max] at 75%
    assert res["lines"][0].endswith("level 0.750 over processes (3 processes)"), res["lines"]
    assert res["covered"] == 6 and res["ratios"] == [pytest.approx(10 / 4)]
    assert res["processes"] == 18
    assert repro.analyse(paths, rounds=None)["ratios"] == [pytest.approx(20 / 4)]


def test_cross_counts_each_interval_against_every_other_invocations_median(repro, tmp_path, capsys):
    """Two sweeps compared: each one's interval against the other's median (the median of two medians is
    their midpoint, which both intervals hold far more often)."""
    res = repro.analyse(invocations(tmp_path, [0, 5]))      # [90, 110] holds 105, [95, 115] holds 100
    assert (res["crossed"], res["pairs"]) == (2, 2)
    res = repro.analyse(invocations(tmp_path, [0, 15]))     # [90, 110] misses 115, [105, 125] misses 100
    assert (res["crossed"], res["pairs"]) == (0, 2) and res["covered"] == 2   # yet both hold the midpoint 107.5
    repro.report(res, invocations(tmp_path, [0, 15]))
    assert "cross: an invocation's interval covers another invocation's median in 0/2 = 0.0%" in capsys.readouterr().out


def test_the_shards_of_one_sweep_are_one_invocation(repro, tmp_path):
    from test_shards import shard_runs
    paths = []
    for name, shift in (("a", 0.0), ("b", 50.0)):
        _, parts = shard_runs(5, 5, ops=lambda c, s=shift: 100.0 + s + 10 * c.repeat + c.threads)
        for p in parts:
            p["sweep"] = {**p["sweep"], "id": f"{p['sweep']['id']}-{name}"}
            paths.append(R.save(p, tmp_path / f"{name}-{p['sweep']['shard']}.json"))
    res = repro.analyse(paths)
    assert res["runs"] == 2 and res["cells"] == 12


def test_interleaved_invocations_share_a_sweep_id_and_are_told_apart_by_their_folders(repro, tmp_path):
    """--interleave: every invocation runs the same plan at one revision (one sweep id); inv-I/ holds I's shards."""
    from test_shards import shard_runs
    paths = []
    for i, shift in enumerate((0.0, 50.0, 20.0)):
        _, parts = shard_runs(5, 5, ops=lambda c, s=shift: 100.0 + s + 10 * c.repeat + c.threads)
        folder = tmp_path / f"inv-{i}"
        folder.mkdir()
        paths += [R.save(p, folder / f"shard-{p['sweep']['shard']}.json") for p in parts]
    runs = repro.load_runs(paths)
    assert len(runs) == 3 and all(not r.get("missing_shards") for r in runs)
    assert len({min(r["ops_per_s"] for r in run["rows"] if r["ops_per_s"]) for run in runs}) == 3, "each its own"
    res = repro.analyse(paths)
    assert res["runs"] == 3
    # every process of round r sits 10 r above its invocation's first: a round's median (over the three
    # invocations, shifted 0, 50, 20) moves 40 from the first round to the last, each interval [min, max] of its
    # five processes is 40 wide, and the invocations' medians spread 50 (their shifts)
    assert res["round_ratios"] == [pytest.approx(1.0)] * res["cells"]
    assert res["ratios"] == [pytest.approx(40 / 50)] * res["cells"]
    assert repro.analyse(invocations(tmp_path / "whole", [0, 2, -2]))["round_ratios"] == [], "whole runs: no rounds"
    flat = [R.save(R.load(tmp_path / f"inv-{i}" / "shard-1.json"), tmp_path / f"shard-1-{i}.json") for i in (0, 1)]
    with pytest.raises(R.ResultsError, match="same shard"):   # outside inv-I/ folders they are one sweep's
        repro.load_runs(flat)


def test_interleaving_runs_round_by_round_and_moves_the_first_invocation_on(repro):
    order = repro.interleaved_order([1, 2, 3], 3)
    assert order == [(1, 1), (1, 2), (1, 0), (2, 2), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert [r for r, _ in order] == sorted(r for r, _ in order), "a round ends before the next begins"
    assert all(sorted(i for r, i in order if r == k) == [0, 1, 2] for k in (1, 2, 3))
    assert repro.interleaved_order([4, 5], 2, start=6) == [(4, 6), (4, 7), (5, 7), (5, 6)]
