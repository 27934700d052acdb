"""``ndcore data convert coco-panoptic``: COCO's panoptic format to a Broden-format probe set.

The panoptic JSON lists, per image, the PNG of its segments (segment id = R + 256*G + 256^2*B,
0 = void) and their ``segments_info`` (id, category_id, iscrowd); ``categories`` say whether a
category is a thing (``isthing``: person, car) or stuff (sky, grass, wall). Things become labels
of category ``object``. Stuff becomes ``stuff_category``: ``object`` by default, as Broden files
ADE20K's sky, wall, floor and road (so that results read like Broden's), or e.g. ``material``
to keep stuff apart. A crowd segment (``iscrowd``) is labelled like any other: its pixels are
the category's. Panoptic segments never overlap, so each category has one plane per image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from ...errors import DatasetError
from ...progress import progress_bar
from .convert_common import ConvertReport, Sizing
from .image_files import image_size
from .source_masks import check_mask_size, read_panoptic_ids
from .writer import ProbeSetWriter

THING_CATEGORY = "object"


def _load_json(path: Path) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: panoptic JSON not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: holds a {type(data).__name__}, not COCO's panoptic object")
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: no {key!r} list (is this a COCO panoptic JSON?)")
    return data


_KINDS = {int: "integer", str: "string", list: "list"}


def _field(entry: Any, key: str, kind: type | Tuple[type, ...], where: str) -> Any:
    """``entry[key]`` if it is of ``kind``, else a one-line error (a malformed entry)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    value = entry.get(key) if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = " or ".join(_KINDS[k] for k in kinds)
        raise DatasetError(f"{where}: no {what} {key!r}" + (
            f" (it is {value!r})" if value is not None else ""))
    return value


def read_categories(data: Dict, path: Path) -> Dict[int, Tuple[str, bool]]:
    """category id -> (name, isthing)."""
    categories: Dict[int, Tuple[str, bool]] = {}
    for k, entry in enumerate(data["categories"]):
        where = f"{path}: categories[{k}]"
        cid = _field(entry, "id", int, where)
        name = _field(entry, "name", str, where).strip()
        if not name:
            raise DatasetError(f"{where}: empty 'name'")
        if cid in categories:
            raise DatasetError(f"{where}: category id {cid} is listed twice")
        categories[cid] = (name, bool(entry.get("isthing", 0)))
    return categories


def read_annotations(data: Dict, path: Path, categories: Dict[int, Tuple[str, bool]]
                     ) -> List[Tuple[str, str, Dict[int, int]]]:
    """(image file name, mask file name, {segment id: category id}) per annotation."""
    files = {}
    for k, entry in enumerate(data.get("images") or []):
        where = f"{path}: images[{k}]"
        files[_field(entry, "id", (int, str), where)] = _field(entry, "file_name", str, where)
    out = []
    for k, entry in enumerate(data["annotations"]):
        mask = _field(entry, "file_name", str, f"{path}: annotations[{k}]")
        where = f"{path}: annotations[{k}] ({mask})"
        image_id = entry.get("image_id")
        image = files.get(image_id) if files else None
        if image is None:
            if files:
                raise DatasetError(f"{where}: image_id {image_id!r} is not in 'images'")
            image = str(Path(mask).with_suffix(".jpg"))  # COCO's naming, without 'images'
        segments: Dict[int, int] = {}
        for s, segment in enumerate(_field(entry, "segments_info", list, where)):
            at = f"{where}: segments_info[{s}]"
            sid, cid = _field(segment, "id", int, at), _field(segment, "category_id", int, at)
            if sid <= 0 or sid >= 256 ** 3:
                raise DatasetError(f"{at}: segment id {sid} is not an RGB code (1 to 256^3-1)")
            if cid not in categories:
                raise DatasetError(f"{at}: category_id {cid} is not in 'categories'")
            if sid in segments:
                raise DatasetError(f"{at}: segment id {sid} is listed twice")
            segments[sid] = cid
        out.append((image, mask, segments))
    return out


def convert_coco_panoptic(images: Path, panoptic_json: Path, panoptic_masks: Path, out: Path,
                          *, stuff_category: str = THING_CATEGORY,
                          sizing: Sizing = Sizing(), source: str = "coco-panoptic",
                          progress: bool = True) -> ConvertReport:
    """Write the probe set at ``out`` (resumable: images already written are kept);
    ``sizing`` resizes images and label planes; ``source`` names the folder of the images
    under ``out/images/``."""
    images, panoptic_json, masks = Path(images), Path(panoptic_json), Path(panoptic_masks)
    data = _load_json(panoptic_json)
    categories = read_categories(data, panoptic_json)
    annotations = read_annotations(data, panoptic_json, categories)
    if not masks.is_dir():
        raise DatasetError(f"{masks}: panoptic mask directory not found")
    cats = [THING_CATEGORY] + ([stuff_category] if stuff_category != THING_CATEGORY else [])
    keys: Dict[str, str] = {}
    for image, mask, _ in annotations:
        key = Path(image).with_suffix("").as_posix()
        if key in keys:
            raise DatasetError(f"{panoptic_json}: image {image} has two annotations "
                               f"({keys[key]} and {mask})")
        keys[key] = mask
    with ProbeSetWriter(Path(out), cats, source=source,
                        meta={"format": "coco-panoptic", **sizing.meta()},
                        image_format=sizing.image_format) as writer:
        done = writer.done()
        report = ConvertReport(resumed=sum(key in done for key in keys))
        numbers: Dict[int, int] = {}  # COCO category id -> global label number
        with progress_bar(progress) as bar:
            task = bar.add_task("converting", total=len(annotations) - report.resumed)
            for image, mask, segments in annotations:
                key = Path(image).with_suffix("").as_posix()
                if key in done:
                    continue
                image_path, mask_path = images / image, masks / mask
                ids = read_panoptic_ids(mask_path)
                check_mask_size(mask_path, ids.shape, image_path, image_size(image_path))
                planes = _planes(ids, segments, categories, numbers, writer, cats, mask_path,
                                 panoptic_json)
                planes = sizing.planes(planes)
                writer.add(key, sizing.image_of(image_path), planes)
                report.label_sizes.add(next(iter(planes.values())).shape)
                report.written += 1
                bar.advance(task)
        writer.finish()
    return report


def _planes(ids: np.ndarray, segments: Dict[int, int], categories: Dict[int, Tuple[str, bool]],
            numbers: Dict[int, int], writer: ProbeSetWriter, cats: List[str], mask: Path,
            json_path: Path) -> Dict[str, np.ndarray]:
    """One plane per category (things, stuff): each segment's pixels get its label number."""
    unique, inverse = np.unique(ids, return_inverse=True)
    per_cat = {c: np.zeros(len(unique), dtype=np.int32) for c in cats}
    for u, sid in enumerate(unique.tolist()):
        if sid == 0:
            continue  # void
        cid = segments.get(sid)
        if cid is None:
            y, x = (int(v) for v in np.argwhere(ids == sid)[0])
            raise DatasetError(
                f"{mask}: segment id {sid} (RGB {sid & 255},{sid >> 8 & 255},{sid >> 16}) at "
                f"(y={y}, x={x}) is not in its segments_info in {json_path}")
        name, isthing = categories[cid]
        cat = THING_CATEGORY if isthing else cats[-1]
        if cid not in numbers:
            numbers[cid] = writer.label(name, cat)
        per_cat[cat][u] = numbers[cid]
    inverse = inverse.reshape(ids.shape)
    return {c: table[inverse] for c, table in per_cat.items()}
