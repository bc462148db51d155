"""The Python interpreters a sweep's cells run under (`compare --python PATH[,PATH]`): what each one is
(version, implementation, a free-threaded build or not, whether MLPerf LoadGen imports there) and what each has of every backend, asked once per
interpreter and backend in a subprocess of that interpreter (it imports the backend's framework there, so a
framework missing under it is an unavailable cell with the reason, as a missing device is).

Run as `python -m compare.measure.interpreters [BACKEND]` it is that subprocess: it prints one JSON line
about the interpreter running it (and, with a backend, that backend's device status and whether the GIL was
still off after its framework was imported). Standard library only on that side: it runs under interpreters
that have nothing else (backends' registry imports no framework). Not here: measuring, or deciding which cells to plan (compare.measure.plan)."""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path

import backends

from ..cells import DEFAULT_PYTHON, GIL_SETTINGS
from ..options import LOADGEN_MODULE, BadInput

ROOT = Path(__file__).resolve().parents[2]
PROBE_TIMEOUT_S = 300.0   # an interpreter's import of a framework on a busy 2-core box (torch: tens of seconds)
GIL_WARNING = re.compile(r"enabled to load module '([^']+)'")   # CPython's RuntimeWarning when a module re-enables it


def gil_enabled() -> bool:
    """Whether the GIL is enabled in this process now (an interpreter before 3.13 always has it)."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return probe() if probe is not None else True


def reenabled_by(message: str) -> str | None:
    """The module a CPython "GIL has been enabled to load module 'X'" warning names, or None."""
    found = GIL_WARNING.search(message)
    return found.group(1) if found else None


class GilWatch:
    """Notes the modules whose import re-enabled the GIL (CPython says so only in a RuntimeWarning, which
    still reaches the log as before). `install` once per process, before any framework is imported."""

    def __init__(self) -> None:
        self.modules: list[str] = []

    def install(self) -> "GilWatch":
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if (module := reenabled_by(str(message))) is not None and module not in self.modules:
                self.modules.append(module)
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        return self


def this_interpreter() -> dict:
    """What the interpreter running this is: executable, version, implementation, free-threaded build."""
    return {"executable": sys.executable, "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")), "gil_enabled": gil_enabled(),
            "loadgen": importlib.util.find_spec(LOADGEN_MODULE) is not None}


@dataclass(frozen=True)
class Interpreter:
    """One interpreter of a sweep: its path ("" for the default, the one running threadbench), and what it is."""
    path: str
    version: str
    implementation: str
    free_threaded: bool
    loadgen: bool = False   # MLPerf LoadGen imports here (the loadgen extra: no free-threaded build has it)

    @property
    def label(self) -> str:
        """"" for the default; else e.g. "CPython 3.13.5t" (t: a free-threaded build, as its executable says)."""
        return f"{self.implementation} {self.version}{'t' if self.free_threaded else ''}" if self.path else ""

    def gil_settings(self) -> list[str]:
        """The GIL settings its cells run with: both ways for a free-threaded build, else its own ("")."""
        return list(GIL_SETTINGS) if self.free_threaded else [""]

    def name(self) -> str:
        return self.label or DEFAULT_PYTHON


def default() -> Interpreter:
    me = this_interpreter()
    return Interpreter("", me["version"], me["implementation"], me["free_threaded"], me["loadgen"])


def _run(path: str, args: list[str], gil: str = "") -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("PYTHON_GIL", None)
    if GIL_SETTINGS.get(gil):
        env["PYTHON_GIL"] = GIL_SETTINGS[gil]
    done = subprocess.run([path, "-m", "compare.measure.interpreters", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=PROBE_TIMEOUT_S)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(tail[:300])
    return json.loads(lines[-1])


def probe(path: str) -> Interpreter:
    """The interpreter at `path`, asked what it is. A path that is not a Python that can run threadbench's
    worker: BadInput (one line)."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BadInput(f"--python: {path!r} is not an executable file; give the path of a Python interpreter")
    try:
        me = _run(path, [])
    except (OSError, RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
        raise BadInput(f"--python: {path} cannot run threadbench's worker ({e})") from None
    return Interpreter(os.path.abspath(path), me["version"], me["implementation"], me["free_threaded"],
                       me.get("loadgen", False))


def backend_status(interpreter: Interpreter, backend: str, devices: tuple[str, ...]) -> dict[str, str | None]:
    """The backend's device status under the interpreter (None: usable), asked in a subprocess of it; where
    it cannot be asked (the backend does not load there), every device says why."""
    try:
        found = _run(interpreter.path, [backend])
    except (OSError, RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
        found = {"error": str(e)}
    if "error" in found:
        why = f"{backend} is not usable under {interpreter.name()} ({found['error']})"
        return {d: why for d in devices}
    where = f" under {interpreter.name()}"
    return {d: (why + where if why else None) for d, why in found["status"].items()}


def main(argv: list[str]) -> int:
    """The subprocess: this interpreter, and with a backend's name its device status and the GIL after its
    import (and the modules that re-enabled it)."""
    out = this_interpreter()
    if argv:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", RuntimeWarning)
            try:
                out["status"] = backends.load(argv[0]).device_status()
            except Exception as e:  # noqa: BLE001 - the reason this backend is unavailable here
                out["error"] = f"{type(e).__name__}: {e}"
        modules = [m for w in seen if (m := reenabled_by(str(w.message)))]
        out.update(gil_enabled=gil_enabled(), gil_reenabled_by=modules)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
