"""The statistics of every layer in one pass, as one mergeable object.

A pass keeps, per layer, a few named accumulators ("tail", "topk", "counts"). They are made
from the first batch's maps (the number of units and the map size are only known then), or from
a saved state. :class:`PassStats` is itself an accumulator of the whole pass: its state is a
dict of the layers' states, so a checkpoint, a rank's contribution and a merged result are all
the same kind of object.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional

import torch

from ..data.probe import ProbeBatch
from .accumulator import Accumulator

# (layer, first maps [B, U, h, w], first batch) -> {part name: accumulator}
MakeParts = Callable[[str, torch.Tensor, ProbeBatch], Dict[str, Accumulator]]
# (part name, saved state) -> an accumulator restored from it
FromState = Callable[[str, Dict[str, Any]], Accumulator]


class LayerStats:
    """One layer's accumulators, made on first use."""

    def __init__(self, layer: str, make: MakeParts, from_state: FromState) -> None:
        self.layer = layer
        self._make, self._from_state = make, from_state
        self.parts: Optional[Dict[str, Accumulator]] = None

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        if self.parts is None:
            self.parts = self._make(self.layer, maps, batch)
        for part in self.parts.values():
            part.add(maps, batch)

    def state_dict(self) -> Optional[Dict[str, Any]]:
        if self.parts is None:
            return None
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: Optional[Dict[str, Any]]) -> None:
        self.parts = None if state is None else {
            name: self._from_state(name, s) for name, s in state.items()}

    def merge(self, other: "LayerStats") -> None:
        if other.parts is None:
            return
        if self.parts is None:
            self.load_state_dict(other.state_dict())
            return
        if set(self.parts) != set(other.parts):
            raise ValueError(f"layer {self.layer!r}: cannot merge statistics "
                             f"{sorted(other.parts)} into {sorted(self.parts)}")
        for name, part in self.parts.items():
            part.merge(other.parts[name])


class PassStats:
    """Every layer's :class:`LayerStats` of a pass."""

    def __init__(self, layers: List[str], make: MakeParts, from_state: FromState) -> None:
        self.layers = {l: LayerStats(l, make, from_state) for l in layers}

    def __getitem__(self, layer: str) -> LayerStats:
        return self.layers[layer]

    def state_dict(self) -> Dict[str, Optional[Dict[str, Any]]]:
        return {l: s.state_dict() for l, s in self.layers.items()}

    def load_state_dict(self, state: Dict[str, Optional[Dict[str, Any]]]) -> None:
        for layer, s in self.layers.items():
            s.load_state_dict(state.get(layer))

    def merge_states(self, states: List[Dict[str, Optional[Dict[str, Any]]]]) -> None:
        """Fold in other shards' states (in any order: the result is the same)."""
        for state in states:
            for layer, stats in self.layers.items():
                other = LayerStats(layer, stats._make, stats._from_state)
                other.load_state_dict(state.get(layer))
                stats.merge(other)

    def part(self, layer: str, name: str) -> Optional[Accumulator]:
        parts = self.layers[layer].parts
        return None if parts is None else parts.get(name)


class KeepMaps:
    """Pass-1 consumer: hands a layer's maps to the kept-map store (if the run keeps maps:
    ``store()`` is None otherwise), with a floor per unit under which nothing is kept.

    The provable floor, the tail's keep-th largest value so far, is loose early in a pass:
    after a tenth of the data it sits near the top-5% value, not the top-0.5% one, and every
    batch kept then holds ten times what the threshold needs. So the floor is *speculative*:
    the value that three times the expected number of values so far exceed (about the top
    1.5% of what has been seen), or the provable floor once that is higher. The store records the
    floor of every batch; pass 2 uses a batch's kept maps only where that floor turns out to
    be at most the final threshold, and runs the model again for the (rare) others. Exact
    either way, and a few times less to keep.
    """

    REFRESH = 8  # batches between two estimates (each costs a k-th value over the tail)
    MARGIN = 3  # the speculative floor: the value that MARGIN x the expected count exceeds

    def __init__(self, store: Callable[[], Any], layer: str, stats: LayerStats,
                 samples_per_unit: Callable[[torch.Tensor, ProbeBatch], int]) -> None:
        self.store, self.layer, self.stats = store, layer, stats
        self.samples_per_unit = samples_per_unit  # in the whole pass (all shards)
        self._speculative: Optional[torch.Tensor] = None
        self._age = self._batches = 0

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        store = self.store()
        if store is None:
            return
        tail = self.stats.parts["tail"]
        # early estimates rest on few values: refresh them every batch at first
        if self._batches == 0 or self._age >= min(self.REFRESH, self._batches // 2 + 1):
            total = self.samples_per_unit(maps, batch)
            rank = math.ceil(self.MARGIN * tail.keep * tail.count / max(total, 1))
            # from a third of the pass on, the estimate is the provable floor: no k-th value
            self._speculative = tail.value_at_rank(max(rank, 1)) if rank < tail.keep else None
            self._age = 0
        self._age += 1
        self._batches += 1
        floor = tail.floor if self._speculative is None else torch.maximum(tail.floor,
                                                                          self._speculative)
        store.append(self.layer, maps, batch.indices, floor)
