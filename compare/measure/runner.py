"""The parent side of measuring: starts the worker processes of a sweep (compare.measure.worker), sends each
its cells one at a time, turns what it wrote and how it ended into one CellResult per cell, and records
each process (ProcessRecord) and where the sweep's time went (TimeSplit).

A worker measures the cells of one WorkerPlan (compare.measure.plan), in their order. The parent sends a
cell, watches it (its timeout, the memory of the process tree) until the worker reports its status, then
decides the next: a cell that the too-slow rule (TooSlowSkips) skips is recorded without being sent. A
crash (signal), hang (timeout) or runaway memory costs only the cell that had it: the worker's process
group is killed, the cell recorded with its cause, and the plan's remaining cells go on in a fresh worker.
An exception is the cell's error and the worker goes on (compare.measure.worker). The caller gets each
result as soon as it exists (to save it at once). Not here: any measuring (the workers do it)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import psutil

from ..cells import CRASH, GIL_SETTINGS, MEMORY, MODES, OK, SKIPPED, TIMEOUT, TOO_SLOW, WRONG, Cell, CellResult, Trial
from .plan import WorkerPlan, process_group
from .procs import NO_MULTICAST, exit_cause
from .schedule import MIN_OPS_PER_WINDOW

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.05
REAP_S = 5.0   # a killed worker is reaped by Popen within this, else by waitpid here (_kill_group)


@dataclass
class Limits:
    cell_timeout: float | None = None   # seconds; None: derived from the cell's own settings
    mem_limit_mb: float | None = None   # host RSS of the worker's process tree; None: 75% of RAM

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
    """Kill the worker's process group and reap the worker. Not with a bare popen.wait(): an interrupt raised
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


# -- what the sweep records --------------------------------------------------------------------------
@dataclass
class TimeSplit:
    """Where a sweep's wall time went, in seconds, from what every worker reported of its cells: start-up
    (worker processes' start: interpreter and imports; backends loaded, frameworks imported; weights made;
    models built; float64 references computed or read), warming up (the schedule's warm-up windows) and
    measuring (the timed windows, or a server cell's rate steps). The rest of the wall time is other
    overhead: speed checks, output checks and verification, the threads' and a processes mode's own
    processes' start, the parent's saving and host probes."""
    warmup_s: float = 0.0
    timed_s: float = 0.0
    process_start_s: float = 0.0   # start-up: worker processes' start (interpreter and imports)
    build_s: float = 0.0           # start-up: backends, weights and models
    refs_s: float = 0.0            # start-up: references

    @property
    def startup_s(self) -> float:
        return self.process_start_s + self.build_s + self.refs_s

    def add_cell(self, times: dict) -> None:
        """One cell's split, as its worker reported it (compare.measure.worker.run_cell's times event)."""
        self.build_s += times.get("build_s") or 0.0
        self.refs_s += times.get("refs_s") or 0.0
        self.warmup_s += times.get("warmup_s") or 0.0
        self.timed_s += times.get("timed_s") or 0.0

    def shares(self, wall_s: float) -> dict:
        """The record a results file keeps: seconds and shares of `wall_s`."""
        other = max(0.0, wall_s - self.startup_s - self.warmup_s - self.timed_s)
        parts = {"measuring": self.timed_s, "warming_up": self.warmup_s, "start_up": self.startup_s, "other": other}
        return {"wall_s": wall_s, **{f"{k}_s": v for k, v in parts.items()},
                **{f"{k}_share": v / wall_s if wall_s > 0 else None for k, v in parts.items()},
                "start_up_detail_s": {"process_start": self.process_start_s, "builds": self.build_s,
                                      "references": self.refs_s}}


@dataclass
class ProcessRecord:
    """One worker process as the results file keeps it: its number (in the order processes started), round
    and process group; the cells it was given, in its order; the seed that shuffled that order; which
    process it continues (after a cell that crashed, hung or ran out of memory in it), if any; its pid,
    start and end (Unix time), seconds from its start to its first line (interpreter and imports), the cells
    it measured, how it ended, and each measured cell's time split as its worker reported it (`times`: its
    place in `order`, its wall time in the parent, and the worker's seconds: the whole cell, backend loads,
    weights and builds, references, the mode, warm-up, timed windows)."""
    number: int
    round: int
    group: dict
    order: list[Cell]
    seed: str
    continues: int | None = None
    pid: int | None = None
    started: float | None = None
    ended: float | None = None
    startup_s: float | None = None
    measured: int = 0
    end: str = ""
    times: list[dict] = field(default_factory=list)

    def to_dict(self, index: Callable[[Cell], int | None]) -> dict:
        """As JSON: `order` as each cell's index in the run's plan (index(cell))."""
        return asdict(self) | {"order": [index(c) for c in self.order]}


# -- one worker process --------------------------------------------------------------------------------
class Worker:
    """A worker process and its events file, log and input: `send` a cell, `watch` it to its status."""

    def __init__(self, cache: Path, folder: Path, python: str = "", gil: str = ""):
        """`python`: the interpreter it runs under ("" = this one); `gil`: a free-threaded build's GIL as asked
        (compare.cells.GIL_SETTINGS: PYTHON_GIL set or unset; "" = as this process's environment has it)."""
        self.events_path, self.log_path = folder / "events.jsonl", folder / "log.txt"
        self.events_path.touch()
        self.events: list[dict] = []
        self._offset = 0
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   THREADBENCH_PARENT=str(os.getpid()),  # the worker ends itself if we die (compare.measure.worker)
                   **NO_MULTICAST)  # and every process it spawns inherits these
        if gil:
            env.pop("PYTHON_GIL", None)
            if GIL_SETTINGS[gil] is not None:
                env["PYTHON_GIL"] = GIL_SETTINGS[gil]
        self.started = time.time()
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                [python or sys.executable, "-m", "compare.measure.worker", str(self.events_path), str(cache)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                start_new_session=True)  # its own process group: killed whole on timeout or interrupt
        self.proc = psutil.Process(self.popen.pid)
        self.measured = 0   # cells sent
        self.log_from = 0   # where the log of the cell last sent begins

    def send(self, index: int, cell: Cell) -> None:
        """Cell `index` to the worker. One that has ended meanwhile (it ends itself after a cell that left
        threads running) never begins it, which watch() and the caller see."""
        self.log_from = self.log_path.stat().st_size  # a cell's log tail is its own lines
        self.measured += 1
        try:
            self.popen.stdin.write((json.dumps({"index": index, "cell": cell.to_dict()}) + "\n").encode())
            self.popen.stdin.flush()
        except OSError:  # BrokenPipeError: it has ended
            pass

    def close_input(self) -> None:
        try:
            self.popen.stdin.close()
        except OSError:  # it has died: its end is read from its exit status
            pass

    def read(self) -> None:
        """The events written since the last read (whole lines only: a line cut short by a crash is dropped)."""
        with open(self.events_path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        done = chunk.rfind(b"\n") + 1
        self._offset += done
        for line in chunk[:done].splitlines():
            try:
                self.events.append(json.loads(line))
            except json.JSONDecodeError:
                continue

    def of(self, index: int, kind: str | None = None) -> list[dict]:
        return [e for e in self.events if e.get("cell") == index and (kind is None or e["event"] == kind)]

    def first(self, kind: str) -> dict | None:
        return next((e for e in self.events if e["event"] == kind and "cell" not in e), None)

    def watch(self, index: int, deadline: float, mem_mb: float, until_exit: bool = False) -> tuple | None:
        """Until cell `index` has reported its status (and, `until_exit`, the worker has ended), the worker
        has ended, or it must be killed: (status, cause) when killed (timeout, memory), else None. A
        timeout's cause has a {} for the timeout's seconds."""
        while True:
            self.read()
            if self.popen.poll() is not None:
                self.read()
                return None
            if self.of(index, "status") and not until_exit:
                return None
            forced = None
            if time.monotonic() > deadline:
                forced = (TIMEOUT, "no result within {:.0f} s (hung or far too slow); killed")
            elif (rss := _tree_rss_mb(self.proc)) > mem_mb:
                forced = (MEMORY, f"host memory {rss:.0f} MB passed the {mem_mb:.0f} MB limit; killed")
            if forced:
                self.kill()
                self.read()
                return forced
            time.sleep(POLL_S)

    def kill(self) -> None:
        _kill_group(self.popen)
        self.close_input()

    def log_tail(self, lines: int = 3) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_from)
                text = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        tail = [t.strip() for t in text if t.strip()][-lines:]
        return (": " + " | ".join(tail))[:400] if tail else ""


def _result(cell: Cell, events: list[dict]) -> CellResult:
    """A cell's result from its events (without its process's end, which `_ended` adds)."""
    result = CellResult(cell=cell, status="")
    for ev in events:
        ev = {k: v for k, v in ev.items() if k != "cell"}
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
        elif kind == "interpreter":  # what ran it, and whether its GIL was off (compare.measure.worker)
            result.interpreter = ev
        elif kind == "status":
            result.status, result.cause = ev["status"], ev["cause"]
            result.traceback = ev.get("traceback", "")
    result.total_rss_mb = sum(result.process_rss_mb) if result.process_rss_mb else result.peak_rss_mb
    device = [m for m in result.process_device_mb or [] if m is not None]
    result.total_device_mb = sum(device) if device else result.peak_device_mb
    return result


def _ended(result: CellResult, rc: int | None, forced: tuple | None, tail: str, cells_before: int = 0) -> None:
    """The cell's status once its worker's end is known: killed (forced: timeout, memory) or died (rc != 0,
    or ended without a status). `rc`: None while the worker runs on. `tail`: the cell's last log lines.
    `cells_before`: cells the worker measured before this one (a death at exit may owe to any of them)."""
    if forced:  # a timeout adds the cell's last log line (a processes cell logs where each process is)
        result.status, result.cause = forced[0], forced[1] + (tail if forced[0] == TIMEOUT else "")
    elif rc is not None and (rc != 0 or not result.status):
        # A process that reported its result and then died (e.g. aborting in a framework's teardown) keeps
        # its measured trials, but the cell is still a crash: a user's process would have died too.
        after = ""
        if result.status in (OK, WRONG):
            after = " after reporting its result (at exit)"
            if cells_before:
                after += (f"; its process measured {cells_before} other cell(s) before it, and the exit may owe to "
                          "any of them (the results file lists its order; --process-per-cell runs each alone)")
        result.status = CRASH
        result.cause = exit_cause(rc) + after + tail


# -- the too-slow rule -----------------------------------------------------------------------------------
def _family(cell: Cell) -> tuple:
    """A workload of one backend under one interpreter (and GIL setting) as a sweep measures it: every mode
    and size of it."""
    return (cell.backend, cell.device, cell.dtype, cell.workload, cell.knobs, cell.fp32_precision,
            cell.python, cell.gil)


def _size(cell: Cell) -> tuple[int, int]:
    """How large a cell of its mode is, in the plan's order: k (offline) first, then threads."""
    return (cell.k, cell.threads)


def alone_too_slow(result: CellResult) -> bool:
    """Whether a too-slow result says that one request alone is too slow: a one-client cell (sequential, or
    ×1 of a client mode), or any cell of single-request ops whose speed check (one op, alone in its process,
    before any other thread starts) found the op longer than the window allows."""
    cell = result.cell
    if result.status != TOO_SLOW:
        return False
    one_client = cell.threads == 1 and MODES[cell.mode].axis != "k"
    one_op = (cell.requests_per_forward == 1 and result.op_s is not None
              and result.op_s * MIN_OPS_PER_WINDOW > cell.window_cap)
    return one_client or one_op


class TooSlowSkips:
    """The too-slow rule, kept by the parent, which sees each cell's result before it sends the next (so it
    knows what every earlier process and the running one found). Once a cell is too slow for the window, the
    larger cells of its mode (more threads, bigger offline batches; `_size`) are skipped without being sent,
    in this round of --repeats and every later one; when one request alone is too slow (alone_too_slow),
    every cell of that workload is. Another mode at N is not skipped for a too-slow mode at N: processes ×2
    can hold the minimum of ops per window where batched ×2 cannot. Smaller cells still run in later rounds:
    one too-slow ×8 process says nothing about the sequential cell's next process. A larger cell a shuffled
    order measured before the smaller one was found too slow keeps its own result."""

    def __init__(self) -> None:
        self.modes: dict[tuple, tuple[tuple[int, int], str]] = {}   # (family, mode) -> (smallest too-slow size, why)
        self.workloads: dict[tuple, str] = {}                        # family -> why

    def skip(self, cell: Cell) -> str | None:
        """Why `cell` is not run, or None."""
        if (why := self.workloads.get(_family(cell))) is not None:
            return why
        size, why = self.modes.get((_family(cell), cell.mode), (None, None))
        return why if size is not None and _size(cell) >= size else None

    def saw(self, result: CellResult) -> None:
        if result.status != TOO_SLOW:
            return
        cell = result.cell
        why = f"{cell.label()} was already too slow ({result.cause})"
        if alone_too_slow(result):
            self.workloads.setdefault(_family(cell), why)
        key = (_family(cell), cell.mode)
        if key not in self.modes or _size(cell) < self.modes[key][0]:
            self.modes[key] = (_size(cell), why)


# -- a sweep -------------------------------------------------------------------------------------------
class Sweep:
    """Runs worker plans in order, yielding each cell's result (iterate it). `records`: every worker process
    so far, the running one included (on_process is called when one starts or ends, e.g. to save them);
    `split`: where the time went. `first`: the number of the first process (a --resume continues a file's).
    `cache`: the folder of float64 references the workers share (default: a temporary one for the sweep).
    `start`: how a worker is started, start(cache, folder, python, gil) (tests pass a fake). `more`: called when
    the plans are done, returns the next ones (none: the sweep ends)."""

    def __init__(self, plans: list[WorkerPlan], limits: Limits, on_start: Callable[[Cell], None] | None = None,
                 on_process: Callable[[], None] | None = None, first: int = 1, cache: Path | None = None,
                 start: Callable[[Path, Path], Worker] = Worker):
        self.plans, self.limits, self.on_start, self.on_process = plans, limits, on_start, on_process
        self.first, self.cache, self.start = first, cache, start
        self.records: list[ProcessRecord] = []
        self.split = TimeSplit()
        self.skips = TooSlowSkips()
        self.more: Callable[[], list[WorkerPlan]] | None = None

    def __iter__(self) -> Iterator[CellResult]:
        """Every plan's cells; when they are done, the plans `more()` returns (compare --target-ci: the rounds
        added for the cells still too wide, decided from what has been measured), until it returns none."""
        with tempfile.TemporaryDirectory(prefix="threadbench-refs-") as cache:
            done = 0
            while True:
                while done < len(self.plans):
                    yield from self._run(self.plans[done], self.cache or Path(cache))
                    done += 1
                added = self.more() if self.more is not None else []
                if not added:
                    return
                self.plans = self.plans + list(added)

    def _run(self, plan: WorkerPlan, cache: Path) -> Iterator[CellResult]:
        """The plan's cells in its order: each skipped, or measured in the current worker (started when the
        first cell to measure comes, and again after one that ended it)."""
        pending = list(plan.cells)
        worker = record = None
        with tempfile.TemporaryDirectory(prefix="threadbench-worker-") as tmp:
            try:
                while pending:
                    cell = pending.pop(0)
                    if (why := self.skips.skip(cell)) is not None:
                        yield CellResult(cell=cell, status=SKIPPED, cause=f"not run: {why}")
                        continue
                    if self.on_start:
                        self.on_start(cell)
                    if worker is None:
                        worker, record = self._start(plan, [cell, *pending], record, cache, Path(tmp))
                    result = self._measure(worker, record, cell, pending)
                    if worker.popen.returncode is not None:
                        worker = None
                    if result is None:  # the worker died between cells, before it began this one: a fresh one
                        pending.insert(0, cell)
                        continue
                    yield result
            except BaseException:  # KeyboardInterrupt/SystemExit: never leave a worker behind
                if worker is not None:
                    worker.kill()
                    self._end(worker, record, "interrupted")
                raise

    def _start(self, plan: WorkerPlan, order: list[Cell], previous: ProcessRecord | None, cache: Path,
               tmp: Path) -> tuple[Worker, ProcessRecord]:
        record = ProcessRecord(number=self.first + len(self.records), round=plan.round, group=dict(plan.group),
                               order=order, seed=plan.seed, continues=previous.number if previous else None)
        group = dict(plan.group)
        worker = self.start(cache, Path(tempfile.mkdtemp(dir=tmp)), group.get("python", ""), group.get("gil", ""))
        record.pid, record.started = worker.popen.pid, worker.started
        self.records.append(record)
        if self.on_process:
            self.on_process()
        return worker, record

    def _end(self, worker: Worker, record: ProcessRecord, how: str) -> None:
        record.ended, record.measured, record.end = time.time(), worker.measured, how
        if (start := worker.first("start")) is not None:
            record.startup_s = start["t"] - worker.started
            self.split.process_start_s += record.startup_s
        if self.on_process:
            self.on_process()

    def _measure(self, worker: Worker, record: ProcessRecord, cell: Cell, pending: list[Cell]) -> CellResult | None:
        """The cell's result; None when the worker, having measured others, ended before it began this one
        (the caller sends it to a fresh worker). The worker's last cell (no later cell of the plan would be
        sent) ends with the worker's exit: a death at exit is that cell's crash. A death after a cell reported
        and before the next began is the worker's, recorded on it, and no cell's."""
        start, index, timeout, n = time.monotonic(), worker.measured, self.limits.timeout_for(cell), len(record.order)
        worker.send(index, cell)
        deadline, mem_mb = start + timeout, self.limits.mem_mb()
        forced = worker.watch(index, deadline, mem_mb)
        result = _result(cell, worker.of(index))
        self.skips.saw(result)
        reported, last = bool(worker.of(index, "status")), False
        if forced is None and reported and all(self.skips.skip(c) for c in pending):
            last = True
            worker.close_input()
            forced = worker.watch(index, deadline, mem_mb, until_exit=True)
        rc = worker.popen.returncode
        if rc is not None and not forced and index > 0 and not worker.of(index, "begin"):
            leaving = worker.first("leaving")
            self._end(worker, record, f"ended after cell {index} of {n}: {leaving['cause']}" if leaving else
                      f"died between cells, after cell {index} of {n}: {exit_cause(rc)}{worker.log_tail()}")
            return None
        if forced and forced[0] == TIMEOUT:
            forced = (TIMEOUT, f"no exit within {timeout:.0f} s after its last cell reported; killed" if reported
                      else forced[1].format(timeout))
        in_cell = rc is not None and (not reported or last)   # it ended in this cell, or at the exit asked for
        _ended(result, rc if in_cell else None, forced, worker.log_tail(1 if forced else 3), index)
        result.wall_s = time.monotonic() - start
        if times := worker.of(index, "times"):
            self.split.add_cell(times[-1])
            record.times.append({"at": record.order.index(cell), "wall_s": result.wall_s,
                                 **{k: v for k, v in times[-1].items() if k.endswith("_s")}})
        if rc is not None:
            if forced:
                how = f"killed in cell {index + 1} of {n}: {forced[0]}"
            elif in_cell and result.status == CRASH:
                how = f"died in cell {index + 1} of {n}: {exit_cause(rc)}"
            elif not in_cell and rc != 0:
                how = f"died after cell {index + 1} of {n} reported, before the next began: {exit_cause(rc)}"
            elif (leaving := worker.first("leaving")) is not None:
                how = f"ended after cell {index + 1} of {n}: {leaving['cause']}"
            else:
                how = "ended after its last cell" if last else f"ended after cell {index + 1} of {n}"
            self._end(worker, record, how)
        return result


def run_cell(cell: Cell, cache_dir: Path, limits: Limits) -> CellResult:
    """One cell in a worker process of its own (what tests and one-off checks call)."""
    plan = WorkerPlan(round=cell.repeat, group=process_group(cell), cells=(cell,), seed="")
    (result,) = list(Sweep([plan], limits, cache=cache_dir))
    return result
