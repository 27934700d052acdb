"""Kept maps between the passes: only the map cells that can still cross their threshold.

During pass 1 each unit's running tail floor (its keep-th largest value so far, a lower bound
of its final threshold) is known. A bilinear cell whose four corners are all <= that floor can
never produce a mask pixel (the skip bound of tally_common.h), so only the values that are a
corner of some other cell are kept - the 3x3 neighbourhood of every value above the floor -
exactly, as float32; everything else reads back as a value far below the threshold. Large maps
are mostly below their unit's top-0.5% floor, so this keeps a few percent of their values.
Pass 2 reads them back instead of running the model again. Kept values stay on the device (a
GPU, or RAM) up to a byte budget and go to an append-only file per layer beyond it.

Everything is keyed and checked by probe index, never by batch number: pass 2 asks for the
maps of a batch's probe indices, and gets None when the store does not hold exactly those
images (a resumed run, a lost scratch folder); the caller then runs the model for that batch.
Files hold whole records, so a checkpoint can note each file's length and a resumed run can cut
the files back to it and go on appending.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..ops import fill_cells, kept_cells

MAGIC = 0x4E44_4D41_5053_0004  # "NDMAPS" v4 (sparse, int32 positions, floors)
HEADER = 7  # int64: magic, images, kept maps, h, w, kept values, units

# A record: (probe indices, rows, units, positions, values) in memory, or (file offset,) on
# disk. ``positions`` index the kept maps' values flattened to [kept maps * h * w].
Record = Union[Tuple[torch.Tensor, ...], Tuple[int]]


class MapStore:
    """Per layer, per batch of probe indices: (row, unit, map) of the maps above the floor."""

    def __init__(self, directory: Path, layers: Sequence[str], memory_budget: int = 0) -> None:
        self.directory = Path(directory)
        self.layers = list(layers)
        self.memory_budget = memory_budget
        self._files: Dict[str, object] = {}
        # layer -> first probe index of a record -> (record, its probe indices, its floors)
        self._index: Dict[str, Dict[int, Tuple[Record, torch.Tensor]]] = {l: {} for l in layers}
        self.bytes_in_memory = 0
        self.bytes_on_disk = 0
        self.maps_kept = 0
        self.maps_seen = 0
        self.values_kept = 0
        self.batches_recomputed = 0  # set by pass 2: batches it ran the model for

    def _path(self, layer: str) -> Path:
        return self.directory / f"layer{self.layers.index(layer)}.bin"

    def _file(self, layer: str):
        f = self._files.get(layer)
        if f is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self._path(layer)
            f = self._files[layer] = open(path, "r+b" if path.exists() else "w+b")
        return f

    # -- pass 1 ------------------------------------------------------------------------------

    def append(self, layer: str, maps: torch.Tensor, indices: torch.Tensor,
               floor: torch.Tensor) -> None:
        """Keep what pass 2 needs of ``maps`` [B, U, h, w] (probe ``indices`` [B]): the values
        around those above ``floor`` [U], less a margin (float32 interpolation can round a
        mix of values <= T to just above T)."""
        floor = floor.to(maps.device)
        bound = floor - floor.abs() * 2.0 ** -16 - 1e-37
        h, w = maps.shape[2:]
        # every corner of a cell that has a corner above the bound: its 3x3 neighbourhood
        rows, units, positions, values = kept_cells(maps, bound)
        indices = indices.to("cpu", torch.int64)
        floor = floor.to("cpu", torch.float32)
        nbytes = values.numel() * 8 + rows.numel() * 16
        if self.bytes_in_memory + nbytes <= self.memory_budget:
            record: Record = (indices, rows, units, positions, values, h, w)
            self.bytes_in_memory += nbytes
        else:
            record = (self._write(layer, indices, rows, units, positions, values, h, w,
                                  floor),)
        self._index[layer][int(indices[0])] = (record, indices, floor)
        self.maps_kept += rows.numel()
        self.maps_seen += maps.shape[0] * maps.shape[1]
        self.values_kept += values.numel()

    def _write(self, layer: str, indices, rows, units, positions, values, h, w,
               floor) -> int:
        f = self._file(layer)
        offset = f.seek(0, os.SEEK_END)
        header = np.asarray([MAGIC, indices.numel(), rows.numel(), h, w, values.numel(),
                             floor.numel()], dtype=np.int64)
        parts = [header, indices.numpy(), floor.numpy(),
                 torch.stack([rows, units]).to("cpu", torch.int32).numpy(),
                 positions.to("cpu", torch.int32).numpy(), values.to("cpu").numpy()]
        for part in parts:
            f.write(part.tobytes())
        self.bytes_on_disk += sum(p.nbytes for p in parts)
        return offset

    # -- pass 2 ------------------------------------------------------------------------------

    def holds(self, layer: str, indices: Sequence[int],
              thresholds: Optional[torch.Tensor] = None) -> bool:
        """True when the store has a record for exactly these probe indices (and, given the
        final ``thresholds``, one whose floors were all at most them: exact)."""
        entry = self._index[layer].get(int(indices[0])) if len(indices) else None
        if entry is None or entry[1].tolist() != list(indices):
            return False
        return thresholds is None or bool((entry[2] <= thresholds.to("cpu")).all())

    def dense(self, layer: str, indices: torch.Tensor, map_size: Tuple[int, int],
              fill: torch.Tensor, device) -> Optional[torch.Tensor]:
        """The maps of probe ``indices`` as [B, U, h, w], or None when the store does not hold
        exactly that batch. Maps that were not kept are set to ``fill`` [U], a value safely
        below each unit's threshold, so they produce no mask pixel."""
        indices = indices.to("cpu", torch.int64)
        entry = self._index[layer].get(int(indices[0])) if indices.numel() else None
        if entry is None or not torch.equal(entry[1], indices):
            return None
        record = entry[0]
        h, w = map_size
        rows, units, positions, values, rh, rw = self._load(layer, record, device)
        if rows.numel() and (rh, rw) != (h, w):
            return None
        return fill_cells(rows, units, positions, values, fill.to(device), indices.numel(), h, w)

    def _load(self, layer: str, record: Record, device):
        if len(record) > 1:
            _, rows, units, positions, values, h, w = record
            return rows.to(device), units.to(device), positions.to(device), values.to(device), h, w
        f = self._file(layer)
        f.seek(record[0])
        _, n_img, n, h, w, nv, nu = (int(x) for x in
                                     np.frombuffer(f.read(8 * HEADER), np.int64))
        f.seek(8 * n_img + 4 * nu, os.SEEK_CUR)
        header = np.frombuffer(f.read(8 * n), dtype=np.int32).reshape(2, -1).astype(np.int64)
        positions = np.frombuffer(f.read(4 * nv), dtype=np.int32)
        values = np.frombuffer(f.read(4 * nv), dtype=np.float32)
        as_tensor = lambda a: torch.from_numpy(a.copy()).to(device)  # noqa: E731
        return (as_tensor(header[0]), as_tensor(header[1]), as_tensor(positions),
                as_tensor(values), h, w)

    # -- checkpoints -------------------------------------------------------------------------

    def sync(self) -> Dict[str, int]:
        """Flush the files to disk; returns each layer file's length (records up to there are
        whole). Maps still in memory are not in the files: a resumed run recomputes them."""
        lengths = {}
        for layer, f in self._files.items():
            f.flush()
            os.fsync(f.fileno())
            lengths[layer] = f.seek(0, os.SEEK_END)
        return lengths

    def reopen(self, lengths: Dict[str, int]) -> None:
        """Resume: cut each layer file back to a checkpoint's length and index its records."""
        for layer in self.layers:
            path = self._path(layer)
            length = int(lengths.get(layer, 0))
            if not path.exists() or length == 0:
                if path.exists():
                    path.unlink()
                continue
            f = self._file(layer)
            f.truncate(length)
            offset = 0
            while offset < length:
                f.seek(offset)
                head = np.frombuffer(f.read(8 * HEADER), dtype=np.int64)
                if head.shape[0] != HEADER or head[0] != MAGIC:
                    raise ValueError(f"{path}: not a kept-map file (offset {offset})")
                _, n_img, n, h, w, nv, nu = (int(x) for x in head)
                indices = torch.from_numpy(np.frombuffer(f.read(8 * n_img), dtype=np.int64).copy())
                floor = torch.from_numpy(np.frombuffer(f.read(4 * nu), dtype=np.float32).copy())
                self._index[layer][int(indices[0])] = ((offset,), indices, floor)
                offset += 8 * (HEADER + n_img) + 4 * nu + 8 * n + 8 * nv
            self.bytes_on_disk += length

    def stats(self) -> Dict[str, int]:
        return {"maps_kept": self.maps_kept, "maps_seen": self.maps_seen,
                "values_kept": self.values_kept,
                "batches_recomputed": self.batches_recomputed,
                "bytes_in_memory": self.bytes_in_memory, "bytes_on_disk": self.bytes_on_disk}

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}
        self._index = {l: {} for l in self.layers}
        self.bytes_in_memory = 0


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
