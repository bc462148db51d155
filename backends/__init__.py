"""Backend registry: built-ins named as "module:Class" strings, plug-ins read lazily from the
entry-point group `threadbench.backends`. Nothing here imports a framework."""
from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from .base import Backend, Unsupported

ENTRY_POINT_GROUP = "threadbench.backends"

BUILTIN: dict[str, str] = {
    "torch": "backends.torch_backend:TorchBackend",
    "mlx": "backends.mlx_backend:MlxBackend",
    "numpy": "backends.numpy_backend:NumpyBackend",
}


class RegistryError(Exception):
    pass


@lru_cache(maxsize=1)
def registry() -> dict[str, str]:
    """name -> "module:Class" for every built-in and plug-in backend. Refuses duplicate names."""
    names = dict(BUILTIN)
    seen_plugins: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN:
            raise RegistryError(
                f"plug-in backend {ep.name!r} ({ep.value}) would shadow the built-in {BUILTIN[ep.name]}; "
                "rename the entry point")
        if ep.name in seen_plugins and seen_plugins[ep.name] != ep.value:
            raise RegistryError(
                f"two plug-ins register backend {ep.name!r}: {seen_plugins[ep.name]} and {ep.value}")
        seen_plugins[ep.name] = ep.value
        names[ep.name] = ep.value
    return names


def names() -> list[str]:
    return list(registry())


def load(name: str) -> Backend:
    """Instantiate a backend by name (imports its module, not its framework)."""
    table = registry()
    if name not in table:
        raise RegistryError(f"unknown backend {name!r}; known: {', '.join(table)}")
    module_name, _, cls_name = table[name].partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    backend = cls()
    if getattr(backend, "name", None) != name:
        raise RegistryError(f"backend class {table[name]} says its name is {backend.name!r}, registered as {name!r}")
    return backend


__all__ = ["Backend", "Unsupported", "RegistryError", "registry", "names", "load", "ENTRY_POINT_GROUP"]
