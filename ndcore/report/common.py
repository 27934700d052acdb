"""Small helpers shared by the report modules: safe file names, the run's image list, colors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import NdcoreError, OutputError

# Fixed colors for Broden's categories (the paper's figure uses one color per category);
# other category names cycle through FALLBACK_COLORS.
CATEGORY_COLORS = {
    "object": "#4e79a7", "scene": "#f28e2b", "part": "#59a14f", "material": "#b07aa1",
    "texture": "#e15759", "color": "#edc948",
}
FALLBACK_COLORS = ("#76b7b2", "#ff9da7", "#9c755f", "#bab0ac", "#8cd17d", "#86bcb6")


def category_colors(categories: Sequence[str]) -> Dict[str, str]:
    colors, extra = {}, 0
    for cat in categories:
        if cat in CATEGORY_COLORS:
            colors[cat] = CATEGORY_COLORS[cat]
        else:
            colors[cat] = FALLBACK_COLORS[extra % len(FALLBACK_COLORS)]
            extra += 1
    return colors


def layer_slugs(layers: Sequence[str]) -> Dict[str, str]:
    """A distinct, file-system-safe name per layer (layer names come from user models).

    Only [A-Za-z0-9_-] survive, so a name can never hold '/', '..' or markup; collisions
    (e.g. 'a.b' and 'a_b') get a numeric suffix, and 'index' is reserved for the index page.
    """
    slugs: Dict[str, str] = {}
    used = {"index", "static"}
    for name in layers:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:80] or "layer"
        slug, n = base, 2
        while slug.lower() in used:
            slug, n = f"{base}-{n}", n + 1
        used.add(slug.lower())
        slugs[name] = slug
    return slugs


def load_image_list(run_dir: Path) -> List[str]:
    """Probe index -> image path, as saved by the run (empty when the file is missing; "" for
    images that have no file, such as a generator's samples)."""
    path = Path(run_dir) / "images.json"
    if not path.is_file():
        return []
    try:
        paths = json.loads(path.read_text())
    except ValueError as e:
        raise OutputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(paths, list):
        raise OutputError(f"{path}: expected a list of image paths")
    return ["" if p is None else str(p) for p in paths]


def check_positive(name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise NdcoreError(f"{name} must be at least 1, got {value}")


def check_cutoff(cutoff: Optional[float]) -> None:
    if cutoff is not None and not (0.0 <= cutoff < 1.0):
        raise NdcoreError(f"cut-off must be in [0, 1), got {cutoff}")
