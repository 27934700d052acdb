"""The CSV tables and label PNGs of a Broden-format probe set (docs/method.md section 12).

Shared by every writer of probe sets (the synthetic set, :class:`ProbeSetWriter`), so that
they all write the same bytes for the same content.
"""

from __future__ import annotations

import csv
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np
from PIL import Image

INDEX_COLUMNS = ["image", "split", "ih", "iw", "sh", "sw"]


@dataclass
class LabelRow:
    """One label of label.csv with its counts, per category it belongs to."""

    number: int
    name: str
    frequency: Dict[str, int]  # category -> images where the label occurs in it
    coverage: Dict[str, float]  # category -> its coverage there, in whole images
    images: int  # images where it occurs in any category


@dataclass
class LabelStats:
    """Per (category, label): the images where it occurs and its coverage summed over them (in
    whole images); per category the images annotated; per label the images where it occurs in
    any category. Added image by image, in the order the index lists them."""

    frequency: Dict[Tuple[str, int], int]
    coverage: Dict[Tuple[str, int], float]
    annotated: Dict[str, int]
    images_with: Dict[int, int]

    @classmethod
    def empty(cls, categories: Sequence[str]) -> "LabelStats":
        return cls({}, {}, {c: 0 for c in categories}, {})

    def add_image(self, annotated: Iterable[str], areas: Mapping[str, Mapping[int, int]],
                  pixels: int, image_labels: Mapping[str, Iterable[int]]) -> None:
        """``areas[cat][label]``: the label's pixels in the union of the category's planes,
        of ``pixels`` (the label size); image-level labels cover the whole image."""
        for cat in annotated:
            self.annotated[cat] += 1
        present = set()
        for cat, by_label in areas.items():
            for label, area in by_label.items():
                self._count(cat, int(label), area / pixels)
                present.add(int(label))
        for cat, labels in image_labels.items():
            for label in labels:
                self._count(cat, int(label), 1.0)
                present.add(int(label))
        for label in present:
            self.images_with[label] = self.images_with.get(label, 0) + 1

    def _count(self, cat: str, label: int, cover: float) -> None:
        self.frequency[cat, label] = self.frequency.get((cat, label), 0) + 1
        self.coverage[cat, label] = self.coverage.get((cat, label), 0.0) + cover


def plane_suffixes(count: int) -> List[str]:
    """Broden's plane names: ``<name>_<cat>.png`` for one plane, ``_<cat>_<k>.png`` for more."""
    return [""] if count == 1 else [f"_{k}" for k in range(1, count + 1)]


def save_label_png(plane: np.ndarray, path: Path, fast: bool = False) -> None:
    """Broden encoding: label number = R + 256 * G, B = 0 (numbers below 65536).

    ``fast``: our own encoder (every row "Up"-filtered, zlib level 1), about 4x faster than
    Pillow's adaptive filtering on label maps, for a file about as small; the same pixels.
    Pillow's encoder (the default) keeps the synthetic set's bytes as they always were.
    """
    rgb = np.zeros(plane.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = plane & 0xFF
    rgb[..., 1] = plane >> 8
    if not fast:
        Image.fromarray(rgb, "RGB").save(path, format="PNG")
        return
    with open(path, "wb") as f:
        f.write(_png_up_filtered(rgb))


def _png_up_filtered(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG (PNG spec, filter type 2 "Up" on every row: a byte minus the byte
    above it, mod 256; label maps repeat from row to row, so this is mostly zeros)."""
    h, w, _ = rgb.shape
    rows = rgb.reshape(h, w * 3)
    data = np.empty((h, w * 3 + 1), dtype=np.uint8)
    data[:, 0] = 2
    data[0, 1:] = rows[0]  # the row above the first is zeros
    np.subtract(rows[1:], rows[:-1], out=data[1:, 1:])

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit, RGB, deflate, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(data.tobytes(), 1)) + chunk(b"IEND", b""))


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def fmt(x: float) -> str:
    return f"{x:.4f}"


def write_tables(root: Path, categories: Sequence[str], index_rows: Sequence[Sequence],
                 labels: Sequence[LabelRow], annotated: Mapping[str, int]) -> None:
    """index.csv, category.csv, label.csv and c_<cat>.csv under ``root``.

    ``index_rows``: image, split, ih, iw, sh, sw, then one cell per category (in
    ``categories``' order); ``annotated``: images annotated per category. A label belongs to
    the categories of its ``frequency`` keys.
    """
    write_csv(root / "index.csv", INDEX_COLUMNS + list(categories), index_rows)
    ordered = sorted(labels, key=lambda l: l.number)
    members = {c: [l for l in ordered if c in l.frequency] for c in categories}

    write_csv(root / "category.csv", ["name", "first", "last", "count", "frequency"],
              [[c, members[c][0].number if members[c] else "",
                members[c][-1].number if members[c] else "", len(members[c]), annotated.get(c, 0)]
               for c in categories])

    label_rows = []
    for label in ordered:
        cats = [c for c in categories if c in label.frequency]
        # Most frequent category first, like Broden's label.csv (ties: category order).
        cats.sort(key=lambda c: -label.frequency[c])
        label_rows.append([
            label.number, label.name,
            ";".join(f"{c}({label.frequency[c]})" for c in cats),
            label.images, fmt(sum(label.coverage[c] for c in cats)), label.name,
        ])
    write_csv(root / "label.csv", ["number", "name", "category", "frequency", "coverage", "syns"],
              label_rows)

    for cat in categories:
        write_csv(root / f"c_{cat}.csv", ["code", "number", "name", "frequency", "coverage"],
                  [[code, l.number, l.name, l.frequency[cat], fmt(l.coverage[cat])]
                   for code, l in enumerate(members[cat], start=1)])
