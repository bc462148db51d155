"""`mlp`: Linear(width -> hidden), ReLU, Linear(hidden -> out); input batch x width. (The report's SimpleMLP.)"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Workload, f64, linear, relu


@dataclass(frozen=True)
class Mlp(Workload):
    name = "mlp"
    description = "Linear 256->512, ReLU, Linear 512->128; input 4x256"
    batch: int = 4
    width: int = 256
    hidden: int = 512
    out: int = 128

    def input_shape(self):
        return (self.batch, self.width)

    def param_shapes(self):
        return {
            "fc1_w": (self.hidden, self.width), "fc1_b": (self.hidden,),
            "fc2_w": (self.out, self.hidden), "fc2_b": (self.out,),
        }

    def reference(self, p, x):
        h = relu(linear(f64(x), p["fc1_w"], p["fc1_b"]))
        return linear(h, p["fc2_w"], p["fc2_b"])

    def flops(self):
        return 2 * self.batch * (self.width * self.hidden + self.hidden * self.out)
