"""Reading the files of a segmentation dataset in another format (for the converters).

Index masks (a pixel's value indexes a list of names: Pascal VOC, Cityscapes, ADE20K's
scene-parsing release), COCO panoptic masks (RGB-encoded segment ids), and the checks every
converter makes on them. Every error is one line naming the file at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from ...errors import DatasetError
from .image_files import list_images


def find_images(root: Path) -> List[Path]:
    """The JPEG and PNG files under ``root`` (recursive, hidden ones skipped), sorted by their
    relative path."""
    return [root / rel for rel in list_images(root)]


def image_keys(root: Path, images: Sequence[Path], strip_suffix: str = "") -> Dict[str, Path]:
    """Each image's key: its path under ``root`` without extension (and without
    ``strip_suffix`` at the end of its stem, e.g. Cityscapes' ``_leftImg8bit``). Two images
    with one key (``a.jpg`` and ``a.png``) are an error."""
    keys: Dict[str, Path] = {}
    for path in images:
        key = path.relative_to(root).with_suffix("").as_posix()
        if strip_suffix and key.endswith(strip_suffix):
            key = key[: -len(strip_suffix)]
        if key in keys:
            raise DatasetError(f"{path}: same name as {keys[key]} (up to the extension); "
                               "which is the image of the mask?")
        keys[key] = path
    return keys


def read_labels_txt(path: Path) -> List[str]:
    """Names by value: line k names the pixels of value k; line 0 (background) and empty lines
    name no label (their pixels stay unlabelled)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: labels file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot be read ({e})") from None
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline names nothing
    names = [""] + [line.strip() for line in lines[1:]]
    if not any(names):
        raise DatasetError(f"{path}: no label names (line 1 is the background, names follow "
                           "one a line)")
    return names


def _decode(path: Path, what: str) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
        return im
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found") from None
    except Exception as e:
        raise DatasetError(f"{path}: cannot decode {what} ({type(e).__name__}: {e})") from None


def read_index_mask(path: Path) -> np.ndarray:
    """int32 [H, W] pixel values of an index mask: palette indices of a palette PNG (not its
    colours: VOC's masks are palette PNGs), grey values of an 8- or 16-bit grey PNG."""
    with _decode(path, "mask") as im:
        if im.mode not in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L"):
            raise DatasetError(
                f"{path}: mask has mode {im.mode} ({len(im.getbands())} channels); expected a "
                "palette or grey PNG whose pixel values index labels.txt")
        return np.asarray(im).astype(np.int32)


def read_panoptic_ids(path: Path) -> np.ndarray:
    """int64 [H, W] segment ids of a COCO panoptic PNG: R + 256 * G + 256^2 * B (0 = void)."""
    with _decode(path, "panoptic mask") as im:
        if im.mode != "RGB":
            raise DatasetError(f"{path}: panoptic mask has mode {im.mode}; COCO's are RGB "
                               "(segment id = R + 256*G + 256^2*B)")
        rgb = np.asarray(im).astype(np.int64)
    return rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)


def check_mask_size(mask: Path, mask_size: Tuple[int, int], image: Path,
                    size: Tuple[int, int]) -> None:
    """A mask may have its own resolution (Broden's sh, sw: labels keep it), but its shape
    must be the image's: an aspect ratio that differs by more than a pixel of rounding means
    the mask belongs to another image (or one of the two was rotated)."""
    (mh, mw), (ih, iw) = mask_size, size
    if (mh, mw) == (ih, iw):
        return
    if abs(mh * iw - mw * ih) > max(ih, iw):  # |mh - mw * ih/iw| > 1 pixel, in integers
        raise DatasetError(f"{mask}: mask is {mh}x{mw} but its image {image} is {ih}x{iw} "
                           "(another aspect ratio)")
