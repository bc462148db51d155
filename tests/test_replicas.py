"""The replicas mode (compare.measure.processes.run_replicas): one processes-mode process per device of
--devices, pinned to it and to its share of the host's cores. On this CPU-only machine the devices are
"replicas" of the cpu device (the numpy float64 backend), and GPU indices, CUDA_VISIBLE_DEVICES and NVML's
topology are faked; faults come from tests/process_fault_plugin (the second process of a cell fails).
Nothing here asserts a speed: counts, pins, records, statuses and the one-line errors."""
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

import cli
import synthetic_runs as S
from compare import results as R
from compare import stats
from compare.cells import MODES, Cell, axis_label
from compare.measure import host, procs
from compare.measure.harness import CellFailed
from compare.measure.plan import Settings, plan, replica_counts
from compare.render import analysis
from compare.render import findings as FD

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = Path(__file__).resolve().parent / "process_fault_plugin"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGIN), str(ROOT)]),
           OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # two replicas' BLAS pools need not fight for 2 cores
TRIALS = 2
FAST = ["--dtype", "float64", "--workloads", "mlp", "--duration", "0.1", "--trials", str(TRIALS), "--warmup", "1",
        "--repeats", "1", "-q", "--no-peak-probe", "--modes", "replicas", "--devices", "0,1", "--cell-timeout", "120"]


def replica_cell(device: str = "cpu", devices: tuple = (0, 1)) -> Cell:
    return Cell(backend="numpy", device=device, dtype="float64", workload="mlp", mode="replicas",
                threads=len(devices), devices=devices)


# -- the mode, its cells and its plan ----------------------------------------------------------------------
def test_replicas_is_its_own_axis_counted_in_devices():
    spec = MODES["replicas"]
    assert spec.axis == "devices" and not spec.one_process and spec.axis_value(4, 8) == 4
    assert axis_label("replicas", 4, 1) == "×4 dev"
    cell = replica_cell(devices=(2, 3))
    assert Cell.from_dict(json.loads(json.dumps(cell.to_dict()))) == cell  # devices survive a results file


@pytest.mark.parametrize("devices,counts", [(1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (4, [1, 2, 4]),
                                            (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8])])
def test_replica_counts_read_every_count_against_one_device(devices, counts):
    assert replica_counts(devices) == counts


def test_the_plan_gives_each_replica_count_the_first_devices():
    s = Settings(backends=("numpy",), workloads=("mlp",), modes=("replicas",), threads=(1,), dtypes=("float64",),
                 peak_probe=False, devices=(3, 1, 2))
    cells, unavailable = plan(s)
    assert not unavailable
    assert [(c.threads, c.devices) for c in cells] == [(1, (3,)), (2, (3, 1)), (3, (3, 1, 2))]


# -- where a replica runs ----------------------------------------------------------------------------------
def test_cpu_replicas_split_the_cores_and_set_no_device(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")  # not read for a cpu replica
    pins = procs.replica_pins(replica_cell(devices=(0, 1)), cores=[0, 1, 2, 3, 4])
    assert [(p.index, p.visible, p.cores) for p in pins] == [(0, None, (0, 1, 2)), (1, None, (3, 4))]


def test_gpu_replicas_read_their_index_through_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pins = procs.replica_pins(replica_cell("cuda", (0, 3)), cores=list(range(8)))
    assert [(p.visible, p.cores) for p in pins] == [("0", (0, 1, 2, 3)), ("3", (4, 5, 6, 7))]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")  # the sweep itself was given GPUs 4, 6 and 7
    assert [p.visible for p in procs.replica_pins(replica_cell("cuda", (2, 0)), cores=[0, 1])] == ["7", "4"]
    with pytest.raises(CellFailed) as refused:
        procs.replica_pins(replica_cell("cuda", (3,)), cores=[0, 1])
    assert refused.value.status == "error"
    assert refused.value.cause == "replicas: device 3 is not among CUDA_VISIBLE_DEVICES=4,6,7 (indices 0 to 2)"


def test_more_replicas_than_cores_is_refused():
    with pytest.raises(CellFailed, match="replicas: 3 replicas need a core each; this process may run on 2"):
        procs.replica_pins(replica_cell(devices=(0, 1, 2)), cores=[0, 1])


def test_a_pin_sets_the_device_and_keeps_multicast_off(monkeypatch):
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()  # a copy: nothing leaks to other tests
                                        if k not in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", *procs.NO_MULTICAST)})
    here = tuple(sorted(os.sched_getaffinity(0)))  # pinned where it already runs: the test process is unchanged
    procs.Pin(1, "6", here).apply()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "6" and os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert os.environ["NCCL_NVLS_ENABLE"] == "0" and os.environ["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"


# -- the devices' names and link ---------------------------------------------------------------------------
class FakeNvml:
    """pynvml's calls device_topology makes, over GPUs 0-3: 0 and 1 joined by NVLink, the rest by PCIe."""
    NVML_P2P_CAPS_INDEX_NVLINK, NVML_P2P_STATUS_OK = 6, 0

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H200"

    def nvmlDeviceGetP2PStatus(self, a, b, cap):
        return 0 if {a, b} == {0, 1} else 2

    def nvmlDeviceGetTopologyCommonAncestor(self, a, b):
        return 30

    def nvmlShutdown(self):
        pass


@pytest.mark.parametrize("indices,link", [(["0", "1"], "NVLink"), (["2", "3"], "one PCIe host bridge"),
                                          (["0", "1", "2"], "NVLink; one PCIe host bridge"), (["2"], "one device")])
def test_gpus_are_named_and_linked_as_nvml_says(monkeypatch, indices, link):
    monkeypatch.setattr(host, "_nvml", FakeNvml)
    facts = host.device_topology([procs.Pin(n, i, (0,)) for n, i in enumerate(indices)], "cuda")
    assert facts == {"device_names": [f"{i}: NVIDIA H200" for i in indices], "device_link": link}


def test_without_nvml_the_link_is_unknown(monkeypatch):
    def missing():
        raise host.NvmlMissing("NVML not available")
    monkeypatch.setattr(host, "_nvml", missing)
    gpus = [procs.Pin(0, "0", (0,)), procs.Pin(1, "1", (1,))]
    assert host.device_topology(gpus, "cuda") == {"device_names": ["cuda:0", "cuda:1"], "device_link": "unknown"}
    cpus = [procs.Pin(0, None, (0, 1)), procs.Pin(1, None, (2,))]
    assert host.device_topology(cpus, "cpu") == {"device_names": ["cpu cores 0,1", "cpu cores 2"],
                                                 "device_link": "unknown"}


# -- bad --devices: one line, exit 2 -----------------------------------------------------------------------
@pytest.mark.parametrize("args,expected", [
    (["--modes", "replicas", "--devices", "a"], "--devices: 'a' is not a whole number"),
    (["--modes", "replicas", "--devices", "-1"], "--devices: -1 is out of range; use 0 to"),
    (["--modes", "replicas", "--devices", "0,0"], "--devices: '0,0' lists a value twice"),
    (["--modes", "replicas", "--devices", ""], "--devices: expected comma-separated whole numbers"),
    (["--modes", "threads", "--devices", "0,1"],
     "--devices: only the replicas modes use it; add replicas or server-replicas to --modes"),
    (["--modes", "replicas", "--devices", "256"], "--devices: 256 is out of range; use 0 to 255"),
])
def test_bad_devices_is_one_line_and_exit_2(capsys, args, expected):
    code = cli.run_cli(["compare", "--backends", "numpy", *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and expected in err, err


def test_more_devices_than_cores_is_one_line_and_exit_2(capsys):
    cores = len(os.sched_getaffinity(0))
    code = cli.run_cli(["compare", "--backends", "numpy", "--modes", "replicas",
                        "--devices", ",".join(map(str, range(cores + 1)))])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--devices: {cores + 1} replicas need a core each and this process may run on {cores}" in err, err


# -- end to end: replicas at 1 and 2, a replica that fails ------------------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory, threadbench, starts_processes):
    out_file = tmp_path_factory.mktemp("replicas") / "run.json"
    proc = threadbench("compare", *FAST, "--backends", "numpy,fault-one-segv,fault-one-raise,fault-one-pin-echo",
                       "--out", str(out_file), env=ENV)
    return proc, R.load(out_file)


def row_of(run: dict, backend: str, n: int) -> dict:
    return next(r for r in run["rows"] if (r["backend"], r["mode"], r["threads"]) == (backend, "replicas", n))


@pytest.mark.parametrize("n", [1, 2])
def test_replicas_measure_verify_and_record_each_replica(sweep, n):
    proc, run = sweep
    assert "Traceback" not in proc.stderr
    row = row_of(run, "numpy", n)
    # the speed check, 5 per replica after the trials, each replica's first and last output of each window
    assert row["status"] == "ok" and row["ops_per_s"] > 0, row
    assert row["checked"] == 1 + n * 5 + n * 2 * TRIALS and row["errors"] == 0, row
    assert json.loads(row["devices"]) == [0, 1][:n]
    rss = json.loads(row["process_rss_mb"])
    assert len(rss) == len(json.loads(row["process_uss_mb"])) == n and all(m > 0 for m in rss)
    assert row["total_rss_mb"] == pytest.approx(sum(rss))
    cores = sorted(os.sched_getaffinity(0))
    shares = [cores] if n == 1 else [cores[:len(cores) // 2], cores[len(cores) // 2:]]
    assert json.loads(row["device_names"]) == [f"cpu cores {','.join(map(str, s))}" for s in shares]
    assert row["device_link"] == "unknown" and row["process_util_mean"] is None and row["gpu_util_mean"] is None
    assert row["intra_op_rule"] == "each replica's share of the cores"


def test_a_replica_that_crashes_fails_its_cell_with_the_cause(sweep):
    proc, run = sweep
    assert row_of(run, "fault-one-segv", 1)["status"] == "ok"  # one replica: the fault never fires
    row = row_of(run, "fault-one-segv", 2)
    assert row["status"] == "crash" and row["cause"] == "process 2 of 2 killed by SIGSEGV", row
    assert row["ops_per_s"] is None
    row = row_of(run, "fault-one-raise", 2)
    assert row["status"] == "error" and row["cause"] == "process 2 of 2: RuntimeError: injected fault: forward failed"


def test_a_replica_runs_on_its_share_of_the_cores_with_multicast_off(sweep):
    proc, run = sweep
    cause = row_of(run, "fault-one-pin-echo", 2)["cause"]  # the second replica says where it ran
    second = sorted(os.sched_getaffinity(0))[len(os.sched_getaffinity(0)) // 2:]
    assert cause == (f"process 2 of 2: RuntimeError: pinned to cores {','.join(map(str, second))}; "
                     "NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1"), cause


# -- the server scenario over replicas ----------------------------------------------------------------------
@pytest.mark.slow
def test_server_replicas_pin_a_pool_process_per_device(tmp_path, threadbench):
    """server-replicas on devices 0,1 (a generous bound: the dispatcher's lag never decides): the one-replica
    pool serves and verifies, recording its device; in the two-replica pool the second says where it ran."""
    out_file = tmp_path / "run.json"
    proc = threadbench("compare", *FAST[:FAST.index("--modes")], "--modes", "server-replicas", "--devices", "0,1",
                       "--backends", "fault-one-pin-echo", "--latency-bound-ms", "500", "--cell-timeout", "400",
                       "--out", str(out_file), env=ENV)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    rows = R.load(out_file)["rows"]
    one = [r for r in rows if r["threads"] == 1]
    assert one and all(r["status"] == "ok" and r["offered_rate"] > 0 for r in one), one
    verify = Cell(backend="numpy", device="cpu", dtype="float64", workload="mlp", mode="server-replicas").verify_ops
    assert one[0]["checked"] == 1 + verify and one[0]["errors"] == 0, one[0]  # the worker's speed check, then its own
    cores = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    assert json.loads(one[0]["device_names"]) == [f"cpu cores {cores}"] and one[0]["device_link"] == "unknown"
    (two,) = [r for r in rows if r["threads"] == 2]
    second = sorted(os.sched_getaffinity(0))[len(os.sched_getaffinity(0)) // 2:]
    assert two["status"] == "error" and two["cause"] == (
        f"process 2 of 2: RuntimeError: pinned to cores {','.join(map(str, second))}; NCCL_NVLS_ENABLE=0 "
        "TORCH_SYMM_MEM_DISABLE_MULTICAST=1"), two


# -- how several devices are read: against one device's best, never its ceiling ------------------------------
def test_a_replicas_cell_is_not_held_against_one_devices_ceiling():
    cells = [S.result(S.cell(mode="offline", k=8), [1000.0] * 5),
             S.result(S.cell(mode="processes", threads=1), [900.0] * 5),
             S.result(S.cell(mode="replicas", threads=4), [3400.0] * 5)]
    s = {r["mode"]: r for r in stats.summarize(S.run(cells)["rows"]).to_dicts()}
    assert s["processes"]["pct_ceiling"] == pytest.approx(90.0)   # one device against its ceiling
    assert s["replicas"]["pct_ceiling"] is None and s["replicas"]["above_ceiling"] is False  # 4 devices: never


def test_over_devices_reads_each_count_against_one_devices_best_as_far_as_the_intervals_go():
    def rec(mode, n, v):
        return {"mode": mode, "threads": n, "k": 1, "status": "ok", "ops_per_s": v, "ci_low": 0.98 * v,
                "ci_high": 1.02 * v}
    recs = [rec("sequential", 1, 500.0), rec("threads", 2, 1000.0), rec("replicas", 2, 1040.0),
            rec("replicas", 4, 3600.0), rec("replicas", 1, 400.0)]
    assert FD._over_devices(recs) == (
        "over devices, against one device's best (threads ×2 1k [980–1.02k]): "
        "replicas ×1 dev 400 [392–408], 0.4× one device's best (ideal ×1); "
        "replicas ×2 dev 1.04k [1.02k–1.06k], no clear difference from one device's best (ideal ×2); "
        "replicas ×4 dev 3.6k [3.53k–3.67k], 3.6× one device's best (ideal ×4)")
    assert analysis.best_strategy(recs)["mode"] == "threads"   # replicas are never one device's strategy
    assert FD._over_devices(recs[:2]) is None                  # no replicas cell: no sentence


def test_a_replicas_cell_without_devices_runs_on_the_first_ones_and_a_mismatch_is_its_error(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    bare = Cell(backend="numpy", device="cuda", dtype="float64", workload="mlp", mode="replicas", threads=2)
    assert [p.index for p in procs.replica_pins(bare, cores=[0, 1])] == [0, 1]
    with pytest.raises(CellFailed, match=r"replicas: 3 replicas on 2 devices \(0,1\)"):
        procs.replica_pins(replace(bare, threads=3, devices=(0, 1)), cores=[0, 1, 2])
