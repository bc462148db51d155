"""The parent side of measuring: runs each cell in its own worker subprocess (compare.measure.worker), turns
what it wrote and how it ended into a CellResult, and runs a sweep of cells in order.

A crash (signal), hang (timeout), runaway memory or exception in one cell is recorded with its cause and
the sweep goes on. The caller gets each result as soon as it exists (to save it at once). Not here: any
measuring (the worker does it, in its own process)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import psutil

from ..cells import CRASH, MEMORY, MODES, OK, SKIPPED, TIMEOUT, TOO_SLOW, WRONG, Cell, CellResult, Trial
from .procs import exit_cause

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.05
REAP_S = 5.0   # a killed worker is reaped by Popen within this, else by waitpid here (_kill_group)


@dataclass
class Limits:
    cell_timeout: float | None = None   # seconds; None: derived from the cell's own settings
    mem_limit_mb: float | None = None   # host RSS of the cell's process tree; None: 75% of RAM

    def timeout_for(self, cell: Cell) -> float:
        if self.cell_timeout:
            return self.cell_timeout
        # start-up (imports, JIT, build) + warm-up + the timed windows (up to their cap) + verification, generously;
        # a mode's own start-up per worker (processes) and search budget (server) on top
        return (120.0 + 3.0 * (cell.trials + 1) * cell.window_cap + MODES[cell.mode].start_s * cell.threads
                + MODES[cell.mode].extra_s)

    def mem_mb(self) -> float:
        return self.mem_limit_mb or 0.75 * psutil.virtual_memory().total / 2**20


def _tree_rss_mb(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _kill_group(popen: subprocess.Popen) -> None:
    """Kill the cell's process group and reap its worker. Not with a bare popen.wait(): an interrupt raised
    inside popen.poll() can leave Popen's own lock taken (it is taken unguarded), and wait() then blocks
    forever. So a bounded wait, then the worker reaped here."""
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        popen.wait(timeout=REAP_S)
    except subprocess.TimeoutExpired:
        try:
            popen.returncode = os.waitstatus_to_exitcode(os.waitpid(popen.pid, 0)[1])
        except ChildProcessError:  # poll() had reaped it when the interrupt came
            popen.returncode = -signal.SIGKILL


def run_cell(cell: Cell, cache_dir: Path, limits: Limits) -> CellResult:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="threadbench-cell-") as tmp:
        cell_path, events_path, log_path = (Path(tmp) / n for n in ("cell.json", "events.jsonl", "log.txt"))
        cell_path.write_text(json.dumps(cell.to_dict()))
        events_path.touch()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   THREADBENCH_PARENT=str(os.getpid()))  # the worker ends itself if we die (compare.measure.worker)
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "compare.measure.worker", str(cell_path), str(events_path), str(cache_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                start_new_session=True)  # its own process group: killed whole on timeout or interrupt
            forced = None
            try:
                proc = psutil.Process(popen.pid)
                deadline, mem_mb = start + limits.timeout_for(cell), limits.mem_mb()
                while popen.poll() is None:
                    if time.monotonic() > deadline:
                        forced = (TIMEOUT, f"no result within {limits.timeout_for(cell):.0f} s (hung or far too slow); killed")
                    elif (rss := _tree_rss_mb(proc)) > mem_mb:
                        forced = (MEMORY, f"host memory {rss:.0f} MB passed the {mem_mb:.0f} MB limit; killed")
                    if forced:
                        _kill_group(popen)
                        break
                    time.sleep(POLL_S)
            except BaseException:  # KeyboardInterrupt/SystemExit: never leave the cell's process behind
                _kill_group(popen)
                raise
        result = _collect(cell, events_path, popen.returncode, log_path, forced)
    result.wall_s = time.monotonic() - start
    return result


def _collect(cell: Cell, events_path: Path, rc: int, log_path: Path, forced) -> CellResult:
    result = CellResult(cell=cell, status="")
    for line in events_path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
        kind = ev.pop("event")
        if kind == "env":
            result.env = ev["env"]
        elif kind == "spec":
            result.flops_per_op = ev["flops_per_op"]
        elif kind == "trial":
            result.trials.append(Trial(**ev))
        elif kind == "result":  # how it was measured (compare.measure.harness.Measured), effective precision
            for name, value in ev.items():
                if hasattr(result, name):
                    setattr(result, name, value)
        elif kind == "verify":
            result.errors, result.checked, result.rel_err = ev["errors"], ev["checked"], ev["rel_err"]
        elif kind == "gpu_util":  # compare.measure.host.GpuSampler
            result.gpu_util_mean, result.gpu_util_max = ev["mean"], ev["max"]
        elif kind == "memory":
            result.peak_rss_mb, result.peak_device_mb = ev["peak_rss_mb"], ev["peak_device_mb"]
        elif kind == "facts":  # intra-op threads; processes: each one's memory (compare.measure.build.memory_facts)
            for name, value in ev.items():
                if hasattr(result, name):  # a newer worker's fact that this runner does not know is left out
                    setattr(result, name, value)
        elif kind == "status":
            result.status, result.cause = ev["status"], ev["cause"]
            result.traceback = ev.get("traceback", "")
    result.total_rss_mb = sum(result.process_rss_mb) if result.process_rss_mb else result.peak_rss_mb
    device = [m for m in result.process_device_mb or [] if m is not None]
    result.total_device_mb = sum(device) if device else result.peak_device_mb
    if forced:  # a timeout adds the cell's last log line (a processes cell logs where each process is)
        result.status, result.cause = forced[0], forced[1] + (_log_tail(log_path, 1) if forced[0] == TIMEOUT else "")
    elif rc != 0 or not result.status:
        # A process that reported its result and then died (e.g. aborting in a framework's teardown) keeps
        # its measured trials, but the cell is still a crash: a user's process would have died too.
        after = " after reporting its result (at exit)" if result.status in (OK, WRONG) else ""
        result.status = CRASH
        result.cause = exit_cause(rc) + after + _log_tail(log_path)
    return result


def _log_tail(log_path: Path, lines: int = 3) -> str:
    try:
        text = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    tail = [t.strip() for t in text if t.strip()][-lines:]
    return (": " + " | ".join(tail))[:400] if tail else ""


# -- a sweep ---------------------------------------------------------------------------------------
def _group(cell: Cell, mode: str) -> tuple:
    return (cell.backend, cell.device, cell.dtype, cell.workload, cell.knobs, cell.fp32_precision, mode)


def sweep(cells: Iterable[Cell], limits: Limits, on_start: Callable[[Cell], None] | None = None) -> Iterator[CellResult]:
    """Run cells in order, yielding each result. Once a cell is too slow for the window, the larger cells of
    its mode (more threads, bigger offline batches: those after it in the plan's order) are skipped without
    starting a process, in this round of --repeats and every later one; a one-client cell (sequential, or ×1
    of a client mode) too slow means one request alone is too slow, so every later cell of that workload is.
    Another mode at N is not skipped for a too-slow mode at N: processes ×2 can hold the minimum of ops per
    window where batched ×2 cannot. Cells before it (smaller) still run in later rounds: one too-slow ×8
    process says nothing about the sequential cell's next process."""
    cells = list(cells)
    place: dict[tuple, int] = {}   # a cell's place in the plan's first round (the same in every round)
    for i, c in enumerate(cells):
        place.setdefault(c.key(), i)
    too_slow: dict[tuple, tuple[int, str]] = {}   # group -> (place of its first too-slow cell, why)
    with tempfile.TemporaryDirectory(prefix="threadbench-refs-") as cache:
        for cell in cells:
            if on_start:
                on_start(cell)
            where, reason = too_slow.get(_group(cell, cell.mode), (None, ""))
            if where is not None and place[cell.key()] >= where:
                yield CellResult(cell=cell, status=SKIPPED, cause=f"not run: {reason}")
                continue
            result = run_cell(cell, Path(cache), limits)
            if result.status == TOO_SLOW:
                reason = f"{cell.label()} was already too slow ({result.cause})"
                alone = cell.threads == 1 and MODES[cell.mode].axis != "k"   # one request, one client
                for mode in (MODES if alone else [cell.mode]):
                    group = _group(cell, mode)
                    if group not in too_slow or place[cell.key()] < too_slow[group][0]:
                        too_slow[group] = (place[cell.key()], reason)
            yield result
