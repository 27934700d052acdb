"""Options of a dissection run, checked once before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from ..errors import NdcoreError
from ..results import DEFAULT_CUTOFF, UNIONS
from .forward import PRECISIONS

# Options that change what a run computes: a run directory is resumed (or refused) by these.
# Labelling options (union, cutoff) and speed settings (batch size, workers, device, caching,
# checkpoint interval) are left out: they do not change thresholds or counts.
RESULT_OPTIONS = ("quantile", "quantile_on", "thresholds", "categories", "topk", "max_images",
                  "precision", "threshold", "layouts")


@dataclass
class DissectOptions:
    union: str = "paper"
    quantile: float = 0.005
    cutoff: float = DEFAULT_CUTOFF
    categories: Optional[List[str]] = None
    thresholds: Dict[str, str] = field(default_factory=dict)  # layer -> .npy file
    quantile_on: str = "raw"  # "raw" (layer maps) or "upsampled" (label-resolution maps)
    batch_size: int = 32
    device: str = "cpu"
    workers: int = 0
    topk: int = 10
    max_images: Optional[int] = None
    second_pass: str = "auto"  # "cache" (keep candidate maps), "forward", or "auto"
    cache_dir: Optional[str] = None  # scratch folder for kept maps (default: the run's folder)
    cache_memory_mb: Optional[float] = None  # kept maps held in memory first (default: per device)
    checkpoint_every: float = 120.0  # seconds between checkpoints; 0 = never
    overwrite: bool = False  # replace a different run in the output directory
    precision: str = "fp32"  # forward pass under autocast: fp32, bf16 or fp16
    threshold: str = "quantile"  # "quantile" (NetDissect) or "best-iou" (GAN Dissection)
    layouts: Dict[str, str] = field(default_factory=dict)  # layer -> layout (--layout)
    compile: bool = False  # torch.compile the model (speed only)
    channels_last: Optional[bool] = None  # channels-last memory format; None: on CUDA only

    def validate(self) -> None:
        if self.union not in UNIONS:
            raise NdcoreError(f"--union {self.union!r}: choose one of {', '.join(UNIONS)}")
        if not 0.0 < self.quantile < 1.0:
            raise NdcoreError(f"--quantile {self.quantile}: must lie strictly between 0 and 1")
        if self.quantile_on not in ("raw", "upsampled"):
            raise NdcoreError("--quantile-on must be 'raw' or 'upsampled'")
        if self.second_pass not in ("auto", "cache", "forward"):
            raise NdcoreError("--second-pass must be auto, cache or forward")
        if self.batch_size < 1:
            raise NdcoreError(f"--batch-size {self.batch_size}: must be >= 1")
        if self.topk < 1:
            raise NdcoreError(f"--topk {self.topk}: must be >= 1")
        if self.max_images is not None and self.max_images < 1:
            raise NdcoreError(f"--max-images {self.max_images}: must be >= 1")
        if self.workers < 0:
            raise NdcoreError(f"--workers {self.workers}: must be >= 0")
        if self.checkpoint_every < 0:
            raise NdcoreError("--checkpoint-every must be >= 0 seconds (0 = never)")
        if self.threshold not in ("quantile", "best-iou"):
            raise NdcoreError(f"--threshold {self.threshold!r}: choose quantile or best-iou")
        if self.threshold == "best-iou" and self.second_pass == "cache":
            raise NdcoreError("--threshold best-iou counts every activation in pass 2, so it "
                              "runs the model again: --second-pass cache cannot serve it")
        if self.threshold == "best-iou" and self.thresholds:
            raise NdcoreError("--threshold best-iou searches each unit's thresholds; it cannot "
                              "be combined with given --thresholds")
        if self.precision not in PRECISIONS:
            raise NdcoreError(f"--precision {self.precision!r}: choose one of "
                              f"{', '.join(PRECISIONS)}")
        from ..capture import parse_layout

        for layer, spec in self.layouts.items():
            try:
                parse_layout(spec)
            except NdcoreError as e:
                raise NdcoreError(f"--layout {layer}={spec}: {e}") from None
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise NdcoreError("--device cuda: no CUDA GPU is available to torch")
