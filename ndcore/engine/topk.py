"""Per unit, the k probe images with the largest peak activation, with their maps.

An :class:`~ndcore.engine.accumulator.Accumulator`. Order is (peak descending, probe index
ascending), so ties (e.g. the all-zero maps of a dead unit) are broken the same way whatever
the shards, and merged states are bit-identical.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

from ..data.probe import ProbeBatch
from .accumulator import check_mergeable


def _top_by_value_then_index(values: torch.Tensor, indices: torch.Tensor, k: int):
    """Positions [U, min(k, n)] of the k best columns per row: value desc, then index asc."""
    by_index = torch.sort(indices, dim=1, stable=True).indices
    values_sorted = values.gather(1, by_index)
    by_value = torch.sort(values_sorted, dim=1, descending=True, stable=True).indices
    return by_index.gather(1, by_value)[:, :k]


class TopKImages:
    """Per unit, the k images with the largest maximum activation, with their maps (float16)."""

    def __init__(self, num_units: int, k: int) -> None:
        if k < 1:
            raise ValueError("TopKImages: k must be >= 1")
        self.num_units, self.k = num_units, k
        self.values = torch.full((num_units, 0), -math.inf)
        self.indices = torch.zeros((num_units, 0), dtype=torch.int64)
        self.maps: Optional[torch.Tensor] = None  # float16 [U, k', h, w]

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        maps = maps.detach()
        peak = maps.amax(dim=(2, 3)).t().float().cpu()  # [U, B]
        if self.values.shape[1] == self.k and not bool((peak >= self.values[:, -1:]).any()):
            return  # nothing in this batch can enter any unit's top k
        old_width = self.values.shape[1]
        values = torch.cat([self.values, peak], 1)
        batch_ids = batch.indices.cpu().view(1, -1).expand(self.num_units, -1)
        indices = torch.cat([self.indices, batch_ids], 1)
        pos = _top_by_value_then_index(values, indices, self.k)
        units = torch.arange(self.num_units).view(-1, 1).expand_as(pos)
        kept = torch.empty(*pos.shape, *maps.shape[2:], dtype=torch.float16)
        old = pos < old_width
        if bool(old.any()):
            kept[old] = self.maps[units[old], pos[old]]
        new = ~old  # copy only the maps that enter, not the whole batch
        rows = (pos[new] - old_width).to(maps.device)
        kept[new] = maps[rows, units[new].to(maps.device)].to("cpu", torch.float16)
        self.values, self.indices, self.maps = values.gather(1, pos), indices.gather(1, pos), kept

    def merge(self, other: "TopKImages") -> None:
        check_mergeable(self, other, num_units=self.num_units, k=self.k)
        if other.maps is None:
            return
        values = torch.cat([self.values, other.values], 1)
        indices = torch.cat([self.indices, other.indices], 1)
        maps = other.maps if self.maps is None else torch.cat([self.maps, other.maps], 1)
        pos = _top_by_value_then_index(values, indices, self.k)
        self.values, self.indices = values.gather(1, pos), indices.gather(1, pos)
        self.maps = maps.gather(1, pos[:, :, None, None].expand(-1, -1, *maps.shape[2:]))

    def state_dict(self) -> Dict:
        return {"k": self.k, "num_units": self.num_units, "values": self.values.contiguous(),
                "indices": self.indices.contiguous(),
                "maps": None if self.maps is None else self.maps.contiguous()}

    def load_state_dict(self, state: Dict) -> None:
        self.k, self.num_units = int(state["k"]), int(state["num_units"])
        maps = state["maps"]
        self.values = torch.as_tensor(state["values"]).clone()
        self.indices = torch.as_tensor(state["indices"]).clone()
        self.maps = None if maps is None else torch.as_tensor(maps).clone()
