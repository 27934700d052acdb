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

from typing import Dict, List, Optional

import numpy as np
import torch

from ...data.labelspace import LabelSpace
from ...data.probe import ProbeBatch
from ...errors import NdcoreError
from ...ops import tally
from ..accumulator import check_mergeable
from .table import FORWARD_PASS, TALLY_PASS, RunContext, Statistic, register


class TallyCounts:
    def __init__(self, thresholds: torch.Tensor, labelspace: LabelSpace, device="cpu") -> None:
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
        ls = self.labelspace
        intersection, area, group_hits = tally(maps, self.thresholds, batch.labels, self._group,
                                               ls.num_ids, ls.num_groups)
        self.num_images += area.shape[0]
        self.intersection += intersection
        self.truth += batch.label_counts(ls.num_ids)
        self.truth[0] = 0

        # Image-level labels cover the whole image.
        img = batch.image_labels
        b_idx, q_idx = (img > 0).nonzero(as_tuple=True)
        ids = img[b_idx, q_idx]
        sh, sw = batch.label_size
        self.truth.index_add_(0, ids, torch.full_like(ids, sh * sw))
        self.intersection.index_add_(1, ids, area[b_idx].t())

        self._add_paper(batch, area)
        self._add_lite(area, group_hits, b_idx, ids)

    def _add_paper(self, batch: ProbeBatch, area: torch.Tensor) -> None:
        pattern = (batch.annotated.long() * self._bits).sum(1)
        for value in pattern.unique().tolist():
            col = self._pattern_column(int(value))
            self.area_by_pattern[:, col] += area[pattern == value].sum(0)

    def _add_lite(self, area, group_hits, img_rows, img_ids) -> None:
        G = self.labelspace.num_groups
        if G == 0:
            return
        touched = group_hits > 0  # [B, U, G]
        groups = self._group[img_ids]
        ok = groups >= 0
        if bool(ok.any()):  # an image-level label touches its group wherever the mask is
            img_groups = torch.zeros(area.shape[0], G, dtype=torch.bool, device=self.device)
            img_groups[img_rows[ok], groups[ok]] = True
            touched = touched | img_groups[:, None, :]
        # Only (image, unit) pairs with a non-empty mask can add anything.
        n, u = (area > 0).nonzero(as_tuple=True)
        if n.numel() == 0:
            return
        hit = (touched[n, u].float() @ self._lite_onehot) > 0  # [K, S*C]
        add = hit.long() * area[n, u][:, None]
        flat = self.act_lite.view(self.num_units, -1)
        flat.index_add_(0, u, add)

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
        check_mergeable(self, other, num_units=self.num_units)
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
