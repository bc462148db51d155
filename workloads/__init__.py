"""The workloads every backend runs: framework-free specs with seeded weights and a float64 reference."""
from __future__ import annotations

import dataclasses

from .base import Workload
from .block import Block
from .launch import Launch
from .matmul import Matmul
from .mlp import Mlp
from .transformer import Transformer

WORKLOADS: dict[str, type[Workload]] = {w.name: w for w in (Mlp, Block, Transformer)}
PROBES: dict[str, type[Workload]] = {Matmul.name: Matmul, Launch.name: Launch}


def knob_names(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(_lookup(name))]


def make(name: str, **knobs: int) -> Workload:
    """Build a workload by name; knobs it does not have are ignored (so one --size serves them all)."""
    cls = _lookup(name)
    own = {k: v for k, v in knobs.items() if k in {f.name for f in dataclasses.fields(cls)}}
    return cls(**own)


def _lookup(name: str) -> type[Workload]:
    try:
        return {**WORKLOADS, **PROBES}[name]
    except KeyError:
        raise KeyError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}") from None


__all__ = ["WORKLOADS", "PROBES", "Workload", "make", "knob_names"]
