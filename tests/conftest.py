"""The suite's two layers, and running the command line in this process.

`pytest -m "not slow"` is the fast layer: statistics, the window schedule, checks, the claim rule, the
simulated clock, rendering, results files, the measurement path through tiny real models, and the command
line's checks in-process, in well under a minute. The whole suite adds the slow layer. The marker (registered
here; an unknown marker is a warning, and an error with --strict-markers):

  slow  the test starts processes, waits on a real clock, or runs every framework's full parity suite by
        design: a cell's worker process (`compare` end to end, compare.measure.runner.run_cell), the processes
        mode's or a server pool's processes, `cli.py`, pip or pytest in a subprocess (interrupts, what a fresh
        interpreter imports, the real entry point), a stress loop, real-clock server steps, or the parity
        cases of backends.parity (each backend's forward, threads and batched checks on every workload and
        dtype, the plug-ins' included).

A test gets it from an explicit @pytest.mark.slow, or at collection: when it uses a fixture that starts
processes (such a fixture requests `starts_processes`), when its own code uses the subprocess module its
file imports, or when it is parametrized with a parity case. Here in tests/, a test outside the slow layer
that starts a Python process (subprocess or multiprocessing) fails, naming the command: the fast layer
cannot grow slow unnoticed.

`threadbench` runs `python cli.py ARGS` in this process (cli.main, minus the process), for the command
line's behaviour wherever a subprocess is not the point."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import multiprocessing.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import backends
import cli
from backends.parity import ParityCase

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts processes, waits on a real clock or runs the parity suite "
                                       "(tests/conftest.py says which); `pytest -m 'not slow'` leaves it out")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if _slow_by_what_it_does(item):
            item.add_marker(pytest.mark.slow)


def _slow_by_what_it_does(item) -> bool:
    code = getattr(getattr(item, "function", None), "__code__", None)
    params = getattr(getattr(item, "callspec", None), "params", {})
    # the module-level subprocess; a test that imports it itself does so to patch it
    runs_subprocess = code is not None and "subprocess" in code.co_names and "subprocess" not in code.co_varnames
    return ("starts_processes" in item.fixturenames or runs_subprocess
            or any(isinstance(value, ParityCase) for value in params.values()))


@pytest.fixture(scope="session")
def starts_processes():
    """Requested by a fixture that starts processes (a sweep, an install): its tests are slow."""


def _is_python(program) -> bool:
    name = Path(os.fsdecode(program)).name
    return os.fsdecode(program) == sys.executable or name.startswith(("python", "pip", "pytest", "threadbench"))


@pytest.fixture(autouse=True)
def _fast_tests_start_no_python(request, monkeypatch):
    """Outside the slow layer, starting a Python process (subprocess or multiprocessing) fails the test."""
    if request.node.get_closest_marker("slow") is not None:
        return

    def refuse(what: str):
        pytest.fail(f"{request.node.nodeid} is not marked slow but started {what}; mark it slow "
                    "(tests/conftest.py) or run the command in-process (the `threadbench` fixture)", pytrace=False)

    class Guarded(subprocess.Popen):
        def __init__(self, args, *rest, **kwargs):
            argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
            if argv and _is_python(kwargs.get("executable") or argv[0]):
                refuse(" ".join(map(os.fsdecode, argv)))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Guarded)
    monkeypatch.setattr(multiprocessing.util, "spawnv_passfds",
                        lambda path, args, passfds: refuse(f"a multiprocessing process ({' '.join(args)})"))


def run_cli_in_process(*args, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python cli.py ARGS` in this process: cli.main() with sys.argv, os.environ (env replaces it, as a
    subprocess's env= would) and the working folder set, stdout and stderr captured, sys.exit's code as the
    returncode. env's PYTHONPATH also goes on sys.path, so plug-ins there are found here as in the cells'
    worker processes (which inherit it); the modules imported from it are forgotten afterwards."""
    argv = ["cli.py", *map(str, args)]
    extra = [p for p in (env or {}).get("PYTHONPATH", "").split(os.pathsep)  # the plug-ins' folders, not ours
             if p and p not in sys.path and not ROOT.is_relative_to(Path(p).resolve())]
    saved_env, handlers = dict(os.environ), {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        mp.chdir(cwd or ROOT)
        for path in reversed(extra):
            mp.syspath_prepend(path)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        backends.registrations.cache_clear()  # entry points are read again, from this sys.path
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                cli.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)  # also drops THREADBENCH_DEBUG, which --debug sets
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            for name, module in list(sys.modules.items()):
                if any(str(getattr(module, "__file__", None) or "").startswith(os.path.join(p, "")) for p in extra):
                    del sys.modules[name]
            backends.registrations.cache_clear()
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def threadbench():
    """run_cli_in_process: `threadbench(*args, env=None, cwd=None)` -> a CompletedProcess."""
    return run_cli_in_process


@pytest.fixture(scope="session")
def repro():
    """benchmarks/reproducibility.py as a module (a script, not a package): its report and its simulations."""
    spec = importlib.util.spec_from_file_location("reproducibility", ROOT / "benchmarks" / "reproducibility.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reproducibility"] = mod   # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod
