"""`block`: LayerNorm, Linear(width -> hidden), exact GELU, Linear(hidden -> width), LayerNorm.

The report's TransformerMLPBlock; input batch x width (default 4 x 256)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Workload, f64, gelu_exact, layer_norm, linear


@dataclass(frozen=True)
class Block(Workload):
    name = "block"
    description = "LayerNorm 256, Linear 256->1024, exact GELU, Linear 1024->256, LayerNorm; input 4x256"
    batch: int = 4
    width: int = 256
    hidden: int = 1024

    def input_shape(self):
        return (self.batch, self.width)

    def param_shapes(self):
        return {
            "ln1_norm_w": (self.width,), "ln1_norm_b": (self.width,),
            "fc1_w": (self.hidden, self.width), "fc1_b": (self.hidden,),
            "fc2_w": (self.width, self.hidden), "fc2_b": (self.width,),
            "ln2_norm_w": (self.width,), "ln2_norm_b": (self.width,),
        }

    def reference(self, p, x):
        h = layer_norm(f64(x), p["ln1_norm_w"], p["ln1_norm_b"])
        h = gelu_exact(linear(h, p["fc1_w"], p["fc1_b"]))
        h = linear(h, p["fc2_w"], p["fc2_b"])
        return layer_norm(h, p["ln2_norm_w"], p["ln2_norm_b"])

    def flops(self):
        return 2 * self.batch * (2 * self.width * self.hidden)
