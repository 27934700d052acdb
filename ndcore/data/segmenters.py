"""Segmenters: the labeller of generator dissection. They name the concepts in generated images.

A segmenter has a ``vocabulary`` and ``segment(images) -> Segmentation``. Images are uint8 RGB
[B, 3, H, W] (the generator's output mapped from its range to 0..255). Segmenters are registered
by plugins through the ``ndcore_register_segmenters(register)`` hook, the built-in ``colors``
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..data.colors import COLOR_NAMES, color_name_of_rgb
from ..data.vocabulary import Vocabulary


@dataclass
class Segmentation:
    """What a segmenter says about a batch of images."""

    labels: torch.Tensor  # int [B, P, h, w]: label numbers of the vocabulary, 0 = none
    valid: Optional[torch.Tensor] = None  # bool [B]; False: not labelled (e.g. no face found)
    plane_categories: Optional[Sequence[int]] = None  # category index of each plane


class Segmenter:
    """Base class: ``name``, ``vocabulary`` and ``segment``."""

    name: str = "segmenter"
    vocabulary: Vocabulary
    description: str = ""

    def segment(self, images: torch.Tensor) -> Segmentation:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release what the segmenter holds (a worker process, a GPU model); ndcore calls it
        when a run or an intervention is done. The default holds nothing."""

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_segmenter(segmenter) -> Optional[str]:
    """A segmenter factory's result must be a Segmenter with a vocabulary (plugin checks)."""
    if not isinstance(segmenter, Segmenter):
        return f"returned {type(segmenter).__name__}, not a ndcore.plugin_api.Segmenter"
    if not isinstance(getattr(segmenter, "vocabulary", None), Vocabulary):
        return "returned a Segmenter without a Vocabulary in .vocabulary"
    return None


def single_category_vocabulary(category: str, names: Sequence[str]) -> Vocabulary:
    """A vocabulary whose labels 1..n are ``names``, all in one category."""
    n = len(names) + 1
    return Vocabulary(
        categories=[category], label_names=["-", *names],
        label_categories=[[]] + [[category]] * (n - 1),
        primary=np.asarray([-1] + [0] * (n - 1), dtype=np.int64),
        coverage=[{}] + [{category: 1.0}] * (n - 1))


class ColorSegmenter(Segmenter):
    """Every pixel named by one of Broden's 11 colour names, from its RGB value. No weights."""

    name = "colors"
    description = "Broden's 11 colour names, pixel by pixel (no weights)"

    def __init__(self) -> None:
        self.vocabulary = single_category_vocabulary("color", COLOR_NAMES)

    def segment(self, images: torch.Tensor) -> Segmentation:
        rgb = images.permute(0, 2, 3, 1).to("cpu", torch.uint8).numpy()
        labels = color_name_of_rgb(rgb).astype(np.int32) + 1  # label numbers start at 1
        return Segmentation(torch.from_numpy(labels)[:, None], plane_categories=[0])
