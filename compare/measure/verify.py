"""Checking outputs against the float64 reference: the error measure and the tolerance per effective
precision (what the matmuls really compute in, Backend.effective_precision). Not here: which outputs are
checked and when (compare.measure.schedule)."""
from __future__ import annotations

import numpy as np

# Normwise relative error ||y - ref|| / ||ref|| allowed per effective precision. A mixed-up or wrong output
# is off by O(1); one element taken from another request is off by ~3e-3 on the transformer.
TOLERANCE = {
    "fp64": 1e-9,
    # exact float32: measured at most 6.8e-7 over mlp, block and transformer (torch, MLX, JAX on CPU, 3
    # inputs each); 1e-5 leaves a 15x margin and still catches a one-element swap (3e-3)
    "fp32": 1e-5,
    "tf32": 5e-3,   # 10-bit mantissa inputs: ~1e-3 on the transformer
    "fp16": 1e-2,   # measured at most 1.7e-3 (torch, MLX, JAX on CPU, all three workloads)
    "bf16": 5e-2,   # 8-bit mantissa: measured up to 1.4e-2 on the transformer (JAX CPU)
}
DTYPE_PRECISION = {"float64": "fp64", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def norm(x: np.ndarray) -> float:
    """The 2-norm of all elements, from a plain sum of squares. Not np.linalg.norm: it calls BLAS (ddot),
    which OpenBLAS threads above ~10k elements, and its idle threads then spin for about 0.1 s. The checks
    run between timed windows, so every window after the first shared the cores with those spinning
    threads: on the H100's 16-core host the transformer cells' processes ran ~10 cores in trials 1 and 2
    against ~3 in trial 0, which was 1.2-1.7x faster (results/supplementary/h100-5a5be10; fixed in 9857216)."""
    return float(np.sqrt(np.sum(np.square(x))))


def rel_error(y: np.ndarray, ref: np.ndarray) -> float:
    y = np.asarray(y, dtype=np.float64)
    if y.shape != ref.shape:
        return float("inf")
    if not np.all(np.isfinite(y)):
        return float("inf")
    return norm(y - ref) / max(norm(ref), 1e-300)


def tolerance(precision: str) -> float:
    """The tolerance for an effective precision ("fp32", "tf32", ...) or, as a dtype name, its exact one."""
    return TOLERANCE[DTYPE_PRECISION.get(precision, precision)]
