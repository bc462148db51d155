"""Validation of every user input, before any work starts. Each problem is one BadInput line. Imports
nothing of threadbench: what it checks against (backends, modes, strategies) is handed in."""
from __future__ import annotations

import difflib
import importlib.util
import math
import os
import tempfile
from pathlib import Path

MAX_THREADS = 256


class BadInput(Exception):
    pass


# Names people type for a value under another spelling: the alias -> the value threadbench calls it.
ALIASES = {"fp16": "float16", "half": "float16", "f16": "float16", "bf16": "bfloat16", "fp32": "float32",
           "f32": "float32", "float": "float32", "fp64": "float64", "f64": "float64", "double": "float64",
           "tf32": "float32' with --fp32-precision 'high"}


def _suggest(value: str, valid) -> str:
    alias = ALIASES.get(value.lower())
    if alias and alias.split("'")[0] in list(valid):
        return f" (did you mean {alias!r}?)".replace('"', "'")
    close = difflib.get_close_matches(value, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _range_hint(text: str, lo: int, hi: int) -> str:
    """"2-8" -> " (list the values: 2,4,8)": its ends and the powers of two between them."""
    a, dash, b = text.partition("-")
    if not (dash and a.strip().isdigit() and b.strip().isdigit()):
        return ""
    a, b = sorted((int(a), int(b)))
    values = sorted({a, b} | {2 ** i for i in range(0, 12) if a < 2 ** i < b})
    values = [v for v in values if lo <= v <= hi]
    return f"; ranges are not accepted, list the values: {','.join(map(str, values))}" if values else ""


def names(option: str, text: str, valid, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise BadInput(f"{option}: give at least one {what}; valid: {', '.join(valid)}")
    for item in items:
        if item not in valid:
            raise BadInput(f"{option}: unknown {what} {item!r}{_suggest(item, valid)}; valid: {', '.join(valid)}")
    if len(set(items)) != len(items):
        raise BadInput(f"{option}: {what} listed twice in {text!r}")
    return items


def int_list(option: str, text: str, lo: int = 1, hi: int = MAX_THREADS) -> list[int]:
    items = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in items):
        raise BadInput(f"{option}: expected comma-separated whole numbers, e.g. 1,2,4,8; got {text!r}")
    out = []
    for s in items:
        try:
            v = int(s)
        except ValueError:
            raise BadInput(f"{option}: {s!r} is not a whole number{_range_hint(s, lo, hi)}") from None
        if not lo <= v <= hi:
            raise BadInput(f"{option}: {v} is out of range; use {lo} to {hi}")
        out.append(v)
    if len(set(out)) != len(out):
        raise BadInput(f"{option}: {text!r} lists a value twice")
    return sorted(out)


def devices(text: str | None, modes: list[str], cores: int) -> tuple[int, ...]:
    """--devices: device indices (of each backend's device kind) for the replicas modes, one replica each;
    every replica needs a core of its own (the host's cores are split between them). None: device 0."""
    if text is None:
        return (0,)
    if not {"replicas", "server-replicas"} & set(modes):
        raise BadInput("--devices: only the replicas modes use it; add replicas or server-replicas to --modes")
    found = tuple(int_list("--devices", text, lo=0, hi=MAX_THREADS - 1))
    if len(found) > cores:
        raise BadInput(f"--devices: {len(found)} replicas need a core each and this process may run on {cores}; "
                       f"list at most {cores} devices")
    return found


def shard(text: str | None) -> tuple[int, int] | None:
    """--shard I/N -> (I, N), 1 <= I <= N; None when not given."""
    if text is None:
        return None
    i, slash, n = text.strip().partition("/")
    if not (slash and i.strip().isdigit() and n.strip().isdigit()):
        raise BadInput(f"--shard: expected I/N, e.g. 2/4 (the second of four shards); got {text!r}")
    i, n = int(i), int(n)
    if not 1 <= i <= n:
        raise BadInput(f"--shard: {text!r}: the shard number must be 1 to {max(n, 1)}")
    return i, n


def target_ci(text: str | None, first: int, cap: int, least: int, level: float) -> float | None:
    """--target-ci PCT (5 or 5%) -> 0.05, checked with the --repeats it starts from (at least `least`, the
    fewest processes that give a `level` interval: compare.stopping) and --max-repeats."""
    if text is None:
        return None
    try:
        pct = float(text.strip().rstrip("%"))
    except ValueError:
        raise BadInput(f"--target-ci: expected a percentage of the median, e.g. 5 or 5%; got {text!r}") from None
    if not 0 < pct < 100:
        raise BadInput(f"--target-ci: {pct:g}% is out of range; use a width above 0 and below 100% of the median")
    if first < least:
        raise BadInput(f"--target-ci: --repeats {first} cannot give a {100 * level:g}% interval; start from "
                       f"--repeats {least} or more")
    if cap < first:
        raise BadInput(f"--max-repeats: {cap} is below --repeats {first}")
    return pct / 100


def paths(option: str, text: str) -> list[str]:
    """Comma-separated paths of executable files (interpreters), each given once."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            raise BadInput(f"{option}: an empty path in {text!r}; give paths separated by commas")
        path = Path(item).expanduser()
        if not path.is_file():
            raise BadInput(f"{option}: {item!r} {'is a folder' if path.is_dir() else 'does not exist'}; give the "
                           "path of a Python interpreter (benchmarks/build-freethreaded.sh builds a free-threaded one)")
        if not os.access(path, os.X_OK):
            raise BadInput(f"{option}: {item!r} is not executable; give the path of a Python interpreter")
        if str(path) not in out:
            out.append(str(path))
    return out


def one_name(option: str, text: str, valid, what: str) -> str:
    """Exactly one name (--device)."""
    items = names(option, text, valid, what)
    if len(items) > 1:
        raise BadInput(f"{option}: give one {what}, not {len(items)} ({text!r})")
    return items[0]


def positive(option: str, value: float | None, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0 or not math.isfinite(value):
        raise BadInput(f"{option}: must be a finite number greater than 0, got {value}")


def writable_out(path: Path, option: str = "--out") -> None:
    """The results file can be written: its folder exists (or can be made) and accepts a new file."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{option}: {path} is a folder; give a file name")
    folder = path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BadInput(f"{option}: {existing} is a file, so {path} cannot be created")
    writable_folder(folder, option)


def writable_folder(folder: Path, option: str) -> None:
    """The folder exists (made if need be) and accepts a new file; else BadInput, one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".threadbench-probe-"):
            pass
    except OSError as e:
        raise BadInput(f"{option}: cannot write in {folder}: {e.strerror or e}") from None


def cache_dir(path: Path | None, option: str = "--cache-dir") -> Path | None:
    """The folder of float64 references a sweep shares with later ones: it exists (or can be made) and
    accepts a new file. None: a temporary folder per sweep."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise BadInput(f"{option}: {path} is a file; give a folder, e.g. {option} /tmp/threadbench-cache")
    writable_folder(path, option)
    return path


def no_matrix_with_resume(given: list[str], allowed: list[str]) -> None:
    """--resume takes its cells from the file; options that would change them are refused, not ignored."""
    if given:
        raise BadInput(f"--resume runs the cells planned in the file; drop {', '.join(given)} "
                       f"(only {', '.join(allowed)} go with it)")


def sizes(text: str | None, known: set[str]) -> tuple:
    """--size "layers=2,seq=32" -> (("layers", 2), ("seq", 32))."""
    if not text:
        return ()
    pairs = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise BadInput(f"--size: expected NAME=VALUE pairs, e.g. layers=2,seq=32; got {part!r}")
        if name not in known:
            raise BadInput(f"--size: unknown knob {name!r}{_suggest(name, known)}; knobs: {', '.join(sorted(known))}")
        try:
            v = int(value)
        except ValueError:
            raise BadInput(f"--size: {name}={value!r} is not a whole number") from None
        if v < 1:
            raise BadInput(f"--size: {name} must be at least 1")
        pairs[name] = v
    return tuple(sorted(pairs.items()))


def server_modes(modes: list[str], latency_bound_ms: float | None, strategies: dict) -> None:
    """Server modes whose strategy (in `strategies`, compare.measure's table of them) is declared but cannot
    run yet are refused; --latency-bound-ms must be a positive number of milliseconds and only goes with a
    server mode."""
    for mode in modes:
        if mode.startswith("server-") and strategies[mode.removeprefix("server-")].make is None:
            raise BadInput(f"--modes: {mode} cannot run: {strategies[mode.removeprefix('server-')].refusal}")
    positive("--latency-bound-ms", latency_bound_ms)
    if latency_bound_ms is not None and not any(m.startswith("server-") for m in modes):
        raise BadInput("--latency-bound-ms: applies to the server modes only (add e.g. --modes server-threads)")


def runnable_modes(modes, strategies: dict) -> list[str]:
    """--modes all: every mode that can run (a server strategy of `strategies` that is declared but not built
    yet is left out)."""
    return [m for m in modes if not m.startswith("server-") or strategies[m.removeprefix("server-")].make]


LOADGEN_MODULE = "mlperf_loadgen"   # what the mlcommons-loadgen package installs


def load_generator(value: str, modes: list[str], generators: dict, auto: str) -> str:
    """--load-generator: `auto` (each server cell's interpreter decides: compare.measure.plan) or one of
    `generators` (compare.cells.LOAD_GENERATORS), named only with a server mode; LoadGen only where its
    package is installed (the loadgen extra)."""
    name = one_name("--load-generator", value, [auto, *generators], "load generator")
    if name != auto and not any(m.startswith("server-") for m in modes):
        raise BadInput(f"--load-generator: {name} drives the server modes only (add e.g. --modes server-threads)")
    if name == "loadgen" and importlib.util.find_spec(LOADGEN_MODULE) is None:
        raise BadInput("--load-generator: loadgen needs MLPerf LoadGen, which is not installed here: pip install "
                       "'threadbench[loadgen]' (mlcommons-loadgen: CPython 3.11 and 3.12, no free-threaded build)")
    return name
