"""`transformer`: a stack of post-norm encoder layers, what

    torch.nn.TransformerEncoder(nn.TransformerEncoderLayer(512, 8, batch_first=True), 6).eval()

computes (ReLU feed-forward 2048, dropout inactive, no final norm); input batch x seq x width.

Per layer (post-norm):  x = norm1(x + SelfAttention(x));  x = norm2(x + Linear2(ReLU(Linear1(x)))).
Attention packs q, k, v into one in-projection (3*width x width) with bias, like torch's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .base import Workload, f64, layer_norm, linear, relu, softmax


@dataclass(frozen=True)
class Transformer(Workload):
    name = "transformer"
    description = "6 post-norm encoder layers, d_model 512, 8 heads, ReLU FF 2048; input 4x128x512"
    batch: int = 4
    seq: int = 128
    width: int = 512
    heads: int = 8
    hidden: int = 2048
    layers: int = 6

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"transformer: width {self.width} is not divisible by heads {self.heads}")

    def input_shape(self):
        return (self.batch, self.seq, self.width)

    def param_shapes(self):
        d, f = self.width, self.hidden
        shapes = {}
        for i in range(self.layers):
            shapes.update({
                f"l{i}.in_proj_w": (3 * d, d), f"l{i}.in_proj_b": (3 * d,),
                f"l{i}.out_proj_w": (d, d), f"l{i}.out_proj_b": (d,),
                f"l{i}.fc1_w": (f, d), f"l{i}.fc1_b": (f,),
                f"l{i}.fc2_w": (d, f), f"l{i}.fc2_b": (d,),
                f"l{i}.ln1_norm_w": (d,), f"l{i}.ln1_norm_b": (d,),
                f"l{i}.ln2_norm_w": (d,), f"l{i}.ln2_norm_b": (d,),
            })
        return shapes

    def reference(self, p, x):
        x = f64(x)
        for i in range(self.layers):
            x = layer_norm(x + self._attention(p, i, x), p[f"l{i}.ln1_norm_w"], p[f"l{i}.ln1_norm_b"])
            ff = linear(relu(linear(x, p[f"l{i}.fc1_w"], p[f"l{i}.fc1_b"])), p[f"l{i}.fc2_w"], p[f"l{i}.fc2_b"])
            x = layer_norm(x + ff, p[f"l{i}.ln2_norm_w"], p[f"l{i}.ln2_norm_b"])
        return x

    def _attention(self, p, i, x):
        b, s, d = x.shape
        h, hd = self.heads, d // self.heads
        qkv = linear(x, p[f"l{i}.in_proj_w"], p[f"l{i}.in_proj_b"])
        q, k, v = (t.reshape(b, s, h, hd).transpose(0, 2, 1, 3) for t in np.split(qkv, 3, axis=-1))
        att = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd))
        out = (att @ v).transpose(0, 2, 1, 3).reshape(b, s, d)
        return linear(out, p[f"l{i}.out_proj_w"], p[f"l{i}.out_proj_b"])

    def flops(self):
        tokens, d, f, s = self.batch * self.seq, self.width, self.hidden, self.seq
        projections = 2 * tokens * (3 * d * d + d * d + 2 * d * f)
        attention = 2 * 2 * self.batch * s * s * d  # q @ k^T and att @ v over all heads
        return self.layers * (projections + attention)
