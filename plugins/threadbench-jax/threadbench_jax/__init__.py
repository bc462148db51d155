"""JAX backend for threadbench, a plug-in registered through the `threadbench.backends` entry point.

Devices gpu (CUDA/ROCm jaxlib plug-ins) and cpu. jax is imported lazily, inside methods only, so listing
backends stays framework-free. Each model is one jit-compiled pure function of (weights, x); build()
returns it with the weights, already placed on the device, bound in.
"""
from __future__ import annotations

import math
from importlib.metadata import entry_points

import numpy as np

from backends.base import Backend, Unsupported, check_dtype, cpu_model

LN_EPS = 1e-5
# threadbench's fp32_precision (torch's vocabulary) -> jax_default_matmul_precision
PRECISION = {"highest": "highest", "high": "tensorfloat32", "medium": "bfloat16"}


# -- forwards: pure functions of (workload, weights, x), written in jax.numpy --------------------------
def _linear(p, name, x):
    w, b = p[f"{name}_w"], p.get(f"{name}_b")
    y = x @ w.T  # Linear weights are out x in
    return y if b is None else y + b


def _layer_norm(p, name, x):
    import jax.numpy as jnp
    mean = x.mean(axis=-1, keepdims=True)
    var = jnp.square(x - mean).mean(axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + LN_EPS) * p[f"{name}_norm_w"] + p[f"{name}_norm_b"]


def _mlp(w, p, x):
    import jax
    return _linear(p, "fc2", jax.nn.relu(_linear(p, "fc1", x)))


def _block(w, p, x):
    import jax
    h = _layer_norm(p, "ln1", x)
    h = _linear(p, "fc2", jax.nn.gelu(_linear(p, "fc1", h), approximate=False))
    return _layer_norm(p, "ln2", h)


def _transformer(w, p, x):
    import jax
    import jax.numpy as jnp
    b, s, d = x.shape
    hd = d // w.heads
    for i in range(w.layers):  # post-norm encoder layers, as workloads/transformer.py's reference
        qkv = _linear(p, f"l{i}.in_proj", x)  # packed q, k, v: 3d x d
        q, k, v = (t.reshape(b, s, w.heads, hd).transpose(0, 2, 1, 3) for t in jnp.split(qkv, 3, axis=-1))
        att = jax.nn.softmax(q @ k.swapaxes(-1, -2) / math.sqrt(hd), axis=-1)
        out = (att @ v).transpose(0, 2, 1, 3).reshape(b, s, d)
        x = _layer_norm(p, f"l{i}.ln1", x + _linear(p, f"l{i}.out_proj", out))
        ff = _linear(p, f"l{i}.fc2", jax.nn.relu(_linear(p, f"l{i}.fc1", x)))
        x = _layer_norm(p, f"l{i}.ln2", x + ff)
    return x


def _matmul(w, p, x):
    return x @ p["w"].T


FORWARDS = {"mlp": _mlp, "block": _block, "transformer": _transformer, "matmul": _matmul,
            "launch": _matmul}  # the launch-rate probe is a tiny matmul


class JaxBackend(Backend):
    name = "jax"
    devices = ("gpu", "cpu")
    dtypes = ("float32", "bfloat16", "float16")
    fp32_precisions = ("highest", "high")
    sync_waits = True   # block_until_ready: a wait for the output, no work of its own

    def __init__(self):
        self._warnings: list[str] = []

    @staticmethod
    def _jax():
        import jax
        import jax.numpy  # noqa: F401  (jax.numpy used as an attribute below)
        return jax

    def device_status(self):
        try:
            jax = self._jax()
        except ImportError as e:
            why = f"jax is not installed ({e}); pip install threadbench-jax"
            return {d: why for d in self.devices}
        try:
            jax.devices("gpu")
            gpu = None
        except RuntimeError:
            plugins = [ep.name for ep in entry_points(group="jax_plugins")]
            if any("cuda" in n or "rocm" in n for n in plugins):
                gpu = "gpu: JAX's GPU plug-in is installed but sees no usable GPU or driver"
            else:
                gpu = "gpu: this jaxlib has no CUDA/ROCm GPU support (pip install 'jax[cuda12]' or 'jax[cuda13]')"
        return {"gpu": gpu, "cpu": None}

    def configure(self, *, fp32_precision="highest", intra_op_threads=None):
        if fp32_precision not in PRECISION:
            raise ValueError(f"fp32_precision must be one of {', '.join(PRECISION)}, not {fp32_precision!r}")
        self._jax().config.update("jax_default_matmul_precision", PRECISION[fp32_precision])
        if intra_op_threads:
            self._warnings.append(f"intra_op_threads={intra_op_threads} ignored: XLA:CPU's thread pool is "
                                  "sized by XLA_FLAGS before jax starts")

    def _device(self, device):
        return self._jax().devices(device)[0]

    def _dtype(self, dtype):
        check_dtype(self, dtype)
        return self._jax().numpy.dtype(dtype)

    # -- the model ------------------------------------------------------------------------------
    def build(self, workload, params, device, dtype):
        jax = self._jax()
        forward = FORWARDS.get(workload.name)
        if forward is None:
            raise Unsupported(f"jax backend has no {workload.name!r} workload")
        jdtype, dev = self._dtype(dtype), self._device(device)
        weights = {k: jax.device_put(np.asarray(v, dtype=jdtype), dev) for k, v in params.items()}
        # Weights are an argument, not closed over, so XLA does not bake them into the program as constants.
        jitted = jax.jit(lambda p, x: forward(workload, p, x))

        def run(x):
            return jitted(weights, x)
        run.jitted, run.weights = jitted, weights
        return run

    def to_device(self, x, device, dtype):
        return self._jax().device_put(np.asarray(x, dtype=self._dtype(dtype)), self._device(device))

    def synchronize(self, out, device):
        out.block_until_ready()  # waits for this output only, releasing the GIL

    def to_numpy(self, out):
        return np.asarray(out.astype(np.float32), dtype=np.float64)

    # -- modes ----------------------------------------------------------------------------------
    def stream(self, device):
        raise Unsupported("jax has no per-thread stream API: XLA schedules each device's work on streams "
                          "it manages itself")

    def concat(self, xs):
        return self._jax().numpy.concatenate(xs, axis=0)

    def split(self, y, sizes):
        return self._jax().numpy.split(y, np.cumsum(sizes)[:-1].tolist(), axis=0)

    # -- description ----------------------------------------------------------------------------
    def describe(self, device):
        jax = self._jax()
        dev = self._device(device)
        precision = jax.config.jax_default_matmul_precision or "default"
        warnings = list(self._warnings)
        if device == "cpu":
            name, math_library = cpu_model(), "XLA:CPU (Eigen/oneDNN)"
        else:
            name = dev.device_kind
            rocm = "rocm" in str(getattr(dev.client, "platform_version", "")).lower()  # dev.platform is "gpu"
            math_library = "XLA:GPU (hipBLAS/MIOpen)" if rocm else "XLA:GPU (cuBLAS/cuDNN)"
            if precision not in ("highest", "float32", "F32_F32_F32"):
                warnings.append(f"jax_default_matmul_precision={precision}: float32 matmuls may run as TF32")
        return {"framework": "jax", "version": jax.__version__, "device_name": name,
                "math_library": math_library, "intra_op_threads": None, "fp32_precision": precision,
                "thread_streams": "no stream API: every thread dispatches to the device's one XLA queue"
                if device != "cpu" else "no streams: XLA:CPU runs each call on its own thread pool",
                "warnings": warnings, "execution": "one jit-compiled XLA program per forward",
                "compilation_cache": self.compilation_cache()}

    def compilation_cache(self) -> str | None:
        """Where JAX's persistent compilation cache is (JAX_COMPILATION_CACHE_DIR), or None when it is off.
        With it, a program an earlier process compiled (another shard, another round) is loaded from disk,
        autotuned kernel choices included, instead of compiled again: start-up only, outside every window."""
        jax = self._jax()
        folder = jax.config.jax_compilation_cache_dir
        return folder if folder and jax.config.jax_enable_compilation_cache else None

    def peak_device_memory(self, device):
        stats = self._device(device).memory_stats()  # None on cpu
        peak = (stats or {}).get("peak_bytes_in_use")
        return None if peak is None else int(peak)


__all__ = ["JaxBackend"]
