"""What the converters share: the sizes they write at and the report of what they did.

Broden stores a label plane at its own resolution (sh, sw; docs/method.md section 12) and a
converter keeps each mask's by default. A dissection batches label planes of one size, though,
so a source whose images (and so masks) vary in size, as VOC's and ADE20K's do, is converted
with ``size`` (images resized bilinearly, as ``--resize`` resizes them) and ``label_size``
(label planes resized by nearest neighbour: labels are never blended), as Broden itself holds
224 x 224 images with 112 x 112 labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Set, Tuple, Union

import numpy as np

from ...errors import DatasetError
from ..decode import read_rgb
from ..view import resize_image

Size = Tuple[int, int]


def resize_nearest(plane: np.ndarray, size: Size) -> np.ndarray:
    """A label plane [H, W] at ``size`` (h, w): output pixel (y, x) takes the input pixel
    whose centre is nearest its own, (floor((y + 0.5) * H / h), floor((x + 0.5) * W / w))."""
    (H, W), (h, w) = plane.shape, size
    if (H, W) == (h, w):
        return plane
    rows = (2 * np.arange(h) + 1) * H // (2 * h)  # in integers: exact at ties
    cols = (2 * np.arange(w) + 1) * W // (2 * w)
    return plane[rows[:, None], cols[None, :]]


@dataclass(frozen=True)
class Sizing:
    """``image``: images resized to it (None: copied as they are); ``labels``: label planes
    resized to it (None: ``image``'s size if given, else each mask's own)."""

    image: Optional[Size] = None
    labels: Optional[Size] = None

    @property
    def label_size(self) -> Optional[Size]:
        return self.labels or self.image

    def image_of(self, path: Path) -> Union[np.ndarray, Path]:
        """What the writer gets: the file (copied), or its pixels resized."""
        if self.image is None:
            return path
        try:
            rgb = read_rgb(path)
        except Exception as e:  # PIL raises many types for corrupt files
            raise DatasetError(f"{path}: cannot decode image ({type(e).__name__}: {e})") \
                from None
        return resize_image(rgb, self.image)

    def planes(self, planes: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        size = self.label_size
        return {c: resize_nearest(p, size) for c, p in planes.items()} if size else planes

    def meta(self) -> Dict:
        """For the writer's meta: a set is continued only at the sizes it was started with."""
        return {"size": list(self.image or ()), "label_size": list(self.label_size or ())}

    @property
    def image_format(self) -> str:
        return "jpg" if self.image else "png"  # resized images: JPEG, as Broden's


@dataclass
class ConvertReport:
    """What a conversion did: images written now, already there (resumed), left out, and the
    label sizes written now (several: the set needs ``label_size`` to be dissected)."""

    written: int = 0
    resumed: int = 0
    skipped: int = 0  # images without a mask (with skip_missing)
    label_sizes: Set[Size] = field(default_factory=set)
