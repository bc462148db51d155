"""Every bad input is one line on stderr and exit code 2, before any work starts; never a traceback.

Most cases run in-process through cli.run_cli (what `main()` runs, minus the SIGTERM handler and
sys.exit); a representative set also runs through `main()` itself (the `threadbench` fixture,
tests/conftest.py), and one through the real entry point in a subprocess."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import cli
from compare import results as R

ROOT = Path(__file__).resolve().parent.parent


def results_files(folder: Path) -> dict[str, Path]:
    """A valid run plus the ways a results file can be bad."""
    good = R.new_run(["threadbench"], {"host": "h"}, {})
    files = {
        "missing": folder / "nope.json",
        "folder": folder / "a-folder",
        "empty": "",
        "corrupt": '{"schema": "threadbench.run/1", "rows": [',
        "binary": b"\x89PNG\r\n\x1a\n\x00\x00",
        "not-an-object": "[1, 2, 3]",
        "no-schema": json.dumps({"rows": []}),
        "other-schema": json.dumps(good | {"schema": "threadbench.run/99"}),
        "bad-rows": json.dumps(good | {"rows": [{"backend": "torch"}]}),
        "good": json.dumps(good),
    }
    (folder / "a-folder").mkdir(exist_ok=True)
    out = {}
    for name, content in files.items():
        if isinstance(content, Path):
            out[name] = content
            continue
        p = folder / f"{name}.json"
        p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
        out[name] = p
    return out


BAD_FILES = ["missing", "folder", "empty", "corrupt", "binary", "not-an-object", "no-schema", "other-schema",
             "bad-rows"]

CASES = [
    # --threads
    (["compare", "--threads", ""], "--threads: expected comma-separated whole numbers"),
    (["compare", "--threads", "0"], "--threads: 0 is out of range; use 1 to 256"),
    (["compare", "--threads", "-4"], "--threads: -4 is out of range"),
    (["compare", "--threads", "two"], "--threads: 'two' is not a whole number"),
    (["compare", "--threads", "1.5"], "--threads: '1.5' is not a whole number"),
    (["compare", "--threads", "2,4,2"], "--threads: '2,4,2' lists a value twice"),
    (["compare", "--threads", "100000"], "--threads: 100000 is out of range; use 1 to 256"),
    (["compare", "--threads", "1,,2"], "--threads: expected comma-separated whole numbers"),
    (["compare", "--offline-k", "0"], "--offline-k: 0 is out of range"),
    # names: list the valid ones and suggest a close match
    (["compare", "--backends", "torhc"], "--backends: unknown backend 'torhc' (did you mean 'torch'?); valid: torch, mlx, numpy"),
    (["compare", "--backends", ""], "--backends: give at least one backend; valid: torch"),
    (["compare", "--backends", "numpy,numpy"], "--backends: backend listed twice"),
    (["compare", "--workloads", "mlpp"], "--workloads: unknown workload 'mlpp' (did you mean 'mlp'?); valid: mlp, block, transformer"),
    (["compare", "--modes", "thread"], "--modes: unknown mode 'thread' (did you mean 'threads'?); valid: sequential, threads"),
    (["compare", "--device", "cdua"], "--device: unknown device 'cdua' (did you mean 'cuda'?); valid: auto, cpu, cuda, gpu, mps"),
    (["compare", "--device", "cpu,gpu"], "--device: give one device, not 2"),
    (["compare", "--dtype", "float33"], "--dtype: unknown dtype 'float33' (did you mean 'float32'?); valid: float32, bfloat16"),
    (["compare", "--fp32-precision", "hihg"], "--fp32-precision: unknown precision 'hihg' (did you mean 'high'?)"),
    (["compare", "--size", "layerz=2"], "--size: unknown knob 'layerz' (did you mean 'layers'?)"),
    # durations and limits
    (["compare", "--duration", "0"], "--duration: must be a finite number greater than 0, got 0.0"),
    (["compare", "--duration", "-1"], "--duration: must be a finite number greater than 0, got -1.0"),
    (["compare", "--duration", "nan"], "--duration: must be a finite number greater than 0, got nan"),
    (["compare", "--duration", "inf"], "--duration: must be a finite number greater than 0, got inf"),
    (["compare", "--cell-timeout", "0"], "--cell-timeout: must be a finite number greater than 0"),
    (["compare", "--cell-timeout", "-5"], "--cell-timeout: must be a finite number greater than 0"),
    (["compare", "--mem-limit-mb", "0"], "--mem-limit-mb: must be a finite number greater than 0"),
    (["compare", "--trials", "0"], "--trials: must be a finite number greater than 0, got 0"),
    (["compare", "--warmup", "-1"], "--warmup, --max-batch and --max-wait-ms must not be negative"),
    (["compare", "--max-wait-ms", "-1"], "--warmup, --max-batch and --max-wait-ms must not be negative"),
    # click's own usage errors
    (["compare", "--duration", "abc"], "Invalid value for '--duration'"),
    (["compare", "--trials", "x"], "Invalid value for '--trials'"),
    (["compare", "--bogus"], "No such option: --bogus"),
    (["compare", "--threads"], "Option '--threads' requires an argument"),
    (["compare", "surplus"], "Got unexpected extra argument"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["report"], "Missing argument"),
    (["diff", "only-one.json"], "Missing argument"),
    (["plot"], "Missing argument"),
    (["--nope", "backends"], "No such option: --nope"),
]


def assert_one_line_error(code, err, expected):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("threadbench: error: "), err
    assert expected in lines[0], err


def call(capsys, args):
    code = cli.run_cli([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("args,expected", CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_option_is_one_line_and_exit_2(capsys, args, expected):
    assert_one_line_error(*call(capsys, args), expected)


def test_unwritable_out(capsys, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, expected in [
        (tmp_path, f"--out: {tmp_path} is a folder; give a file name"),
        (a_file / "run.json", f"--out: {a_file} is a file, so {a_file / 'run.json'} cannot be created"),
        (a_file / "deeper" / "run.json", f"--out: {a_file} is a file"),
        (Path("/sys/threadbench-run.json"), "--out: cannot write in /sys"),
    ]:
        assert_one_line_error(*call(capsys, ["compare", "-b", "numpy", "--out", out]), expected)


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_results_file_for_report_diff_plot_and_resume(capsys, tmp_path, kind):
    files = results_files(tmp_path)
    bad, good = files[kind], files["good"]
    for args in (["report", bad], ["report", good, bad], ["diff", bad, good], ["diff", good, bad],
                 ["plot", bad, "--out", tmp_path / "p.png"], ["compare", "--resume", bad]):
        code, err = call(capsys, args)
        assert_one_line_error(code, err, str(bad))


def test_results_load_names_each_problem(tmp_path):
    files = results_files(tmp_path)
    expected = {"missing": "no such results file", "folder": "is a folder", "empty": "not a readable",
                "corrupt": "not a readable", "binary": "not a readable", "not-an-object": "no schema field",
                "no-schema": "no schema field", "other-schema": "schema 'threadbench.run/99' is not supported",
                "bad-rows": "row 0 does not have the fields"}
    for kind, fragment in expected.items():
        with pytest.raises(R.ResultsError, match=fragment):
            R.load(files[kind])
    assert R.load(files["good"])["schema"] == R.SCHEMA


def test_resume_refuses_matrix_options(capsys, tmp_path):
    good = results_files(tmp_path)["good"]
    assert_one_line_error(*call(capsys, ["compare", "--resume", good, "--threads", "2", "-b", "numpy"]),
                          "--resume runs the cells planned in the file; drop --threads, --backends")


def test_resume_refuses_a_run_of_another_machine(capsys, tmp_path):
    f = tmp_path / "elsewhere.json"
    run = R.new_run(["threadbench"], {"host": "some-other-machine"}, {})
    run["plan"] = []
    R.save(run, f)
    assert_one_line_error(*call(capsys, ["compare", "--resume", f]),
                          "was measured on 'some-other-machine'")


# -- through the entry point ----------------------------------------------------------------------------
def run(*args):
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


@pytest.mark.parametrize("args,expected", [
    (["compare", "--duration", "abc"], "Invalid value for '--duration'"),
    (["compare", "--threads", "0"], "--threads: 0 is out of range"),
    (["compare", "--workloads", "mpl"], "did you mean 'mlp'?"),
    (["compare", "--out", "/sys/x.json", "-b", "numpy"], "--out: cannot write in /sys"),
    (["report", "/nonexistent/run.json"], "/nonexistent/run.json: no such results file"),
])
def test_entry_point_gives_one_line_and_exit_2(args, expected, threadbench):
    out = threadbench(*args)
    assert_one_line_error(out.returncode, out.stderr, expected)
    assert out.stdout == ""


@pytest.mark.slow
def test_the_real_entry_point_exits_2_with_one_line():
    """`python cli.py` in a fresh interpreter: main()'s exit code and one stderr line reach the shell."""
    out = run("compare", "--threads", "0")
    assert_one_line_error(out.returncode, out.stderr, "--threads: 0 is out of range")
    assert out.stdout == ""


def test_debug_shows_the_traceback(threadbench):
    out = threadbench("--debug", "compare", "--threads", "0")
    assert out.returncode != 0 and "Traceback" in out.stderr and "BadInput: --threads: 0 is out of range" in out.stderr


def test_debug_shows_clicks_full_usage_error(threadbench):
    out = threadbench("--debug", "compare", "--trials", "x")
    assert out.returncode == 2
    assert "Usage: threadbench compare [OPTIONS]" in out.stderr and "Invalid value for '--trials'" in out.stderr
