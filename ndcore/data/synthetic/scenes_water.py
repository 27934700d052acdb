"""The backgrounds of the scenes by the water: beach, ocean, harbor, coast, lake, swamp, reef."""

from __future__ import annotations

import numpy as np

from .canvas import _Grid, _blend, _jitter, _noise, _put, _rgb, _ridge, _scatter, _sky, _uv, _vgrad


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
