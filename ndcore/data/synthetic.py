"""A small, deterministic dataset written in the exact Broden on-disk format (METHOD.md section 4).

It exists so that ndcore can be demonstrated and tested without downloading Broden (~1 GB): every
feature of the format that the reader and the engine must handle is exercised here:

* six categories in a fixed order: ``object, part, scene, material, texture, color``;
* pixel categories (object, part, material, color) stored as PNG planes, several planes per
  category when labels stack (occluded objects, a house part and its shape);
* image-level categories (scene, texture) stored as label numbers in ``index.csv``;
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

# Bump whenever the bytes written for a given set of parameters change: it is part of the cache
# key and of the completion stamp, so stale cached datasets are regenerated, never reused.
GENERATOR_VERSION = 1
STAMP_NAME = "ndcore_synthetic.json"
SOURCE = "synthetic"

CATEGORIES: Tuple[str, ...] = ("object", "part", "scene", "material", "texture", "color")
IMAGE_LEVEL_CATEGORIES = frozenset({"scene", "texture"})

OBJECTS = ("circle", "square", "triangle", "house")
PARTS = ("roof", "wall", "door", "window", "triangle", "square")
SCENES = ("desert", "ocean", "forest", "city", "snowfield")
MATERIALS = ("wood", "metal", "fabric", "brick")
TEXTURES = ("striped", "dotted", "checkered")
COLOR_NAMES = (
    "black", "blue", "brown", "grey", "green", "orange", "pink", "purple", "red", "white", "yellow",
)
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
PART_RATE, MATERIAL_RATE, TEXTURE_DRAWN_RATE, TEXTURE_LABEL_RATE = 0.5, 0.6, 0.55, 0.75
TRAIN_FRACTION = 0.9
JPEG_QUALITY = 90

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# Colour names
# --------------------------------------------------------------------------------------------

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


def _scene_desert(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    img = _vgrad(grid, _jitter(rng, (140, 195, 240)), _jitter(rng, (215, 230, 245)))
    u, v = grid.x / grid.size, grid.y / grid.size
    freq, phase = rng.uniform(1, 2.5), rng.uniform(0, 2 * np.pi)
    dunes = np.sin(2 * np.pi * freq * u + phase)
    ground = v > rng.uniform(0.42, 0.58) + 0.05 * dunes
    shade = (0.9 + 0.1 * np.sin(2 * np.pi * (3 * v + 0.5 * dunes)))[..., None]
    _put(img, ground, _jitter(rng, (225, 210, 125), 6) * shade)
    return img


def _scene_ocean(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    img = _vgrad(grid, _jitter(rng, (120, 180, 235)), _jitter(rng, (190, 220, 245)))
    u, v = grid.x / grid.size, grid.y / grid.size
    horizon = rng.uniform(0.3, 0.45)
    sea = v > horizon
    water = _vgrad(grid, _jitter(rng, (40, 100, 175)), _jitter(rng, (15, 45, 120)))
    waves = np.sin(2 * np.pi * (28 * v + 0.6 * np.sin(2 * np.pi * 3 * u + rng.uniform(0, 6))))
    water = water + 45 * (waves > 0.85)[..., None]
    _put(img, sea, water)
    return img


def _scene_forest(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = grid.x / grid.size, grid.y / grid.size
    img = _vgrad(grid, _jitter(rng, (160, 200, 230)), _jitter(rng, (185, 215, 235)))
    canopy = v > rng.uniform(0.08, 0.22) + 0.04 * np.sin(2 * np.pi * 4 * u + rng.uniform(0, 6))
    leaves = (0.8 + 0.25 * np.sin(2 * np.pi * (9 * u + 2 * v)) * np.sin(2 * np.pi * 7 * v))[..., None]
    _put(img, canopy, _jitter(rng, (35, 100, 45)) * leaves)
    for _ in range(int(rng.integers(4, 8))):  # tree trunks
        x0, w = rng.uniform(0, 1), rng.uniform(0.02, 0.05)
        _put(img, canopy & (np.abs(u - x0) < w / 2) & (v > 0.35), _jitter(rng, (85, 55, 30), 8))
    _put(img, v > rng.uniform(0.78, 0.88), _jitter(rng, (75, 145, 55)))
    return img


def _scene_city(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = grid.x / grid.size, grid.y / grid.size
    img = _vgrad(grid, _jitter(rng, (165, 180, 200)), _jitter(rng, (200, 205, 210)))
    edges = np.sort(rng.uniform(0, 1, int(rng.integers(4, 8))))
    building = np.searchsorted(edges, u)
    heights = rng.uniform(0.3, 0.8, len(edges) + 1)
    greys = rng.uniform(70, 125, len(edges) + 1)
    inside = v > 1 - heights[building]
    body = np.repeat(greys[building][..., None], 3, axis=-1) + _rgb((0, 2, 6))
    step_x, step_y = 9 * grid.k, 11 * grid.k
    windows = ((grid.x % step_x) > 0.3 * step_x) & ((grid.x % step_x) < 0.65 * step_x)
    windows &= ((grid.y % step_y) > 0.3 * step_y) & ((grid.y % step_y) < 0.7 * step_y)
    body[windows] = _jitter(rng, (220, 200, 110))
    _put(img, inside, body)
    _put(img, v > rng.uniform(0.86, 0.92), _jitter(rng, (55, 55, 60), 6))
    return img


def _scene_snowfield(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    u, v = grid.x / grid.size, grid.y / grid.size
    img = _vgrad(grid, _jitter(rng, (175, 200, 230)), _jitter(rng, (215, 225, 240)))
    hills = 0.04 * np.sin(2 * np.pi * rng.uniform(0.7, 1.8) * u + rng.uniform(0, 6))
    snow = v > rng.uniform(0.35, 0.55) + hills
    shade = (1 - 0.05 * np.sin(2 * np.pi * (2 * v + u))).astype(np.float32)[..., None]
    _put(img, snow, _jitter(rng, (240, 243, 250), 6) * shade)
    return img


_SCENE_DRAW = {
    "desert": _scene_desert,
    "ocean": _scene_ocean,
    "forest": _scene_forest,
    "city": _scene_city,
    "snowfield": _scene_snowfield,
}


def _texture_mask(name: str, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Pixels darkened by a texture overlay."""
    if name == "striped":
        period = rng.uniform(6, 10) * grid.k
        angle = rng.choice([0.0, 0.25, 0.5, 0.75]) * np.pi
        t = grid.x * np.cos(angle) + grid.y * np.sin(angle)
        return (t % period) < period / 2
    if name == "dotted":
        period = rng.uniform(7, 11) * grid.k
        dx, dy = grid.x % period - period / 2, grid.y % period - period / 2
        return dx * dx + dy * dy < (0.3 * period) ** 2
    cell = rng.uniform(7, 12) * grid.k  # checkered
    return ((grid.x // cell + grid.y // cell) % 2) == 0


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

Scenes (image-level) set the background; 1-3 objects (circle, square, triangle, house) are drawn
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
        version=GENERATOR_VERSION, seed=seed, size=size, image_size=image_size,
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
