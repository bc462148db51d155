"""Starting, reading and ending the processes one cell spawns (the processes mode, the server's process
pool), and the words for how a process ended. Processes start through multiprocessing's spawn context: a
fresh interpreter each, never a fork of a process whose framework already runs threads or holds a GPU
context. Each writes to its own pipe; one reader reads them all with their exit sentinels, and turns a
process that raised or died into the cell's failure. A replica (the replicas mode) is such a process pinned
to one device and its share of the host's cores (Pin). Not here: what the processes do."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable

from ..cells import CRASH, ERROR, Cell
from .harness import CellFailed
from .split import usable_cores

SPAWN = multiprocessing.get_context("spawn")
LAST_WORDS = ("result", "aborted")  # a process that ends without saying one of these died (CRASH)

# Set in every process threadbench starts (the runner's workers, and through them every spawned process):
# NVLink multicast off. The device image sets the same; replicas need no collective communication at all.
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}
# Devices a replica is pinned to by the environment its framework reads at start-up (CUDA_VISIBLE_DEVICES,
# in NVML's PCI order so that index i is NVML's device i); a cpu replica is pinned by its cores alone.
VISIBLE_DEVICES = {"cuda": "CUDA_VISIBLE_DEVICES", "gpu": "CUDA_VISIBLE_DEVICES"}


@dataclass(frozen=True)
class Pin:
    """Where replica i runs: its device index (of the cell's device kind), what CUDA_VISIBLE_DEVICES says for
    it (None: a cpu replica), and the host cores it may run on (its equal share)."""
    index: int
    visible: str | None
    cores: tuple[int, ...]

    def apply(self) -> None:
        """In the replica's own process, before its framework starts."""
        os.environ.update(NO_MULTICAST)
        if self.visible is not None:
            os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            os.environ["CUDA_VISIBLE_DEVICES"] = self.visible
        if self.cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, self.cores)


def replica_pins(cell: Cell, cores: list[int] | None = None) -> list[Pin]:
    """One Pin per device of cell.devices (none named: devices 0 to N-1), in order: the host's usable cores (`cores`, default this
    process's) split into equal contiguous shares, one per replica (the remainder to the first ones); a
    device index read through this process's own CUDA_VISIBLE_DEVICES where it sets one. Raises the cell's
    failure (CellFailed, ERROR) when there are fewer cores than replicas, or an index past the devices
    CUDA_VISIBLE_DEVICES leaves."""
    if cores is None:
        cores = (sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else list(range(os.cpu_count() or 1)))
    devices = cell.devices or tuple(range(cell.threads))
    n = len(devices)
    if n != cell.threads:
        raise CellFailed(ERROR, f"replicas: {cell.threads} replicas on {n} devices ({','.join(map(str, devices))})")
    if n > len(cores):
        raise CellFailed(ERROR, f"replicas: {n} replicas need a core each; this process may run on {len(cores)}")
    share, extra = divmod(len(cores), n)
    var = VISIBLE_DEVICES.get(cell.device)
    visible = [v.strip() for v in os.environ.get(var or "", "").split(",") if v.strip()]
    pins, at = [], 0
    for i, index in enumerate(devices):
        take = share + (i < extra)
        if visible and index >= len(visible):
            raise CellFailed(ERROR, f"replicas: device {index} is not among {var}={','.join(visible)} "
                                    f"(indices 0 to {len(visible) - 1})")
        device = None if var is None else visible[index] if visible else str(index)
        pins.append(Pin(index, device, tuple(cores[at:at + take])))
        at += take
    return pins


def intra_op_plan(cell: Cell, pins: list[Pin] | None = None) -> tuple[int, str]:
    """(intra-op threads each of a cell's N processes asks its framework for, why that many). Unless
    --intra-op-threads says otherwise, max(1, cores // N), so processes x intra-op threads stay within the
    cores, as in a threads cell, whose one process runs the framework's own default (about one per core);
    replicas (`pins`): the cores of the smallest share."""
    if cell.intra_op_threads:
        return cell.intra_op_threads, "--intra-op-threads"
    if pins:
        return min(len(p.cores) for p in pins), "each replica's share of the cores"
    cores = usable_cores()
    return max(1, cores // cell.threads), (f"equal total threads: {cores} cores // {cell.threads} "
                                           + ("process" if cell.threads == 1 else "processes"))


def watch_parent(interval: float = 0.25, parent: int | None = None) -> None:
    """A process never outlives the one that started it: if it dies without killing us (SIGKILL, the OOM
    killer), we are re-parented, and this ends the process. A cell's worker is told its sweep's pid in
    THREADBENCH_PARENT, so a parent that died while we were still importing is noticed too; a spawned
    process is given its cell's worker in `parent`."""
    parent = parent or int(os.environ.get("THREADBENCH_PARENT") or os.getppid())

    def loop() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def exit_cause(rc: int) -> str:
    """How a process that never reported its result ended: "killed by SIGSEGV", "exited with code 1 ..."."""
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with code {rc} before reporting a result"


class Processes:
    """N spawned processes of one cell, process i named f"{name}-{i + 1}" and run as target(*args(i), pipe),
    writing its messages (tuples, kind first) to the pipe. They stay in the cell's process group, which the
    runner kills whole on timeout or interrupt; each should watch_parent() itself."""

    def __init__(self, n: int, target: Callable, args: Callable[[int], tuple], name: str = "tb-process"):
        self.n = n
        pipes = [SPAWN.Pipe(duplex=False) for _ in range(n)]
        self.procs = [SPAWN.Process(target=target, name=f"{name}-{i + 1}", daemon=True, args=(*args(i), send))
                      for i, (_, send) in enumerate(pipes)]
        self.readers = [recv for recv, _ in pipes]
        self._senders = [send for _, send in pipes]

    def start(self) -> None:
        try:
            for p in self.procs:
                p.start()
        finally:
            for send in self._senders:
                send.close()  # only the process writes to its pipe: once it ends, the reader gets EOF

    def read(self, on_message: Callable[[int, tuple], Any], quiet_s: float | None = None,
             on_quiet: Callable[[list[int]], Any] | None = None) -> None:
        """Read every process's messages, in order per process, until all have ended; each goes to
        on_message(i, message), which may raise. Raises the cell's failure as soon as one shows: process i
        sending ("raised", cause, traceback) is CellFailed(ERROR, "process i of n: cause"), and one that ends
        before its last word (LAST_WORDS) is CellFailed(CRASH, "process i of n killed by SIGSEGV"). While
        none has said anything for quiet_s, on_quiet(the processes still running) is called."""
        n = self.n
        live = {r: i for i, r in enumerate(self.readers)}
        ends = {p.sentinel: i for i, p in enumerate(self.procs)}
        said_last: set[int] = set()

        def drain(conn, i: int) -> None:
            try:
                while conn.poll():
                    msg = conn.recv()
                    if msg[0] == "raised":
                        raise CellFailed(ERROR, f"process {i + 1} of {n}: {msg[1]}", msg[2])
                    if msg[0] in LAST_WORDS:
                        said_last.add(i)
                    on_message(i, msg)
            except (EOFError, OSError):
                live.pop(conn, None)

        while ends:
            ready = wait([*live, *ends], timeout=quiet_s)
            if not ready and on_quiet is not None:
                on_quiet(sorted(ends.values()))
            for obj in ready:
                if obj in live:
                    drain(obj, live[obj])
                elif obj in ends:  # a process ended: first read what it said, then ask how it ended
                    i = ends.pop(obj)
                    drain(self.readers[i], i)
                    self.procs[i].join()
                    if i not in said_last:
                        raise CellFailed(CRASH, f"process {i + 1} of {n} {exit_cause(self.procs[i].exitcode)}")

    def stop(self) -> None:
        """Kill every process still running, and reap all."""
        for p in self.procs:
            if p.pid is None:  # never started (an earlier start failed)
                continue
            if p.is_alive():
                p.kill()
            p.join()

    def close(self) -> None:
        """stop(), then close the pipes (no reader may be reading them any more)."""
        self.stop()
        for r in self.readers:
            r.close()
