"""One rendered sample: an image with every label plane of every category, drawn in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..colors import COLOR_NAMES, color_name_of_rgb
from .canvas import _Grid
from .labels import (
    CATEGORY_LABELS,
    IMAGE_LEVEL_CATEGORIES,
    LABEL_ID,
    MATERIALS,
    OBJECTS,
    SCENES,
    TEXTURES,
    VOCAB,
)
from .objects import _draw_object
from .scenes import _SCENE_DRAW
from .surfaces import _material_pattern, _texture_mask

TEXTURE_DRAWN_RATE = 0.5  # probability that an image gets a texture overlay

_COLOR_IDS = np.array([LABEL_ID[name] for name in COLOR_NAMES], dtype=np.uint8)


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
