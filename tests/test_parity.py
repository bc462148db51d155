"""Each built-in backend matches the float64 reference on every workload and dtype it supports here."""
import pytest

from backends.parity import check_parity, parity_cases

CASES = parity_cases("torch") + parity_cases("mlx") + parity_cases("numpy")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_backend_matches_float64_reference(case):
    check_parity(case)


def test_both_frameworks_are_covered():
    assert {c.backend for c in CASES} >= {"torch", "mlx", "numpy"}
