"""The measurement through real backends (issue 11, items 4, 6, 7 and 9): the worker's own make_harness and
run_mode, with torch, MLX and the JAX plug-in where installed, plus a lazy fake backend. Each test here fails
when a one-line bug of the kind named in its docstring is planted in the measurement path. No assertion on a
speed: workloads are tiny and every figure asserted is a count, a structure or an error against the float64
reference."""
import threading
import time

import numpy as np
import pytest

import backends
import workloads
from backends.base import Backend
from compare.cells import Cell
from compare.measure.build import build_model, make_harness
from compare.measure.registry import run_mode
from compare.measure.runner import Limits, run_cell
from compare.measure.verify import TOLERANCE, tolerance

TINY = {"mlp": (("hidden", 32), ("out", 8), ("width", 16)),
        "transformer": (("heads", 2), ("hidden", 32), ("layers", 1), ("seq", 8), ("width", 16))}
FAST = dict(duration=0.03, trials=2, warmup=1, verify_ops=1, max_window=2.0)  # a generous cap: never too slow here


def installed(name: str) -> bool:
    try:
        return backends.load(name).device_status().get("cpu") is None
    except Exception:  # noqa: BLE001 - not installed here
        return False


REAL = [b for b in ("torch", "mlx", "jax") if installed(b)]


def cell(backend="torch", workload="mlp", mode="threads", dtype="float32", **kw) -> Cell:
    return Cell(backend=backend, device="cpu", dtype=dtype, workload=workload, mode=mode,
                knobs=TINY[workload], **{**FAST, **kw})


def harness(c: Cell, tmp_path, backend: Backend | None = None):
    b = backend or backends.load(c.backend)
    b.configure(fp32_precision=c.fp32_precision, intra_op_threads=c.intra_op_threads)
    spec = workloads.make(c.workload, **dict(c.knobs))
    params = spec.init_weights(c.seed)
    return make_harness(b, build_model(b, c, spec, params), c, spec, params, tmp_path), b


# -- item 7: distinct inputs, per-request checks, tolerances per effective precision ------------------------
def test_every_client_has_its_own_input_at_every_thread_count(tmp_path):
    """Planted bug caught: inputs reused as i % 8 (clients 0 and 8 share one, so a swap between them hides)."""
    h, b = harness(cell(threads=12), tmp_path)
    xs = [b.to_numpy(x) for x in h.inputs]
    assert len(xs) == 12
    assert all(not np.array_equal(xs[i], xs[j]) for i in range(12) for j in range(i))
    out = [h.op(x) for x in h.inputs]
    assert all(h.check(out[i], i) < h.tolerance for i in range(12))
    assert all(h.check(out[i], j) > 0.1 for i in range(12) for j in range(12) if i != j)  # a swap shows


def test_every_request_of_an_offline_batch_is_checked_on_its_own(tmp_path):
    """Planted bug caught: an offline batch checked as one output (one wrong request among k diluted)."""
    h, b = harness(cell(mode="offline", k=8, threads=2), tmp_path)
    rows = workloads.make("mlp", **dict(TINY["mlp"])).batch
    assert len(h.inputs) == 2 and b.to_numpy(h.inputs[0]).shape[0] == 8 * rows
    y = h.op(h.inputs[1]).clone()
    y[5 * rows, 0] += 0.05 * y.abs().max()  # one element of request 5 of thread 1's batch
    errs = h.check(y, 1)
    assert len(errs) == 8 and [e > h.tolerance for e in errs] == [j == 5 for j in range(8)]
    h.record(errs)
    assert (h.checked, h.errors) == (8, 1)


def test_one_element_from_another_request_fails_exact_float32(tmp_path):
    """Planted bug caught: float32 tolerance 0.5 (or the old 5e-3): a transformer output with one element
    taken from another request passes."""
    h, b = harness(cell(workload="transformer", threads=2), tmp_path)
    assert h.tolerance == TOLERANCE["fp32"] == tolerance("float32") <= 1e-5
    y0, y1 = (h.op(x).clone() for x in h.inputs)
    assert h.check(y0, 0) < h.tolerance and h.check(y1, 1) < h.tolerance  # exact fp32 is well inside
    y0.view(-1)[7] = y1.view(-1)[7]
    assert h.check(y0, 0) > h.tolerance


def test_tolerances_follow_the_effective_precision():
    torch_b = backends.load("torch")
    assert torch_b.effective_precision("cpu", "float32", "high") == "fp32"  # no TF32 on a CPU (measured)
    assert torch_b.effective_precision("cuda", "float32", "high") == "tf32"
    assert torch_b.effective_precision("cuda", "float32", "highest") == "fp32"
    if installed("mlx"):
        import platform
        mlx_b = backends.load("mlx")
        assert mlx_b.effective_precision("cpu", "float32", "highest") == "fp32"
        want = "fp32" if platform.system() == "Darwin" else "tf32"
        assert mlx_b.effective_precision("gpu", "float32", "highest") == want
    assert TOLERANCE["fp32"] < TOLERANCE["tf32"] <= TOLERANCE["fp16"] < TOLERANCE["bf16"]


# -- the modes through real backends -------------------------------------------------------------------
@pytest.mark.parametrize("backend", REAL)
@pytest.mark.parametrize("mode,threads,k", [("batched", 4, 1), ("threads", 3, 1), ("offline", 2, 3),
                                            ("offline", 1, 4), ("sequential", 1, 1)])
def test_real_backends_hand_every_client_its_own_rows(backend, mode, threads, k, tmp_path):
    """Planted bugs caught: MLX or JAX split handing rows to the wrong client (batched); offline counting
    forwards instead of requests; outputs of the timed windows not checked."""
    c = cell(backend=backend, mode=mode, threads=threads, k=k, max_batch=threads)
    h, _ = harness(c, tmp_path)
    trials = run_mode(h, c)
    assert len(trials) == c.trials and all(t.ops > 0 for t in trials), trials
    assert h.errors == 0, (h.errors, h.checked, h.max_err)
    reqs = c.requests_per_forward
    assert all(t.ops % reqs == 0 and t.min_thread_ops * threads * reqs <= t.ops for t in trials)
    # the speed check's first output, two samples per thread per window (one if it ran one op), verification
    assert h.checked >= reqs * (1 + c.trials * threads + threads * c.verify_ops)
    m = h.measured
    assert m.warmup_windows >= 1 and m.window_s >= c.duration and m.os_threads >= threads
    if mode == "batched":
        assert all(t.batch_hist for t in trials)


@pytest.mark.parametrize("backend", [b for b in REAL if b != "torch"])  # torch's split is a view: not lazy
def test_batched_split_bug_is_caught(backend, tmp_path, monkeypatch):
    """The check the test above relies on: rows rotated between clients by split are counted wrong."""
    b = backends.load(backend)
    real = type(b).split
    monkeypatch.setattr(type(b), "split", lambda self, y, sizes: (lambda p: p[1:] + p[:1])(real(self, y, sizes)))
    c = cell(backend=backend, mode="batched", threads=4, max_batch=4, max_wait_ms=50.0)
    h, _ = harness(c, tmp_path, b)
    run_mode(h, c)
    assert h.errors > 0


# -- synchronise: an op counts only once its work is done -----------------------------------------------
class Thunk:
    def __init__(self, x):
        self.x, self.value = x, None


class LazyBackend(Backend):
    """forward() only records the work; synchronize() does it (as MLX's lazy graph does). to_numpy of a
    thunk never forced is NaN, so an output read before its work was done is an error."""
    name, devices, dtypes = "lazy", ("cpu",), ("float64",)

    def __init__(self, force=True):
        self.force, self.forwards, self.forced, self.lock = force, 0, 0, threading.Lock()

    def device_status(self):
        return {"cpu": None}

    def build(self, workload, params, device, dtype):
        return lambda x: workload.reference(params, x)

    def to_device(self, x, device, dtype):
        return np.asarray(x, dtype=np.float64)

    def forward(self, model, x):
        with self.lock:
            self.forwards += 1
        t = Thunk(x)
        t.model = model
        return t

    def synchronize(self, out, device):
        if self.force and isinstance(out, Thunk) and out.value is None:
            time.sleep(0.001)
            out.value = out.model(out.x)
            with self.lock:
                self.forced += 1

    def to_numpy(self, out):
        if isinstance(out, Thunk):
            return out.value if out.value is not None else np.full_like(out.x, np.nan)
        return np.asarray(out)

    def concat(self, xs):
        return np.concatenate(xs)

    def split(self, y, sizes):
        return np.split(y.value, np.cumsum(sizes)[:-1])

    def describe(self, device):
        return {"framework": "lazy"}


@pytest.mark.parametrize("mode,threads", [("sequential", 1), ("threads", 2)])
def test_an_op_counts_only_after_its_work_is_done(mode, threads, tmp_path):
    """Planted bug caught: synchronize doing nothing (lazy work never forced, as an MLX synchronize that
    forgot mx.eval): every counted op's work was done inside it, and no output is read unfinished."""
    c = cell(backend="lazy", mode=mode, threads=threads, dtype="float64")
    lazy = LazyBackend()
    h, _ = harness(c, tmp_path, lazy)
    trials = run_mode(h, c)
    assert lazy.forced == lazy.forwards >= sum(t.ops for t in trials) > 0
    assert h.errors == 0

    lazy_bug = LazyBackend(force=False)
    h, _ = harness(c, tmp_path, lazy_bug)
    run_mode(h, c)
    assert lazy_bug.forced == 0 and h.errors == h.checked > 0  # what a synchronize that does nothing yields


@pytest.mark.skipif(not installed("mlx"), reason="mlx not installed")
def test_mlx_synchronize_evaluates_the_output(monkeypatch):
    """Planted bug caught: MLX synchronize doing nothing (MLX is lazy: the op's work would happen later)."""
    import mlx.core as mx
    b = backends.load("mlx")
    evaluated = []
    real_eval = mx.eval
    monkeypatch.setattr(mx, "eval", lambda *a: (evaluated.append(a), real_eval(*a))[1])
    y = mx.ones((4, 4)) @ mx.ones((4, 4))
    b.synchronize(y, "cpu")
    assert any(any(arg is y for arg in args) for args in evaluated)


# -- item 6 and the recorded measurement, through a real cell process ------------------------------------
def test_intra_op_threads_reach_torch():
    b = backends.load("torch")
    import torch
    before = torch.get_num_threads()
    try:
        b.configure(intra_op_threads=1)
        assert torch.get_num_threads() == 1 and b.describe("cpu")["intra_op_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_every_backend_says_what_threads_means_for_it():
    import sys
    from pathlib import Path
    here = Path(__file__).resolve().parent.parent
    jax_here = "jax" in REAL and here in Path(sys.modules[type(backends.load("jax")).__module__].__file__).resolve().parents
    for name in ["numpy", *(b for b in REAL if b != "jax" or jax_here)]:  # the jax plug-in may be installed from elsewhere
        assert len(backends.load(name).describe("cpu").get("thread_streams", "")) > 10, name


@pytest.mark.slow
def test_a_cell_records_how_it_was_measured(tmp_path):
    c = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="threads", threads=2,
             knobs=TINY["mlp"], duration=0.05, trials=2, warmup=1, max_window=2.0)
    r = run_cell(c, tmp_path, Limits(cell_timeout=120))
    assert r.status == "ok", r.cause
    assert r.precision == "fp64" and r.os_threads >= 3  # the main thread and the two measuring threads
    assert r.warmup_windows >= 1 and r.warmup_s > 0 and r.steady in (True, False)
    assert r.window_s >= c.duration and all(t.window_s >= c.duration for t in r.trials)
    assert all(t.min_thread_ops is not None for t in r.trials)
    assert r.checked >= 1 + 2 * 2  # in-window samples are checked too


def test_per_thread_settings_reach_every_measuring_thread(tmp_path):
    """torch.set_num_threads() in the main thread does not reach another thread's math (measured: 500 vs
    4,200 mlp ops/s in a second thread): each measuring thread applies the cell's intra-op setting itself."""
    import torch
    seen = []
    c = cell(backend="torch", mode="threads", threads=3, intra_op_threads=1)
    h, b = harness(c, tmp_path)
    real = h.op
    h.op = lambda x: (seen.append((threading.current_thread().name, torch.get_num_threads())), real(x))[1]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # the main thread's setting must not be what the measuring threads use
        run_mode(h, c)
    finally:
        torch.set_num_threads(before)
    in_threads = {(name, n) for name, n in seen if name.startswith("tb-")}
    assert {name for name, _ in in_threads} == {"tb-0", "tb-1", "tb-2"} and {n for _, n in in_threads} == {1}
