"""Pictures of interventions: image grids and the removal curve (plain SVG, no plotting lib)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from PIL import Image
from markupsafe import escape


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


def removal_curve_svg(curve: Dict, width: int = 420, height: int = 260) -> str:
    """The concept's share of pixels against the number of its top units ablated."""
    points = [(0, curve["before"])] + [(p["k"], p["fraction"]) for p in curve["points"]]
    left, right, top, bottom = 56, 16, 28, 40
    x_max = max(k for k, _ in points) or 1
    y_max = max(v for _, v in points) or 1.0

    def xy(k, v):
        return (left + (width - left - right) * k / x_max,
                top + (height - top - bottom) * (1 - v / y_max))

    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}"
                    for i, (x, y) in enumerate(xy(k, v) for k, v in points))
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"/>'
                   for x, y in (xy(k, v) for k, v in points))
    ticks = "".join(
        f'<text x="{xy(k, 0)[0]:.1f}" y="{height - bottom + 16}" text-anchor="middle">{k}</text>'
        for k, _ in points)
    title = escape(f"Removing {curve['concept']!r}: top units of {curve['layer']} ablated")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">'
        f'<text x="{left}" y="16" font-size="12">{title}</text>'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        f'stroke="#888"/><line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" '
        f'stroke="#888"/>{ticks}'
        f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">'
        f'units ablated</text>'
        f'<text x="12" y="{(top + height - bottom) / 2}" transform="rotate(-90 12 '
        f'{(top + height - bottom) / 2})" text-anchor="middle">share of pixels</text>'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{y_max:.3f}</text>'
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">0</text>'
        f'<path d="{path}" fill="none" stroke="#c0392b" stroke-width="2"/>'
        f'<g fill="#c0392b">{dots}</g></svg>')


def save_removal_curve(curve: Dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(removal_curve_svg(curve))
    return path
