"""`launch`: one 1 x 8 by 8 x 8 product, the probe that measures how many tiny synchronised ops per second
a backend and device sustain (the launch rate).

Not one of the compared workloads. Its op is a single small kernel whose device time is negligible, so
forward + synchronise measures what the host spends to issue one op and wait for it: framework dispatch,
the kernel launch and the synchronise round trip. A cell whose forwards come within a stated factor of
this rate is launch (host) bound (compare.measure.host.LAUNCH_BOUND_FRACTION). It reuses each backend's
matmul builder: the same bias-free Linear, at a size where nothing but the launch costs time."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Workload, f64


@dataclass(frozen=True)
class Launch(Workload):
    name = "launch"
    description = "1x8 @ 8x8 (launch-rate probe)"
    batch: int = 1  # rows of the input
    n: int = 8

    def input_shape(self):
        return (self.batch, self.n)

    def param_shapes(self):
        return {"w": (self.n, self.n)}  # y = x @ w.T, like a bias-free Linear (the matmul probe's layout)

    def reference(self, p, x):
        return f64(x) @ f64(p["w"]).T  # (batch, n)

    def flops(self):
        return 2 * self.batch * self.n * self.n
