"""The Broden CSV tables of a synthetic set: index, category, label and c_<category>."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .labels import CATEGORIES, CATEGORY_LABELS, LABEL_ID, VOCAB


@dataclass
class _Record:
    name: str  # image path relative to images/, without extension
    split: str
    planes: Dict[str, np.ndarray]  # annotated pixel categories only
    image_labels: Dict[str, Tuple[int, ...]]  # annotated image-level categories only


@dataclass
class _Stats:
    """Per (category, internal id): images where it occurs, and coverage in whole images."""

    frequency: Dict[Tuple[str, int], int]
    coverage: Dict[Tuple[str, int], float]
    annotated: Dict[str, int]  # images annotated per category
    images_with: Dict[int, int]  # images where the label occurs in any category

    @classmethod
    def of(cls, records: Sequence[_Record]) -> "_Stats":
        freq: Dict[Tuple[str, int], int] = {}
        cov: Dict[Tuple[str, int], float] = {}
        annotated = {c: 0 for c in CATEGORIES}
        images_with: Dict[int, int] = {}
        for rec in records:
            present = set()
            for cat, planes in rec.planes.items():
                annotated[cat] += 1
                pixels = planes[0].size
                for label in np.unique(planes).tolist():
                    if label:
                        area = int(np.any(planes == label, axis=0).sum())  # union over planes
                        freq[cat, label] = freq.get((cat, label), 0) + 1
                        cov[cat, label] = cov.get((cat, label), 0.0) + area / pixels
                        present.add(label)
            for cat, labels in rec.image_labels.items():
                annotated[cat] += 1
                for label in labels:
                    freq[cat, label] = freq.get((cat, label), 0) + 1
                    cov[cat, label] = cov.get((cat, label), 0.0) + 1.0
                    present.add(label)
            for label in present:
                images_with[label] = images_with.get(label, 0) + 1
        return cls(freq, cov, annotated, images_with)


def _numbering(stats: _Stats) -> Dict[int, int]:
    """Internal id -> global label number, over the labels that occur, in category order."""
    order: List[int] = []
    for cat in CATEGORIES:
        for name in CATEGORY_LABELS[cat]:
            label = LABEL_ID[name]
            if (cat, label) in stats.frequency and label not in order:
                order.append(label)
    return {label: i + 1 for i, label in enumerate(order)}


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _write_tables(root: Path, records: Sequence[_Record], stats: _Stats, number: Dict[int, int],
                  image_size: int, label_size: int) -> List[str]:
    """index.csv, category.csv, label.csv and c_<cat>.csv; returns the categories written."""
    categories = [c for c in CATEGORIES if any(k[0] == c for k in stats.frequency)]
    members = {c: sorted((number[l], l) for (cat, l) in stats.frequency if cat == c)
               for c in categories}

    index_rows = []
    for rec in records:
        row = [f"{rec.name}.jpg", rec.split, image_size, image_size, label_size, label_size]
        for cat in categories:
            if cat in rec.planes:
                n = len(rec.planes[cat])
                suffixes = [""] if n == 1 else [f"_{k}" for k in range(1, n + 1)]
                row.append(";".join(f"{rec.name}_{cat}{s}.png" for s in suffixes))
            elif cat in rec.image_labels:
                row.append(";".join(str(number[l]) for l in rec.image_labels[cat]))
            else:
                row.append("")
        index_rows.append(row)
    _write_csv(root / "index.csv", ["image", "split", "ih", "iw", "sh", "sw"] + categories,
               index_rows)

    _write_csv(root / "category.csv", ["name", "first", "last", "count", "frequency"],
               [[c, members[c][0][0], members[c][-1][0], len(members[c]), stats.annotated[c]]
                for c in categories])

    label_rows = []
    for label, num in sorted(number.items(), key=lambda kv: kv[1]):
        cats = [c for c in categories if (c, label) in stats.frequency]
        # Most frequent category first, like Broden's label.csv (ties: category order).
        cats.sort(key=lambda c: -stats.frequency[c, label])
        name = VOCAB[label - 1]
        label_rows.append([
            num, name, ";".join(f"{c}({stats.frequency[c, label]})" for c in cats),
            stats.images_with[label], _fmt(sum(stats.coverage[c, label] for c in cats)), name,
        ])
    _write_csv(root / "label.csv", ["number", "name", "category", "frequency", "coverage", "syns"],
               label_rows)

    for cat in categories:
        _write_csv(root / f"c_{cat}.csv", ["code", "number", "name", "frequency", "coverage"],
                   [[code, num, VOCAB[label - 1], stats.frequency[cat, label],
                     _fmt(stats.coverage[cat, label])]
                    for code, (num, label) in enumerate(members[cat], start=1)])
    return categories
