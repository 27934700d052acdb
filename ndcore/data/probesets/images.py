"""``images:DIR``: a folder of images labelled by a segmenter as they are read (no probe set
written). Each item is what ``broden:`` reads back from ``ndcore data segment DIR`` with the
same segmenter and without ``--resize`` (ndcore.data.probesets.segment): the same images, in
the same order, with the same planes, plane categories and annotated categories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import DatasetError
from ..probe import ProbeItem, ProbeSource, ProbeSourceInfo
from ..segmenters import Segmenter
from .image_files import list_images
from .segment import CellSplitter, load_image, segment_image


class ImageFolderSource(ProbeSource):
    """The JPEG/PNG files under ``root`` (recursive, sorted, hidden ones skipped), labelled by
    ``segmenter``.

    The segmenter runs where the items are read (in the loader's worker processes with
    ``--workers``); ``ndcore data segment`` labels once and keeps the labels instead.
    """

    def __init__(self, root, segmenter: Segmenter, segmenter_spec: str,
                 spec: Optional[str] = None, owns_segmenter: bool = False) -> None:
        self.root = Path(root).resolve()
        self.files = list_images(self.root)
        self.segmenter, self.owns_segmenter = segmenter, owns_segmenter
        self.vocabulary = segmenter.vocabulary
        self._splitter = CellSplitter(self.vocabulary)
        self.info = ProbeSourceInfo(
            spec=spec or f"images:{self.root}", kind="images", root=str(self.root),
            size=len(self.files), extra={"segmenter": segmenter_spec})

    def __len__(self) -> int:
        return len(self.files)

    def image_path(self, index: int) -> str:
        return str(self.root / self.files[index])

    def load_image(self, index: int) -> np.ndarray:
        return load_image(self.root / self.files[index], None)

    def __getitem__(self, index: int) -> ProbeItem:
        return self.read(index)

    def read(self, index: int, image: bool = True, labels: bool = True) -> ProbeItem:
        path = self.root / self.files[index]
        try:
            rgb = load_image(path, None)
            # Labelled even in an images-only pass: a batch needs every item's label size.
            labelled = segment_image(self.segmenter, self._splitter, rgb, str(path))
        except DatasetError as e:
            return ProbeItem(index=index, error=str(e))
        planes, cats = self._splitter.item_planes(labelled)
        if not labels:
            planes, cats = planes[:0], []
        annotated = np.array([c in labelled.planes or c in labelled.image_labels
                              for c in self.vocabulary.categories], dtype=bool)
        return ProbeItem(index=index, image=rgb if image else None, planes=planes,
                         annotated=annotated, label_size=labelled.label_size,
                         plane_categories=cats, image_labels=[], image_label_categories=[])

    def close(self) -> None:
        if self.owns_segmenter:
            self.segmenter.close()
