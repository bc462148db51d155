"""The output check (compare.measure.verify): the error measure and the tolerance per effective precision.
Plain numpy, exact expectations; no framework, no timing."""
import math
import time

import numpy as np
import pytest

from compare.measure import verify as V

REF = np.array([[3.0, 4.0], [0.0, 0.0]])   # ||REF|| = 5


def test_rel_error_is_the_normwise_relative_error():
    y = REF + np.array([[0.0, 0.0], [0.0, 1e-3]])
    assert V.rel_error(y, REF) == pytest.approx(1e-3 / 5, rel=1e-12), "rel_error is not ||y - ref|| / ||ref||"
    assert V.rel_error(REF.copy(), REF) == 0.0, "rel_error of an exact output is not 0"
    assert V.rel_error(-REF, REF) == pytest.approx(2.0), "rel_error of a sign-flipped output is not 2"


def test_rel_error_compares_in_float64():
    y = (REF + 1e-7).astype(np.float32)   # float32 rounding: the error is measured from the float64 value of y
    expected = np.linalg.norm(y.astype(np.float64) - REF) / 5
    assert V.rel_error(y, REF) == pytest.approx(expected, rel=1e-9), "rel_error lost precision (not float64)"


def test_rel_error_of_a_zero_reference_is_finite_for_an_exact_output_and_huge_otherwise():
    zero = np.zeros((2, 2))
    assert V.rel_error(zero.copy(), zero) == 0.0, "an exact output of a zero reference is not error 0"
    err = V.rel_error(zero + 1.0, zero)
    assert err > 1e200 and math.isfinite(err), "a wrong output of a zero reference is not a huge finite error"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_output_is_an_infinite_error(bad):
    y = REF.copy()
    y[1, 1] = bad
    assert V.rel_error(y, REF) == math.inf, f"an output holding {bad} is not an infinite error"


def test_an_output_of_another_shape_is_an_infinite_error():
    assert V.rel_error(REF[:1], REF) == math.inf, "an output with rows missing is not an infinite error"
    assert V.rel_error(REF.T.reshape(4), REF) == math.inf, "a flattened output is not an infinite error"


def test_the_tolerance_of_each_precision_is_the_named_one():
    for precision, limit in V.TOLERANCE.items():
        assert V.tolerance(precision) == limit, f"tolerance({precision!r}) is not TOLERANCE[{precision!r}]"
    expected = {"float64": "fp64", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
    for dtype, precision in expected.items():
        assert V.tolerance(dtype) == V.TOLERANCE[precision], f"dtype {dtype} does not get the {precision} tolerance"


def test_the_tolerances_order_by_precision_and_catch_a_one_element_swap():
    t = V.TOLERANCE
    assert t["fp64"] < t["fp32"] < t["tf32"] <= t["fp16"] < t["bf16"], "tolerances are not ordered by precision"
    assert t["fp32"] <= 1e-5, "exact float32 no longer catches a one-element swap (3e-3) with margin"
    assert t["fp64"] <= 1e-9, "float64's tolerance is looser than 1e-9"
    assert t["tf32"] <= 5e-3 and t["fp16"] <= 1e-2 and t["bf16"] <= 5e-2, "a reduced-precision tolerance loosened"


def test_an_unknown_precision_is_refused():
    with pytest.raises(KeyError):
        V.tolerance("fp8")


def test_checking_a_large_output_leaves_no_thread_spinning_into_the_next_window():
    """The checks run between timed windows: whatever they start must not run on into the next one. np.linalg.norm
    threads its dot product in OpenBLAS above ~10k elements, whose idle threads then spin for ~0.1 s; on the H100's
    host that made every window after the first share the cores with them. A transformer output (4 x 128 x 512)
    is checked, then no OS thread of this process may run more than 20 ms of a 150 ms pause."""
    psutil = pytest.importorskip("psutil")
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 128, 512))
    y = ref + 1e-3
    me = psutil.Process()

    def cpu_by_thread() -> dict[int, float]:
        return {t.id: t.user_time + t.system_time for t in me.threads()}

    V.rel_error(y, ref)      # any thread pool starts here
    time.sleep(0.3)          # and goes idle
    V.rel_error(y, ref)
    before = cpu_by_thread()
    time.sleep(0.15)
    after = cpu_by_thread()
    busiest = max((after[t] - before.get(t, 0.0) for t in after), default=0.0)
    assert busiest < 0.02, f"a thread ran {busiest * 1e3:.0f} ms while nothing was measured"
