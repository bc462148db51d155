"""`report`: runs merge into one set of tables (machine as column group, never pooled), and the summary
as CSV/JSON/markdown carries the real medians, the environment and the exact command."""
import csv
import io
import json
import statistics

import pytest

import synthetic_runs as S
from compare.render import outputs
from compare.render import report as P
from compare import results as R
from compare.render import tables
from compare.options import BadInput


def saved(tmp_path, name, run):
    return R.save(run, tmp_path / name)


def named(run, name=None):
    """The run as `compare --machine NAME` records it (default: its host name), so labels are known."""
    run["machine"] = name or run["host"]["host"]
    return run


def test_machine_labels_are_hosts_made_unique_per_run():
    a = named(S.scaling_run("box", created="2026-01-02T03:04:05+00:00"))
    b = named(S.scaling_run("box", created="2026-01-03T09:00:00+00:00"))
    c = named(S.scaling_run("gpu"))
    labels = P.machine_labels([a, b, c])
    assert labels == {a["run_id"]: "box 2026-01-02 03:04", b["run_id"]: "box 2026-01-03 09:00", c["run_id"]: "gpu"}
    d = named(S.scaling_run("box", created=a["created"]))  # same host, same minute: the run id tells them apart
    labels = P.machine_labels([a, d])
    assert labels[a["run_id"]] != labels[d["run_id"]] and a["run_id"] in labels[a["run_id"]]


def test_two_machines_merge_into_one_table_with_machine_column_groups(tmp_path):
    runs = P.load_runs([saved(tmp_path, "a.json", named(S.scaling_run("laptop"))),
                        saved(tmp_path, "b.json", named(S.scaling_run("h100", scale=10.0)))])
    built = tables.build(P.summarize(runs))
    assert [t.title for t in built] == ["mlp — throughput (requests/s)", "mlp — per-cell detail"]
    t = built[0]
    groups = list(dict.fromkeys(g for g, _ in t.columns if g and g != "ratio"))
    assert groups == ["laptop: torch cpu float32", "laptop: mlx cpu float32",
                      "h100: torch cpu float32", "h100: mlx cpu float32"]
    # one row per (mode, threads | k): sequential, threads x1 x2 x4, offline k=1 k=8
    assert [r[:2] for r in t.rows] == [["sequential", "—"], ["threads", "×1"], ["threads", "×2"], ["threads", "×4"],
                                       ["offline", "k=1"], ["offline", "k=8"]]
    col = t.columns.index(("h100: torch cpu float32", "ops/s [93.8% CI]"))   # the level 5 trials reach
    assert t.rows[3][col].startswith("25,000 [")   # 1000 x 10 x (1 + 0.5 x 3), median of the five trials
    ratio = t.columns.index(("ratio", "h100: torch cpu float32\n÷ laptop: torch cpu float32"))   # two header lines
    assert t.rows[0][ratio] == "10.00"
    detail = built[1]
    assert {row[0] for row in detail.rows} == set(groups) and len(detail.rows) == 4 * 6


def test_runs_of_one_host_stay_apart_not_pooled(tmp_path):
    a = S.scaling_run("box", created="2026-01-02T03:04:05+00:00")
    b = S.scaling_run("box", scale=2.0, created="2026-01-03T03:04:05+00:00")
    summary = P.summarize([a, b])
    assert summary.height == 2 * len({R.row_key(r) for r in a["rows"]})
    assert set(summary["n_trials"].to_list()) == {5}
    seq = summary.filter((summary["backend"] == "torch") & (summary["mode"] == "sequential"))
    assert sorted(seq["ops_per_s"].to_list()) == [1000.0, 2000.0]


def test_same_file_twice_counts_once_and_a_folder_means_its_runs(tmp_path):
    p = saved(tmp_path, "a.json", S.scaling_run("one"))
    saved(tmp_path, "b.json", S.scaling_run("two"))
    assert len(P.load_runs([p, p])) == 1
    assert {r["host"]["host"] for r in P.load_runs([tmp_path])} == {"one", "two"}
    with pytest.raises(R.ResultsError, match="no results files"):
        P.load_runs([tmp_path / "empty"] if (tmp_path / "empty").mkdir() is None else [])


def test_csv_is_the_per_cell_summary_in_long_format(tmp_path):
    run = S.scaling_run("m1")
    text = P.render(P.load_runs([saved(tmp_path, "a.json", run)]), "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[:len(P.FIRST_COLUMNS)] == list(P.FIRST_COLUMNS)
    assert len(rows) == len({R.row_key(r) for r in run["rows"]}) == 2 * (1 + 3 + 2)
    got = {(r["backend"], r["mode"], r["threads"], r["k"]): float(r["ops_per_s"]) for r in rows}
    for key in got:
        trials = [x["ops_per_s"] for x in run["rows"]
                  if (x["backend"], x["mode"], str(x["threads"]), str(x["k"])) == key]
        assert got[key] == statistics.median(trials)
    assert got[("mlx", "threads", "4", "1")] == 1000.0
    assert {r["n_trials"] for r in rows} == {"5"} and {r["machine"] for r in rows} == {"Test 9000, 4 cores"}


def test_json_summary_has_schema_runs_and_cells(tmp_path):
    runs = P.load_runs([saved(tmp_path, "a.json", named(S.scaling_run("m1"))),
                        saved(tmp_path, "b.json", named(S.scaling_run("m2")))])
    doc = json.loads(P.render(runs, "json"), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert doc["schema"] == P.SUMMARY_SCHEMA
    assert [r["machine"] for r in doc["runs"]] == ["m1", "m2"]
    assert doc["runs"][0]["command"] == "threadbench compare --trials 5"
    assert len(doc["cells"]) == 24 and {c["machine"] for c in doc["cells"]} == {"m1", "m2"}
    off = [c for c in doc["cells"] if c["machine"] == "m2" and c["backend"] == "torch" and c["mode"] == "offline"]
    assert sorted(c["pct_ceiling"] for c in off) == [30.0, 100.0]   # k=1 1500 of the k=8 ceiling 5000


def test_markdown_has_tables_notes_environment_and_command(tmp_path):
    bad = S.result(S.cell("mlx", "mlp", "threads", 8), None, status="crash", cause="killed by SIGSEGV")
    run = S.scaling_run("m1")
    R.add_result(run, bad)
    text = P.render(P.load_runs([saved(tmp_path, "a.json", run)]), "markdown")
    assert "### mlp — throughput (requests/s)" in text and "### mlp — per-cell detail" in text
    assert "| mode | threads | torch cpu float32 ops/s [93.8% CI] |" in text
    assert "CRASH SIGSEGV" in text and "mlx cpu float32, threads ×8: killed by SIGSEGV" in text
    assert text.index("## Findings") < text.index("### mlp — throughput") < text.index("## Legend")
    assert "mlx cpu: CRASH in threads ×8 (killed by SIGSEGV)." in text
    assert f"**warning** (mlx/cpu): {S.MLX_WARNING}" in text
    assert "OMP_NUM_THREADS=4" in text and "(GIL on)" in text
    assert "```\nthreadbench compare --trials 5\n```" in text


def test_report_writes_to_a_file_atomically(tmp_path, capsys):
    path = saved(tmp_path, "a.json", S.scaling_run())
    P.report([path], "csv", tmp_path / "out" / "s.csv")
    assert capsys.readouterr().out == ""
    assert (tmp_path / "out" / "s.csv").read_text().startswith("run_id,machine,")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["s.csv"]
    P.report([path], "table", tmp_path / "t.txt")
    assert "ops/s [93.8% CI]" in (tmp_path / "t.txt").read_text()
    with pytest.raises(BadInput, match="t.txt exists; give another name or add --overwrite"):
        P.report([path], "table", tmp_path / "t.txt")
    P.report([path], "csv", tmp_path / "t.txt", overwrite=True)
    assert (tmp_path / "t.txt").read_text().startswith("run_id,")


def test_unknown_format_is_bad_input():
    with pytest.raises(BadInput, match="--format: unknown format 'html'; valid: table, markdown, csv, json"):
        outputs.check("report", "html")
    with pytest.raises(BadInput, match="--format: unknown format 'png'; valid: table, markdown, csv, json"):
        outputs.check("diff", "png")


def test_every_command_renders_exactly_the_formats_the_registry_gives_it():
    """One registry of output formats (compare.render.outputs): each command's own functions cover its
    formats, no more, no fewer; plot takes the image formats by suffix."""
    from compare.render import diff, plot
    assert tuple(P.RENDERERS) == outputs.names("report") == ("table", "markdown", "csv", "json")
    assert ("table", *diff.RENDERERS) == outputs.names("diff")
    assert outputs.names("plot") == ("png", "svg", "pdf") and all(outputs.OUTPUTS[n].image for n in outputs.names("plot"))
    assert plot.check_output("a/b.SVG").name == "svg" and outputs.image_format("x.csv") is None
    with pytest.raises(BadInput, match=r"end the name with one of: \.pdf, \.png, \.svg"):
        plot.check_output("scaling.jpg")


def test_disjoint_runs_of_one_host_are_one_machine():
    a = S.scaling_run("box")
    b = S.scaling_run("box", workloads=("block",))           # other cells, same host: one machine
    c = S.scaling_run("box", scale=3.0)                        # repeats a's cells: kept apart
    labels = P.machine_labels([a, b, c])
    assert labels[a["run_id"]] == labels[b["run_id"]] != labels[c["run_id"]]
    assert [len(g) for g in P.group_runs([a, b, c])] == [2, 1]
    built = tables.build(P.summarize([a, b]))
    assert [t.title.split(" — ")[0] for t in built] == ["mlp", "mlp", "block", "block"]
    assert ("torch cpu float32", "ops/s [93.8% CI]") in built[2].columns    # no machine prefix: one machine
