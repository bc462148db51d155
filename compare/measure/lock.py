"""One writer per results file: a sweep holds an advisory lock on its --out for as long as it runs, so two
runs pointed at the same file refuse to start instead of overwriting each other's cells.

The lock is flock(2) on a hidden sibling file (`.NAME.lock`): the kernel drops it when the process ends,
however it ends, so a crashed or killed run never leaves a stale lock behind."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ..options import BadInput

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking, atomic saves still hold
    fcntl = None


def lock_path(path: Path) -> Path:
    return Path(path).with_name(f".{Path(path).name}.lock")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    lp = lock_path(path)
    lp.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lp, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BadInput(f"--out: another threadbench run (pid {holder}) is writing {path}; "
                           "give a different --out") from None
        try:  # the holder before us may have removed the file between our open and our lock: retry
            same = os.stat(lp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            lp.unlink()
        os.close(fd)
