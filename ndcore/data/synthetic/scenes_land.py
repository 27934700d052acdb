"""The backgrounds of the scenes on land: wild, built and night landscapes."""

from __future__ import annotations

import numpy as np

from .canvas import _Grid, _blend, _jitter, _noise, _put, _rgb, _ridge, _scatter, _sky, _uv, _vgrad


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
