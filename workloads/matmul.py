"""`matmul`: one n x n by n x n product, the probe that measures a device's achievable peak FLOP/s.

Not one of the compared workloads; the runner uses it to turn achieved FLOP/s into %-of-peak."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Workload, f64


@dataclass(frozen=True)
class Matmul(Workload):
    name = "matmul"
    description = "n x n @ n x n (peak probe)"
    batch: int = 1024  # n: rows of the input, so that with_batch scales it like the others
    n: int = 1024

    def input_shape(self):
        return (self.batch, self.n)

    def param_shapes(self):
        return {"w": (self.n, self.n)}  # y = x @ w.T, like a bias-free Linear

    def reference(self, p, x):
        return f64(x) @ f64(p["w"]).T

    def flops(self):
        return 2 * self.batch * self.n * self.n
