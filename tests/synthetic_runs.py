"""Results documents built in memory (no sweep): known trials, so tests can check exact medians and verdicts."""
from __future__ import annotations

from compare import results as R
from compare.cells import Cell, CellResult, Trial

MLX_WARNING = "MLX's Linux CPU build uses a slow reference BLAS"


def host(name: str = "m1", os_name: str = "Linux 6.1") -> dict:
    return {"host": name, "os": os_name, "platform": f"{os_name}-x86_64", "machine": "x86_64", "cpu": "Test CPU 9000",
            "cpu_count": 4, "memory_gb": 16.0, "python": "3.11.7", "gil_enabled": True,
            "packages": {"numpy": "2.0"}, "env_vars": {"OMP_NUM_THREADS": "4"}}


def env(backend: str) -> dict:
    return {"framework": backend, "version": "1.0", "device_name": "Test CPU 9000", "math_library": "test BLAS",
            "intra_op_threads": 4, "warnings": [MLX_WARNING] if backend == "mlx" else []}


def cell(backend="torch", workload="mlp", mode="threads", threads=1, k=1, trials=5, duration=0.5) -> Cell:
    return Cell(backend=backend, device="cpu", dtype="float32", workload=workload, mode=mode, threads=threads, k=k,
                trials=trials, duration=duration)


def result(c: Cell, ops_per_s: list[float] | None, status: str = "ok", cause: str = "") -> CellResult:
    """Trials of exactly these ops/s (ops over one second each)."""
    trials = [Trial(ops=int(v), seconds=1.0, lat_p50_ms=1.0, lat_p90_ms=2.0, lat_p99_ms=3.0)
              for v in (ops_per_s or [])]
    return CellResult(cell=c, status=status, cause=cause, trials=trials, checked=5, rel_err=1e-7,
                      flops_per_op=1000, peak_rss_mb=100.0, wall_s=1.0, env=env(c.backend))


def run(results: list[CellResult], host_name: str = "m1", created: str = "2026-01-02T03:04:05+00:00",
        trials: int = 5, duration: float = 0.5, os_name: str = "Linux 6.1") -> dict:
    doc = R.new_run(["threadbench", "compare", "--trials", str(trials)], host(host_name, os_name),
                    {"backends": ["torch", "mlx"], "cell": {"duration": duration, "trials": trials, "warmup": 3,
                                                              "max_batch": 0, "max_wait_ms": 2.0}})
    doc["created"] = created
    for r in results:
        R.add_result(doc, r)
    return doc


def scaling_run(host_name: str = "m1", scale: float = 1.0, created: str = "2026-01-02T03:04:05+00:00",
                workloads=("mlp",)) -> dict:
    """torch and mlx: sequential, threads x1/x2/x4 and offline k=1/8, five trials each."""
    results = []
    for backend, base in (("torch", 1000.0), ("mlx", 400.0)):
        for w in workloads:
            spread = [0.98, 0.99, 1.0, 1.01, 1.02]
            results.append(result(cell(backend, w, "sequential"), [base * scale * f for f in spread]))
            for n in (1, 2, 4):
                results.append(result(cell(backend, w, "threads", n), [base * scale * (1 + 0.5 * (n - 1)) * f
                                                                       for f in spread]))
            for k in (1, 8):
                results.append(result(cell(backend, w, "offline", k=k), [base * scale * (1 + k / 2) * f
                                                                         for f in spread]))
    return run(results, host_name, created)
