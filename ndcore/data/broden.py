"""Reader of the Broden on-disk format (docs/method.md section 12).

``index.csv`` rows give an image and, per category, either nothing (not annotated), label plane
PNGs (pixel labels, number = R + 256 * G) or label numbers (image-level labels). Labels are
numbered globally by ``label.csv``; ``c_<cat>.csv`` give each label's coverage per category,
which decides its primary category.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DatasetError, suggest
from .decode import read_label_png, read_rgb
from .probe import ProbeItem, ProbeSource, ProbeSourceInfo, remove_repeated_labels
from .vocabulary import Vocabulary

INDEX_FIXED_COLUMNS = ["image", "split", "ih", "iw", "sh", "sw"]


def _read_csv(path: Path, required: Sequence[str]) -> List[Dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (is this a Broden-format directory?)")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(
                    f"{path}: missing column(s) {', '.join(missing)} "
                    f"(header is {','.join(reader.fieldnames or [])})"
                )
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot be read ({e})") from None


def _parse_label_categories(cell: str) -> List[str]:
    """'material(36);object(3)' -> ['material', 'object']."""
    cats = []
    for part in filter(None, (p.strip() for p in cell.split(";"))):
        cats.append(part.split("(", 1)[0].strip())
    return cats


def read_vocabulary(root: Path) -> Vocabulary:
    """Read category.csv, label.csv and the c_<cat>.csv files into a :class:`Vocabulary`."""
    categories = [r["name"] for r in _read_csv(root / "category.csv", ["name"])]
    rows = _read_csv(root / "label.csv", ["number", "name", "category"])
    numbers = {}
    for line, row in enumerate(rows, start=2):
        try:
            numbers[int(row["number"])] = row
        except ValueError:
            raise DatasetError(
                f"{root / 'label.csv'} line {line}: label number {row['number']!r} is not an integer"
            ) from None
    if not numbers:
        raise DatasetError(f"{root / 'label.csv'}: no labels")
    num_labels = max(numbers) + 1
    names = ["-"] + [""] * (num_labels - 1)  # "" marks numbers that label.csv skips
    label_cats: List[List[str]] = [[] for _ in range(num_labels)]
    coverage: List[Dict[str, float]] = [{} for _ in range(num_labels)]
    for number, row in numbers.items():
        names[number] = row["name"]
        label_cats[number] = [c for c in _parse_label_categories(row["category"]) if c in categories]
    for cat in categories:
        path = root / f"c_{cat}.csv"
        if not path.is_file():
            continue  # coverage unknown: primary falls back to category order
        for line, row in enumerate(_read_csv(path, ["number", "coverage"]), start=2):
            try:
                number, cover = int(row["number"]), float(row["coverage"] or 0.0)
            except ValueError:
                raise DatasetError(f"{path} line {line}: bad number or coverage") from None
            if number in numbers:
                coverage[number][cat] = cover
                if cat not in label_cats[number]:
                    label_cats[number].append(cat)
    vocab = Vocabulary(categories, names, label_cats, np.full(num_labels, -1, np.int64), coverage)
    for l in range(1, num_labels):
        if label_cats[l]:
            vocab.primary[l] = categories.index(vocab._best_category(l, label_cats[l]))
    return vocab


class BrodenDataset(ProbeSource):
    """A Broden-format directory as a probe source.

    ``categories`` selects a subset (the others are never read); ``max_images`` keeps the
    first rows of index.csv (quick runs).
    """

    def __init__(
        self,
        root: os.PathLike,
        categories: Optional[Sequence[str]] = None,
        max_images: Optional[int] = None,
        spec: Optional[str] = None,
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset directory not found")
        full_vocab = read_vocabulary(self.root)
        if categories:
            unknown = [c for c in categories if c not in full_vocab.categories]
            if unknown:
                raise DatasetError(
                    f"{self.root / 'category.csv'}: no category {unknown[0]!r}"
                    f"{suggest(unknown[0], full_vocab.categories)}; "
                    f"categories are {', '.join(full_vocab.categories)}"
                )
            self.vocabulary = full_vocab.restricted(categories)
        else:
            self.vocabulary = full_vocab
        self._valid_label = np.array([name != "" for name in full_vocab.label_names], dtype=bool)
        self._images_dir = str(self.root / "images")
        self._root_prefix = str(self.root) + os.sep
        self.rows = self._read_index(max_images)
        if not self.rows:
            raise DatasetError(f"{self.root / 'index.csv'}: the dataset has no images")
        self.info = ProbeSourceInfo(
            spec=spec or f"broden:{self.root}",
            kind="broden",
            root=str(self.root),
            size=len(self.rows),
            extra={"categories": list(self.vocabulary.categories)},
        )

    # -- index -------------------------------------------------------------------------------

    def _inside(self, relative: str, where: str) -> Path:
        """Resolve a path from index.csv under images/, refusing anything that escapes root."""
        # Lexical check (no syscalls: index.csv of Broden lists ~300k files).
        path = os.path.normpath(os.path.join(self._images_dir, relative))
        if not path.startswith(self._root_prefix):
            raise DatasetError(f"{where}: path {relative!r} leaves the dataset directory")
        return Path(path)

    def _read_index(self, max_images: Optional[int]) -> List[dict]:
        index_path = self.root / "index.csv"
        raw = _read_csv(index_path, INDEX_FIXED_COLUMNS)
        cats = self.vocabulary.categories
        rows = []
        for line, row in enumerate(raw, start=2):
            if max_images is not None and len(rows) >= max_images:
                break
            where = f"{index_path} line {line}"
            try:
                sizes = tuple(int(row[k]) for k in ("ih", "iw", "sh", "sw"))
            except (TypeError, ValueError):
                raise DatasetError(f"{where}: ih, iw, sh, sw must be integers") from None
            entry = {
                "image": self._inside(row["image"], where),
                "name": row["image"],
                "sizes": sizes,
                "planes": [],  # (category index, path)
                "image_labels": [],  # (label number, category index)
                "annotated": np.zeros(len(cats), dtype=bool),
            }
            for c, cat in enumerate(cats):
                cell = (row.get(cat) or "").strip()
                if not cell:
                    continue
                entry["annotated"][c] = True
                for token in filter(None, (t.strip() for t in cell.split(";"))):
                    if token.isdigit():
                        number = int(token)
                        if number >= len(self._valid_label) or not self._valid_label[number]:
                            raise DatasetError(
                                f"{where}: image-level label {number} ({cat}) is not in label.csv"
                            )
                        if number and (number, c) not in entry["image_labels"]:
                            entry["image_labels"].append((number, c))
                    else:
                        entry["planes"].append((c, self._inside(token, where)))
            rows.append(entry)
        return rows

    # -- items -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rows)

    def load_image(self, index: int) -> np.ndarray:
        row = self.rows[index]
        return self._load_rgb(row["image"], row["sizes"][:2])

    def image_path(self, index: int) -> str:
        return str(self.rows[index]["image"])

    def __getitem__(self, index: int) -> ProbeItem:
        return self.read(index)

    def read(self, index: int, image: bool = True, labels: bool = True) -> ProbeItem:
        row = self.rows[index]
        try:
            rgb = self._load_rgb(row["image"], row["sizes"][:2]) if image else None
            planes = self._load_planes(row) if labels else \
                np.zeros((0, *row["sizes"][2:]), dtype=np.int32)
        except DatasetError as e:
            return ProbeItem(index=index, error=str(e))
        return ProbeItem(
            index=index,
            image=rgb,
            planes=planes,
            image_labels=[n for n, _ in row["image_labels"]],
            image_label_categories=[c for _, c in row["image_labels"]],
            annotated=row["annotated"],
            label_size=row["sizes"][2:],
            plane_categories=[c for c, _ in row["planes"]] if labels else [],
        )

    @staticmethod
    def _load_rgb(path: Path, size: Tuple[int, int]) -> np.ndarray:
        try:
            image = read_rgb(path)
        except FileNotFoundError:
            raise DatasetError(f"{path}: image file not found") from None
        except Exception as e:  # PIL raises many types for corrupt files
            raise DatasetError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
        if image.shape[:2] != tuple(size):
            raise DatasetError(
                f"{path}: image is {image.shape[0]}x{image.shape[1]} but index.csv says "
                f"{size[0]}x{size[1]}"
            )
        return image

    def _load_planes(self, row: dict) -> np.ndarray:
        """The label planes, a label repeated at a pixel within one category counted once."""
        sh, sw = row["sizes"][2:]
        planes = np.zeros((len(row["planes"]), sh, sw), dtype=np.int32)
        for j, (_, path) in enumerate(row["planes"]):
            try:
                plane = read_label_png(path)
            except FileNotFoundError:
                raise DatasetError(f"{path}: label plane not found") from None
            except Exception as e:
                raise DatasetError(
                    f"{path}: cannot decode label PNG ({type(e).__name__}: {e})"
                ) from None
            if plane.shape[:2] != (sh, sw):
                raise DatasetError(
                    f"{path}: label plane is {plane.shape[0]}x{plane.shape[1]}, expected {sh}x{sw}"
                )
            bad = plane >= len(self._valid_label)
            if not bad.any():
                bad = ~self._valid_label[plane]
            if bad.any():
                numbers = sorted(set(int(v) for v in np.unique(plane[bad])[:5]))
                raise DatasetError(f"{path}: label number(s) {numbers} not in label.csv")
            planes[j] = plane
        cats = np.asarray([c for c, _ in row["planes"]], dtype=np.int64)
        for c in np.unique(cats):
            same = np.nonzero(cats == c)[0]
            planes[same] = remove_repeated_labels(planes[same])  # fancy indexing copies
        return planes
