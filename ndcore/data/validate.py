"""Checks of what plugins hand the engine: adapters, probe sources and probe items.

Every check returns a one-line problem (or None); the caller adds who is at fault (the plugin,
its distribution, the adapter) and, for items, the image index. :class:`ItemValidator` is the
engine's ``ItemCheck``: it runs in the DataLoader workers on every item, before its labels are
encoded, so a bad item never reaches the compiled op.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .probe import ProbeItem, ProbeSource, ProbeSourceInfo
from .vocabulary import Vocabulary


def _type(obj: Any) -> str:
    return type(obj).__name__


# -- what factories return -------------------------------------------------------------------

def check_vocabulary(vocab: Any) -> Optional[str]:
    if not isinstance(vocab, Vocabulary):
        return f"vocabulary is {_type(vocab)}, not a ndcore.plugin_api.Vocabulary"
    cats = vocab.categories
    if not cats or not all(isinstance(c, str) and c for c in cats):
        return f"vocabulary.categories is {cats!r}, not a non-empty list of names"
    if len(set(cats)) != len(cats):
        return f"vocabulary.categories {cats!r} has a name twice"
    n = len(vocab.label_names)
    if n < 2:
        return "vocabulary.label_names has no label (entry 0 is 'no label', labels start at 1)"
    if len(vocab.label_categories) != n:
        return (f"vocabulary has {n} label_names but {len(vocab.label_categories)} "
                "label_categories (one list per label number, [] for 0)")
    primary = np.asarray(vocab.primary)
    if primary.shape != (n,):
        return f"vocabulary.primary has shape {primary.shape}, expected ({n},)"
    known = set(cats)
    for label, label_cats in enumerate(vocab.label_categories):
        unknown = [c for c in label_cats if c not in known]
        if unknown:
            return (f"vocabulary: label {label} ({vocab.label_names[label]!r}) is in category "
                    f"{unknown[0]!r}, which is not in vocabulary.categories {cats}")
    if primary.size and (primary.min() < -1 or primary.max() >= len(cats)):
        return f"vocabulary.primary holds {int(primary.max())}; values are -1 or category indices"
    return None


def check_probe_source(source: Any) -> Optional[str]:
    """A dataset factory's result must be a ProbeSource with a vocabulary and an info."""
    if not isinstance(source, ProbeSource):
        missing = [a for a in ("vocabulary", "info", "__len__", "__getitem__")
                   if not hasattr(source, a)]
        if missing:
            return (f"returned {_type(source)}, not a ndcore.plugin_api.ProbeSource "
                    f"(it has no {', '.join(missing)})")
    problem = check_vocabulary(getattr(source, "vocabulary", None))
    if problem:
        return f"returned a source whose {problem}"
    info = getattr(source, "info", None)
    if not isinstance(info, ProbeSourceInfo):
        return f"returned a source whose info is {_type(info)}, not a ProbeSourceInfo"
    try:
        n = len(source)
    except Exception as e:
        return f"returned a source whose len() raised {type(e).__name__}: {e}"
    if n < 0:
        return f"returned a source of length {n}"
    return None


# -- items -----------------------------------------------------------------------------------

def image_problem(image: Any) -> Optional[str]:
    """None when ``image`` is a uint8 [H, W, 3] array."""
    if not isinstance(image, np.ndarray):
        return f"image is {_type(image)}, not a numpy array (uint8 [H, W, 3])"
    if image.dtype != np.uint8:
        return f"image has dtype {image.dtype}, not uint8 (RGB values 0-255, [H, W, 3])"
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        return f"image has shape {tuple(image.shape)}, not [H, W, 3] (RGB)"
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


class ItemValidator:
    """The engine's ``ItemCheck``: one line naming the source and the image, or None.

    Checks an item against the vocabulary the engine counts in: the image (uint8 [H, W, 3]);
    ``label_size``; ``planes`` (integers [P, sh, sw], every value a label number of the
    vocabulary, 0 = none); no label twice at one pixel among planes of one category (planes of
    unknown category count as one category); ``plane_categories`` (P values, -1/None or a
    category index); image-level labels (label numbers) and their categories; ``annotated``
    (one bool per category). Cheap: a few vectorised passes over the planes.
    """

    def __init__(self, vocabulary: Vocabulary, origin: str) -> None:
        self.origin = str(origin)
        self.num_labels = vocabulary.num_labels
        self.categories = list(vocabulary.categories)
        self.valid = np.array([bool(name) for name in vocabulary.label_names], dtype=bool)
        self.valid[0] = True  # 0 = no label

    def __call__(self, item: ProbeItem) -> Optional[str]:
        problem = self.problem(item)
        if problem is None:
            return None
        index = getattr(item, "index", "?")
        return f"{self.origin}: image {index}: {problem}"

    def _label_problem(self, value: int) -> Optional[str]:
        if 0 <= value < self.num_labels and self.valid[value]:
            return None
        return (f"label {value} is not in the vocabulary (label numbers are 1-"
                f"{self.num_labels - 1}, 0 = no label)")

    def _category_problem(self, what: str, c: Any) -> Optional[str]:
        if c is None or (_is_int(c) and -1 <= int(c) < len(self.categories)):
            return None
        return (f"{what} is {c!r}; it must be -1/None (unknown) or a category index "
                f"0-{len(self.categories) - 1} ({', '.join(self.categories)})")

    def problem(self, item: ProbeItem) -> Optional[str]:
        if not isinstance(item, ProbeItem):
            return f"the source returned {_type(item)}, not a ProbeItem"
        if item.image is not None:
            problem = image_problem(item.image)
            if problem:
                return problem
        size = item.label_size
        if not (isinstance(size, (tuple, list)) and len(size) == 2
                and all(_is_int(v) and v > 0 for v in size)):
            return f"label_size is {size!r}, not (height, width) of the label planes"
        size = (int(size[0]), int(size[1]))
        planes = item.planes
        n_planes = 0
        if planes is not None:
            if not isinstance(planes, np.ndarray):
                return f"planes is {_type(planes)}, not a numpy array (int [P, sh, sw])"
            if not (np.issubdtype(planes.dtype, np.integer) and planes.dtype != np.bool_):
                return f"planes has dtype {planes.dtype}, not an integer type"
            if planes.ndim != 3 or tuple(planes.shape[1:]) != size:
                return (f"planes has shape {tuple(planes.shape)}, expected [P, {size[0]}, "
                        f"{size[1]}] (label_size {size})")
            n_planes = planes.shape[0]
            if planes.size:
                problem = self._planes_problem(planes)
                if problem:
                    return problem
        cats = item.plane_categories
        if cats is not None:
            if len(cats) != n_planes:
                return f"plane_categories has {len(cats)} values for {n_planes} plane(s)"
            for j, c in enumerate(cats):
                problem = self._category_problem(f"plane_categories[{j}]", c)
                if problem:
                    return problem
        if n_planes > 1:
            problem = self._repeat_problem(planes, cats)
            if problem:
                return problem
        labels = item.image_labels if item.image_labels is not None else ()
        for k, label in enumerate(labels):
            if not _is_int(label):
                return f"image_labels[{k}] is {label!r}, not a label number"
            problem = self._label_problem(int(label))
            if problem:
                return f"image-level {problem}"
        label_cats = item.image_label_categories
        if label_cats is not None:
            if len(label_cats) != len(labels):
                return (f"image_label_categories has {len(label_cats)} values for "
                        f"{len(labels)} image-level label(s)")
            for k, c in enumerate(label_cats):
                problem = self._category_problem(f"image_label_categories[{k}]", c)
                if problem:
                    return problem
        if item.annotated is None:
            return (f"annotated is missing: give one bool per category "
                    f"({', '.join(self.categories)})")
        annotated = np.asarray(item.annotated)
        if annotated.shape != (len(self.categories),):
            return (f"annotated has shape {annotated.shape}, expected ({len(self.categories)},):"
                    f" one bool per category ({', '.join(self.categories)})")
        if annotated.dtype != np.bool_ and not (
                np.issubdtype(annotated.dtype, np.integer) and np.isin(annotated, (0, 1)).all()):
            return f"annotated has dtype {annotated.dtype} and values other than 0/1 (bools)"
        return None

    def _planes_problem(self, planes: np.ndarray) -> Optional[str]:
        low, high = int(planes.min()), int(planes.max())
        if low >= 0 and high < self.num_labels:
            bad = ~self.valid[planes]
            if not bad.any():
                return None
        else:
            bad = (planes < 0) | (planes >= self.num_labels)
            inside = ~bad
            bad[inside] = ~self.valid[planes[inside]]
        j, y, x = (int(v) for v in np.argwhere(bad)[0])
        return f"{self._label_problem(int(planes[j, y, x]))}: plane {j}, pixel (y={y}, x={x})"

    def _repeat_problem(self, planes: np.ndarray,
                        cats: Optional[Sequence[Any]]) -> Optional[str]:
        groups: dict = {}
        for j in range(planes.shape[0]):
            c = cats[j] if cats is not None else None
            key = -1 if c is None or int(c) < 0 else int(c)
            groups.setdefault(key, []).append(j)
        for key, members in groups.items():
            if len(members) < 2:
                continue
            stack = planes[members]
            if len(members) <= 6:  # pairwise comparisons are cheaper than a sort here
                same = None
                for i in range(1, len(members)):
                    for j in range(i):
                        hit = (stack[i] == stack[j]) & (stack[i] != 0)
                        if hit.any():
                            same = hit
                            break
                    if same is not None:
                        break
                if same is None:
                    continue
                y, x = (int(v) for v in np.argwhere(same)[0])
                label = int(stack[i, y, x])
            else:
                ordered = np.sort(stack, axis=0)
                same = (ordered[1:] == ordered[:-1]) & (ordered[1:] != 0)
                if not same.any():
                    continue
                _, y, x = (int(v) for v in np.argwhere(same)[0])
                label = int(ordered[1:][same][0])
            where = [members[i] for i in range(len(members)) if stack[i, y, x] == label][:2]
            what = "unknown category" if key < 0 else f"category {self.categories[key]!r}"
            return (f"label {label} appears twice at pixel (y={y}, x={x}), in planes "
                    f"{where[0]} and {where[1]} ({what}); a label may appear once per pixel "
                    "and category (plugin_api.remove_repeated_labels drops repeats)")
        return None
