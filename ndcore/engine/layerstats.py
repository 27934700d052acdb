"""The statistics of every layer in one pass, as one mergeable object.

A pass keeps, per layer, the accumulators of the table's rows that it feeds
(:mod:`ndcore.engine.statistics`), keyed by their names. They are made from the first batch's
maps (the number of units and the map size are only known then), or from a saved state.
:class:`PassStats` is itself an accumulator of the whole pass: its state is a dict of the
layers' states ({layer: {name: state} or None}), so a checkpoint, a rank's contribution and a
merged result are all the same kind of object.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type, TypeVar

import torch

from ..data.probe import ProbeBatch
from .accumulator import Accumulator
from .statistics import RunContext, Statistic

A = TypeVar("A")


class LayerStats:
    """One layer's accumulators, made on first use."""

    def __init__(self, layer: str, rows: Dict[str, Statistic], run: RunContext) -> None:
        self.layer, self.rows, self.run = layer, rows, run
        self.parts: Optional[Dict[str, Accumulator]] = None

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        if self.parts is None:
            made = ((name, row.make(self.run, self.layer, maps, batch))
                    for name, row in self.rows.items())
            self.parts = {name: part for name, part in made if part is not None}
        for part in self.parts.values():
            part.add(maps, batch)

    def get(self, kind: Type[A]) -> Optional[A]:
        """This layer's accumulator of type ``kind`` (None: not made, or not for this layer)."""
        for name, part in (self.parts or {}).items():
            if self.rows[name].kind is kind:
                return part
        return None

    def state_dict(self) -> Optional[Dict[str, Any]]:
        if self.parts is None:
            return None
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: Optional[Dict[str, Any]]) -> None:
        self.parts = None if state is None else {
            name: self._restore(name, s) for name, s in state.items()}

    def _restore(self, name: str, state: Dict[str, Any]) -> Accumulator:
        row = self.rows.get(name)
        if row is None:
            raise ValueError(f"unknown statistic {name!r} in a saved state")
        part = row.restore(self.run, state)
        part.load_state_dict(state)
        return part

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
    """Every layer's :class:`LayerStats` of a pass, over the table rows ``rows``."""

    def __init__(self, layers: List[str], rows: Sequence[Statistic], run: RunContext) -> None:
        self.rows = {row.name: row for row in rows}
        self.run = run
        self.layers = {l: LayerStats(l, self.rows, run) for l in layers}

    def __getitem__(self, layer: str) -> LayerStats:
        return self.layers[layer]

    def fresh(self) -> "PassStats":
        """Empty statistics of the same pass (to merge states into)."""
        return PassStats(list(self.layers), list(self.rows.values()), self.run)

    def state_dict(self) -> Dict[str, Optional[Dict[str, Any]]]:
        return {l: s.state_dict() for l, s in self.layers.items()}

    def load_state_dict(self, state: Dict[str, Optional[Dict[str, Any]]]) -> None:
        for layer, s in self.layers.items():
            s.load_state_dict(state.get(layer))

    def merge_states(self, states: List[Dict[str, Optional[Dict[str, Any]]]]) -> None:
        """Fold in other shards' states (in any order: the result is the same)."""
        for state in states:
            for layer, stats in self.layers.items():
                other = LayerStats(layer, self.rows, self.run)
                other.load_state_dict(state.get(layer))
                stats.merge(other)

    def part(self, layer: str, kind: Type[A]) -> Optional[A]:
        return self.layers[layer].get(kind)

    def drop_means(self) -> None:
        """Forget the accumulators that were only a means to the pass's end (no result record:
        the tail, once the thresholds are known)."""
        for stats in self.layers.values():
            if stats.parts is not None:
                stats.parts = {name: part for name, part in stats.parts.items()
                               if self.rows[name].record is not None}

    def outputs(self) -> Iterator[Tuple[str, Statistic, Accumulator]]:
        """(layer, row, accumulator) of every accumulator with a result record."""
        for layer, stats in self.layers.items():
            for name, part in (stats.parts or {}).items():
                if self.rows[name].record is not None:
                    yield layer, self.rows[name], part
