"""The objects drawn over a scene: circles, squares, triangles, and houses with their parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from ..colors import COLOR_NAMES
from .canvas import _Grid, _jitter
from .labels import LABEL_ID, MATERIALS
from .surfaces import COLOR_PROTOTYPES, _material_pattern


@dataclass
class _Shape:
    name: str
    mask: np.ndarray  # whole object
    parts: np.ndarray  # internal part ids (house only; 0 elsewhere)
    shapes: np.ndarray  # internal ids of the part's own shape (roof: triangle, window: square)
    paint: np.ndarray  # RGB over the whole image; only read inside mask
    material: np.ndarray  # internal material ids over the object (0 = unlabelled surface)


def _shade(grid: _Grid, top: float, height: float) -> np.ndarray:
    """Soft top-lit shading, so objects are not perfectly flat."""
    t = np.clip((grid.y - top) / max(height, 1.0), 0, 1)
    return (1.06 - 0.16 * t)[..., None].astype(np.float32)


def _object_fill(rng: np.random.Generator, grid: _Grid) -> Tuple[np.ndarray, int]:
    """Paint of an object body: a flat jittered colour, or a material pattern (30%)."""
    if rng.random() < 0.3:
        material = str(rng.choice(MATERIALS))
        return _material_pattern(material, grid, rng), LABEL_ID[material]
    name = str(rng.choice(COLOR_NAMES))
    return np.broadcast_to(_jitter(rng, COLOR_PROTOTYPES[name], 10), grid.x.shape + (3,)), 0


def _triangle(grid: _Grid, cx: float, top: float, width: float, height: float) -> np.ndarray:
    depth = grid.y - top
    return (depth >= 0) & (depth <= height) & (np.abs(grid.x - cx) <= depth / height * width / 2)


def _draw_object(name: str, grid: _Grid, rng: np.random.Generator) -> _Shape:
    n = grid.size
    zeros = np.zeros(grid.x.shape, dtype=np.uint8)
    if name == "house":
        s = rng.uniform(0.2, 0.32) * n
        w, h = 1.24 * s, 1.55 * s
        cx, top = rng.uniform(w / 2, n - w / 2), rng.uniform(0, n - h)
        body_top = top + 0.55 * s
        roof = _triangle(grid, cx, top, w, 0.55 * s + 0.5)
        wall = (np.abs(grid.x - cx) <= s / 2) & (grid.y >= body_top) & (grid.y <= body_top + s)
        door = wall & (np.abs(grid.x - cx) <= 0.12 * s) & (grid.y >= body_top + 0.55 * s)
        window = np.zeros_like(wall)
        for side in (-1, 1):
            wx, wy = cx + side * 0.27 * s, body_top + 0.3 * s
            window |= (np.abs(grid.x - wx) <= 0.1 * s) & (np.abs(grid.y - wy) <= 0.1 * s)
        roof &= ~wall
        wall_only = wall & ~door & ~window
        parts, shapes, material = zeros.copy(), zeros.copy(), zeros.copy()
        for part_name, m in (("roof", roof), ("wall", wall_only), ("door", door), ("window", window)):
            parts[m] = LABEL_ID[part_name]
        shapes[roof], shapes[window] = LABEL_ID["triangle"], LABEL_ID["square"]
        if rng.random() < 0.5:
            paint, wall_material = _object_fill(rng, grid)
        else:
            paint, wall_material = _material_pattern("brick", grid, rng), LABEL_ID["brick"]
        paint = np.array(paint)  # writable copy: roof, door and windows are painted over it
        material[wall_only] = wall_material
        roof_color = COLOR_PROTOTYPES[str(rng.choice(["red", "brown", "grey", "black"]))]
        paint[roof] = _jitter(rng, roof_color, 10)
        if rng.random() < 0.3:
            paint[roof] = _material_pattern("metal", grid, rng)[roof]
            material[roof] = LABEL_ID["metal"]
        paint[door] = _material_pattern("wood", grid, rng)[door]
        material[door] = LABEL_ID["wood"]
        paint[window] = _jitter(rng, (170, 210, 240) if rng.random() < 0.5 else (240, 220, 100))
        mask = roof | wall
        return _Shape(name, mask, parts, shapes, paint * _shade(grid, top, h), material)

    size = rng.uniform(0.18, 0.4) * n
    cx, cy = rng.uniform(size / 2, n - size / 2, 2)
    if name == "circle":
        mask = (grid.x - cx) ** 2 + (grid.y - cy) ** 2 <= (size / 2) ** 2
    elif name == "square":
        mask = (np.abs(grid.x - cx) <= size / 2) & (np.abs(grid.y - cy) <= size / 2)
    else:  # triangle, pointing up
        mask = _triangle(grid, cx, cy - size / 2, size, size)
    paint, material_id = _object_fill(rng, grid)
    material = np.where(mask, material_id, 0).astype(np.uint8)
    return _Shape(name, mask, zeros, zeros, paint * _shade(grid, cy - size / 2, size), material)
