"""Broden's 11 colour names, and naming the colour of any RGB pixel (docs/method.md section 12:
"a pixel's color name can be derived from its RGB value"). Used by the synthetic dataset and by
the built-in ``colors`` segmenter of GAN dissection."""

from __future__ import annotations

import numpy as np

COLOR_NAMES = (
    "black", "blue", "brown", "grey", "green", "orange", "pink", "purple", "red", "white", "yellow",
)


def color_name_of_rgb(rgb: np.ndarray) -> np.ndarray:
    """Index into ``COLOR_NAMES`` of each RGB value (uint8 array ``[..., 3]``), by HSV rules.

    Rules rather than nearest prototypes: dark blue is "blue", not "black", and dark orange is
    "brown", which RGB distances get wrong.
    """
    c = np.asarray(rgb, dtype=np.float32) / 255.0
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    v = c.max(axis=-1)
    chroma = v - c.min(axis=-1)
    s = np.where(v > 0, chroma / np.maximum(v, 1e-6), 0.0)
    safe = np.maximum(chroma, 1e-6)
    hue = np.select(
        [v == r, v == g],
        [((g - b) / safe) % 6.0, (b - r) / safe + 2.0],
        (r - g) / safe + 4.0,
    ) * 60.0

    idx = {name: i for i, name in enumerate(COLOR_NAMES)}
    out = np.full(v.shape, idx["grey"], dtype=np.uint8)
    chromatic = (s >= 0.2) & (chroma >= 0.08)
    # Hue bands, then adjustments by value/saturation; later assignments win.
    bands = [
        ((hue < 15) | (hue >= 340), "red"),
        ((hue >= 15) & (hue < 42), "orange"),
        ((hue >= 42) & (hue < 70), "yellow"),
        ((hue >= 70) & (hue < 170), "green"),
        ((hue >= 170) & (hue < 260), "blue"),
        ((hue >= 260) & (hue < 295), "purple"),
        ((hue >= 295) & (hue < 340), "pink"),
    ]
    for band, name in bands:
        out[chromatic & band] = idx[name]
    warm = (hue < 42) | (hue >= 340)
    out[chromatic & warm & (v > 0.75) & (s < 0.5)] = idx["pink"]
    out[chromatic & (hue >= 12) & (hue < 42) & (v < 0.65)] = idx["brown"]
    out[chromatic & (hue >= 42) & (hue < 70) & (v < 0.5)] = idx["green"]  # olive
    out[chromatic & (hue >= 295) & (hue < 340) & (v < 0.6)] = idx["purple"]
    out[~chromatic & (v > 0.82)] = idx["white"]
    out[v < 0.2] = idx["black"]
    return out
