"""The drawing canvas: pixel coordinate grids and the numpy primitives that paint every picture."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np


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
