"""What the engine reads of any probe source: ``--max-images``, ``--categories`` and
``--resize`` applied, before batching, and the source's own errors named.

A source may honour :class:`~ndcore.plugins.DatasetRequest`'s hints itself (the Broden reader
reads only the wanted categories); it never has to. The view checks what is left to do:

- ``max_images``: the first N probe indices (a source shorter than N is used whole);
- ``categories``: the vocabulary restricted to them (label numbers unchanged); planes of other
  categories dropped, labels of no wanted category removed from planes of unknown category,
  image-level labels likewise, ``annotated`` and the category indices renumbered;
- ``resize``: each image resized to (H, W) as the model's preprocessing would (bilinear,
  antialiased), so that images of mixed sizes batch. Label planes keep the source's size.

Without ``resize``, every image must have the size of image 0: a mixed-size source fails on
its first odd image, in one line that says to give ``--resize``, whatever the batch size.

Anything a source's ``read`` raises becomes the item's error, one line naming the adapter, its
plugin and the image index (``NDCORE_DEBUG=1`` / ``--traceback`` appends the traceback).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import DatasetError, NdcoreError, debug_enabled, one_line, suggest, traceback_text
from .probe import ProbeItem, ProbeSource, ProbeSourceInfo
from .validate import image_problem


def resize_image(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [h, w, 3]: bilinear, antialiased, as ``Preprocess`` resizes."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear",
                                        align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def source_name(source) -> str:
    """How a source passed in as an object is named in messages."""
    info = getattr(source, "info", None)
    spec = getattr(info, "spec", None)
    return f"probe source {type(source).__name__}" + (f" ({spec})" if spec else "")


class SourceView(ProbeSource):
    """A probe source as a run uses it (see the module docstring)."""

    def __init__(self, source: ProbeSource, *, max_images: Optional[int] = None,
                 categories: Optional[Sequence[str]] = None,
                 resize: Optional[Tuple[int, int]] = None, origin=None) -> None:
        self.source = source
        self.origin = str(origin) if origin is not None else source_name(source)
        # ndcore's own sources write their own one-line errors; a plugin's are prefixed.
        self.prefix_errors = not getattr(origin, "builtin", origin is None)
        n = len(source)
        self.size = min(n, max_images) if max_images else n
        full = source.vocabulary
        self.vocabulary = full
        self._cat_map: Optional[np.ndarray] = None  # old category index -> new, -1 dropped
        if categories:
            unknown = [c for c in categories if c not in full.categories]
            if unknown:
                raise DatasetError(
                    f"{self.origin}: --categories {unknown[0]!r} is not a category of this "
                    f"dataset{suggest(unknown[0], full.categories)}; its categories are "
                    f"{', '.join(full.categories)}")
            if set(categories) != set(full.categories):
                self.vocabulary = full.restricted(categories)
                keep = self.vocabulary.categories
                self._cat_map = np.array([keep.index(c) if c in keep else -1
                                          for c in full.categories], dtype=np.int64)
                # labels that keep a category (the others are removed where their plane's
                # category is unknown)
                self._label_kept = np.array([bool(c) for c in self.vocabulary.label_categories],
                                            dtype=bool)
                self._label_kept[0] = True
                self._full_categories = len(full.categories)
        self.resize = tuple(int(v) for v in resize) if resize else None
        self._expected: Optional[Tuple[int, int]] = None  # image 0's size (no resize)
        info = source.info
        self.info = ProbeSourceInfo(spec=info.spec, kind=info.kind, root=info.root,
                                    size=self.size, extra=dict(info.extra or {}))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> ProbeItem:
        return self.read(index)

    def image_path(self, index: int) -> Optional[str]:
        path = self.source.image_path(index) if hasattr(self.source, "image_path") else None
        return str(path) if path else None

    # -- reading -------------------------------------------------------------------------------

    def _error(self, index: int, message: str, exc: Optional[BaseException] = None,
               own: bool = False) -> ProbeItem:
        """An item that carries one error line (``own``: the source's message, as it is)."""
        if own and not self.prefix_errors:
            text = message
        else:
            text = f"{self.origin}: image {index}: {message}"
        if exc is not None and debug_enabled():
            text += "\n" + traceback_text(exc)
        return ProbeItem(index=index, error=text)

    def _read(self, index: int, image: bool, labels: bool):
        reader = getattr(self.source, "read", None)
        if reader is not None:
            return reader(index, image=image, labels=labels)
        return self.source[index]

    def read(self, index: int, image: bool = True, labels: bool = True) -> ProbeItem:
        if not 0 <= index < self.size:
            raise IndexError(f"probe index {index} out of range (0-{self.size - 1})")
        try:
            item = self._read(index, image, labels)
        except NdcoreError as e:
            return self._error(index, str(e), e, own=True)
        except Exception as e:
            return self._error(index, f"read raised {one_line(e)}", e)
        if not isinstance(item, ProbeItem):
            return self._error(index, f"the source returned {type(item).__name__}, "
                                      "not a ProbeItem")
        if item.error:
            return self._error(index, item.error, own=True)
        if item.index != index:
            return self._error(index, f"the source returned the item of index {item.index!r}")
        changes = {}
        if image:
            if item.image is None:
                return self._error(index, "the source returned no image (read(image=True) "
                                          "and __getitem__ must return the image)")
            problem = image_problem(item.image)
            if problem:
                return self._error(index, problem)
            resized, problem = self._sized(index, item.image)
            if problem:
                return self._error(index, problem)
            if resized is not item.image:
                changes["image"] = resized
        if self._cat_map is not None:
            changes.update(self._restricted(item))
        return dataclasses.replace(item, **changes) if changes else item

    def _sized(self, index: int, image: np.ndarray):
        """(the image at the run's size, None) or (None, the problem)."""
        if self.resize is not None:
            return resize_image(image, self.resize), None
        if self._expected is None:
            self._expected = tuple(image.shape[:2]) if index == 0 else self._first_size()
        if self._expected is not None and tuple(image.shape[:2]) != self._expected:
            h, w = image.shape[:2]
            return None, (f"image is {h}x{w} but image 0 is "
                          f"{self._expected[0]}x{self._expected[1]}; images of different sizes "
                          "need --resize N or HxW (the engine then resizes each image "
                          "before batching)")
        return image, None

    def _first_size(self) -> Optional[Tuple[int, int]]:
        try:
            first = self._read(0, True, False)
            return tuple(first.image.shape[:2])
        except Exception:
            return None  # image 0's own error is reported when it is read

    def load_image(self, index: int) -> np.ndarray:
        """The image as the run saw it (resized when the run resizes)."""
        item = self.read(index, image=True, labels=False)
        if item.error:
            raise DatasetError(item.error)
        return item.image

    # -- categories ----------------------------------------------------------------------------

    def _restricted(self, item: ProbeItem) -> dict:
        """The item's labels in the restricted vocabulary. Values that are out of range are
        left as they are: the item check reports them with the source's own numbers."""
        cat_map, C = self._cat_map, self._full_categories
        out = {}

        def category(c):
            """(keep?, new category) for a plane or image-level label's category."""
            if c is None or (isinstance(c, (int, np.integer)) and c == -1):
                return True, c
            if isinstance(c, (int, np.integer)) and 0 <= c < C:
                return cat_map[c] >= 0, int(cat_map[c])
            return True, c  # invalid: kept for the item check

        def label_kept(label) -> bool:
            return not (isinstance(label, (int, np.integer)) and
                        0 <= label < len(self._label_kept)) or bool(self._label_kept[label])

        planes = item.planes
        if isinstance(planes, np.ndarray) and planes.ndim == 3:
            cats = list(item.plane_categories) if item.plane_categories is not None else \
                [None] * planes.shape[0]
            if len(cats) == planes.shape[0]:
                new_cats, kept_planes = [], []
                for j, c in enumerate(cats):
                    wanted, new = category(c)
                    if not wanted:
                        continue
                    plane = planes[j]
                    if new is None or (isinstance(new, (int, np.integer)) and new == -1):
                        inside = (plane >= 0) & (plane < len(self._label_kept))
                        drop = np.zeros(plane.shape, dtype=bool)
                        drop[inside] = ~self._label_kept[plane[inside]]
                        if drop.any():
                            plane = np.where(drop, 0, plane).astype(planes.dtype)
                    kept_planes.append(plane)
                    new_cats.append(new)
                out["planes"] = np.stack(kept_planes) if kept_planes else \
                    np.zeros((0, *planes.shape[1:]), dtype=planes.dtype)
                if item.plane_categories is not None:
                    out["plane_categories"] = new_cats
        labels = list(item.image_labels) if item.image_labels is not None else []
        label_cats = list(item.image_label_categories) \
            if item.image_label_categories is not None else None
        if label_cats is None or len(label_cats) == len(labels):
            new_labels, new_label_cats = [], []
            for k, label in enumerate(labels):
                c = label_cats[k] if label_cats is not None else None
                wanted, new = category(c)
                unknown = new is None or (isinstance(new, (int, np.integer)) and new == -1)
                if not wanted or (unknown and not label_kept(label)):
                    continue
                new_labels.append(label)
                new_label_cats.append(new)
            out["image_labels"] = new_labels
            if label_cats is not None:
                out["image_label_categories"] = new_label_cats
        annotated = np.asarray(item.annotated) if item.annotated is not None else None
        if annotated is not None and annotated.shape == (C,):
            out["annotated"] = annotated[cat_map >= 0]
        return out
