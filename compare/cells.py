"""What one measurement is: a Cell (the settings) and a CellResult (what happened). Plain data only."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModeSpec:
    """Everything the core needs to know about a mode, except how it runs (compare.measure.registry.MEASURES).

    Adding a mode = one entry here + one entry in MEASURES. Plan, labels, tables, diff and plots read this."""
    name: str
    summary: str               # one line: what runs (README, legend)
    axis: str                  # what varies between its cells: "threads" (N of --threads), "k" (--offline-k),
    #                            "devices" (N of --devices, one replica each; Cell.threads holds N), "none"
    ceiling: bool = False      # its cells are ceiling configurations (%-of-ceiling is measured against them)
    line: tuple[str, str] | None = None   # plot: (line style, marker) of its curve; None = drawn otherwise
    start_s: float = 0.0       # extra start-up each of its N workers needs (own interpreter + framework): the cell timeout allows it
    extra_s: float = 0.0       # seconds a cell may take beyond its timed trials (the server search's budget)
    throughput: bool = True    # its trials are throughput windows; False: server rate steps (their own table)
    strategy: bool = True      # a way a server could handle single requests (offline: the caller batches them)
    one_process: bool = True   # its participants are threads of one process, sharing one interpreter (and GIL)

    def axis_value(self, threads: int, k: int) -> int:
        return {"threads": threads, "devices": threads, "k": k}.get(self.axis, 1)


MODES: dict[str, ModeSpec] = {m.name: m for m in (
    ModeSpec("sequential", "the main thread, one request after another", axis="none"),
    ModeSpec("threads", "N Python threads, each with its own input, sharing one model", axis="threads",
             line=("-", "o")),
    ModeSpec("streams", "as threads, each thread issuing work on its own stream", axis="threads", line=("-.", "s")),
    ModeSpec("batched", "N client threads submit single requests to a dynamic batcher on the main thread",
             axis="threads", line=(":", "^")),
    ModeSpec("offline", "the main thread running batches of k requests, counted in requests", axis="k",
             ceiling=True, strategy=False),
    # ceiling: N processes serve the same single requests with no GIL between them; where they beat every
    # offline batch, that is what this machine can do, and threads are read against it
    ModeSpec("processes", "N processes, each with its own copy of the model and its own input",
             axis="threads", ceiling=True, line=("--", "D"), one_process=False,
             start_s=15.0),  # a torch import + build on a busy 2-core box
    # open-loop server scenario (compare.measure.server): a trial is one offered rate of the search
    ModeSpec("server-threads", "Poisson arrivals to N worker threads; peak rate with p99 under the bound",
             axis="threads", extra_s=240.0, throughput=False),
    ModeSpec("server-batched", "Poisson arrivals to the dynamic batcher; peak rate with p99 under the bound",
             axis="threads", extra_s=240.0, throughput=False),
    ModeSpec("server-processes", "Poisson arrivals to a pool of N worker processes; peak rate with p99 under the "
             "bound", axis="threads", extra_s=240.0, throughput=False, one_process=False,
             start_s=15.0),  # start_s: as processes
    # several devices of one host: a processes-mode process per device, pinned to it and to its share of the
    # host's cores (compare.measure.processes.run_replicas); its own axis, so that it is read against one
    # device's best, never mixed into a one-device threads curve
    # strategy=False: N devices are not one device's way of serving (it is read against one device's best)
    ModeSpec("replicas", "N processes, one per device of --devices, each with its own model replica and input",
             axis="devices", strategy=False, one_process=False, start_s=15.0),  # start_s: as processes
    ModeSpec("server-replicas", "Poisson arrivals to a pool of one worker process per device of --devices; peak "
             "rate with p99 under the bound", axis="devices", extra_s=240.0, throughput=False, one_process=False,
             start_s=15.0),  # start_s: as processes
)}


# A free-threaded build (sysconfig Py_GIL_DISABLED) runs both ways, as separate cells: "on" = PYTHON_GIL=1;
# "off" = PYTHON_GIL unset, the build's own setting: off, unless an extension that has not declared itself
# safe without it re-enables it (with only a RuntimeWarning). Not PYTHON_GIL=0: that forces it off under such
# an extension (unsafe) and hides exactly what must be recorded; the worker records the module that did it
# and whether the GIL was off after the framework's import and after the cell.
GIL_SETTINGS: dict[str, str | None] = {"on": "1", "off": None}   # PYTHON_GIL in the worker's environment
DEFAULT_PYTHON = "default"   # how the interpreter running threadbench is named wherever interpreters are listed
GIL_BACK_ON = "GIL back on"  # a cell asked to run GIL-off whose GIL was on when measured: never free-threaded


def interpreter_label(python: str, gil: str, gil_was_on: bool | None = None) -> str:
    """"" (the default interpreter), "CPython 3.13.5t GIL on", "CPython 3.13.5t GIL off", and for a GIL-off
    cell whose GIL was on when it ran "CPython 3.13.5t GIL off, GIL back on" (never read as free-threaded)."""
    if not python and not gil:
        return ""
    label = python or DEFAULT_PYTHON
    if gil:
        label += f" GIL {gil}"
    if gil == "off" and gil_was_on:
        label += f", {GIL_BACK_ON}"
    return label


def axis_label(mode: str, threads: int, k: int) -> str:
    """The one spelling of what varies within a mode: "k=8" (offline; "×2 k=8" when it runs 2 threads, a ceiling
    configuration), "×4" (threads, streams, batched), "×4 dev" (replicas on 4 devices), "" otherwise."""
    axis = MODES[mode].axis if mode in MODES else "threads"
    return {"k": f"×{threads} k={k}" if threads > 1 else f"k={k}", "threads": f"×{threads}",
            "devices": f"×{threads} dev"}.get(axis, "")


# Who issues a server cell's queries and judges each rate. Adding one = an entry here and its branch in
# compare.measure.server (its steps) and compare.options.load_generator (what it needs installed).
LOAD_GENERATORS: dict[str, str] = {
    "threadbench": "threadbench's own dispatcher and rules (compare.measure.loadgen)",
    "loadgen": "MLPerf LoadGen's Server scenario, its own verdict per rate (compare.measure.mlperf; the loadgen extra)",
}
THREADBENCH, LOADGEN = LOAD_GENERATORS
AUTO = "auto"   # --load-generator's default: LoadGen for the cells of an interpreter that has it, else threadbench's
#                 own (issue 20's cross-check: on a 2-core machine the own dispatcher's cheaper per-query path left the
#                 model more CPU, and its peaks sat 24-60% above LoadGen's boundary for the same model and strategy)

WINDOW_CAP_DURATIONS = 4  # default cap on a timed window: 4 x --duration (Cell.window_cap), so a cell costs at
#                           most 4x its asked time before it is called too slow (raise --duration to measure it)

@dataclass(frozen=True)
class StatusSpec:
    """Everything threadbench knows about one cell status. Adding a status = one entry in STATUSES; no status
    string is written anywhere else (results files keep `name`; people read `label`)."""
    name: str           # as results files store it
    label: str          # as tables, logs and plots print it
    meaning: str        # the legend's line ("" for ok: nothing to explain)
    failed: bool = False     # a failure: no throughput anywhere, exit code 1, --resume runs it again
    resumable: bool = False  # --resume runs it again (every failure; also a process interrupted or never run)


# In precedence order: a cell measured in several processes takes the first status any of them has (a cell is
# ok only when every process was). Only "ok" carries throughput in a summary ("wrong" keeps its measured ops in
# the raw rows only); every other status says why there is none.
STATUSES: dict[str, StatusSpec] = {s.name: s for s in (
    StatusSpec("crash", "CRASH", "the cell's process died (the signal, e.g. SIGSEGV, follows)", failed=True,
               resumable=True),
    StatusSpec("timeout", "TIMEOUT", "the cell ran past --cell-timeout", failed=True, resumable=True),
    StatusSpec("memory", "MEMORY", "the cell went over --mem-limit-mb", failed=True, resumable=True),
    StatusSpec("error", "ERROR", "the framework raised an exception", failed=True, resumable=True),
    StatusSpec("wrong", "WRONG", "outputs outside the tolerance against the float64 reference (errors/checked)",
               failed=True, resumable=True),
    StatusSpec("interrupted", "interrupted", "the sweep was stopped (Ctrl-C) while the cell ran", resumable=True),
    StatusSpec("too_slow", "too slow",
               "one request took longer than the timed window (raise --duration); larger cells skipped"),
    StatusSpec("skipped", "skipped", "not started (a smaller cell of the same kind was too slow)"),
    StatusSpec("unsupported", "unsupported", "the backend cannot run this mode or dtype"),
    StatusSpec("unavailable", "unavailable", "the device is not present or not usable here"),
    StatusSpec("ok", "ok", ""),
)}
CRASH, TIMEOUT, MEMORY, ERROR, WRONG, INTERRUPTED, TOO_SLOW, SKIPPED, UNSUPPORTED, UNAVAILABLE, OK = STATUSES
FAILED = tuple(s.name for s in STATUSES.values() if s.failed)
RESUMABLE = tuple(s.name for s in STATUSES.values() if s.resumable)
PRECEDENCE = tuple(STATUSES)   # the order above


def status_label(status: str) -> str:
    """How people read a status: "too slow", "CRASH"; an unknown one (a newer file) as written, spaced."""
    return STATUSES[status].label if status in STATUSES else status.replace("_", " ")


@dataclass(frozen=True)
class Cell:
    backend: str
    device: str
    dtype: str
    workload: str
    mode: str
    threads: int = 1
    k: int = 1                 # offline: requests per forward (batch = k x the workload's batch)
    knobs: tuple = ()          # workload size overrides, as sorted (name, value) pairs
    duration: float = 0.5      # seconds per timed trial
    trials: int = 5
    warmup: int = 3            # ops per thread before timing
    seed: int = 0
    fp32_precision: str = "highest"
    max_batch: int = 0         # batched: 0 means the number of clients
    max_wait_ms: float = 2.0   # batched: how long the batcher waits to fill a batch
    verify_ops: int = 5        # ops per thread checked against the reference after the timed trials
    intra_op_threads: int | None = None  # the framework's intra-op (math library) threads; None = its default
    backend_options: tuple = ()  # backend-specific settings, as sorted (name, value) string pairs
    repeat: int = 0            # which fresh process of the cell this is (repeats pool into one cell)
    latency_bound_ms: float | None = None  # server modes: p99 bound; None = a multiple of the single-request p50
    max_window: float = 0.0    # longest timed window, s; 0: WINDOW_CAP_DURATIONS x duration
    load_generator: str = THREADBENCH  # server modes: who issues the queries and judges a rate (LOAD_GENERATORS)
    devices: tuple = ()        # replicas: the device indices (of the backend's device kind) replica i runs on;
    #                            threads = len(devices). Not in key(): which N devices of a host is recorded per row
    python: str = ""           # the interpreter the cell runs under; "" = the one running threadbench ("default")
    python_label: str = ""     # how people read it ("CPython 3.13.5t"; t: a free-threaded build); "" = default
    gil: str = ""              # a free-threaded build's GIL as asked (GIL_SETTINGS); "" = the interpreter's own

    def key(self) -> tuple:
        """Identity of the cell across runs (settings that change what is measured). The interpreter joins
        it only where it is not the default, so the keys of cells measured before it existed are unchanged."""
        return (self.backend, self.device, self.dtype, self.workload, self.size_label(), self.mode,
                self.threads, self.k, self.fp32_precision, self.intra_op_threads) + self.interpreter_key()

    def interpreter_key(self) -> tuple:
        return (self.python, self.gil) if self.python or self.gil else ()

    def interpreter(self) -> str:
        """The interpreter as asked, as tables print it: "" for the default, "CPython 3.13.5t GIL off"."""
        return interpreter_label(self.python_label or self.python, self.gil)

    @property
    def requests_per_forward(self) -> int:
        """Requests in one forward: k for offline, else 1 (the batcher forms its batches at run time)."""
        return self.k if MODES[self.mode].axis == "k" else 1

    @property
    def window_cap(self) -> float:
        """The longest a timed window may grow to hold the minimum of ops per thread; beyond it, too slow."""
        return self.max_window or WINDOW_CAP_DURATIONS * self.duration

    def size_label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.knobs) or "default"

    def label(self) -> str:
        extra = axis_label(self.mode, self.threads, self.k)
        python = self.interpreter()
        return (f"{self.backend}/{self.device}/{self.dtype} {self.workload} {self.mode}" + (f" {extra}" if extra else "")
                + (f" [{python}]" if python else ""))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["knobs"] = [list(p) for p in self.knobs]
        d["backend_options"] = [list(p) for p in self.backend_options]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Cell":
        d = dict(d)
        d["knobs"] = tuple(tuple(p) for p in d.get("knobs", ()))
        d["backend_options"] = tuple(tuple(p) for p in d.get("backend_options", ()))
        d["devices"] = tuple(d.get("devices", ()))
        return cls(**d)


@dataclass
class Trial:
    ops: int
    seconds: float             # last completion - first start
    lat_p50_ms: float | None = None
    lat_p90_ms: float | None = None
    lat_p99_ms: float | None = None
    batch_hist: dict[str, int] | None = None
    rate: float | None = None        # server modes: the offered rate (queries/s) of this step
    lag_p99_ms: float | None = None  # server modes: the dispatcher's lag p99 (actual - scheduled issue)
    bound_ms: float | None = None    # server modes: the latency bound the step was judged against
    verdict: str | None = None       # server modes: "valid" or "invalid: <reason>"
    step_kind: str | None = None     # server modes: search, again or long (compare.serverrules.STEP_KINDS)
    window_s: float | None = None      # the window's planned length (>= duration when lengthened for the minimum)
    min_thread_ops: int | None = None  # fewest ops any thread (client) completed in the window
    # where each request's time went (compare.measure.split; None where not measured): per op, means over
    # every participant's ops, ms: the framework call (forward until it returns) and synchronise; the
    # thread's CPU time; its time runnable but waiting for a core (Linux)
    call_ms: float | None = None
    sync_ms: float | None = None
    cpu_ms: float | None = None
    core_wait_ms: float | None = None
    # over the sampled ops (split_samples of them): the thread's CPU time in the call and in synchronise, ms
    call_cpu_ms: float | None = None
    sync_cpu_ms: float | None = None
    split_samples: int | None = None
    # over the window: cores kept busy by the measuring threads, by their process(es), by the whole machine
    own_cores: float | None = None
    proc_cores: float | None = None
    host_cores: float | None = None
    # where the backend has a device timer: device time per sampled op (ms), the device's busy share
    device_ms: float | None = None
    device_busy: float | None = None

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


# A Trial's time-split fields (compare.measure.split.pool fills them; results rows hold them by these names)
SPLIT_FIELDS = ("call_ms", "sync_ms", "cpu_ms", "core_wait_ms", "call_cpu_ms", "sync_cpu_ms", "split_samples",
                "own_cores", "proc_cores", "host_cores", "device_ms", "device_busy")


@dataclass
class CellResult:
    cell: Cell
    status: str
    cause: str = ""
    trials: list[Trial] = field(default_factory=list)
    errors: int = 0            # verified outputs outside tolerance
    checked: int = 0           # outputs verified
    rel_err: float | None = None  # largest relative error vs the float64 reference
    flops_per_op: int | None = None  # per request (the workload's batch), so offline compares like-for-like
    peak_rss_mb: float | None = None
    peak_device_mb: float | None = None
    wall_s: float | None = None
    gpu_util_mean: float | None = None  # % of time a kernel ran while the mode ran (NVML; None: not sampled)
    gpu_util_max: float | None = None
    env: dict[str, Any] = field(default_factory=dict)  # the backend's describe() for this device
    traceback: str = ""         # an error's traceback from the cell's process (shown with --debug, not saved)
    # processes mode: each process that held a model, in process order (None where the cell ran in one process)
    process_rss_mb: list[float] | None = None      # each one's peak host RSS
    process_uss_mb: list[float] | None = None      # host memory unique to each (psutil USS, at its end): one more costs this
    process_device_mb: list[float] | None = None   # each one's peak device memory, where the backend reports it
    total_rss_mb: float | None = None              # their peak RSS summed (shared library pages count once per
    total_device_mb: float | None = None           # process); in one process: peak_rss_mb, peak_device_mb
    intra_op_ran: int | None = None                # intra-op threads each of them ran with, as its framework reported
    intra_op_rule: str = ""                        # why that many: --intra-op-threads, framework default, or cores // N
    # replicas mode: each replica's device (name), how the devices are linked (NVML topology; "unknown"
    # where the driver does not say), each replica's GPU utilisation over its timed windows (None: not sampled)
    device_names: list[str] | None = None
    device_link: str | None = None
    process_util_mean: list[float | None] | None = None
    precision: str | None = None       # effective matmul precision (fp32, tf32, bf16, fp16): the tolerance's key
    warmup_s: float | None = None      # warm-up windows' wall time before the trials
    warmup_windows: int | None = None
    steady: bool | None = None         # warm-up ended with two windows agreeing (else at its time cap)
    window_s: float | None = None      # timed window length used
    op_s: float | None = None          # the speed check's median single-op time
    os_threads: int | None = None      # most OS threads the cell's process ran at the end of a timed window
    cores: int | None = None           # the cores the cell's process(es) could run on (CPU affinity)
    # the interpreter that ran it (compare.measure.worker: executable, version, implementation, free_threaded)
    # and its GIL: gil_import / gil_after = enabled after the framework's import / after the cell;
    # gil_reenabled_by = the modules whose import re-enabled it
    interpreter: dict[str, Any] = field(default_factory=dict)

    @property
    def gil_was_on(self) -> bool | None:
        """Whether the GIL was on at any point the worker looked (None: not recorded)."""
        seen = [self.interpreter.get(k) for k in ("gil_import", "gil_after") if self.interpreter.get(k) is not None]
        return any(seen) if seen else None
