"""Pictures of interventions: image grids, and the removal curve written as an SVG file."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from PIL import Image

from ...figures.charts import removal_curve_svg


def grid(images: torch.Tensor, columns: int = 8, limit: int = 64, pad: int = 2,
         scale: Optional[int] = None) -> np.ndarray:
    """uint8 [B, 3, H, W] -> one uint8 [rows*H, columns*W, 3] picture (white gaps)."""
    images = images[:limit].permute(0, 2, 3, 1).numpy()
    n, h, w, _ = images.shape
    scale = scale or max(1, 128 // max(h, w))
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    columns = min(columns, n)
    rows = (n + columns - 1) // columns
    canvas = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = img
    return canvas


def save_grid(images: torch.Tensor, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(images, **kw)).save(path)
    return path


def save_removal_curve(curve: Dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(removal_curve_svg(curve))
    return path
