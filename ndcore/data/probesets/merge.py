"""``ndcore data merge``: several Broden-format probe sets as one, as Broden itself was built
from ADE20K, Pascal-Context, Pascal-Part, OpenSurfaces and DTD.

The merged set has the images of every set (their files copied as they are), the union of their
categories (in order of first appearance) and of their labels: labels of one name are one label,
which keeps every category it has in any set; each image keeps its planes, image-level labels
and annotated categories, renumbered. Image keys (an image's path under ``images/`` without
extension) that two sets share are refused before anything is written; ``prefix`` puts each
set's images under its directory's name instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ...errors import DatasetError
from ...progress import progress_bar
from ..broden import BrodenDataset, _read_csv
from .convert_common import ConvertReport
from .writer import ProbeSetWriter

SOURCE = "merged"


def _keys(sets: Sequence[BrodenDataset], prefix: bool) -> List[List[str]]:
    """Each set's image keys; a key in two sets (or two sets of one name, with ``prefix``) is
    a one-line error naming both."""
    if prefix:
        names: Dict[str, Path] = {}
        for ds in sets:
            if ds.root.name in names:
                raise DatasetError(f"{ds.root}: same directory name as {names[ds.root.name]}; "
                                   "--prefix needs sets of different names")
            names[ds.root.name] = ds.root
    owner: Dict[str, Path] = {}
    out = []
    for ds in sets:
        keys = []
        for row in ds.rows:
            key = Path(row["name"]).with_suffix("").as_posix()
            key = f"{ds.root.name}/{key}" if prefix else key
            if key in owner and owner[key] != ds.root:
                raise DatasetError(
                    f"{ds.root}: image {row['name']} is also in {owner[key]} (the same key "
                    "in two sets); --prefix puts each set's images under its directory name")
            owner[key] = ds.root
            keys.append(key)
        out.append(keys)
    return out


def merge_probe_sets(sources: Sequence[Path], out: Path, *, prefix: bool = False,
                     progress: bool = True) -> ConvertReport:
    """Write the merged probe set at ``out`` (resumable: images already written are kept)."""
    if len(sources) < 2:
        raise DatasetError("merge needs at least two probe sets")
    sets = [BrodenDataset(Path(s)) for s in sources]
    roots = [ds.root for ds in sets]
    twice = next((r for k, r in enumerate(roots) if r in roots[:k]), None)
    if twice is not None:
        raise DatasetError(f"{twice}: given twice to merge")
    if Path(out).resolve() in roots:
        raise DatasetError(f"{out}: is one of the probe sets being merged; choose a new one")
    keys = _keys(sets, prefix)
    categories: List[str] = []
    for ds in sets:
        categories += [c for c in ds.vocabulary.categories if c not in categories]
    with ProbeSetWriter(Path(out), categories, source=SOURCE,
                        meta={"sets": [str(r) for r in roots], "prefix": prefix}) as writer:
        # Every label of every set, in its categories, so that a label no image shows is kept too.
        numbers: List[np.ndarray] = []  # per set: its label number -> merged label number
        for ds in sets:
            vocab = ds.vocabulary
            table = np.zeros(vocab.num_labels, dtype=np.int64)
            for l in range(1, vocab.num_labels):
                for cat in vocab.label_categories[l]:
                    table[l] = writer.label(vocab.label_names[l], cat)
            numbers.append(table)
        done = writer.done()
        report = ConvertReport(resumed=sum(k in done for ks in keys for k in ks))
        with progress_bar(progress) as bar:
            task = bar.add_task("merging", total=sum(map(len, keys)) - report.resumed)
            for ds, set_keys, table in zip(sets, keys, numbers):
                splits = [r["split"] for r in _read_csv(ds.root / "index.csv", ["split"])]
                for i, key in enumerate(set_keys):
                    if key in done:
                        continue
                    planes, image_labels, size = _annotation(ds, i, table)
                    writer.add(key, ds.rows[i]["image"], planes, image_labels, split=splits[i],
                               label_size=size)
                    report.label_sizes.add(size)
                    report.written += 1
                    bar.advance(task)
        writer.finish()
    return report


def _annotation(ds: BrodenDataset, i: int, table: np.ndarray
                ) -> Tuple[Dict[str, np.ndarray], Dict[str, List[int]], Tuple[int, int]]:
    """Image i's planes per category and image-level labels per category, renumbered; an
    annotated category with neither gets an empty list (annotated, nothing there)."""
    item = ds.read(i, image=False)
    if item.error:
        raise DatasetError(item.error)
    cats = ds.vocabulary.categories
    planes: Dict[str, np.ndarray] = {}
    for c in sorted(set(item.plane_categories)):
        stack = item.planes[[j for j, pc in enumerate(item.plane_categories) if pc == c]]
        planes[cats[c]] = table[stack]
    image_labels: Dict[str, List[int]] = {}
    for number, c in zip(item.image_labels, item.image_label_categories):
        image_labels.setdefault(cats[c], []).append(int(table[number]))
    for c in np.flatnonzero(item.annotated):
        if cats[c] not in planes:
            image_labels.setdefault(cats[c], [])
    return planes, image_labels, tuple(item.label_size)
