"""What a probe source yields: images with their label planes, batched for the engine.

A probe source is anything with a ``vocabulary``, ``__len__`` and ``__getitem__`` returning
:class:`ProbeItem` (a Broden directory, the synthetic set, or later a generator + segmenter).
The engine never assumes labels come from files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .vocabulary import Vocabulary


@dataclass
class ProbeItem:
    """One probe image. ``error`` is set instead of raising inside DataLoader workers, so the
    main process can report it as one clear line (the file at fault and why)."""

    index: int
    image: Optional[np.ndarray] = None  # uint8 [H, W, 3]
    planes: Optional[np.ndarray] = None  # int32 [P, sh, sw], 0 = no label, no repeats per pixel
    image_labels: Sequence[int] = ()
    annotated: Optional[np.ndarray] = None  # bool [C]: categories annotated on this image
    label_size: Optional[tuple] = None  # (sh, sw) even when there is no plane
    error: Optional[str] = None


@dataclass
class ProbeBatch:
    indices: torch.Tensor  # int64 [B]
    images: torch.Tensor  # uint8 [B, 3, H, W]
    labels: torch.Tensor  # int32 [B, P, sh, sw] (planes zero-padded to the batch's maximum)
    image_labels: torch.Tensor  # int64 [B, Q] (zero-padded)
    annotated: torch.Tensor  # bool [B, C]

    def pin_memory(self) -> "ProbeBatch":
        return ProbeBatch(*(t.pin_memory() for t in self.tensors()))

    def tensors(self):
        return (self.indices, self.images, self.labels, self.image_labels, self.annotated)

    def to(self, device, non_blocking: bool = False) -> "ProbeBatch":
        return ProbeBatch(*(t.to(device, non_blocking=non_blocking) for t in self.tensors()))

    @property
    def label_size(self) -> tuple:
        return tuple(self.labels.shape[-2:])


class ProbeError(Exception):
    """Carries the first item error of a batch out of the collate function."""


def collate_probe_items(items: List[ProbeItem]) -> ProbeBatch:
    """Stack items into a batch; raises ProbeError naming the first broken item."""
    for item in items:
        if item.error:
            raise ProbeError(item.error)
    first = items[0]
    with_images = first.image is not None
    shape = first.image.shape if with_images else None
    sizes = {tuple(item.label_size) for item in items}
    for item in items:
        if with_images and item.image.shape != shape:
            raise ProbeError(
                f"image {item.index} has size {item.image.shape[:2]} but image {first.index} has "
                f"{shape[:2]}; give --resize so all probe images share one size"
            )
    if len(sizes) > 1:
        raise ProbeError(f"label planes of different sizes in one batch: {sorted(sizes)}")
    sh, sw = sizes.pop()
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
    else:  # a labels-only pass (the model's maps come from the cache)
        images = torch.zeros((len(items), 0, 0, 0), dtype=torch.uint8)
    return ProbeBatch(
        indices=torch.tensor([item.index for item in items], dtype=torch.int64),
        images=images,
        labels=torch.from_numpy(labels),
        image_labels=torch.from_numpy(image_labels),
        annotated=torch.from_numpy(np.stack([item.annotated for item in items])),
    )


def remove_repeated_labels(planes: np.ndarray) -> np.ndarray:
    """Zero a label that already appears at the same pixel in an earlier plane (in place).

    The tally counts (pixel, plane) pairs; without this a label listed twice at one pixel would
    count twice and an IoU could exceed 1.
    """
    for j in range(1, planes.shape[0]):
        for i in range(j):
            planes[j][(planes[j] == planes[i]) & (planes[j] != 0)] = 0
    return planes


@dataclass
class ProbeSourceInfo:
    """What is recorded in config.json about a probe source."""

    spec: str
    kind: str
    root: Optional[str] = None
    size: int = 0
    extra: Dict = field(default_factory=dict)


class ProbeSource(torch.utils.data.Dataset):
    """Base class of probe sources (map-style datasets of :class:`ProbeItem`)."""

    vocabulary: Vocabulary
    info: ProbeSourceInfo
    # Passes that need only one side set these False; sources may then skip decoding images
    # (item.image = None) or label planes (zero planes, image-level labels kept: they are free).
    load_images: bool = True
    load_labels: bool = True

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> ProbeItem:  # pragma: no cover - abstract
        raise NotImplementedError

    def image_path(self, index: int) -> Optional[str]:
        """The file an image came from (for reports), or None for generated images."""
        return None

    def load_image(self, index: int) -> np.ndarray:
        """The RGB image (uint8 [H, W, 3]) at ``index``, for reports and explanations."""
        item = self[index]
        if item.error:
            raise ProbeError(item.error)
        return item.image
