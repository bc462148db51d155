"""Checking outputs against the float64 reference."""
from __future__ import annotations

import numpy as np

# Normwise relative error ||y - ref|| / ||ref|| allowed per dtype. float32 admits TF32 matmuls
# (~1e-3 on the transformer); a mixed-up or wrong output is off by O(1).
TOLERANCE = {"float64": 1e-9, "float32": 5e-3, "float16": 1e-2, "bfloat16": 5e-2}


def rel_error(y: np.ndarray, ref: np.ndarray) -> float:
    y = np.asarray(y, dtype=np.float64)
    if y.shape != ref.shape:
        return float("inf")
    if not np.all(np.isfinite(y)):
        return float("inf")
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-300))


def tolerance(dtype: str) -> float:
    return TOLERANCE[dtype]
