"""The server modes inside compare: bad input, rows in the results file, the tables, and one real cell.

Assertions are on structure and counts (verdicts present, outputs checked), never on speed."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

import cli
from compare import results as R
from compare.cells import MODES, Cell, CellResult, Trial
from compare.render import analysis
from compare.render import server as server_tables
from compare.serverrules import STEP_KINDS


@pytest.mark.parametrize("args,expected", [
    (["--modes", "server-threads", "--latency-bound-ms", "0"], "--latency-bound-ms: must be"),
    (["--modes", "server-threads", "--latency-bound-ms", "-1"], "--latency-bound-ms: must be"),
    (["--modes", "threads", "--latency-bound-ms", "5"], "applies to the server modes only"),
])
def test_bad_server_input_is_one_line_and_exit_2(capsys, tmp_path, args, expected):
    code = cli.run_cli(["compare", "-b", "numpy", "-w", "mlp", "-t", "2", "-o", str(tmp_path / "r.json"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0]


def test_all_modes_include_every_server_strategy():
    from compare.measure.server import STRATEGIES
    from compare.options import runnable_modes
    assert {"server-threads", "server-batched", "server-processes"} <= set(runnable_modes(MODES, STRATEGIES))


def _step(rate, verdict, p99=1.0, kind="search"):
    return Trial(ops=500, seconds=1.0, lat_p50_ms=0.5, lat_p90_ms=0.8, lat_p99_ms=p99, rate=rate,
                 lag_p99_ms=0.01, bound_ms=2.0, verdict=verdict, step_kind=kind)


def test_steps_are_rows_and_the_peak_is_the_highest_valid_rate(tmp_path):
    run = R.new_run(["threadbench"], {"host": "h"}, {})
    cell = Cell(backend="numpy", device="cpu", dtype="float32", workload="mlp", mode="server-threads", threads=2)
    fail, near = "invalid: p99 3 ms > bound 2 ms", "invalid: p99 2.1 ms > bound 2 ms"
    steps = [_step(100, "valid"), _step(200, "valid"), _step(400, fail, 3.0), _step(400, fail, 3.0, "again"),
             _step(283, near, 2.1), _step(283, near, 2.1, "again"), _step(238, "valid"),
             _step(238, "valid", 0.9, "long"), _step(283, near, 2.1, "long")]
    R.add_result(run, CellResult(cell=cell, status="ok", trials=steps, checked=10))
    path = R.save(run, tmp_path / "r.json")
    rows = R.load(path)["rows"]  # the new fields pass the schema's type checks
    assert [r["offered_rate"] for r in rows] == [100, 200, 400, 400, 283, 283, 238, 238, 283]
    assert [r["step_kind"] for r in rows][-3:] == ["search", "long", "long"]
    assert rows[2]["verdict"].startswith("invalid") and rows[0]["bound_ms"] == 2.0
    (rec,) = analysis.peaks(rows)
    assert rec["peak"] == 238 and rec["above"] == 283 and rec["p99_at_peak"] == 0.9  # the long step's
    peak_table, curve = server_tables.build(rows)
    assert peak_table.rows[0][5] == "238" and peak_table.rows[0][6] == "[238, 283)" and len(curve.rows) == 9


def test_throughput_tables_leave_server_cells_out():
    from compare import stats
    from compare.render import tables
    run = R.new_run(["threadbench"], {"host": "h"}, {})
    cell = Cell(backend="numpy", device="cpu", dtype="float32", workload="mlp", mode="server-threads", threads=2)
    R.add_result(run, CellResult(cell=cell, status="ok", trials=[_step(100, "valid")]))
    seq = Cell(backend="numpy", device="cpu", dtype="float32", workload="mlp", mode="sequential")
    R.add_result(run, CellResult(cell=seq, status="ok", trials=[Trial(ops=100, seconds=1.0)]))
    text = json.dumps([t.rows for t in tables.build(stats.summarize(run["rows"]))])
    assert "sequential" in text and "server-threads" not in text


@pytest.mark.slow
def test_a_real_server_cell_keeps_every_rate_and_verifies():
    """numpy backend, server-threads x2, end to end in a cell process: each step a row with a verdict,
    outputs checked against the reference. A generous bound keeps the lag rule from deciding (structure
    only; how many steps pass depends on the machine)."""
    from compare.measure.runner import Limits, run_cell
    cell = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="server-threads", threads=2,
                knobs=(("batch", 1),), latency_bound_ms=500.0, warmup=1, verify_ops=2)
    with tempfile.TemporaryDirectory() as cache:
        res = run_cell(cell, Path(cache), Limits())
    assert res.status == "ok", res.cause
    assert res.trials and all(t.verdict and t.rate and t.bound_ms == 500.0 for t in res.trials)
    assert all(t.step_kind in STEP_KINDS for t in res.trials)
    assert all(t.ops >= 459 or "overloaded" in t.verdict for t in res.trials)
    assert res.checked == 1 + 2 * 2 and res.errors == 0  # the speed check's op, then verify_ops per server
