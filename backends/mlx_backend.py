"""MLX backend: devices gpu (Metal on macOS, CUDA on Linux with mlx[cuda13]) and cpu. mlx is imported lazily."""
from __future__ import annotations

import os
import platform

import numpy as np

from .base import Backend, Unsupported, check_dtype, cpu_model

LINUX_CPU_WARNING = ("MLX's Linux CPU build uses a slow reference BLAS (a few GFLOP/s for matmul): its CPU "
                     "figures measure that build, not MLX on Apple silicon or a GPU")


# how a request's device time is measured here (describe() records it): MLX's Python API has no timer on a
# stream, so the split sees a request as its graph building (the call) and mx.eval (synchronise), which holds
# the evaluation on MLX's own threads or the GPU and MLX's scheduling of it; on CUDA, NVML gives the busy share
DEVICE_TIME = ("not measured: MLX exposes no per-stream timer (the nearest is a Metal capture or an nsys trace "
               "outside the cell); synchronise (mx.eval) holds the device's time and MLX's scheduling")


class MlxBackend(Backend):
    name = "mlx"
    devices = ("gpu", "cpu")
    dtypes = ("float32", "bfloat16", "float16")
    known_failures = (
        ("cudaStreamEndCapture", "known: MLX-CUDA's graph capture with several threads (ml-explore/mlx#4506); "
         "MLX_USE_CUDA_GRAPHS=0 avoided it in 12 of 12 cell processes on an H100 (results/supplementary/NOTES.md)"),
    )

    @staticmethod
    def _mx():
        import mlx.core as mx
        return mx

    def device_status(self):
        try:
            mx = self._mx()
        except ImportError as e:
            why = f"mlx is not installed ({e}); pip install 'threadbench[mlx]'"
            return {d: why for d in self.devices}
        if mx.is_available(mx.gpu):
            gpu = None
        elif platform.system() == "Darwin":
            gpu = "gpu: Metal is not available (needs Apple silicon)"
        else:
            gpu = "gpu: this MLX build has no GPU support (Metal needs macOS on Apple silicon; CUDA needs mlx[cuda13])"
        return {"gpu": gpu, "cpu": None}

    def _device(self, device):
        mx = self._mx()
        return {"gpu": mx.gpu, "cpu": mx.cpu}[device]

    def _dtype(self, dtype):
        check_dtype(self, dtype)
        return getattr(self._mx(), dtype)

    # -- models ---------------------------------------------------------------------------------
    def build(self, workload, params, device, dtype):
        mx = self._mx()
        import mlx.nn as nn
        mdtype = self._dtype(dtype)
        mx.set_default_device(self._device(device))  # the worker process runs one device
        builder = getattr(self, f"_build_{workload.name}", None)
        if builder is None:
            raise Unsupported(f"mlx backend has no {workload.name!r} workload")
        module, weights = builder(nn, workload, params)
        module.load_weights([(k, mx.array(v).astype(mdtype)) for k, v in weights.items()], strict=True)
        module.eval()
        mx.eval(module.parameters())
        return module

    @staticmethod
    def _build_mlp(nn, w, p):
        m = nn.Sequential(nn.Linear(w.width, w.hidden), nn.ReLU(), nn.Linear(w.hidden, w.out))
        return m, {"layers.0.weight": p["fc1_w"], "layers.0.bias": p["fc1_b"],
                   "layers.2.weight": p["fc2_w"], "layers.2.bias": p["fc2_b"]}

    @staticmethod
    def _build_block(nn, w, p):
        m = nn.Sequential(nn.LayerNorm(w.width), nn.Linear(w.width, w.hidden), nn.GELU(approx="none"),
                          nn.Linear(w.hidden, w.width), nn.LayerNorm(w.width))
        keys = {"layers.0.weight": "ln1_norm_w", "layers.0.bias": "ln1_norm_b", "layers.1.weight": "fc1_w",
                "layers.1.bias": "fc1_b", "layers.3.weight": "fc2_w", "layers.3.bias": "fc2_b",
                "layers.4.weight": "ln2_norm_w", "layers.4.bias": "ln2_norm_b"}
        return m, {k: p[v] for k, v in keys.items()}

    @staticmethod
    def _build_transformer(nn, w, p):
        # mlx.nn.TransformerEncoderLayer is pre-norm by default and its attention has no biases, so the
        # post-norm layer torch computes is assembled here from mlx.nn parts.
        class PostNormLayer(nn.Module):
            def __init__(self):
                super().__init__()
                self.attention = nn.MultiHeadAttention(w.width, w.heads, bias=True)
                self.ln1 = nn.LayerNorm(w.width)
                self.ln2 = nn.LayerNorm(w.width)
                self.linear1 = nn.Linear(w.width, w.hidden)
                self.linear2 = nn.Linear(w.hidden, w.width)

            def __call__(self, x):
                x = self.ln1(x + self.attention(x, x, x))
                return self.ln2(x + self.linear2(nn.relu(self.linear1(x))))

        class Encoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = [PostNormLayer() for _ in range(w.layers)]

            def __call__(self, x):
                for layer in self.layers:
                    x = layer(x)
                return x

        weights = {}
        for i in range(w.layers):
            q, k, v = np.split(p[f"l{i}.in_proj_w"], 3, axis=0)
            qb, kb, vb = np.split(p[f"l{i}.in_proj_b"], 3)
            pre = f"layers.{i}."
            weights.update({
                pre + "attention.query_proj.weight": q, pre + "attention.query_proj.bias": qb,
                pre + "attention.key_proj.weight": k, pre + "attention.key_proj.bias": kb,
                pre + "attention.value_proj.weight": v, pre + "attention.value_proj.bias": vb,
                pre + "attention.out_proj.weight": p[f"l{i}.out_proj_w"],
                pre + "attention.out_proj.bias": p[f"l{i}.out_proj_b"],
                pre + "linear1.weight": p[f"l{i}.fc1_w"], pre + "linear1.bias": p[f"l{i}.fc1_b"],
                pre + "linear2.weight": p[f"l{i}.fc2_w"], pre + "linear2.bias": p[f"l{i}.fc2_b"],
                pre + "ln1.weight": p[f"l{i}.ln1_norm_w"], pre + "ln1.bias": p[f"l{i}.ln1_norm_b"],
                pre + "ln2.weight": p[f"l{i}.ln2_norm_w"], pre + "ln2.bias": p[f"l{i}.ln2_norm_b"],
            })
        return Encoder(), weights

    @staticmethod
    def _build_matmul(nn, w, p):
        return nn.Linear(w.n, w.n, bias=False), {"weight": p["w"]}

    _build_launch = _build_matmul  # the launch-rate probe is a tiny matmul (workloads/launch.py)

    # -- data and sync -------------------------------------------------------------------------
    def to_device(self, x, device, dtype):
        mx = self._mx()
        out = mx.array(np.ascontiguousarray(x)).astype(self._dtype(dtype))
        mx.eval(out)
        return out

    def synchronize(self, out, device):
        # Evaluate the outputs: MLX is lazy, and mx.synchronize() holds the GIL while it waits.
        self._mx().eval(out)

    def to_numpy(self, out):
        mx = self._mx()
        return np.array(out.astype(mx.float32), dtype=np.float64)

    def stream(self, device):
        mx = self._mx()
        dev = self._device(device)
        # Streams are bound to the thread that made them; this runs inside the worker thread.
        new = getattr(mx, "new_thread_local_stream", None) or mx.new_stream
        return mx.stream(new(dev))

    def concat(self, xs):
        return self._mx().concatenate(xs, axis=0)

    def split(self, y, sizes):
        mx = self._mx()
        parts = mx.split(y, np.cumsum(sizes)[:-1].tolist(), axis=0)
        mx.eval(parts)  # materialise here: lazy slices would be evaluated on the client's thread and stream
        return parts

    # -- description ----------------------------------------------------------------------------
    def effective_precision(self, device, dtype, fp32_precision):
        # no switch: MLX on CUDA runs float32 matmuls as TF32; on Metal and the CPU they are float32
        if dtype == "float32" and device == "gpu" and platform.system() != "Darwin":
            return "tf32"
        return super().effective_precision(device, dtype, "highest")

    def describe(self, device):
        mx = self._mx()
        # MLX has no float32 matmul precision switch; on CUDA its float32 matmuls run as TF32
        try:
            info = mx.device_info()
        except Exception:  # older MLX: metal-only API
            info = {}
        warnings = []
        system = platform.system()
        if device == "cpu":
            name = cpu_model()
            if system == "Linux":
                math = "MLX Linux CPU build (reference BLAS)"
                warnings.append(LINUX_CPU_WARNING)
            else:
                math = "Accelerate"
        else:
            name = str(info.get("device_name") or info.get("architecture") or "gpu")
            math = "Metal (MLX kernels)" if system == "Darwin" else "CUDA (cuBLAS via MLX)"
            if system == "Darwin":
                warnings.append("mlx Metal path is written from documentation and unverified on this hardware")
            else:
                warnings.append("MLX on CUDA runs float32 matmuls as TF32: compare its measured error")
        import mlx
        fp32 = "TF32 matmuls (no switch)" if device == "gpu" and system != "Darwin" else "float32 (no switch)"
        return {"framework": "mlx", "version": getattr(mlx.core, "__version__", "?"), "device_name": name,
                "math_library": math, "intra_op_threads": None, "fp32_precision": fp32,
                "intra_op_note": "MLX has no intra-op threads setting (--intra-op-threads is not applied)",
                "thread_streams": "each thread has its own default stream (MLX streams are thread-local)"
                if device == "gpu" else "no streams on cpu: each thread's ops run on MLX's cpu stream of that thread",
                "device_time": DEVICE_TIME, "warnings": warnings, "execution": _execution(device, system)}

    def peak_device_memory(self, device):
        if device != "gpu":
            return None
        return int(self._mx().get_peak_memory())

    def reset_peak_device_memory(self, device):
        if device == "gpu":
            self._mx().reset_peak_memory()


def _execution(device: str, system: str) -> str:
    """How MLX runs a forward: lazily built graphs evaluated at mx.eval; on CUDA it also captures them as CUDA
    graphs unless MLX_USE_CUDA_GRAPHS turns that off (MLX reads it once, default on)."""
    if device != "gpu" or system == "Darwin":
        return "lazy graph, evaluated at mx.eval"
    on = os.environ.get("MLX_USE_CUDA_GRAPHS", "1").strip().lower() not in ("0", "false", "off", "no")
    return ("lazy graph, evaluated at mx.eval, captured as CUDA graphs (MLX_USE_CUDA_GRAPHS, MLX's default)" if on
            else "lazy graph, evaluated at mx.eval, no CUDA graphs (MLX_USE_CUDA_GRAPHS=0)")
