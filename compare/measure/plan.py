"""Turn validated options into the cell processes a sweep runs, and those into the worker processes that
measure them.

Each cell is measured in `repeats` fresh processes (Cell.repeat numbers them): `plan` lists every cell once
per repeat, round by round (the list --resume reads). `worker_plans` then cuts each round into worker
processes, one per process group (`process_group`: what one process can hold, a backend on a device), each
measuring its group's share of the round in an order shuffled per process (seeded by the sweep and the
process number), so the spread between a cell's processes still holds what varies from one process to the
next, while start-up (imports, the framework's context, model builds) is paid once per process. Rounds run
one after another and each round runs every group once, frameworks taking turns (a torch process, an MLX
process, a torch process ...), so drift and other load on the machine hit every framework and every cell
alike. Ceiling modes (ModeSpec.ceiling) are planned as dedicated ceiling configurations: each --offline-k
with one thread and with the most threads of --threads, so a parallel backend is measured against a
ceiling that may use the same parallelism."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace
from typing import Any

import backends
import workloads

from ..cells import AUTO, GIL_SETTINGS, LOADGEN, MODES, THREADBENCH, Cell
from ..options import BadInput
from . import interpreters
from .interpreters import Interpreter
from .procs import usable_cores

PROBE_N = {"cpu": 512}  # matmul probe size per device; accelerators use PROBE_N_ACCEL
PROBE_N_ACCEL = 4096
DEFAULT_THREADS = (1, 2, 4, 8)  # --threads when not given, up to THREADS_PER_CORE x the usable cores:
THREADS_PER_CORE = 2            # past twice the cores more threads only queue for them (x4 already does on 2
#                                 cores), and every thread count costs --repeats processes of the sweep's time


@dataclass(frozen=True)
class Settings:
    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    modes: tuple[str, ...]
    threads: tuple[int, ...]
    dtypes: tuple[str, ...]
    device: str = "auto"
    fp32_precisions: tuple[str, ...] = ("highest",)
    offline_k: tuple[int, ...] = (1, 8, 64)
    knobs: tuple = ()
    peak_probe: bool = True
    template: Cell | None = None   # duration, trials, warmup, precision, batching knobs
    repeats: int = 1               # fresh processes per cell, pooled into its figure and interval
    process_per_cell: bool = False  # every cell process in a worker process of its own (worker_plans' alone)
    devices: tuple[int, ...] = (0,)  # replicas: device indices (--devices); its cells use the first N of them
    target_ci: float | None = None  # --target-ci: after `repeats` processes, more only while a cell's interval is
    #                                 wider than this fraction of its median (compare.stopping), up to max_repeats
    max_repeats: int = 15
    pythons: tuple[str, ...] = ()  # --python: interpreters the cells run under besides the default (always)


def resolve_device(backend: backends.Backend, wanted: str,
                   status: dict[str, str | None] | None = None) -> tuple[str | None, str]:
    """(device, reason if None). 'auto' = the backend's default; 'gpu' = its first non-cpu device. `status`:
    the backend's device status where it was asked elsewhere (under another interpreter); default: here."""
    here = status is None
    status = backend.device_status() if here else status
    if wanted == "auto":
        dev = backend.default_device() if here else next((d for d, w in status.items() if w is None), None)
        return (dev, "") if dev else (None, "; ".join(w for w in status.values() if w))
    if wanted == "gpu":
        accel = [d for d in backend.devices if d != "cpu"]
        usable = [d for d in accel if status.get(d) is None]
        return (usable[0], "") if usable else (None, "; ".join(status[d] for d in accel if status.get(d)) or
                                                  f"{backend.name} has no GPU device")
    if wanted not in backend.devices:
        return None, f"{backend.name} has no device {wanted!r} (its devices: {', '.join(backend.devices)})"
    return (wanted, "") if status[wanted] is None else (None, status[wanted])


def default_threads(cores: int | None = None) -> tuple[int, ...]:
    """The thread counts of a sweep that names none: DEFAULT_THREADS up to THREADS_PER_CORE x `cores` (default:
    the cores this process may run on)."""
    most = THREADS_PER_CORE * (cores or usable_cores())
    return tuple(n for n in DEFAULT_THREADS if n <= most)


def all_devices() -> set[str]:
    return {"auto", "gpu", "cpu", "cuda", "mps"}


def plan(s: Settings) -> tuple[list[Cell], list[tuple[Cell, str]]]:
    """(cell processes to run, interleaved over s.repeats rounds; cells that cannot run here with the reason)."""
    cells, unavailable = _plan_cells(s)
    return interleave(cells, s.repeats), unavailable


def interleave(cells: list[Cell], repeats: int) -> list[Cell]:
    """Round-robin: repeat 0 of every cell in plan order, then repeat 1 of every cell, and so on."""
    return [replace(c, repeat=r) for r in range(repeats) for c in cells]


def process_group(cell: Cell) -> tuple[tuple[str, Any], ...]:
    """What one worker process can hold, as named pairs: cells with equal groups may share a process. A
    backend on a device (its framework imported and its context made once), and the process-wide settings a
    framework cannot take back within a process (its intra-op threads, a backend's own options), which are
    the same for every cell of a sweep. A new axis that needs a process of its own (e.g. the interpreter a
    cell runs under) is one more pair here."""
    return (("backend", cell.backend), ("device", cell.device), ("intra_op_threads", cell.intra_op_threads),
            ("backend_options", cell.backend_options), ("python", cell.python), ("gil", cell.gil))


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process of a sweep: the round (= the repeat of every cell in it), its process group, its
    cells in the order it measures them, and the seed that shuffled that order."""
    round: int
    group: tuple[tuple[str, Any], ...]
    cells: tuple[Cell, ...]
    seed: str


def worker_plans(cells: list[Cell], seed: str, alone: bool = False) -> list[WorkerPlan]:
    """The worker processes that measure `cells` (cell processes, as `plan` lists them), in the order they
    run: round by round (Cell.repeat); within a round one process per process group, groups taking turns in
    the order they first appear in `cells` (the order of --backends); the i-th process's cells shuffled by
    random.Random(f"{seed}/{i}"). `alone`: one cell per process, in plan order (--process-per-cell)."""
    if alone:
        return [WorkerPlan(c.repeat, process_group(c), (c,), "") for c in cells]
    rounds: dict[int, dict[tuple, list[Cell]]] = {}
    for c in cells:
        rounds.setdefault(c.repeat, {}).setdefault(process_group(c), []).append(c)
    plans: list[WorkerPlan] = []
    for r in sorted(rounds):
        for group, members in rounds[r].items():
            order, own = list(members), f"{seed}/{len(plans) + 1}"
            random.Random(own).shuffle(order)
            plans.append(WorkerPlan(r, group, tuple(order), own))
    return plans


def shard_of(plans: list[WorkerPlan], shards: int, cost=lambda p: len(p.cells)) -> list[int]:
    """Which shard (0-based) runs each worker process of a sweep cut into `shards` parts (--shard i/n). A
    worker process (one round of one process group) is never cut: shard j takes the processes whose middle
    falls in the j-th n-th of the sweep's total cost (`cost`: cells measured, unless the caller knows better),
    counted in run order. So each shard is a run of consecutive rounds, cut inside a round only where there
    are more shards than rounds, frameworks still taking turns inside it, and shards cost about alike. If
    that leaves a shard empty (processes of very unequal cost), equal numbers of processes instead."""
    if not 1 <= shards <= len(plans):
        raise BadInput(f"--shard: this sweep runs {len(plans)} worker processes (rounds x process groups); "
                       f"cut it into 1 to {len(plans)} shards, not {shards}")
    costs = [max(cost(p), 0) for p in plans]
    total, before, owner = sum(costs) or 1, 0.0, []
    for c in costs:
        owner.append(min(shards - 1, int((before + c / 2) * shards / total)))
        before += c
    if len(set(owner)) < shards:
        owner = [k * shards // len(plans) for k in range(len(plans))]
    return owner


def ceiling_threads(threads: tuple[int, ...]) -> list[int]:
    """Thread counts of the ceiling configurations: one thread, and the most the sweep asks for."""
    return sorted({1, max(threads, default=1)})


def interpreters_of(s: Settings) -> list[Interpreter]:
    """The default interpreter, then each of --python (asked what it is; a bad path: BadInput)."""
    return [interpreters.default(), *(interpreters.probe(p) for p in s.pythons)]


def _plan_cells(s: Settings) -> tuple[list[Cell], list[tuple[Cell, str]]]:
    base = s.template or Cell(backend="", device="", dtype="", workload="", mode="")
    cells, unavailable = [], []
    pythons = interpreters_of(s)
    statuses: dict[tuple[str, str], dict] = {}   # (interpreter, backend) -> device status, asked once
    for dtype in s.dtypes:
        for name in s.backends:
            try:
                backend = backends.load(name)
            except (ImportError, backends.RegistryError) as e:  # a plug-in whose module does not import
                raise BadInput(f"--backends: {name}: {e}") from None
            for python in pythons:
                status = None
                if python.path:
                    if (python.path, name) not in statuses:
                        statuses[python.path, name] = interpreters.backend_status(python, name, backend.devices)
                    status = statuses[python.path, name]
                generator, no_loadgen = load_generator_for(base.load_generator, python)
                for gil in python.gil_settings():
                    own = replace(base, python=python.path, python_label=python.label, gil=gil,
                                  load_generator=generator)
                    got = _backend_cells(s, own, backend, name, dtype, status)
                    if no_loadgen:   # a server cell LoadGen cannot drive here is unavailable, with why
                        unavailable += [(c, no_loadgen) for c in got[0] if c.mode.startswith("server-")]
                        got = ([c for c in got[0] if not c.mode.startswith("server-")], got[1])
                    cells += got[0]
                    unavailable += got[1]
    return cells, unavailable


def load_generator_for(wanted: str, python: Interpreter) -> tuple[str, str]:
    """The load generator of the server cells under `python`, and why they cannot run ("" when they can):
    auto is LoadGen where it imports, else threadbench's own; a named one is taken as named."""
    if wanted == AUTO:
        return (LOADGEN if python.loadgen else THREADBENCH), ""
    if wanted == LOADGEN and not python.loadgen:
        return wanted, f"MLPerf LoadGen does not import under {python.name()} (no free-threaded build has it)"
    return wanted, ""


def _backend_cells(s: Settings, base: Cell, backend: backends.Backend, name: str, dtype: str,
                   status: dict | None) -> tuple[list[Cell], list[tuple[Cell, str]]]:
    """One backend's cells of one dtype under one interpreter and GIL setting (base.python, base.gil)."""
    cells, unavailable = [], []
    first_interpreter = not base.python and base.gil in ("", next(iter(GIL_SETTINGS)))
    device, why = resolve_device(backend, s.device, status)
    for precision in precisions_for(backend, dtype, s.fp32_precisions):
        template = replace(base, backend=name, device=device or s.device, dtype=dtype, knobs=s.knobs,
                           fp32_precision=precision,
                           backend_options=backends.own_options(name, base.backend_options))
        if device is None:
            unavailable += [(replace(template, workload=w, mode=s.modes[0]), why) for w in s.workloads]
            continue
        if s.peak_probe and dtype in backend.dtypes and first_interpreter:  # the machine's peak: measured once
            n = PROBE_N.get(device, PROBE_N_ACCEL)
            probe = replace(template, workload="matmul", mode="sequential", knobs=(("batch", n), ("n", n)),
                            load_generator=THREADBENCH)
            cells.append(probe)
            if device == "cpu" and (os.cpu_count() or 1) > 1:  # a CPU's peak needs every core busy
                cells.append(replace(probe, mode="threads", threads=os.cpu_count()))
            if device != "cpu":  # launch rate: tiny synchronised ops/s (compare.measure.host; a
                cells.append(replace(probe, workload="launch", knobs=()))  # CPU cell has no launch)
        for w in s.workloads:
            cells += _cells_for(replace(template, workload=w), s)
    return cells, unavailable


def precisions_for(backend: backends.Backend, dtype: str, wanted: tuple[str, ...]) -> list[str]:
    """float32 runs once per requested matmul setting the backend can apply, else once as "native";
    other dtypes run once (the setting does not touch them), labelled with the first request."""
    if dtype != "float32":
        return [wanted[0]]
    own = [p for p in wanted if p in backend.fp32_precisions]
    return own or ["native"]


def _cells_for(t: Cell, s: Settings) -> list[Cell]:
    out = []
    server = t
    for mode in s.modes:   # who issues the queries means nothing to a closed loop: one identity for its cells
        t = server if mode.startswith("server-") else replace(server, load_generator=THREADBENCH)
        axis = MODES[mode].axis
        if axis == "k":   # k outer: a too-slow k skips the bigger k at every thread count, not the smaller
            threads = ceiling_threads(s.threads) if MODES[mode].ceiling else [1]
            out += [replace(t, mode=mode, threads=n, k=k) for k in s.offline_k for n in threads]
        elif axis == "threads":
            out += [replace(t, mode=mode, threads=n) for n in s.threads]
        elif axis == "devices":
            out += [replace(t, mode=mode, threads=n, devices=s.devices[:n]) for n in replica_counts(len(s.devices))]
        else:
            out.append(replace(t, mode=mode, threads=1))
    return out


def replica_counts(devices: int) -> list[int]:
    """How many replicas the replicas cells of a sweep over `devices` devices run: 1, the powers of two
    between, and all of them (1, 2, 4, 8 of 8; 1, 2, 3 of 3), so each is read against one device's figure."""
    return sorted({n for n in (2 ** i for i in range(devices.bit_length())) if n <= devices} | {devices})


def knob_names() -> set[str]:
    return {k for w in workloads.WORKLOADS for k in workloads.knob_names(w)}
