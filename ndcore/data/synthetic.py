"""A small, deterministic dataset written in the exact Broden on-disk format (METHOD.md section 4).

It exists so that ndcore can be demonstrated and tested without downloading Broden (~1 GB): every
feature of the format that the reader and the engine must handle is exercised here:

* six categories in a fixed order: ``object, part, scene, material, texture, color``;
* pixel categories (object, part, material, color) stored as PNG planes, several planes per
  category when labels stack (occluded objects, a house part and its shape);
* image-level categories (scene, texture) stored as label numbers in ``index.csv``; 24 scenes,
  each on ~4% of the images (a rare scene is what lets a unit's top-0.5% mask reach IoU 0.04 with
  a whole-image label), each with its own background layout, palette and scene-specific element;
* partial annotation: parts are annotated on ~half of the images, materials on ~60%, textures on
  ~40%, although houses, materials and textures are *drawn* on every kind of image (as in Broden,
  an unannotated image may well show the concept: that is why the union must skip it);
* labels belonging to two categories ("triangle" and "square" are objects and house parts).

``render_sample`` draws one image and its labels in memory (training code uses it directly);
``generate`` writes a whole dataset atomically; ``ensure_synthetic`` caches one per parameter set.
Drawing is vectorised numpy over coordinate grids: 1000 images take a few seconds.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .colors import COLOR_NAMES, color_name_of_rgb  # noqa: F401  (re-exported)

# Bump whenever the bytes written for a given set of parameters change: it is part of the cache
# key and of the completion stamp, so stale cached datasets are regenerated, never reused.
GENERATOR_VERSION = 2
STAMP_NAME = "ndcore_synthetic.json"
SOURCE = "synthetic"

CATEGORIES: Tuple[str, ...] = ("object", "part", "scene", "material", "texture", "color")
IMAGE_LEVEL_CATEGORIES = frozenset({"scene", "texture"})

OBJECTS = ("circle", "square", "triangle", "house")
PARTS = ("roof", "wall", "door", "window", "triangle", "square")
# 24 scenes, so that each is rare (~4% of images) as in Broden, where each of hundreds of scene
# classes covers a small fraction of the images. An image-level label covers whole images while a
# unit's mask is the top 0.5% of its activations, so a scene on a fraction f of the images can
# reach an IoU of at most about 0.005 / f: with 5 uniform scenes that is 0.025, under the 0.04 cut.
SCENES = (
    "beach", "ocean", "harbor", "coast", "desert", "canyon", "forest", "jungle", "meadow",
    "wheat field", "city", "street at night", "snowfield", "glacier", "mountain", "lake",
    "volcano", "savanna", "swamp", "cave", "starry night", "tundra", "highway", "coral reef",
)
MATERIALS = ("wood", "metal", "fabric", "brick")
TEXTURES = ("striped", "dotted", "checkered", "zigzagged", "grid", "wavy")
CATEGORY_LABELS: Dict[str, Tuple[str, ...]] = {
    "object": OBJECTS,
    "part": PARTS,
    "scene": SCENES,
    "material": MATERIALS,
    "texture": TEXTURES,
    "color": COLOR_NAMES,
}

# Internal label ids (1-based; 0 = no label) used in memory. A name shared by two categories has
# one id. The numbers written to disk are renumbered to the labels that actually occur.
VOCAB: Tuple[str, ...] = tuple(dict.fromkeys(n for c in CATEGORIES for n in CATEGORY_LABELS[c]))
LABEL_ID: Dict[str, int] = {name: i + 1 for i, name in enumerate(VOCAB)}

# Probability that a category is annotated on an image (texture: given that a texture is drawn).
PART_RATE, MATERIAL_RATE, TEXTURE_DRAWN_RATE, TEXTURE_LABEL_RATE = 0.5, 0.6, 0.5, 0.8
TRAIN_FRACTION = 0.9
JPEG_QUALITY = 90

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# Colour names
# --------------------------------------------------------------------------------------------

# Prototype RGB of each colour name, used to paint objects (and checked by the tests).
COLOR_PROTOTYPES: Dict[str, Tuple[int, int, int]] = {
    "black": (25, 25, 28),
    "blue": (40, 70, 205),
    "brown": (125, 75, 35),
    "grey": (128, 128, 130),
    "green": (40, 165, 60),
    "orange": (240, 140, 30),
    "pink": (240, 130, 180),
    "purple": (130, 50, 170),
    "red": (210, 35, 40),
    "white": (245, 245, 242),
    "yellow": (235, 210, 50),
}


_COLOR_IDS = np.array([LABEL_ID[name] for name in COLOR_NAMES], dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Grid:
    """Pixel-centre coordinates of an image, in pixels, plus the pattern scale (1 at 112 px)."""

    x: np.ndarray
    y: np.ndarray
    size: int
    k: float

    @classmethod
    def make(cls, size: int) -> "_Grid":
        c = np.arange(size, dtype=np.float32) + 0.5
        y, x = np.meshgrid(c, c, indexing="ij")
        return cls(x=x, y=y, size=size, k=size / 112.0)


def _rgb(color: Sequence[float]) -> np.ndarray:
    return np.asarray(color, dtype=np.float32)


def _vgrad(grid: _Grid, top: Sequence[float], bottom: Sequence[float]) -> np.ndarray:
    t = (grid.y / grid.size)[..., None]
    return (1 - t) * _rgb(top) + t * _rgb(bottom)


def _jitter(rng: np.random.Generator, color: Sequence[float], amount: float = 12) -> np.ndarray:
    return np.clip(_rgb(color) + rng.uniform(-amount, amount, 3), 0, 255)


def _put(img: np.ndarray, mask: np.ndarray, color) -> None:
    img[mask] = color if np.ndim(color) == 1 else color[mask]


def _uv(grid: _Grid) -> Tuple[np.ndarray, np.ndarray]:
    return grid.x / grid.size, grid.y / grid.size


def _sky(grid: _Grid, rng: np.random.Generator, top, bottom, amount: float = 10) -> np.ndarray:
    return _vgrad(grid, _jitter(rng, top, amount), _jitter(rng, bottom, amount))


def _noise(grid: _Grid, rng: np.random.Generator, cells: int = 6) -> np.ndarray:
    """Smooth value noise in [0, 1]: a ``cells x cells`` random lattice, smoothly interpolated."""
    lattice = rng.random((cells + 2, cells + 2)).astype(np.float32)
    fx, fy = grid.x / grid.size * cells, grid.y / grid.size * cells
    ix, iy = fx.astype(int), fy.astype(int)
    tx, ty = fx - ix, fy - iy
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    top = lattice[iy, ix] * (1 - tx) + lattice[iy, ix + 1] * tx
    bottom = lattice[iy + 1, ix] * (1 - tx) + lattice[iy + 1, ix + 1] * tx
    return top * (1 - ty) + bottom * ty


def _scatter(grid: _Grid, rng: np.random.Generator, cell: float, prob: float,
             radius: float) -> Tuple[np.ndarray, np.ndarray]:
    """Small dots, at most one per ``cell``-pixel cell (with probability ``prob``), at random
    places. Returns the dot mask and each pixel's cell number (to colour dots per cell)."""
    n = int(np.ceil(grid.size / cell)) + 1
    cx, cy = grid.x // cell, grid.y // cell
    cid = (cy * n + cx).astype(np.int64)
    ox = rng.uniform(radius, cell - radius, n * n)
    oy = rng.uniform(radius, cell - radius, n * n)
    on = rng.random(n * n) < prob
    dx, dy = grid.x - (cx * cell + ox[cid]), grid.y - (cy * cell + oy[cid])
    return on[cid] & (dx * dx + dy * dy <= radius * radius), cid


def _blend(img: np.ndarray, alpha: np.ndarray, color) -> np.ndarray:
    a = np.clip(alpha, 0, 1)[..., None].astype(np.float32)
    return img * (1 - a) + _rgb(color) * a


def _ridge(u: np.ndarray, rng: np.random.Generator, base: float, amp: float, freq: float):
    return base + amp * np.sin(2 * np.pi * freq * u + rng.uniform(0, 2 * np.pi))


# Each scene sets the whole background: a layout (horizon height, bands) with its own palette and
# a scene-specific element (wave crests, masts, strata, flowers, lit windows, stars, ...), so that
# a scene can be told from the background alone, anywhere in the image.

def _scene_beach(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (105, 170, 235), (185, 215, 240))
    horizon = rng.uniform(0.25, 0.38)
    shore = _ridge(u, rng, rng.uniform(0.5, 0.62), 0.03, rng.uniform(0.8, 2))
    water = _vgrad(grid, _jitter(rng, (35, 120, 185)), _jitter(rng, (70, 175, 200)))
    _put(img, (v > horizon) & (v <= shore), water)
    sand = _jitter(rng, (228, 208, 155), 8) * (0.93 + 0.1 * _noise(grid, rng, 10))[..., None]
    _put(img, v > shore, sand)
    foam = (v > shore - 0.035) & (v <= shore + 0.004)
    foam |= (v > horizon) & (v <= shore) & (np.abs(v - shore + 0.08 + 0.01 * np.sin(
        2 * np.pi * 5 * u)) < 0.008)
    _put(img, foam, _jitter(rng, (238, 242, 245), 5))
    return img


def _scene_ocean(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (120, 180, 235), (190, 220, 245))
    sea = v > rng.uniform(0.2, 0.35)
    water = _vgrad(grid, _jitter(rng, (30, 90, 165)), _jitter(rng, (10, 40, 115)))
    rows = 22 * v + 0.5 * np.sin(2 * np.pi * 3 * u + rng.uniform(0, 6))
    crest = ((rows % 1) < 0.16) & (np.sin(2 * np.pi * (7 * u + 1.7 * np.floor(rows))) > 0.2)
    water[crest] = _jitter(rng, (225, 235, 245), 8)
    _put(img, sea, water)
    return img


def _scene_harbor(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (140, 185, 230), (200, 220, 240))
    horizon = rng.uniform(0.5, 0.6)
    water = _vgrad(grid, _jitter(rng, (50, 95, 135)), _jitter(rng, (30, 65, 100)))
    water *= (0.92 + 0.1 * (np.sin(2 * np.pi * 40 * v) > 0.6))[..., None]
    _put(img, v > horizon, water)
    for _ in range(int(rng.integers(4, 8))):  # moored boats: a white hull and a tall mast
        x0, top = rng.uniform(0.05, 0.95), rng.uniform(0.08, 0.3)
        hull = (np.abs(u - x0) < 0.06) & (v > horizon - 0.035) & (v < horizon + 0.01)
        mast = (np.abs(u - x0) < 0.009) & (v > top) & (v <= horizon - 0.035)
        _put(img, mast, _jitter(rng, (90, 80, 70), 8))
        _put(img, hull, _jitter(rng, (235, 235, 230), 6))
    pier_top = rng.uniform(0.72, 0.8)
    pier = (v > pier_top) & (v < pier_top + 0.07)
    planks = 0.8 + 0.2 * ((grid.x % (5 * grid.k)) > grid.k)
    _put(img, pier, _jitter(rng, (120, 80, 45), 8) * planks[..., None])
    posts = (v >= pier_top + 0.07) & ((u * 8) % 1 < 0.12)
    _put(img, posts, _jitter(rng, (80, 55, 35), 6))
    return img


def _scene_coast(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """A coast at sunset: warm sky, dark sea, the sun's broken reflection."""
    u, v = _uv(grid)
    img = _sky(grid, rng, (110, 70, 140), (245, 150, 70))
    horizon = rng.uniform(0.42, 0.58)
    sx = rng.uniform(0.25, 0.75)
    d2 = ((u - sx) ** 2 + (v - horizon) ** 2) / 0.03
    img = _blend(img, 0.9 * np.exp(-d2) * (v < horizon), (255, 215, 120))
    sea = _vgrad(grid, _jitter(rng, (60, 40, 90)), _jitter(rng, (25, 20, 55)))
    glitter = (np.abs(u - sx) < 0.05 + 0.2 * (v - horizon)) & (np.sin(2 * np.pi * 45 * v) > 0.3)
    glitter &= np.sin(2 * np.pi * (11 * u + 3 * v)) > -0.4
    sea[glitter] = _jitter(rng, (250, 190, 90), 8)
    _put(img, v > horizon, sea)
    cliff = v > _ridge(u, rng, horizon - 0.05, 0.04, 0.6) + 0.6 * np.clip(u - 0.75, 0, 1)
    _put(img, cliff & (u > 0.78) & (v > horizon - 0.25), _jitter(rng, (35, 25, 35), 5))
    return img


def _scene_desert(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (150, 195, 235), (225, 230, 240))
    dunes = np.sin(2 * np.pi * rng.uniform(1, 2.5) * u + rng.uniform(0, 6))
    ground = v > rng.uniform(0.35, 0.5) + 0.06 * dunes
    ripple = 0.84 + 0.16 * (np.sin(2 * np.pi * (24 * v + 1.5 * dunes + 0.4 * u)) > 0)
    _put(img, ground, _jitter(rng, (228, 195, 115), 8) * ripple[..., None])
    return img


def _scene_canyon(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (100, 160, 230), (170, 205, 235))
    rim = _ridge(u, rng, rng.uniform(0.1, 0.22), 0.04, rng.uniform(1, 2))
    palette = np.stack([_jitter(rng, c, 10) for c in
                        ((185, 85, 45), (215, 135, 75), (150, 65, 40), (200, 110, 60))])
    band = np.floor((v + 0.03 * np.sin(2 * np.pi * 2 * u + rng.uniform(0, 6))) * 14)
    rock = palette[(band.astype(int) + int(rng.integers(0, 4))) % 4]
    gorge_x = rng.uniform(0.35, 0.65) + 0.04 * np.sin(2 * np.pi * 2.5 * v)
    gorge = np.abs(u - gorge_x) < 0.35 * np.sqrt(np.clip(v - 0.4, 0, 1))
    rock = rock * np.where(gorge, 0.62, 1.0)[..., None]
    _put(img, v > rim, rock)
    return img


def _scene_forest(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (160, 200, 230), (185, 215, 235))
    canopy = v > rng.uniform(0.08, 0.22) + 0.04 * np.sin(2 * np.pi * 4 * u + rng.uniform(0, 6))
    leaves = (0.8 + 0.25 * np.sin(2 * np.pi * (9 * u + 2 * v)) * np.sin(2 * np.pi * 7 * v))
    _put(img, canopy, _jitter(rng, (35, 100, 45)) * leaves[..., None])
    for _ in range(int(rng.integers(5, 9))):  # tree trunks
        x0, w = rng.uniform(0, 1), rng.uniform(0.025, 0.05)
        _put(img, canopy & (np.abs(u - x0) < w / 2) & (v > 0.35), _jitter(rng, (85, 55, 30), 8))
    _put(img, v > rng.uniform(0.8, 0.88), _jitter(rng, (75, 145, 55)))
    return img


def _scene_jungle(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _vgrad(grid, _jitter(rng, (20, 60, 25)), _jitter(rng, (15, 45, 20)))
    warp = 0.15 * _noise(grid, rng, 4)
    leaf = np.sin(2 * np.pi * (6 * u + warp * 3)) * np.sin(2 * np.pi * (5 * v - 2 * u + warp))
    _put(img, leaf > 0.35, _jitter(rng, (70, 160, 55), 10) * (0.8 + 0.3 * leaf)[..., None])
    for _ in range(int(rng.integers(5, 9))):  # hanging vines
        x0, length = rng.uniform(0, 1), rng.uniform(0.4, 1.0)
        vine = (np.abs(u - x0 - 0.025 * np.sin(2 * np.pi * 3 * v)) < 0.007) & (v < length)
        _put(img, vine, _jitter(rng, (120, 150, 50), 8))
    return img


def _scene_meadow(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (100, 165, 235), (175, 210, 240))
    ground = v > _ridge(u, rng, rng.uniform(0.32, 0.45), 0.025, 1.2)
    grass = _vgrad(grid, _jitter(rng, (120, 190, 70)), _jitter(rng, (60, 145, 45)))
    _put(img, ground, grass)
    flowers, cid = _scatter(grid, rng, 6 * grid.k, 0.6, 1.3 * grid.k)
    colors = np.stack([_rgb(c) for c in ((250, 250, 245), (245, 220, 60), (240, 150, 200))])
    pick = rng.integers(0, 3, int(cid.max()) + 1)
    _put(img, flowers & ground, colors[pick[cid]])
    return img


def _scene_wheat_field(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (150, 190, 230), (210, 225, 240))
    horizon = rng.uniform(0.28, 0.42)
    vx = rng.uniform(0.3, 0.7)
    angle = np.arctan2(u - vx, np.maximum(v - horizon, 1e-3))
    rows = np.sin(2 * np.pi * 7 * angle) > 0.2
    field = _jitter(rng, (225, 185, 80), 8) * np.where(rows, 1.0, 0.72)[..., None]
    _put(img, v > horizon, field)
    return img


def _scene_city(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (150, 185, 225), (200, 210, 225))
    edges = np.sort(rng.uniform(0, 1, int(rng.integers(4, 8))))
    building = np.searchsorted(edges, u)
    heights = rng.uniform(0.4, 0.85, len(edges) + 1)
    greys = rng.uniform(85, 140, len(edges) + 1)
    inside = v > 1 - heights[building]
    body = np.repeat(greys[building][..., None], 3, axis=-1) + _rgb((0, 3, 8))
    step_x, step_y = 8 * grid.k, 10 * grid.k
    windows = ((grid.x % step_x) > 0.3 * step_x) & ((grid.x % step_x) < 0.7 * step_x)
    windows &= ((grid.y % step_y) > 0.3 * step_y) & ((grid.y % step_y) < 0.7 * step_y)
    body[windows] = _jitter(rng, (70, 110, 150))  # glass reflecting the sky
    _put(img, inside, body)
    _put(img, v > rng.uniform(0.88, 0.93), _jitter(rng, (60, 60, 65), 6))
    return img


def _scene_street_at_night(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (10, 12, 40), (45, 40, 75), 6)
    edges = np.sort(rng.uniform(0, 1, int(rng.integers(3, 6))))
    building = np.searchsorted(edges, u)
    inside = v > 1 - rng.uniform(0.5, 0.9, len(edges) + 1)[building]
    body = np.broadcast_to(_jitter(rng, (30, 28, 38), 5), img.shape).copy()
    step_x, step_y = 9 * grid.k, 10 * grid.k
    cell = (grid.y // step_y) * 97 + (grid.x // step_x)
    lit = rng.random(int(cell.max()) + 1) < 0.45
    windows = ((grid.x % step_x) > 0.25 * step_x) & ((grid.x % step_x) < 0.7 * step_x)
    windows &= ((grid.y % step_y) > 0.3 * step_y) & ((grid.y % step_y) < 0.75 * step_y)
    body[windows & lit[cell.astype(int)]] = _jitter(rng, (245, 205, 95), 8)
    _put(img, inside, body)
    road = v > rng.uniform(0.8, 0.86)
    _put(img, road, _jitter(rng, (45, 45, 50), 4))
    line = road & (np.abs(v - 0.93) < 0.012) & ((u * 6) % 1 < 0.55)
    _put(img, line, _jitter(rng, (230, 190, 60), 6))
    for x0 in rng.uniform(0.1, 0.9, int(rng.integers(2, 4))):  # street lamps
        d2 = ((u - x0) ** 2 + ((v - 0.55) * 0.6) ** 2) / 0.004
        img = _blend(img, 0.85 * np.exp(-d2), (255, 170, 70))
    return img


def _scene_snowfield(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (150, 185, 230), (205, 220, 240))
    hills = 0.04 * np.sin(2 * np.pi * rng.uniform(0.7, 1.8) * u + rng.uniform(0, 6))
    snow = v > rng.uniform(0.3, 0.5) + hills
    shade = (1 - 0.06 * np.sin(2 * np.pi * (2 * v + u))).astype(np.float32)[..., None]
    _put(img, snow, _jitter(rng, (243, 245, 250), 5) * shade)
    tracks = snow & (np.abs(((u - 0.5) * 3 - (v - 1) * rng.uniform(-1, 1)) % 1 - 0.5) < 0.015)
    _put(img, tracks, _jitter(rng, (185, 195, 215), 5))
    return img


def _scene_glacier(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (175, 190, 205), (215, 220, 225))
    top = _ridge(u, rng, rng.uniform(0.15, 0.3), 0.05, rng.uniform(1.5, 3))
    ice = _vgrad(grid, _jitter(rng, (225, 240, 248)), _jitter(rng, (140, 205, 230)))
    warp = _noise(grid, rng, 5)
    crevasse = np.abs(np.sin(2 * np.pi * (5 * u + 2.5 * v + 0.8 * warp))) < 0.12
    ice[crevasse & (v > top + 0.08)] = _jitter(rng, (40, 95, 165), 8)
    _put(img, v > top, ice)
    return img


def _scene_mountain(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (90, 150, 225), (180, 210, 240))
    peaks = rng.uniform(0, 1, int(rng.integers(3, 5)))
    tops = rng.uniform(0.12, 0.35, len(peaks))
    ridge = np.min([t + 1.1 * np.abs(u - p) for p, t in zip(peaks, tops)], axis=0)
    rock = v > ridge
    shade = np.where(np.sin(2 * np.pi * 9 * (u + 0.5 * v)) > 0, 1.0, 0.82)[..., None]
    _put(img, rock, _jitter(rng, (115, 110, 120), 8) * shade)
    _put(img, rock & (v < ridge + 0.1), _jitter(rng, (240, 242, 248), 5))
    _put(img, v > _ridge(u, rng, rng.uniform(0.72, 0.82), 0.02, 2), _jitter(rng, (70, 130, 60)))
    return img


def _scene_lake(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (120, 175, 230), (190, 215, 240))
    shore = rng.uniform(0.45, 0.55)
    bumps = 0.04 + 0.05 * np.abs(np.sin(2 * np.pi * rng.uniform(6, 10) * u + rng.uniform(0, 6)))
    trees = (v > shore - bumps) & (v <= shore)
    tree_color = _jitter(rng, (30, 80, 40), 8)
    _put(img, trees, tree_color)
    mirror = (v > shore) & (v - shore < bumps)  # the tree line's reflection
    water = _vgrad(grid, _jitter(rng, (95, 150, 200)), _jitter(rng, (60, 110, 165)))
    water[mirror] = tree_color * 0.8 + _rgb((0, 10, 25))
    ripple = (np.sin(2 * np.pi * 50 * v) > 0.85) & (np.sin(2 * np.pi * 4 * u) > -0.3)
    water[ripple] += 30
    _put(img, v > shore, np.clip(water, 0, 255))
    return img


def _scene_volcano(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (50, 20, 20), (150, 55, 30), 8)
    cx = rng.uniform(0.35, 0.65)
    cone = v > rng.uniform(0.2, 0.3) + 1.2 * np.maximum(np.abs(u - cx) - 0.08, 0)
    cone |= v > rng.uniform(0.7, 0.8)
    rock = np.broadcast_to(_jitter(rng, (40, 32, 32), 5), img.shape).copy()
    warp = _noise(grid, rng, 4)
    lava = np.abs(np.sin(2 * np.pi * (3 * u + 2 * warp)) * np.sin(2 * np.pi * (4 * v + warp)))
    rock[lava < 0.09] = _jitter(rng, (245, 100, 25), 8)
    _put(img, cone, rock)
    return img


def _scene_savanna(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (235, 160, 80), (250, 215, 130))
    horizon = rng.uniform(0.6, 0.72)
    blades = 0.85 + 0.15 * np.sin(2 * np.pi * 60 * u + 10 * v)
    _put(img, v > horizon, _jitter(rng, (190, 155, 80), 8) * blades[..., None])
    dark = _jitter(rng, (40, 30, 25), 5)
    for _ in range(int(rng.integers(1, 4))):  # acacias: a trunk and a flat crown
        x0, w = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.18)
        crown_y = horizon - rng.uniform(0.15, 0.25)
        crown = ((u - x0) / w) ** 2 + ((v - crown_y) / 0.035) ** 2 <= 1
        trunk = (np.abs(u - x0) < 0.01) & (v > crown_y) & (v <= horizon + 0.01)
        _put(img, crown | trunk, dark)
    return img


def _scene_swamp(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (155, 165, 145), (125, 135, 115))
    horizon = rng.uniform(0.3, 0.42)
    water = np.broadcast_to(_jitter(rng, (75, 80, 50), 6), img.shape).copy()
    algae = _noise(grid, rng, 8) > 0.62
    water[algae] = _jitter(rng, (95, 130, 45), 8)
    _put(img, v > horizon, water)
    ncol = int(40 * grid.k)
    col = np.minimum((u * ncol).astype(int), ncol - 1)
    reed_top = np.where(rng.random(ncol) < 0.3, rng.uniform(horizon - 0.2, 0.8, ncol), 2.0)
    reeds = (v > reed_top[col]) & ((u * ncol) % 1 < 0.45)
    _put(img, reeds, _jitter(rng, (55, 65, 30), 6))
    return img


def _scene_cave(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    rough = 0.55 + 0.6 * _noise(grid, rng, 7) + 0.15 * _noise(grid, rng, 18)
    img = _jitter(rng, (85, 70, 58), 8) * rough[..., None]
    teeth = rng.uniform(5, 9)
    tooth = 1 - np.abs(2 * ((u * teeth + rng.uniform(0, 1)) % 1) - 1)
    hang = v < rng.uniform(0.1, 0.25) * tooth ** 2 + 0.05
    _put(img, hang, _jitter(rng, (40, 33, 30), 4))
    floor = v > 1 - rng.uniform(0.08, 0.18) * tooth ** 2 - 0.06
    _put(img, floor, _jitter(rng, (55, 45, 38), 4))
    return img


def _scene_starry_night(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (5, 8, 30), (30, 35, 80), 5)
    stars, _ = _scatter(grid, rng, 5 * grid.k, 0.45, 0.75 * grid.k)
    _put(img, stars, _jitter(rng, (245, 245, 235), 5))
    hills = v > _ridge(u, rng, rng.uniform(0.65, 0.8), 0.06, rng.uniform(0.7, 1.5))
    _put(img, hills, _jitter(rng, (12, 12, 15), 3))
    return img


def _scene_tundra(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Arctic tundra at night under an aurora."""
    u, v = _uv(grid)
    img = _sky(grid, rng, (8, 15, 35), (25, 40, 70), 5)
    center = _ridge(u, rng, rng.uniform(0.2, 0.35), 0.08, rng.uniform(0.8, 1.6))
    streaks = 0.55 + 0.45 * np.sin(2 * np.pi * 25 * u + 3 * v)
    glow = np.exp(-((v - center) / 0.07) ** 2) * streaks
    img = _blend(img, 0.9 * glow, _jitter(rng, (70, 225, 130), 10))
    ground = v > _ridge(u, rng, rng.uniform(0.65, 0.75), 0.02, 1)
    _put(img, ground, _vgrad(grid, _jitter(rng, (90, 110, 140)), _jitter(rng, (140, 160, 190))))
    return img


def _scene_highway(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _sky(grid, rng, (130, 180, 230), (200, 220, 240))
    horizon = rng.uniform(0.28, 0.4)
    _put(img, v > horizon, _jitter(rng, (110, 150, 70)))
    depth = np.clip((v - horizon) / (1 - horizon), 0, 1)
    vx = rng.uniform(0.4, 0.6)
    half = 0.03 + 0.6 * depth
    road = (v > horizon) & (np.abs(u - vx) < half)
    _put(img, road, _jitter(rng, (75, 75, 80), 5))
    lane = np.abs(np.abs(u - vx) - half / 3) < 0.006 + 0.02 * depth
    dashes = np.sin(2 * np.pi * 3 / np.maximum(depth, 0.05)) > 0
    edge = np.abs(np.abs(u - vx) - 0.93 * half) < 0.004 + 0.012 * depth
    _put(img, road & ((lane & dashes) | edge), _jitter(rng, (240, 240, 235), 5))
    return img


def _scene_coral_reef(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = _uv(grid)
    img = _vgrad(grid, _jitter(rng, (50, 175, 210)), _jitter(rng, (20, 80, 150)))
    rays = np.clip(np.sin(2 * np.pi * (5 * u + 1.5 * v + rng.uniform(0, 1))), 0, 1) * (1 - v)
    img = img + (45 * rays ** 2)[..., None]
    sand = v > _ridge(u, rng, rng.uniform(0.75, 0.85), 0.03, 1.5)
    _put(img, sand, _jitter(rng, (215, 205, 160), 8))
    coral = (_noise(grid, rng, 9) > 0.62) & (v > 0.55)
    colors = np.stack([_rgb(c) for c in ((230, 110, 100), (240, 160, 70), (180, 90, 170))])
    _put(img, coral, colors[(np.floor(u * 7).astype(int) + int(rng.integers(0, 3))) % 3])
    bubbles, _ = _scatter(grid, rng, 10 * grid.k, 0.25, 1.2 * grid.k)
    _put(img, bubbles & (v < 0.6), _jitter(rng, (200, 235, 245), 5))
    return img


_SCENE_DRAW = {
    "beach": _scene_beach,
    "ocean": _scene_ocean,
    "harbor": _scene_harbor,
    "coast": _scene_coast,
    "desert": _scene_desert,
    "canyon": _scene_canyon,
    "forest": _scene_forest,
    "jungle": _scene_jungle,
    "meadow": _scene_meadow,
    "wheat field": _scene_wheat_field,
    "city": _scene_city,
    "street at night": _scene_street_at_night,
    "snowfield": _scene_snowfield,
    "glacier": _scene_glacier,
    "mountain": _scene_mountain,
    "lake": _scene_lake,
    "volcano": _scene_volcano,
    "savanna": _scene_savanna,
    "swamp": _scene_swamp,
    "cave": _scene_cave,
    "starry night": _scene_starry_night,
    "tundra": _scene_tundra,
    "highway": _scene_highway,
    "coral reef": _scene_coral_reef,
}


def _texture_mask(name: str, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Pixels darkened by a texture overlay."""
    x, y, k = grid.x, grid.y, grid.k
    if name == "striped":
        period = rng.uniform(6, 10) * k
        angle = rng.choice([0.0, 0.25, 0.5, 0.75]) * np.pi
        t = x * np.cos(angle) + y * np.sin(angle)
        return (t % period) < period / 2
    if name == "dotted":
        period = rng.uniform(7, 11) * k
        dx, dy = x % period - period / 2, y % period - period / 2
        return dx * dx + dy * dy < (0.3 * period) ** 2
    if name == "checkered":
        cell = rng.uniform(7, 12) * k
        return ((x // cell + y // cell) % 2) == 0
    if name == "zigzagged":
        period, amp = rng.uniform(8, 12) * k, rng.uniform(3, 5) * k
        tooth = np.abs((x / period) % 1 - 0.5) * 2 * amp
        return ((y + tooth) % period) < period / 2.5
    if name == "grid":  # thin lines both ways
        period = rng.uniform(8, 12) * k
        return ((x % period) < 1.8 * k) | ((y % period) < 1.8 * k)
    # wavy: sinusoidal stripes
    period = rng.uniform(7, 10) * k
    return ((y + 3 * k * np.sin(2 * np.pi * x / (18 * k))) % period) < period / 2


def _material_pattern(name: str, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """A full-image RGB pattern of a material; callers keep it inside their mask."""
    x, y, k = grid.x, grid.y, grid.k
    if name == "wood":  # stripy brown grain
        period = rng.uniform(4, 7) * k
        wave = 3 * k * np.sin(2 * np.pi * x / (30 * k) + rng.uniform(0, 6))
        grain = 0.72 + 0.28 * (0.5 + 0.5 * np.sin(2 * np.pi * (y + wave) / period))
        return _jitter(rng, (150, 95, 50), 8) * grain[..., None]
    if name == "metal":  # brushed grey gradient
        angle = rng.uniform(0, np.pi)
        t = (x * np.cos(angle) + y * np.sin(angle)) / grid.size
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        grey = 105 + 115 * t + 6 * np.sin(2 * np.pi * y / (2.5 * k))
        return grey[..., None] + _rgb((0, 3, 9))
    if name == "fabric":  # fine crosshatch over a dyed base
        base = COLOR_PROTOTYPES[str(rng.choice(["blue", "red", "purple", "green"]))]
        p = 4 * k
        hatch = ((x + y) % p < k) | ((x - y) % p < k)
        return _jitter(rng, base, 10) * np.where(hatch, 0.6, 1.0)[..., None].astype(np.float32)
    # brick: red bricks, staggered rows, light mortar
    bh, bw = 6 * k, 12 * k
    row = y // bh
    mortar = ((y % bh) < 1.2 * k) | (((x + (row % 2) * bw / 2) % bw) < 1.2 * k)
    bricks = _jitter(rng, (165, 65, 45), 10) * (0.9 + 0.1 * np.sin(row * 2.3 + x // bw))[..., None]
    return np.where(mortar[..., None], _rgb((200, 198, 190)), bricks)


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


# --------------------------------------------------------------------------------------------
# One sample
# --------------------------------------------------------------------------------------------

@dataclass
class Sample:
    """One rendered image with all of its labels (every category, before partial annotation).

    ``planes[cat]`` is a ``(P, label_size, label_size)`` uint8 array of internal label ids
    (``VOCAB[id - 1]``; 0 = none), P >= 1, plane 0 on top; ``image_labels[cat]`` holds the
    internal ids of an image-level category (texture may be empty: no texture drawn).
    """

    image: np.ndarray
    planes: Dict[str, np.ndarray]
    image_labels: Dict[str, Tuple[int, ...]]

    def labels(self, category: str) -> List[str]:
        """Names of the labels of ``category`` present in this sample (sorted by vocabulary)."""
        if category in IMAGE_LEVEL_CATEGORIES:
            ids = set(self.image_labels[category])
        else:
            ids = set(np.unique(self.planes[category]).tolist()) - {0}
        names = set(CATEGORY_LABELS[category])
        return [VOCAB[i - 1] for i in sorted(ids) if VOCAB[i - 1] in names]

    @property
    def scene(self) -> str:
        return VOCAB[self.image_labels["scene"][0] - 1]


def _nearest_rows(image_size: int, label_size: int) -> np.ndarray:
    """Image rows/columns sampled by nearest downsampling at the label pixels' centres."""
    return np.minimum(((np.arange(label_size) + 0.5) * image_size / label_size).astype(int),
                      image_size - 1)


def _stack_planes(masks: Sequence[np.ndarray], ids: Sequence[int], shape) -> np.ndarray:
    """Planes of labels stacked by depth: plane k holds the k-th label from the top."""
    planes = np.zeros((max(len(masks), 1),) + shape, dtype=np.uint8)
    depth = np.zeros(shape, dtype=np.int64)
    for mask, label in zip(reversed(masks), reversed(ids)):  # topmost (drawn last) first
        rr, cc = np.nonzero(mask)
        planes[depth[rr, cc], rr, cc] = label
        depth[rr, cc] += 1
    used = max(int(depth.max()), 1)
    return planes[:used]


def render_sample(rng: np.random.Generator, image_size: int = 112, label_size: int = 56) -> Sample:
    """Draw one image (scene background, optional texture, optional material strip, 1-3 objects)."""
    grid = _Grid.make(image_size)
    scene = str(rng.choice(SCENES))
    img = _SCENE_DRAW[scene](grid, rng).astype(np.float32)

    texture: Tuple[int, ...] = ()
    if rng.random() < TEXTURE_DRAWN_RATE:
        name = str(rng.choice(TEXTURES))
        img[_texture_mask(name, grid, rng)] *= 0.68
        texture = (LABEL_ID[name],)

    material = np.zeros(grid.x.shape, dtype=np.uint8)
    if rng.random() < 0.45:  # a material strip along the bottom (a floor, a shelf)
        name = str(rng.choice(MATERIALS))
        strip = grid.y > image_size * (1 - rng.uniform(0.12, 0.24))
        img[strip] = _material_pattern(name, grid, rng)[strip]
        material[strip] = LABEL_ID[name]

    shapes = [_draw_object(str(rng.choice(OBJECTS)), grid, rng)
              for _ in range(int(rng.integers(1, 4)))]
    parts = np.zeros_like(material)
    part_shapes = np.zeros_like(material)
    for shape in shapes:  # later objects occlude earlier ones
        img[shape.mask] = shape.paint[shape.mask]
        material[shape.mask] = shape.material[shape.mask]
        parts[shape.mask] = shape.parts[shape.mask]
        part_shapes[shape.mask] = shape.shapes[shape.mask]

    img += rng.normal(0.0, 3.0, img.shape).astype(np.float32)  # sensor noise
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    rows = _nearest_rows(image_size, label_size)
    sub = np.ix_(rows, rows)
    shape2 = (label_size, label_size)
    objects = _stack_planes([s.mask[sub] for s in shapes], [LABEL_ID[s.name] for s in shapes],
                            shape2)
    part_planes = [parts[sub]] + ([part_shapes[sub]] if part_shapes[sub].any() else [])
    colors = _COLOR_IDS[color_name_of_rgb(image[sub])]
    planes = {
        "object": objects,
        "part": np.stack(part_planes),
        "material": material[sub][None],
        "color": colors[None],
    }
    return Sample(image, planes, {"scene": (LABEL_ID[scene],), "texture": texture})


# --------------------------------------------------------------------------------------------
# Writing a dataset
# --------------------------------------------------------------------------------------------

@dataclass
class _Record:
    name: str  # image path relative to images/, without extension
    split: str
    planes: Dict[str, np.ndarray]  # annotated pixel categories only
    image_labels: Dict[str, Tuple[int, ...]]  # annotated image-level categories only


def _params(size: int, seed: int, image_size: int, label_size: int) -> dict:
    return {
        "generator": "ndcore.data.synthetic",
        "version": GENERATOR_VERSION,
        "size": int(size),
        "seed": int(seed),
        "image_size": int(image_size),
        "label_size": int(label_size),
    }


def _read_stamp(path: Path) -> Optional[dict]:
    try:
        return json.loads((path / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def _annotate(sample: Sample, rng: np.random.Generator) -> Tuple[dict, dict]:
    """Keep the categories annotated on this image (partial annotation, METHOD.md section 2)."""
    keep_pixel = {"object": True, "color": True,
                  "part": rng.random() < PART_RATE, "material": rng.random() < MATERIAL_RATE}
    labelled_texture = rng.random() < TEXTURE_LABEL_RATE
    planes = {c: p for c, p in sample.planes.items() if keep_pixel[c]}
    image_labels = {"scene": sample.image_labels["scene"]}
    if sample.image_labels["texture"] and labelled_texture:
        image_labels["texture"] = sample.image_labels["texture"]
    return planes, image_labels


def _save_jpeg(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image, "RGB").save(path, format="JPEG", quality=JPEG_QUALITY)


def _save_label_png(plane: np.ndarray, path: Path) -> None:
    """Broden encoding: label number = R + 256 * G, B = 0."""
    rgb = np.zeros(plane.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = plane & 0xFF
    rgb[..., 1] = plane >> 8
    Image.fromarray(rgb, "RGB").save(path, format="PNG")


@dataclass
class _Stats:
    """Per (category, internal id): images where it occurs, and coverage in whole images."""

    frequency: Dict[Tuple[str, int], int]
    coverage: Dict[Tuple[str, int], float]
    annotated: Dict[str, int]  # images annotated per category
    images_with: Dict[int, int]  # images where the label occurs in any category

    @classmethod
    def of(cls, records: Sequence[_Record]) -> "_Stats":
        freq: Dict[Tuple[str, int], int] = {}
        cov: Dict[Tuple[str, int], float] = {}
        annotated = {c: 0 for c in CATEGORIES}
        images_with: Dict[int, int] = {}
        for rec in records:
            present = set()
            for cat, planes in rec.planes.items():
                annotated[cat] += 1
                pixels = planes[0].size
                for label in np.unique(planes).tolist():
                    if label:
                        area = int(np.any(planes == label, axis=0).sum())  # union over planes
                        freq[cat, label] = freq.get((cat, label), 0) + 1
                        cov[cat, label] = cov.get((cat, label), 0.0) + area / pixels
                        present.add(label)
            for cat, labels in rec.image_labels.items():
                annotated[cat] += 1
                for label in labels:
                    freq[cat, label] = freq.get((cat, label), 0) + 1
                    cov[cat, label] = cov.get((cat, label), 0.0) + 1.0
                    present.add(label)
            for label in present:
                images_with[label] = images_with.get(label, 0) + 1
        return cls(freq, cov, annotated, images_with)


def _numbering(stats: _Stats) -> Dict[int, int]:
    """Internal id -> global label number, over the labels that occur, in category order."""
    order: List[int] = []
    for cat in CATEGORIES:
        for name in CATEGORY_LABELS[cat]:
            label = LABEL_ID[name]
            if (cat, label) in stats.frequency and label not in order:
                order.append(label)
    return {label: i + 1 for i, label in enumerate(order)}


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _write_tables(root: Path, records: Sequence[_Record], stats: _Stats, number: Dict[int, int],
                  image_size: int, label_size: int) -> List[str]:
    """index.csv, category.csv, label.csv and c_<cat>.csv; returns the categories written."""
    categories = [c for c in CATEGORIES if any(k[0] == c for k in stats.frequency)]
    members = {c: sorted((number[l], l) for (cat, l) in stats.frequency if cat == c)
               for c in categories}

    index_rows = []
    for rec in records:
        row = [f"{rec.name}.jpg", rec.split, image_size, image_size, label_size, label_size]
        for cat in categories:
            if cat in rec.planes:
                n = len(rec.planes[cat])
                suffixes = [""] if n == 1 else [f"_{k}" for k in range(1, n + 1)]
                row.append(";".join(f"{rec.name}_{cat}{s}.png" for s in suffixes))
            elif cat in rec.image_labels:
                row.append(";".join(str(number[l]) for l in rec.image_labels[cat]))
            else:
                row.append("")
        index_rows.append(row)
    _write_csv(root / "index.csv", ["image", "split", "ih", "iw", "sh", "sw"] + categories,
               index_rows)

    _write_csv(root / "category.csv", ["name", "first", "last", "count", "frequency"],
               [[c, members[c][0][0], members[c][-1][0], len(members[c]), stats.annotated[c]]
                for c in categories])

    label_rows = []
    for label, num in sorted(number.items(), key=lambda kv: kv[1]):
        cats = [c for c in categories if (c, label) in stats.frequency]
        # Most frequent category first, like Broden's label.csv (ties: category order).
        cats.sort(key=lambda c: -stats.frequency[c, label])
        name = VOCAB[label - 1]
        label_rows.append([
            num, name, ";".join(f"{c}({stats.frequency[c, label]})" for c in cats),
            stats.images_with[label], _fmt(sum(stats.coverage[c, label] for c in cats)), name,
        ])
    _write_csv(root / "label.csv", ["number", "name", "category", "frequency", "coverage", "syns"],
               label_rows)

    for cat in categories:
        _write_csv(root / f"c_{cat}.csv", ["code", "number", "name", "frequency", "coverage"],
                   [[code, num, VOCAB[label - 1], stats.frequency[cat, label],
                     _fmt(stats.coverage[cat, label])]
                    for code, (num, label) in enumerate(members[cat], start=1)])
    return categories


_README = """ndcore synthetic dataset (Broden format)
=======================================

Generated by ndcore.data.synthetic (generator version {version}) with seed {seed}:
{size} images of {image_size}x{image_size} pixels, label planes of {label_size}x{label_size}.

Scenes (image-level; {n_scenes} classes, each on about 1/{n_scenes} of the images, so that each is
rare as in Broden) set the background; 1-3 objects (circle, square, triangle, house) are drawn
over it, with later objects occluding earlier ones (occluded objects go to a second object plane).
House parts (roof, wall, door, window; plus the shape of the roof, "triangle", and of the windows,
"square", in a second part plane) are annotated on about half of the images, materials on about
60%, textures (image-level) on about 40%; color names on every pixel of every image.

Layout: index.csv, category.csv, label.csv, c_<category>.csv, images/{source}/<name>.jpg and the
label planes images/{source}/<name>_<category>[_<k>].png (label number = R + 256 * G).
Categories: {categories}.
"""


def _write_dataset(tmp: Path, size: int, seed: int, image_size: int, label_size: int,
                   progress: Optional[ProgressFn]) -> None:
    rng = np.random.default_rng(seed)
    image_dir = tmp / "images" / SOURCE
    image_dir.mkdir(parents=True)
    records: List[_Record] = []
    for i in range(size):
        split = "train" if rng.random() < TRAIN_FRACTION else "val"
        sample = render_sample(rng, image_size, label_size)
        planes, image_labels = _annotate(sample, rng)
        name = f"{SOURCE}/{i:06d}"
        _save_jpeg(sample.image, tmp / "images" / f"{name}.jpg")
        records.append(_Record(name, split, planes, image_labels))
        if progress is not None:
            progress(i + 1, size)

    stats = _Stats.of(records)
    number = _numbering(stats)
    lut = np.zeros(len(VOCAB) + 1, dtype=np.uint16)
    for label, num in number.items():
        lut[label] = num
    for rec in records:
        for cat, planes in rec.planes.items():
            suffixes = [""] if len(planes) == 1 else [f"_{k}" for k in range(1, len(planes) + 1)]
            for plane, suffix in zip(planes, suffixes):
                _save_label_png(lut[plane], tmp / "images" / f"{rec.name}_{cat}{suffix}.png")

    categories = _write_tables(tmp, records, stats, number, image_size, label_size)
    (tmp / "README.txt").write_text(_README.format(
        version=GENERATOR_VERSION, n_scenes=len(SCENES), seed=seed, size=size, image_size=image_size,
        label_size=label_size, source=SOURCE, categories=", ".join(categories)))


def generate(out_dir, size: int = 1000, seed: int = 0, image_size: int = 112,
             label_size: int = 56, progress: Optional[ProgressFn] = None) -> Path:
    """Write a synthetic Broden-format dataset to ``out_dir`` and return its path.

    The dataset is written to a temporary sibling directory and moved into place at the end, so
    an interrupted run never leaves a half-written dataset. An existing non-empty ``out_dir`` is
    accepted only if it holds a complete generation with the same parameters (it is returned as
    is); otherwise ``FileExistsError``. ``progress(done, total)`` is called after each image.
    """
    if size < 1 or image_size < 8 or not 1 <= label_size <= image_size:
        raise ValueError(f"bad sizes: size={size}, image_size={image_size}, "
                         f"label_size={label_size}")
    out = Path(out_dir)
    params = _params(size, seed, image_size, label_size)
    if out.exists() and any(out.iterdir()):
        if _read_stamp(out) == params:
            return out
        raise FileExistsError(f"{out} exists and is not a synthetic dataset with these parameters")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write_dataset(tmp, size, seed, image_size, label_size, progress)
        (tmp / STAMP_NAME).write_text(json.dumps(params, indent=1) + "\n")  # written last
        try:
            os.replace(tmp, out)  # atomic; replaces an empty directory too
        except OSError:
            if _read_stamp(out) != params:  # not a concurrent identical generation
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_cache_dir() -> Path:
    """``$NDCORE_CACHE/synthetic`` or ``~/.cache/ndcore/synthetic``."""
    root = os.environ.get("NDCORE_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "ndcore"
    return base / "synthetic"


def ensure_synthetic(size: int = 1000, seed: int = 0, image_size: int = 112,
                     label_size: int = 56, cache_dir=None,
                     progress: Optional[ProgressFn] = None) -> Path:
    """Path of a cached synthetic dataset with these parameters, generated only when missing."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"v{GENERATOR_VERSION}_n{size}_s{seed}_i{image_size}_l{label_size}"
    if _read_stamp(path) == _params(size, seed, image_size, label_size):
        return path
    return generate(path, size, seed, image_size, label_size, progress)
