"""PyTorch backend: devices mps, cuda, cpu (in that order of preference). torch is imported lazily."""
from __future__ import annotations

import platform

import numpy as np

from .base import Backend, Unsupported, check_dtype, cpu_model, is_apple_silicon

# threadbench's neutral parameter names -> torch's state_dict names, per transformer layer
_LAYER_KEYS = {
    "in_proj_w": "self_attn.in_proj_weight", "in_proj_b": "self_attn.in_proj_bias",
    "out_proj_w": "self_attn.out_proj.weight", "out_proj_b": "self_attn.out_proj.bias",
    "fc1_w": "linear1.weight", "fc1_b": "linear1.bias", "fc2_w": "linear2.weight", "fc2_b": "linear2.bias",
    "ln1_norm_w": "norm1.weight", "ln1_norm_b": "norm1.bias", "ln2_norm_w": "norm2.weight",
    "ln2_norm_b": "norm2.bias",
}


# what `threads` means here, per device (tables print it: torch and MLX threads differ on a GPU)
THREAD_STREAMS = {
    "cuda": "threads share the current (default) CUDA stream; `streams` gives each its own",
    "mps": "threads share MPS's one command queue",
    "cpu": "no streams: each thread runs its ops on itself, with an intra-op (OpenMP) pool of its own",
}


# how a request's device time is measured here, per device (describe() records it)
DEVICE_TIME = {
    "cuda": "CUDA events (torch.cuda.Event, timing) recorded on the request's current stream before and after "
            "its forward, on sampled ops, read after synchronise; a shared stream's span holds the other threads' "
            "work queued between them, and a host part inside the forward (checked on an H100 and the H200 against "
            "torch.profiler's kernels, and against a known 8 ms kernel: benchmarks/README.md)",
    "mps": "not measured: torch.mps.Event is not used (MPS runs one command queue); NVML-like busy shares do not "
           "exist on macOS either",
    "cpu": "none: on the CPU the device's time is the framework call's (the split's call and CPU time)",
}


class CudaEvents:
    """torch's device timer on CUDA (backends.base.DeviceTimer): a pair of timing events per sampled op,
    recorded on the calling thread's current stream (its own in streams mode), read after synchronise.
    The device's busy share is not known from them (they time a span, not the kernels): NVML's stands in."""

    def __init__(self, torch):
        self.torch = torch

    def start(self):
        begin, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
        begin.record()   # no stream given: torch.cuda.current_stream(), which is this thread's
        return begin, end

    def stop(self, mark) -> None:
        mark[1].record()

    def elapsed(self, mark) -> float | None:
        try:
            return mark[0].elapsed_time(mark[1]) / 1e3   # ms
        except RuntimeError:  # not recorded or not completed: no figure rather than a wrong one
            return None

    def busy(self) -> None:
        return None


class TorchBackend(Backend):
    name = "torch"
    devices = ("mps", "cuda", "cpu")
    dtypes = ("float32", "bfloat16", "float16")
    fp32_precisions = ("highest", "high")
    # cudaStreamSynchronize / torch.mps.synchronize: a wait; on the H100 a thread in it ran on its CPU clock for
    # 7.76 of the 7.76 ms it waited for an 8 ms kernel (tests/split_plugin's split-cudadevice, ×1)
    sync_waits = True
    synchronous_on = ("cpu",)   # eager CPU ops: the result exists when the call returns

    def __init__(self):
        self._precision = "highest"
        self._intra_op_threads = None

    @staticmethod
    def _torch():
        import torch
        return torch

    def device_status(self):
        try:
            torch = self._torch()
        except ImportError as e:
            why = f"torch is not installed ({e}); pip install 'threadbench[torch]'"
            return {d: why for d in self.devices}
        status = {}
        if not is_apple_silicon():
            status["mps"] = "mps: needs macOS on Apple silicon"
        elif not torch.backends.mps.is_available():
            status["mps"] = "mps: this torch build or macOS version has no MPS support"
        else:
            status["mps"] = None
        if torch.cuda.is_available():
            status["cuda"] = None
        elif torch.version.cuda is None:
            status["cuda"] = "cuda: this torch is a CPU-only build"
        else:
            status["cuda"] = "cuda: no NVIDIA GPU or driver visible"
        status["cpu"] = None
        return status

    def configure(self, *, fp32_precision="highest", intra_op_threads=None):
        torch = self._torch()
        if fp32_precision in self.fp32_precisions:
            torch.set_float32_matmul_precision(fp32_precision)
        self._precision = fp32_precision
        self._intra_op_threads = intra_op_threads
        if intra_op_threads:
            torch.set_num_threads(intra_op_threads)

    def configure_thread(self):
        """Called first in every measuring thread. torch.set_num_threads() in the main thread does not reach
        the math of other threads: measured on the 2-core EPYC with set_num_threads(1) in the main thread, an
        mlp forward ran at 500 ops/s in a second thread and at 4,200 once that thread set it too."""
        if self._intra_op_threads:
            self._torch().set_num_threads(self._intra_op_threads)

    def effective_precision(self, device, dtype, fp32_precision):
        # "high" allows TF32, which only CUDA has: on this CPU (AMD EPYC) "high" measured the same float32
        # errors as "highest" (at most 3.8e-7 over mlp, block and transformer), so on cpu it stays exact fp32
        if dtype == "float32" and device == "cpu":
            return "fp32"
        return super().effective_precision(device, dtype, fp32_precision)

    def _dtype(self, dtype):
        check_dtype(self, dtype)
        return getattr(self._torch(), dtype)

    # -- models ---------------------------------------------------------------------------------
    def build(self, workload, params, device, dtype):
        torch = self._torch()
        nn = torch.nn
        tdtype = self._dtype(dtype)
        builder = getattr(self, f"_build_{workload.name}", None)
        if builder is None:
            raise Unsupported(f"torch backend has no {workload.name!r} workload")
        module, state = builder(nn, workload, params)
        module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
        module = module.to(device=device, dtype=tdtype).eval()
        module.requires_grad_(False)

        def run(x):
            with torch.inference_mode():
                return module(x)
        run.module = module
        return run

    @staticmethod
    def _build_mlp(nn, w, p):
        m = nn.Sequential(nn.Linear(w.width, w.hidden), nn.ReLU(), nn.Linear(w.hidden, w.out))
        return m, {"0.weight": p["fc1_w"], "0.bias": p["fc1_b"], "2.weight": p["fc2_w"], "2.bias": p["fc2_b"]}

    @staticmethod
    def _build_block(nn, w, p):
        m = nn.Sequential(nn.LayerNorm(w.width), nn.Linear(w.width, w.hidden), nn.GELU(approximate="none"),
                          nn.Linear(w.hidden, w.width), nn.LayerNorm(w.width))
        keys = {"0.weight": "ln1_norm_w", "0.bias": "ln1_norm_b", "1.weight": "fc1_w", "1.bias": "fc1_b",
                "3.weight": "fc2_w", "3.bias": "fc2_b", "4.weight": "ln2_norm_w", "4.bias": "ln2_norm_b"}
        return m, {k: p[v] for k, v in keys.items()}

    @staticmethod
    def _build_transformer(nn, w, p):
        layer = nn.TransformerEncoderLayer(w.width, w.heads, dim_feedforward=w.hidden, dropout=0.0,
                                           activation="relu", batch_first=True, norm_first=False)
        m = nn.TransformerEncoder(layer, w.layers, enable_nested_tensor=False)
        state = {f"layers.{i}.{theirs}": p[f"l{i}.{ours}"]
                 for i in range(w.layers) for ours, theirs in _LAYER_KEYS.items()}
        return m, state

    @staticmethod
    def _build_matmul(nn, w, p):
        return nn.Linear(w.n, w.n, bias=False), {"weight": p["w"]}

    _build_launch = _build_matmul  # the launch-rate probe is a tiny matmul (workloads/launch.py)

    # -- data and sync -------------------------------------------------------------------------
    def to_device(self, x, device, dtype):
        torch = self._torch()
        return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=self._dtype(dtype))

    def synchronize(self, out, device):
        torch = self._torch()
        if device == "cuda":
            torch.cuda.current_stream().synchronize()  # this thread's current stream, not the whole device
        elif device == "mps":
            torch.mps.synchronize()
        # cpu: ops are synchronous

    def to_numpy(self, out):
        return out.detach().to("cpu", dtype=self._torch().float64).numpy()

    def stream(self, device):
        torch = self._torch()
        if device == "cuda":
            return torch.cuda.stream(torch.cuda.Stream())
        if device == "mps":
            raise Unsupported("torch on mps has no per-thread streams in released torch (one command queue)")
        raise Unsupported("torch on cpu has no streams: CPU ops run synchronously on the calling thread")

    def concat(self, xs):
        return self._torch().cat(xs, dim=0)

    def split(self, y, sizes):
        return list(self._torch().split(y, sizes, dim=0))

    # -- description ----------------------------------------------------------------------------
    def describe(self, device):
        torch = self._torch()
        if device == "cuda":
            name = torch.cuda.get_device_name()
            math = f"cuBLAS (CUDA {torch.version.cuda})"
        elif device == "mps":
            name, math = f"Apple {platform.machine()} GPU", "Metal Performance Shaders"
        else:
            name = cpu_model()
            config = torch.__config__.show()
            math = "MKL" if "USE_MKL=ON" in config else ("OpenBLAS" if "OpenBLAS" in config else "torch CPU kernels")
            if "USE_MKLDNN=ON" in config:
                math += " + oneDNN"
        warnings = []
        if device == "mps":
            warnings.append("torch mps path is written from documentation and unverified on this hardware")
        return {
            "framework": "torch", "version": torch.__version__, "device_name": name, "math_library": math,
            "intra_op_threads": torch.get_num_threads(), "fp32_precision": torch.get_float32_matmul_precision(),
            "thread_streams": THREAD_STREAMS.get(device, THREAD_STREAMS["cpu"]),
            "device_time": DEVICE_TIME.get(device, DEVICE_TIME["cpu"]), "warnings": warnings,
            "execution": "eager: each op launched from Python as it runs (no torch.compile"
                         + (", no CUDA graphs)" if device == "cuda" else ")"),
        }

    def device_timer(self, device):
        return CudaEvents(self._torch()) if device == "cuda" else None

    def peak_device_memory(self, device):
        torch = self._torch()
        if device == "cuda":
            return int(torch.cuda.max_memory_allocated())
        if device == "mps":
            return int(torch.mps.driver_allocated_memory())
        return None

    def reset_peak_device_memory(self, device):
        if device == "cuda":
            self._torch().cuda.reset_peak_memory_stats()
