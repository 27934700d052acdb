"""``ndcore data info``: what a Broden-format probe set holds, and which of its labels are too
small for a meaningful IoU.

Counts follow docs/method.md section 4: a label's pixels L_l(x) are those where any plane of x
holds it (once per pixel), an image-level label covers its image's sh x sw pixels.

Too rare, by either of two rules:

- **IoU bound.** A unit's mask covers about the share q (the top quantile, section 2) of the
  pixels of the images its union counts, X_l (images annotated in a category of the label,
  the ``paper`` convention of section 5): A = q * P_l pixels. With G pixels of the label,
  IoU = I / (A + G - I) <= min(A, G) / max(A, G), so a label with G <= cutoff * A can never
  make such a unit a detector (IoU > cutoff, section 7), however well it matches. (A label
  far larger than A, G >= A / cutoff, is bounded too; it is not "rare" and not flagged, but
  its bound is reported.)
- **Images.** A label seen in fewer than ``min_images`` images: whatever its IoU, it rests on
  those few images (a unit that fires on one object would "detect" it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List

import numpy as np

from ...errors import DatasetError
from ...progress import progress_bar
from ..broden import BrodenDataset
from ..probe import remove_repeated_labels


@dataclass
class CategoryInfo:
    name: str
    images: int  # images annotated in the category
    labels: int  # labels that belong to it (label.csv / c_<cat>.csv)
    labelled_pixels: int  # pixels of those images that carry a label of the category
    pixels: int  # all label-plane pixels (sh * sw) of those images

    @property
    def coverage(self) -> float:
        return self.labelled_pixels / self.pixels if self.pixels else 0.0


@dataclass
class LabelInfo:
    number: int
    name: str
    categories: List[str]
    pixels: int  # G(l), docs/method.md section 4
    images: int  # images where it occurs
    union_pixels: int  # P_l: pixels of the images annotated in one of its categories
    iou_bound: float  # min(A, G) / max(A, G) with A = quantile * P_l
    rare: str = ""  # why its IoU would mean little ("" if it would not)


@dataclass
class ProbeSetInfo:
    root: str
    images: int
    image_sizes: Dict[str, int]  # "HxW" -> images
    label_sizes: Dict[str, int]
    quantile: float
    cutoff: float
    min_images: int
    categories: List[CategoryInfo] = field(default_factory=list)
    labels: List[LabelInfo] = field(default_factory=list)

    @property
    def rare(self) -> List[LabelInfo]:
        return [l for l in self.labels if l.rare]

    def to_json(self) -> Dict:
        data = asdict(self)
        for cat, info in zip(data["categories"], self.categories):
            cat["coverage"] = info.coverage
        return data


def _size(h: int, w: int) -> str:
    return f"{h}x{w}"


def probe_set_info(root: Path, *, quantile: float, cutoff: float, min_images: int,
                   progress: bool = True) -> ProbeSetInfo:
    """Read every label plane of the probe set at ``root`` (not the images) and count."""
    if not 0 < quantile < 1:
        raise DatasetError(f"--quantile {quantile}: must lie strictly between 0 and 1")
    ds = BrodenDataset(Path(root))
    vocab = ds.vocabulary
    cats, n_labels = vocab.categories, vocab.num_labels
    pixels = np.zeros(n_labels, dtype=np.int64)
    images = np.zeros(n_labels, dtype=np.int64)
    labelled = np.zeros(len(cats), dtype=np.int64)  # per category
    patterns: Counter = Counter()  # annotated categories (a bool tuple) -> pixels
    image_sizes: Counter = Counter()
    label_sizes: Counter = Counter()
    with progress_bar(progress) as bar:
        task = bar.add_task("reading labels", total=len(ds))
        for i in range(len(ds)):
            item = ds.read(i, image=False)
            if item.error:
                raise DatasetError(item.error)
            sh, sw = item.label_size
            area = sh * sw
            image_sizes[_size(*ds.rows[i]["sizes"][:2])] += 1
            label_sizes[_size(sh, sw)] += 1
            patterns[tuple(bool(a) for a in item.annotated)] += area
            stack = item.planes
            # a label in planes of two categories still counts once per pixel (section 4)
            union = remove_repeated_labels(stack.copy()) if len(stack) > 1 else stack
            counts = np.bincount(union.ravel(), minlength=n_labels)
            counts[list(item.image_labels)] = area  # an image-level label: the whole image
            counts[0] = 0
            pixels += counts
            images += counts > 0
            whole = set(item.image_label_categories)  # categories with an image-level label
            for c in whole:
                labelled[c] += area
            plane_cats = np.asarray(item.plane_categories, dtype=np.int64)
            for c in set(item.plane_categories) - whole:
                labelled[c] += int((stack[plane_cats == c] != 0).any(axis=0).sum())
            bar.advance(task)

    member = np.array([[c in vocab.label_categories[l] for c in cats]
                       for l in range(n_labels)], dtype=bool)  # [L, C]
    keys = list(patterns)
    pattern = np.array(keys, dtype=bool).reshape(len(keys), len(cats))  # [K, C]
    area = np.array([patterns[k] for k in keys], dtype=np.int64)
    union_pixels = (member.astype(np.int64) @ pattern.T.astype(np.int64) > 0) @ area  # [L]
    category_pixels = pattern.T.astype(np.int64) @ area  # [C]
    category_images = Counter()
    for row in ds.rows:
        for c in np.flatnonzero(row["annotated"]):
            category_images[c] += 1

    info = ProbeSetInfo(str(ds.root), len(ds), dict(image_sizes), dict(label_sizes),
                        quantile, cutoff, min_images)
    for c, name in enumerate(cats):
        info.categories.append(CategoryInfo(name, category_images[c], int(member[:, c].sum()),
                                            int(labelled[c]), int(category_pixels[c])))
    for l in range(1, n_labels):
        if not vocab.label_names[l]:
            continue  # a number label.csv skips
        g, a = int(pixels[l]), quantile * int(union_pixels[l])
        bound = min(a, g) / max(a, g) if max(a, g) > 0 else 0.0
        label = LabelInfo(l, vocab.label_names[l], list(vocab.label_categories[l]), g,
                          int(images[l]), int(union_pixels[l]), bound)
        if g <= cutoff * a:  # too few pixels (a label far larger than A is another matter)
            label.rare = "too few pixels"
        elif images[l] < min_images:
            label.rare = f"in fewer than {min_images} images"
        info.labels.append(label)
    return info
