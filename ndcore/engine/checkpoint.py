"""Checkpoints of a run: accumulator states plus the cursor, written atomically.

``DIR/checkpoint/state.pt`` holds the merged states of every rank and the set of batches done
in the current pass; ``DIR/checkpoint/progress.json`` says the same in a few numbers for
``ndcore summary``. Both are replaced atomically (write, fsync, rename), so a run killed at any
moment leaves either the previous checkpoint or the new one, never a torn file. Rank 0's kept
maps live beside them (``DIR/checkpoint/maps``); the state records how much of each file it
covers. The folder goes once the run is complete.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..files import replace_atomically

FOLDER = "checkpoint"
STATE = "state.pt"
PROGRESS = "progress.json"
VERSION = 1


def folder(run_dir: Path) -> Path:
    return Path(run_dir) / FOLDER


def _to_torch(obj: Any) -> Any:
    """numpy arrays -> tensors (loadable with weights_only=True), recursively."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: _to_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_torch(v) for v in obj)
    return obj


def save(run_dir: Path, state: Dict[str, Any], progress: Dict[str, Any]) -> None:
    where = folder(run_dir)
    where.mkdir(parents=True, exist_ok=True)
    state = dict(_to_torch(state), version=VERSION)
    replace_atomically(where / STATE, lambda tmp: torch.save(state, tmp))
    body = json.dumps(dict(progress, saved_at=time.time()), indent=1).encode()
    replace_atomically(where / PROGRESS, lambda tmp: tmp.write_bytes(body))


def load(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The last checkpoint's state, or None. Raises ValueError for an unreadable one."""
    path = folder(run_dir) / STATE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint of another ndcore version")
    return state


def read_progress(run_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads((folder(run_dir) / PROGRESS).read_text())
    except (OSError, ValueError):
        return None


def remove(run_dir: Path) -> None:
    shutil.rmtree(folder(run_dir), ignore_errors=True)


class Timer:
    """Says when a checkpoint is due: every ``seconds`` (0 or less: never)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = time.monotonic()

    def due(self) -> bool:
        return self.seconds > 0 and time.monotonic() - self.last >= self.seconds

    def reset(self) -> None:
        self.last = time.monotonic()
