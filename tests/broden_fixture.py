"""Writing tiny Broden-format datasets by hand, for tests."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image


def encode_plane(plane: np.ndarray) -> np.ndarray:
    """Label numbers -> RGB with number = R + 256 * G."""
    rgb = np.zeros(plane.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = plane % 256
    rgb[..., 1] = plane // 256
    return rgb


def write_broden(root: Path, categories: Sequence[str],
                 labels: Sequence[Tuple[int, str, Dict[str, float]]],
                 images: Sequence[Dict]) -> Path:
    """``labels``: (number, name, {category: coverage}); ``images``: dicts with ``image``
    (uint8 HxWx3), optional ``planes`` {cat: [int arrays]}, ``image_labels`` {cat: [numbers]},
    and optional ``label_size``."""
    root = Path(root)
    (root / "images" / "src").mkdir(parents=True, exist_ok=True)
    with open(root / "category.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "first", "last", "count", "frequency"])
        for c in categories:
            w.writerow([c, 1, 1, 1, 1])
    with open(root / "label.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        for number, name, cover in labels:
            w.writerow([number, name, ";".join(f"{c}(1)" for c in cover), 1, 1.0, ""])
    for cat in categories:
        with open(root / f"c_{cat}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["code", "number", "name", "frequency", "coverage"])
            code = 1
            for number, name, cover in labels:
                if cat in cover:
                    w.writerow([code, number, name, 1, cover[cat]])
                    code += 1
    rows: List[List[str]] = []
    for i, spec in enumerate(images):
        img = spec["image"]
        name = f"src/img{i:04d}"
        Image.fromarray(img).save(root / "images" / f"{name}.png")
        sh, sw = spec.get("label_size") or next(
            (p[0].shape for p in spec.get("planes", {}).values() if p), (img.shape[0], img.shape[1]))
        row = [f"{name}.png", "train", img.shape[0], img.shape[1], sh, sw]
        for cat in categories:
            cells = []
            for k, plane in enumerate(spec.get("planes", {}).get(cat, [])):
                fname = f"{name}_{cat}_{k + 1}.png"
                Image.fromarray(encode_plane(np.asarray(plane))).save(root / "images" / fname)
                cells.append(fname)
            cells += [str(n) for n in spec.get("image_labels", {}).get(cat, [])]
            row.append(";".join(cells))
        rows.append(row)
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "ih", "iw", "sh", "sw", *categories])
        w.writerows(rows)
    return root
