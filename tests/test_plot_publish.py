"""`plot` draws what the runs measured (a panel per workload, CI error bars, the offline ceiling);
`publish` rebuilds results/README.md and the plots from the runs folder, deterministically."""
import json

import pytest

import synthetic_runs as S
from compare.render import plot as PL
from compare.render import publish as PUB
from compare.render import report as P
from compare import results as R
from compare.options import BadInput

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def named(run):
    """As `compare --machine HOST` records it, so section titles are known."""
    run["machine"] = run["host"]["host"]
    return run


def test_figure_has_a_panel_per_workload_lines_error_bars_and_ceilings():
    run = S.scaling_run("m1", workloads=("mlp", "block"))
    R.add_result(run, S.result(S.cell("mlx", "block", "threads", 8), None, "crash", "killed by SIGSEGV"))
    fig = PL.figure(P.summarize([run]), "t")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["mlp · float32", "block · float32"]
    assert {ax.get_yscale() for ax in axes} == {"log"}                       # the same log axis everywhere
    mlp = axes[0]
    # threads lines (x1, x2, x4) for torch and mlx, dodged a little apart around the thread counts
    lines = [l for l in mlp.get_lines() if len(l.get_xdata()) == 3 and l.get_linestyle() == "-"]
    assert len(lines) == 2
    torch_line = max(lines, key=lambda l: max(l.get_ydata()))
    assert list(torch_line.get_ydata()) == [1000.0, 1500.0, 2500.0]
    assert [round(x) for x in torch_line.get_xdata()] == [1, 2, 4]
    # dashed horizontal ceilings at each backend's best offline figure (k=8: base x 5)
    ceilings = sorted(l.get_ydata()[0] for l in mlp.get_lines() if l.get_linestyle() == "--")
    assert ceilings == [2000.0, 5000.0]
    # error bars: one vertical segment per plotted point (3 threads + 1 sequential per backend)
    segments = [seg for c in mlp.collections for seg in c.get_segments()]
    assert len(segments) == 2 * 4
    assert [t.get_text() for t in mlp.get_xticklabels()] == ["1", "2", "4"]
    # one Okabe-Ito colour per backend; the crash is marked and named in its own panel
    assert {l.get_color() for l in lines} == {PL.OKABE_ITO[0], PL.OKABE_ITO[1]}
    block = axes[1]
    assert any(l.get_marker() == PL.FAILED_MARK for l in block.get_lines())
    assert "mlx cpu: CRASH threads ×8" in [t.get_text() for t in block.texts]
    assert not [t for t in mlp.texts if "CRASH" in t.get_text()]


def test_the_subtitle_says_what_the_error_bars_span():
    from dataclasses import replace
    one = PL.figure(P.summarize([S.scaling_run("m1")]), "t")
    assert "over one process's timed windows (not a re-run's spread)" in one._suptitle.get_text()
    c = S.cell("torch", "mlp", "sequential")
    several = S.run([S.result(replace(c, repeat=i), [100.0 + i] * 5) for i in range(3)])
    fig = PL.figure(P.summarize([several]), "t")
    assert "from the processes' medians (--repeats)" in fig._suptitle.get_text()


def test_rows_per_precision_and_far_ceilings_do_not_squash_the_curves():
    run = S.scaling_run("m1")
    for r in run["rows"]:
        if r["backend"] == "mlx":
            r["fp32_precision"], r["rel_err"] = "native", 2.6e-4               # TF32 without a switch
        if r["mode"] == "offline" and r["k"] == 8:
            r["ops_per_s"] *= 100                                              # a ceiling far above the curves
    fig = PL.figure(P.summarize([run]), "t")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["mlp · float32", "mlp · float32 (TF32)"]
    for ax in axes:
        assert not [l for l in ax.get_lines() if l.get_linestyle() == "--"]  # not drawn: it would squash the data
        assert ax.get_ylim()[1] < 50_000 * 10
        assert any("ceiling" in t.get_text() and "↑" in t.get_text() for t in ax.texts)


def test_plot_saves_a_png_atomically_and_deterministically(tmp_path):
    path = R.save(S.scaling_run(), tmp_path / "a.json")
    out = PL.plot([path], tmp_path / "img" / "s.png")
    first = out.read_bytes()
    assert first[:8] == PNG and len(first) > 10_000
    assert PL.plot([path], out).read_bytes() == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.png"]
    assert PL.plot([path], tmp_path / "s.svg").read_text().lstrip().startswith("<?xml")


def test_nothing_to_plot_and_bad_names(tmp_path):
    failed = S.run([S.result(S.cell(), None, "crash", "killed by SIGSEGV")])
    path = R.save(failed, tmp_path / "f.json")
    with pytest.raises(PL.NothingToPlot, match="nothing to plot"):
        PL.plot([path], tmp_path / "x.png")
    with pytest.raises(BadInput, match="cannot tell the image format"):
        PL.check_output(tmp_path / "x")
    with pytest.raises(BadInput, match="is a folder"):
        PL.check_output(tmp_path / "dir.png") if (tmp_path / "dir.png").mkdir() is None else None


def test_missing_matplotlib_is_one_line_with_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(BadInput) as e:
        PL.plot([tmp_path / "a.json"], tmp_path / "x.png")
    assert str(e.value) == "plotting needs matplotlib, an optional extra: pip install 'threadbench[plot]'"
    with pytest.raises(BadInput, match=r"threadbench\[plot\]'.*--no-plots"):
        PUB.publish(tmp_path, tmp_path)


def runs_folder(tmp_path):
    runs = tmp_path / "results" / "runs"
    R.save(named(S.scaling_run("laptop", created="2026-01-02T03:04:05+00:00")), runs / "2026-01-02-laptop-aaaaaa.json")
    gpu = named(S.scaling_run("h100", scale=20, created="2026-02-03T04:05:06+00:00"))
    for r in gpu["rows"]:
        r["device"] = "cuda" if r["backend"] == "torch" else r["device"]
    R.add_result(gpu, S.result(S.cell("mlx", "mlp", "threads", 8), None, "timeout", "no result within 120 s"))
    R.save(gpu, runs / "2026-02-03-h100-bbbbbb.json")
    return runs, tmp_path / "results"


def test_publish_writes_readme_and_a_plot_per_run(tmp_path):
    runs, out = runs_folder(tmp_path)
    written = PUB.publish(runs, out)
    assert sorted(p.name for p in written) == ["2026-01-02-laptop-aaaaaa.md", "2026-01-02-laptop-aaaaaa.png",
                                               "2026-02-03-h100-bbbbbb.md", "2026-02-03-h100-bbbbbb.png", "README.md"]
    text = (out / "README.md").read_text()
    laptop_details = (out / "details" / "2026-01-02-laptop-aaaaaa.md").read_text()
    assert text.startswith("# threadbench results\n") and "python cli.py publish" in text
    # newest run first; index table links each section
    assert text.index("## h100 — 2026-02-03 04:05 UTC") < text.index("## laptop — 2026-01-02 03:04 UTC")
    assert "| [h100](#2026-02-03-h100-bbbbbb) |" in text and '<a id="2026-02-03-h100-bbbbbb">' in text
    assert "![scaling curves: h100" in text and "(2026-02-03-h100-bbbbbb.png)" in text
    assert "[2026-01-02-laptop-aaaaaa.json](runs/2026-01-02-laptop-aaaaaa.json)" in text
    assert "[details/2026-01-02-laptop-aaaaaa.md](details/2026-01-02-laptop-aaaaaa.md)" in text
    assert "[runs/2026-01-02-laptop-aaaaaa.json](../runs/2026-01-02-laptop-aaaaaa.json)" in laptop_details
    assert text.count("Apple MPS/Metal not measured here") == 2
    laptop = text[text.index("## laptop"):]
    h100 = text[text.index("## h100"):text.index("## laptop")]
    assert "CPU only: no GPU was measured here" in laptop and "CPU only" not in h100
    assert "cells without a valid figure: 1 timeout" in h100
    # the environment, every cell and the commands in the details file; the page keeps compact tables
    assert f"**warning** (mlx/cpu): {S.MLX_WARNING}" in laptop_details and "**warning**" not in laptop
    assert "## Command\n\n```sh\nthreadbench compare --trials 5\n```" in laptop_details
    assert "## mlp — throughput (requests/s)" in laptop_details and "h100: " not in laptop_details
    assert "— throughput (requests/s)" not in text and "### mlp · float32 — requests/s, like-for-like" in laptop
    # how to read it, then the brief; findings and caveats in each machine's section; the legend in the details
    assert text.index("How to read it:") < text.index("## In brief") < text.index("## h100 —")
    assert "**mlp · float32**" in laptop and "**mlp · float32**" in h100 and "\n## Findings" not in text
    assert "## Legend" in laptop_details and "Legend" not in text
    assert laptop_details.index("## Legend") < laptop_details.index("## mlp — throughput")   # before first use
    assert "too_slow" not in text
    for png in [p for p in written if p.suffix == ".png"]:
        assert png.read_bytes()[:8] == PNG


def test_publish_is_deterministic(tmp_path):
    runs, out = runs_folder(tmp_path)
    first = {p.name: p.read_bytes() for p in PUB.publish(runs, out)}
    again = {p.name: p.read_bytes() for p in PUB.publish(runs, out)}
    assert first == again


def test_publish_refuses_a_corrupt_run_and_writes_nothing(tmp_path):
    runs, out = runs_folder(tmp_path)
    (runs / "zz-broken.json").write_text('{"schema": "threadbench.run/1", "rows": [')
    with pytest.raises(R.ResultsError, match="zz-broken.json: not a readable"):
        PUB.publish(runs, out)
    assert not (out / "README.md").exists() and not list(out.glob("*.png"))


def test_publish_without_runs_or_plots(tmp_path):
    (tmp_path / "runs").mkdir()
    PUB.publish(tmp_path / "runs", tmp_path, plots=False)
    assert "_No runs yet._" in (tmp_path / "README.md").read_text()
    runs, out = runs_folder(tmp_path / "x")
    written = PUB.publish(runs, out, plots=False)
    assert [p.name for p in written if p.suffix != ".md" or p.parent == out] == ["README.md"]
    assert "![" not in (out / "README.md").read_text()


def test_the_same_run_twice_is_refused(tmp_path):
    runs, out = runs_folder(tmp_path)
    src = runs / "2026-01-02-laptop-aaaaaa.json"
    (runs / "copy.json").write_text(json.dumps(json.loads(src.read_text())))
    with pytest.raises(R.ResultsError, match="same run"):
        PUB.publish(runs, out, plots=False)


def backend_only(run, backend):
    run["rows"] = [r for r in run["rows"] if r["backend"] == backend]
    run["cells"] = [c for c in run["cells"] if c["backend"] == backend]
    run["backend_env"] = {k: v for k, v in run["backend_env"].items() if k.startswith(backend)}
    return run


def test_one_file_per_backend_is_one_side_by_side_section(tmp_path):
    """As benchmarks/gpu_sweep.sh writes them: same host (or one sub-folder), disjoint cells."""
    runs = tmp_path / "runs"
    R.save(named(backend_only(S.scaling_run("box", created="2026-03-01T10:00:00+00:00"), "torch")), runs / "box-torch.json")
    R.save(named(backend_only(S.scaling_run("box", created="2026-03-01T10:20:00+00:00"), "mlx")), runs / "box-mlx.json")
    # fresh borrowed machines get other host names: a sub-folder groups them
    R.save(named(backend_only(S.scaling_run("gpu-a", created="2026-03-02T10:00:00+00:00"), "torch")), runs / "h100" / "t.json")
    R.save(named(backend_only(S.scaling_run("gpu-b", created="2026-03-02T10:09:00+00:00"), "mlx")), runs / "h100" / "m.json")
    R.save(S.scaling_run("junk"), runs / "scratch" / "junk.json")              # git-ignored scratch: not published
    written = PUB.publish(runs, tmp_path)
    assert sorted(p.name for p in written) == ["README.md", "box-torch.md", "box-torch.png", "h100.md", "h100.png"]
    text = (tmp_path / "README.md").read_text()
    assert text.count("\n## ") == 2 + 1 and "junk" not in text   # two machines, plus In brief
    assert "## gpu-a, gpu-b — 2026-03-02 10:00 – 2026-03-02 10:09 UTC" in text
    h100 = (tmp_path / "details" / "h100.md").read_text()
    assert "| mode | threads | torch cpu float32 ops/s [93.8% CI] | torch cpu float32 ×1T | mlx cpu float32 ops/s" in h100
    assert "ratio mlx ÷ torch" in h100 and "gpu-a: " not in h100
    assert h100.count("threadbench compare --trials 5") == 1 and "## Command\n" in h100   # the same command, once
    box = (tmp_path / "details" / "box-torch.md").read_text()
    assert "mlx ÷ torch" in box and "box-torch.json" in box and "box-mlx.json" in box


def test_repeated_cells_of_one_host_stay_separate_sections(tmp_path):
    runs = tmp_path / "runs"
    R.save(named(S.scaling_run("box", created="2026-03-01T10:00:00+00:00")), runs / "a.json")
    R.save(named(S.scaling_run("box", scale=2, created="2026-03-05T10:00:00+00:00")), runs / "b.json")
    PUB.publish(runs, tmp_path, plots=False)
    text = (tmp_path / "README.md").read_text()
    assert text.count("\n## box — ") == 2
    assert text.index("## box — 2026-03-05") < text.index("## box — 2026-03-01")


def test_superseded_cells_are_shown_from_the_newer_run_and_said_so(tmp_path):
    runs = tmp_path / "runs"
    old = named(S.scaling_run("box", created="2026-03-01T10:00:00+00:00"))
    old["plan"] = list(old["cells"])
    newer = named(backend_only(S.scaling_run("box", scale=3, created="2026-03-02T10:00:00+00:00"), "mlx"))
    newer["rows"] = [r for r in newer["rows"] if r["mode"] == "offline"]
    assert R.supersede(old, newer, "re-measured after a warm-up fix") == 2  # mlx offline k=1, k=8
    R.save(old, runs / "old.json")
    R.save(newer, runs / "newer.json")
    PUB.publish(runs, tmp_path, plots=False)
    text = (tmp_path / "README.md").read_text()
    assert text.count("\n## box") == 1  # no overlap left: one machine section
    text += (tmp_path / "details" / "old.md").read_text()
    assert f"2 cells of run {old['run_id']} were measured again in run {newer['run_id']}" in text
    assert "re-measured after a warm-up fix" in text and "incomplete" not in text
    mlx_k8 = [line for line in text.splitlines() if line.startswith("| offline | k=8 |")][0]
    assert mlx_k8.split("|")[5].strip().startswith("6,000") and "2,000" not in mlx_k8  # newer: 3 x the old 2,000


def test_publish_takes_an_explicit_list_and_names_machines_by_hardware(tmp_path):
    runs, out = runs_folder(tmp_path)
    adhoc = S.scaling_run("vm", created="2026-04-01T00:00:00+00:00")           # no --machine: named by its hardware
    adhoc["host"]["threadbench_revision"] = "130277360190 (stated after the run: git there: d42347505c21+dirty)"
    path = R.save(adhoc, tmp_path / "elsewhere" / "adhoc.json")
    PUB.publish(runs, out, plots=False, files=[path])
    text = (out / "README.md").read_text()
    assert "## Test 9000, 4 cores — 2026-04-01 00:00 UTC" in text and "laptop" not in text and "## vm" not in text
    details = (out / "details" / "adhoc.md").read_text()
    assert "threadbench `130277360190`" in details and "stated after the run" not in text + details
    with pytest.raises(R.ResultsError, match="no such results file"):
        PUB.publish(runs, out, plots=False, files=[tmp_path / "missing.json"])


def test_a_run_that_measured_nothing_is_named_not_published(tmp_path):
    runs, out = runs_folder(tmp_path)
    nothing = named(S.run([S.result(S.cell(), None, "unavailable", "cuda: no NVIDIA driver on this machine")],
                          host_name="cpu-box", created="2026-05-01T00:00:00+00:00"))
    R.save(nothing, runs / "nothing.json")
    written = PUB.publish(runs, out, plots=False)
    text = (out / "README.md").read_text()
    assert "## cpu-box" not in text and "| [cpu-box]" not in text
    assert "## Not published: nothing measured\n\n- nothing.json: cuda: no NVIDIA driver on this machine" in text
    assert [p.name for p in written if p.parent == out] == ["README.md"]


def test_a_run_listed_in_the_known_defects_table_says_so_under_its_section(monkeypatch, tmp_path):
    """A defect found after a run was made is data (results/known-defects.json): the run listed there gets
    the sentence with its revision and the fix; a run not listed gets nothing; no git is asked."""
    import subprocess

    def no_git(*a, **k):
        raise AssertionError("publish must not run git")
    monkeypatch.setattr(subprocess, "run", no_git)
    run = named(S.run([S.result(S.cell(), [100.0] * 5)]))
    run["host"]["threadbench_revision"] = "712eba3d89a6 (stated in THREADBENCH_REVISION; git here: 2a5df346eb4a+dirty)"
    table = tmp_path / "known-defects.json"
    table.write_text(json.dumps({"defects": [{"fix": "d2c8190", "affects": "GPU runs", "says": "the host probe erred",
                                              "runs": {run["run_id"]: "runs/x.json"}}]}))
    defects = PUB.known_defects(table)
    assert [c for c in PUB.caveats([run], defects) if "d2c8190" in c] == [
        "this run was made at 712eba3, before d2c8190: the host probe erred"]
    other = named(S.run([S.result(S.cell(), [100.0] * 5)]))
    assert not [c for c in PUB.caveats([other], defects) if "d2c8190" in c]
    assert PUB.known_defects(tmp_path / "none.json") == []
    table.write_text(json.dumps({"defects": [{"fix": "d2c8190"}]}))
    with pytest.raises(R.ResultsError, match="not a table of known defects"):
        PUB.known_defects(table)


def test_a_defect_that_names_workloads_holds_back_only_those_cells_of_its_runs(tmp_path):
    """The output check's spinning BLAS threads slowed only the cells with large outputs (transformer, the matmul
    probe): a defect with `workloads` withholds those cells' claims and keeps the rest of the same run's."""
    run = named(S.run([S.result(S.cell(workload=w), [100.0] * 5) for w in ("mlp", "transformer")]))
    rows = run["rows"]
    scoped = [{"fix": "abc1234", "affects": "x", "says": "y", "runs": {run["run_id"]: "runs/x.json"},
               "workloads": ["transformer"]}]
    claims = PUB.Claims.of([run], rows, scoped)
    assert {r["workload"] for r in claims.rows} == {"mlp"}
    assert claims.withheld == [f"the transformer cells of {PUB._name(run)}"]
    assert "No claim is drawn from the transformer cells of" in claims.withheld_lines()[0]
    other = PUB.Claims.of([run], rows, [dict(scoped[0], workloads=["block"])])   # a workload it does not have
    assert other.withheld == [] and len(other.rows) == len(rows)
    whole = PUB.Claims.of([run], rows, [dict(scoped[0], workloads=[])])
    assert claims.summary.height and not whole.rows and whole.withheld == [PUB._name(run)]
    table = tmp_path / "known-defects.json"
    table.write_text(json.dumps({"defects": [dict(scoped[0], workloads="transformer")]}))
    with pytest.raises(R.ResultsError, match="workloads"):
        PUB.known_defects(table)


def test_a_cell_whose_later_windows_ran_beside_more_of_its_own_process_is_a_caveat():
    """The output check's spinning BLAS threads showed in the runs' own data (~9.5 more process cores from the
    second window on): such growth is said under the section, unless a known defect already says it; a pool
    busy from the first window on is no growth."""
    run = named(S.run([S.result(S.cell(workload=w), [100.0] * 5) for w in ("mlp", "transformer")]))
    for r in run["rows"]:
        r["own_cores"] = 1.0
        r["proc_cores"] = 1.2 + (9.5 if r["workload"] == "transformer" and r["trial"] > 0 else 0.0)
    lines = [c for c in PUB.caveats([run]) if "later timed windows" in c]
    assert len(lines) == 1 and lines[0].startswith("1 cell ran its later timed windows"), lines
    assert "+9.5 cores" in lines[0] and "transformer" in lines[0] and "mlp" not in lines[0]
    said = [{"fix": "9857216", "affects": "x", "says": "y", "runs": {run["run_id"]: "f"}, "workloads": ["transformer"]}]
    assert not [c for c in PUB.caveats([run], said) if "later timed windows" in c]
    for r in run["rows"]:
        r["proc_cores"] = 10.7
    assert not [c for c in PUB.caveats([run]) if "later timed windows" in c]


def test_a_cell_where_a_thread_completed_no_request_in_a_window_is_a_caveat():
    """split-gil's two threads: one held the GIL for a whole window, the other completed nothing. Said under the
    section with how many windows; one thread, or processes, starve nothing of the GIL's turns here."""
    run = named(S.run([S.result(S.cell(threads=n, mode=m), [100.0] * 5)
                       for n, m in ((1, "sequential"), (2, "threads"), (4, "threads"), (2, "processes"))]))
    for r in run["rows"]:
        r["min_thread_ops"] = 0 if r["trial"] in (1, 3) else 40   # two windows of each
    (line,) = [c for c in PUB.caveats([run]) if "completed no request" in c]
    assert line.startswith("In 2 cells a thread completed no request in a timed window (4 windows; "), line
    assert "threads ×2" in line and "threads ×4" in line and "processes" not in line and "sequential" not in line
    for r in run["rows"]:
        r["min_thread_ops"] = 1
    assert not [c for c in PUB.caveats([run]) if "completed no request" in c]


def test_gpu_verdicts_drawn_before_sync_waits_was_recorded_are_a_caveat():
    """A run whose GPU cells carry the split but not whether the framework's synchronise only waits (schema
    /5): its verdicts may count a spin-wait as work, and the section says so; once recorded, or on the CPU,
    nothing is said."""
    run = named(S.run([S.result(S.cell(), [100.0] * 5)]))
    for r in run["rows"]:
        r["device"], r["call_ms"], r["sync_waits"] = "cuda", 1.0, None
    (line,) = [c for c in PUB.caveats([run]) if "spin-waiting" in c]
    assert line.startswith("the verdicts (why) of torch on the GPU were drawn before"), line
    for r in run["rows"]:
        r["backend"] = "mlx"   # its synchronise evaluates the graph (sync_waits False): what it spends is work
    assert not [c for c in PUB.caveats([run]) if "spin-waiting" in c]
    for r in run["rows"]:
        r["backend"], r["sync_waits"] = "torch", 1
    assert not [c for c in PUB.caveats([run]) if "spin-waiting" in c]
    for r in run["rows"]:
        r["device"], r["sync_waits"] = "cpu", None
    assert not [c for c in PUB.caveats([run]) if "spin-waiting" in c]
    # read from a file older than the field (results.declare_sync_waits): the verdicts follow the declaration
    for r in run["rows"]:
        r["device"], r["sync_waits"] = "cuda", 1
    run["sync_waits_declared"] = ["torch"]
    (line,) = [c for c in PUB.caveats([run]) if "spin-waiting" in c]
    assert line.startswith("this run predates threadbench's record of what a framework's synchronise does"), line
    assert "torch only waits there" in line


def test_a_panel_whose_claims_a_known_defect_withdraws_says_so_on_the_plot():
    """The page's plot is read on its own: the panels of the workloads a known defect names carry the note
    first, the others nothing; a defect's workloads that the run does not have flag no panel."""
    run = named(S.scaling_run("m1", workloads=("mlp", "block")))
    defect = [{"fix": "9857216", "affects": "x", "says": "y", "runs": {run["run_id"]: "f"},
               "workloads": ["block", "transformer"]}]
    flags = PUB.flagged([run], defect)
    assert flags == {"block": "known defect (fixed in 9857216): no claim drawn, see the caveats"}
    fig = PL.figure(P.summarize([run]), "t", flags)
    mlp, block = [ax for ax in fig.axes if ax.get_visible()]
    assert block.texts[0].get_text() == flags["block"]
    assert not [x for x in mlp.texts if "known defect" in x.get_text()]
    assert PUB.flagged([run], [dict(defect[0], workloads=[])]).keys() == {"mlp", "block"}


def test_the_committed_known_defects_table_names_runs_that_exist():
    """Every run the committed table lists is a committed results file with that run_id, and every listed
    run's revision is one the sentence can name."""
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "results"
    defects = PUB.known_defects(root / "known-defects.json")
    assert {d["fix"] for d in defects} == {"d2c8190", "571e48a", "322768b", "9857216"}
    for d in defects:
        assert d["runs"] and d["says"] and d["affects"]
        for run_id, file in d["runs"].items():
            run = R.load(root / file)
            assert run["run_id"] == run_id and run["host"].get("threadbench_revision")


def test_a_section_of_several_runs_names_the_run_of_each_line_only_one_run_has(tmp_path):
    """Three runs of one machine in one folder: the shared backend lines once and bare, each run's own host
    probe line under its file name, and a known defect under the one run that shows it."""
    from compare.cells import SKIPPED
    a = named(S.scaling_run("m1", workloads=("mlp",)))
    b = named(S.run([S.result(S.cell(workload="block", mode="processes", threads=2), None, SKIPPED,
                              "not run: torch/cpu/float32 block batched ×2 was already too slow (…)")]))
    b["host"]["host"] = "m1"
    from test_host import snapshot
    for run, load in ((a, 0.5), (b, 1.5)):
        run["host_probe"] = [snapshot("start", load_avg=load, busy=0.0, cpus=2), snapshot("end", busy=0.0, cpus=2)]
        run["host"]["threadbench_revision"] = "7e6fbed243dd"
    for name, run in (("a.json", a), ("b.json", b)):
        R.save(run, tmp_path / "runs" / "m1" / name)
    table = tmp_path / "known-defects.json"
    table.write_text(json.dumps({"defects": [{"fix": "322768b", "affects": "runs with a cell skipped by another mode",
                                              "says": "a too-slow cell skipped the later cells of every mode",
                                              "runs": {b["run_id"]: "runs/m1/b.json"}}]}))
    PUB.publish(tmp_path / "runs", tmp_path / "out", defects_file=table)
    text = (tmp_path / "out" / "README.md").read_text()
    env = (tmp_path / "out" / "details" / "m1.md").read_text()
    env = env[env.index("## Environment"):env.index("\n## ", env.index("## Environment") + 3)]
    assert "- a.json: load (start → end): load average 0.5" in env and "- b.json: load (start → end): load average 1.5" in env
    caveats = text[text.index("### Caveats"):].split("###")[1]
    assert "- b.json was made at 7e6fbed, before 322768b: a too-slow cell skipped" in caveats


def test_a_panel_spanning_about_a_decade_labels_its_2s_and_5s():
    """A slow workload (5-7 requests/s on a 2-core CPU) had one labelled tick, 10, above all its points."""
    run = S.run([S.result(S.cell(mode="sequential"), [5.0, 5.5, 6.0, 5.2, 5.8]),
                 S.result(S.cell(mode="threads", threads=2), [6.5, 6.4, 6.9, 6.6, 6.2])])
    fig = PL.figure(P.summarize([run]), "t")
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    shown = [t.get_text() for t in ax.yaxis.get_ticklabels(minor=True) + ax.yaxis.get_ticklabels()
             if t.get_text() and lo <= t.get_position()[1] <= hi]
    assert "5" in shown and len(shown) >= 2, shown


def committed_results(tmp_path, monkeypatch):
    """A copy of the committed results/ (runs, supplementary, known defects, pages) to publish in, as cwd."""
    import shutil
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "results"
    shutil.copytree(root, tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    return root


def test_the_committed_page_is_short_reads_first_and_links_its_details(tmp_path, monkeypatch):
    """results/README.md as publish writes it from the committed runs: at most PAGE_LINES lines, how to read it
    before the first figure, one heading per machine, the H100 runs on their own supplementary page that the
    main page links in one line, and each details file it links exists."""
    import re
    committed_results(tmp_path, monkeypatch)
    first = {str(p): p.read_bytes() for p in PUB.publish_all(plots=False)}
    assert {str(p): p.read_bytes() for p in PUB.publish_all(plots=False)} == first   # twice: the same bytes
    assert {"results/README.md", "results/details/cpu.md", "results/supplementary/README.md",
            "results/supplementary/details/h100.md"} <= set(first)
    text = (tmp_path / "results" / "README.md").read_text()
    assert len(text.splitlines()) <= PAGE_LINES
    first_figure = re.search(r"\d[km]? \[\d", text).start()   # "16.3k [12.6k–19.7k]"
    assert text.index("How to read it:") < text.index("## In brief") < first_figure
    machines = re.findall(r"^## (.+?) — ", text, re.M)
    assert machines and len(machines) == len(set(machines)) and "H100-80GB" not in machines
    assert "712eba3" not in text and "f11a9c4" not in text   # the supplementary runs stay off the page
    for page in ("supplementary/README.md", "supplementary/h200/README.md"):   # each linked in one line
        assert len([line for line in text.splitlines() if f"]({page})" in line]) == 1, page
    h200 = tmp_path / "results" / "supplementary" / "h200" / "README.md"
    main = re.search(r"The main page is \[([^]]+)\]", h200.read_text()).group(1)
    assert (h200.parent / main).resolve() == (tmp_path / "results" / "README.md").resolve()
    for link in re.findall(r"\]\((details/[^)#]+)\)", text):
        assert (tmp_path / "results" / link).is_file(), link
    supp = (tmp_path / "results" / "supplementary" / "README.md").read_text()
    assert "an earlier H100 80GB host" in supp and "712eba3" in supp and "one process per cell" in supp
    assert len(re.findall(r"^## H100", supp, re.M)) == 1   # the server run is no second H100 section
    assert "No claim is drawn from" in supp and "Other runs kept here" in supp


PAGE_LINES = 300   # issue 19: a page read in one sitting


@pytest.mark.slow
def test_publish_of_the_committed_runs_twice_is_byte_identical_to_the_committed_pages(tmp_path, monkeypatch):
    root = committed_results(tmp_path, monkeypatch)
    first = {str(p): p.read_bytes() for p in PUB.publish_all()}
    again = {str(p): p.read_bytes() for p in PUB.publish_all()}
    assert first == again
    for name, data in first.items():
        assert (root.parent / name).read_bytes() == data, f"{name}: publish again and commit it"


def gpu_machine(created="2026-06-01T10:00:00+00:00") -> dict:
    """A synthetic second machine as the H200 sweep will give it: torch, MLX and JAX on one GPU at float32
    (torch exact and TF32, MLX TF32 without a switch), TF32 and bfloat16, each with how it executed."""
    from compare.cells import Cell
    how = {"torch": {"execution": "eager"}, "mlx": {"cuda_graphs": True}, "jax": {"execution": "XLA jit"}}
    results = []
    for backend, dtype, fp32, precision, base in (
            ("torch", "float32", "highest", "fp32", 900.0), ("torch", "float32", "high", "tf32", 1500.0),
            ("mlx", "float32", "native", "tf32", 1000.0), ("jax", "float32", "high", "tf32", 1450.0),
            ("torch", "bfloat16", "highest", "bf16", 2000.0), ("mlx", "bfloat16", "highest", "bf16", 3000.0),
            ("jax", "bfloat16", "highest", "bf16", 2900.0)):
        for mode, threads, gain in (("sequential", 1, 1.0), ("threads", 2, 1.5), ("batched", 2, 1.2)):
            c = Cell(backend=backend, device="gpu", dtype=dtype, fp32_precision=fp32, workload="mlp", mode=mode,
                     threads=threads, trials=5, duration=0.5)
            r = S.result(c, [base * gain * f for f in (0.99, 1.0, 1.01, 0.995, 1.005)])
            r.precision, r.rel_err = precision, 1e-4 if precision == "tf32" else 1e-7   # TF32-sized error
            r.env = S.env(backend) | {"device_name": "Fake H200"} | how[backend]
            results.append(r)
    run = named(S.run(results, host_name="h200-a", created=created))
    run["machine"] = "H200"
    return run


def test_a_second_machine_with_three_frameworks_and_precisions_is_its_own_section(tmp_path):
    """The page is ready for the H200 section: one heading per machine, like-for-like only at equal
    precision (torch exact FP32 is compared with nothing), and how each framework executed where recorded."""
    runs = tmp_path / "runs"
    R.save(named(S.scaling_run("box", created="2026-03-01T10:00:00+00:00")), runs / "cpu" / "a.json")
    R.save(gpu_machine(), runs / "h200" / "shard-0.json")
    PUB.publish(runs, tmp_path / "out", plots=False)
    text = (tmp_path / "out" / "README.md").read_text()
    assert text.count("\n## H200 — ") == 1 and text.count("\n## box — ") == 1
    assert text.index("## H200") < text.index("## box")          # newest first
    brief = text[text.index("## In brief"):text.index("| machine |")]
    assert "**H200** · mlp · BF16: " in brief and "**H200** · mlp · TF32: " in brief
    bf16 = next(line for line in brief.splitlines() if "· BF16" in line)
    assert "like-for-like: mlx ≈ jax, mlx 1.5× torch, jax 1.4× torch; executed: mlx CUDA graphs, jax XLA jit, torch eager" in bf16
    exact = next(line for line in brief.splitlines() if "**H200** · mlp · exact FP32" in line)
    assert "like-for-like" not in exact                             # one framework at that precision
    h200 = text[text.index("## H200"):text.index("## box")]
    assert ("Like-for-like at BF16, best against best (mlx gpu: threads ×2 4.5k [4.46k–4.54k]): mlx gpu is faster "
            "than torch gpu (1.5×: threads ×2 3k [2.97k–3.03k]); not clearly faster than jax gpu (threads ×2 4.35k "
            "[4.31k–4.39k]); jax gpu is faster than torch gpu (1.4×); executed: mlx gpu CUDA graphs, jax gpu XLA jit, "
            "torch gpu eager.") in h200
    assert "Like-for-like at TF32" in h200 and "Like-for-like at exact FP32" not in h200
    assert "threads beat batched" in h200                            # the batcher is compared too


def test_a_section_of_several_runs_states_each_runs_wall_time_and_their_sum():
    """Issue 19: the whole matrix's device wall time on the page, shards, resumed calls and cut runs counted
    as measured; one run alone has no such line (its shard lines say it)."""
    def run(name, walls, cut=False, sweep=None):
        r = {"_path": f"results/runs/{name}", "run_id": name,
             "time_split": [{"wall_s": w, "interrupted": cut} for w in walls]}
        if sweep:
            r.update(sweep={"id": "abc", "shards": sweep}, shards=[{}] * sweep)
        return r
    line = PUB.wall_line([run("closed.json", [120, 60], sweep=2), run("server.json", [90, 30], cut=True),
                          run("procs.json", [60])])
    assert line.startswith("- wall time of every run here")
    assert "sweep `abc` (2 shards) 3.0, server.json (2 calls) 2.0, procs.json 1.0; **6.0 min in all**" in line
    assert "interrupted" in line
    assert PUB.wall_line([run("closed.json", [120])]) is None
    assert PUB.wall_line([run("a.json", [60]), {"_path": "b.json", "run_id": "b"}]) is None   # predates the field


def test_caveats_say_how_long_the_processes_behind_the_intervals_span_and_spare_server_runs_the_short_one():
    """Two H100 sweeps two hours apart covered each other's medians in 76% of cases: an interval over
    processes holds the host's moves while they ran, and the page says how long that was. A server run's
    cells measure in rate steps, so its 3 x 0.2 s windows setting is no 'short measurement'; a closed-loop
    run of one process is."""
    def one(mode, repeats):
        run = S.run([S.result(S.cell("torch", "mlp", mode), [100.0] * 3)], trials=3, duration=0.2)
        run["settings"]["repeats"] = repeats
        run["plan"] = [S.cell("torch", "mlp", mode).to_dict()]
        return run
    closed = one("sequential", 5)
    closed["processes"] = [{"started": 1796489094.0 + 60 * i, "ended": 1796489150.0 + 60 * i} for i in range(21)]
    said = PUB.caveats([closed, one("server-threads", 1), one("threads", 1)])
    (span,) = [c for c in said if c.startswith("the intervals over processes span")]
    assert span.startswith("the intervals over processes span 21 min: every process behind them ran between 16:44 "
                           "and 17:05 UTC")
    (short,) = [c for c in said if c.startswith("short measurement")]
    assert "1 of 3 runs" in short
    assert not [c for c in PUB.caveats([one("threads", 1)]) if c.startswith("the intervals over processes")]


def test_how_to_read_names_the_processes_and_level_of_the_figures_shown_only():
    """The H100 page said 'over 1/2/3/4/5 processes per cell, 93.8-97.9%': its server cells' one process and
    its crashed cells' four, which show no such interval. Only throughput cells with a figure count."""
    import polars as pl
    cell = lambda mode, n, level, ops=100.0: {"mode": mode, "n_processes": n, "ci_level": level,  # noqa: E731
                                              "ops_per_s": ops}
    summary = pl.DataFrame([cell("threads", 5, 0.9375), cell("sequential", 5, 0.9375),
                            cell("server-threads", 1, 0.979), cell("streams", 4, 0.875, ops=None)])
    (line,) = [x for x in PUB.how_to_read([summary]) if x.startswith("- **figures**")]
    assert "the distribution-free interval of the median over 5 processes per cell, its level: 93.8% CI" in line
    assert "[peak, lowest failing rate above it) from one process" in line


def test_cells_a_budget_left_out_are_named_as_not_measured():
    """`compare --budget` leaves the costliest cells out before it starts (the H200 server parts): the section
    names them, so a missing server cell reads as not measured, not as failed or forgotten."""
    run = named(S.run([S.result(S.cell(), [100.0] * 5)]))
    assert not [c for c in PUB.caveats([run]) if "left out" in c]
    run["budget"] = {"minutes": 3.5, "costs": "x.json", "estimate_s": 200.0,
                     "left_out": ["torch/cuda/bfloat16 mlp server-threads ×4", "mlx/gpu/bfloat16 mlp server-threads ×4"]}
    (line,) = [c for c in PUB.caveats([run]) if "left out" in c]
    assert line == (f"not measured, left out of {PUB._name(run)} to fit its `--budget 3.5` minutes (costliest "
                    "first): torch/cuda/bfloat16 mlp server-threads ×4, mlx/gpu/bfloat16 mlp server-threads ×4")
