"""Writing a file so that a reader (or a resumed run) sees the old one or the new one whole,
never half of one, also when processes write the same file at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def replace_atomically(path: Path, write: Callable[[Path], None], *, durable: bool = True) -> None:
    """``write(tmp)`` writes the content to ``tmp`` (a sibling of ``path`` named after it and
    this process), which then replaces ``path`` in one rename. ``durable``: the file and the
    rename are synced to disk first (checkpoints, results); without it a crash of the machine,
    though not of the process, may lose the new file (per-image files of a journaled writer)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        try:  # make the rename itself durable
            _fsync(path.parent, os.O_RDONLY)
        except OSError:
            pass


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
