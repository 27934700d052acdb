"""The exact per-unit top quantile of a stream: the threshold of every unit.

An :class:`~ndcore.engine.accumulator.Accumulator`: its state (the largest ``keep`` values of
each unit, sorted) is canonical, so shards merge to the same bits in any order. Statistic
"tail": pass 1 feeds it for the layers without given thresholds; the thresholds come from it,
so it is dropped once pass 1 is over.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch

from ...data.probe import ProbeBatch
from ...ops import upsample_bilinear, values_above
from ..accumulator import check_mergeable
from .table import FORWARD_PASS, RunContext, Statistic, register


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

    Per unit, the kept values are a dense [U, <= keep] tensor (unordered while streaming).
    Each batch contributes only its values above the unit's running floor (the keep-th largest
    value so far, a lower bound of the final threshold); they pile up in a pending buffer and
    are folded into the kept values with one ``topk`` when the buffer holds another ``keep``
    columns, so memory stays within about twice the kept values. -0.0 is stored as +0.0, so
    that equal values have equal bits and the sorted state is canonical.
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
        self._pending: List[torch.Tensor] = []  # [U, w] blocks, -inf padded
        self._pending_width = 0

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        """Add a batch of maps [B, U, h, w] (upsampled to the label size first if asked)."""
        if self.upsampled:
            maps = upsample_bilinear(maps, batch.label_size)
        self._add_maps(maps.detach())

    def add_values(self, values: torch.Tensor) -> None:
        """Add samples [U, n] (every unit gets the same number of samples)."""
        self._add_maps(values.detach()[None, :, None, :])

    def _add_maps(self, maps: torch.Tensor) -> None:
        """B * h * w samples of each unit from maps [B, U, h, w]. Once a floor exists, only the
        values above it can enter the tail: the selection op picks them, by unit, in one read."""
        b, units, h, w = maps.shape
        if units != self.num_units:
            raise ValueError(f"TopTail: expected {self.num_units} units, got {units}")
        self.count += b * h * w
        if self._tail.shape[1] == self.keep:
            return self._push(values_above(maps, self.floor.to(maps.device))[0].to(self.device))
        self._push(maps.transpose(0, 1).reshape(units, -1).to(self.device, torch.float32))

    def _push(self, values: torch.Tensor) -> None:
        """Queue a block [U, n] of candidates (-inf padded) and compact when due."""
        if values.shape[1] == 0:
            return  # (nothing above the floor)
        if values.shape[1] > self.keep:  # only a block's own top `keep` can be in the stream's
            values = values.topk(self.keep, dim=1, sorted=False).values
        self._pending.append(values + 0.0)  # -0.0 -> +0.0
        self._pending_width += values.shape[1]
        if self._tail.shape[1] < self.keep or self._pending_width >= self.keep:
            self._compact()

    def _compact(self) -> None:
        if not self._pending:
            return
        kept = torch.cat([self._tail, *self._pending], 1)
        self._pending, self._pending_width = [], 0
        if kept.shape[1] > self.keep:
            kept = kept.topk(self.keep, dim=1, sorted=False).values
        self._tail = kept
        if kept.shape[1] == self.keep:
            self.floor = kept.amin(dim=1)

    def value_at_rank(self, rank: int) -> torch.Tensor:
        """[U] the rank-th largest value so far (1-based); -inf where fewer were seen."""
        self._compact()
        width = self._tail.shape[1]
        if rank < 1 or rank > width:
            return torch.full((self.num_units,), -math.inf, device=self.device)
        return torch.kthvalue(self._tail, width - rank + 1, dim=1).values

    def tail(self) -> torch.Tensor:
        """[U, keep] largest values per unit, descending (-inf where a unit has fewer)."""
        self._compact()
        tail = torch.sort(self._tail, dim=1, descending=True).values
        pad = self.keep - tail.shape[1]
        return torch.nn.functional.pad(tail, (0, pad), value=-math.inf) if pad else tail

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
        low, frac = _virtual_index(self.count, 1.0 - quantile)
        # Ascending position `low` is descending rank count - 1 - low (0-based); two k-th values
        # instead of sorting the whole tail.
        r_low = self.count - 1 - low
        a = self.value_at_rank(r_low + 1).double()
        b = self.value_at_rank(max(r_low - 1, 0) + 1).double()
        return _lerp(a, b, frac).float()

    def merge(self, other: "TopTail") -> None:
        check_mergeable(self, other, num_units=self.num_units, keep=self.keep,
                        upsampled=self.upsampled)
        other._compact()
        if other._tail.shape[1]:
            self._pending.append(other._tail.to(self.device))
            self._pending_width += other._tail.shape[1]
        self.count += other.count
        self._compact()

    def state_dict(self) -> Dict:
        """Canonical: the top min(keep, count) values of each unit, descending."""
        tail = self.tail()[:, : min(self.keep, self.count)]
        return {"keep": self.keep, "count": self.count, "num_units": self.num_units,
                "upsampled": self.upsampled, "tail": tail.to("cpu").contiguous()}

    def load_state_dict(self, state: Dict) -> None:
        self.num_units, self.keep, self.count = state["num_units"], state["keep"], state["count"]
        self.upsampled = bool(state.get("upsampled", False))
        self._pending, self._pending_width = [], 0
        self._tail = torch.as_tensor(state["tail"]).to(self.device, copy=True)
        full = self._tail.shape[1] == self.keep
        self.floor = self._tail[:, -1].clone() if full else torch.full(
            (self.num_units,), -math.inf, device=self.device)


def _lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    # numpy's _lerp: a + t * (b - a), computed from the nearer end for t >= 0.5.
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def samples_per_unit(run: RunContext, maps: torch.Tensor, batch: ProbeBatch) -> int:
    """A unit's samples in the whole run: every probe image's map, upsampled to the label size
    with ``--quantile-on upsampled``."""
    h, w = batch.label_size if run.options.quantile_on == "upsampled" else maps.shape[2:]
    return run.images * h * w


def _make(run: RunContext, layer: str, maps: torch.Tensor,
          batch: ProbeBatch) -> Optional[TopTail]:
    if layer in run.thresholds:
        return None
    keep = tail_size(samples_per_unit(run, maps, batch), run.options.quantile)
    return TopTail(maps.shape[1], keep, run.device,
                   upsampled=run.options.quantile_on == "upsampled")


register(Statistic(
    "tail", TopTail, passes=(FORWARD_PASS,), make=_make,
    restore=lambda run, state: TopTail(int(state["num_units"]), int(state["keep"]), run.device)))
