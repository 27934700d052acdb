"""Segmenter-labelled probe sets: a folder of images labelled by a segmenter, written in the
Broden format (``ndcore data segment``), resumably.

A segmentation becomes Broden cells as follows (docs/method.md section 12): a plane whose
category the segmenter declares (``Segmentation.plane_categories``) goes to that category; a
plane of unknown category is split, one plane per category, each keeping the labels that
belong to it (``Vocabulary.label_categories``), as ndcore counts such a plane in all of a
label's categories. Every category of the segmenter is annotated on an image it labels (a
category without a plane gets the token ``0``: annotated, nothing there); an image it cannot
label (``valid`` False) is annotated in none. :class:`ImageFolderSource` (``images:DIR``)
yields exactly what the reader reads back from such a set written without ``resize``.
"""

from __future__ import annotations

import multiprocessing
import queue
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ...errors import DatasetError
from ...progress import progress_bar
from ..decode import read_rgb
from ..probe import remove_repeated_labels
from ..segmenters import Segmenter
from ..view import resize_image
from ..vocabulary import Vocabulary
from .image_files import list_images
from .writer import ProbeSetWriter

_SOURCE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class Labelled:
    """One image's annotation in Broden cells: label planes and image-level labels per
    category (an empty list: annotated, nothing there)."""

    planes: Dict[str, np.ndarray] = field(default_factory=dict)  # category -> int32 [P, h, w]
    image_labels: Dict[str, List[int]] = field(default_factory=dict)
    label_size: Tuple[int, int] = (0, 0)
    image_size: Optional[Tuple[int, int]] = None  # (h, w) of the image that was labelled


class CellSplitter:
    """Segmentations -> :class:`Labelled` in a vocabulary's categories (module docstring)."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.categories = list(vocabulary.categories)
        self.in_category = np.zeros((len(self.categories), vocabulary.num_labels), dtype=bool)
        for label, cats in enumerate(vocabulary.label_categories):
            for cat in cats:
                if cat in self.categories and label:
                    self.in_category[self.categories.index(cat), label] = True

    def split(self, labels: np.ndarray, plane_categories: Optional[Sequence[Optional[int]]],
              valid: bool) -> Labelled:
        """``labels``: int [P, h, w] label numbers of one image."""
        out = Labelled(label_size=tuple(int(v) for v in labels.shape[-2:]))
        if not valid:
            return out
        per_cat: Dict[int, List[np.ndarray]] = {}
        for j, plane in enumerate(labels):
            c = plane_categories[j] if plane_categories is not None else None
            if c is not None and 0 <= c < len(self.categories):
                per_cat.setdefault(int(c), []).append(plane)
                continue
            for c in range(len(self.categories)):  # unknown: each category keeps its labels
                kept = np.where(self.in_category[c][plane], plane, 0)
                if kept.any():
                    per_cat.setdefault(c, []).append(kept)
        for c, cat in enumerate(self.categories):
            if c in per_cat:
                out.planes[cat] = np.stack(per_cat[c]).astype(np.int32, copy=False)
            else:
                out.image_labels[cat] = []
        return out

    def item_planes(self, labelled: Labelled) -> Tuple[np.ndarray, List[int]]:
        """The planes and their categories as the Broden reader yields them (category order,
        a label repeated at a pixel within one category dropped)."""
        planes, cats = [], []
        for c, cat in enumerate(self.categories):
            if cat in labelled.planes:
                stack = labelled.planes[cat]
                if len(stack) > 1:
                    stack = remove_repeated_labels(stack.copy())
                planes.extend(stack)
                cats.extend([c] * len(stack))
        if not planes:
            return np.zeros((0, *labelled.label_size), dtype=np.int32), []
        return np.stack(planes).astype(np.int32, copy=False), cats


def segment_image(segmenter: Segmenter, splitter: CellSplitter, rgb: np.ndarray,
                  where: str) -> Labelled:
    """Label one uint8 [H, W, 3] image (``where`` names it in errors)."""
    images = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    seg = segmenter.segment(images)
    labels = seg.labels[0].to("cpu").numpy()
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{where}: segmenter {segmenter.name!r} gave labels of shape "
                           f"{list(seg.labels.shape)} ({labels.dtype}), not int [B, P, h, w]")
    if labels.size and (labels.min() < 0 or labels.max() >= splitter.in_category.shape[1]):
        bad = int(labels.min() if labels.min() < 0 else labels.max())
        raise DatasetError(f"{where}: segmenter {segmenter.name!r} gave label {bad}, not in its "
                           f"vocabulary (1..{splitter.in_category.shape[1] - 1}; 0 = none)")
    valid = True if seg.valid is None else bool(seg.valid.reshape(-1)[0])
    labelled = splitter.split(labels, seg.plane_categories, valid)
    labelled.image_size = (int(rgb.shape[0]), int(rgb.shape[1]))
    return labelled


def load_image(path: Path, resize: Optional[Tuple[int, int]]) -> np.ndarray:
    try:
        rgb = read_rgb(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file not found") from None
    except Exception as e:  # PIL raises many types for corrupt files
        raise DatasetError(f"{path}: cannot decode image ({type(e).__name__}: {e}); remove or "
                           f"fix it and rerun (the images done are kept)") from None
    return resize_image(rgb, resize) if resize else rgb


# -- ndcore data segment ---------------------------------------------------------------------

@dataclass
class SegmentSummary:
    out: Path
    images: int  # in the probe set
    written: int  # by this call
    categories: List[str]


_WORKER: dict = {}


def _worker_init(build: Callable[[str], Segmenter], spec: str) -> None:
    torch.set_num_threads(1)  # one process per core
    segmenter = build(spec)
    _WORKER.update(segmenter=segmenter, splitter=CellSplitter(segmenter.vocabulary))


def _worker_label(task: Tuple[str, str, Optional[Tuple[int, int]]]
                  ) -> Tuple[str, Optional[np.ndarray], Labelled]:
    path, key, resize = task
    rgb = load_image(Path(path), resize)
    return key, (rgb if resize else None), segment_image(_WORKER["segmenter"],
                                                         _WORKER["splitter"], rgb, path)


def _label_numbers(writer: ProbeSetWriter, vocab: Vocabulary) -> Optional[np.ndarray]:
    """Declare the segmenter's labels; the lookup from its numbers to the probe set's (None
    when they are the same)."""
    lut = np.zeros(vocab.num_labels, dtype=np.int64)
    for number in range(1, vocab.num_labels):
        name = vocab.label_names[number]
        cats = [c for c in vocab.label_categories[number] if c in vocab.categories]
        if not name or not cats:
            continue  # a skipped number, or a label in no category: never written
        for cat in cats:
            lut[number] = writer.label(name, cat)
    return None if np.array_equal(lut, np.arange(vocab.num_labels)) else lut


def _check_names(images_dir: Path, files: Sequence[str], categories: Sequence[str],
                 resized: bool = False) -> None:
    """Before any work: two images that would be written as one file, or an image stored as
    PNG (as it is, or ``resized``) named like another's label plane (``x_color.png`` next to
    ``x.jpg``; ``x_color.jpg`` copied as it is collides with nothing)."""
    stems: Dict[str, str] = {}
    for key in files:
        other = stems.setdefault(ProbeSetWriter.stem(key), key)
        if other != key:
            raise DatasetError(f"{images_dir / key}: would be written as the same file as "
                               f"{images_dir / other}; rename one of them")
    planes = re.compile(r"(.+)_(%s)(_\d+)?" % "|".join(re.escape(c) for c in categories))
    for stem, key in stems.items():
        match = planes.fullmatch(stem)
        as_png = resized or key.lower().endswith(".png")  # label planes are .png files
        if as_png and match and match.group(1) in stems:
            raise DatasetError(f"{images_dir / key}: its name is that of a label plane of "
                               f"{images_dir / stems[match.group(1)]} in the probe set; rename "
                               f"it or keep it out of the folder")


def source_name(images_dir: Path) -> str:
    name = _SOURCE_NAME.sub("_", Path(images_dir).resolve().name).lstrip("._-")
    return name or "images"


def segment_folder(images_dir: Union[str, Path], segmenter: Segmenter, spec: str,
                   out: Union[str, Path], *, resize: Optional[Tuple[int, int]] = None,
                   workers: int = 0, build: Optional[Callable[[str], Segmenter]] = None,
                   progress: bool = True) -> SegmentSummary:
    """Label every JPEG/PNG under ``images_dir`` with ``segmenter`` (named ``spec``) and write
    a Broden-format probe set to ``out``; a rerun continues where the last one stopped.

    ``resize`` (H, W): images are resized before labelling and stored resized (lossless PNG);
    without it the image files are copied as they are. ``workers`` > 1 labels in that many
    processes, each with its own segmenter from ``build(spec)``.
    """
    images_dir, out = Path(images_dir), Path(out)
    files = list_images(images_dir, exclude=out)
    vocab = segmenter.vocabulary
    _check_names(images_dir, files, vocab.categories, resized=resize is not None)
    meta = {"segmenter": spec, "resize": list(resize) if resize else None}
    with ProbeSetWriter(out, vocab.categories, source=source_name(images_dir),
                        meta=meta) as writer:
        lut = _label_numbers(writer, vocab)
        done = writer.done()
        todo = [key for key in files if key not in done]
        splitter = CellSplitter(vocab)
        with progress_bar(progress) as bar:
            task = bar.add_task(f"segmenting ({spec})", total=len(files), completed=len(done))

            def write(key: str, rgb: Optional[np.ndarray], labelled: Labelled) -> None:
                planes = labelled.planes if lut is None else \
                    {c: lut[p] for c, p in labelled.planes.items()}
                writer.add(key, images_dir / key if rgb is None else rgb, planes,
                           labelled.image_labels, label_size=labelled.label_size,
                           image_size=labelled.image_size)
                bar.advance(task)

            _write_behind(write, _labelled(images_dir, todo, segmenter, splitter, spec, resize,
                                           workers, build))
        writer.finish()
        total = len(writer.done())
    return SegmentSummary(out, total, len(todo), list(vocab.categories))


def _write_behind(write: Callable[..., None], items: Iterator[tuple], depth: int = 8) -> None:
    """``write(*item)`` for every item, in order, in a second thread while the next items are
    labelled (file writes, zlib and numpy release the GIL). Items already labelled are still
    written when labelling fails or is interrupted; the first error is raised."""
    pending: "queue.Queue[Optional[tuple]]" = queue.Queue(maxsize=depth)
    failed: List[BaseException] = []

    def work() -> None:
        while True:
            item = pending.get()
            if item is None:
                return
            if not failed:
                try:
                    write(*item)
                except BaseException as e:  # re-raised in the caller's thread
                    failed.append(e)

    thread = threading.Thread(target=work, name="probe-set-writer", daemon=True)
    thread.start()
    try:
        for item in items:
            if failed:
                break
            pending.put(item)
    finally:
        pending.put(None)
        thread.join()
    if failed:
        raise failed[0]


def _labelled(images_dir: Path, todo: Sequence[str], segmenter: Segmenter,
              splitter: CellSplitter, spec: str, resize: Optional[Tuple[int, int]], workers: int,
              build: Optional[Callable[[str], Segmenter]]
              ) -> Iterator[Tuple[str, Optional[np.ndarray], Labelled]]:
    """(key, the resized image or None, its labels) for ``todo``, in order."""
    if workers <= 1 or build is None or len(todo) < 2:
        for key in todo:
            rgb = load_image(images_dir / key, resize)
            yield key, (rgb if resize else None), segment_image(segmenter, splitter, rgb,
                                                                str(images_dir / key))
        return
    tasks = [(str(images_dir / key), key, resize) for key in todo]
    # spawn: a fresh interpreter per worker (a forked torch, or CUDA, is not safe to use)
    with multiprocessing.get_context("spawn").Pool(
            workers, initializer=_worker_init, initargs=(build, spec)) as pool:
        yield from pool.imap(_worker_label, tasks, chunksize=8)
