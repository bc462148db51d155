"""`new-backend` end to end: the package it writes pip-installs (into a target folder on PYTHONPATH, no
network, no venv), is listed by `backends`, passes its own parity test as written, and runs through
`compare`. docs/writing-a-backend.md shows that very backend, so CI also proves the documentation's example.
threadbench's own commands run in this process (the `threadbench` fixture, tests/conftest.py); pip and the
package's own tests run as a user runs them.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backends import scaffold

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "writing-a-backend.md"


def _has_setuptools() -> bool:
    try:
        import setuptools
        return int(setuptools.__version__.split(".")[0]) >= 68
    except ImportError:
        return False


@pytest.fixture(scope="module")
def installed(tmp_path_factory, threadbench, starts_processes):
    """`new-backend demo-np DIR`, then `pip install --no-deps --target SITE DIR`."""
    tmp = tmp_path_factory.mktemp("scaffold")
    out = threadbench("new-backend", "demo-np", str(tmp / "pkg"))
    assert out.returncode == 0, out.stderr
    isolation = ["--no-build-isolation"] if _has_setuptools() else []  # offline when the build tool is here
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation,
                          "--target", str(tmp / "site"), str(tmp / "pkg")], capture_output=True, text=True,
                         timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp / "site"), str(ROOT)]))
    return tmp, env


def test_the_package_has_an_entry_point_backend_and_test(installed):
    tmp, _ = installed
    pkg = tmp / "pkg"
    assert 'demo-np = "threadbench_demo_np:DemoNpBackend"' in (pkg / "pyproject.toml").read_text()
    source = (pkg / "threadbench_demo_np" / "__init__.py").read_text()
    methods = re.findall(r"^    def (\w+)\(", source, flags=re.M)
    assert {"device_status", "configure", "build", "to_device", "forward", "synchronize", "to_numpy",
            "concat", "split", "describe"} <= set(methods)
    assert (pkg / "tests" / "test_parity.py").exists()


def test_installed_package_is_listed_by_backends(installed, threadbench):
    _, env = installed
    out = threadbench("backends", env=env)
    assert out.returncode == 0, out.stderr
    assert "demo-np  dtypes: float32  default device: cpu  (plug-in threadbench-demo-np 0.1.0)" in out.stdout


def test_installed_package_passes_its_own_parity_test(installed):
    tmp, env = installed
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                         capture_output=True, text=True, cwd=tmp / "pkg", env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    assert re.search(r"\b11 passed\b", out.stdout) and "skipped" not in out.stdout, out.stdout[-1000:]


def test_installed_package_runs_through_compare(installed, tmp_path, threadbench):
    _, env = installed
    out_file = tmp_path / "run.json"
    out = threadbench("compare", "--backends", "demo-np", "--workloads", "mlp", "--modes", "sequential,threads",
                      "--threads", "2", "--duration", "0.05", "--trials", "2", "--warmup", "1", "--repeats", "1",
                      "--no-peak-probe", "-q",
                      "--out", str(out_file), env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out_file.read_text())["rows"]
    mlp = [r for r in rows if r["workload"] == "mlp"]
    assert {(r["mode"], r["threads"]) for r in mlp} == {("sequential", 1), ("threads", 2)}
    assert all(r["status"] == "ok" and r["checked"] > 0 and r["errors"] == 0 for r in mlp)


def test_the_documented_example_is_the_generated_backend():
    text = DOC.read_text()
    block = text.split("<!-- example: threadbench new-backend mynp -->", 1)[1].split("```python\n", 1)[1]
    block = block.split("\n```", 1)[0] + "\n"
    assert block == scaffold.render("mynp")["threadbench_mynp/__init__.py"]


@pytest.mark.parametrize("args,message", [
    (["Bad"], "is not a usable name"),
    (["torch"], "a backend named 'torch' already exists"),
    (["numpy", "x"], "a backend named 'numpy' already exists"),
])
def test_new_backend_refuses_bad_names(args, message, threadbench):
    out = threadbench("new-backend", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_new_backend_refuses_a_folder_in_use(tmp_path, threadbench):
    (tmp_path / "keep.txt").write_text("mine")
    out = threadbench("new-backend", "fresh", str(tmp_path))
    assert out.returncode == 2 and "already exists and is not an empty folder" in out.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
