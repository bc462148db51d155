"""The backend interface: what a framework must provide for threadbench to measure it.

A backend is one small class per framework. Its heavy import (torch, mlx, ...) happens inside its methods,
never at module import, so listing backends or printing --help stays fast and framework-free.
"""
from __future__ import annotations

import contextlib
import platform
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, ContextManager

import numpy as np

DTYPES = ("float32", "bfloat16", "float16", "float64")


class Unsupported(Exception):
    """A backend cannot run this (device, dtype, workload or mode); the message says why."""


class Backend(ABC):
    name: ClassVar[str]
    #: devices in order of preference; the first available one is the default
    devices: ClassVar[tuple[str, ...]]
    dtypes: ClassVar[tuple[str, ...]] = ("float32",)
    #: float32 matmul settings configure() can apply ("highest" = true fp32, "high" = TF32-class); a backend
    #: with none runs float32 as its framework decides, recorded as "native" (describe() says what that is)
    fp32_precisions: ClassVar[tuple[str, ...]] = ()

    # -- availability ------------------------------------------------------------------------------
    @abstractmethod
    def device_status(self) -> dict[str, str | None]:
        """For every device: None when usable here, else the reason it is not (one line)."""

    def available_devices(self) -> list[str]:
        return [d for d, why in self.device_status().items() if why is None]

    def default_device(self) -> str | None:
        devices = self.available_devices()
        return devices[0] if devices else None

    def configure(self, *, fp32_precision: str = "highest", intra_op_threads: int | None = None) -> None:
        """Process-wide settings, applied once in the worker before building (e.g. torch TF32 mode)."""

    def effective_precision(self, device: str, dtype: str, fp32_precision: str) -> str:
        """What the matmuls really compute in: "fp64", "fp32" (exact), "tf32", "bf16" or "fp16". Ratios
        between backends are like-for-like only at equal effective precision, and the output check's
        tolerance follows it. Override where the framework differs (MLX on CUDA runs float32 as TF32)."""
        if dtype == "float32":
            return "tf32" if fp32_precision == "high" else "fp32"
        return {"float64": "fp64", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)

    # -- the model ------------------------------------------------------------------------------
    @abstractmethod
    def build(self, workload: Any, params: dict[str, np.ndarray], device: str, dtype: str) -> Callable:
        """A callable running `workload`'s forward with these numpy weights on device/dtype (eval mode)."""

    @abstractmethod
    def to_device(self, x: np.ndarray, device: str, dtype: str) -> Any:
        """Move a numpy input to the device in dtype."""

    def forward(self, model: Callable, x: Any) -> Any:
        return model(x)

    @abstractmethod
    def synchronize(self, out: Any, device: str) -> None:
        """Block until `out` (and the work producing it, on this thread's stream) has completed."""

    @abstractmethod
    def to_numpy(self, out: Any) -> np.ndarray:
        """Bring an output back to the host as a float64 numpy array."""

    # -- modes ----------------------------------------------------------------------------------
    def stream(self, device: str) -> ContextManager:
        """Called inside a worker thread: a context in which this thread's work runs on its own stream."""
        raise Unsupported(f"{self.name} has no per-thread streams")

    @abstractmethod
    def concat(self, xs: list[Any]) -> Any:
        """Concatenate device inputs along the batch axis (dynamic batching)."""

    @abstractmethod
    def split(self, y: Any, sizes: list[int]) -> list[Any]:
        """Split a batched output into per-request pieces along the batch axis, ready for use on any thread."""

    # -- description ----------------------------------------------------------------------------
    @abstractmethod
    def describe(self, device: str) -> dict[str, Any]:
        """framework, version, device_name, math_library, intra_op_threads, warnings (list of str)."""

    def peak_device_memory(self, device: str) -> int | None:
        """Peak device memory in bytes since the process started, where the framework exposes it."""
        return None

    def close(self) -> None:
        """Release what build() took (optional)."""


# -- helpers the built-in backends share ------------------------------------------------------------
def is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def null_context() -> ContextManager:
    return contextlib.nullcontext()


def check_dtype(backend: Backend, dtype: str) -> None:
    if dtype not in backend.dtypes:
        raise Unsupported(f"{backend.name} supports dtypes {', '.join(backend.dtypes)}, not {dtype}")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
