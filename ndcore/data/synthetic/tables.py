"""The Broden CSV tables of a synthetic set: index, category, label and c_<category>."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..probesets.tables import LabelRow, LabelStats, plane_suffixes, write_tables
from .labels import CATEGORIES, CATEGORY_LABELS, LABEL_ID, VOCAB


@dataclass
class _Record:
    name: str  # image path relative to images/, without extension
    split: str
    planes: Dict[str, np.ndarray]  # annotated pixel categories only
    image_labels: Dict[str, Tuple[int, ...]]  # annotated image-level categories only


class _Stats(LabelStats):
    """The synthetic set's label statistics, from its records (the planes in memory)."""

    @classmethod
    def of(cls, records: Sequence[_Record]) -> "_Stats":
        stats = cls({}, {}, {c: 0 for c in CATEGORIES}, {})
        for rec in records:
            areas = {cat: {label: int(np.any(planes == label, axis=0).sum())  # union of planes
                           for label in np.unique(planes).tolist() if label}
                     for cat, planes in rec.planes.items()}
            pixels = next(iter(rec.planes.values()))[0].size if rec.planes else 1
            stats.add_image([*rec.planes, *rec.image_labels], areas, pixels, rec.image_labels)
        return stats


def _numbering(stats: _Stats) -> Dict[int, int]:
    """Internal id -> global label number, over the labels that occur, in category order."""
    order: List[int] = []
    for cat in CATEGORIES:
        for name in CATEGORY_LABELS[cat]:
            label = LABEL_ID[name]
            if (cat, label) in stats.frequency and label not in order:
                order.append(label)
    return {label: i + 1 for i, label in enumerate(order)}


def _write_tables(root: Path, records: Sequence[_Record], stats: _Stats, number: Dict[int, int],
                  image_size: int, label_size: int) -> List[str]:
    """index.csv, category.csv, label.csv and c_<cat>.csv; returns the categories written."""
    categories = [c for c in CATEGORIES if any(k[0] == c for k in stats.frequency)]

    index_rows = []
    for rec in records:
        row = [f"{rec.name}.jpg", rec.split, image_size, image_size, label_size, label_size]
        for cat in categories:
            if cat in rec.planes:
                suffixes = plane_suffixes(len(rec.planes[cat]))
                row.append(";".join(f"{rec.name}_{cat}{s}.png" for s in suffixes))
            elif cat in rec.image_labels:
                row.append(";".join(str(number[l]) for l in rec.image_labels[cat]))
            else:
                row.append("")
        index_rows.append(row)

    labels = []
    for label, num in number.items():
        cats = [c for c in categories if (c, label) in stats.frequency]
        labels.append(LabelRow(num, VOCAB[label - 1],
                               {c: stats.frequency[c, label] for c in cats},
                               {c: stats.coverage[c, label] for c in cats},
                               stats.images_with[label]))
    write_tables(root, categories, index_rows, labels, stats.annotated)
    return categories
