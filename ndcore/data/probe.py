"""What a probe source yields: images with their label planes, batched for the engine.

A probe source is anything with a ``vocabulary``, ``info``, ``__len__`` and ``__getitem__``
returning :class:`ProbeItem` (a Broden directory, the synthetic set, a plugin's in-memory set).
The engine never assumes labels come from files, and never changes a source: a pass that needs
only images (or only labels) calls :meth:`ProbeSource.read` with what it needs, and sources
that can skip decoding one side override it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .vocabulary import Vocabulary


@dataclass
class ProbeItem:
    """One probe image and its annotation.

    ``error`` is set instead of raising inside DataLoader workers, so the main process can
    report it as one clear line (the file at fault and why).
    """

    index: int
    image: Optional[np.ndarray] = None  # uint8 [H, W, 3]
    planes: Optional[np.ndarray] = None  # int [P, sh, sw] label numbers, 0 = no label
    image_labels: Sequence[int] = ()  # labels that cover the whole image (scene, texture)
    annotated: Optional[np.ndarray] = None  # bool [C]: categories annotated on this image
    label_size: Optional[tuple] = None  # (sh, sw), also when there is no plane
    # Which category each plane / image-level label was annotated as (index into the
    # vocabulary's categories; -1 or None = not known). It makes relabelling a saved run with
    # fewer categories exact for labels that belong to several categories.
    plane_categories: Optional[Sequence[int]] = None
    image_label_categories: Optional[Sequence[int]] = None
    error: Optional[str] = None


@dataclass
class ProbeBatch:
    """A batch as the passes see it. ``labels`` hold *label-space* ids (see labelspace.py)."""

    indices: torch.Tensor  # int64 [B] probe indices
    images: torch.Tensor  # uint8 [B, 3, H, W] ([B, 0, 0, 0] in a labels-only pass)
    labels: torch.Tensor  # int32 [B, P, sh, sw] (planes zero-padded to the batch's maximum)
    image_labels: torch.Tensor  # int64 [B, Q] label-space ids (zero-padded)
    annotated: torch.Tensor  # bool [B, C]
    # label_counts(), once computed (every layer's counts need it)
    _label_counts: Optional[torch.Tensor] = field(default=None, init=False, repr=False,
                                                  compare=False)

    def pin_memory(self) -> "ProbeBatch":
        return ProbeBatch(*(t.pin_memory() for t in self.tensors()))

    def tensors(self):
        return (self.indices, self.images, self.labels, self.image_labels, self.annotated)

    def to(self, device, non_blocking: bool = False) -> "ProbeBatch":
        if all(t.device == torch.device(device) for t in self.tensors()):
            return self  # (keeps what label_counts remembered)
        return ProbeBatch(*(t.to(device, non_blocking=non_blocking) for t in self.tensors()))

    def label_counts(self, num_ids: int) -> torch.Tensor:
        """int64 [num_ids]: the pixels of each label-space id over all label planes. Computed
        once per batch: every layer's counts need it."""
        if self._label_counts is None or self._label_counts.shape[0] != num_ids:
            labels = self.labels.reshape(-1).long()
            self._label_counts = torch.bincount(labels, minlength=num_ids)[:num_ids]
        return self._label_counts

    @property
    def label_size(self) -> tuple:
        return tuple(self.labels.shape[-2:])

    def __len__(self) -> int:
        return int(self.indices.numel())


class ProbeError(Exception):
    """Carries the first item error of a batch out of the collate function."""


def stack_items(items: List[ProbeItem]) -> ProbeBatch:
    """Stack items whose ``planes`` / ``image_labels`` are already label-space ids.

    Raises ProbeError naming the first broken item, or images / label planes of different
    sizes in one batch.
    """
    for item in items:
        if item.error:
            raise ProbeError(item.error)
    first = items[0]
    with_images = first.image is not None
    for item in items:
        if with_images and item.image.shape != first.image.shape:
            raise ProbeError(
                f"image {item.index} is {item.image.shape[0]}x{item.image.shape[1]} but image "
                f"{first.index} is {first.image.shape[0]}x{first.image.shape[1]}; give --resize "
                "so that all probe images share one size"
            )
        if tuple(item.label_size) != tuple(first.label_size):
            raise ProbeError(
                f"image {item.index} has labels of size {tuple(item.label_size)} but image "
                f"{first.index} has {tuple(first.label_size)}; label sizes must agree (--resize "
                f"resizes images only: label a folder of mixed sizes with `ndcore data segment "
                f"--resize N`, or convert with --size/--label-size)"
            )
    sh, sw = first.label_size
    n_planes = max(item.planes.shape[0] for item in items)
    labels = np.zeros((len(items), n_planes, sh, sw), dtype=np.int32)
    n_img_labels = max((len(item.image_labels) for item in items), default=0)
    image_labels = np.zeros((len(items), n_img_labels), dtype=np.int64)
    for b, item in enumerate(items):
        labels[b, : item.planes.shape[0]] = item.planes
        image_labels[b, : len(item.image_labels)] = item.image_labels
    if with_images:
        images = torch.from_numpy(np.ascontiguousarray(
            np.stack([item.image for item in items]).transpose(0, 3, 1, 2)))
    else:  # a labels-only pass (the model's maps come from the kept-map store)
        images = torch.zeros((len(items), 0, 0, 0), dtype=torch.uint8)
    return ProbeBatch(
        indices=torch.tensor([item.index for item in items], dtype=torch.int64),
        images=images,
        labels=torch.from_numpy(labels),
        image_labels=torch.from_numpy(image_labels),
        annotated=torch.from_numpy(np.stack([np.asarray(item.annotated, dtype=bool)
                                             for item in items])),
    )


@dataclass
class ProbeSourceInfo:
    """What is recorded in config.json about a probe source."""

    spec: str
    kind: str
    root: Optional[str] = None
    size: int = 0
    extra: Dict = field(default_factory=dict)


class ProbeSource(torch.utils.data.Dataset):
    """Base class of probe sources (map-style datasets of :class:`ProbeItem`).

    Required: ``vocabulary``, ``info``, ``__len__``, ``__getitem__``. Optional: ``read`` (skip
    decoding what a pass does not need), ``image_path`` (reports link the original file).
    """

    vocabulary: Vocabulary
    info: ProbeSourceInfo

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> ProbeItem:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, index: int, image: bool = True, labels: bool = True) -> ProbeItem:
        """The item at ``index``; a source may leave out the image (``image=False``) or the
        label planes (``labels=False``: zero planes, image-level labels kept) to save work."""
        return self[index]

    def image_path(self, index: int) -> Optional[str]:
        """The file an image came from (for reports), or None for images without a file."""
        return None

    def load_image(self, index: int) -> np.ndarray:
        """The RGB image (uint8 [H, W, 3]) at ``index``, for reports and explanations."""
        item = self.read(index, image=True, labels=False)
        if item.error:
            raise ProbeError(item.error)
        return item.image


def remove_repeated_labels(planes: np.ndarray) -> np.ndarray:
    """Zero a label that already appears at the same pixel in an earlier plane (in place)."""
    for j in range(1, planes.shape[0]):
        for i in range(j):
            planes[j][(planes[j] == planes[i]) & (planes[j] != 0)] = 0
    return planes
