"""Results files: schema round trip, strict JSON, atomic writes, and one-line errors for files that are
missing, corrupt or not a threadbench run; the CLI turns those into exit code 2.

The command line runs in this process (the `threadbench` fixture, tests/conftest.py), except where what a
fresh interpreter imports is the point."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import synthetic_runs as S
from compare import results as R
from compare.cells import SPLIT_FIELDS, Cell, CellResult, Trial

ROOT = Path(__file__).resolve().parent.parent


def sample_run() -> dict:
    ok = CellResult(cell=S.cell("torch", "mlp", "batched", 4), status="ok", errors=0, checked=12, rel_err=2e-7,
                    trials=[Trial(ops=100, seconds=0.5, lat_p50_ms=1.5, lat_p90_ms=2.0, lat_p99_ms=4.0,
                                  batch_hist={"1": 3, "4": 20}),
                            Trial(ops=110, seconds=0.5, lat_p50_ms=1.4, lat_p90_ms=1.9, lat_p99_ms=3.0)],
                    flops_per_op=1234, peak_rss_mb=321.5, peak_device_mb=None, wall_s=2.5, env=S.env("torch"))
    crash = CellResult(cell=S.cell("mlx", "mlp", "threads", 2), status="crash", cause="killed by SIGSEGV",
                       env=S.env("mlx"))
    return S.run([ok, crash])


def test_schema_round_trip(tmp_path):
    run = sample_run()
    path = R.save(run, tmp_path / "runs" / "a.json")
    back = R.load(path)
    assert back == json.loads(json.dumps(run))
    assert back["schema"] == R.SCHEMA == "threadbench.run/5"
    assert [set(r) for r in back["rows"]] == [set(R.ROW_FIELDS)] * 3
    ok_rows = [r for r in back["rows"] if r["status"] == "ok"]
    assert [r["trial"] for r in ok_rows] == [0, 1] and {r["repeat"] for r in back["rows"]} == {0}
    assert [r["ops_per_s"] for r in ok_rows] == [200.0, 220.0]
    assert json.loads(ok_rows[0]["batch_hist"]) == {"1": 3, "4": 20}
    assert (ok_rows[0]["mode"], ok_rows[0]["threads"], ok_rows[0]["machine"]) == ("batched", 4, "m1")
    crash_rows = [r for r in back["rows"] if r["status"] == "crash"]
    assert len(crash_rows) == 1 and crash_rows[0]["trial"] is None and crash_rows[0]["cause"] == "killed by SIGSEGV"
    assert set(back["backend_env"]) == {"torch/cpu", "mlx/cpu"}
    assert back["command"][:2] == ["threadbench", "compare"]
    assert [Cell.from_dict(c) for c in back["cells"]] == [S.cell("torch", "mlp", "batched", 4),
                                                            S.cell("mlx", "mlp", "threads", 2)]


INTERPRETER_FIELDS = ("interpreter", "python", "python_version", "free_threaded", "gil", "gil_import", "gil_after",
                      "gil_reenabled_by")


@pytest.mark.parametrize("schema,predates", [
    ("threadbench.run/1", ("repeat", "step_kind", "load_generator", *INTERPRETER_FIELDS, "sync_waits")),
    ("threadbench.run/2", ("step_kind", "load_generator", *INTERPRETER_FIELDS, "sync_waits")),
    ("threadbench.run/3", (*INTERPRETER_FIELDS, "sync_waits")),
    ("threadbench.run/4", ("sync_waits",))])
def test_an_older_file_still_loads_with_the_newer_fields_as_none(tmp_path, schema, predates):
    """Published runs of schema /1 to /4 keep loading until they are measured again: missing fields are None."""
    old = json.loads(R.dumps(sample_run()))
    old["schema"] = schema
    for row in old["rows"]:
        for f in predates:
            del row[f]
    back = R.load(_write(tmp_path, "old.json", old))
    assert back["schema"] == R.SCHEMA and back["upgraded_from"] == schema
    assert all(set(r) == set(R.ROW_FIELDS) and all(r[f] is None for f in predates) for r in back["rows"])
    assert {R.process_key(r)[-1] for r in back["rows"]} == {0}
    old["rows"][0]["repeat"] = 0   # a /1 file may lack fields, never carry unknown ones of the wrong type
    old["rows"][0]["bogus"] = 1
    with pytest.raises(R.ResultsError, match="row 0 does not have the fields"):
        R.load(_write(tmp_path, "bad.json", old))


def test_a_file_older_than_sync_waits_takes_it_from_each_backends_declaration(tmp_path):
    """A /4 file's device rows get Backend.sync_waits as their backend's class declares it (torch's synchronise
    only waits, MLX's evaluates), named in sync_waits_declared; CPU rows and a backend no class here declares
    (a plug-in not installed) stay None."""
    old = json.loads(R.dumps(sample_run()))
    old["schema"] = "threadbench.run/4"
    for row in old["rows"]:
        del row["sync_waits"]
    cpu = R.load(_write(tmp_path, "cpu.json", old))
    assert all(r["sync_waits"] is None for r in cpu["rows"]) and "sync_waits_declared" not in cpu
    for row in old["rows"]:
        row["device"] = "gpu"
    old["rows"].append({**old["rows"][0], "backend": "not-installed"})
    back = R.load(_write(tmp_path, "gpu.json", old))
    assert {r["backend"]: r["sync_waits"] for r in back["rows"]} == {"torch": 1, "mlx": 0, "not-installed": None}
    assert back["sync_waits_declared"] == ["mlx", "torch"]
    old["schema"] = R.SCHEMA   # a /5 file says what it recorded: nothing is filled in
    for row in old["rows"]:
        row["sync_waits"] = None
    assert all(r["sync_waits"] is None for r in R.load(_write(tmp_path, "new.json", old))["rows"])


def test_a_schema_2_file_loads_with_the_time_split_as_not_measured(tmp_path):
    """Runs published before the per-request split (schema /2) keep loading: its fields are None."""
    old = json.loads(R.dumps(sample_run()))
    old["schema"] = "threadbench.run/2"
    for row in old["rows"]:
        for name in (*SPLIT_FIELDS, "cores"):
            del row[name]
    back = R.load(_write(tmp_path, "old.json", old))
    assert back["upgraded_from"] == "threadbench.run/2"
    assert all(set(r) == set(R.ROW_FIELDS) and r["call_ms"] is None and r["cores"] is None for r in back["rows"])


def test_a_trials_time_split_is_saved_on_its_row(tmp_path):
    split = {name: float(i + 1) for i, name in enumerate(SPLIT_FIELDS)} | {"split_samples": 7}
    ok = CellResult(cell=S.cell("torch", "mlp", "threads", 2), status="ok", cores=2, env=S.env("torch"),
                    trials=[Trial(ops=10, seconds=0.5, **split)])
    (row,) = R.load(R.save(S.run([ok]), tmp_path / "a.json"))["rows"]
    assert {name: row[name] for name in SPLIT_FIELDS} == split and row["cores"] == 2


def test_saved_file_is_strict_json_with_nan_as_null(tmp_path):
    run = sample_run()
    run["rows"][0]["rel_err"] = math.nan
    run["rows"][1]["lat_p99_ms"] = math.inf
    path = R.save(run, tmp_path / "a.json")

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")
    back = json.loads(path.read_text(), parse_constant=refuse)
    assert back["rows"][0]["rel_err"] is None and back["rows"][1]["lat_p99_ms"] is None
    assert R.load(path)["rows"][0]["rel_err"] is None


def test_save_is_atomic_and_readable_by_others(tmp_path, monkeypatch):
    path = R.save(sample_run(), tmp_path / "a.json")
    before = path.read_bytes()
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    changed = sample_run()
    changed["rows"] = []
    with pytest.raises(OSError):
        R.save(changed, path)
    assert path.read_bytes() == before               # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # and no temporary file is left


def test_default_path_is_dated_per_host_and_unique():
    run = S.run([], host_name="gpu box/1")
    path = R.default_path(run)
    assert path.parent == Path("runs")   # ad-hoc runs stay out of the curated results/runs/
    assert path.name == f"2026-01-02-gpu-box-1-{run['run_id'].rsplit('-', 1)[1]}.json"
    assert R.default_path(S.run([], host_name="gpu box/1")) != path


def _write(tmp_path, name, content):
    p = tmp_path / name
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    return p


def _without(key):
    run = sample_run()
    del run[key]
    return run


def _row_change(**change):
    run = sample_run()
    run["rows"][0].update(change)
    return run


def _row_drop(field):
    run = sample_run()
    del run["rows"][1][field]
    return run


BAD_FILES = {
    "empty": ("", "not a readable"),
    "truncated": ('{"schema": "threadbench.run/1", "rows": [', "not a readable"),
    "binary": ("\udcff", "not a readable"),
    "a list": ([1, 2], "no schema field"),
    "no schema": ({"rows": []}, "no schema field"),
    "other schema": ({**sample_run(), "schema": "threadbench.run/9"}, "'threadbench.run/9' is not supported"),
    "no host": (_without("host"), "'host' is missing"),
    "rows not a list": ({**sample_run(), "rows": {}}, "'rows' is missing or not a list"),
    "row lacks a field": (_row_drop("ops_per_s"), "row 1 does not have the fields"),
    "row field of wrong type": (_row_change(ops_per_s="fast"), "row 0: ops_per_s='fast' has the wrong type"),
    "threads not whole": (_row_change(threads=2.5), "row 0: threads=2.5 has the wrong type"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_load_rejects_bad_files_with_one_line(tmp_path, case):
    content, expected = BAD_FILES[case]
    if content == "\udcff":
        path = tmp_path / "bad.json"
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path = _write(tmp_path, "bad.json", content)
    with pytest.raises(R.ResultsError) as e:
        R.load(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and expected in msg


def test_load_missing_file_and_folder(tmp_path):
    with pytest.raises(R.ResultsError, match="no such results file"):
        R.load(tmp_path / "nope.json")
    with pytest.raises(R.ResultsError, match="is a folder"):
        R.load(tmp_path)


def test_row_types_agree_with_the_statistics_frame():
    from compare import stats
    kinds = {f: str(t) for f, t in stats._SCHEMA.items()}
    assert set(kinds) == set(R.ROW_FIELDS)
    assert {f for f, t in kinds.items() if t == "Int64"} == R.INT_FIELDS
    assert {f for f, t in kinds.items() if t == "Float64"} == R.FLOAT_FIELDS


# -- exit codes of the commands that read results files (the CLI's main, one line on stderr, code 2) ------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    good = R.save(S.scaling_run(), d / "good.json")
    (d / "corrupt.json").write_text('{"schema": "threadbench.run/1", "rows": [{"run_id": ')
    (d / "v9.json").write_text(json.dumps({**S.scaling_run(), "schema": "threadbench.run/9"}))
    return d, good


@pytest.mark.parametrize("args, expected", [
    (["report", "{d}/missing.json"], "missing.json: no such results file"),
    (["report", "{d}/corrupt.json", "-f", "markdown"], "corrupt.json: not a readable threadbench results file"),
    (["report", "{good}", "--format", "xml"], "--format: unknown format 'xml'"),
    (["diff", "{good}", "{d}/v9.json"], "v9.json: schema 'threadbench.run/9' is not supported"),
    (["diff", "{d}/missing.json", "{good}"], "missing.json: no such results file"),
    (["diff", "{good}", "{good}", "--threshold", "-1"], "--threshold"),
    (["plot", "{d}/corrupt.json", "-o", "{d}/x.png"], "corrupt.json: not a readable"),
    (["plot", "{good}", "-o", "{d}/x.unknown"], "cannot tell the image format"),
    (["publish", "--runs", "{d}/none", "--out-dir", "{d}/out"], "no such folder of runs"),
])
def test_bad_input_exits_2_with_one_line(files, args, expected, threadbench):
    d, good = files
    out = threadbench(*[a.format(d=d, good=good) for a in args])
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith("threadbench: error: ") and expected in lines[0], out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_plot_without_matplotlib_says_how_to_install(files, tmp_path, threadbench, monkeypatch):
    d, good = files
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError, as uninstalled
    out = threadbench("plot", good, "-o", tmp_path / "s.png")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "threadbench: error: plotting needs matplotlib, an optional extra: pip install 'threadbench[plot]'"]
    assert not (tmp_path / "s.png").exists()


@pytest.mark.slow
def test_saved_run_commands_keep_help_light():
    for cmd in ("report", "diff", "plot", "publish"):
        out = subprocess.run([sys.executable, "-X", "importtime", "cli.py", cmd, "--help"], capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0 and "Usage" in out.stdout
        imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
        assert "typer" in imported
        assert not imported & {"torch", "mlx", "jax", "polars", "matplotlib", "scipy"}, cmd


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, threadbench, starts_processes):
    """One tiny real sweep (numpy backend, about 10 s) with the peak probe, alone in a folder of runs."""
    path = tmp_path_factory.mktemp("e2e") / "runs" / "tiny.json"
    out = threadbench("compare", "--backends", "numpy", "--dtype", "float64", "--workloads", "mlp", "--threads", "1,2",
                      "--modes", "sequential,threads,offline", "--offline-k", "1,2", "--trials", "2", "--duration",
                      "0.05", "--warmup", "1", "--repeats", "1", "--json", "--out", path)
    return path, out


def test_end_to_end_compare_json_then_report_diff_plot_publish(tiny_run, tmp_path, threadbench):
    """The newcomer's path on one tiny real sweep."""
    path, out = tiny_run
    runs = path.parent
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)             # stdout is the run document and nothing else
    assert printed == R.load(path)
    assert printed["command"][:2] == ["threadbench", "compare"] and "--json" in printed["command"]
    assert {r["mode"] for r in printed["rows"] if r["workload"] == "mlp"} == {"sequential", "threads", "offline"}
    assert "┃" not in out.stdout and "results:" in out.stderr

    md = threadbench("report", path, "--format", "markdown")
    assert md.returncode == 0 and "### mlp — throughput" in md.stdout and "numpy cpu float64 ops/s [" in md.stdout
    assert "threadbench compare --backends numpy" in md.stdout

    same = threadbench("diff", path, path, "--format", "json", "--fail-on-regression")
    assert same.returncode == 0, same.stderr
    doc = json.loads(same.stdout)
    assert doc["regressions"] == 0 and doc["only_in_a"] == [] and doc["cells"]
    assert all(c["verdict"] in ("same", "not compared") for c in doc["cells"])

    png = tmp_path / "scaling.png"
    assert threadbench("plot", path, "-o", png).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    pub = threadbench("publish", "--runs", runs, "--out-dir", tmp_path)
    assert pub.returncode == 0, pub.stderr
    readme = (tmp_path / "README.md").read_text()
    assert "![scaling curves" in readme and (tmp_path / "tiny.png").exists()


def test_compare_help_lists_every_mode_in_the_table(threadbench):
    """--modes' help is read from compare.cells.MODES: a new mode shows up without a second edit."""
    from compare.cells import MODES
    out = threadbench("compare", "--help", env=dict(os.environ, COLUMNS="400"))
    assert out.returncode == 0
    modes_line = next(line for line in out.stdout.splitlines() if "--modes" in line)
    for mode in MODES:
        assert f"{mode}," in modes_line or f"{mode} (or" in modes_line, (mode, modes_line)


@pytest.mark.slow
def test_no_peak_probe_leaves_the_probe_out_and_says_so_in_the_settings(tiny_run, tmp_path, threadbench):
    """A run that joins another of this machine (transformer apart from mlp, say) can leave the matmul probe out,
    so the two share no cell and `publish` shows them as one machine."""
    common = ["--backends", "numpy", "--dtype", "float64", "--workloads", "mlp", "--threads", "1", "--modes",
              "sequential", "--trials", "2", "--duration", "0.05", "--warmup", "1", "--repeats", "1", "-q"]
    with_probe, without = tiny_run[0], tmp_path / "b.json"  # the tiny run has the probe (the default)
    out = threadbench("compare", *common, "--no-peak-probe", "--out", without)
    assert out.returncode == 0, out.stderr
    a, b = R.load(with_probe), R.load(without)
    assert "matmul" in {r["workload"] for r in a["rows"]} and a["settings"]["peak_probe"] is True
    assert {r["workload"] for r in b["rows"]} == {"mlp"} and b["settings"]["peak_probe"] is False
