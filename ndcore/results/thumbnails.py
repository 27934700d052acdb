"""Small copies of the top-k images that have no file, kept inside the run.

A probe source need not have image files (a plugin's in-memory set, a generator). The report is
drawn later, from the run's files alone, so at the end of a run the images that some unit shows
and that ``image_path`` cannot name are saved as ``RUN/thumbnails/<probe index>.jpg`` (at most
``HEIGHT`` pixels high, as the run saw them). Images with a file are read from it, as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from ..errors import one_line
from ..data.validate import image_problem
from .images import load_image_list

log = logging.getLogger(__name__)

FOLDER = "thumbnails"
HEIGHT = 128  # report strips are 96 pixels high by default
QUALITY = 90


def thumbnail_path(run_dir, index: int) -> Path:
    return Path(run_dir) / FOLDER / f"{int(index)}.jpg"


def image_sources(run_dir) -> List[Optional[str]]:
    """images.json: the image file of each probe index, None for images without a file."""
    return [p if p not in ("", "None") else None for p in load_image_list(run_dir)]


def top_indices(result) -> List[int]:
    """The probe indices that some unit of some layer shows, ascending."""
    found = set()
    for lr in result.layers.values():
        if lr.topk is not None and lr.topk["indices"].size:
            found.update(int(i) for i in np.unique(lr.topk["indices"]) if i >= 0)
    return sorted(found)


def write_thumbnails(run_dir, source, result, kept: Optional[Dict[int, np.ndarray]] = None,
                     height: int = HEIGHT) -> Dict[str, int]:
    """Save the file-less top-k images of ``result`` (from ``kept``, images the run already
    holds, else from ``source``); returns counts.

    One warning line (not one per image) when some cannot be read; the report then draws
    those as grey masks and says how many.
    """
    path_of = getattr(source, "image_path", None) or (lambda index: None)
    load = getattr(source, "load_image", None) or (lambda index: source[index].image)
    wanted = [i for i in top_indices(result) if not path_of(i)]
    kept = kept or {}
    missing = [i for i in wanted if i not in kept]
    # Sources that make their images (a generator) may make many at once: far faster.
    many = getattr(source, "load_images", None)
    if many is not None and missing:
        kept = dict(kept, **dict(zip(missing, many(missing))))
    if kept:
        fallback = load
        load = lambda index: kept[index] if index in kept else fallback(index)  # noqa: E731
    counts = {"kept": 0, "failed": 0}
    if not wanted:
        return counts
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    first_failure = None
    for index in wanted:
        try:
            image = load(index)
            problem = image_problem(image)
            if problem:
                raise ValueError(problem)
            im = Image.fromarray(image)
            if im.height > height:
                im = im.resize((max(1, round(im.width * height / im.height)), height),
                               Image.BILINEAR)
            # Written in place, not through a temporary file: a run killed here is not
            # complete, and finishing it writes every thumbnail again. One thread: PIL's
            # per-image Python holds the GIL, and threads measured slower (2,453 64x64 images:
            # 0.33 s serially, 0.5-0.8 s with 2 or 4 threads).
            im.save(thumbnail_path(run_dir, index), quality=QUALITY)
            counts["kept"] += 1
        except Exception as e:  # a plugin's load_image may raise anything
            counts["failed"] += 1
            if first_failure is None:
                first_failure = f"image {index}: {one_line(e)}"
    if counts["failed"]:
        log.warning("%d of %d top images without a file could not be kept for the report "
                    "(first: %s); the report draws them as grey masks",
                    counts["failed"], len(wanted), first_failure)
    return counts
