"""The one way threadbench writes a file that must never be seen half-written: results files, rendered
reports, plots, the reference cache. Write to a temporary file in the target's folder, fsync, then rename over
the target (atomic on POSIX within one file system). Not here: what goes in the file."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Unwritable(OSError):
    """The target's folder cannot be created (`step` "create folder") or takes no new file (`step` "write
    in"): raised before anything is written, with the OSError's errno and strerror and the `folder`."""

    def __init__(self, step: str, folder: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror)
        self.step, self.folder = step, folder


@contextmanager
def atomic_write(path: Path | str, binary: bool = False, sync: bool = True) -> Iterator[IO]:
    """`with atomic_write(path) as f: f.write(...)`: the target appears whole at the end, or not at all (the
    temporary file is removed if the block raises). The folder is created if missing. The file gets the
    umask's usual permissions (mkstemp makes 0600; these files are for sharing). A folder that cannot be
    created or written in raises Unwritable before the block runs: callers turn it into their own one-line
    message; an OSError while writing propagates as it is."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Unwritable("create folder", path.parent, e) from e
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise Unwritable("write in", path.parent, e) from e
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
