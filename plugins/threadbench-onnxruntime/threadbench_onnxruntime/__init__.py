"""ONNX Runtime backend for threadbench (backend name `ort`), a plug-in registered through the
`threadbench.backends` entry point.

Each workload is written as an ONNX graph with the `onnx` package's helpers (make_node, make_graph,
numpy_helper) from threadbench's shared weights - nothing is exported from another framework - and run by
one `onnxruntime.InferenceSession`, which is made for concurrent run() calls from many threads: every
Python thread of a cell calls the same session. onnx and onnxruntime are imported lazily, inside methods.

Devices cpu (the CPU execution provider) and cuda (onnxruntime-gpu's CUDA execution provider). Threading
is set per cell: intra-op threads (Cell.intra_op_threads) and the options `execution` (sequential or
parallel), `inter_op_threads` and `spinning`, e.g. `--backend-option ort.execution=parallel`.

This is not a converter: it knows the threadbench workloads only (GRAPHS), nothing else.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from backends.base import Backend, BackendOption, Unsupported, check_dtype, cpu_model

OPSET = 20          # LayerNormalization (17) and Gelu (20) are single ONNX ops from here on
IR_VERSION = 10     # the ONNX IR that opset 20 needs; onnxruntime >= 1.17 reads it
LN_EPS = 1e-5
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
EXECUTION = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}


# -- graphs: one builder per workload, writing ONNX nodes from the shared numpy weights -----------------
class Graph:
    """Nodes and initializers of one model under construction; every method returns its output's name."""

    def __init__(self, params, dtype: str):
        from onnx import TensorProto
        self.params, self.dtype = params, dtype
        self.elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16,
                     "bfloat16": TensorProto.BFLOAT16}[dtype]
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        from onnx import helper
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, hint: str, value: np.ndarray, keep_type: bool = False) -> str:
        """An initializer: weights in the model's dtype (keep_type: as given, e.g. int64 shapes)."""
        from onnx import helper, numpy_helper
        name = self.name(hint)
        value = np.asarray(value)
        if keep_type or self.dtype == "float32":
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value.astype(
                value.dtype if keep_type else np.float32)), name))
        elif self.dtype == "float16":
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value.astype(np.float16)), name))
        else:  # bfloat16: round float32 to nearest even, keep the upper 16 bits
            u = np.ascontiguousarray(value, dtype=np.float32).view(np.uint32)
            bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
            self.inits.append(helper.make_tensor(name, self.elem, value.shape, bits.tobytes(), raw=True))
        return name

    # -- layers -----------------------------------------------------------------------------------
    def linear(self, x: str, name: str) -> str:  # weights are out x in: y = x @ W.T + b
        w = self.const(f"{name}_wT", self.params[f"{name}_w"].T)
        return self.op("Add", self.op("MatMul", x, w), self.const(f"{name}_b", self.params[f"{name}_b"]))

    def layer_norm(self, x: str, name: str) -> str:
        return self.op("LayerNormalization", x, self.const(f"{name}_norm_w", self.params[f"{name}_norm_w"]),
                       self.const(f"{name}_norm_b", self.params[f"{name}_norm_b"]), axis=-1, epsilon=LN_EPS)

    def attention(self, x: str, i: int, heads: int, width: int) -> str:
        hd = width // heads
        qkv = self.linear(x, f"l{i}.in_proj")                                   # B x S x 3D, packed q, k, v
        split = self.const("qkv_sizes", np.array([width] * 3, dtype=np.int64), keep_type=True)
        from onnx import helper
        q, k, v = (self.name(t) for t in "qkv")
        self.nodes.append(helper.make_node("Split", [qkv, split], [q, k, v], axis=-1))
        heads_shape = self.const("heads_shape", np.array([0, 0, heads, hd], dtype=np.int64), keep_type=True)
        q, k, v = (self.op("Reshape", t, heads_shape) for t in (q, k, v))      # B x S x H x hd
        q = self.op("Transpose", q, perm=[0, 2, 1, 3])                          # B x H x S x hd
        k = self.op("Transpose", k, perm=[0, 2, 3, 1])                          # B x H x hd x S
        v = self.op("Transpose", v, perm=[0, 2, 1, 3])
        scores = self.op("Mul", self.op("MatMul", q, k), self.const("scale", np.array(1 / math.sqrt(hd))))
        out = self.op("MatMul", self.op("Softmax", scores, axis=-1), v)        # B x H x S x hd
        out = self.op("Transpose", out, perm=[0, 2, 1, 3])
        out = self.op("Reshape", out, self.const("width_shape", np.array([0, 0, width], dtype=np.int64), keep_type=True))
        return self.linear(out, f"l{i}.out_proj")


def _mlp(g: Graph, w, x: str) -> str:
    return g.linear(g.op("Relu", g.linear(x, "fc1")), "fc2")


def _block(g: Graph, w, x: str) -> str:
    h = g.op("Gelu", g.linear(g.layer_norm(x, "ln1"), "fc1"), approximate="none")
    return g.layer_norm(g.linear(h, "fc2"), "ln2")


def _transformer(g: Graph, w, x: str) -> str:  # post-norm encoder layers, as workloads/transformer.py
    for i in range(w.layers):
        x = g.layer_norm(g.op("Add", x, g.attention(x, i, w.heads, w.width)), f"l{i}.ln1")
        ff = g.linear(g.op("Relu", g.linear(x, f"l{i}.fc1")), f"l{i}.fc2")
        x = g.layer_norm(g.op("Add", x, ff), f"l{i}.ln2")
    return x


def _matmul(g: Graph, w, x: str) -> str:  # the peak probe: y = x @ w.T
    return g.op("MatMul", x, g.const("wT", g.params["w"].T))


GRAPHS: dict[str, Callable[[Graph, object, str], str]] = {
    "mlp": _mlp, "block": _block, "transformer": _transformer, "matmul": _matmul}


def model_proto(workload, params, dtype: str):
    """The ONNX model of `workload` in dtype, batch dimension symbolic. bfloat16 models take and return
    float32 (a Cast at each end): numpy has no bfloat16 for onnxruntime's inputs."""
    from onnx import TensorProto, checker, helper
    build = GRAPHS.get(workload.name)
    if build is None:
        raise Unsupported(f"ort backend has no {workload.name!r} workload")
    g = Graph(params, dtype)
    io_elem = TensorProto.FLOAT if dtype == "bfloat16" else g.elem
    shape = ["batch", *workload.input_shape()[1:]]
    x = g.op("Cast", "x", to=g.elem) if dtype == "bfloat16" else "x"
    y = build(g, workload, x)
    g.nodes.append(helper.make_node("Cast" if dtype == "bfloat16" else "Identity", [y], ["y"],
                                    **({"to": io_elem} if dtype == "bfloat16" else {})))
    graph = helper.make_graph(g.nodes, f"threadbench_{workload.name}",
                              [helper.make_tensor_value_info("x", io_elem, shape)],
                              [helper.make_tensor_value_info("y", io_elem, ["batch"] + [None] * (len(shape) - 1))], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="threadbench-onnxruntime")
    model.ir_version = IR_VERSION
    checker.check_model(model)
    return model


class OrtSession:
    """What build() returns: the session and its input/output names; called as model(x)."""

    def __init__(self, session, device: str):
        self.session, self.device = session, device

    def __call__(self, x):
        if self.device == "cpu":
            return self.session.run(["y"], {"x": x})[0]
        binding = self.session.io_binding()  # cuda: input and output stay on the device
        binding.bind_ortvalue_input("x", x)
        binding.bind_output("y", "cuda")
        self.session.run_with_iobinding(binding)  # returns once the CUDA stream has finished the run
        return binding.get_outputs()[0]


class OrtBackend(Backend):
    name = "ort"
    devices = ("cuda", "cpu")
    synchronous_on = ("cuda", "cpu")   # run() returns once its outputs exist (synchronize below)
    dtypes = ("float32", "float16", "bfloat16")
    fp32_precisions = ("highest", "high")  # cuda: the CUDA EP's use_tf32 off / on; cpu: always true fp32
    options = {
        "execution": BackendOption("ORT_SEQUENTIAL runs a graph's nodes one after another; ORT_PARALLEL runs "
                                   "independent nodes on the inter-op pool", choices=tuple(EXECUTION),
                                   default="sequential"),
        "inter_op_threads": BackendOption("threads of the inter-op pool (parallel execution); 0 = ORT's choice",
                                          default="0"),
        "spinning": BackendOption("whether idle intra-op threads spin (burning a core) before sleeping; off "
                                  "frees cores for the other Python threads", choices=("on", "off"), default="on"),
    }

    def __init__(self):
        self._precision = "highest"
        self._intra_op_threads: int | None = None
        self._options = {k: o.default for k, o in self.options.items()}

    @staticmethod
    def _ort():
        import onnxruntime
        return onnxruntime

    def device_status(self):
        try:
            ort = self._ort()
            import onnx  # noqa: F401  (the graphs are written with it)
        except ImportError as e:
            why = f"onnxruntime/onnx not installed ({e}); pip install threadbench-onnxruntime"
            return {d: why for d in self.devices}
        providers = ort.get_available_providers()
        cuda = None if PROVIDERS["cuda"] in providers else (
            f"cuda: this onnxruntime ({ort.__version__}) has no CUDAExecutionProvider; pip install onnxruntime-gpu")
        return {"cuda": cuda, "cpu": None}

    def configure(self, *, fp32_precision="highest", intra_op_threads=None, options=None):
        self._precision = fp32_precision
        self._intra_op_threads = intra_op_threads
        self._options.update(options or {})

    def effective_precision(self, device, dtype, fp32_precision):
        if dtype == "float32" and device == "cpu":
            return "fp32"  # the CPU execution provider has no TF32 mode
        return super().effective_precision(device, dtype, fp32_precision)

    def session_options(self):
        ort = self._ort()
        so = ort.SessionOptions()
        so.execution_mode = getattr(ort.ExecutionMode, EXECUTION[self._options["execution"]])
        so.inter_op_num_threads = int(self._options["inter_op_threads"])
        if self._intra_op_threads:
            so.intra_op_num_threads = self._intra_op_threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._options["spinning"] == "on" else "0")
        so.log_severity_level = 3  # errors only: no per-session chatter in the cell's log
        return so

    # -- the model ------------------------------------------------------------------------------
    def build(self, workload, params, device, dtype):
        check_dtype(self, dtype)
        ort = self._ort()
        model = model_proto(workload, params, dtype)
        providers = [PROVIDERS[device]]
        if device == "cuda":
            providers = [(PROVIDERS["cuda"], {"use_tf32": "1" if self._precision == "high" else "0"})]
            if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, where they are installed
                ort.preload_dlls()
        try:
            session = ort.InferenceSession(model.SerializeToString(), sess_options=self.session_options(),
                                           providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own types; NOT_IMPLEMENTED = no kernel
            if "NOT_IMPLEMENTED" in str(e):
                raise Unsupported(f"onnxruntime's {PROVIDERS[device]} has no {dtype} kernel for this graph: "
                                  f"{str(e).split(' : ')[-1]}") from e
            raise
        running = session.get_providers()
        if running[:1] != [PROVIDERS[device]]:  # onnxruntime's Python layer falls back to the CPU quietly
            raise RuntimeError(f"onnxruntime did not start {PROVIDERS[device]} (running {', '.join(running)}); "
                               "its log says why (e.g. a missing CUDA or cuDNN library)")
        return OrtSession(session, device)

    def _np_dtype(self, dtype):
        return np.float16 if dtype == "float16" else np.float32  # bfloat16 models take float32 (a Cast inside)

    def to_device(self, x, device, dtype):
        x = np.ascontiguousarray(x, dtype=self._np_dtype(dtype))
        if device == "cpu":
            return x
        return self._ort().OrtValue.ortvalue_from_numpy(x, "cuda", 0)

    def synchronize(self, out, device):
        pass  # run() returns once its outputs exist (cuda: ORT waits on its stream; never disabled here)

    def to_numpy(self, out):
        return np.asarray(out if isinstance(out, np.ndarray) else out.numpy(), dtype=np.float64)

    # -- modes ----------------------------------------------------------------------------------
    def stream(self, device):
        raise Unsupported("onnxruntime has no per-thread stream API: a session runs on its execution "
                          "provider's own stream")

    def concat(self, xs):
        if isinstance(xs[0], np.ndarray):
            return np.concatenate(xs, axis=0)
        joined = np.concatenate([x.numpy() for x in xs], axis=0)  # cuda: through host memory
        return self._ort().OrtValue.ortvalue_from_numpy(joined, "cuda", 0)

    def split(self, y, sizes):
        host = y if isinstance(y, np.ndarray) else y.numpy()
        return np.split(host, np.cumsum(sizes)[:-1], axis=0)  # host arrays: usable on any thread

    # -- description ----------------------------------------------------------------------------
    def describe(self, device):
        ort = self._ort()
        so = self.session_options()
        opts = self._options
        warnings = []
        if device == "cuda":
            warnings.append("batched mode joins and splits requests through host memory (no device concat)")
            math_library = f"CUDA execution provider (cuBLAS/cuDNN), use_tf32={int(self._precision == 'high')}"
        else:
            math_library = "CPU execution provider (MLAS)"
        return {"framework": "onnxruntime", "version": ort.__version__,
                "device_name": cpu_model() if device == "cpu" else f"CUDA device 0 ({ort.get_device()})",
                "math_library": f"{math_library}; execution {opts['execution']}, inter-op threads "
                                f"{opts['inter_op_threads']}, spinning {opts['spinning']}",
                "intra_op_threads": so.intra_op_num_threads or None,
                "fp32_precision": self._precision if device == "cuda" else "highest",
                "warnings": warnings}


__all__ = ["OrtBackend", "model_proto", "GRAPHS"]
