"""The plug-in contract: bad plug-ins are refused alone, --debug reaches the plug-in's own code, backend
options reach configure(), and the parity suite catches what compare relies on (or skips, saying why).

Plug-ins here are installed-looking distributions (a dist-info folder with entry_points.txt) on PYTHONPATH,
as tests/fault_plugin is; no pip. new-backend's package is pip-installed in tests/test_plugins_scaffold.py.
The command line runs in this process (the `threadbench` fixture, tests/conftest.py); the cells it runs are
processes, which find the plug-ins through the same PYTHONPATH.
"""
import json
import os
import textwrap
from pathlib import Path

import pytest

import backends
from backends.base import BackendOption, apply_configure

ROOT = Path(__file__).resolve().parent.parent
FAULTS = Path(__file__).resolve().parent / "fault_plugin"
FAST = ["--dtype", "float64", "--workloads", "mlp", "--modes", "sequential", "--duration", "0.05",
        "--trials", "2", "--warmup", "1", "--repeats", "1", "--no-peak-probe", "-q"]

GOOD = """
    from backends.numpy_backend import NumpyBackend

    class GoodBackend(NumpyBackend):
        name = "good"
"""


def add_dist(folder: Path, dist: str, entries: dict[str, str], module_src: str | None = None) -> None:
    """One distribution `dist` registering `entries` (name -> target), its module written from module_src."""
    if module_src is not None:
        (folder / f"{dist}.py").write_text(textwrap.dedent(module_src))
    info = folder / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{n} = {t}\n" for n, t in entries.items())
    (info / "entry_points.txt").write_text(f"[threadbench.backends]\n{lines}")


def env_with(*folders: Path) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, folders), str(ROOT)]))


@pytest.fixture()
def in_process_plugins(tmp_path, monkeypatch):
    """Register dist-info plug-ins in this process (the registry re-reads entry points)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    backends.registrations.cache_clear()
    yield tmp_path
    backends.registrations.cache_clear()


# -- (1) a clashing, duplicate or malformed plug-in is refused alone ---------------------------------------
@pytest.fixture(scope="module")
def bad_plugins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    add_dist(folder, "shadow", {"numpy": "shadow:GoodBackend"}, GOOD)
    add_dist(folder, "twin_a", {"twin": "twin_a:GoodBackend"}, GOOD)
    add_dist(folder, "twin_b", {"twin": "twin_b:GoodBackend"}, GOOD)
    add_dist(folder, "malformed", {"Bad.Name": "good_mod:GoodBackend", "nocolon": "just_a_module"})
    add_dist(folder, "misnamed", {"other": "misnamed:GoodBackend"}, GOOD)  # class says "good"
    add_dist(folder, "fine", {"good": "fine:GoodBackend"}, GOOD)
    return env_with(folder)


def test_backends_lists_every_refusal_and_every_healthy_backend(bad_plugins, threadbench):
    out = threadbench("backends", env=bad_plugins)
    assert out.returncode == 0, out.stderr
    assert "numpy  dtypes: float64" in out.stdout and "torch  dtypes:" in out.stdout
    assert "good  dtypes: float64  default device: cpu  (plug-in fine 0.1)" in out.stdout
    refused = [l for l in out.stdout.splitlines() if l.startswith("refused: ")]
    assert any("numpy = shadow:GoodBackend" in l and "would shadow the built-in" in l for l in refused), refused
    assert sum("registered by two plug-ins" in l for l in refused) == 2, refused
    assert any("malformed name 'Bad.Name'" in l for l in refused) and any("malformed target" in l for l in refused)
    assert "other: cannot load:" in out.stdout and "name and the entry-point name must be equal" in out.stdout


@pytest.mark.parametrize("name,reason", [
    ("twin", "registered by two plug-ins"),
    ("nocolon", "malformed target 'just_a_module'"),
    ("other", "its class says its name is 'good'"),
])
def test_compare_on_a_refused_plugin_exits_2_with_the_reason(bad_plugins, name, reason, threadbench):
    out = threadbench("compare", "--backends", f"numpy,{name}", *FAST, env=bad_plugins)
    errors = [l for l in out.stderr.splitlines() if l.startswith("threadbench: error: ")]
    assert out.returncode == 2 and len(errors) == 1 and reason in errors[0], out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_shadowing_plugin_leaves_the_builtin_working(bad_plugins, tmp_path, threadbench):
    out = threadbench("compare", "--backends", "numpy", *FAST, "--out", str(tmp_path / "run.json"), env=bad_plugins)
    assert out.returncode == 0, out.stderr
    assert "would shadow the built-in" in out.stderr  # said once, as a warning
    rows = [r for r in json.loads((tmp_path / "run.json").read_text())["rows"] if r["workload"] == "mlp"]
    assert rows and all(r["backend"] == "numpy" and r["status"] == "ok" for r in rows)


# -- (4) --debug shows the plug-in's own file and line ---------------------------------------------------
def test_debug_shows_where_a_plugin_failed_to_import(tmp_path, threadbench):
    add_dist(tmp_path, "broken", {"broken": "broken:Nothing"}, "import math\nraise RuntimeError('boom at import')\n")
    env = env_with(tmp_path)
    plain = threadbench("compare", "--backends", "broken", *FAST, env=env)
    assert plain.returncode == 2 and "boom at import" in plain.stderr and "Traceback" not in plain.stderr
    debug = threadbench("--debug", "compare", "--backends", "broken", *FAST, env=env)
    assert debug.returncode == 2, debug.stderr
    assert f'{tmp_path / "broken.py"}", line 2' in debug.stderr, debug.stderr
    listing = threadbench("--debug", "backends", env=env)
    assert listing.returncode == 0 and f'{tmp_path / "broken.py"}", line 2' in listing.stderr


@pytest.mark.slow
def test_debug_shows_where_a_plugin_failed_inside_a_cell(tmp_path, threadbench):
    args = ["compare", "--backends", "fault-raise", *FAST, "--out", str(tmp_path / "run.json")]
    plain = threadbench(*args, env=env_with(FAULTS))
    assert plain.returncode == 1 and "threadbench_faults.py" not in plain.stderr
    debug = threadbench("--debug", *args, "--overwrite", env=env_with(FAULTS))  # the same --out again
    assert debug.returncode == 1
    assert f'{FAULTS / "threadbench_faults.py"}", line' in debug.stderr, debug.stderr[-2000:]


# -- configure(options=) and --backend-option ------------------------------------------------------------
class _Recorder:
    def __init__(self):
        self.calls = []


def test_configure_gets_options_only_when_there_are_some():
    class Old(_Recorder):  # a plug-in written before options existed
        def configure(self, *, fp32_precision="highest", intra_op_threads=None):
            self.calls.append((fp32_precision, intra_op_threads))

    class New(_Recorder):
        def configure(self, *, fp32_precision="highest", intra_op_threads=None, options=None):
            self.calls.append((fp32_precision, intra_op_threads, options))

    old, new = Old(), New()
    apply_configure(old, "native", 2, {})
    apply_configure(new, "high", None, {"execution": "parallel"})
    assert old.calls == [("native", 2)] and new.calls == [("high", None, {"execution": "parallel"})]


OPTION_PLUGIN = """
    from backends.base import BackendOption
    from backends.numpy_backend import NumpyBackend

    class OptBackend(NumpyBackend):
        name = "opt"
        options = {"mode": BackendOption("a test switch", choices=("a", "b"), default="a"),
                   "depth": BackendOption("a number")}

        def configure(self, *, fp32_precision="highest", intra_op_threads=None, options=None):
            self.seen = dict(options or {})

        def describe(self, device):
            return {**super().describe(device), "warnings": [f"configured with {self.seen}"]}
"""


@pytest.mark.slow
def test_backend_options_reach_only_their_backend(tmp_path, threadbench):
    add_dist(tmp_path, "optplug", {"opt": "optplug:OptBackend"}, OPTION_PLUGIN)
    out_file = tmp_path / "run.json"
    out = threadbench("compare", "--backends", "numpy,opt", *FAST, "-B", "opt.mode=b,opt.depth=3",
                      "--out", str(out_file), env=env_with(tmp_path))
    assert out.returncode == 0, out.stderr
    run = json.loads(out_file.read_text())
    by_backend = {c["backend"]: c["backend_options"] for c in run["cells"]}
    assert by_backend == {"numpy": [], "opt": [["depth", "3"], ["mode", "b"]]}
    assert run["backend_env"]["opt/cpu"]["warnings"] == ["configured with {'depth': '3', 'mode': 'b'}"]


@pytest.mark.parametrize("option,message", [
    ("opt.mode=c", "opt.mode='c': expected one of a, b"),
    ("opt.depth=-1", "expected a whole number"),
    ("opt.colour=red", "opt has no option 'colour'; its options: opt.mode, opt.depth"),
    ("numpy.x=1", "numpy has no option 'x'; its options: none"),
    ("torch.x=1", "backend 'torch' is not in --backends"),
    ("mode=b", "expected NAME.OPTION=VALUE"),
])
def test_bad_backend_options_are_one_line_errors(tmp_path, option, message, threadbench):
    add_dist(tmp_path, "optplug", {"opt": "optplug:OptBackend"}, OPTION_PLUGIN)
    out = threadbench("compare", "--backends", "numpy,opt", *FAST, "--backend-option", option, env=env_with(tmp_path))
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_backend_option_checks_values():
    spec = BackendOption("x", choices=("on", "off"))
    assert spec.check("on") is None and "expected one of on, off" in spec.check("maybe")
    assert BackendOption("n").check("4") is None and BackendOption("n").check("four")


# -- (5) the parity suite catches what compare relies on, or skips saying why ------------------------------
BROKEN_IN_WAYS = """
    import threading
    from backends.base import Unsupported
    from backends.numpy_backend import NumpyBackend

    class WrongOffMain(NumpyBackend):   # right on the main thread, wrong in any other
        name = "wrong-off-main"
        def forward(self, model, x):
            y = model(x)
            return y if threading.current_thread() is threading.main_thread() else y * 1.5

    class SplitReversed(NumpyBackend):  # hands each client another request's rows
        name = "split-reversed"
        def split(self, y, sizes):
            return super().split(y, sizes)[::-1]

    class NoProbe(NumpyBackend):        # declines the matmul probe, as the contract allows
        name = "no-probe"
        def build(self, workload, params, device, dtype):
            if workload.name == "matmul":
                raise Unsupported("no matmul here")
            return super().build(workload, params, device, dtype)

    class NoDevice(NumpyBackend):       # a GPU-only backend on a machine without one
        name = "no-device"
        devices = ("cuda",)
        def device_status(self):
            return {"cuda": "cuda: no GPU on this test machine"}
"""


@pytest.fixture()
def parity_plugins(in_process_plugins):
    add_dist(in_process_plugins, "broken_ways", {
        "wrong-off-main": "broken_ways:WrongOffMain", "split-reversed": "broken_ways:SplitReversed",
        "no-probe": "broken_ways:NoProbe", "no-device": "broken_ways:NoDevice"}, BROKEN_IN_WAYS)
    return in_process_plugins


def _case(name, check, workload="mlp"):
    from backends.parity import parity_cases
    return next(c for c in parity_cases(name) if c.check == check and c.workload == workload)


def test_parity_fails_a_backend_wrong_only_under_threads(parity_plugins):
    from backends.parity import check_parity
    check_parity(_case("wrong-off-main", "forward"))
    with pytest.raises(AssertionError, match="relative error"):
        check_parity(_case("wrong-off-main", "threads"))


def test_parity_fails_a_split_that_mixes_up_requests(parity_plugins):
    from backends.parity import check_parity
    check_parity(_case("split-reversed", "threads"))
    with pytest.raises(AssertionError, match="relative error"):
        check_parity(_case("split-reversed", "batched"))


def test_parity_covers_every_check_and_the_probe(parity_plugins):
    from backends.parity import CHECKS, check_parity, parity_cases
    cases = parity_cases("numpy")
    assert {(c.workload, c.check) for c in cases} == (
        {(w, c) for w in ("mlp", "block", "transformer") for c in CHECKS} | {("matmul", "probe")})
    check_parity(next(c for c in cases if c.check == "probe"))
    with pytest.raises(pytest.skip.Exception, match="declines matmul on cpu/float64: no matmul here"):
        check_parity(_case("no-probe", "probe", "matmul"))


def test_parity_without_a_usable_device_skips_every_case_with_the_reason(parity_plugins):
    from backends.parity import check_parity, parity_cases
    cases = parity_cases("no-device")
    assert len(cases) == 10 and all(c.skip == "cuda: no GPU on this test machine" for c in cases)
    for case in cases[:2]:
        with pytest.raises(pytest.skip.Exception, match="no GPU on this test machine"):
            check_parity(case)
