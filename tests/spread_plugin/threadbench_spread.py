"""A backend whose throughput varies between processes as much as the test says: the numpy reference backend,
each forward followed by a sleep of SPREAD_MS x a factor set once per process: on the `block` workload 1 and
1 + SPREAD_WIDE in turn (worker processes counted in the file SPREAD_STATE), on every other exactly 1. So mlp cells
are as tight between processes as the machine lets them be and block cells as wide as the test says
(tests/test_shards.py: --target-ci adds processes only to the wide ones)."""
from __future__ import annotations

import os
import sys
import time

from backends.numpy_backend import NumpyBackend

OP_S = float(os.environ.get("SPREAD_MS", "5")) / 1000
WIDE = float(os.environ.get("SPREAD_WIDE", "0.3"))

def _count() -> int:
    """How many processes have loaded this module before this one (each appends one byte to SPREAD_STATE)."""
    fd = os.open(os.environ["SPREAD_STATE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b".")
        return os.fstat(fd).st_size - 1
    finally:
        os.close(fd)


# this process's: a worker process's counted, so its rounds alternate fast, slow, fast ...; the parent that
# plans the sweep loads it too, and counts for nothing
FACTOR = 1 + WIDE * (_count() % 2) if sys.argv[0].endswith("worker.py") else 1.0


class SpreadBackend(NumpyBackend):
    name = "spread"

    def build(self, workload, params, device, dtype):
        model = super().build(workload, params, device, dtype)
        pause = OP_S * (FACTOR if workload.name == "block" else 1.0)

        def forward(x):
            out = model(x)
            time.sleep(pause)
            return out
        return forward
