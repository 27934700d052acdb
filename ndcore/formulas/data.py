"""FormulaData: the probe set's pixels reduced to label-set *signatures*, streamed by image.

Every formula is a boolean function of which labels a pixel carries, so a pixel matters only
through its signature: the set of labels on it (its pixel labels plus its image's image-level
labels). Two counts per signature are all any IoU needs, exactly:

* ``sig_count[s]``: pixels of all images with signature s (gives |F| for every formula F);
* per unit, ``unit_count``: the unit's mask pixels with signature s (gives |F ∩ U|).

So no mask is kept: memory grows with the number of distinct signatures (a few per image, shared
across images), not with pixels, and images of any size simply add their pixels (docs/formulas.md
gives the Broden-sized figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch

from ndcore.errors import DatasetError

# Merge the per-image (unit, signature, count) triples once this many are pending.
_COMPACT_AT = 2_000_000


@dataclass
class FormulaData:
    """Signature counts of a probe set and of each unit's mask (see the module docstring).

    ``sig_ptr``/``sig_labels``: CSR rows, the sorted label numbers of each signature.
    ``unit_ptr``/``unit_sig``/``unit_count``: CSR rows, per unit its signatures and pixel counts.
    """

    label_names: List[str]
    n_units: int
    n_images: int
    n_pixels: int
    sig_ptr: np.ndarray     # int64 [n_sig + 1]
    sig_labels: np.ndarray  # int32 [nnz]
    sig_count: np.ndarray   # int64 [n_sig]
    unit_ptr: np.ndarray    # int64 [n_units + 1]
    unit_sig: np.ndarray    # int32 [m]
    unit_count: np.ndarray  # int64 [m]
    # derived tables (ndcore.formulas.tables), kept so repeated searches share them
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    @property
    def n_signatures(self) -> int:
        return len(self.sig_count)

    def unit_rows(self, unit: int) -> Tuple[np.ndarray, np.ndarray]:
        """(signature ids, pixel counts) of the unit's mask."""
        a, b = self.unit_ptr[unit], self.unit_ptr[unit + 1]
        return self.unit_sig[a:b], self.unit_count[a:b]

    def label_sizes(self) -> np.ndarray:
        """|A| in pixels for every label number (int64 [n_labels])."""
        rows = np.repeat(np.arange(self.n_signatures), np.diff(self.sig_ptr))
        return np.bincount(self.sig_labels, weights=self.sig_count[rows],
                           minlength=self.n_labels).astype(np.int64)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.sig_ptr, self.sig_labels, self.sig_count,
                                      self.unit_ptr, self.unit_sig, self.unit_count))


class FormulaDataBuilder:
    """Adds images one at a time (any sizes); ``finish()`` returns the :class:`FormulaData`."""

    def __init__(self, label_names: Sequence[str], n_units: int) -> None:
        self.label_names = list(label_names)
        self.n_units = int(n_units)
        self._sig_id: Dict[Tuple[int, ...], int] = {}
        self._sig_count: List[int] = []
        self._pending: List[np.ndarray] = []  # [3, k] int64: unit, signature, count
        self._n_pending = 0
        self._merged = np.zeros((3, 0), dtype=np.int64)
        self._images = 0
        self._pixels = 0

    def add_image(self, planes: np.ndarray, image_labels: Sequence[int],
                  unit_masks: Union[np.ndarray, torch.Tensor]) -> None:
        """planes: int [P, h, w] label numbers (0 = none); image_labels: labels covering the whole
        image; unit_masks: bool [n_units, h, w], each unit's thresholded upsampled map."""
        planes = self._planes(planes)
        h, w = planes.shape[1:]
        if isinstance(unit_masks, torch.Tensor):
            masks = unit_masks.detach().to("cpu")
        else:
            masks = torch.from_numpy(np.ascontiguousarray(unit_masks))
        masks = masks if masks.dtype == torch.bool else masks != 0
        if tuple(masks.shape) != (self.n_units, h, w):
            raise DatasetError(f"image {self._images}: unit masks have shape "
                               f"{tuple(masks.shape)}, expected ({self.n_units}, {h}, {w}) for "
                               f"its {h}x{w} label planes")
        # the masks are sparse: list their pixels
        u, pix = (x.numpy() for x in torch.nonzero(masks.reshape(self.n_units, h * w),
                                                     as_tuple=True))
        self.add_image_pixels(planes, image_labels, u, pix)

    def add_image_pixels(self, planes: np.ndarray, image_labels: Sequence[int],
                         units: np.ndarray, pixels: np.ndarray) -> None:
        """``add_image`` with the masks given by their pixels: unit ``units[i]`` (0-based)
        holds flat pixel ``pixels[i]`` of the [h, w] image (each pair at most once), so no
        dense mask is needed."""
        where = f"image {self._images}"
        planes = self._planes(planes)
        h, w = planes.shape[1:]
        u, pix = np.asarray(units, dtype=np.int64), np.asarray(pixels, dtype=np.int64)
        if u.shape != pix.shape or u.ndim != 1:
            raise DatasetError(f"{where}: mask units and pixels must be two index arrays of one "
                               f"length, got shapes {u.shape} and {pix.shape}")
        if len(u) and not (0 <= u.min() and u.max() < self.n_units
                           and 0 <= pix.min() and pix.max() < h * w):
            raise DatasetError(f"{where}: a mask pixel is outside {self.n_units} units x "
                               f"{h}x{w} pixels")
        n = self.n_labels
        extra = sorted({int(x) for x in image_labels} - {0})
        bad = [x for x in extra if not 0 < x < n] or [
            int(x) for x in np.unique(planes) if not 0 <= x < n]
        if bad:
            raise DatasetError(f"{where}: label number {bad[0]} is outside 0..{n - 1} "
                               f"(the label list has {n} names)")
        inv, rows = _local_signatures(planes.reshape(len(planes), h * w), n)
        ids = np.empty(len(rows), dtype=np.int64)
        for i, row in enumerate(rows):
            key = tuple(sorted(set(row) | set(extra)))
            sid = self._sig_id.get(key)
            if sid is None:
                sid = self._sig_id[key] = len(self._sig_count)
                self._sig_count.append(0)
            ids[i] = sid
        for sid, c in zip(ids, np.bincount(inv, minlength=len(rows))):
            self._sig_count[sid] += int(c)
        # unit pixels per local signature, counted by (unit, signature)
        counts = np.bincount(u * len(rows) + inv[pix], minlength=self.n_units * len(rows))
        counts = counts.reshape(self.n_units, len(rows))
        u, l = np.nonzero(counts)
        self._pending.append(np.stack([u, ids[l], counts[u, l]]))
        self._n_pending += len(u)
        if self._n_pending > _COMPACT_AT:
            self._compact()
        self._images += 1
        self._pixels += h * w

    def _planes(self, planes: np.ndarray) -> np.ndarray:
        """planes as [P >= 1, h, w] (an image with only image-level labels gets one empty
        plane)."""
        planes = np.asarray(planes)
        if planes.ndim == 2:
            planes = planes[None]
        if planes.ndim != 3:
            raise DatasetError(f"image {self._images}: label planes must be [P, h, w], got "
                               f"shape {planes.shape}")
        if len(planes) == 0:  # only image-level labels (or none)
            planes = np.zeros((1,) + planes.shape[1:], dtype=np.int64)
        return planes

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def _compact(self) -> None:
        """Sum the pending triples by (unit, signature) into the merged table."""
        trip = np.concatenate([self._merged] + self._pending, axis=1)
        self._pending, self._n_pending = [], 0
        key = trip[0] * (1 << 32) + trip[1]
        uniq, inv = np.unique(key, return_inverse=True)
        self._merged = np.stack([uniq >> 32, uniq & ((1 << 32) - 1),
                                 np.bincount(inv, weights=trip[2]).astype(np.int64)])

    def finish(self) -> FormulaData:
        self._compact()
        sigs = sorted(self._sig_id.items(), key=lambda kv: kv[1])
        lengths = np.array([len(k) for k, _ in sigs], dtype=np.int64)
        sig_ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        sig_labels = np.array([x for k, _ in sigs for x in k], dtype=np.int32)
        units, sig, count = self._merged
        unit_ptr = np.searchsorted(units, np.arange(self.n_units + 1)).astype(np.int64)
        return FormulaData(self.label_names, self.n_units, self._images, self._pixels, sig_ptr,
                           sig_labels, np.array(self._sig_count, dtype=np.int64), unit_ptr,
                           sig.astype(np.int32), count.astype(np.int64))


def _local_signatures(flat: np.ndarray, n_labels: int) -> Tuple[np.ndarray, List[Tuple[int, ...]]]:
    """(per-pixel index into rows, rows): the distinct label sets of an image's pixels.

    ``flat`` is [P, pixels]; the order of the planes and repeated labels do not matter."""
    cols = np.sort(flat.astype(np.int64), axis=0)
    if n_labels ** len(cols) < 2 ** 62:  # one integer key per pixel: fast unique
        key = np.zeros(cols.shape[1], dtype=np.int64)
        for c in cols:
            key = key * n_labels + c
        uniq, inv = np.unique(key, return_inverse=True)
        first = np.zeros(len(uniq), dtype=np.int64)
        first[inv] = np.arange(len(inv))  # any pixel of each key: they share the same column
        reps = cols[:, first].T
    else:
        reps, inv = np.unique(cols.T, axis=0, return_inverse=True)
    rows = [tuple(sorted({int(x) for x in r if x})) for r in reps]
    return inv.reshape(-1), rows
