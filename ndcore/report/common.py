"""Small helpers shared by the report modules: safe file names, colors, argument checks."""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence

from ..capture.rotation import parse_derived
from ..errors import NdcoreError


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


def check_positive(name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise NdcoreError(f"{name} must be at least 1, got {value}")


def check_cutoff(cutoff: Optional[float]) -> None:
    if cutoff is not None and not (0.0 <= cutoff < 1.0):
        raise NdcoreError(f"cut-off must be in [0, 1), got {cutoff}")


def check_fdr(fdr: Optional[float]) -> None:
    if fdr is not None and not (0.0 < fdr < 1.0):
        raise NdcoreError(f"--fdr {fdr}: must lie strictly between 0 and 1")


def rotation_curves(summaries: Dict[str, Dict], categories: Sequence[str]):
    """For the chart of :func:`ndcore.figures.charts.rotation_curves`: each rotated layer's
    points (alpha, unique detectors, {category: detectors}) from its derived layers
    ``LAYER@rot<alpha>`` ({layer: LayerResult.summary()}), in the layers' order."""
    curves: Dict[str, List] = {}
    for name, s in summaries.items():
        parsed = parse_derived(name)
        if parsed is None:
            continue
        source, alpha = parsed
        curves.setdefault(source, []).append(
            (alpha, int(s["unique_detectors"]),
             {c: int(s["categories"].get(c, {}).get("detectors", 0)) for c in categories}))
    return list(curves.items())
