"""The label space the engine counts in: (label, categories that annotate it at a pixel).

Relabelling a saved run with fewer categories must give exactly what a fresh run with those
categories gives. A fresh run with ``--categories part`` reads only the part planes, so a label
that is both an object and a part (Broden's "circle") counts only where a *part* plane has it.
Counting per plain label number loses that. So the engine counts per *label-space id*:
``(label l, set K of categories whose planes carry l at that pixel)``, K a non-empty subset of
l's categories. For a category subset S, label l's count is the sum over its ids with K ∩ S ≠ ∅.
Most labels belong to one category and get exactly one id.

NetDissect-Lite's union needs one more thing: whether a unit's mask touches a label whose
*primary* category is c, where "primary" depends on S. Ids are grouped so that every id of a
group maps to the same category for every S (same label preference order, same K); the fused op
counts hits per group, and :meth:`LabelSpace.lite_category_maps` turns groups into categories
for every subset S at once.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import NdcoreError
from .vocabulary import Vocabulary

MAX_CATEGORIES = 30  # category sets are bit masks in int64 keys
# NetDissect-Lite counts are kept for every category subset up to this many categories
# (2^C subsets); beyond it only for the full set, and lite relabelling by subset is refused.
LITE_SUBSETS_MAX_CATEGORIES = 8
MAX_IDS = 1 << 24


def _subsets(mask: int) -> List[int]:
    """Non-empty sub-masks of ``mask``, ascending."""
    out, sub = [], mask
    while sub:
        out.append(sub)
        sub = (sub - 1) & mask
    return sorted(out)


class LabelSpace:
    """Label-space ids of a vocabulary. Id 0 is "no label"."""

    def __init__(self, vocab: Vocabulary) -> None:
        C = vocab.num_categories
        if C > MAX_CATEGORIES:
            raise NdcoreError(f"the vocabulary has {C} categories; ndcore supports at most "
                              f"{MAX_CATEGORIES}")
        self.vocabulary = vocab
        self.num_categories = C
        cat_index = {c: i for i, c in enumerate(vocab.categories)}
        self.label_mask = np.zeros(vocab.num_labels, dtype=np.int64)  # categories of each label
        self.preference: List[Tuple[int, ...]] = [()] * vocab.num_labels
        for l in range(1, vocab.num_labels):
            cats = [cat_index[c] for c in vocab.label_categories[l] if c in cat_index]
            cover = vocab.coverage[l] if l < len(vocab.coverage) else {}
            # Largest coverage first; ties go to the later category (Vocabulary._best_category).
            pref = sorted(set(cats), key=lambda c: (-cover.get(vocab.categories[c], 0.0), -c))
            self.preference[l] = tuple(pref)
            for c in pref:
                self.label_mask[l] |= 1 << c

        labels, bits = [0], [0]
        for l in range(1, vocab.num_labels):
            for k in (_subsets(int(self.label_mask[l])) or [0]):
                labels.append(l)
                bits.append(k)
                if len(labels) > MAX_IDS:
                    raise NdcoreError("the vocabulary has too many multi-category labels")
        self.id_label = np.asarray(labels, dtype=np.int64)  # [V] label number of each id
        self.id_bits = np.asarray(bits, dtype=np.int64)  # [V] categories K of each id
        self._keys = self.id_label * (1 << C) + self.id_bits  # ascending by construction
        # The id of (l, all of l's categories): used when a plane's category is not known.
        self._default_id = np.zeros(vocab.num_labels, dtype=np.int64)
        self._default_id[1:] = self._lookup(np.arange(1, vocab.num_labels),
                                            self.label_mask[1:])
        groups: Dict[Tuple, int] = {}
        self.id_group = np.full(self.num_ids, -1, dtype=np.int64)
        self.group_keys: List[Tuple[Tuple[int, ...], int]] = []
        for v in range(1, self.num_ids):
            pref = self.preference[int(self.id_label[v])]
            if not pref:
                continue  # a label with no category never counts for one
            key = (pref, int(self.id_bits[v]))
            if key not in groups:
                groups[key] = len(self.group_keys)
                self.group_keys.append(key)
            self.id_group[v] = groups[key]
        self._identity = self.is_identity

    @property
    def num_ids(self) -> int:
        return int(self.id_label.shape[0])

    @property
    def num_groups(self) -> int:
        return len(self.group_keys)

    @property
    def is_identity(self) -> bool:
        """True when every label has at most one category (ids are the label numbers)."""
        return self.num_ids == self.vocabulary.num_labels and bool(
            (self.id_label == np.arange(self.num_ids)).all())

    def _lookup(self, labels: np.ndarray, bits: np.ndarray) -> np.ndarray:
        keys = labels.astype(np.int64) * (1 << self.num_categories) + bits
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, self.num_ids - 1)
        found = self._keys[pos] == keys
        return np.where(found, pos, 0)

    # -- encoding a probe item -------------------------------------------------------------

    def encode_planes(self, planes: np.ndarray,
                      plane_categories: Optional[Sequence[int]] = None) -> np.ndarray:
        """Label planes [P, H, W] -> label-space ids [P, H, W] (int32).

        A label repeated at one pixel in several planes is counted once, with the union of
        those planes' categories. Planes of unknown category (-1 / None) carry all of the
        label's categories. Label values must already be valid label numbers.
        """
        n = planes.shape[0]
        if n <= 1 and self._identity:  # one plane, one category per label: ids are labels
            return np.asarray(planes, dtype=np.int32)
        planes = np.array(planes, dtype=np.int64, copy=True)
        if n == 0:
            return planes.astype(np.int32)
        cats = list(plane_categories) if plane_categories is not None else [-1] * n
        bits = np.empty_like(planes)
        for j in range(n):
            bits[j] = (1 << cats[j]) if cats[j] is not None and cats[j] >= 0 else -1
        for j in range(1, n):
            for i in range(j):
                same = (planes[j] == planes[i]) & (planes[j] != 0)
                if same.any():
                    bits[i][same] |= bits[j][same]
                    planes[j][same] = 0
        own = self.label_mask[planes]
        bits &= own
        bits = np.where(bits == 0, own, bits)  # category unknown or not one of the label's
        ids = self._lookup(planes, bits)
        ids[planes == 0] = 0
        return ids.astype(np.int32)

    def encode_image_labels(self, labels: Sequence[int],
                            categories: Optional[Sequence[int]] = None) -> List[int]:
        """Image-level labels (and the category each was listed under) -> label-space ids."""
        merged: Dict[int, int] = {}
        for k, l in enumerate(labels):
            l = int(l)
            if l == 0:
                continue
            c = categories[k] if categories is not None else -1
            bit = (1 << int(c)) if c is not None and c >= 0 else -1
            merged[l] = merged.get(l, 0) | bit
        out = []
        for l, bit in merged.items():
            own = int(self.label_mask[l])
            bit &= own
            out.append(int(self._lookup(np.asarray([l]), np.asarray([bit or own]))[0]))
        return out

    # -- from ids back to labels ------------------------------------------------------------

    def label_matrix(self, categories: Sequence[str]) -> np.ndarray:
        """[V, L] 0/1: id v counts for its label when its categories meet ``categories``."""
        s = self.category_mask(categories)
        keep = (self.id_bits & s) != 0
        mat = np.zeros((self.num_ids, self.vocabulary.num_labels), dtype=np.int64)
        rows = np.nonzero(keep)[0]
        mat[rows, self.id_label[rows]] = 1
        return mat

    def category_mask(self, categories: Sequence[str]) -> int:
        index = {c: i for i, c in enumerate(self.vocabulary.categories)}
        mask = 0
        for c in categories:
            mask |= 1 << index[c]
        return mask

    @property
    def lite_subsets(self) -> np.ndarray:
        """Category subsets (bit masks) whose NetDissect-Lite counts are kept."""
        full = (1 << self.num_categories) - 1
        if self.num_categories <= LITE_SUBSETS_MAX_CATEGORIES:
            return np.arange(1, full + 1, dtype=np.int64)
        return np.asarray([full], dtype=np.int64)

    def lite_category_maps(self) -> np.ndarray:
        """[S, G] int64: for each kept subset S and group g, the (full-vocabulary) category
        that a hit on g counts for under S (-1: none, the id's categories are all dropped)."""
        subsets = self.lite_subsets
        out = np.full((len(subsets), self.num_groups), -1, dtype=np.int64)
        for g, (pref, bits) in enumerate(self.group_keys):
            for k, s in enumerate(subsets):
                if bits & int(s):
                    out[k, g] = next(c for c in pref if (int(s) >> c) & 1)
        return out

    def state(self) -> Dict[str, np.ndarray]:
        """What is saved with counts: enough to check a run's label space on load."""
        return {"id_label": self.id_label, "id_bits": self.id_bits,
                "lite_subsets": self.lite_subsets}
