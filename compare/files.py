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


@contextmanager
def atomic_write(path: Path | str, binary: bool = False, sync: bool = True) -> Iterator[IO]:
    """`with atomic_write(path) as f: f.write(...)`: the target appears whole at the end, or not at all (the
    temporary file is removed if the block raises). The folder is created if missing. The file gets the
    umask's usual permissions (mkstemp makes 0600; these files are for sharing). OSError from creating the
    folder or the temporary file propagates: callers turn it into their own one-line message."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
