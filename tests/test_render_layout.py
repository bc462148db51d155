"""What a reader sees: like-for-like ratio columns, the legend, the stacked layout at 80 columns with
nothing cut, one print path for `compare` and `report`, the json export read back, machine names, and
the commands' exit codes for inputs that cannot work. Structure and text, never pixels or speed."""
import re
import subprocess
from pathlib import Path

import pytest

import cli
import synthetic_runs as S
from compare import results as R
from compare.render import format as F
from compare.render import report as P
from compare.render import tables

ROOT = Path(__file__).resolve().parents[1]


def gpu_run():
    """torch at exact FP32 and MLX on CUDA (TF32, no switch): no like-for-like pair; a crash; too slow."""
    results = []
    for backend, device, setting, base, err in (("torch", "cuda", "highest", 1000.0, 1e-7),
                                                ("mlx", "gpu", "native", 3000.0, 2.6e-4)):
        for mode, n in (("sequential", 1), ("threads", 2), ("threads", 4)):
            c = S.Cell(backend=backend, device=device, dtype="float32", workload="mlp", mode=mode, threads=n,
                       fp32_precision=setting)
            r = S.result(c, [base * n * f for f in (0.98, 0.99, 1.0, 1.01, 1.02)])
            r.rel_err = err
            r.env = {**r.env, "device_name": "NVIDIA H100 80GB HBM3", "intra_op_threads": None,
                     "thread_streams": f"{backend}: each Python thread runs on the device's default stream"}
            results.append(r)
    crash = S.Cell(backend="mlx", device="gpu", dtype="float32", workload="mlp", mode="threads", threads=8,
                   fp32_precision="native")
    results.append(S.result(crash, None, "crash", "killed by SIGABRT: terminate called after throwing an instance "
                            "of 'std::runtime_error' | what():  cudaStreamEndCapture failed"))
    slow = S.Cell(backend="torch", device="cuda", dtype="float32", workload="mlp", mode="offline", k=64)
    results.append(S.result(slow, None, "too_slow", "one op took 2.1 s, longer than the 0.5 s window"))
    return S.run(results, host_name="vm")


def test_ratios_are_like_for_like_only_and_the_missing_pair_is_named():
    summary = P.summarize([gpu_run()])
    t = tables.build(summary)[0]
    groups = list(dict.fromkeys(g for g, _ in t.columns if g and g != "ratio"))
    assert groups == ["torch cuda float32", "mlx gpu float32 (TF32)"]       # the crashed MLX cell in its group
    assert not [c for c in t.columns if c[0] == "ratio"]                     # exact FP32 is never divided by TF32
    assert any("no like-for-like ratio" in n and "`--fp32-precision high` runs torch cuda at TF32, matching mlx gpu"
               in n for n in t.notes)
    # with torch at TF32 as well, the ratio column compares TF32 with TF32 only
    run = gpu_run()
    c = S.Cell(backend="torch", device="cuda", dtype="float32", workload="mlp", mode="sequential", fp32_precision="high")
    r = S.result(c, [1500.0] * 5)
    r.rel_err = 3e-4
    R.add_result(run, r)
    t = tables.build(P.summarize([run]))[0]
    ratios = [c for c in t.columns if c[0] == "ratio"]
    assert ratios == [("ratio", "mlx gpu float32 (TF32) ÷ torch cuda float32 (TF32)")]
    seq = next(row for row in t.rows if row[0] == "sequential")
    assert seq[t.columns.index(ratios[0])] == "2.00"


def test_legend_explains_every_symbol_with_one_spelling_per_status():
    run = gpu_run()
    summary = P.summarize([run])
    legend = "\n".join(tables.legend(summary, run["backend_env"]))
    for symbol in ("ops/s [93.8% CI]", "×1T", "(TF32)", "p50 ms", "—:", "CRASH:", "too slow:", "offline: ",
                   "(a ceiling configuration, not a client strategy)"):
        assert symbol in legend, symbol
    for absent in ("! after a figure", "%ceil", "%peak", "A ÷ B", "TIMEOUT"):   # not in these tables: not explained
        assert absent not in legend, absent
    assert "threads on mlx/gpu: mlx: each Python thread runs on the device's default stream" in legend
    text = P.render([run], "table", width=200)
    assert "too_slow" not in text and "too slow" in text
    assert "intra-op threads: None" not in text and "intra-op threads: framework default" in text
    assert "Legend" in text and "ops/s [93.8% CI]" in text


def test_the_detail_shows_the_split_and_the_verdict_and_the_legend_defines_them():
    """A cell with a split gets its figures and verdict in the detail table, each column and word in the
    legend; cells measured before the split show none of it (gpu_run has none)."""
    run = gpu_run()
    c = S.Cell(backend="torch", device="cpu", dtype="float32", workload="mlp", mode="threads", threads=4)
    r = S.result(c, [4000.0] * 5)
    for t in r.trials:   # 4 threads blocked 75% of a request, one core between them: the GIL
        t.call_ms, t.sync_ms, t.cpu_ms, t.core_wait_ms, t.own_cores, t.proc_cores = 0.8, 0.0, 0.2, 0.0, 1.0, 1.0
    r.cores = 8
    R.add_result(run, r)
    summary = P.summarize([run])
    detail = next(t for t in tables.build(summary) if "detail" in t.title)
    columns = [name for _, name in detail.columns]
    for name in ("wall ms", "sync %", "run %", "core wait %", "thr/proc cores", "why"):
        assert name in columns, name
    assert "dev busy" not in columns                        # no cell has a device busy share
    row = next(row for row in detail.rows if row[0].startswith("torch cpu") and row[2] == "×4")
    assert [row[columns.index(n)] for n in ("wall ms", "sync %", "run %", "core wait %", "thr/proc cores", "why")] \
        == ["0.8", "0%", "25%", "0%", "1.00/1.00", "GIL-bound"]
    assert all(row[columns.index("why")] == F.MISSING for row in detail.rows if not row[0].startswith("torch cpu"))
    legend = "\n".join(tables.legend(summary, run["backend_env"]))
    assert "GIL-bound: of the threads of one process at least 0.7 on average are runnable" in legend
    assert "run %: " in legend and "core wait %: " in legend and "host-bound:" not in legend
    old = "\n".join(tables.legend(P.summarize([gpu_run()]), run["backend_env"]))
    assert "run %" not in old and "GIL-bound" not in old and "why:" not in old


def test_80_columns_stack_the_tables_and_cut_nothing():
    run = gpu_run()
    wide = tables.build(P.summarize([run]))
    for t in wide:
        blocks = tables.stack(t, 80)
        assert all(tables._width(b) <= 80 for b in blocks)
        shown = {cell for b in blocks for row in b.rows for cell in row} | {b.title.split(" — ")[-1] for b in blocks}
        assert {cell for row in t.rows for cell in row} <= shown              # every value is in some block
    text = P.render([run], "table", width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in re.sub(r"ops/s \[.*?\]", "", text.split("Findings")[0])  # no value ellipsised
    assert text.rstrip().splitlines()[-1].strip()                             # ends with the findings
    assert text.index("Legend") < text.index("Findings")
    assert len(P.render([run], "table", width=200).splitlines()) < len(text.splitlines())


def test_compare_and_report_print_through_one_function(monkeypatch):
    from rich.console import Console

    from compare import session
    calls = []
    monkeypatch.setattr(P, "print_report", lambda runs, summary, console: calls.append(len(runs)))
    session.print_run(gpu_run(), Console(width=100))
    P.to_table_text([gpu_run()], P.summarize([gpu_run()]), 100)
    assert calls == [1, 1]
    assert set(P.RENDERERS) == {"table", "markdown", "csv", "json"}


def test_report_reads_its_own_json_export(tmp_path, capsys):
    path = R.save(gpu_run(), tmp_path / "run.json")
    P.report([path], "json", tmp_path / "summary.json")
    runs = P.load_runs([tmp_path / "summary.json"])
    assert [r["machine"] for r in runs] == ["H100 80GB"]
    again = P.summarize(runs)
    original = P.summarize(P.load_runs([path]))
    key = ["backend", "mode", "threads", "k"]
    assert again.sort(key)["ops_per_s"].to_list() == original.sort(key)["ops_per_s"].to_list()
    text = P.render(runs, "markdown")
    assert "## Findings" in text and "mlx gpu float32 (TF32)" in text
    # diff needs trials: it says so precisely
    assert cli.run_cli(["diff", str(tmp_path / "summary.json"), str(path)]) == 2
    assert "holds medians, not the per-trial figures diff tests" in capsys.readouterr().err


def test_machine_names_come_from_the_hardware_or_machine_option():
    run = gpu_run()
    assert P.machine_name(run) == "H100 80GB"
    cpu = S.run([S.result(S.cell(), [100.0] * 5)])
    assert P.machine_name(cpu) == "Test 9000, 4 cores"
    cpu["machine"] = "my laptop"
    assert P.machine_name(cpu) == "my laptop"
    assert F.hardware_name("Intel(R) Xeon(R) Platinum 8480C CPU @ 2.00GHz") == "Intel Xeon Platinum 8480C"
    assert F.revision("130277360190 (stated after the run: git there: d42347505c21+dirty)") == "130277360190"


def test_command_shows_each_option_once_at_the_value_that_took_effect():
    run = {"command": ["threadbench", "compare", "--dtype", "float32,bfloat16", "--quiet", "--out", "/x.json",
                       "--dtype", "float32", "--fp32-precision", "high"]}
    assert P.command_line(run) == ("threadbench compare --quiet --out /x.json --dtype float32 "
                                   "--fp32-precision high")


def test_cause_lines_are_cut_between_words():
    cause = "killed by SIGABRT: terminate called after throwing an instance of 'x' | what():  cudaStreamEndCapture failed"
    assert F.cause_line(cause) == "killed by SIGABRT: cudaStreamEndCapture failed"
    # the boilerplate inside a part (a process's cause is prefixed) and the recursive form go too
    assert F.cause_line("process 2 of 5: crash: killed by SIGABRT: " + cause.split(": ", 1)[1]) == (
        "process 2 of 5: crash: killed by SIGABRT; cudaStreamEndCapture failed")
    assert F.cause_line("killed by SIGABRT: terminate called recursively | " + cause.split(": ", 1)[1]) == (
        "killed by SIGABRT: cudaStreamEndCapture failed")
    long = "error: " + " ".join(["word"] * 60)
    cut = F.cause_line(long, 50)
    assert len(cut) <= 50 and cut.endswith(" …") and cut[:-2].endswith("word")


# -- commands that close their loops ---------------------------------------------------------------
def call(capsys, args):
    code = cli.run_cli([str(a) for a in args])
    return code, capsys.readouterr().err


def test_diff_of_runs_with_nothing_in_common_is_bad_input(tmp_path, capsys):
    a = R.save(S.run([S.result(S.cell("torch"), [100.0] * 5)]), tmp_path / "a.json")
    b = R.save(S.run([S.result(S.cell("mlx"), [100.0] * 5)]), tmp_path / "b.json")
    code, err = call(capsys, ["diff", a, b, "--fail-on-regression"])
    assert code == 2 and "nothing to compare" in err and "1 cells only in A, 1 only in B" in err


@pytest.mark.parametrize("args,expected", [
    (["compare", "--dtype", "fp16"], "did you mean 'float16'?"),
    (["compare", "--dtype", "tf32"], "did you mean 'float32' with --fp32-precision 'high'?"),
    (["compare", "--threads", "2-8"], "ranges are not accepted, list the values: 2,4,8"),
    (["compare", "--machine", " "], "--machine: give a name"),
])
def test_near_miss_values_get_a_suggestion(capsys, args, expected):
    code, err = call(capsys, args)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_debug_keeps_exit_code_2(capsys):
    code, err = call(capsys, ["--debug", "compare", "--threads", "0"])
    assert code == 2 and "Traceback" in err and "--threads: 0 is out of range" in err


def test_out_refuses_to_overwrite(tmp_path, capsys):
    existing = tmp_path / "run.json"
    existing.write_text("{}")
    code, err = call(capsys, ["compare", "-b", "numpy", "--out", existing])
    assert code == 2 and "exists" in err and "--overwrite" in err
    assert existing.read_text() == "{}"
    resumed = R.save(gpu_run(), tmp_path / "resume.json")
    code, err = call(capsys, ["compare", "--resume", resumed, "--out", existing])
    assert code == 2 and "exists" in err


def test_ad_hoc_runs_land_outside_the_published_folder():
    from compare.render.publish import RUNS_DIR
    path = R.default_path(S.run([]))
    assert RUNS_DIR not in path.parents and path.parent == R.DEFAULT_RUNS
    ignored = lambda p: subprocess.run(["git", "check-ignore", "-q", "--no-index", p], cwd=ROOT).returncode == 0  # noqa: E731
    assert ignored("runs/2026-01-01-host-abc.json")                 # compare's default output: never committed
    assert not ignored("results/runs/cpu/closed-loop.json")          # the published runs: committed with the page
    assert ignored("results/runs/scratch/try.json")


def test_several_machines_fit_the_width_with_their_names_whole():
    a, b = gpu_run(), S.scaling_run("laptop")
    text = P.render([a, b], "table", width=200)
    assert max(len(line) for line in text.splitlines()) <= 200
    assert "H100 80GB: torch cuda float32" in text and "Test 9000, 4 cores: torch cpu float32" in text
    header_lines = [l for l in text.splitlines() if l.startswith("┃")]
    assert all("…" not in l for l in header_lines)


def test_compact_table_per_workload_and_dtype_groups_equal_precision():
    run = gpu_run()
    c = S.Cell(backend="torch", device="cuda", dtype="float32", workload="mlp", mode="sequential", fp32_precision="high")
    r = S.result(c, [1500.0] * 5)
    r.rel_err = 3e-4
    R.add_result(run, r)
    [t] = tables.build_compact(P.summarize([run]))
    assert t.title.startswith("mlp · float32")
    assert [row[:2] for row in t.rows] == [["torch cuda", "exact FP32"], ["torch cuda", "TF32"], ["mlx gpu", "TF32"]]
    mlx = t.rows[2]
    cols = [n for _, n in t.columns]
    assert mlx[cols.index("sequential")] == "3k" and mlx[cols.index("best strategy")] == "12k threads ×4"
    assert mlx[cols.index("× seq")] == "4.0×" and mlx[cols.index("failed")] == "1"
    assert "ceiling" not in cols                                  # no ceiling measured: the column is left out
    assert tables._width(t) <= 80
