"""Foundation behaviour: registry, lazy imports, workloads vs a hand count, and a tiny end-to-end compare.

The command line runs in this process (the `threadbench` fixture, tests/conftest.py), except where what a
fresh interpreter imports is the point."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import workloads

ROOT = Path(__file__).resolve().parent.parent


def run(args, env=None, cwd=ROOT, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def make_plugin(folder: Path, name: str, target: str, module_src: str) -> dict:
    """An installed-looking distribution (dist-info with entry_points.txt) on PYTHONPATH, no pip."""
    module = target.split(":")[0]
    (folder / f"{module}.py").write_text(textwrap.dedent(module_src))
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[threadbench.backends]\n{name} = {target}\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]))


ECHO_BACKEND = """
    from backends.numpy_backend import NumpyBackend

    class EchoBackend(NumpyBackend):
        name = "echo"
"""


def test_registry_finds_a_backend_that_exists_only_as_an_entry_point(tmp_path, threadbench):
    env = make_plugin(tmp_path, "echo", "echo_plugin:EchoBackend", ECHO_BACKEND)
    listing = threadbench("backends", env=env)  # backends.load('echo'): its module, class and devices
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    echo = lines.index("echo  dtypes: float64  default device: cpu  (plug-in echo_plugin 0.1)")
    assert lines[echo + 1].split() == ["cpu", "available"]


def test_plugin_that_shadows_a_builtin_is_refused(tmp_path, threadbench):  # alone: tests/test_plugins.py has the rest
    env = make_plugin(tmp_path, "torch", "evil_plugin:EchoBackend", ECHO_BACKEND)
    out = threadbench("backends", env=env)
    assert out.returncode == 0 and "torch  dtypes:" in out.stdout
    assert "would shadow the built-in" in out.stdout and "Traceback" not in out.stderr


@pytest.mark.slow
def test_help_imports_no_framework():
    out = run(["-X", "importtime", "cli.py", "--help"])
    assert out.returncode == 0 and "compare" in out.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "typer" in imported  # the probe itself works
    assert not imported & {"torch", "mlx", "mlx.core", "jax", "polars"}


def test_backends_command_explains_every_unavailable_device(threadbench):
    out = threadbench("backends")
    assert out.returncode == 0
    lines = [l for l in out.stdout.splitlines() if "unavailable" in l]
    assert lines, out.stdout
    assert all("unavailable: " in l and len(l.split("unavailable: ", 1)[1]) > 10 for l in lines)
    if sys.platform == "linux":
        assert "mps   unavailable: mps: needs macOS on Apple silicon" in out.stdout


@pytest.mark.parametrize("name,hand", [
    ("mlp", 2 * 4 * (256 * 512 + 512 * 128)),
    ("block", 2 * 4 * (256 * 1024 + 1024 * 256)),
    # per layer: q,k,v,out projections 4*d*d and FF 2*d*f per token (4*128 tokens), QK^T and AV 2*s*s*d per sequence
    ("transformer", 6 * (2 * 512 * (4 * 512 * 512 + 2 * 512 * 2048) + 2 * 2 * 4 * 128 * 128 * 512)),
])
def test_flops_match_a_hand_count(name, hand):
    assert workloads.make(name).flops() == hand


def test_workloads_have_the_reports_shapes():
    assert workloads.make("mlp").input_shape() == (4, 256)
    assert workloads.make("block").input_shape() == (4, 256)
    t = workloads.make("transformer")
    assert (t.input_shape(), t.layers, t.heads, t.hidden) == ((4, 128, 512), 6, 8, 2048)
    assert workloads.make("transformer", layers=2, seq=8).input_shape() == (4, 8, 512)


def test_weights_are_seeded_and_framework_free():
    a, b = workloads.make("block").init_weights(3), workloads.make("block").init_weights(3)
    assert all((a[k] == b[k]).all() for k in a)
    assert not all((a[k] == workloads.make("block").init_weights(4)[k]).all() for k in a)


@pytest.mark.slow
def test_tiny_compare_shows_both_backends_side_by_side(tmp_path, threadbench):
    """Machine-independent: the workload cells are measured (one intra-op thread, so that torch's OpenMP
    pool does not spin against other load), and the matmul peak probe, seconds per op with MLX's Linux CPU
    build, is measured or reported too slow with its numbers. No assertion on a speed."""
    out_file = tmp_path / "run.json"
    out = threadbench("compare", "--backends", "torch,mlx", "--workloads", "mlp", "--threads", "1,2",
                      "--trials", "2", "--duration", "0.1", "--warmup", "1", "--repeats", "1", "--intra-op-threads", "1",
                      "--out", str(out_file), env={**os.environ, "COLUMNS": "220"})  # wide: side by side, not stacked
    assert out.returncode == 0, out.stderr[-2000:]
    header = next(l for l in out.stdout.splitlines() if "ops/s" in l)
    assert "mlx ÷ torch" in out.stdout
    run_doc = json.loads(out_file.read_text())
    cells = {(r["backend"], r["mode"], r["threads"]) for r in run_doc["rows"] if r["workload"] == "mlp"}
    assert cells == {(b, m, t) for b in ("torch", "mlx") for m, t in (("sequential", 1), ("threads", 1), ("threads", 2))}
    for r in run_doc["rows"]:
        if r["workload"] == "mlp":
            assert r["status"] == "ok" and r["errors"] == 0 and r["checked"] > 0, r
        else:  # the peak probe
            assert r["status"] == "ok" or (r["status"] in ("too_slow", "skipped") and "longest window" in r["cause"]), r
    assert header.count("ops/s") == 2


def test_mlx_says_whether_it_captures_cuda_graphs(monkeypatch):
    """Launch strategy differs between frameworks on small GPU cells: the record must say which one ran."""
    from backends.mlx_backend import _execution
    monkeypatch.delenv("MLX_USE_CUDA_GRAPHS", raising=False)
    assert "captured as CUDA graphs" in _execution("gpu", "Linux")
    monkeypatch.setenv("MLX_USE_CUDA_GRAPHS", "0")
    assert "no CUDA graphs" in _execution("gpu", "Linux")
    assert "CUDA" not in _execution("cpu", "Linux") and "CUDA" not in _execution("gpu", "Darwin")
