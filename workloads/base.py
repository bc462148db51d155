"""Framework-free workload specs: shapes, seeded weights, a float64 reference forward, FLOPs.

A workload is a frozen dataclass whose fields are its size knobs. Weights and inputs are drawn once in
numpy from a seed, rounded to float32-representable values (so every backend starts from the same bits),
and the reference forward runs in float64 on exactly those values. No framework RNG is used anywhere.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
from scipy.special import erf

LN_EPS = 1e-5


class Workload:
    """Base class; subclasses are frozen dataclasses whose fields are the size knobs."""

    name: ClassVar[str]
    description: ClassVar[str]

    # -- what subclasses define -------------------------------------------------------------------
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def reference(self, params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        """Forward pass in float64 numpy."""
        raise NotImplementedError

    def flops(self) -> int:
        """Floating-point operations of one forward (2 per multiply-add of every matrix product)."""
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------------
    def knobs(self) -> dict[str, int]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def with_batch(self, batch: int) -> "Workload":
        return dataclasses.replace(self, batch=batch)  # type: ignore[type-var]

    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.knobs().items())

    def init_weights(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded weights in the layout torch uses (Linear weight is out x in), float32 values."""
        rng = np.random.default_rng(seed)
        params = {}
        for key, shape in self.param_shapes().items():
            if key.endswith("norm_w"):  # LayerNorm scale: near one, not exactly, so it is exercised
                value = 1.0 + 0.1 * rng.standard_normal(shape)
            elif key.endswith("norm_b"):
                value = 0.1 * rng.standard_normal(shape)
            else:  # Linear weights and biases: torch's default init range U(-1/sqrt(fan_in), +)
                fan_in = shape[-1] if len(shape) > 1 else self._fan_in(key)
                bound = 1.0 / math.sqrt(fan_in)
                value = rng.uniform(-bound, bound, shape)
            params[key] = value.astype(np.float32)
        return params

    def _fan_in(self, bias_key: str) -> int:
        weight_key = bias_key[: -len("_b")] + "_w"
        return self.param_shapes()[weight_key][-1]

    def make_input(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(10_000 + seed)
        return rng.standard_normal(self.input_shape()).astype(np.float32)


# -- float64 building blocks shared by the references ---------------------------------------------
def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    y = x @ w.astype(np.float64).T
    return y if b is None else y + b.astype(np.float64)


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * w.astype(np.float64) + b.astype(np.float64)


def gelu_exact(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)
