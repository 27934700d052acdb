"""A run's image list (images.json): the image file of each probe index, written at the end of a
run so that reports and explanations can find the top images again ("" for images without a
file, such as a generator's samples)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

from ..data.probe import ProbeSource
from ..errors import OutputError

FILE = "images.json"


def write_image_list(run_dir: Path, source: ProbeSource) -> None:
    paths = [source.image_path(i) for i in range(len(source))]
    with open(Path(run_dir) / FILE, "w") as f:
        json.dump(paths, f)


def load_image_list(run_dir: Path) -> List[str]:
    """Probe index -> image path, as saved by the run (empty when the file is missing; "" for
    images that have no file, such as a generator's samples)."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return []
    try:
        paths = json.loads(path.read_text())
    except ValueError as e:
        raise OutputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(paths, list):
        raise OutputError(f"{path}: expected a list of image paths")
    return ["" if p is None else str(p) for p in paths]
