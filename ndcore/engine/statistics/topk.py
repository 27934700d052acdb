"""Per unit, the k probe images with the largest peak activation, with their maps.

An :class:`~ndcore.engine.accumulator.Accumulator`. Order is (peak descending, probe index
ascending), so ties (e.g. the all-zero maps of a dead unit) are broken the same way whatever
the shards, and merged states are bit-identical. Statistic "topk": pass 1 feeds it for every
layer; its state is the layer's topk.npz.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

from ...data.probe import ProbeBatch
from ..accumulator import check_mergeable
from .table import FORWARD_PASS, RunContext, Statistic, register


def _top_by_value_then_index(values: torch.Tensor, indices: torch.Tensor, k: int):
    """Positions [U, min(k, n)] of the k best columns per row: value desc, then index asc."""
    by_index = torch.sort(indices, dim=1, stable=True).indices
    values_sorted = values.gather(1, by_index)
    by_value = torch.sort(values_sorted, dim=1, descending=True, stable=True).indices
    return by_index.gather(1, by_value)[:, :k]


MAX_IMAGE_SIDE = 128  # kept images are shrunk to this (they only feed report strips)


def _small(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> at most MAX_IMAGE_SIDE on the long side, on the CPU."""
    h, w = images.shape[-2:]
    if max(h, w) > MAX_IMAGE_SIDE:
        scale = MAX_IMAGE_SIDE / max(h, w)
        images = torch.nn.functional.interpolate(
            images.float(), size=(max(1, round(h * scale)), max(1, round(w * scale))),
            mode="area").round().clamp(0, 255).to(torch.uint8)
    return images.to("cpu")


class TopKImages:
    """Per unit, the k images with the largest maximum activation, with their maps (float16)
    and, with ``keep_images`` (images that exist nowhere else: a generator's samples), the
    images themselves (uint8, small)."""

    PRUNE_EVERY = 16  # batches between two sweeps of the images no unit shows any more

    def __init__(self, num_units: int, k: int, keep_images: bool = False) -> None:
        if k < 1:
            raise ValueError("TopKImages: k must be >= 1")
        self.num_units, self.k, self.keep_images = num_units, k, keep_images
        self.values = torch.full((num_units, 0), -math.inf)
        self.indices = torch.zeros((num_units, 0), dtype=torch.int64)
        self.maps: Optional[torch.Tensor] = None  # float16 [U, k', h, w]
        # keep_images: probe index -> uint8 [3, H, W], for the indices some unit shows (and, for
        # at most PRUNE_EVERY batches, some that no unit shows any more)
        self.images: Dict[int, torch.Tensor] = {}
        self._adds_since_prune = 0

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        maps = maps.detach()
        peak = maps.amax(dim=(2, 3)).t().float().cpu()  # [U, B]
        units = torch.arange(self.num_units)
        cols = torch.arange(peak.shape[1]).expand(self.num_units, -1)  # batch rows considered
        if self.values.shape[1] == self.k:  # only what can enter: a peak >= the k-th value
            can_enter = peak >= self.values[:, -1:]
            per_unit = can_enter.sum(1)
            units = per_unit.nonzero()[:, 0]
            if units.numel() == 0:
                return
            # A unit's `width` largest peaks hold all of its peaks that can enter (the others
            # are below the k-th value, so below every one that can).
            width = int(per_unit.max())
            cols = peak[units].topk(width, dim=1).indices if width < peak.shape[1] else \
                cols[units]
        whole = units.numel() == self.num_units
        old_width = self.values.shape[1]
        values = torch.cat([self.values[units], peak[units].gather(1, cols)], 1)
        batch_ids = batch.indices.cpu()[cols]
        indices = torch.cat([self.indices[units], batch_ids], 1)
        pos = _top_by_value_then_index(values, indices, self.k)
        kept = torch.empty(*pos.shape, *maps.shape[2:], dtype=torch.float16)
        old_r, old_c = (pos < old_width).nonzero(as_tuple=True)
        if old_r.numel():
            kept[old_r, old_c] = self.maps[units[old_r], pos[old_r, old_c]]
        new_r, new_c = (pos >= old_width).nonzero(as_tuple=True)
        new_rows = cols[new_r, pos[new_r, new_c] - old_width]  # copy only the maps that enter
        kept[new_r, new_c] = maps[new_rows.to(maps.device), units[new_r].to(maps.device)].to(
            "cpu", torch.float16)
        if whole:
            self.values, self.indices = values.gather(1, pos), indices.gather(1, pos)
            self.maps = kept
        else:
            self.values[units] = values.gather(1, pos)
            self.indices[units] = indices.gather(1, pos)
            self.maps[units] = kept
        if self.keep_images:
            entering = set(batch.indices.cpu()[new_rows].tolist())
            entering -= set(self.images)
            if entering:
                rows = [i for i, index in enumerate(batch.indices.tolist()) if index in entering]
                small = _small(batch.images[rows])
                self.images.update({int(batch.indices[r]): small[j] for j, r in enumerate(rows)})
            self._adds_since_prune += 1
            if self._adds_since_prune >= self.PRUNE_EVERY:
                self._prune_images()

    def _prune_images(self) -> None:
        """Forget the images no unit shows any more."""
        self._adds_since_prune = 0
        shown = set(self.indices.reshape(-1).tolist())
        for index in [i for i in self.images if i not in shown]:
            del self.images[index]

    def merge(self, other: "TopKImages") -> None:
        check_mergeable(self, other, num_units=self.num_units, k=self.k,
                        keep_images=self.keep_images)
        if other.maps is None:
            return
        values = torch.cat([self.values, other.values], 1)
        indices = torch.cat([self.indices, other.indices], 1)
        maps = other.maps if self.maps is None else torch.cat([self.maps, other.maps], 1)
        pos = _top_by_value_then_index(values, indices, self.k)
        self.values, self.indices = values.gather(1, pos), indices.gather(1, pos)
        self.maps = _gather(maps, pos)
        if self.keep_images:
            self.images.update(other.images)
            self._prune_images()

    def state_dict(self) -> Dict:
        # copies: add() updates the units that change in place
        return {"k": self.k, "num_units": self.num_units, "keep_images": self.keep_images,
                "values": self.values.clone(), "indices": self.indices.clone(),
                "maps": None if self.maps is None else self.maps.clone(),
                **self._images_state()}

    def _images_state(self) -> Dict:
        """Canonical: the kept images stacked by ascending probe index."""
        if not self.keep_images:
            return {"image_indices": None, "images": None}
        self._prune_images()
        order = sorted(self.images)
        stacked = torch.stack([self.images[i] for i in order]) if order else None
        return {"image_indices": torch.tensor(order, dtype=torch.int64), "images": stacked}

    def load_state_dict(self, state: Dict) -> None:
        self.k, self.num_units = int(state["k"]), int(state["num_units"])
        self.keep_images = bool(state.get("keep_images", False))
        own = lambda x: None if x is None else torch.as_tensor(x).clone()  # noqa: E731
        self.values, self.indices = own(state["values"]), own(state["indices"])
        self.maps = own(state["maps"])
        images, where = state.get("images"), state.get("image_indices")
        self.images = {} if images is None else {
            int(i): torch.as_tensor(images[j]).clone() for j, i in enumerate(where.tolist())}


def _gather(t: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """t [U, n, ...] -> t[u, pos[u, j], ...] as [U, k, ...]."""
    return t.gather(1, pos.view(*pos.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:]))


def _make(run: RunContext, layer: str, maps: torch.Tensor, batch: ProbeBatch) -> TopKImages:
    # a generator's images exist nowhere else: the top ones are kept for the report
    return TopKImages(maps.shape[1], run.options.topk, keep_images=run.makes_images)


register(Statistic(
    "topk", TopKImages, passes=(FORWARD_PASS,), make=_make, record="topk",
    restore=lambda run, state: TopKImages(int(state["num_units"]), int(state["k"]),
                                          bool(state.get("keep_images", False)))))
