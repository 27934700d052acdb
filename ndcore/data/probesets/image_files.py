"""The image files a probe set is made from: which files count as images, finding them under
a folder, and reading an image's size from its header. Shared by ``data segment``,
``images:DIR``, ``data convert`` and the probe-set writer, so all of them see the same files."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from PIL import Image

from ...errors import DatasetError

# Found in image folders, and copied into a probe set as they are (lower-cased suffix).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_images(root: Path, exclude: Optional[Path] = None) -> List[str]:
    """Relative POSIX paths of the JPEG and PNG files under ``root`` (recursive, sorted; hidden
    files and folders such as ``.ipynb_checkpoints``, and anything under ``exclude``,
    skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: image directory not found")
    skip = Path(exclude).resolve() if exclude is not None else None
    files = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.suffix.lower() not in IMAGE_SUFFIXES or any(p.startswith(".") for p in rel.parts):
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.is_file():
            files.append(rel.as_posix())
    if not files:
        raise DatasetError(f"{root}: no JPEG or PNG images (searched recursively)")
    return sorted(files)


def image_size(path: Path) -> Tuple[int, int]:
    """(height, width) from the image file's header (nothing is decoded)."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file not found") from None
    except Exception as e:  # PIL raises many types for corrupt files
        raise DatasetError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
