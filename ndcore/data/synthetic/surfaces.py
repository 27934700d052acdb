"""The surfaces painted over scenes and objects: colour prototypes, texture overlays, materials."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from .canvas import _Grid, _jitter, _rgb

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
