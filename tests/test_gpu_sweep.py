"""benchmarks/gpu_sweep.sh, the H200 publication's device calls, with a stand-in for the device's python3 that
records each `compare` it is asked for: several parts in one call, each into its own file with its own
timeout, one reference cache and JAX compilation cache for all of them, a failed part not stopping the next."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_PYTHON = """#!/bin/bash
echo "$* | JAX_COMPILATION_CACHE_DIR=$JAX_COMPILATION_CACHE_DIR min_s=$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS \
min_bytes=$JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES" >> "$CALLS"
case "$*" in *"--shard 2/5"*) exit 1;; *"--shard 3/5"*) sleep 2;; esac
"""


def sweep(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "CACHE", "CALL_", "PART_", "SERVER_"))}
    run_env |= {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls), **env}
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_sweep.sh"), *args], capture_output=True,
                         text=True, env=run_env, cwd=ROOT, timeout=60)
    return out, calls.read_text().splitlines() if calls.exists() else []


def test_run_measures_each_part_into_its_own_file_with_one_cache_and_a_failed_part_does_not_stop_the_next(tmp_path):
    out, calls = sweep(tmp_path, "run", str(tmp_path / "out"), "1", "2", "7", CACHE=str(tmp_path / "cache"))
    assert out.returncode == 0, out.stderr   # a report: part 2's failure is said, and part 7 ran after it
    assert [c.split("--out ")[1].split()[0] for c in calls] == [
        str(tmp_path / "out" / name) for name in ("h200-closed-1of5.json", "h200-closed-2of5.json", "h200-server-mlp.json")]
    for call in calls:
        assert f"--cache-dir {tmp_path / 'cache'} " in call
        assert call.endswith(f"JAX_COMPILATION_CACHE_DIR={tmp_path / 'cache' / 'jax'} min_s=0 min_bytes=-1")
    assert "--shard 1/5" in calls[0] and "--shard 2/5" in calls[1] and "server-threads" in calls[2]
    assert "--workloads mlp " in calls[2]
    lines = out.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("part ")] == ["part 1", "part 2", "part 7"]
    assert "part 2: " in out.stdout and "exit code 1" in next(line for line in lines if line.startswith("part 2:"))
    assert lines[-1].startswith("parts 1 2 7: ") and " s in all;" in lines[-1] and " 2 0." in lines[-1]
    assert "(exit 1)" in lines[-1].split(" 2 0.")[1].split(";")[0]


def test_a_part_with_too_little_of_the_call_left_is_not_started_and_a_bad_part_starts_nothing(tmp_path):
    out, calls = sweep(tmp_path, "run", str(tmp_path / "out"), "3", "4", CALL_SECONDS="61")   # part 3 takes 2 s
    assert len(calls) == 1 and "--shard 3/5" in calls[0]
    assert "part 4: not started" in out.stdout
    out, calls = sweep(tmp_path, "run", str(tmp_path / "out"), "1", "9")
    assert out.returncode == 2 and calls == [] and out.stderr.strip() == \
        "PART: 1..5 (closed-loop shards), 6 (processes), 7 or 8 (the server: mlp, transformer), not 9"


def test_the_server_is_two_parts_mlp_then_transformer(tmp_path):
    out, calls = sweep(tmp_path, "run", str(tmp_path / "out"), "8")
    assert len(calls) == 1 and "--workloads transformer " in calls[0] and "server-batched" in calls[0]
    assert "h200-server-transformer.json" in calls[0]


def test_the_machine_names_the_results_and_their_files(tmp_path):
    out, calls = sweep(tmp_path, "run", str(tmp_path / "out"), "1", MACHINE="H100")   # a call given an H100
    assert len(calls) == 1 and "--machine H100 " in calls[0]
    assert f"--out {tmp_path / 'out' / 'h100-closed-1of5.json'} " in calls[0]
    out, calls = sweep(tmp_path, "run", str(tmp_path / "out"), "7")   # no nvidia-smi here: the H200's names
    assert "--machine H200 " in calls[0] and "h200-server-mlp.json" in calls[0]


def test_server_budget_plans_each_server_part_from_the_h100s_per_cell_costs(tmp_path):
    """The whole plan took 24.9 min on an H100, the server 13 of them: SERVER_BUDGET caps parts 7 and 8 through
    compare --budget, planned from that run's per-cell costs (which exist in the tree), and nothing else."""
    out, calls = sweep(tmp_path, "run", str(tmp_path / "out"), "1", "7", "8", SERVER_BUDGET="3.5")
    assert "--budget" not in calls[0]
    for call, workload in zip(calls[1:], ("mlp", "transformer")):
        costs = call.split("--costs ")[1].split()[0]
        assert "--budget 3.5 " in call and costs == f"results/supplementary/h100-5a5be10/h100-server-{workload}.json"
        assert (ROOT / costs).is_file()
    out, calls = sweep(tmp_path, "run", str(tmp_path / "out"), "7")
    assert "--budget" not in calls[0]
