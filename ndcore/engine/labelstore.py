"""Label batches kept between the passes of a generator dissection, keyed by probe index.

A generator's labels come from segmenting its own images; pass 1 makes them anyway (it runs the
generator), so they are kept here and pass 2 reads them back instead of generating and
segmenting again. Same file discipline as the kept-map store: whole records appended to one
file, a checkpoint notes the file's length, a resumed run cuts the file back to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data.probe import ProbeBatch

MAGIC = 0x4E44_4C41_4253_0001  # "NDLABS" v1
HEADER = 7  # int64: magic, images, planes, h, w, image-level labels, categories


class LabelStore:
    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "labels.bin"
        self._file = None
        self._index: Dict[int, Tuple[int, torch.Tensor]] = {}  # first index -> (offset, indices)

    def _open(self):
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "r+b" if self.path.exists() else "w+b")
        return self._file

    def append(self, batch: ProbeBatch) -> None:
        f = self._open()
        offset = f.seek(0, os.SEEK_END)
        indices = batch.indices.to("cpu", torch.int64)
        labels = batch.labels.to("cpu", torch.int32)
        image_labels = batch.image_labels.to("cpu", torch.int64)
        annotated = batch.annotated.to("cpu", torch.uint8)
        b, p, h, w = labels.shape
        header = np.asarray([MAGIC, b, p, h, w, image_labels.shape[1], annotated.shape[1]],
                            dtype=np.int64)
        for part in (header, indices.numpy(), labels.numpy(), image_labels.numpy(),
                     annotated.numpy()):
            f.write(np.ascontiguousarray(part).tobytes())
        self._index[int(indices[0])] = (offset, indices)

    def holds(self, indices: Sequence[int]) -> bool:
        entry = self._index.get(int(indices[0])) if len(indices) else None
        return entry is not None and entry[1].tolist() == list(indices)

    def get(self, indices: torch.Tensor, images: torch.Tensor, device) -> Optional[ProbeBatch]:
        """The labelled batch of exactly these probe indices, or None."""
        entry = self._index.get(int(indices[0])) if indices.numel() else None
        if entry is None or not torch.equal(entry[1], indices.to("cpu", torch.int64)):
            return None
        f = self._open()
        f.seek(entry[0])
        _, b, p, h, w, q, c = (int(x) for x in np.frombuffer(f.read(8 * HEADER), np.int64))
        idx = np.frombuffer(f.read(8 * b), np.int64)
        labels = np.frombuffer(f.read(4 * b * p * h * w), np.int32).reshape(b, p, h, w)
        image_labels = np.frombuffer(f.read(8 * b * q), np.int64).reshape(b, q)
        annotated = np.frombuffer(f.read(b * c), np.uint8).reshape(b, c).astype(bool)
        return ProbeBatch(torch.from_numpy(idx.copy()), images,
                          torch.from_numpy(labels.copy()), torch.from_numpy(image_labels.copy()),
                          torch.from_numpy(annotated)).to(device)

    def sync(self) -> int:
        if self._file is None:
            return 0
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.seek(0, os.SEEK_END)

    def reopen(self, length: int) -> None:
        if not self.path.exists() or length == 0:
            if self.path.exists():
                self.path.unlink()
            return
        f = self._open()
        f.truncate(length)
        offset = 0
        while offset < length:
            f.seek(offset)
            head = np.frombuffer(f.read(8 * HEADER), np.int64)
            if head.shape[0] != HEADER or head[0] != MAGIC:
                raise ValueError(f"{self.path}: not a label store (offset {offset})")
            _, b, p, h, w, q, c = (int(x) for x in head)
            indices = torch.from_numpy(np.frombuffer(f.read(8 * b), np.int64).copy())
            self._index[int(indices[0])] = (offset, indices)
            offset += 8 * (HEADER + b) + 4 * b * p * h * w + 8 * b * q + b * c

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._index = {}
