"""Keeping, between the two passes, only the unit maps that can still cross their threshold.

During pass 1 each unit's running tail floor (its keep-th largest value so far) is a lower bound
of its final threshold. A map whose maximum is <= that floor can never produce a mask pixel, so
only the other maps are written (float32, exact) to a scratch file; pass 2 reads them back in
batch order instead of running the model a second time. Memory stays flat: the maps go to disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch


class SparseMapCache:
    """Per layer, per batch: (row in batch, unit, map) for the maps above the running floor."""

    def __init__(self, directory: Optional[str] = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ndcore-maps-", dir=directory))
        self._files: Dict[str, object] = {}
        self._index: Dict[str, List[Tuple[int, int, tuple]]] = {}  # layer -> (offset, n, map shape)
        self.bytes_written = 0
        self.maps_kept = 0
        self.maps_seen = 0

    def append(self, layer: str, acts: torch.Tensor, floor: torch.Tensor) -> None:
        """Keep the maps of ``acts`` [B, U, h, w] whose maximum exceeds ``floor`` [U]
        (less a margin: float32 interpolation can round a mix of values <= T to just above T)."""
        floor = floor.to(acts.device)
        bound = floor - floor.abs() * 2.0 ** -16 - 1e-37
        keep = acts.amax(dim=(2, 3)) > bound[None, :]
        rows, units = keep.nonzero(as_tuple=True)
        maps = acts[rows, units].to("cpu", torch.float32).numpy()
        header = np.stack([rows.cpu().numpy(), units.cpu().numpy()]).astype(np.int32)
        f = self._files.get(layer)
        if f is None:
            f = self._files[layer] = open(self.dir / f"{len(self._files)}.bin", "w+b")
            self._index[layer] = []
        offset = f.seek(0, os.SEEK_END)
        f.write(header.tobytes())
        f.write(maps.tobytes())
        self._index[layer].append((offset, rows.numel(), tuple(acts.shape)))
        self.bytes_written += header.nbytes + maps.nbytes
        self.maps_kept += rows.numel()
        self.maps_seen += acts.shape[0] * acts.shape[1]

    def dense(self, layer: str, batch_no: int, fill: torch.Tensor, device) -> torch.Tensor:
        """Batch ``batch_no`` of ``layer`` as [B, U, h, w]; maps not kept are set to ``fill``
        [U], a value safely below each unit's threshold, so they produce no mask pixel."""
        offset, n, shape = self._index[layer][batch_no]
        b, u, h, w = shape
        f = self._files[layer]
        f.seek(offset)
        header = np.frombuffer(f.read(8 * n), dtype=np.int32).reshape(2, n)
        maps = np.frombuffer(f.read(4 * n * h * w), dtype=np.float32).reshape(n, h, w)
        out = fill.to(device, torch.float32).view(1, u, 1, 1).expand(b, u, h, w).clone()
        if n:
            rows = torch.from_numpy(header[0].astype(np.int64)).to(device)
            units = torch.from_numpy(header[1].astype(np.int64)).to(device)
            out[rows, units] = torch.from_numpy(maps.copy()).to(device)
        return out

    def num_batches(self, layer: str) -> int:
        return len(self._index.get(layer, []))

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "SparseMapCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def below_threshold_fill(thresholds: torch.Tensor) -> torch.Tensor:
    """Per unit, a value far enough below T that no bilinear mix of it can exceed T."""
    return thresholds - (thresholds.abs() + 1.0)
