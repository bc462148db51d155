"""The JAX plug-in matches the float64 reference on every workload and dtype, through threadbench's
own parity helper, and the registry finds it through the `threadbench.backends` entry point."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import backends
from backends.parity import check_parity, parity_cases

CASES = parity_cases("jax")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_parity(case):
    check_parity(case)


def test_cpu_cases_are_present():
    assert {(c.device, c.dtype) for c in CASES} >= {("cpu", dt) for dt in ("float32", "bfloat16", "float16")}


def test_registry_finds_plugin_through_entry_point():
    assert "jax" not in backends.BUILTIN
    assert backends.registry()["jax"] == "threadbench_jax:JaxBackend"
    backend = backends.load("jax")
    assert type(backend).__module__ == "threadbench_jax" and backend.name == "jax"


def test_importing_the_plugin_does_not_import_jax():
    root = Path(backends.__file__).resolve().parents[1]  # the threadbench core, pip-installed or not
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    code = "import sys, threadbench_jax; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


def test_describe_says_whether_programs_come_from_a_persistent_compilation_cache(tmp_path):
    import jax
    backend = backends.load("jax")
    before = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        assert backend.describe("cpu")["compilation_cache"] is None
        jax.config.update("jax_compilation_cache_dir", str(tmp_path))
        assert backend.describe("cpu")["compilation_cache"] == str(tmp_path)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
