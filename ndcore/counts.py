"""Accumulating the fused op's per-batch output into dataset-wide IoU counts.

Everything the three union conventions need is kept, so the convention (and the cut-off, and
the category set) can be chosen when labelling, without re-running the model:

- ``intersection[u, l]``: mask pixels of unit u on label l (image-level labels count the whole
  mask of their image);
- ``truth[l]``: pixels of label l (an image-level label counts every pixel of its image);
- ``area_by_pattern[u, k]``: mask pixels of unit u over images whose set of annotated
  categories is ``patterns[k]`` (a bit mask over the vocabulary's categories) - the paper's union
  sums a unit's mask over the images where a label's category is annotated;
- ``act_lite[u, c]``: NetDissect-Lite's activation count, |M| added for category c only on images
  where the mask touches a label of primary category c or that carry an image-level label of c.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch

from .data.probe import ProbeBatch
from .data.vocabulary import Vocabulary


class TallyCounts:
    def __init__(self, num_units: int, vocabulary: Vocabulary, device="cpu") -> None:
        self.num_units = num_units
        self.num_labels = vocabulary.num_labels
        self.num_categories = vocabulary.num_categories
        self.device = torch.device(device)
        L, C = self.num_labels, self.num_categories
        self.intersection = torch.zeros(num_units, L, dtype=torch.int64, device=self.device)
        self.truth = torch.zeros(L, dtype=torch.int64, device=self.device)
        self.act_lite = torch.zeros(num_units, C, dtype=torch.int64, device=self.device)
        self.patterns: List[int] = []
        self.area_by_pattern = torch.zeros(num_units, 0, dtype=torch.int64, device=self.device)
        self.num_images = 0
        self._primary = torch.as_tensor(vocabulary.primary, dtype=torch.int64, device=self.device)
        self._bits = 2 ** torch.arange(C, dtype=torch.int64, device=self.device)

    def add(
        self,
        batch: ProbeBatch,
        intersection: torch.Tensor,
        area: torch.Tensor,
        cat_hits: torch.Tensor,
    ) -> None:
        """Add one batch: the op's outputs for it plus its image-level labels and annotation."""
        dev = self.device
        area = area.to(dev)
        n_img = area.shape[0]
        self.num_images += n_img
        self.intersection += intersection.to(dev)
        labels = batch.labels.to(dev)
        self.truth += torch.bincount(labels.reshape(-1).long(), minlength=self.num_labels)[: self.num_labels]
        self.truth[0] = 0

        # Image-level labels: the label covers the whole image.
        img_labels = batch.image_labels.to(dev)
        b_idx, q_idx = (img_labels > 0).nonzero(as_tuple=True)
        lab = img_labels[b_idx, q_idx]
        sh, sw = batch.label_size
        self.truth.index_add_(0, lab, torch.full_like(lab, sh * sw))
        self.intersection.index_add_(1, lab, area[b_idx].t())

        # Paper union: a unit's mask area per annotation pattern.
        annotated = batch.annotated.to(dev)
        pattern = (annotated.long() * self._bits).sum(1)
        for value in pattern.unique().tolist():
            col = self._pattern_column(int(value))
            self.area_by_pattern[:, col] += area[pattern == value].sum(0)

        # NetDissect-Lite union.
        if self.num_categories:
            touched = cat_hits.to(dev) > 0  # [B, U, C]
            img_cats = torch.zeros(n_img, self.num_categories, dtype=torch.bool, device=dev)
            prim = self._primary[lab]
            ok = prim >= 0
            img_cats[b_idx[ok], prim[ok]] = True
            touched |= img_cats[:, None, :]
            self.act_lite += (area[:, :, None] * touched).sum(0)

    def _pattern_column(self, value: int) -> int:
        if value not in self.patterns:
            self.patterns.append(value)
            pad = torch.zeros(self.num_units, 1, dtype=torch.int64, device=self.device)
            self.area_by_pattern = torch.cat([self.area_by_pattern, pad], 1)
        return self.patterns.index(value)

    def merge(self, other: "TallyCounts") -> None:
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
        }

    def load_state_dict(self, state: Dict[str, np.ndarray]) -> None:
        dev = self.device
        self.intersection = torch.as_tensor(state["intersection"], device=dev)
        self.truth = torch.as_tensor(state["truth"], device=dev)
        self.act_lite = torch.as_tensor(state["act_lite"], device=dev)
        self.patterns = [int(p) for p in state["patterns"]]
        self.area_by_pattern = torch.as_tensor(state["area_by_pattern"], device=dev)
        self.num_images = int(state["num_images"])
        self.num_units = self.intersection.shape[0]
