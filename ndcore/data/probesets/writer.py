"""Writes a Broden-format probe set (docs/method.md section 12) incrementally, resumably.

Each image's files (the image, its label PNGs) are written under a temporary name and renamed,
then one line is appended to a journal (``.ndcore-journal.jsonl``) that records the image, its
index.csv cells and its label counts (neither is synced to disk: this guards against a killed
process, not a crashed machine, and keeps the per-image cost low). The journal is the probe
set's memory: reopening an unfinished directory reads it back, so a SIGKILL at any moment
loses at most the image being written (a torn last line is dropped).
:meth:`ProbeSetWriter.finish` derives the tables from it (frequency, coverage and so each
label's primary category come from the counts).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np
from PIL import Image

from ...errors import DatasetError, NdcoreError
from ...files import replace_atomically
from ..decode import read_rgb
from ..probe import remove_repeated_labels
from .image_files import IMAGE_SUFFIXES, image_size as read_image_size
from .tables import (INDEX_COLUMNS, LabelRow, LabelStats, plane_suffixes, save_label_png,
                     write_tables)

try:  # one writer per directory; fcntl is POSIX-only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

JOURNAL = ".ndcore-journal.jsonl"
FORMAT = 1
TABLES = ["category.csv", "label.csv", "index.csv"]  # after the c_<cat>.csv; index.csv last
# Categories and sources name files (c_<cat>.csv, <name>_<cat>.png) and index columns.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_UNSAFE = re.compile(r"[^\w.+@=-]")  # in file names made from image keys

ImageLike = Union[np.ndarray, Path]


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in INDEX_COLUMNS:
        raise NdcoreError(f"{what} {name!r}: use letters, digits, '_', '-' and '.' "
                          f"(and none of {', '.join(INDEX_COLUMNS)})")


def _is_temporary(name: str) -> bool:
    """A file left by a write that was interrupted (this writer's or an older version's)."""
    return name.endswith((".part", ".tmp"))


class ProbeSetWriter:
    """Writes a Broden-format probe set (docs/method.md section 12 / METHOD.md) incrementally;
    resumable: reopening an unfinished directory continues it.

    ``categories`` fixes the category order; ``source`` names the folder under ``images/``;
    ``meta`` (anything JSON) must match when the directory is reopened (e.g. the segmenter
    that labels it). Images given as arrays are saved as ``image_format`` (``png``: lossless,
    the pixels that were labelled; or ``jpg``). Label PNGs are written with the fast encoder
    of :func:`save_label_png`.
    """

    def __init__(self, out: Path, categories: Sequence[str], *, source: str,
                 meta: Optional[Mapping[str, Any]] = None, image_format: str = "png",
                 jpeg_quality: int = 90) -> None:
        self._fd: Optional[int] = None
        self.out = Path(out)
        self.categories = list(categories)
        if not self.categories or len(set(self.categories)) != len(self.categories):
            raise NdcoreError(f"{self.out}: categories must be distinct and at least one "
                              f"(got {self.categories})")
        for cat in self.categories:
            _check_name("category", cat)
        _check_name("source", source)
        if image_format not in ("png", "jpg"):
            raise NdcoreError(f"image_format {image_format!r}: use png or jpg")
        self.source = source
        self._image_format, self._jpeg_quality = image_format, jpeg_quality
        self._numbers: Dict[str, int] = {}  # label name -> number
        self._names: List[str] = []  # number - 1 -> name
        self._declared: Dict[int, List[str]] = {}  # number -> categories given to label()
        self._records: Dict[str, dict] = {}  # key -> journal record
        self._owner: Dict[str, str] = {}  # file relative to images/ -> key that wrote it
        self._dirs: Set[Path] = set()
        self.journal = self.out / JOURNAL
        header = {"format": FORMAT, "source": source, "categories": self.categories,
                  "meta": json.loads(json.dumps(dict(meta or {})))}
        if not self.journal.is_file():
            if self.out.exists() and (not self.out.is_dir() or any(
                    not _is_temporary(p.name) for p in self.out.iterdir())):
                raise DatasetError(f"{self.out}: exists and is not a probe set being written by "
                                   f"ndcore (no {JOURNAL}); choose a new or empty directory")
            self.out.mkdir(parents=True, exist_ok=True)
            replace_atomically(self.journal,
                               lambda tmp: tmp.write_text(json.dumps(header) + "\n"))
        self._fd = os.open(self.journal, os.O_RDWR | os.O_APPEND)
        try:
            if fcntl is not None:  # before reading: another writer's line may be half written
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise DatasetError(f"{self.out}: another process is writing this probe "
                                       f"set") from None
            self._replay(header)
        except BaseException:
            self.close()
            raise

    # -- journal ---------------------------------------------------------------------------

    def _replay(self, header: dict) -> None:
        data = self.journal.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a line torn by a kill: that image is written again
            os.ftruncate(self._fd, end)
        lines = data[:end].decode("utf-8").splitlines()
        try:
            entries = [json.loads(line) for line in lines]
        except json.JSONDecodeError as e:
            raise DatasetError(f"{self.journal}: damaged journal ({e})") from None
        old = entries[0] if entries else {}
        for field in ("format", "source", "categories", "meta"):
            if old.get(field) != header[field]:
                raise DatasetError(
                    f"{self.out}: this probe set was started with {field} {old.get(field)!r}, "
                    f"not {header[field]!r}; continue it with the same options or choose a new "
                    f"directory")
        for entry in entries[1:]:
            if "label" in entry:
                self._declare(entry["label"], entry["number"], entry["category"])
            else:
                self._remember(entry)

    def _append(self, entry: dict) -> None:
        data = (json.dumps(entry, separators=(",", ":")) + "\n").encode("utf-8")
        while data:  # one write() for a line in practice; a short one is continued
            data = data[os.write(self._fd, data):]

    def _declare(self, name: str, number: int, category: str) -> None:
        if name not in self._numbers:
            self._numbers[name] = number
            self._names.append(name)
        self._declared.setdefault(number, []).append(category)

    def _remember(self, record: dict) -> None:
        # A key twice in a journal: written by an older ndcore that let add() replace a key.
        old = self._records.pop(record["key"], None)
        if old is not None:
            for rel in old["files"]:
                self._owner.pop(rel, None)
        self._records[record["key"]] = record
        for rel in record["files"]:
            self._owner[rel] = record["key"]

    # -- public API ------------------------------------------------------------------------

    def done(self) -> Set[str]:
        """Keys of the images already written (for resuming)."""
        return set(self._records)

    def label(self, name: str, category: str) -> int:
        """The global label number (1..) of ``name``, declared in ``category`` (new or
        existing: a name has one number whatever its categories)."""
        if category not in self.categories:
            raise NdcoreError(f"label {name!r}: category {category!r} is not one of this probe "
                              f"set's ({', '.join(self.categories)})")
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise NdcoreError(f"label name {name!r}: must be non-empty, without surrounding spaces")
        number = self._numbers.get(name, len(self._names) + 1)
        if category not in self._declared.get(number, ()):
            self._append({"label": name, "number": number, "category": category})
            self._declare(name, number, category)
        return number

    @staticmethod
    def stem(key: str) -> str:
        """The file name (relative to ``images/<source>/``, without suffix) an image key gets:
        a .jpg/.jpeg/.png suffix dropped; characters other than letters, digits and
        ``._-+@=`` made ``_``."""
        parts = str(key).replace("\\", "/").split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise NdcoreError(f"image key {key!r}: must be a relative path without '.' or '..'")
        root, ext = os.path.splitext(parts[-1])
        if ext.lower() in IMAGE_SUFFIXES and root:
            parts[-1] = root
        return "/".join(_UNSAFE.sub("_", p) for p in parts)

    def add(self, key: str, image: ImageLike, planes: Mapping[str, np.ndarray],
            image_labels: Mapping[str, Sequence[int]] = {}, *, split: str = "train",
            label_size: Optional[Tuple[int, int]] = None,
            image_size: Optional[Tuple[int, int]] = None) -> None:
        """Write one image with its annotation. ``planes[cat]``: int label numbers [P, h, w]
        or [h, w] (0 = none); ``image_labels[cat]``: image-level label numbers (an empty list:
        annotated, nothing there). A category in neither is not annotated on this image.
        ``label_size`` (h, w) is index.csv's sh, sw when there is no plane (default: the
        image's size). ``image_size`` (h, w): an image file's size as decoded, when the caller
        knows it (spares reading its header). A key is written once: adding one of
        :meth:`done` again is an error (its files would be rewritten before the journal knows)."""
        if key in self._records:
            raise DatasetError(f"{key}: already written to {self.out} (a key is added once; "
                               f"skip the keys of done())")
        stem = self.stem(key)
        for cat in (*planes, *image_labels):
            if cat not in self.categories:
                raise NdcoreError(f"{key}: category {cat!r} is not one of this probe set's "
                                  f"({', '.join(self.categories)})")
        stacks = {cat: self._check_planes(key, cat, p) for cat, p in planes.items()}
        sizes = {s.shape[1:] for s in stacks.values()}
        if len(sizes) > 1:
            raise DatasetError(f"{key}: label planes of different sizes {sorted(sizes)} "
                               f"(a Broden image has one label size)")
        levels = {cat: sorted({int(n) for n in nums}) for cat, nums in image_labels.items()}
        for cat, nums in levels.items():
            bad = [n for n in nums if not 0 <= n <= len(self._names)]
            if bad:
                raise DatasetError(f"{key}: image-level {cat} label {bad[0]} is not a declared "
                                   f"label number (1..{len(self._names)})")

        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise NdcoreError(f"{key}: image must be uint8 [H, W, 3], got {image.dtype} "
                                  f"{list(image.shape)}")
            ih, iw = image.shape[:2]
            suffix = "." + self._image_format
        else:
            path = Path(image)
            ih, iw = (int(v) for v in (image_size or read_image_size(path)))
            suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ".png"
        sh, sw = next(iter(sizes)) if sizes else (label_size or (ih, iw))

        base = f"{self.source}/{stem}"
        image_rel = base + suffix
        plane_rels = {cat: [f"{base}_{cat}{s}.png" for s in plane_suffixes(len(st))]
                      for cat, st in stacks.items()}
        files = [image_rel] + [rel for rels in plane_rels.values() for rel in rels]
        for rel in files:
            owner = self._owner.get(rel)
            if owner is not None:
                raise DatasetError(f"{key}: its file images/{rel} is already written for "
                                   f"{owner!r}; rename one of them")

        self._write_image(image, self.out / "images" / image_rel)
        for cat, stack in stacks.items():
            for plane, rel in zip(stack, plane_rels[cat]):
                replace_atomically(self.out / "images" / rel,
                                   lambda tmp, p=plane: save_label_png(p, tmp, fast=True),
                                   durable=False)

        cells = {cat: ";".join(rels) for cat, rels in plane_rels.items()}
        for cat, nums in levels.items():
            tokens = [str(n) for n in nums if n] or ["0"]  # "0": annotated, no label
            cells[cat] = ";".join(filter(None, [cells.get(cat, ""), *tokens]))
        record = {"key": key, "image": image_rel, "split": split, "size": [ih, iw, sh, sw],
                  "cells": cells, "files": files,
                  "area": {cat: self._areas(st) for cat, st in stacks.items()},
                  "image_labels": {cat: [n for n in nums if n] for cat, nums in levels.items()}}
        self._append(record)
        self._remember(record)

    def finish(self) -> None:
        """Write index.csv, label.csv, category.csv and c_<cat>.csv (each atomically; index.csv
        last) from the images written so far. Can be called again after more images."""
        records = [self._records[k] for k in sorted(self._records)]
        stats = LabelStats.empty(self.categories)
        for rec in records:
            stats.add_image(rec["cells"], rec["area"], rec["size"][2] * rec["size"][3],
                            rec["image_labels"])
        freq, cover, annotated = stats.frequency, stats.coverage, stats.annotated
        images_with = stats.images_with

        labels = []
        for number, name in enumerate(self._names, start=1):
            cats = [c for c in self.categories
                    if c in self._declared.get(number, ()) or (c, number) in freq]
            labels.append(LabelRow(number, name, {c: freq.get((c, number), 0) for c in cats},
                                   {c: cover.get((c, number), 0.0) for c in cats},
                                   images_with.get(number, 0)))
        index_rows = [[rec["image"], rec["split"], *rec["size"],
                       *(rec["cells"].get(c, "") for c in self.categories)] for rec in records]

        staging = self.out / ".ndcore-tables.part"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        write_tables(staging, self.categories, index_rows, labels, annotated)
        for name in [f"c_{c}.csv" for c in self.categories] + TABLES:
            os.replace(staging / name, self.out / name)
        staging.rmdir()

    def close(self) -> None:
        """Release the directory (the journal stays: the set can be continued later)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ProbeSetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------

    def _check_planes(self, key: str, cat: str, planes: np.ndarray) -> np.ndarray:
        stack = np.asarray(planes)
        if stack.ndim == 2:
            stack = stack[None]
        if stack.ndim != 3 or stack.shape[0] == 0 or not np.issubdtype(stack.dtype, np.integer):
            raise NdcoreError(f"{key}: {cat} planes must be integer [P, h, w] or [h, w] with "
                              f"P >= 1, got {stack.dtype} {list(stack.shape)} (leave a category "
                              f"out to mark it not annotated)")
        low, high = int(stack.min()), int(stack.max())
        if low < 0 or high > len(self._names):
            bad = low if low < 0 else high
            raise DatasetError(f"{key}: {cat} plane holds label number {bad}, not a declared "
                               f"label (1..{len(self._names)}; 0 = none)")
        return stack

    @staticmethod
    def _areas(stack: np.ndarray) -> Dict[str, int]:
        """Pixels of each label in the category (a label in several planes counted once)."""
        if len(stack) > 1:
            stack = remove_repeated_labels(stack.copy())
        counts = np.bincount(stack.ravel())
        return {str(n): int(counts[n]) for n in np.flatnonzero(counts) if n}

    def _write_image(self, image: ImageLike, path: Path) -> None:
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        if isinstance(image, np.ndarray):
            options = {"quality": self._jpeg_quality} if self._image_format == "jpg" else {}
            fmt = "JPEG" if self._image_format == "jpg" else "PNG"
            replace_atomically(path, lambda tmp: Image.fromarray(image, "RGB").save(
                tmp, format=fmt, **options), durable=False)
        elif Path(image).suffix.lower() in IMAGE_SUFFIXES:
            replace_atomically(path, lambda tmp: shutil.copyfile(image, tmp), durable=False)
        else:
            try:
                rgb = read_rgb(image)
            except Exception as e:
                raise DatasetError(f"{image}: cannot decode image ({type(e).__name__}: {e})") \
                    from None
            replace_atomically(path, lambda tmp: Image.fromarray(
                np.ascontiguousarray(rgb), "RGB").save(tmp, format="PNG"), durable=False)
