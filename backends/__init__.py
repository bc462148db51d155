"""Backend registry: built-ins named as "module:Class" strings, plug-ins read lazily from the
entry-point group `threadbench.backends`. Nothing here imports a framework.

A plug-in that cannot be used is refused alone, with its reason, and everything else keeps working:
an entry-point name that would shadow a built-in (the built-in keeps the name), a name two plug-ins
register with different targets (neither is used), a malformed name or target, and - found when it is
loaded - a module that does not import, a class that is not a Backend, is abstract, or whose `name`
differs from its entry-point name. `backends` lists every refusal; `compare --backends NAME` exits with it.
"""
from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points

from .base import DTYPES, Backend, BackendOption, Unsupported

ENTRY_POINT_GROUP = "threadbench.backends"
NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # typed in --backends a,b and --backend-option NAME.OPTION=V
TARGET_RULE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # "package.module:Class"

BUILTIN: dict[str, str] = {
    "torch": "backends.torch_backend:TorchBackend",
    "mlx": "backends.mlx_backend:MlxBackend",
    "numpy": "backends.numpy_backend:NumpyBackend",
}


class RegistryError(Exception):
    """A backend name that cannot be used: unknown, refused, or failing to load. One line."""


class PluginError(RegistryError):
    """A plug-in failed while loading (import, class checks, constructor). The plug-in's own exception is
    the __cause__, so `--debug` shows its file and line."""


@dataclass(frozen=True)
class Registration:
    name: str
    target: str                 # "module:Class"
    origin: str                 # "built-in" or "plug-in DIST VERSION"
    refused: str | None = None  # why this registration is not used; None when it is

    def describe(self) -> str:
        return f"{self.name} = {self.target} ({self.origin})"


@lru_cache(maxsize=1)
def registrations() -> tuple[Registration, ...]:
    """Every built-in and every plug-in entry point, each usable or refused with its reason."""
    out = [Registration(n, t, "built-in") for n, t in BUILTIN.items()]
    found: dict[str, list[Registration]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        origin = f"plug-in {dist.name} {dist.version}" if dist is not None else "plug-in"
        reg = Registration(ep.name, ep.value, origin)
        if not NAME_RULE.match(ep.name):
            reg = _refuse(reg, f"malformed name {ep.name!r}: use lower-case letters, digits, '-' and '_'")
        elif not TARGET_RULE.match(ep.value.strip()):
            reg = _refuse(reg, f"malformed target {ep.value!r}: expected 'package.module:Class'")
        elif ep.name in BUILTIN:
            reg = _refuse(reg, f"would shadow the built-in backend {ep.name!r} ({BUILTIN[ep.name]}); "
                               "rename the entry point")
        found.setdefault(ep.name, []).append(reg)
    for name, regs in found.items():
        usable = [r for r in regs if r.refused is None]
        if len({r.target for r in usable}) > 1:  # one target registered twice (two copies of a dist) is fine
            clash = " and ".join(r.describe() for r in usable)
            regs = [_refuse(r, f"registered by two plug-ins: {clash}; uninstall one") if r.refused is None else r
                    for r in regs]
        elif len(usable) > 1:
            regs = [r for r in regs if r.refused] + usable[:1]
        out += regs
    return tuple(out)


def _refuse(reg: Registration, why: str) -> Registration:
    return Registration(reg.name, reg.target, reg.origin, refused=f"plug-in backend {reg.describe()} refused: {why}")


def registry() -> dict[str, str]:
    """name -> "module:Class" for every usable backend (built-ins first, then plug-ins)."""
    return {r.name: r.target for r in registrations() if r.refused is None}


def refused() -> list[Registration]:
    """The registrations that are not used, each with its reason."""
    return [r for r in registrations() if r.refused is not None]


def refusal(name: str) -> str | None:
    """Why `name` cannot be used, when a refused plug-in is its only registration; else None."""
    if name in registry():
        return None
    reasons = [r.refused for r in refused() if r.name == name]
    return "; ".join(dict.fromkeys(reasons)) if reasons else None  # type: ignore[arg-type]


def names() -> list[str]:
    return list(registry())


def origin(name: str) -> str:
    return next((r.origin for r in registrations() if r.name == name and r.refused is None), "unknown")


def load(name: str) -> Backend:
    """Instantiate a backend by name (imports its module, not its framework). RegistryError when the name
    is unknown or refused; PluginError, caused by the plug-in's own exception, when it fails to load."""
    table = registry()
    if name not in table:
        raise RegistryError(refusal(name) or f"unknown backend {name!r}; known: {', '.join(table)}")
    target = table[name]
    module_name, _, cls_name = target.partition(":")
    where = f"backend {name!r} ({target}, {origin(name)})"
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any failure of a plug-in's import is that plug-in's alone
        raise PluginError(f"{where} cannot be imported: {type(e).__name__}: {e}") from e
    cls = getattr(module, cls_name, None)
    problem = class_problem(cls, name, cls_name, module_name)
    if problem:
        raise PluginError(f"{where}: {problem}")
    try:
        return cls()
    except Exception as e:  # noqa: BLE001
        raise PluginError(f"{where} failed in its constructor: {type(e).__name__}: {e}") from e


def declared(name: str, attribute: str, default=None):
    """A backend class's declared attribute (its module imported, not its framework, nothing instantiated);
    `default` for a name not registered here or a class that cannot be read: a results file outlives its
    plug-ins."""
    target = registry().get(name)
    if target is None:
        return default
    module_name, _, cls_name = target.partition(":")
    try:
        return getattr(getattr(importlib.import_module(module_name), cls_name), attribute, default)
    except Exception:  # noqa: BLE001 - a hint is optional; what it adds to is said either way
        return default


def known_failures(name: str) -> tuple[tuple[str, str], ...]:
    """The backend class's known_failures; () where it cannot be read (declared)."""
    return tuple(declared(name, "known_failures", ()))


def class_problem(cls, name: str, cls_name: str = "", module_name: str = "") -> str | None:
    """What breaks the contract in a backend class, before it is instantiated; None when nothing."""
    if cls is None:
        return f"module {module_name} has no attribute {cls_name!r}"
    if not (inspect.isclass(cls) and issubclass(cls, Backend)):
        return f"{cls!r} is not a subclass of backends.base.Backend"
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        return f"{cls.__name__} does not implement {missing}"
    own = getattr(cls, "name", None)
    if own != name:
        return f"its class says its name is {own!r}; the name and the entry-point name must be equal"
    devices = getattr(cls, "devices", None)
    if not isinstance(devices, tuple) or not devices or not all(isinstance(d, str) for d in devices):
        return "devices must be a non-empty tuple of device names"
    unknown = [d for d in cls.dtypes if d not in DTYPES]
    if not cls.dtypes or unknown:
        return f"dtypes must be a non-empty tuple from {', '.join(DTYPES)} (got {cls.dtypes!r})"
    if any(not isinstance(o, BackendOption) for o in dict(cls.options).values()):
        return "options must map each option name to a backends.base.BackendOption"
    return None


def own_options(name: str, pairs: tuple) -> tuple:
    """The cell's backend options for backend `name`: ("name.option", value) pairs -> sorted (option,
    value) pairs of that backend only."""
    prefix = f"{name}."
    return tuple(sorted((k[len(prefix):], v) for k, v in pairs if k.startswith(prefix)))


__all__ = ["Backend", "BackendOption", "Unsupported", "RegistryError", "PluginError", "Registration",
           "registrations", "registry", "refused", "refusal", "names", "load", "own_options",
           "ENTRY_POINT_GROUP"]
