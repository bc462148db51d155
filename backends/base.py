"""The backend contract: what a framework must provide for threadbench to measure it.

A backend is one small class per framework. Its heavy import (torch, mlx, ...) happens inside its methods,
never at module import, so listing backends or printing --help stays fast and framework-free. Plug-ins
implement the same class; docs/writing-a-backend.md walks through it with a complete example.

This module is the contract's documentation and types; it is not the registry (backends/__init__.py) nor
the parity suite (backends/parity.py).

The name rule: a backend's class attribute `name` equals the name it is registered under (the entry-point
name of a plug-in); the registry refuses a class whose `name` differs. Names are lower-case letters, digits,
`-` and `_` (they are typed in `--backends a,b` and `--backend-option NAME.OPTION=VALUE`).
"""
from __future__ import annotations

import contextlib
import platform
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, ContextManager, Mapping, Protocol, TypeAlias, runtime_checkable

import numpy as np

DTYPES = ("float32", "bfloat16", "float16", "float64")

#: A tensor of the backend's own type (a torch.Tensor, an mx.array, an OrtValue, a numpy array ...) living
#: on the cell's device. threadbench never looks inside one: it passes them back to the backend's methods.
DeviceArray: TypeAlias = Any
#: What build() returns: called as `model(x)` by the default forward() (or passed to your own forward()).
Model: TypeAlias = Callable[[DeviceArray], DeviceArray]
#: Weight name -> float32 numpy array (C-contiguous, values exactly representable in float32). Linear
#: weights are stored out x in (torch's layout): y = x @ W.T + b. The same arrays for every backend.
Weights: TypeAlias = Mapping[str, np.ndarray]


@runtime_checkable
class WorkloadSpec(Protocol):
    """What build() receives as `workload` (a frozen dataclass from workloads/; read it, never change it).

    `name` says which model to build. The size knobs are attributes (`workload.batch`, `workload.width`,
    `workload.heads`, ...; `knobs()` returns them all). The weights a model needs are named by
    `param_shapes()` and arrive in build()'s `params`; the input is `input_shape()`, batch first, float32.

    | name          | knobs (defaults)                                   | weights (shape)                          |
    |---------------|----------------------------------------------------|------------------------------------------|
    | `mlp`         | batch 4, width 256, hidden 512, out 128            | fc1_w (hidden, width), fc1_b (hidden,), fc2_w (out, hidden), fc2_b (out,) |
    | `block`       | batch 4, width 256, hidden 1024                    | ln1_norm_w/_b (width,), fc1_w (hidden, width), fc1_b, fc2_w (width, hidden), fc2_b, ln2_norm_w/_b |
    | `transformer` | batch 4, seq 128, width 512, heads 8, hidden 2048, layers 6 | per layer i: l{i}.in_proj_w (3 width, width) packed q,k,v, l{i}.in_proj_b, l{i}.out_proj_w (width, width), l{i}.out_proj_b, l{i}.fc1_w (hidden, width), l{i}.fc1_b, l{i}.fc2_w (width, hidden), l{i}.fc2_b, l{i}.ln1_norm_w/_b, l{i}.ln2_norm_w/_b |
    | `matmul` (the probe) | batch n, n                                  | w (n, n); y = x @ w.T                    |

    mlp = fc2(relu(fc1(x))); block = ln2(fc2(gelu_exact(fc1(ln1(x))))); transformer = post-norm encoder
    layers (x = ln1(x + attention(x)); x = ln2(x + fc2(relu(fc1(x))))), 8-head scaled dot-product attention,
    no mask. LayerNorm eps is 1e-5 over the last axis. The float64 truth is `workload.reference(params, x)`.

    The probe: build() is also called with the `matmul` workload to measure the device's achievable peak
    FLOP/s (%-of-peak). A backend that cannot or will not run it raises Unsupported in build(); the probe's
    cells are then reported unsupported and the other cells simply carry no %-of-peak. Likewise, raise
    Unsupported for any workload name you do not build, so that a workload added later is reported, not a crash.
    """
    name: str
    batch: int

    def knobs(self) -> dict[str, int]: ...
    def input_shape(self) -> tuple[int, ...]: ...
    def param_shapes(self) -> dict[str, tuple[int, ...]]: ...
    def reference(self, params: Weights, x: np.ndarray) -> np.ndarray: ...


class Unsupported(Exception):
    """A backend cannot run this (device, dtype, workload or mode); the message says why. The cell is then
    reported "unsupported" with that message: a result, not a failure."""


@dataclass(frozen=True)
class BackendOption:
    """One backend-specific setting, given as `--backend-option NAME.OPTION=VALUE` and handed to
    configure(options={OPTION: VALUE}). The core checks the value before any work starts."""
    help: str
    choices: tuple[str, ...] = ()   # the accepted values; empty means any whole number >= 0
    default: str = ""               # what applies when the option is not given (shown by `backends`)

    def check(self, value: str) -> str | None:
        """None when `value` is acceptable, else the reason (one line)."""
        if self.choices:
            return None if value in self.choices else f"expected one of {', '.join(self.choices)}"
        return None if value.isdigit() else "expected a whole number >= 0"


class Backend(ABC):
    """One framework. threadbench creates one instance per cell process (and per listing); methods are
    called in this order: device_status -> configure -> describe -> build -> to_device -> (forward ->
    synchronize)* -> to_numpy, with concat/split in batched mode and stream in streams mode."""

    #: the registered name (entry-point name of a plug-in): must be equal, or the registry refuses the class
    name: ClassVar[str]
    #: devices in order of preference; the first available one is the default ("cpu", "cuda", "gpu", "mps")
    devices: ClassVar[tuple[str, ...]]
    #: dtypes it can run (from DTYPES); a parity case and a --dtype cell exist for each
    dtypes: ClassVar[tuple[str, ...]] = ("float32",)
    #: float32 matmul settings configure() can apply ("highest" = true fp32, "high" = TF32-class); a backend
    #: with none runs float32 as its framework decides, recorded as "native" (describe() says what that is)
    fp32_precisions: ClassVar[tuple[str, ...]] = ()
    #: backend-specific settings accepted by configure(options=...): OPTION -> BackendOption
    options: ClassVar[Mapping[str, BackendOption]] = {}
    #: failures of the framework itself that are known and understood: (text in the failed cell's cause, what
    #: a reader should know: where it is reported, what avoids it and how that was measured); the findings
    #: append it to a failed cell whose cause holds the text
    known_failures: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: synchronize() on an accelerator only waits for the device's work and does none of its own, so CPU time a
    #: thread spends in it is the framework spin-waiting (CUDA's default schedule spins while the process has
    #: fewer CUDA contexts than cores): the time split counts it as waiting for the device, not as the thread's
    #: own work. False where synchronize() does the work (MLX evaluates its lazy graph there: encoding and
    #: launching kernels) or where it is not known
    sync_waits: ClassVar[bool] = False
    #: devices on which the framework's calls are synchronous (the call returns once its outputs exist, and
    #: synchronize() does nothing there): the timed loop calls neither synchronize() nor a clock between the
    #: two, and counts the whole op as the call (compare.measure.schedule.timed_loop). Empty where not known.
    #: Read through is_synchronous(): a subclass that overrides synchronize() must declare it again
    synchronous_on: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def is_synchronous(cls, device: str) -> bool:
        """Whether `device` is in synchronous_on, as declared beside the synchronize() this class runs: a
        subclass that overrides synchronize() (it waits for something after all) without declaring
        synchronous_on again is not taken at its parent's word."""
        declared = next(c for c in cls.__mro__ if "synchronous_on" in c.__dict__)
        defines = next(c for c in cls.__mro__ if "synchronize" in c.__dict__)
        return device in cls.synchronous_on and issubclass(declared, defines)

    # -- availability ------------------------------------------------------------------------------
    @abstractmethod
    def device_status(self) -> dict[str, str | None]:
        """For every device in `devices`: None when usable here, else the reason it is not (one line, e.g.
        "cuda: no NVIDIA GPU visible"). Must not raise when the framework is missing: say so instead."""

    def available_devices(self) -> list[str]:
        return [d for d, why in self.device_status().items() if why is None]

    def default_device(self) -> str | None:
        devices = self.available_devices()
        return devices[0] if devices else None

    def configure(self, *, fp32_precision: str = "highest", intra_op_threads: int | None = None,
                  options: Mapping[str, str] | None = None) -> None:
        """Process-wide settings, applied once per cell process before describe() and build().

        fp32_precision: one of `fp32_precisions`, or "native" when the backend declares none; for a dtype
        other than float32 it is the first requested setting and may be ignored. intra_op_threads: the
        math library's threads per op (None = the framework's default). options: the cell's
        `--backend-option` values for this backend, OPTION -> VALUE (strings, already checked against
        `options`). `options` is passed only when the cell has some, so a configure() written before it
        existed (without the parameter) keeps working; a backend that declares `options` must accept it."""

    def effective_precision(self, device: str, dtype: str, fp32_precision: str) -> str:
        """What the matmuls really compute in: "fp64", "fp32" (exact), "tf32", "bf16" or "fp16". Ratios
        between backends are like-for-like only at equal effective precision, and the output check's
        tolerance follows it. Override where the framework differs (MLX on CUDA runs float32 as TF32)."""
        if dtype == "float32":
            return "tf32" if fp32_precision == "high" else "fp32"
        return {"float64": "fp64", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)

    # -- the model ------------------------------------------------------------------------------
    @abstractmethod
    def build(self, workload: WorkloadSpec, params: Weights, device: str, dtype: str) -> Model:
        """A callable running `workload`'s forward (eval mode) with these weights, cast to `dtype`, on
        `device`. It must accept inputs of any leading batch size: `workload.batch` is the size it will
        mostly see, but batched mode feeds it concat() of 1..max-batch requests. The same model is called
        from many threads at once. Raise Unsupported for a workload, dtype or device it cannot run (see
        WorkloadSpec for the probe)."""

    @abstractmethod
    def to_device(self, x: np.ndarray, device: str, dtype: str) -> DeviceArray:
        """A float32 numpy input (batch first) as a device array in dtype; called on the main thread before
        timing, then synchronize()d."""

    def forward(self, model: Model, x: DeviceArray) -> DeviceArray:
        """One request: the op that is timed (with synchronize). Called from many threads at once."""
        return model(x)

    @abstractmethod
    def synchronize(self, out: DeviceArray, device: str) -> None:
        """Return only once `out` (and the work producing it, on this thread's stream) has completed. An op
        counts only after this returns, so an asynchronous framework must really wait here."""

    @abstractmethod
    def to_numpy(self, out: DeviceArray) -> np.ndarray:
        """An output back on the host as a float64 numpy array (for the check against the reference)."""

    # -- modes ----------------------------------------------------------------------------------
    def stream(self, device: str) -> ContextManager:
        """Called inside each worker thread of streams mode: a context in which this thread's work runs on
        its own stream. Raise Unsupported (the default) when the framework has none."""
        raise Unsupported(f"{self.name} has no per-thread streams")

    @abstractmethod
    def concat(self, xs: list[DeviceArray]) -> DeviceArray:
        """Batched mode: the requests' device inputs joined along axis 0 (batch = the sum of theirs), on the
        batcher's thread."""

    @abstractmethod
    def split(self, y: DeviceArray, sizes: list[int]) -> list[DeviceArray]:
        """Batched mode: a batched output cut along axis 0 into len(sizes) pieces of sizes[i] rows, in order.
        Each piece is handed to another thread, which synchronizes and reads it: it must be usable there."""

    # -- description ----------------------------------------------------------------------------
    @abstractmethod
    def describe(self, device: str) -> dict[str, Any]:
        """The environment recorded with every result: framework, version, device_name, math_library,
        intra_op_threads (the value in force, or None), warnings (list of str); optionally fp32_precision."""

    def peak_device_memory(self, device: str) -> int | None:
        """Peak device memory in bytes since the process started (or since reset_peak_device_memory), where
        the framework exposes it."""
        return None

    def device_timer(self, device: str) -> "DeviceTimer | None":
        """Device time per request, where the framework can measure it on the request's own stream (torch on
        CUDA: events); None (the default) where it cannot, and describe() then says so under "device_time".
        Called once per measuring process, on its main thread; the timer is then used from every thread."""
        return None

    def reset_peak_device_memory(self, device: str) -> None:
        """Start the peak of peak_device_memory again from now (optional): a worker process measures several
        cells, and each reports its own peak."""

    def close(self) -> None:
        """Release what build() took (optional)."""


@runtime_checkable
class DeviceTimer(Protocol):
    """What Backend.device_timer() returns. The timed loop calls, on a sampled subset of ops and in the
    thread that runs the op: mark = start() just before forward(), stop(mark) just after it returns (before
    synchronize()), and, after the window (outside the clock, on any thread), elapsed(mark). A timer that
    knows how busy the whole device was also gives busy(); the per-cell figure is then its own, not NVML's.

    Meaning of elapsed(): the device time between the two marks on the request's stream (CUDA events: from
    when the stream reached the first mark to when it passed the second). On a stream other threads share,
    that span holds whatever they queued between the marks, and device idle time while the host was slow."""

    def start(self) -> Any:
        """A mark on the calling thread's current stream, just before forward()."""

    def stop(self, mark: Any) -> None:
        """The end mark, on the same thread and stream, just after forward() returned."""

    def elapsed(self, mark: Any) -> float | None:
        """Seconds of device time between the marks (after synchronize() returned); None when not known."""

    def busy(self) -> float | None:
        """Seconds the whole device has been busy so far (any monotone origin), or None (not known)."""


def apply_configure(backend: Backend, fp32_precision: str, intra_op_threads: int | None,
                    options: Mapping[str, str] | None) -> None:
    """Call backend.configure() as the contract promises: `options` only when there are some (a plug-in
    written before options existed has no such parameter)."""
    kwargs: dict[str, Any] = {"fp32_precision": fp32_precision, "intra_op_threads": intra_op_threads}
    if options:
        kwargs["options"] = dict(options)
    backend.configure(**kwargs)


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
