"""Dataset-wide IoU counts of one layer: the fused tally op, accumulated batch by batch.

Everything the three union conventions need is kept, for every category subset, so that a
saved run can be relabelled by union, cut-off or categories without the model, and equal a
fresh run with those settings. Counts are per label-space id (see data/labelspace.py):

- ``intersection[u, v]``: mask pixels of unit u on id v (image-level labels: the whole mask);
- ``truth[v]``: pixels of id v (an image-level label counts every pixel of its image);
- ``area_by_pattern[u, k]``: mask pixels of unit u over the images whose set of annotated
  categories is ``patterns[k]`` (a bit mask; sorted) - the paper's union sums a unit's mask
  over the images where a label's category is annotated;
- ``act_lite[u, s, c]``: NetDissect-Lite's activation count under category subset
  ``lite_subsets[s]``: |M| added for category c on images where the mask touches a label whose
  primary category (within the subset) is c, or that carry an image-level label of it.

An :class:`~ndcore.engine.accumulator.Accumulator`; all counts are exact int64 sums, and the
patterns are kept sorted, so merged states are bit-identical in any order. Statistic "counts":
fed by the first pass that knows a layer's thresholds (pass 1 for given ones, else pass 2); its
state is the layer's counts.npz.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

from ...data.labelspace import LabelSpace
from ...data.probe import ProbeBatch
from ...errors import NdcoreError
from ...ops import tally
from ..accumulator import check_mergeable
from .table import FORWARD_PASS, TALLY_PASS, RunContext, Statistic, register


@dataclass
class BatchCounts:
    """One batch's counts (see :func:`batch_counts`)."""

    intersection: torch.Tensor  # int64 [U, V] mask pixels on each id (image-level: whole mask)
    truth: torch.Tensor  # int64 [V] pixels of each id (image-level: whole images); id 0: 0
    area: torch.Tensor  # int64 [B, U] mask pixels per image
    group_hits: torch.Tensor  # [B, U, G] the fused op's group hits
    image_rows: torch.Tensor  # int64 [K] the images of the image-level labels ...
    image_ids: torch.Tensor  # int64 [K] ... and their ids


def batch_counts(maps: torch.Tensor, thresholds: torch.Tensor, batch: ProbeBatch,
                 labelspace: LabelSpace, group: torch.Tensor) -> BatchCounts:
    """The fused tally of one batch, with its image-level labels: they cover the whole image."""
    intersection, area, group_hits, rows, ids = batch_intersection(maps, thresholds, batch,
                                                                   labelspace, group)
    truth = batch.label_counts(labelspace.num_ids).clone()
    truth[0] = 0
    sh, sw = batch.label_size
    truth.index_add_(0, ids, torch.full_like(ids, sh * sw))
    return BatchCounts(intersection, truth, area, group_hits, rows, ids)


def batch_intersection(maps: torch.Tensor, thresholds: torch.Tensor, batch: ProbeBatch,
                       labelspace: LabelSpace, group: torch.Tensor):
    """The fused tally's intersection [U, V] with the image-level labels' added, its mask areas
    and group hits, and the image-level labels' rows and ids (what :class:`BatchCounts` holds
    but the label pixels)."""
    intersection, area, group_hits = tally(maps, thresholds, batch.labels, group,
                                           labelspace.num_ids, labelspace.num_groups)
    img = batch.image_labels
    rows, columns = (img > 0).nonzero(as_tuple=True)
    ids = img[rows, columns]
    intersection.index_add_(1, ids, area[rows].t())
    return intersection, area, group_hits, rows, ids


def _image_keys(batch: ProbeBatch, num_ids: int) -> torch.Tensor:
    """int64 [B, P, sh, sw]: each label pixel's (image, id) as image * num_ids + id."""
    n = len(batch)
    offsets = torch.arange(n, device=batch.labels.device) * num_ids
    return batch.labels.long() + offsets[:, None, None, None]


def pixels_per_image(batch: ProbeBatch, num_ids: int,
                     keys: Optional[torch.Tensor] = None) -> torch.Tensor:
    """int64 [B, V]: each image's pixels of each id (an image-level label: the whole image)."""
    n = len(batch)
    keys = _image_keys(batch, num_ids) if keys is None else keys
    pixels = torch.bincount(keys.reshape(-1), minlength=n * num_ids).reshape(n, num_ids)
    rows, columns = (batch.image_labels > 0).nonzero(as_tuple=True)
    ids = batch.image_labels[rows, columns]
    sh, sw = batch.label_size
    pixels.index_put_((rows, ids), torch.full_like(ids, sh * sw), accumulate=True)
    pixels[:, 0] = 0
    return pixels


@dataclass
class ImageCounts:
    """One batch's counts per image: the intersections of every (image, id) that occurs."""

    image: torch.Tensor  # int64 [K] the image of each column
    ids: torch.Tensor  # int64 [K] the label-space id of each column
    intersection: torch.Tensor  # int64 [U, K] (an image-level label: the image's whole mask)
    pixels: torch.Tensor  # int64 [B, V] each image's pixels of each id
    batch: BatchCounts  # the batch's counts (unweighted), whose per-image parts are kept


def image_counts(maps: torch.Tensor, thresholds: torch.Tensor, batch: ProbeBatch,
                 labelspace: LabelSpace, group: torch.Tensor) -> ImageCounts:
    """:class:`ImageCounts` from one call of the fused tally: every (image, id) pair that occurs
    in the batch's label planes gets an id of its own, so the op counts each image apart."""
    n, num_ids = len(batch), labelspace.num_ids
    device = batch.labels.device
    keys = _image_keys(batch, num_ids)
    in_planes = torch.bincount(keys.reshape(-1), minlength=n * num_ids)
    in_planes[::num_ids] = 0  # id 0: no label
    present = in_planes.nonzero().reshape(-1)  # sorted (image, id) keys of the label planes
    compact = torch.zeros(n * num_ids, dtype=torch.int32, device=device)
    compact[present] = torch.arange(1, present.numel() + 1, dtype=torch.int32, device=device)
    ids = present % num_ids
    groups = torch.cat([group[:1], group[ids]])
    intersection, area, group_hits = tally(maps, thresholds, compact[keys], groups,
                                           present.numel() + 1, labelspace.num_groups)
    pixels = pixels_per_image(batch, num_ids, keys)
    rows, columns = (batch.image_labels > 0).nonzero(as_tuple=True)
    image_ids = batch.image_labels[rows, columns]
    image = torch.cat([present // num_ids, rows])
    ids = torch.cat([ids, image_ids])
    intersection = torch.cat([intersection[:, 1:], area[rows].t()], 1)
    total = torch.zeros(intersection.shape[0], num_ids, dtype=torch.int64,
                        device=device).index_add_(1, ids, intersection)
    truth = pixels.sum(0)
    return ImageCounts(image, ids, intersection, pixels,
                       BatchCounts(total, truth, area, group_hits, rows, image_ids))


@dataclass
class LiteTerms:
    """A batch's additions to NetDissect-Lite's activation counts: for the (image ``n``, unit
    ``u``) pairs with a mask, the mask's pixels under every (category subset, category)."""

    n: torch.Tensor  # int64 [K]
    u: torch.Tensor  # int64 [K]
    add: torch.Tensor  # int64 [K, S*C]

    def add_to(self, act_lite: torch.Tensor, weights: Optional[torch.Tensor] = None) -> None:
        if self.n.numel() == 0:
            return
        add = self.add if weights is None else self.add * weights[self.n][:, None]
        act_lite.view(act_lite.shape[0], -1).index_add_(0, self.u, add)


class TallyCounts:
    """The layer's counts (see the module). ``lite=False`` leaves NetDissect-Lite's activation
    counts out (all zero, and the state says so): a bootstrap resample of a run under another
    union does not pay for them."""

    def __init__(self, thresholds: torch.Tensor, labelspace: LabelSpace, device="cpu",
                 lite: bool = True) -> None:
        self.lite = bool(lite)
        self.device = torch.device(device)
        self.thresholds = thresholds.to(self.device, torch.float32)
        self.num_units = int(thresholds.numel())
        self.labelspace = labelspace
        V, C = labelspace.num_ids, labelspace.num_categories
        U, dev = self.num_units, self.device
        self.intersection = torch.zeros(U, V, dtype=torch.int64, device=dev)
        self.truth = torch.zeros(V, dtype=torch.int64, device=dev)
        subsets = labelspace.lite_subsets
        self.act_lite = torch.zeros(U, len(subsets), C, dtype=torch.int64, device=dev)
        self.patterns: List[int] = []
        self.area_by_pattern = torch.zeros(U, 0, dtype=torch.int64, device=dev)
        self.num_images = 0
        self._group = torch.as_tensor(labelspace.id_group, dtype=torch.int64, device=dev)
        self._bits = 2 ** torch.arange(C, dtype=torch.int64, device=dev)
        # [G, S*C] 0/1: group g counts for category c under subset s.
        maps = labelspace.lite_category_maps()  # [S, G]
        onehot = np.zeros((labelspace.num_groups, len(subsets) * C), dtype=np.float32)
        s_idx, g_idx = np.nonzero(maps >= 0)
        onehot[g_idx, s_idx * C + maps[s_idx, g_idx]] = 1.0
        self._lite_onehot = torch.from_numpy(onehot).to(dev)

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        if maps.shape[1] != self.num_units:
            raise ValueError(f"TallyCounts: {maps.shape[1]} units, thresholds have "
                             f"{self.num_units}")
        batch = batch.to(self.device)
        self.add_counts(batch_counts(maps, self.thresholds, batch, self.labelspace, self._group),
                        batch)

    def add_counts(self, found: BatchCounts, batch: ProbeBatch) -> None:
        """Adds a batch's counts."""
        self.num_images += found.area.shape[0]
        self.intersection += found.intersection
        self.truth += found.truth
        self._add_paper(batch, found.area)
        if self.lite:
            self.lite_terms(found).add_to(self.act_lite)

    def add_images(self, images: "ImageCounts", batch: ProbeBatch, weights: torch.Tensor,
                   lite: Optional["LiteTerms"] = None) -> None:
        """Adds a batch with image i counted ``weights[i]`` times (a bootstrap resample), from
        its per-image counts; ``lite``: its :meth:`lite_terms`, shared by every weighting."""
        self.num_images += int(weights.sum())
        self.intersection.index_add_(1, images.ids,
                                     images.intersection * weights[images.image][None, :])
        self.truth += (images.pixels * weights[:, None]).sum(0)
        self._add_paper(batch, images.batch.area * weights[:, None], weights > 0)
        if self.lite:
            (lite or self.lite_terms(images.batch)).add_to(self.act_lite, weights)

    def _add_paper(self, batch: ProbeBatch, area: torch.Tensor,
                   counted: Optional[torch.Tensor] = None) -> None:
        pattern = (batch.annotated.long() * self._bits).sum(1)
        present = pattern if counted is None else pattern[counted]  # images counted at all
        for value in present.unique().tolist():
            col = self._pattern_column(int(value))
            self.area_by_pattern[:, col] += area[pattern == value].sum(0)

    def lite_terms(self, found: BatchCounts) -> "LiteTerms":
        """What a batch adds to NetDissect-Lite's activation counts, per (image, unit)."""
        G = self.labelspace.num_groups
        area = found.area
        empty = torch.zeros(0, dtype=torch.int64, device=self.device)
        if G == 0:
            return LiteTerms(empty, empty, torch.zeros(0, 0, dtype=torch.int64))
        touched = found.group_hits > 0  # [B, U, G]
        groups = self._group[found.image_ids]
        ok = groups >= 0
        if bool(ok.any()):  # an image-level label touches its group wherever the mask is
            img_groups = torch.zeros(area.shape[0], G, dtype=torch.bool, device=self.device)
            img_groups[found.image_rows[ok], groups[ok]] = True
            touched = touched | img_groups[:, None, :]
        # Only (image, unit) pairs with a non-empty mask can add anything.
        n, u = (area > 0).nonzero(as_tuple=True)
        if n.numel() == 0:
            return LiteTerms(empty, empty, torch.zeros(0, 0, dtype=torch.int64))
        hit = (touched[n, u].float() @ self._lite_onehot) > 0  # [K, S*C]
        return LiteTerms(n, u, hit.long() * area[n, u][:, None])

    def _pattern_column(self, value: int) -> int:
        """Column of an annotation pattern; columns stay sorted by pattern (canonical)."""
        if value in self.patterns:
            return self.patterns.index(value)
        pos = int(np.searchsorted(np.asarray(self.patterns, dtype=np.int64), value))
        self.patterns.insert(pos, value)
        pad = torch.zeros(self.num_units, 1, dtype=torch.int64, device=self.device)
        self.area_by_pattern = torch.cat(
            [self.area_by_pattern[:, :pos], pad, self.area_by_pattern[:, pos:]], 1)
        return pos

    def merge(self, other: "TallyCounts") -> None:
        check_mergeable(self, other, num_units=self.num_units, lite=self.lite)
        if not torch.equal(self.thresholds.cpu(), other.thresholds.cpu()):
            raise ValueError("cannot merge TallyCounts made with different thresholds")
        self.intersection += other.intersection.to(self.device)
        self.truth += other.truth.to(self.device)
        self.act_lite += other.act_lite.to(self.device)
        self.num_images += other.num_images
        for k, value in enumerate(other.patterns):
            col = self._pattern_column(value)
            self.area_by_pattern[:, col] += other.area_by_pattern[:, k].to(self.device)

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {
            "intersection": self.intersection.cpu().numpy(),
            "truth": self.truth.cpu().numpy(),
            "act_lite": self.act_lite.cpu().numpy(),
            "patterns": np.asarray(self.patterns, dtype=np.int64),
            "area_by_pattern": self.area_by_pattern.cpu().numpy(),
            "num_images": np.asarray(self.num_images, dtype=np.int64),
            "thresholds": self.thresholds.cpu().numpy(),
            **({} if self.lite else {"lite_counted": np.asarray(False)}),
            **{f"labelspace_{k}": v for k, v in self.labelspace.state().items()},
        }

    def load_state_dict(self, state: Dict[str, np.ndarray]) -> None:
        # Copies: the counts are added to in place, and must not write through to ``state``.
        def own(x):
            return torch.tensor(np.asarray(x), device=self.device)

        self.intersection = own(state["intersection"])
        self.truth = own(state["truth"])
        self.act_lite = own(state["act_lite"])
        self.patterns = [int(p) for p in np.asarray(state["patterns"]).reshape(-1)]
        self.area_by_pattern = own(state["area_by_pattern"]).reshape(self.intersection.shape[0], -1)
        self.num_images = int(state["num_images"])
        self.thresholds = own(state["thresholds"]).float()
        self.num_units = self.intersection.shape[0]
        self.lite = bool(state.get("lite_counted", True))


def _make(run: RunContext, layer: str, maps: torch.Tensor,
          batch: ProbeBatch) -> Optional[TallyCounts]:
    thresholds = run.thresholds.get(layer)
    if thresholds is None:
        return None
    units = maps.shape[1]
    if thresholds.numel() != units:
        raise NdcoreError(f"layer {layer!r} has {units} units but its thresholds have "
                          f"{thresholds.numel()} values")
    return TallyCounts(thresholds, run.labelspace, run.device)


register(Statistic(
    "counts", TallyCounts, passes=(FORWARD_PASS, TALLY_PASS), make=_make, record="counts",
    restore=lambda run, state: TallyCounts(torch.as_tensor(state["thresholds"]), run.labelspace,
                                           run.device)))
