"""A sweep cut into shards (`compare --shard I/N`, issue 19 item 3): how the worker processes are cut, what a
shard's file records, the merge of one sweep's shards (the same cells and figures as the whole sweep), a
missing shard named, shards of other sweeps refused, and (slow) real shards of a numpy sweep merged by
report, one of them lost and re-run alone."""
import json
from dataclasses import replace

import pytest

import synthetic_runs as S
from compare import results as R
from compare import shards, stats
from compare.measure import plan as P
from compare.cells import Cell
from compare.options import BadInput, shard


def test_the_shard_option_reads_i_of_n_and_refuses_the_rest():
    assert shard("2/4") == (2, 4) and shard(None) is None
    for bad in ("0/4", "5/4", "2", "a/b", "2/4/1", "-1/4"):
        with pytest.raises(BadInput, match="--shard"):
            shard(bad)


def sweep_cells(repeats: int) -> list:
    one = [S.cell(b, w, m, n) for b in ("torch", "mlx") for w in ("mlp", "block")
           for m, n in (("sequential", 1), ("threads", 2), ("threads", 4))]
    return P.interleave(one, repeats)


def test_shards_are_whole_worker_processes_consecutive_in_run_order_and_about_equal():
    plans = P.worker_plans(sweep_cells(5), "sweep")   # 5 rounds x 2 frameworks = 10 worker processes
    for n in (1, 2, 3, 5, 10):
        owner = P.shard_of(plans, n)
        assert sorted(set(owner)) == list(range(n)) and owner == sorted(owner), (n, owner)
        sizes = [sum(len(p.cells) for p, o in zip(plans, owner) if o == j) for j in range(n)]
        assert max(sizes) - min(sizes) <= 6, (n, sizes)   # one worker process (6 cells) at most apart
    assert P.shard_of(plans, 5) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4], "a shard is not a round of every framework"
    # unequal costs: the cut follows the cost, never leaves a shard empty
    owner = P.shard_of(plans, 2, cost=lambda p: 10 if p.round == 0 else 1)
    assert owner[0] == 0 and set(owner) == {0, 1}
    with pytest.raises(BadInput, match="10 worker processes"):
        P.shard_of(plans, 11)


def shard_runs(repeats: int, n: int, ops=lambda c: 100.0 + 10 * c.repeat + c.threads) -> tuple[dict, list[dict]]:
    """The whole sweep as one run, and the same rows cut into its n shards' files (synthetic trials)."""
    cells = sweep_cells(repeats)
    plans = P.worker_plans(cells, "sid")
    owner = P.shard_of(plans, n)
    units = [(p.round, o + 1, [c.to_dict() for c in p.cells]) for p, o in zip(plans, owner)]
    sid = shards.sweep_id([c.to_dict() for c in cells], "rev1")
    whole = S.run([S.result(c, [ops(c)] * 3) for p in plans for c in p.cells])
    parts = []
    for j in range(1, n + 1):
        mine = [c for p, o in zip(plans, owner) if o == j - 1 for c in p.cells]
        run = S.run([S.result(c, [ops(c)] * 3) for c in mine], host_name=f"device-{j}")
        run["sweep"] = shards.record(sid, j, n, "rev1", units)
        run["_path"] = f"shard-{j}.json"
        parts.append(run)
    return whole, parts


def figures(run: dict) -> list[dict]:
    drop = {"run_id", "machine"}
    recs = sorted(stats.summarize(run["rows"]).to_dicts(), key=R.row_key)
    return [{k: v for k, v in rec.items() if k not in drop} for rec in recs]


@pytest.mark.parametrize("repeats,n", [(5, 2), (5, 5), (3, 6)])
def test_the_shards_of_a_sweep_merged_give_the_cells_and_figures_of_the_whole_sweep(repeats, n):
    whole, parts = shard_runs(repeats, n)
    (merged,) = shards.merge(list(reversed(parts)))   # in any order
    processes = lambda run: sorted(R.process_key(r) for r in run["rows"])  # noqa: E731
    assert processes(merged) == processes(whole)
    assert figures(merged) == figures(whole)
    assert merged["missing_shards"] == [] and [s["shard"] for s in merged["shards"]] == list(range(1, n + 1))
    assert {r["run_id"] for r in merged["rows"]} == {merged["run_id"]} == {f"sweep-{parts[0]['sweep']['id']}"}
    assert sorted((d["workload"], d["repeat"]) for d in merged["plan"]) == sorted(
        (c.workload, c.repeat) for c in sweep_cells(repeats))
    assert [s["host"] for s in merged["shards"]] == [f"device-{j}" for j in range(1, n + 1)]


def test_the_merge_keeps_every_shards_backends_whose_sync_waits_came_from_their_declaration():
    """results.declare_sync_waits names them per file; a shard with another framework's rows adds its own."""
    _, parts = shard_runs(5, 2)
    parts[0]["sync_waits_declared"], parts[1]["sync_waits_declared"] = ["torch"], ["mlx", "torch"]
    (merged,) = shards.merge(parts)
    assert merged["sync_waits_declared"] == ["mlx", "torch"]
    (plain,) = shards.merge(shard_runs(5, 2)[1])
    assert "sync_waits_declared" not in plain


def test_a_run_that_is_not_a_shard_passes_through_the_merge_untouched():
    whole, parts = shard_runs(5, 2)
    out = shards.merge([whole, *parts])
    assert out[0] is whole and len(out) == 2 and out[1]["run_id"].startswith("sweep-")


def test_a_missing_shard_is_named_with_what_it_leaves_out():
    _, parts = shard_runs(5, 5)   # a shard is a round of both frameworks: every cell keeps 4 processes
    (merged,) = shards.merge([p for p in parts if p["sweep"]["shard"] != 3])
    (line,) = merged["missing_shards"]
    sid = parts[0]["sweep"]["id"]
    assert line.startswith(f"shard 3/5 of sweep {sid} is missing: 12 cell processes (round 3)")
    assert "every cell has processes from the other shards" in line and "--shard 3/5" in line
    assert len({R.process_key(r) for r in merged["rows"]}) == 48
    _, parts = shard_runs(3, 6)   # more shards than rounds: a shard is one framework's round
    (merged,) = shards.merge([p for p in parts if p["sweep"]["shard"] not in (1, 3, 5)])
    lines = merged["missing_shards"]
    assert [line.split(" is missing")[0] for line in lines] == [f"shard {j}/6 of sweep {parts[0]['sweep']['id']}"
                                                                 for j in (1, 3, 5)]
    # every torch process was in shards 1, 3, 5: the torch cells have no figures, and the line says which
    named = lines[-1].split("; cells ")[1].split(" have no figures")[0].split(", ")
    assert sorted(named) == sorted(c.label() for c in sweep_cells(1) if c.backend == "torch")


def test_shards_of_different_sweeps_are_refused_and_the_same_shard_twice_too():
    _, parts = shard_runs(5, 2)
    _, other = shard_runs(4, 2)
    with pytest.raises(R.ResultsError, match="shards of different sweeps given together: .*different plans"):
        shards.merge([parts[0], other[1]])
    later = json.loads(json.dumps(parts[1]))
    later["sweep"] = {**later["sweep"], "id": "0" * 12, "revision": "rev2"}
    with pytest.raises(R.ResultsError, match="revisions rev1 and rev2"):
        shards.merge([parts[0], later])
    again = {**parts[1], "run_id": "again", "_path": "again.json"}
    with pytest.raises(R.ResultsError, match="are the same shard; keep one"):
        shards.merge([*parts, again])
    # two complete sweeps are two runs (two machines, say), not a refusal
    assert len(shards.merge([*parts, *other])) == 2
    # an incomplete sweep beside a sweep of another machine (compare --machine) is told apart by it
    elsewhere = [{**run, "machine": "H100"} for run in other]
    merged = shards.merge([parts[0], *elsewhere])
    assert len(merged) == 2 and [len(m["missing_shards"]) for m in merged] == [1, 0]
    assert parts[0].get("machine") == other[1].get("machine")   # the refusal above: one machine's two sweeps


def test_the_sweep_id_changes_with_the_plan_and_the_revision():
    plan = [c.to_dict() for c in sweep_cells(2)]
    assert shards.sweep_id(plan, "a") == shards.sweep_id([dict(d) for d in plan], "a")
    assert shards.sweep_id(plan, "b") != shards.sweep_id(plan, "a")
    assert shards.sweep_id(plan[:-1], "a") != shards.sweep_id(plan, "a")
    assert shards.sweep_id([{**plan[0], "duration": 1.0}, *plan[1:]], "a") != shards.sweep_id(plan, "a")


SWEEP = ("compare", "--backends", "numpy", "--dtype", "float64", "--workloads", "mlp", "--modes", "sequential,threads",
         "--threads", "1,2", "--trials", "2", "--duration", "0.1", "--warmup", "1", "--repeats", "3",
         "--no-peak-probe", "-q")


@pytest.mark.slow
def test_a_numpy_sweep_in_shards_merges_to_the_whole_sweeps_cells_and_a_lost_shard_is_rerun_alone(tmp_path, threadbench):
    whole = tmp_path / "whole.json"
    assert threadbench(*SWEEP, "--out", whole).returncode == 0
    folder = tmp_path / "shards"
    files = [folder / f"shard-{j}.json" for j in (1, 2, 3)]
    for j, f in zip((1, 2, 3), files):
        out = threadbench(*SWEEP, "--shard", f"{j}/3", "--out", f)
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"shard {j}/3 of sweep" in out.stderr
    docs = [json.loads(f.read_text()) for f in files]
    assert len({d["sweep"]["id"] for d in docs}) == 1 and [d["sweep"]["shard"] for d in docs] == [1, 2, 3]
    for d in docs:   # each stands alone: its own probes, plan (one round of every cell) and worker processes
        assert [p["at"] for p in d["host_probe"]] == ["start", "end"] and len(d["processes"]) == 1
        assert {c["repeat"] for c in d["plan"]} == {d["sweep"]["shard"] - 1} and len(d["plan"]) == 3
    keys = lambda rows: sorted({R.process_key(r) for r in rows})  # noqa: E731 (statuses: what each run measured)
    whole_doc = json.loads(whole.read_text())
    (merged,) = shards.merge([{**d, "_path": str(f)} for d, f in zip(docs, files)])
    assert keys(merged["rows"]) == keys(whole_doc["rows"])
    per_cell = lambda rows: sorted(stats.summarize(rows).select("mode", "threads").rows())  # noqa: E731
    assert per_cell(merged["rows"]) == per_cell(whole_doc["rows"]) and len(per_cell(merged["rows"])) == 3
    assert sorted(p["shard"] for p in merged["processes"]) == [1, 2, 3]
    # the machine of shard 2 died: nothing came back. The report names it; re-run alone, the merge takes it
    files[1].unlink()
    out = threadbench("report", folder, "--format", "csv")
    assert out.returncode == 0 and f"shard 2/3 of sweep {docs[0]['sweep']['id']} is missing" in out.stderr
    assert threadbench(*SWEEP, "--shard", "2/3", "--out", files[1]).returncode == 0
    out = threadbench("report", folder, "--format", "csv")
    assert out.returncode == 0 and "missing" not in out.stderr and out.stdout.count("\n") == 4   # header + 3 cells
    # a shard of another sweep (other options) beside an incomplete sweep: one line, exit 2
    files[2].unlink()
    assert threadbench(*SWEEP, "--trials", "3", "--shard", "3/3", "--out", files[2]).returncode == 0
    out = threadbench("report", folder)
    assert out.returncode == 2 and "shards of different sweeps given together" in out.stderr


def test_publish_shows_a_sharded_sweep_as_one_section_naming_its_shard_files_and_a_missing_one(tmp_path):
    from compare.render.publish import publish
    _, parts = shard_runs(5, 5)
    runs = tmp_path / "runs" / "gpu"
    runs.mkdir(parents=True)
    for p in parts:
        p["time_split"] = [{"wall_s": 60.0 * p["sweep"]["shard"]}]
        if p["sweep"]["shard"] != 4:
            R.save({k: v for k, v in p.items() if k != "_path"}, runs / f"shard-{p['sweep']['shard']}.json")
    publish(tmp_path / "runs", tmp_path / "out", plots=False)
    page = (tmp_path / "out" / "README.md").read_text()
    sid = parts[0]["sweep"]["id"]
    assert f"sweep `{sid}` at threadbench `rev1`, cut into 5 shards, each run alone and merged here; 11.0 min of " \
           "wall time in all" in page
    assert page.count("  - shard ") == 5 and "(../runs/gpu/shard-5.json)" in page
    assert f"shard 4/5 of sweep {sid} is missing: 12 cell processes (round 4)" in page
    assert page.count("## ") >= 1 and "device-2" not in page.split("## ")[1].split("\n")[0]


def test_diff_and_report_take_a_folder_of_one_sweeps_shards_as_one_run(tmp_path, threadbench):
    whole, parts = shard_runs(5, 2)
    folder = tmp_path / "shards"
    folder.mkdir()
    for p in parts:
        R.save({k: v for k, v in p.items() if k != "_path"}, folder / f"shard-{p['sweep']['shard']}.json")
    R.save(whole, tmp_path / "whole.json")
    out = threadbench("diff", tmp_path / "whole.json", folder, "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert len(doc["cells"]) == 12 and not doc["only_in_a"] and not doc["only_in_b"]
    out = threadbench("diff", tmp_path / "whole.json", folder / "shard-1.json", "--format", "json")
    assert out.returncode == 0 and "shard-1.json is shard 1/2 of sweep" in out.stderr and "alone" in out.stderr
    (folder / "shard-2.json").unlink()
    out = threadbench("report", folder, "--format", "csv")
    assert out.returncode == 0 and "shard 2/2 of sweep" in out.stderr and out.stdout.count("\n") == 13


# -- --target-ci: more processes only for the cells still too wide ---------------------------------------------
def adaptive_run(spread: dict, processes: int = 5) -> dict:
    """A run of --target-ci 5% with `processes` processes of each cell; spread[workload]: the relative spread
    between its process medians (evenly spaced)."""
    cells = [S.cell("torch", w, "sequential") for w in spread]
    planned = P.interleave(cells, processes)
    doc = S.run([S.result(c, [1000 * (1 + spread[c.workload] * (c.repeat / (processes - 1) - 0.5))] * 3)
                 for c in planned])
    doc["plan"] = [c.to_dict() for c in planned]
    doc["settings"] |= {"target_ci": 0.05, "repeats": 5, "max_repeats": 15}
    return doc


def test_target_ci_adds_processes_only_to_the_cells_wider_than_the_target_up_to_the_rules_next_look():
    from compare.session import adaptive_cells, interval_line
    run = adaptive_run({"mlp": 0.02, "block": 0.08, "transformer": 0.5})
    rule = stats.stopping_rule(run)
    assert (rule.first, rule.cap) == (5, 15) and rule.level >= 0.90
    extra = adaptive_cells(run, rule, 0.05)
    # mlp is within 5%: done; block (8%) goes to the next look; transformer (50%) is out of reach: given up
    assert {c.workload for c in extra} == {"block"}
    assert sorted(c.repeat for c in extra) == list(range(5, rule.looks()[1]))
    failed = adaptive_run({"block": 0.08})
    failed["rows"][0]["status"] = "crash"
    assert adaptive_cells(failed, rule, 0.05) == [], "a failed cell got more processes"
    run["plan"] += [c.to_dict() for c in extra]
    assert "only while its interval was wider than 5% of its median (1 of 3 cells got more)" in interval_line(run)
    assert f"each at {100 * rule.level:.1f}%" in interval_line(run)
    # the summary's intervals are the rule's, at its level, for report, diff and publish alike
    (rec,) = [r for r in stats.summarize(run["rows"], stats.adaptive_rules([run])).to_dicts() if r["workload"] == "mlp"]
    assert rec["ci_level"] == pytest.approx(rule.level) and rec["n_processes"] == 5


@pytest.mark.slow
def test_a_target_ci_sweep_adds_rounds_only_for_its_wide_cells_frameworks_taking_turns(tmp_path, threadbench):
    import os
    from pathlib import Path
    plugin = Path(__file__).resolve().parent / "spread_plugin"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin), str(Path(__file__).resolve().parent.parent)]),
               SPREAD_MS="5", SPREAD_WIDE="1", SPREAD_STATE=str(tmp_path / "processes"),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out_file = tmp_path / "run.json"
    out = threadbench("compare", "--backends", "spread,numpy", "--dtype", "float64", "--workloads", "mlp,block",
                      "--modes", "sequential", "--trials", "2", "--duration", "0.1", "--warmup", "1", "--no-peak-probe",
                      "--target-ci", "45", "--max-repeats", "10", "-q", "--out", out_file, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    run = json.loads(out_file.read_text())
    per_cell = {}
    for d in run["plan"]:
        per_cell.setdefault((d["backend"], d["workload"]), []).append(d["repeat"])
    # block alternates between two speeds, a 50% wide interval: more, up to the rule's last look; mlp (as
    # tight as this machine's load lets it be, well within 45%) stops at the first five. (The numpy cells
    # follow this machine's load: not asserted.)
    from compare import stopping
    last = stopping.rule(5, 10).looks()[-1]
    assert sorted(per_cell[("spread", "block")]) == list(range(last)), per_cell
    assert sorted(per_cell[("spread", "mlp")]) == list(range(5)), per_cell
    # the added rounds are worker processes like the first ones: one per round and process group, in turns
    rounds = [(p["round"], p["group"]["backend"]) for p in run["processes"]]
    assert rounds[:10] == [(r, b) for r in range(5) for b in ("spread", "numpy")]
    assert {b for r, b in rounds[10:] if r >= 5} >= {"spread"} and all(r >= 5 for r, _ in rounds[10:])
    assert "got more); each at" in out.stderr


# -- --budget: what fits, and what is left out ----------------------------------------------------------------
def test_budget_leaves_out_the_costliest_cells_whole_and_keeps_every_round():
    from compare.measure import budget
    planned = sweep_cells(3)
    earlier = S.run([S.result(c, [100.0]) for c in planned])
    for r in earlier["rows"]:   # transformer-like cost on block x4, the rest cheap
        r["wall_s"] = 20.0 if (r["workload"], r["threads"]) == ("block", 4) else 1.0
    earlier["processes"] = [{"startup_s": 2.0}, {"startup_s": 4.0}]
    costs = budget.costs_from(earlier)
    assert costs.startup_s == 3.0 and costs.of(S.cell("torch", "block", "threads", 4)) == 20.0
    assert costs.of(S.cell("torch", "transformer", "sequential")) == 1.0, "an unknown cell costs the median"
    plans = P.worker_plans(planned, "run")
    whole = costs.estimate(plans)
    assert whole == 6 * 3.0 + 3 * (10 * 1.0 + 2 * 20.0)
    kept, out, estimate = budget.fit(plans, costs, whole + budget.END_PROBE_S)
    assert kept == plans and out == []
    kept, out, estimate = budget.fit(plans, costs, 100)
    assert sorted(c.backend for c in out) == ["mlx", "torch"] and {(c.workload, c.threads) for c in out} == {("block", 4)}
    assert estimate <= 100 and all(c.key() not in {o.key() for o in out} for p in kept for c in p.cells)
    assert len(kept) == 6, "a round was left out instead of a cell"
    assert budget.rounds_that_fit(60, 200, 4) == 3 and budget.rounds_that_fit(60, 30, 4) == 0
    # --target-ci's added processes stop where the budget would be passed, in their order
    extra = [replace(S.cell("torch", "block", "threads", 4), repeat=r) for r in (5, 6, 7)]
    assert budget.trim(extra, costs, 3 + budget.END_PROBE_S + 40, workers=1) == extra[:2]
    assert budget.trim(extra, costs, 10, workers=1) == []


@pytest.mark.slow
def test_a_budget_says_before_it_starts_what_it_leaves_out_and_at_the_end_what_it_used(tmp_path, threadbench):
    base = ("compare", "--backends", "numpy", "--dtype", "float64", "--workloads", "mlp,block", "--modes",
            "sequential", "--trials", "2", "--duration", "0.1", "--warmup", "1", "--no-peak-probe", "-q")
    costs = tmp_path / "costs.json"
    assert threadbench(*base, "--repeats", "1", "--out", costs).returncode == 0
    doc = json.loads(costs.read_text())
    for r in doc["rows"]:   # as if block were the costly cell
        r["wall_s"] = 100.0 if r["workload"] == "block" else 0.5
    costs.write_text(json.dumps(doc))
    out_file = tmp_path / "fit.json"
    out = threadbench(*base, "--repeats", "2", "--budget", "1", "--costs", costs, "--out", out_file)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "budget: 1 min; from the costs in" in out.stderr
    assert "left out, costliest first: numpy/cpu/float64 block sequential" in out.stderr
    run = json.loads(out_file.read_text())
    assert {(d["workload"], d["repeat"]) for d in run["plan"]} == {("mlp", 0), ("mlp", 1)}
    assert run["budget"]["left_out"] == ["numpy/cpu/float64 block sequential"] and run["budget"]["used_s"] > 0
    assert "budget: used " in out.stderr and " of 1 min" in out.stderr
    # no costs: the first round measures what a round costs; here no later round fits in 0.1 min
    out = threadbench(*base, "--repeats", "3", "--budget", "0.1", "--out", tmp_path / "rounds.json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "0 of the 2 later rounds fit" in out.stderr and "each cell gets 1 process, not 3" in out.stderr
    run = json.loads((tmp_path / "rounds.json").read_text())
    assert {d["repeat"] for d in run["plan"]} == {0} and run["budget"]["rounds_left_out"] == 2


@pytest.mark.slow
def test_a_shard_cut_short_mid_way_is_resumed_alone_and_the_merge_takes_it(tmp_path, threadbench):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    files = [tmp_path / f"shard-{j}.json" for j in (1, 2, 3)]
    for j in (1, 3):
        assert threadbench(*SWEEP, "--shard", f"{j}/3", "--out", files[j - 1]).returncode == 0
    # shard 2 is cut short (its call's time limit: SIGTERM) once its first cell is saved
    proc = subprocess.Popen([sys.executable, str(root / "cli.py"), *SWEEP, "--shard", "2/3", "--out", str(files[1])],
                            cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if files[1].is_file() and json.loads(files[1].read_text() or "{}").get("rows"):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130, proc.stderr.read()[-2000:]
    cut_short = json.loads(files[1].read_text())
    assert len({R.process_key(r) for r in cut_short["rows"]}) < len(cut_short["plan"]) == 3
    out = threadbench("report", tmp_path, "--format", "csv")
    assert out.returncode == 0 and "missing" not in out.stderr   # a shard is there, with fewer processes
    out = threadbench("compare", "--resume", files[1], "-q")
    assert out.returncode == 0, out.stderr[-2000:]
    docs = [json.loads(f.read_text()) | {"_path": str(f)} for f in files]
    (merged,) = shards.merge(docs)
    assert sorted(R.process_key(r) for r in merged["rows"] if r["trial"] in (0, None)) == sorted(
        (*Cell.from_dict(d).key(), d["repeat"]) for d in merged["plan"])


@pytest.mark.slow
def test_the_default_gives_seven_processes_per_cell_and_target_ci_starts_from_five(tmp_path, threadbench):
    """compare's default --repeats is 7 (5 covered a re-run's median in 88% of cases on the idle CPU, under the
    90% goal); --target-ci without --repeats starts from the fewest processes that give its 90%: 5. Read from
    the budget's plan before the later rounds, which a tiny budget leaves out."""
    base = ("compare", "--backends", "numpy", "--dtype", "float64", "--workloads", "mlp", "--modes", "sequential",
            "--trials", "2", "--duration", "0.05", "--warmup", "1", "--no-peak-probe", "-q", "--budget", "0.001")
    out = threadbench(*base, "--out", tmp_path / "default.json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "0 of the 6 later rounds fit" in out.stderr and "each cell gets 1 process, not 7" in out.stderr
    out = threadbench(*base, "--target-ci", "5", "--out", tmp_path / "target.json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "0 of the 4 later rounds fit" in out.stderr and "each cell gets 1 process, not 5" in out.stderr
