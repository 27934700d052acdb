"""The exact per-unit top quantile of a stream: the threshold of every unit.

An :class:`~ndcore.engine.accumulator.Accumulator`: its state (the largest ``keep`` values of
each unit, sorted) is canonical, so shards merge to the same bits in any order.
"""

from __future__ import annotations

import math
from typing import Dict, List

import torch

from ..data.probe import ProbeBatch
from ..ops import upsample_bilinear
from .accumulator import check_mergeable


def tail_size(count: int, quantile: float) -> int:
    """How many of the largest of ``count`` samples decide their upper ``quantile`` threshold.

    The threshold is numpy's default ('linear') quantile at ``1 - quantile``: it interpolates
    between the sorted samples at positions floor(h) and floor(h) + 1, h = (count - 1) * p.
    """
    low, _ = _virtual_index(count, 1.0 - quantile)
    return min(count, count - low)


def _virtual_index(count: int, p: float):
    # Same float64 expression numpy uses for the 'linear' method, so floor() agrees with it.
    h = count * p + (1.0 + p * (1.0 - 1.0 - 1.0)) - 1.0
    h = min(max(h, 0.0), count - 1.0)
    low = int(math.floor(h))
    return low, h - low


class TopTail:
    """Exact per-unit upper quantile over a stream, keeping only the largest ``keep`` values.

    The kept tail is a dense [U, keep] tensor (descending, -inf where a unit has fewer values).
    New candidates above each unit's running floor (its keep-th largest value so far, a lower
    bound of the final threshold) are gathered flat as (unit, value) pairs and merged into the
    tail by sorting once they pile up, so memory stays within about twice the kept tail.
    """

    def __init__(self, num_units: int, keep: int, device: torch.device | str = "cpu",
                 upsampled: bool = False) -> None:
        if keep < 1:
            raise ValueError("TopTail: keep must be >= 1")
        self.num_units = num_units
        self.keep = keep
        self.upsampled = upsampled  # sample the maps upsampled to the label size, not raw
        self.count = 0  # samples seen per unit
        self.device = torch.device(device)
        self.floor = torch.full((num_units,), -math.inf, device=self.device)
        self._tail = torch.full((num_units, 0), -math.inf, device=self.device)
        self._units: List[torch.Tensor] = []  # int32 chunks
        self._values: List[torch.Tensor] = []
        self._pending = 0

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        """Add a batch of maps [B, U, h, w] (upsampled to the label size first if asked)."""
        if self.upsampled:
            maps = upsample_bilinear(maps, batch.label_size)
        self.add_values(maps.transpose(0, 1).reshape(maps.shape[1], -1))

    def add_values(self, values: torch.Tensor) -> None:
        """Add samples [U, n] (every unit gets the same number of samples)."""
        values = values.detach().to(self.device, torch.float32)
        if values.shape[0] != self.num_units:
            raise ValueError(f"TopTail: expected {self.num_units} units, got {values.shape[0]}")
        self.count += values.shape[1]
        if self._tail.shape[1] < self.keep and values.shape[1] > self.keep:
            # No floor yet (every value would be a candidate): only a batch's own top ``keep``
            # values per unit can be among the stream's.
            values = values.topk(self.keep, dim=1, sorted=False).values
        above = values > self.floor[:, None]
        units, _ = above.nonzero(as_tuple=True)
        if units.numel() == 0:
            return
        self._units.append(units.to(torch.int32))
        self._values.append(values[above])
        self._pending += units.numel()
        if self._pending > self.keep * self.num_units + 65536:
            self._compact()

    def _compact(self) -> None:
        if not self._pending:
            return
        width = self._tail.shape[1]
        tail_units = torch.arange(self.num_units, device=self.device).repeat_interleave(width)
        units = torch.cat([tail_units, *[u.long() for u in self._units]])
        values = torch.cat([self._tail.reshape(-1), *self._values])
        self._units, self._values, self._pending = [], [], 0
        # One sort by (unit ascending, value descending): each unit's values end up descending.
        order = torch.argsort(_unit_value_key(units, values))
        units, values = units[order], values[order]
        counts = torch.bincount(units, minlength=self.num_units)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(units.numel(), device=self.device) - starts[units]
        keep = rank < self.keep
        width = min(self.keep, int(counts.max()))
        self._tail = torch.full((self.num_units, width), -math.inf, device=self.device)
        self._tail[units[keep], rank[keep]] = values[keep]
        if width == self.keep:
            self.floor = self._tail[:, -1].clone()

    def tail(self) -> torch.Tensor:
        """[U, keep] largest values per unit, descending (-inf where a unit has fewer)."""
        self._compact()
        pad = self.keep - self._tail.shape[1]
        return torch.nn.functional.pad(self._tail, (0, pad), value=-math.inf) if pad else self._tail

    def quantile(self, quantile: float) -> torch.Tensor:
        """Per-unit threshold T with P(a > T) = quantile, as ``numpy.quantile(a, 1 - quantile)``."""
        if self.count == 0:
            raise ValueError("TopTail: no samples")
        needed = tail_size(self.count, quantile)
        if needed > self.keep:
            raise ValueError(
                f"TopTail kept {self.keep} values per unit but quantile {quantile} of "
                f"{self.count} samples needs {needed}"
            )
        tail = self.tail().double()
        low, frac = _virtual_index(self.count, 1.0 - quantile)
        # Ascending position `low` is descending rank count - 1 - low.
        r_low = self.count - 1 - low
        a = tail[:, r_low]
        b = tail[:, max(r_low - 1, 0)]
        return _lerp(a, b, frac).float()

    def merge(self, other: "TopTail") -> None:
        check_mergeable(self, other, num_units=self.num_units, keep=self.keep,
                        upsampled=self.upsampled)
        other._compact()
        units = torch.arange(other.num_units, device=self.device).repeat_interleave(other._tail.shape[1])
        self._units.append(units.to(torch.int32))
        self._values.append(other._tail.reshape(-1).to(self.device))
        self._pending += units.numel()
        self.count += other.count
        self._compact()

    def state_dict(self) -> Dict:
        """Canonical: the top min(keep, count) values of each unit, descending."""
        self._compact()
        width = min(self.keep, self.count)
        tail = self._tail[:, :width]
        if tail.shape[1] < width:
            tail = torch.nn.functional.pad(tail, (0, width - tail.shape[1]), value=-math.inf)
        return {"keep": self.keep, "count": self.count, "num_units": self.num_units,
                "upsampled": self.upsampled, "tail": tail.to("cpu").contiguous()}

    def load_state_dict(self, state: Dict) -> None:
        self.num_units, self.keep, self.count = state["num_units"], state["keep"], state["count"]
        self.upsampled = bool(state.get("upsampled", False))
        self._units, self._values, self._pending = [], [], 0
        self._tail = torch.as_tensor(state["tail"]).to(self.device, copy=True)
        full = self._tail.shape[1] == self.keep
        self.floor = self._tail[:, -1].clone() if full else torch.full(
            (self.num_units,), -math.inf, device=self.device)


def _unit_value_key(units: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """int64 keys ordering by unit, then by float32 value descending (one integer sort)."""
    bits = values.contiguous().view(torch.int32).long()
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # ascending ints = ascending floats
    return units * (1 << 32) - ordered


def _lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    # numpy's _lerp: a + t * (b - a), computed from the nearer end for t >= 0.5.
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t
