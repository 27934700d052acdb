"""A small deterministic dataset in the exact Broden on-disk format (docs/method.md section 12).

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

Modules, from the bottom up: ``labels`` (the vocabulary), ``canvas`` (coordinate grids and
painting primitives), ``scenes`` (the backgrounds, drawn in ``scenes_water`` and ``scenes_land``),
``surfaces`` (colours, textures, materials), ``objects``, ``sample`` (one image and its labels),
``tables`` (the CSV tables), ``writer`` (one dataset directory) and ``cache`` (atomic placement
and the per-parameter cache).
"""

from __future__ import annotations

from ..colors import COLOR_NAMES, color_name_of_rgb
from .cache import STAMP_NAME, default_cache_dir, ensure_synthetic, generate
from .labels import CATEGORIES, LABEL_ID, OBJECTS, SCENES, TEXTURES, VOCAB
from .sample import render_sample
from .surfaces import COLOR_PROTOTYPES

__all__ = [
    "CATEGORIES",
    "COLOR_NAMES",
    "COLOR_PROTOTYPES",
    "LABEL_ID",
    "OBJECTS",
    "SCENES",
    "STAMP_NAME",
    "TEXTURES",
    "VOCAB",
    "color_name_of_rgb",
    "default_cache_dir",
    "ensure_synthetic",
    "generate",
    "render_sample",
]
