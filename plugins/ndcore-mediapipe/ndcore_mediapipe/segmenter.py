"""``face-parts``: the face parts of generated face images, for GAN dissection.

    from ndcore_mediapipe import FacePartsSegmenter
    with FacePartsSegmenter() as seg:               # starts the mediapipe worker
        s = seg.segment(images)                     # uint8 [B, 3, H, W]
        s.labels                                    # int64 [B, 3, H, W] (see parts.PLANES)
        s.valid                                     # bool [B]: False where no face was found

Each image is upscaled to 256 px (bicubic), its 478 face-mesh landmarks (irises included) and
selfie person mask are found in the worker, and the parts are drawn here from mediapipe's own
edge sets (:mod:`ndcore_mediapipe.parts`). Labels come back at the image's own resolution.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional

import numpy as np
import torch

from ndcore.plugin_api import Segmentation, Segmenter

from .client import WorkerClient
from .parts import PLANE_CATEGORIES, FaceGeometry, PartMaker, vocabulary


class FacePartsSegmenter(Segmenter):
    """Face parts from mediapipe 0.10.21's face mesh and selfie segmentation, run in a worker
    process in mediapipe's own environment (see the package README for why)."""

    name = "face-parts"
    description = ("face parts (skin, nose, lips, mouth interior, eyes, irises, eyebrows, hair "
                   "(approx.), face, background) from mediapipe's face mesh, in a worker")

    def __init__(self, python: Optional[str] = None, size: int = 256, chunk: int = 128) -> None:
        self.vocabulary = vocabulary()
        self.size, self.chunk = int(size), int(chunk)
        self.client = WorkerClient(python, size=self.size)
        self.parts = PartMaker(self.client.hello)
        self.stats: Dict[str, float] = {"images": 0, "faces": 0, "padded": 0,
                                        "worker_seconds": 0.0, "draw_seconds": 0.0}

    def _detect(self, images: torch.Tensor):
        """(uint8 [B, H, W, 3], per-chunk worker answers)."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            what = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(f"face-parts segments uint8 [B, 3, H, W] images, got {what}")
        images = images.detach().cpu()
        if images.dtype != torch.uint8:
            images = images.to(torch.uint8)
        # numpy, not torch, for the copy: no torch kernel runs here, so a forked child (whose
        # copy of torch's OpenMP pool may hang) can segment too
        rgb = np.ascontiguousarray(images.numpy().transpose(0, 2, 3, 1))
        answers = []
        for start in range(0, len(rgb), self.chunk):
            t = time.perf_counter()
            answers.append(self.client.segment(rgb[start:start + self.chunk]))
            self.stats["worker_seconds"] += time.perf_counter() - t
        return rgb, answers

    def segment(self, images: torch.Tensor) -> Segmentation:
        rgb, answers = self._detect(images)
        b, h, w, _ = rgb.shape
        labels = np.zeros((b, len(PLANE_CATEGORIES), h, w), dtype=np.int16)
        valid = np.zeros(b, dtype=bool)
        t = time.perf_counter()
        i = 0
        for header, marks, masks in answers:
            k = int(header["scale"])
            for j, found in enumerate(header["found"]):
                if found:
                    labels[i] = self.parts.planes(marks[j], masks[j], k)
                    valid[i] = True
                    self.stats["padded"] += header["tries"][j] > 1
                i += 1
        self.stats["draw_seconds"] += time.perf_counter() - t
        self.stats["images"] += b
        self.stats["faces"] += int(valid.sum())
        return Segmentation(torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(valid),
                            list(PLANE_CATEGORIES))

    def geometry(self, images: torch.Tensor) -> List[Optional[FaceGeometry]]:
        """Per image, the part masks at the upscaled resolution with the iris circles and the
        chin (None where no face was found): what ``segment`` pools, for tests and figures."""
        _, answers = self._detect(images)
        out: List[Optional[FaceGeometry]] = []
        for header, marks, masks in answers:
            for j, found in enumerate(header["found"]):
                out.append(self.parts.geometry(marks[j], masks[j]) if found else None)
        return out

    def close(self) -> None:
        """Stop the worker (it also stops when the segmenter is collected or Python exits)."""
        self.client.close()

    def __enter__(self) -> "FacePartsSegmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
