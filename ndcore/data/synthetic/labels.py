"""The synthetic set's label vocabulary: its categories, label names and internal label ids."""

from __future__ import annotations

from typing import Dict, Tuple

from ..colors import COLOR_NAMES

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
