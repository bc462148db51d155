"""The host's side of the environment captured with every run (backends describe their own side)."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

import psutil

from backends import ENTRY_POINT_GROUP
from backends.base import cpu_model


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _packages() -> dict[str, str]:
    """Versions of the core's packages, the built-in frameworks and every installed backend plug-in."""
    names = ["threadbench", "numpy", "scipy", "polars", "torch", "mlx"]
    names += [ep.dist.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.dist is not None]
    return {n: v for n in dict.fromkeys(names) if (v := _version(n))}


def threadbench_revision() -> str | None:
    """The git commit this threadbench runs from ('+dirty' with local changes), so a figure names its code.

    A copy of the tree whose .git is not its history (a borrowed machine gets the working tree on top of
    an older checkout) can be told its revision in THREADBENCH_REVISION; what git says is kept beside it."""
    stated = os.environ.get("THREADBENCH_REVISION", "").strip()
    found = _git_revision()
    return f"{stated} (stated in THREADBENCH_REVISION; git here: {found})" if stated else found


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def host_environment() -> dict:
    gil = getattr(sys, "_is_gil_enabled", None)
    return {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "gil_enabled": True if gil is None else bool(gil()),
        "packages": _packages(),
        "threadbench_revision": threadbench_revision(),
        "env_vars": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                 "CUDA_VISIBLE_DEVICES", "PYTORCH_ENABLE_MPS_FALLBACK")
                     if k in os.environ},
    }
