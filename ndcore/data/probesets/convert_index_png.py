"""``ndcore data convert index-png``: index masks (Pascal VOC, Cityscapes, ADE20K's
scene-parsing release) to a Broden-format probe set.

Each image has a mask PNG at the same relative path under the masks directory (same stem,
``.png``); a mask pixel's value v indexes ``labels.txt`` (line 0 = background = no label);
``ignore`` values are unlabelled too. The label plane keeps the mask's own resolution (Broden's
sh, sw), which may differ from the image's as long as the aspect ratio is the same, unless
:class:`~.convert_common.Sizing` gives sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from ...errors import DatasetError
from ...progress import progress_bar
from .convert_common import ConvertReport, Sizing
from .image_files import image_size
from .source_masks import (check_mask_size, find_images, image_keys, read_index_mask,
                           read_labels_txt)
from .writer import ProbeSetWriter


def _lookup(values: np.ndarray, names: Sequence[str], numbers: Dict[int, int],
            writer: ProbeSetWriter, category: str) -> np.ndarray:
    """A table value -> global label number for the values present (0 for unnamed ones)."""
    table = np.zeros(len(names), dtype=np.int32)
    for v in values.tolist():
        if v not in numbers:
            numbers[v] = writer.label(names[v], category) if names[v] else 0
        table[v] = numbers[v]
    return table


def label_plane(mask: np.ndarray, mask_path: Path, names: Sequence[str], labels_path: Path,
                ignore: Sequence[int], numbers: Dict[int, int], writer: ProbeSetWriter,
                category: str) -> np.ndarray:
    """The mask's label plane (global label numbers), or a one-line error naming the mask."""
    keep = ~np.isin(mask, np.asarray(list(ignore), dtype=np.int64)) if ignore else None
    values = np.unique(mask if keep is None else mask[keep])
    bad = values[(values < 0) | (values >= len(names))]
    if bad.size:
        v = int(bad[0])
        y, x = (int(i) for i in np.argwhere(mask == v)[0])
        raise DatasetError(
            f"{mask_path}: pixel value {v} at (y={y}, x={x}) is beyond {labels_path} (values "
            f"0-{len(names) - 1}); --ignore {v} leaves such pixels unlabelled")
    plane = _lookup(values, names, numbers, writer, category)[np.clip(mask, 0, len(names) - 1)]
    if keep is not None:
        plane[~keep] = 0
    return plane


def convert_index_png(images: Path, masks: Path, labels: Path, out: Path, *,
                      category: str = "object", ignore: Sequence[int] = (),
                      image_suffix: str = "", mask_suffix: str = "",
                      skip_missing: bool = False, sizing: Sizing = Sizing(),
                      source: str = "index-png", progress: bool = True) -> ConvertReport:
    """Write the probe set at ``out`` (resumable: images already written are kept).

    ``image_suffix`` is cut from an image's stem and ``mask_suffix`` added to find its mask
    (Cityscapes: ``_leftImg8bit`` and ``_gtFine_labelIds``). An image without a mask is an
    error, or left out with ``skip_missing`` (VOC's JPEGImages has more images than masks).
    ``sizing`` resizes images and label planes; ``source`` names the folder of the images
    under ``out/images/``.
    """
    images, masks, labels = Path(images), Path(masks), Path(labels)
    names = read_labels_txt(labels)
    if not masks.is_dir():
        raise DatasetError(f"{masks}: mask directory not found")
    keys = image_keys(images, find_images(images), image_suffix)
    # what decides the label numbers and planes: continuing a set needs the same
    meta = {"format": "index-png", "labels": names, "ignore": sorted(set(ignore)),
            **sizing.meta()}
    with ProbeSetWriter(Path(out), [category], source=source, meta=meta,
                        image_format=sizing.image_format) as writer:
        done = writer.done()
        report = ConvertReport(resumed=sum(key in done for key in keys))
        numbers: Dict[int, int] = {}  # table value -> global label number, asked once per value
        with progress_bar(progress) as bar:
            task = bar.add_task("converting", total=len(keys) - report.resumed)
            for key, image in keys.items():
                if key in done:
                    continue
                mask_path = masks / f"{key}{mask_suffix}.png"
                if mask_path.is_file():
                    mask = read_index_mask(mask_path)
                    check_mask_size(mask_path, mask.shape, image, image_size(image))
                    plane = label_plane(mask, mask_path, names, labels, ignore, numbers,
                                        writer, category)
                    planes = sizing.planes({category: plane})
                    writer.add(key, sizing.image_of(image), planes)
                    report.label_sizes.add(planes[category].shape)
                    report.written += 1
                elif skip_missing:
                    report.skipped += 1
                else:
                    raise DatasetError(f"{mask_path}: mask not found for image {image} "
                                       "(--skip-missing converts only the images that have one)")
                bar.advance(task)
        if not report.written + report.resumed:
            raise DatasetError(f"{masks}: no image of {images} has a mask here")
        writer.finish()
    return report
