"""Keeping, between the two passes, only the unit maps that can still cross their threshold.

During pass 1 each unit's running tail floor (its keep-th largest value so far, a lower bound
of its final threshold) is known. A map whose maximum is <= that floor can never produce a mask
pixel, so only the other maps are kept (float32, exact); pass 2 reads them back in batch order
instead of running the model a second time. Kept maps stay on the device (a GPU, or RAM) up to
a byte budget and go to a scratch file beyond it, so memory does not grow with the dataset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

# A kept chunk: (rows in the batch, units, maps) in memory, or (file offset, count) on disk.
Chunk = Union[Tuple[torch.Tensor, torch.Tensor, torch.Tensor], Tuple[int, int]]


class SparseMapCache:
    """Per layer, per batch: (row in batch, unit, map) for the maps above the running floor."""

    def __init__(self, directory: Optional[str] = None, memory_budget: int = 0) -> None:
        self.directory = directory
        self.memory_budget = memory_budget
        self.dir: Optional[Path] = None  # created on the first spill to disk
        self._files: Dict[str, object] = {}
        self._index: Dict[str, List[Tuple[Chunk, tuple]]] = {}  # layer -> (chunk, batch shape)
        self.bytes_in_memory = 0
        self.bytes_on_disk = 0
        self.maps_kept = 0
        self.maps_seen = 0

    def append(self, layer: str, acts: torch.Tensor, floor: torch.Tensor) -> None:
        """Keep the maps of ``acts`` [B, U, h, w] whose maximum exceeds ``floor`` [U]
        (less a margin: float32 interpolation can round a mix of values <= T to just above T)."""
        floor = floor.to(acts.device)
        bound = floor - floor.abs() * 2.0 ** -16 - 1e-37
        keep = acts.amax(dim=(2, 3)) > bound[None, :]
        rows, units = keep.nonzero(as_tuple=True)
        maps = acts[rows, units].float()
        nbytes = maps.numel() * 4 + rows.numel() * 16
        if self.bytes_in_memory + nbytes <= self.memory_budget:
            chunk: Chunk = (rows, units, maps)
            self.bytes_in_memory += nbytes
        else:
            chunk = self._spill(layer, rows, units, maps)
        self._index.setdefault(layer, []).append((chunk, tuple(acts.shape)))
        self.maps_kept += rows.numel()
        self.maps_seen += acts.shape[0] * acts.shape[1]

    def _spill(self, layer: str, rows, units, maps) -> Tuple[int, int]:
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="ndcore-maps-", dir=self.directory))
        f = self._files.get(layer)
        if f is None:
            f = self._files[layer] = open(self.dir / f"{len(self._files)}.bin", "w+b")
        offset = f.seek(0, os.SEEK_END)
        header = torch.stack([rows, units]).to("cpu", torch.int32).numpy()
        data = maps.cpu().numpy()
        f.write(header.tobytes())
        f.write(data.tobytes())
        self.bytes_on_disk += header.nbytes + data.nbytes
        return offset, rows.numel()

    def _load(self, layer: str, chunk: Chunk, h: int, w: int, device):
        if isinstance(chunk[0], torch.Tensor):
            rows, units, maps = chunk
            return rows.to(device), units.to(device), maps.to(device)
        offset, n = chunk
        f = self._files[layer]
        f.seek(offset)
        header = np.frombuffer(f.read(8 * n), dtype=np.int32).reshape(2, n).astype(np.int64)
        maps = np.frombuffer(f.read(4 * n * h * w), dtype=np.float32).reshape(n, h, w)
        return (torch.from_numpy(header[0]).to(device), torch.from_numpy(header[1]).to(device),
                torch.from_numpy(maps.copy()).to(device))

    def dense(self, layer: str, batch_no: int, fill: torch.Tensor, device) -> torch.Tensor:
        """Batch ``batch_no`` of ``layer`` as [B, U, h, w]; maps not kept are set to ``fill``
        [U], a value safely below each unit's threshold, so they produce no mask pixel."""
        chunk, (b, u, h, w) = self._index[layer][batch_no]
        out = fill.to(device, torch.float32).view(1, u, 1, 1).expand(b, u, h, w).clone()
        rows, units, maps = self._load(layer, chunk, h, w, device)
        if rows.numel():
            out[rows, units] = maps
        return out

    def stats(self) -> Dict[str, int]:
        return {"maps_kept": self.maps_kept, "maps_seen": self.maps_seen,
                "bytes_in_memory": self.bytes_in_memory, "bytes_on_disk": self.bytes_on_disk}

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files, self._index = {}, {}
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "SparseMapCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_memory_budget(device: torch.device) -> int:
    """Bytes of kept maps held in memory before spilling to disk: on a GPU, a third of its free
    memory; on the CPU none (RAM use must not grow with the dataset)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 3
    return 0


def below_threshold_fill(thresholds: torch.Tensor) -> torch.Tensor:
    """Per unit, a value far enough below T that no bilinear mix of it can exceed T."""
    return thresholds - (thresholds.abs() + 1.0)
