"""The ONNX Runtime plug-in against threadbench's parity suite, unchanged (every workload and dtype against
the float64 reference, under threads, through concat/split, and the probe); its graphs are ONNX-valid; its
threading options reach the session; and importing it loads neither onnx nor onnxruntime."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import backends
import workloads
from backends.parity import check_parity, parity_cases

CASES = parity_cases("ort")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_parity(case):
    check_parity(case)


def test_cpu_float32_and_float16_cases_are_present_and_bfloat16_is_declared():
    cpu = {(c.dtype, c.check) for c in CASES if c.device == "cpu" and c.skip is None}
    assert {("float32", "threads"), ("float16", "batched"), ("float32", "probe")} <= cpu
    assert "bfloat16" in backends.load("ort").dtypes  # declined per device, with ORT's own reason


def test_registered_through_its_entry_point():
    assert "ort" not in backends.BUILTIN
    assert backends.registry()["ort"] == "threadbench_onnxruntime:OrtBackend"
    assert backends.load("ort").name == "ort"


def test_graphs_are_built_with_onnx_ops_not_exported():
    from threadbench_onnxruntime import model_proto
    spec = workloads.make("transformer", layers=1, seq=4)
    model = model_proto(spec, spec.init_weights(0), "float32")
    ops = {n.op_type for n in model.graph.node}
    assert {"MatMul", "Softmax", "LayerNormalization", "Split"} <= ops
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # any batch size


def test_options_reach_the_session():
    b = backends.load("ort")
    b.configure(fp32_precision="highest", intra_op_threads=1,
                options={"execution": "parallel", "inter_op_threads": "2", "spinning": "off"})
    ort = pytest.importorskip("onnxruntime")
    so = b.session_options()
    assert so.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert (so.intra_op_num_threads, so.inter_op_num_threads) == (1, 2)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert "execution parallel" in b.describe("cpu")["math_library"]


def test_importing_the_plugin_loads_no_framework():
    root = Path(backends.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    code = "import sys, threadbench_onnxruntime; print('onnxruntime' in sys.modules, 'onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "False"]
