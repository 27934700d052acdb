"""Scratch folders that never outlive their run.

A scratch folder is named after its host and process (``ndcore-scratch-<host>-<pid>-<random>``)
and removed when the run exits, whatever the exit (``finally``; the CLI turns SIGTERM into an
exception so that ``finally`` runs). A run killed outright (SIGKILL, power loss) cannot clean up,
so every new run first removes the scratch folders of this host whose process is gone.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Optional

PREFIX = "ndcore-scratch-"


def _host() -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale(root: Optional[str] = None) -> int:
    """Remove scratch folders of dead processes of this host under ``root``; returns how many."""
    root_path = Path(root or tempfile.gettempdir())
    mine = f"{PREFIX}{_host()}-"
    removed = 0
    try:
        entries = list(root_path.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(mine) or not entry.is_dir():
            continue
        try:
            pid = int(entry.name[len(mine):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


class ScratchDir:
    """A private folder under ``root`` (default: the system temp dir), removed by ``close``."""

    def __init__(self, root: Optional[str] = None) -> None:
        remove_stale(root)
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{_host()}-{os.getpid()}-", dir=root))

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
