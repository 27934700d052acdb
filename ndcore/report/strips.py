"""Top-k image strips: per unit, its top images shown as image * (0.2 + 0.8 * mask).

Only the images some unit shows are read, each distinct image once, in a thread pool (PIL
decoding and the torch upsampling release the GIL). Strips depend on the saved top-k maps and
thresholds only, never on the cut-off or category set, so a manifest lets a report regenerated
with other labelling settings reuse them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..ops.reference import upsample_bilinear

log = logging.getLogger(__name__)

MANIFEST = "strips.json"
STRIP_VERSION = 1  # bump when the drawing changes, so old strips are redrawn
GAP = 2  # white pixels between thumbnails


@dataclass
class Strip:
    file: str  # relative to the report directory
    width: int
    height: int
    images: List[str]  # the shown images' file names (for alt text and tooltips)


def _file_signature(path: Path) -> List[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def load_thumbnail(path: str, height: int) -> np.ndarray:
    """uint8 [height, w, 3] keeping the aspect ratio; raises OSError / ValueError when the file
    cannot be read (the renderer counts those and reports them in one line)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        width = max(1, round(im.width * height / im.height))
        return np.asarray(im.resize((width, height), Image.BILINEAR))


def masked_thumbnail(thumb: Optional[np.ndarray], act_map: np.ndarray, threshold: float,
                     height: int) -> np.ndarray:
    """The thumbnail darkened outside the unit's mask: image * (0.2 + 0.8 * mask).

    The mask is the method's (bilinear upsampling, strict '>' against the threshold), taken
    directly at thumbnail resolution. A missing image is drawn as the mask alone, in grey.
    """
    size = thumb.shape[:2] if thumb is not None else (height, height)
    up = upsample_bilinear(torch.from_numpy(act_map.astype(np.float32))[None, None], size)[0, 0]
    weight = 0.2 + 0.8 * (up > threshold).numpy().astype(np.float32)
    base = thumb.astype(np.float32) if thumb is not None else np.full(size + (3,), 160.0, np.float32)
    return (base * weight[..., None]).round().clip(0, 255).astype(np.uint8)


def compose(tiles: Sequence[np.ndarray], height: int) -> np.ndarray:
    width = sum(t.shape[1] for t in tiles) + GAP * max(len(tiles) - 1, 0)
    canvas = np.full((height, max(width, 1), 3), 255, np.uint8)
    x = 0
    for tile in tiles:
        canvas[:, x:x + tile.shape[1]] = tile
        x += tile.shape[1] + GAP
    return canvas


class StripRenderer:
    """Draws the strips of one layer into ``report_dir / slug``."""

    def __init__(self, report_dir: Path, slug: str, image_paths: Sequence[Optional[str]], *,
                 k: int, height: int = 96, workers: int = 2, quality: int = 85,
                 thumbnails: Optional[Path] = None) -> None:
        self.report_dir = Path(report_dir)
        self.slug = slug
        self.out_dir = self.report_dir / slug
        self.image_paths = list(image_paths)
        self.thumbnails = Path(thumbnails) if thumbnails is not None else None
        self.k, self.height, self.workers, self.quality = k, height, max(1, workers), quality
        self.missing = 0  # probe images that could not be read (drawn as grey masks)
        self.failures: Dict[int, str] = {}  # probe index -> why it could not be read

    def _path_of(self, index: int) -> str:
        path = self.image_paths[index] if 0 <= index < len(self.image_paths) else None
        return path or ""

    def _load(self, index: int) -> Optional[np.ndarray]:
        """The image's thumbnail: from its file, else from the copy the run kept, else None."""
        path = self._path_of(index)
        tried = []
        if path:
            try:
                return load_thumbnail(path, self.height)
            except (OSError, ValueError) as e:
                tried.append(f"{path}: {e}")
        if self.thumbnails is not None:
            copy = self.thumbnails / f"{index}.jpg"
            if copy.is_file():
                try:
                    return load_thumbnail(str(copy), self.height)
                except (OSError, ValueError) as e:
                    tried.append(f"{copy}: {e}")
        self.failures[index] = "; ".join(tried) or \
            "no image file and no copy kept in the run"
        return None

    def _manifest_key(self, layer_dir: Path, thresholds: np.ndarray) -> Dict:
        files = [layer_dir / "topk.npz", layer_dir / "thresholds.npy"]
        # the masks' thresholds themselves too: under the best-IoU rule they depend on the
        # unit's label, which relabelling can change
        digest = hashlib.sha256(np.ascontiguousarray(thresholds, np.float32).tobytes())
        return {"version": STRIP_VERSION, "k": self.k, "height": self.height,
                "files": [_file_signature(f) if f.is_file() else None for f in files],
                "thresholds": digest.hexdigest()[:16], "images": len(self.image_paths)}

    def _cached(self, key: Dict) -> Optional[Dict[int, Strip]]:
        path = self.out_dir / MANIFEST
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if data.get("key") != key or data.get("missing"):
            return None  # other settings, or images that were unreadable then may be back now
        strips = {int(u): Strip(**s) for u, s in data["strips"].items()}
        if not all((self.report_dir / s.file).is_file() for s in strips.values()):
            return None
        self.missing = int(data.get("missing", 0))
        return strips

    def render(self, topk: Dict[str, np.ndarray], thresholds: np.ndarray, layer_dir: Path,
               progress, description: str = "strips") -> Dict[int, Strip]:
        """{unit: Strip} for every unit (loading images and drawing only when not cached)."""
        key = self._manifest_key(layer_dir, thresholds)
        cached = self._cached(key)
        if cached is not None:
            return cached
        self.out_dir.mkdir(parents=True, exist_ok=True)
        indices = topk["indices"][:, : self.k]
        maps = topk["maps"][:, : self.k]
        n_units = indices.shape[0]
        distinct = sorted({int(i) for i in np.unique(indices)})

        load_task = progress.add_task(f"{description}: images", total=len(distinct))
        thumbs: Dict[int, Optional[np.ndarray]] = {}

        def load(index: int) -> None:
            thumbs[index] = self._load(index)
            progress.advance(load_task)

        draw_task = progress.add_task(f"{description}: units", total=n_units)

        def draw(unit: int) -> Strip:
            tiles = [masked_thumbnail(thumbs[int(i)], maps[unit, j], float(thresholds[unit]),
                                      self.height)
                     for j, i in enumerate(indices[unit])]
            name = f"unit{unit:04d}.jpg"
            Image.fromarray(compose(tiles, self.height)).save(
                self.out_dir / name, quality=self.quality)
            progress.advance(draw_task)
            width = sum(t.shape[1] for t in tiles) + GAP * max(len(tiles) - 1, 0)
            return Strip(f"{self.slug}/{name}", width, self.height,
                         [Path(self._path_of(int(i))).name or f"#{int(i)}" for i in indices[unit]])

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(load, distinct))
            self.missing = sum(t is None for t in thumbs.values())
            strips = dict(enumerate(pool.map(draw, range(n_units))))
        manifest = {"key": key, "missing": self.missing,
                    "strips": {str(u): vars(s) for u, s in strips.items()}}
        (self.out_dir / MANIFEST).write_text(json.dumps(manifest))
        return strips
